// M-of-N quorum end to end (issue 4, docs/quorum.md): a real custosd on a
// real SoftHSM token with the starter policy of `custos-init dev` (2 of
// alice, bob, carol), the real `custos` and `custos-officer` CLIs, officer
// keys from PEM files and from a second SoftHSM token (PKCS#11 URI), hostile
// approvals sent through the client library, signatures checked with openssl
// and the approval evidence with custos-audit.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "custos/client/client.h"
#include "custos/client/config.h"
#include "custos/policy/approval.h"
#include "custos/v1/custos.pb.h"
#include "harness.h"

namespace custos::testing {
namespace {
using namespace std::chrono_literals;
namespace v1 = custos::v1;

constexpr char kTrust[] = "spiffe://dev.custos.test";

// The request id ("rq-" + 32 hex) in a command's output, or "".
std::string RequestIdIn(const CommandResult& r) {
  static const std::regex kId("rq-[0-9a-f]{32}");
  std::smatch m;
  const std::string all = r.out + "\n" + r.err;
  return std::regex_search(all, m, kId) ? m.str() : "";
}

std::string Dump(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// An ECDSA P-256 signature (SHA-256, DER) with a PEM private key file.
std::string SignWithPemKey(const std::string& key_path, const std::string& message) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(key_path.c_str(), "r"), std::fclose);
  if (!f) return "";
  std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> key(
      PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (!key) return "";
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::size_t len = 0;
  if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1) {
    return "";
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1) {
    return "";
  }
  sig.resize(len);
  return sig;
}

std::string Sha256OfFile(const std::string& path) {
  const std::string data = ReadFile(path);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 0xF]);
  }
  return out;
}

std::optional<policy::Sha256Digest> ParseDigest(const std::string& text) {
  if (text.size() != 7 + 64 || text.compare(0, 7, "sha256:") != 0) return std::nullopt;
  policy::Sha256Digest d{};
  for (std::size_t i = 0; i < 32; ++i) {
    d[i] = static_cast<std::uint8_t>(std::stoi(text.substr(7 + 2 * i, 2), nullptr, 16));
  }
  return d;
}

class Quorum : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work_ = new TempDir();
    deployment_ = new Deployment();
    MakeOfficerToken();
    // The starter policy plus what these tests need before the first start
    // (the first start imports the file; later changes go through quorum):
    // carol may also administer keys (so an officer can be a requester), a
    // quorum rule that expires in seconds, and officer dave whose key lives on
    // a second SoftHSM token.
    std::string policy = ReadFile(deployment_->dir() + "/policy.txtpb");
    ASSERT_TRUE(Contains(policy, "quorum_rule")) << "starter policy has no quorum rules:\n"
                                                 << policy;
    policy += "\n# Added by quorum_test.\n";
    policy +=
        "binding { principal: \"" + std::string(kTrust) + "/officer/carol\" roles: \"admin\" }\n";
    policy +=
        "quorum_rule {\n  name: \"short-lived\"\n  operation: SIGN\n  keys: \"short-*\"\n"
        "  usages: \"*\"\n  group: \"officers\"\n  threshold: 2\n  expiry_seconds: 3\n}\n";
    policy +=
        "officer {\n  id: \"dave\"\n  name: \"Dave (smart card)\"\n  groups: \"officers\"\n"
        "  principals: \"" +
        std::string(kTrust) + "/officer/dave\"\n  public_key: \"" +
        Escape(ReadFile(File("dave.pub.pem"))) + "\"\n}\n";
    WriteFile(deployment_->dir() + "/policy.txtpb", policy);
    *original_policy_ = policy;
    ASSERT_TRUE(deployment_->Start()) << deployment_->log();
    WriteFile(File("artifact.bin"), "release 1.0 of something important\n");
  }
  static void TearDownTestSuite() {
    delete deployment_;
    deployment_ = nullptr;
    delete work_;
    work_ = nullptr;
  }

  static std::string File(const std::string& name) { return work_->path() + "/" + name; }

  static std::string Escape(const std::string& text) {
    std::string out;
    for (char c : text) {
      if (c == '\n') {
        out += "\\n";
      } else {
        out += c;
      }
    }
    return out;
  }

  // A second SoftHSM token "officer-dave" holding dave's P-256 approval key,
  // and an officer config that names it by PKCS#11 URI.
  static void MakeOfficerToken() {
    const std::string tokens = File("dave-tokens");
    std::filesystem::create_directories(tokens);
    WriteFile(File("dave-softhsm2.conf"),
              "directories.tokendir = " + tokens + "\nobjectstore.backend = file\n");
    const std::map<std::string, std::string> env = {{"SOFTHSM2_CONF", File("dave-softhsm2.conf")}};
    CommandResult r = Exec({"softhsm2-util", "--init-token", "--free", "--label", "officer-dave",
                            "--pin", "246810", "--so-pin", "13579135"},
                           env);
    ASSERT_EQ(r.exit_code, 0) << Dump(r);
    r = Exec({"pkcs11-tool", "--module", SOFTHSM2_MODULE_PATH, "--token-label", "officer-dave",
              "--login", "--pin", "246810", "--keypairgen", "--key-type", "EC:prime256v1",
              "--label", "dave", "--id", "d0"},
             env);
    ASSERT_EQ(r.exit_code, 0) << Dump(r);
    r = Exec({"pkcs11-tool", "--module", SOFTHSM2_MODULE_PATH, "--token-label", "officer-dave",
              "--read-object", "--type", "pubkey", "--label", "dave", "-o", File("dave.pub.der")},
             env);
    ASSERT_EQ(r.exit_code, 0) << Dump(r);
    r = Exec({"openssl", "pkey", "-pubin", "-inform", "DER", "-in", File("dave.pub.der"), "-out",
              File("dave.pub.pem")});
    ASSERT_EQ(r.exit_code, 0) << Dump(r);
    WriteFile(File("dave.pin"), "246810\n");
    ::chmod(File("dave.pin").c_str(), 0600);
    // Dave reaches custosd with alice's TLS identity (the approval signature,
    // not the connection, is what counts).
    const std::string o = deployment_->dir() + "/officers/";
    WriteFile(File("dave.conf"),
              "server = 127.0.0.1:" + std::to_string(deployment_->port()) + "\ncert = " + o +
                  "alice-tls.crt\nkey = " + o + "alice-tls.key\nca = " + deployment_->dir() +
                  "/pki/ca.crt\nofficer-id = dave\n"
                  "officer-key = pkcs11:token=officer-dave;object=dave\n"
                  "officer-pkcs11-module = " SOFTHSM2_MODULE_PATH "\nofficer-pin-file = " +
                  File("dave.pin") + "\n");
  }

  static CommandResult Admin(const std::vector<std::string>& args) {
    return deployment_->Custos("admin", args);
  }
  static CommandResult Approve(const std::string& officer, const std::string& id) {
    return deployment_->Officer(officer, {"approve", id, "--yes"});
  }
  static CommandResult ShowRequest(const std::string& who, const std::string& id) {
    return deployment_->Custos(who, {"request", "show", id, "--json"});
  }
  static std::string KeyState(const std::string& name) {
    CommandResult r = Admin({"keys", "show", name, "--json"});
    static const std::regex kState("\"state\":\"([a-z-]+)\"");
    std::smatch m;
    return std::regex_search(r.out, m, kState) ? m[1].str() : "?" + r.out + r.err;
  }

  // Expects exit 6 (pending approval) and returns the request id.
  static std::string ExpectPending(const CommandResult& r) {
    EXPECT_EQ(r.exit_code, 6) << Dump(r);
    const std::string id = RequestIdIn(r);
    EXPECT_FALSE(id.empty()) << Dump(r);
    return id;
  }

  // A client-library connection with the TLS identity `who` ("admin" or an
  // officer's "-tls" files).
  static std::unique_ptr<client::Client> Connect(const std::string& who) {
    client::ClientConfig config;
    config.server = "127.0.0.1:" + std::to_string(deployment_->port());
    const bool officer = who == "alice" || who == "bob" || who == "carol";
    const std::string base =
        deployment_->dir() + (officer ? "/officers/" + who + "-tls" : "/clients/" + who);
    config.cert = base + ".crt";
    config.key = base + ".key";
    config.ca = deployment_->dir() + "/pki/ca.crt";
    config.retries = 0;
    auto c = client::Client::Connect(config);
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message());
    return c.ok() ? std::move(*c) : nullptr;
  }

  static v1::PendingRequestInfo GetRequest(const std::string& who, const std::string& id) {
    auto c = Connect(who);
    if (!c) return {};
    v1::Request req;
    req.mutable_get_request()->set_id(id);
    auto resp = c->Call(req);
    EXPECT_TRUE(resp.ok());
    if (!resp.ok()) return {};
    EXPECT_EQ(resp->status().code(), v1::OK) << resp->status().message();
    return resp->pending();
  }

  // Submits a statement and signature as `carrier`; returns the response.
  static v1::Response Submit(const std::string& carrier, const std::string& statement,
                             const std::string& signature) {
    auto c = Connect(carrier);
    if (!c) return {};
    v1::Request req;
    req.mutable_submit_approval()->set_statement(statement);
    req.mutable_submit_approval()->set_signature(signature);
    auto resp = c->Call(req);
    EXPECT_TRUE(resp.ok());
    return resp.ok() ? *resp : v1::Response();
  }

  // The canonical statement for `id` with `digest`, signed by `officer`'s
  // PEM key file from custos-init.
  static std::pair<std::string, std::string> Statement(
      const std::string& officer, const std::string& id, const policy::Sha256Digest& digest,
      policy::ApprovalDecision decision = policy::ApprovalDecision::kApprove) {
    policy::ApprovalStatement s;
    s.request_id = id;
    s.request_digest = digest;
    s.decision = decision;
    s.officer_id = officer;
    s.time = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
    auto text = policy::CanonicalStatement(s);
    EXPECT_TRUE(text.has_value());
    const std::string bytes = text.value_or("");
    return {bytes, SignWithPemKey(deployment_->dir() + "/officers/" + officer + ".key", bytes)};
  }

  static std::string NewSigningRequest(const std::string& key) {
    return ExpectPending(
        deployment_->Custos("builder", {"sign", "--key", key, "--in", File("artifact.bin"), "--out",
                                        File(key + ".sig"), "--note", "quorum test " + key}));
  }

  static void CreateCodeSigningKey(const std::string& name) {
    CommandResult r =
        Admin({"keys", "create", name, "--type", "ec-p256", "--usage", "code-signing"});
    ASSERT_EQ(r.exit_code, 0) << Dump(r);
  }

  static Deployment* deployment_;
  static TempDir* work_;
  static std::string* original_policy_;
};

Deployment* Quorum::deployment_ = nullptr;
TempDir* Quorum::work_ = nullptr;
std::string* Quorum::original_policy_ = new std::string();

TEST_F(Quorum, CaKeyCreationNeedsTwoOfThree) {
  const std::string id = ExpectPending(Admin(
      {"keys", "create", "root-ca", "--type", "ec-p256", "--usage", "ca", "--note", "dev root"}));
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(KeyState("root-ca"), "pre-activation");
  // Not usable while it waits.
  CommandResult show = ShowRequest("admin", id);
  ASSERT_EQ(show.exit_code, 0) << Dump(show);
  EXPECT_TRUE(Contains(show.out, "pending")) << show.out;

  CommandResult a = Approve("alice", id);
  ASSERT_EQ(a.exit_code, 0) << Dump(a);
  EXPECT_EQ(KeyState("root-ca"), "pre-activation") << "one approval must not be enough";
  v1::PendingRequestInfo info = GetRequest("admin", id);
  EXPECT_EQ(info.state(), "pending");
  ASSERT_EQ(info.quorum_size(), 1);
  EXPECT_EQ(info.quorum(0).rule(), "ca-key-creation");
  EXPECT_EQ(info.quorum(0).threshold(), 2u);
  EXPECT_EQ(info.quorum(0).approved_by_size(), 1);

  CommandResult b = Approve("bob", id);
  ASSERT_EQ(b.exit_code, 0) << Dump(b);
  EXPECT_EQ(KeyState("root-ca"), "active");
  info = GetRequest("admin", id);
  EXPECT_EQ(info.state(), "executed") << info.state_reason();

  CommandResult wait = Admin({"request", "wait", id, "--timeout", "10s"});
  EXPECT_EQ(wait.exit_code, 0) << Dump(wait);

  // The key's private object is on the token, sensitive and never extractable.
  CommandResult objects =
      Exec({"pkcs11-tool", "--module", SOFTHSM2_MODULE_PATH, "--token-label", "custos-dev",
            "--login", "--pin", deployment_->user_pin(), "--list-objects", "--type", "privkey"},
           {{"SOFTHSM2_CONF", deployment_->softhsm_conf()}});
  EXPECT_TRUE(Contains(objects.out, "custos:root-ca@1")) << objects.out;

  // A third approval after execution is refused: the request is decided.
  CommandResult c = Approve("carol", id);
  EXPECT_NE(c.exit_code, 0) << Dump(c);
  EXPECT_TRUE(Contains(c.err + c.out, "executed")) << Dump(c);
}

TEST_F(Quorum, RequesterCannotApproveOwnRequest) {
  // carol is an officer and, in this test's policy, also a key administrator.
  CommandResult r = Exec({BinPath("custos"), "--config", deployment_->officer_conf("carol"), "keys",
                          "create", "carols-ca", "--type", "ec-p256", "--usage", "ca"});
  const std::string id = ExpectPending(r);
  ASSERT_FALSE(id.empty());
  CommandResult self = Approve("carol", id);
  EXPECT_NE(self.exit_code, 0) << Dump(self);
  EXPECT_TRUE(Contains(self.err, "OFFICER_IS_REQUESTER")) << Dump(self);
  // Two other officers can still approve it.
  ASSERT_EQ(Approve("alice", id).exit_code, 0);
  CommandResult b = Approve("bob", id);
  ASSERT_EQ(b.exit_code, 0) << Dump(b);
  EXPECT_EQ(KeyState("carols-ca"), "active");
  const v1::PendingRequestInfo info = GetRequest("alice", id);
  ASSERT_EQ(info.quorum_size(), 1);
  ASSERT_EQ(info.quorum(0).approved_by_size(), 2);
  EXPECT_EQ(info.quorum(0).approved_by(0), "alice");
  EXPECT_EQ(info.quorum(0).approved_by(1), "bob");
}

TEST_F(Quorum, SameOfficerTwiceCountsOnce) {
  const std::string id = ExpectPending(
      Admin({"keys", "create", "twice-ca", "--type", "ec-p256", "--usage", "ssh-ca"}));
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(Approve("alice", id).exit_code, 0);
  std::this_thread::sleep_for(1100ms);  // a later statement time: different bytes
  CommandResult again = Approve("alice", id);
  EXPECT_NE(again.exit_code, 0) << Dump(again);
  EXPECT_TRUE(Contains(again.err, "already voted")) << Dump(again);
  // The very same statement submitted again is answered, not counted again.
  const v1::PendingRequestInfo info = GetRequest("admin", id);
  ASSERT_EQ(info.votes_size(), 1);
  v1::Response replay = Submit("bob", info.votes(0).statement(), info.votes(0).signature());
  EXPECT_EQ(replay.status().code(), v1::OK) << replay.status().message();
  const v1::PendingRequestInfo after = GetRequest("admin", id);
  EXPECT_EQ(after.state(), "pending");
  ASSERT_EQ(after.quorum_size(), 1);
  EXPECT_EQ(after.quorum(0).approved_by_size(), 1);
  EXPECT_EQ(KeyState("twice-ca"), "pre-activation");
}

TEST_F(Quorum, ForgedAndMisdirectedApprovalsAreRefused) {
  CreateCodeSigningKey("release-forge");
  const std::string a = NewSigningRequest("release-forge");
  const std::string b = NewSigningRequest("release-forge");
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  const v1::PendingRequestInfo info_a = GetRequest("builder", a);
  const v1::PendingRequestInfo info_b = GetRequest("builder", b);
  auto digest_a = ParseDigest(info_a.digest());
  auto digest_b = ParseDigest(info_b.digest());
  ASSERT_TRUE(digest_a && digest_b) << info_a.digest();
  EXPECT_NE(info_a.digest(), info_b.digest());

  // Forged: alice's statement signed with bob's key.
  auto [statement, bob_sig] = Statement("bob", a, *digest_a);
  policy::ApprovalStatement forged_fields;
  forged_fields.request_id = a;
  forged_fields.request_digest = *digest_a;
  forged_fields.officer_id = "alice";
  forged_fields.time = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  const std::string forged = policy::CanonicalStatement(forged_fields).value_or("");
  const std::string wrong_key_sig =
      SignWithPemKey(deployment_->dir() + "/officers/bob.key", forged);
  v1::Response r = Submit("alice", forged, wrong_key_sig);
  EXPECT_EQ(r.status().code(), v1::PERMISSION_DENIED) << r.status().message();
  EXPECT_TRUE(Contains(r.status().message(), "BAD_SIGNATURE")) << r.status().message();

  // A flipped byte in a genuine signature.
  auto [good, good_sig] = Statement("alice", a, *digest_a);
  std::string flipped = good_sig;
  flipped[flipped.size() / 2] ^= 0x01;
  r = Submit("alice", good, flipped);
  EXPECT_EQ(r.status().code(), v1::PERMISSION_DENIED) << r.status().message();

  // An approval for A replayed on B: names A, so B's request refuses it.
  ASSERT_EQ(Approve("alice", a).exit_code, 0);
  const v1::PendingRequestInfo voted_a = GetRequest("builder", a);
  ASSERT_EQ(voted_a.votes_size(), 1);
  const std::string stmt_a = voted_a.votes(0).statement();
  std::string retargeted = stmt_a;
  const auto at = retargeted.find(a);
  ASSERT_NE(at, std::string::npos);
  retargeted.replace(at, a.size(), b);
  r = Submit("alice", retargeted, voted_a.votes(0).signature());
  EXPECT_EQ(r.status().code(), v1::PERMISSION_DENIED) << r.status().message();
  EXPECT_TRUE(Contains(r.status().message(), "BAD_SIGNATURE")) << r.status().message();

  // Genuinely signed by alice, naming B but carrying A's digest.
  auto [misdirected, misdirected_sig] = Statement("alice", b, *digest_a);
  r = Submit("alice", misdirected, misdirected_sig);
  EXPECT_EQ(r.status().code(), v1::PERMISSION_DENIED) << r.status().message();
  EXPECT_TRUE(Contains(r.status().message(), "WRONG_REQUEST")) << r.status().message();

  // An unknown officer and a statement far from now.
  auto [mallory, mallory_sig] = Statement("alice", b, *digest_b);
  std::string renamed = mallory;
  renamed.replace(renamed.find("officer: alice"), 14, "officer: mallo");
  r = Submit("alice", renamed, mallory_sig);
  EXPECT_EQ(r.status().code(), v1::PERMISSION_DENIED) << r.status().message();
  EXPECT_TRUE(Contains(r.status().message(), "UNKNOWN_OFFICER")) << r.status().message();
  policy::ApprovalStatement old;
  old.request_id = b;
  old.request_digest = *digest_b;
  old.officer_id = "alice";
  old.time = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now() - 2h);
  const std::string old_text = policy::CanonicalStatement(old).value_or("");
  r = Submit("alice", old_text,
             SignWithPemKey(deployment_->dir() + "/officers/alice.key", old_text));
  EXPECT_EQ(r.status().code(), v1::PERMISSION_DENIED) << r.status().message();
  EXPECT_TRUE(Contains(r.status().message(), "TIME_SKEW")) << r.status().message();

  // None of that counted: B has no votes, A has alice's only.
  EXPECT_EQ(GetRequest("builder", b).votes_size(), 0);
  EXPECT_EQ(GetRequest("builder", a).votes_size(), 1);
}

TEST_F(Quorum, ReleaseSignatureOnlyAfterApprovals) {
  CreateCodeSigningKey("release-app");
  CommandResult pub = Admin({"keys", "pubkey", "release-app", "--out", File("release-app.pem")});
  ASSERT_EQ(pub.exit_code, 0) << Dump(pub);
  const std::string id = NewSigningRequest("release-app");
  ASSERT_FALSE(id.empty());
  EXPECT_FALSE(std::filesystem::exists(File("release-app.sig")))
      << "a signature was written before any approval";

  // What alice is shown names the key, the file and the digest to be signed.
  CommandResult shown = deployment_->Officer("alice", {"show", id});
  ASSERT_EQ(shown.exit_code, 0) << Dump(shown);
  EXPECT_TRUE(Contains(shown.out, "release-app")) << shown.out;
  EXPECT_TRUE(Contains(shown.out, "artifact.bin")) << shown.out;
  EXPECT_TRUE(Contains(shown.out, "quorum test release-app")) << shown.out;
  const std::string file_sha = Sha256OfFile(File("artifact.bin"));
  EXPECT_TRUE(Contains(shown.out, file_sha)) << "digest to be signed not shown:\n" << shown.out;

  // Nothing to collect yet: wait times out with exit 6.
  CommandResult early = deployment_->Custos(
      "builder", {"request", "wait", id, "--timeout", "1s", "--out", File("release-app.sig")});
  EXPECT_EQ(early.exit_code, 6) << Dump(early);
  EXPECT_FALSE(std::filesystem::exists(File("release-app.sig")));

  ASSERT_EQ(Approve("bob", id).exit_code, 0);
  ASSERT_EQ(Approve("carol", id).exit_code, 0);
  CommandResult wait = deployment_->Custos(
      "builder", {"request", "wait", id, "--timeout", "30s", "--out", File("release-app.sig")});
  ASSERT_EQ(wait.exit_code, 0) << Dump(wait);
  CommandResult verify = Exec({"openssl", "dgst", "-sha256", "-verify", File("release-app.pem"),
                               "-signature", File("release-app.sig"), File("artifact.bin")});
  EXPECT_EQ(verify.exit_code, 0) << Dump(verify);
  EXPECT_TRUE(Contains(verify.out, "Verified OK")) << verify.out;

  // The result is the requester's alone.
  const v1::PendingRequestInfo for_officer = GetRequest("alice", id);
  EXPECT_EQ(for_officer.state(), "executed");
  EXPECT_FALSE(for_officer.has_result());
  auto c = Connect("issuer");
  ASSERT_TRUE(c);
  v1::Request req;
  req.mutable_get_request()->set_id(id);
  auto resp = c->Call(req);
  ASSERT_TRUE(resp.ok());
  EXPECT_EQ(resp->status().code(), v1::NOT_FOUND) << resp->status().message();
}

TEST_F(Quorum, DenialRejectsAndRemovesThePendingKey) {
  const std::string id =
      ExpectPending(Admin({"keys", "create", "denied-ca", "--type", "ec-p256", "--usage", "ca"}));
  ASSERT_FALSE(id.empty());
  CommandResult d =
      deployment_->Officer("bob", {"deny", id, "--reason", "no ticket for this CA", "--yes"});
  ASSERT_EQ(d.exit_code, 0) << Dump(d);
  const v1::PendingRequestInfo info = GetRequest("admin", id);
  EXPECT_EQ(info.state(), "denied");
  EXPECT_TRUE(Contains(info.state_reason(), "bob")) << info.state_reason();
  EXPECT_TRUE(Contains(info.state_reason(), "no ticket for this CA")) << info.state_reason();
  CommandResult wait = Admin({"request", "wait", id, "--timeout", "5s"});
  EXPECT_EQ(wait.exit_code, 4) << Dump(wait);
  EXPECT_TRUE(Contains(wait.err + wait.out, "denied")) << Dump(wait);
  // No key material stays behind for a refused creation.
  EXPECT_EQ(KeyState("denied-ca"), "destroyed");
  CommandResult late = Approve("alice", id);
  EXPECT_NE(late.exit_code, 0);
  EXPECT_TRUE(Contains(late.err, "denied")) << Dump(late);
  // Enabling the refused key directly is not a way around the quorum.
  CommandResult enable = Admin({"keys", "enable", "denied-ca@1"});
  EXPECT_NE(enable.exit_code, 0) << Dump(enable);
}

TEST_F(Quorum, ExpiredRequestTakesNoApprovals) {
  CreateCodeSigningKey("short-lived");
  const std::string id = NewSigningRequest("short-lived");
  ASSERT_FALSE(id.empty());
  std::this_thread::sleep_for(4s);
  CommandResult late = Approve("alice", id);
  EXPECT_NE(late.exit_code, 0) << Dump(late);
  EXPECT_TRUE(Contains(late.err, "expired")) << Dump(late);
  EXPECT_EQ(GetRequest("builder", id).state(), "expired");
}

TEST_F(Quorum, OfficerKeyOnASecondTokenApproves) {
  CreateCodeSigningKey("release-card");
  const std::string id = NewSigningRequest("release-card");
  ASSERT_FALSE(id.empty());
  CommandResult dave =
      deployment_->Officer("dave", {"approve", id, "--yes"},
                           {{"SOFTHSM2_CONF", File("dave-softhsm2.conf")}}, File("dave.conf"));
  ASSERT_EQ(dave.exit_code, 0) << Dump(dave);
  ASSERT_EQ(Approve("alice", id).exit_code, 0);
  const v1::PendingRequestInfo info = GetRequest("builder", id);
  EXPECT_EQ(info.state(), "executed") << info.state_reason();
  ASSERT_EQ(info.quorum_size(), 1);
  ASSERT_EQ(info.quorum(0).approved_by_size(), 2);
  EXPECT_EQ(info.quorum(0).approved_by(0), "dave");
  EXPECT_TRUE(info.has_result());
  EXPECT_FALSE(info.result().sign().signature().empty());
}

// Runs last among the tests that need the original policy (gtest runs tests
// in declaration order within a suite).
TEST_F(Quorum, PolicyChangeThroughQuorumInvalidatesPendingRequests) {
  CreateCodeSigningKey("release-stale");
  const std::string stale = NewSigningRequest("release-stale");
  ASSERT_FALSE(stale.empty());

  std::string next = *original_policy_;
  const auto v = next.find("version: 1");
  ASSERT_NE(v, std::string::npos);
  next.replace(v, 10, "version: 2");
  next += "role { name: \"auditor\" description: \"Reads keys\" }\n";
  WriteFile(File("policy-v2.txtpb"), next);

  CommandResult check = Admin({"policy", "check", File("policy-v2.txtpb")});
  EXPECT_EQ(check.exit_code, 0) << Dump(check);
  EXPECT_TRUE(Contains(check.out, "auditor")) << check.out;

  WriteFile(File("broken.txtpb"), "version: 3\nrolez { }\n");
  CommandResult broken = Admin({"policy", "check", File("broken.txtpb")});
  EXPECT_NE(broken.exit_code, 0);
  EXPECT_TRUE(Contains(broken.err + broken.out, ":2:")) << Dump(broken);

  const std::string id = ExpectPending(
      Admin({"policy", "propose", File("policy-v2.txtpb"), "--note", "add auditor role"}));
  ASSERT_FALSE(id.empty());
  CommandResult shown = deployment_->Officer("alice", {"show", id});
  EXPECT_TRUE(Contains(shown.out, "auditor")) << shown.out;
  ASSERT_EQ(Approve("alice", id).exit_code, 0);
  CommandResult before = Admin({"policy", "show", "--json"});
  EXPECT_TRUE(Contains(before.out, "\"version\":1") || Contains(before.out, "\"version\":\"1\""))
      << before.out;
  ASSERT_EQ(Approve("carol", id).exit_code, 0);

  CommandResult show = Admin({"policy", "show"});
  ASSERT_EQ(show.exit_code, 0) << Dump(show);
  EXPECT_TRUE(Contains(show.out, "2")) << show.out;
  EXPECT_TRUE(Contains(show.out, "alice")) << show.out;
  EXPECT_TRUE(Contains(show.out, "carol")) << show.out;
  EXPECT_TRUE(Contains(show.out, id)) << show.out;

  const v1::PendingRequestInfo info = GetRequest("builder", stale);
  EXPECT_EQ(info.state(), "invalidated");
  EXPECT_TRUE(Contains(info.state_reason(), "policy")) << info.state_reason();
  CommandResult late = Approve("bob", stale);
  EXPECT_NE(late.exit_code, 0) << Dump(late);

  // The approval evidence of executed requests verifies offline against the
  // officers' keys in the policy.
  ASSERT_EQ(Admin({"keys", "pubkey", "audit", "--out", File("audit.pem")}).exit_code, 0);
  CommandResult audit =
      Exec({BinPath("custos-audit"), "verify", "--log", deployment_->dir() + "/state/audit.log",
            "--pubkey", File("audit.pem"), "--policy", deployment_->dir() + "/policy.txtpb",
            "--policy", File("policy-v2.txtpb")});
  EXPECT_EQ(audit.exit_code, 0) << Dump(audit);
  EXPECT_TRUE(Contains(audit.out, id)) << audit.out;
  EXPECT_TRUE(Contains(audit.out, "alice")) << audit.out;
}

}  // namespace
}  // namespace custos::testing
