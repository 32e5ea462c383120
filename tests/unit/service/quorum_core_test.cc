// The signing core's quorum flow against a real SoftHSM token, a real
// SQLite store and real officer keys (generated here; statements signed with
// OpenSSL as custos-officer would). Nothing is mocked; time is the core's
// injectable quorum clock so that expiry needs no sleeping.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "custos/policy/approval.h"
#include "custos/policy/pending_request.h"
#include "custos/service/core.h"

namespace custos::service {
namespace {

namespace v1 = custos::v1;

constexpr char kModule[] = CUSTOS_SOFTHSM2_MODULE;
constexpr char kAdmin[] = "spiffe://test.custos/admin";
constexpr char kBuilder[] = "spiffe://test.custos/builder";
constexpr char kOutsider[] = "spiffe://elsewhere/mallory";
constexpr char kAlicePrincipal[] = "spiffe://test.custos/officer/alice";
constexpr char kBobPrincipal[] = "spiffe://test.custos/officer/bob";

using PKey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

PKey NewOfficerKey() {
  return PKey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), EVP_PKEY_free);
}

std::string PublicPem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_PUBKEY(bio.get(), key);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string SignWith(EVP_PKEY* key, const std::string& message) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::size_t len = 0;
  EXPECT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key), 1);
  EXPECT_EQ(EVP_DigestSign(ctx.get(), nullptr, &len,
                           reinterpret_cast<const unsigned char*>(message.data()), message.size()),
            1);
  std::string sig(len, '\0');
  EXPECT_EQ(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                           reinterpret_cast<const unsigned char*>(message.data()), message.size()),
            1);
  sig.resize(len);
  return sig;
}

std::string Escaped(const std::string& pem) {
  std::string out;
  for (char c : pem) out += c == '\n' ? std::string("\\n") : std::string(1, c);
  return out;
}

bool Verify(const std::string& spki, const std::string& digest, const std::string& signature) {
  const auto* p = reinterpret_cast<const unsigned char*>(spki.data());
  PKey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())), EVP_PKEY_free);
  if (!key) return false;
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new(key.get(), nullptr), EVP_PKEY_CTX_free);
  return ctx && EVP_PKEY_verify_init(ctx.get()) == 1 &&
         EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) == 1 &&
         EVP_PKEY_verify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                         signature.size(), reinterpret_cast<const unsigned char*>(digest.data()),
                         digest.size()) == 1;
}

bool Contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// Collects the core's own audit records.
class RecordingSink final : public AuditSink {
 public:
  Result<void> RecordDurably(const audit::RequestFields& record) override {
    std::lock_guard<std::mutex> lock(mu);
    records.push_back(record);
    return {};
  }
  std::mutex mu;
  std::vector<audit::RequestFields> records;
};

class QuorumCoreTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "custos-quorum-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    std::filesystem::create_directory(dir_ / "tokens");
    std::ofstream(dir_ / "softhsm2.conf") << "directories.tokendir = " << (dir_ / "tokens").string()
                                          << "\nobjectstore.backend = file\nlog.level = ERROR\n";
    setenv("SOFTHSM2_CONF", (dir_ / "softhsm2.conf").c_str(), 1);
    auto init = pkcs11::InitToken(kModule, "custos-quorum-test", pkcs11::SecretBytes("so-pin-1"),
                                  pkcs11::SecretBytes("user-pin-1"));
    ASSERT_TRUE(init.ok()) << init.error().message();
    for (const char* name : {"alice", "bob", "carol", "dave"})
      officers_.emplace(name, NewOfficerKey());
    now_ = static_cast<std::int64_t>(std::time(nullptr));
    OpenCore(PolicyText(7));
    sink_.records.clear();  // the bootstrap import
  }

  void TearDown() override {
    core_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string OfficerBlock(const std::string& id) {
    return "officer { id: \"" + id + "\" name: \"" + id +
           "\" groups: \"officers\" principals: " + "\"spiffe://test.custos/officer/" + id +
           "\" public_key: \"" + Escaped(PublicPem(officers_.at(id).get())) + "\" }\n";
  }

  // The test policy: 2 of alice, bob, carol for CA key creation, destruction,
  // release-* signing and policy changes. Alice is also an admin (to test
  // self-approval). `extra` is appended.
  std::string PolicyText(int version, const std::string& extra = "") {
    std::string text = "version: " + std::to_string(version) + R"pb(
      role { name: "admin" }
      role { name: "builder" }
      role { name: "officer" }
      binding { principal: "spiffe://test.custos/admin" roles: "admin" }
      binding { principal: "spiffe://test.custos/builder" roles: "builder" }
      binding { principal: "spiffe://test.custos/officer/alice" roles: "admin" }
      binding { principal: "spiffe://test.custos/officer/*" roles: "officer" }
      key_rule {
        name: "admins-manage-keys"
        roles: "admin"
        operations: [ CREATE, READ, ROTATE, DISABLE, ENABLE, DESTROY, MARK_COMPROMISED ]
        keys: "*"
        usages: "*"
        algorithms: "*"
      }
      key_rule {
        name: "builders-sign-code"
        roles: "builder"
        operations: [ SIGN, READ ]
        keys: "*"
        usages: "code-signing"
        algorithms: "*"
      }
      quorum_rule {
        name: "ca-key-creation"
        operation: KEY_CREATE
        keys: "*"
        usages: "ca"
        group: "officers"
        threshold: 2
        expiry_seconds: 3600
      }
      quorum_rule {
        name: "key-destruction"
        operation: KEY_DESTROY
        keys: "*"
        usages: "*"
        group: "officers"
        threshold: 2
      }
      quorum_rule {
        name: "release-signing"
        operation: SIGN
        keys: "release-*"
        usages: "*"
        group: "officers"
        threshold: 2
      }
      quorum_rule { name: "policy-change" operation: POLICY_CHANGE group: "officers" threshold: 2 }
      quorum_settings { default_expiry_seconds: 86400 max_statement_skew_seconds: 300 }
      admin_rule {
        name: "admins-manage-policy"
        roles: "admin"
        operations: [ READ_POLICY, PROPOSE_POLICY ]
      }
    )pb";
    for (const char* id : {"alice", "bob", "carol"}) text += OfficerBlock(id);
    return text + extra;
  }

  void OpenCore(const std::string& policy_text, bool resume = true) {
    core_.reset();
    pkcs11::TokenConfig config;
    config.module_path = kModule;
    config.token = "custos-quorum-test";
    config.pin = pkcs11::SecretBytes("user-pin-1");
    auto token = pkcs11::Token::Open(std::move(config));
    ASSERT_TRUE(token.ok()) << token.error().message();
    auto store = KeyStore::Open((dir_ / "custos.db").string());
    ASSERT_TRUE(store.ok()) << store.error();
    auto parsed = policy::Policy::Parse(policy_text);
    auto* error = std::get_if<policy::ParseError>(&parsed);
    ASSERT_EQ(error, nullptr) << error->ToString("test policy");
    CoreLimits limits;
    limits.quorum_sweep_interval = std::chrono::seconds(0);
    limits.clock = [this] { return now_.load(); };
    auto core =
        SigningCore::Create(std::move(token.value()), std::move(std::get<policy::Policy>(parsed)),
                            policy_text, std::move(store.value()), limits, logger_);
    ASSERT_TRUE(core.ok()) << core.error();
    core_ = std::move(core.value());
    sink_.records.clear();
    core_->SetAuditSink(&sink_);
    if (resume) {
      auto resumed = core_->ResumeQuorum();
      ASSERT_TRUE(resumed.ok()) << resumed.error();
    }
  }

  v1::Response Call(std::string_view principal, v1::Request req) {
    req.set_id(++next_id_);
    return core_->Handle(principal, "127.0.0.1:5555", req);
  }

  v1::Response CreateKey(std::string_view name, std::string_view usage,
                         std::string_view principal = kAdmin) {
    v1::Request req;
    auto* c = req.mutable_create_key();
    c->set_name(std::string(name));
    c->set_key_type("ec-p256");
    c->set_usage(std::string(usage));
    return Call(principal, req);
  }

  v1::Response SignDigest(std::string_view key, const std::string& digest,
                          const std::string& idempotency_key = "") {
    v1::Request req;
    req.set_idempotency_key(idempotency_key);
    req.set_note("release 2.4.1");
    auto* s = req.mutable_sign();
    s->set_key(std::string(key));
    s->set_algorithm("ecdsa-p256-sha256");
    s->set_digest(digest);
    s->set_file_name("app.tar.gz");
    return Call(kBuilder, req);
  }

  v1::PendingRequestInfo Get(const std::string& id, std::string_view principal = kAdmin) {
    v1::Request req;
    req.mutable_get_request()->set_id(id);
    auto resp = Call(principal, req);
    EXPECT_EQ(resp.status().code(), v1::OK) << resp.status().message();
    return resp.pending();
  }

  std::string KeyState(std::string_view key, int version = 1) {
    v1::Request req;
    req.mutable_get_key()->set_key(std::string(key));
    auto resp = Call(kAdmin, req);
    EXPECT_EQ(resp.status().code(), v1::OK) << resp.status().message();
    for (const auto& v : resp.get_key().versions()) {
      if (static_cast<int>(v.version()) == version) return v.state();
    }
    return "none";
  }

  // Officer `officer` votes on `info` (signed with `signer`'s key).
  v1::Response Vote(const std::string& officer, const v1::PendingRequestInfo& info,
                    policy::ApprovalDecision decision = policy::ApprovalDecision::kApprove,
                    const std::string& reason = "", std::int64_t time_offset = 0,
                    const std::string& signer = "") {
    policy::ApprovalStatement st;
    st.request_id = info.id();
    st.request_digest = policy::RequestDigest(info.canonical());
    st.decision = decision;
    st.officer_id = officer;
    st.time = std::chrono::sys_seconds(std::chrono::seconds(now_.load() + time_offset));
    auto text = policy::CanonicalStatement(st);
    EXPECT_TRUE(text.has_value());
    return Submit(*text, SignWith(officers_.at(signer.empty() ? officer : signer).get(), *text),
                  reason);
  }

  v1::Response Submit(const std::string& statement, const std::string& signature,
                      const std::string& reason = "", std::string_view principal = kBobPrincipal) {
    v1::Request req;
    auto* a = req.mutable_submit_approval();
    a->set_statement(statement);
    a->set_signature(signature);
    a->set_reason(reason);
    return Call(principal, req);
  }

  std::string Sha256(std::string_view data) {
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
    return std::string(reinterpret_cast<char*>(md), n);
  }

  void RawSql(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_ / "custos.db").c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }

  std::filesystem::path dir_;
  Logger logger_{LogLevel::kWarn};
  RecordingSink sink_;
  std::map<std::string, PKey> officers_;
  std::atomic<std::int64_t> now_{0};
  std::unique_ptr<SigningCore> core_;
  std::uint64_t next_id_ = 0;
};

TEST_F(QuorumCoreTest, CaKeyCreationNeedsTwoOfThree) {
  auto created = CreateKey("root-ca", "ca");
  ASSERT_EQ(created.status().code(), v1::PENDING_APPROVAL) << created.status().message();
  const v1::PendingRequestInfo& info = created.pending();
  EXPECT_TRUE(Contains(created.status().message(), info.id()));
  EXPECT_TRUE(Contains(created.status().message(),
                       "needs 2 approvals from group officers (rule ca-key-creation)"))
      << created.status().message();
  EXPECT_TRUE(Contains(created.status().message(), "custos request wait " + info.id()));
  EXPECT_EQ(info.state(), "pending");
  EXPECT_EQ(info.operation(), "create-key");
  EXPECT_EQ(info.key(), "root-ca@1");
  EXPECT_EQ(info.digest(), policy::DigestToString(policy::RequestDigest(info.canonical())));
  auto parsed = policy::ParsePendingRequest(info.canonical());
  ASSERT_TRUE(std::holds_alternative<policy::PendingRequestText>(parsed))
      << std::get<std::string>(parsed);
  const auto& text = std::get<policy::PendingRequestText>(parsed);
  EXPECT_EQ(text.Get("operation"), "create-key");
  EXPECT_EQ(text.Get("requester"), kAdmin);
  EXPECT_EQ(text.Get("quorum"), "ca-key-creation: 2 of group officers");
  EXPECT_EQ(text.Get("key"), "root-ca@1");
  EXPECT_EQ(text.Get("usage"), "ca");
  EXPECT_EQ(text.Get("policy-version"), "7");
  EXPECT_EQ(info.expires_at() - info.created_at(), 3600);
  EXPECT_EQ(KeyState("root-ca"), "pre-activation");

  // Enabling the pre-activation version is a key creation: no way around.
  v1::Request enable;
  enable.mutable_enable_key()->set_key("root-ca@1");
  EXPECT_EQ(Call(kAdmin, enable).status().code(), v1::PENDING_APPROVAL);

  auto first = Vote("alice", info);
  ASSERT_EQ(first.status().code(), v1::OK) << first.status().message();
  EXPECT_EQ(first.pending().state(), "pending");
  EXPECT_EQ(KeyState("root-ca"), "pre-activation") << "one approval must not be enough";

  auto second = Vote("bob", info);
  ASSERT_EQ(second.status().code(), v1::OK) << second.status().message();
  EXPECT_EQ(second.pending().state(), "executed") << second.pending().state_reason();
  EXPECT_FALSE(second.pending().has_result()) << "the result is for the requester only";
  EXPECT_EQ(KeyState("root-ca"), "active");
  ASSERT_EQ(second.pending().quorum_size(), 1);
  ASSERT_EQ(second.pending().quorum(0).approved_by_size(), 2);
  EXPECT_EQ(second.pending().quorum(0).approved_by(0), "alice");
  EXPECT_EQ(second.pending().quorum(0).approved_by(1), "bob");

  const auto mine = Get(info.id(), kAdmin);
  ASSERT_TRUE(mine.has_result());
  EXPECT_EQ(mine.result().status().code(), v1::OK);
  EXPECT_EQ(mine.result().create_key().active_version(), 1u);

  // The core's records: an intent and the outcome, each with both approvals.
  ASSERT_EQ(sink_.records.size(), 2u);
  EXPECT_EQ(sink_.records[0].kind, "intent");
  EXPECT_EQ(sink_.records[1].kind, "request");
  EXPECT_EQ(sink_.records[1].outcome, "OK");
  EXPECT_EQ(sink_.records[1].op, "create_key");
  EXPECT_EQ(sink_.records[1].quorum_request, info.id());
  ASSERT_EQ(sink_.records[1].approvals.size(), 2u);
  EXPECT_EQ(sink_.records[1].approvals[0].rfind("alice approve ", 0), 0u)
      << sink_.records[1].approvals[0];
  EXPECT_TRUE(Contains(sink_.records[1].approvals[0], info.digest()));
  // A vote after execution changes nothing.
  auto late = Vote("carol", info);
  EXPECT_EQ(late.status().code(), v1::FAILED_PRECONDITION);
  EXPECT_TRUE(Contains(late.status().message(), "executed")) << late.status().message();
}

TEST_F(QuorumCoreTest, RequesterCannotApproveOwnRequest) {
  auto created = CreateKey("alice-ca", "ca", kAlicePrincipal);
  ASSERT_EQ(created.status().code(), v1::PENDING_APPROVAL) << created.status().message();
  auto self = Vote("alice", created.pending());
  EXPECT_EQ(self.status().code(), v1::PERMISSION_DENIED);
  EXPECT_TRUE(Contains(self.status().message(), "OFFICER_IS_REQUESTER")) << self.status().message();
  EXPECT_TRUE(Contains(self.status().message(), created.pending().id()));
  EXPECT_EQ(Get(created.pending().id(), kAlicePrincipal).votes_size(), 0);
}

TEST_F(QuorumCoreTest, SameOfficerCountsOnce) {
  auto created = CreateKey("twice-ca", "ca");
  const auto& info = created.pending();
  ASSERT_EQ(Vote("alice", info).status().code(), v1::OK);
  auto again = Vote("alice", info, policy::ApprovalDecision::kApprove, "", /*time_offset=*/5);
  EXPECT_EQ(again.status().code(), v1::FAILED_PRECONDITION);
  EXPECT_TRUE(
      Contains(again.status().message(), "officer alice already voted (approve) on " + info.id()))
      << again.status().message();
  // The identical statement again is a retry: answered, counted once.
  auto after = Get(info.id());
  ASSERT_EQ(after.votes_size(), 1);
  auto retry = Submit(after.votes(0).statement(), after.votes(0).signature());
  EXPECT_EQ(retry.status().code(), v1::OK) << retry.status().message();
  EXPECT_EQ(retry.pending().state(), "pending");
  EXPECT_EQ(retry.pending().quorum(0).approved_by_size(), 1);
  EXPECT_EQ(KeyState("twice-ca"), "pre-activation");
}

TEST_F(QuorumCoreTest, ForgedAndReplayedStatementsAreRefused) {
  const auto a = CreateKey("a-ca", "ca").pending();
  const auto b = CreateKey("b-ca", "ca").pending();
  ASSERT_FALSE(a.id().empty());
  ASSERT_FALSE(b.id().empty());
  // Signed by bob's key but naming alice.
  auto forged = Vote("alice", a, policy::ApprovalDecision::kApprove, "", 0, "bob");
  EXPECT_EQ(forged.status().code(), v1::PERMISSION_DENIED);
  EXPECT_TRUE(Contains(forged.status().message(), "BAD_SIGNATURE")) << forged.status().message();
  // Alice's approval of A, with the request id changed to B: the signature
  // no longer matches; re-signed by alice it names A's digest.
  ASSERT_EQ(Vote("alice", a).status().code(), v1::OK);
  const auto approved = Get(a.id()).votes(0);
  std::string moved = approved.statement();
  moved.replace(moved.find(a.id()), a.id().size(), b.id());
  auto replay = Submit(moved, approved.signature());
  EXPECT_EQ(replay.status().code(), v1::PERMISSION_DENIED);
  EXPECT_TRUE(Contains(replay.status().message(), "BAD_SIGNATURE")) << replay.status().message();
  auto resigned = Submit(moved, SignWith(officers_.at("alice").get(), moved));
  EXPECT_EQ(resigned.status().code(), v1::PERMISSION_DENIED);
  EXPECT_TRUE(Contains(resigned.status().message(), "WRONG_REQUEST"))
      << resigned.status().message();
  // Unknown officer, stale time, and a non-statement.
  auto unknown = Vote("dave", a);
  EXPECT_TRUE(Contains(unknown.status().message(), "UNKNOWN_OFFICER"))
      << unknown.status().message();
  auto stale = Vote("carol", a, policy::ApprovalDecision::kApprove, "", -3600);
  EXPECT_TRUE(Contains(stale.status().message(), "TIME_SKEW")) << stale.status().message();
  auto junk = Submit("hello", "sig");
  EXPECT_EQ(junk.status().code(), v1::PERMISSION_DENIED);
  EXPECT_TRUE(Contains(junk.status().message(), "MALFORMED_STATEMENT")) << junk.status().message();
  EXPECT_EQ(Get(b.id()).votes_size(), 0);
  EXPECT_EQ(Get(a.id()).votes_size(), 1);
  EXPECT_EQ(KeyState("a-ca"), "pre-activation");
}

TEST_F(QuorumCoreTest, ExpiredRequestTakesNoApprovalsAndIsCleanedUp) {
  const auto info = CreateKey("late-ca", "ca").pending();
  ASSERT_EQ(Vote("alice", info).status().code(), v1::OK);
  now_ += 3601;
  auto late = Vote("bob", info);
  EXPECT_EQ(late.status().code(), v1::FAILED_PRECONDITION);
  EXPECT_TRUE(Contains(late.status().message(), "expired at")) << late.status().message();
  const auto after = Get(info.id());
  EXPECT_EQ(after.state(), "expired");
  EXPECT_EQ(KeyState("late-ca"), "destroyed");
  EXPECT_EQ(core_->Reconcile().versions.at("late-ca@1"), "absent");
}

TEST_F(QuorumCoreTest, SweepExpiresWaitingRequests) {
  const auto info = CreateKey("swept-ca", "ca").pending();
  now_ += 3601;
  core_->SweepQuorum();
  EXPECT_EQ(Get(info.id()).state(), "expired");
  EXPECT_EQ(KeyState("swept-ca"), "destroyed");
  ASSERT_FALSE(sink_.records.empty());
  EXPECT_EQ(sink_.records.back().quorum_request, info.id());
  EXPECT_EQ(sink_.records.back().outcome, "FAILED_PRECONDITION");
}

TEST_F(QuorumCoreTest, DenialRejectsAndDestroysThePreActivationKey) {
  const auto info = CreateKey("denied-ca", "ca").pending();
  auto denied = Vote("bob", info, policy::ApprovalDecision::kDeny, "no ticket for this CA");
  ASSERT_EQ(denied.status().code(), v1::OK) << denied.status().message();
  EXPECT_EQ(denied.pending().state(), "denied");
  EXPECT_TRUE(
      Contains(denied.pending().state_reason(), "denied by officer bob: no ticket for this CA"))
      << denied.pending().state_reason();
  EXPECT_EQ(KeyState("denied-ca"), "destroyed");
  auto late = Vote("alice", info);
  EXPECT_EQ(late.status().code(), v1::FAILED_PRECONDITION);
  EXPECT_TRUE(Contains(late.status().message(), "denied")) << late.status().message();
  v1::Request enable;
  enable.mutable_enable_key()->set_key("denied-ca@1");
  EXPECT_EQ(Call(kAdmin, enable).status().code(), v1::FAILED_PRECONDITION);
}

TEST_F(QuorumCoreTest, ReleaseSigningReleasesTheSignatureOnlyAfterApprovals) {
  ASSERT_EQ(CreateKey("release-app", "code-signing").status().code(), v1::OK);
  const std::string digest = Sha256("artifact");
  auto asked = SignDigest("release-app", digest);
  ASSERT_EQ(asked.status().code(), v1::PENDING_APPROVAL) << asked.status().message();
  EXPECT_FALSE(asked.has_sign());
  const auto info = asked.pending();
  auto parsed = policy::ParsePendingRequest(info.canonical());
  const auto& text = std::get<policy::PendingRequestText>(parsed);
  EXPECT_EQ(text.Get("key"), "release-app@1");
  EXPECT_EQ(text.Get("algorithm"), "ecdsa-p256-sha256");
  EXPECT_EQ(text.Get("file"), "app.tar.gz");
  EXPECT_EQ(text.Get("note"), "release 2.4.1");
  EXPECT_EQ(text.Get("digest")->size(), 64u);
  EXPECT_EQ(info.summary(), "sign release-app@1 ecdsa-p256-sha256 app.tar.gz");

  ASSERT_EQ(Vote("alice", info).status().code(), v1::OK);
  EXPECT_FALSE(Get(info.id(), kBuilder).has_result());
  auto done = Vote("carol", info);
  ASSERT_EQ(done.status().code(), v1::OK) << done.status().message();
  EXPECT_EQ(done.pending().state(), "executed") << done.pending().state_reason();
  EXPECT_FALSE(done.pending().has_result());

  const auto mine = Get(info.id(), kBuilder);
  ASSERT_TRUE(mine.has_result());
  const auto& sig = mine.result().sign();
  EXPECT_EQ(sig.key(), "release-app");
  EXPECT_EQ(sig.key_version(), 1u);
  v1::Request pub;
  pub.mutable_get_public_key()->set_key("release-app");
  const std::string spki = Call(kBuilder, pub).get_public_key().spki_der();
  EXPECT_TRUE(Verify(spki, digest, sig.signature()));
  // Officers see the request, never the result; others see nothing.
  EXPECT_FALSE(Get(info.id(), kBobPrincipal).has_result());
  v1::Request get;
  get.mutable_get_request()->set_id(info.id());
  auto hidden = Call(kOutsider, get);
  EXPECT_EQ(hidden.status().code(), v1::NOT_FOUND);
  // Signing with a key no rule covers is unchanged.
  ASSERT_EQ(CreateKey("plain", "code-signing").status().code(), v1::OK);
  EXPECT_EQ(SignDigest("plain", digest).status().code(), v1::OK);
}

TEST_F(QuorumCoreTest, IdempotencyKeyReturnsTheSameRequest) {
  ASSERT_EQ(CreateKey("release-idem", "code-signing").status().code(), v1::OK);
  const std::string digest = Sha256("idem");
  auto first = SignDigest("release-idem", digest, "retry-1");
  auto second = SignDigest("release-idem", digest, "retry-1");
  ASSERT_EQ(first.status().code(), v1::PENDING_APPROVAL);
  ASSERT_EQ(second.status().code(), v1::PENDING_APPROVAL);
  EXPECT_EQ(first.pending().id(), second.pending().id());
  // Another digest under the same key is another request.
  auto other = SignDigest("release-idem", Sha256("other"), "retry-1");
  EXPECT_NE(other.pending().id(), first.pending().id());
  ASSERT_EQ(Vote("alice", first.pending()).status().code(), v1::OK);
  ASSERT_EQ(Vote("bob", first.pending()).status().code(), v1::OK);
  auto after = SignDigest("release-idem", digest, "retry-1");
  ASSERT_EQ(after.status().code(), v1::OK) << after.status().message();
  EXPECT_FALSE(after.sign().signature().empty());
  EXPECT_EQ(after.sign().signature(),
            Get(first.pending().id(), kBuilder).result().sign().signature());
}

TEST_F(QuorumCoreTest, PolicyChangeThroughQuorum) {
  ASSERT_EQ(CreateKey("release-stale", "code-signing").status().code(), v1::OK);
  const auto stale = SignDigest("release-stale", Sha256("stale")).pending();
  ASSERT_FALSE(stale.id().empty());

  v1::Request bad;
  bad.mutable_propose_policy()->set_text("version: 8\nrolez {}\n");
  auto refused = Call(kAdmin, bad);
  EXPECT_EQ(refused.status().code(), v1::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(refused.status().message(), "proposed policy:2:"))
      << refused.status().message();
  v1::Request older;
  older.mutable_propose_policy()->set_text(PolicyText(7, "role { name: \"auditor\" }\n"));
  EXPECT_EQ(Call(kAdmin, older).status().code(), v1::FAILED_PRECONDITION);
  v1::Request not_admin;
  not_admin.mutable_propose_policy()->set_text(PolicyText(8));
  EXPECT_EQ(Call(kBuilder, not_admin).status().code(), v1::PERMISSION_DENIED);

  v1::Request propose;
  const std::string next = PolicyText(8, "role { name: \"auditor\" }\n");
  propose.mutable_propose_policy()->set_text(next);
  auto asked = Call(kAdmin, propose);
  ASSERT_EQ(asked.status().code(), v1::PENDING_APPROVAL) << asked.status().message();
  const auto info = asked.pending();
  EXPECT_EQ(info.operation(), "policy-change");
  EXPECT_EQ(info.payload(), next);
  const auto text =
      std::get<policy::PendingRequestText>(policy::ParsePendingRequest(info.canonical()));
  EXPECT_EQ(text.Get("proposed-version"), "8");
  EXPECT_EQ(text.Get("payload-sha256")->size(), 64u);
  EXPECT_FALSE(text.GetAll("policy-diff").empty());

  ASSERT_EQ(Vote("alice", info).status().code(), v1::OK);
  EXPECT_EQ(core_->policy_version(), 7u);
  auto done = Vote("carol", info);
  ASSERT_EQ(done.status().code(), v1::OK) << done.status().message();
  EXPECT_EQ(done.pending().state(), "executed") << done.pending().state_reason();
  EXPECT_EQ(core_->policy_version(), 8u);

  v1::Request show;
  show.mutable_get_policy();
  auto shown = Call(kAdmin, show);
  ASSERT_EQ(shown.status().code(), v1::OK) << shown.status().message();
  EXPECT_EQ(shown.policy().version(), 8u);
  EXPECT_EQ(shown.policy().text(), next);
  EXPECT_EQ(shown.policy().request_id(), info.id());
  EXPECT_EQ(shown.policy().proposed_by(), kAdmin);
  ASSERT_EQ(shown.policy().approved_by_size(), 2);
  EXPECT_EQ(shown.policy().approved_by(0), "alice");
  EXPECT_EQ(shown.policy().approved_by(1), "carol");
  EXPECT_EQ(Call(kBuilder, show).status().code(), v1::PERMISSION_DENIED);

  const auto invalidated = Get(stale.id(), kBuilder);
  EXPECT_EQ(invalidated.state(), "invalidated");
  EXPECT_TRUE(Contains(invalidated.state_reason(), "policy changed from v7 to v8"))
      << invalidated.state_reason();
  EXPECT_EQ(Vote("bob", stale).status().code(), v1::FAILED_PRECONDITION);

  // A restart keeps the store's policy; the file (v7, with a POLICY_CHANGE
  // rule in force) is ignored.
  OpenCore(PolicyText(7));
  EXPECT_EQ(core_->policy_version(), 8u);
  OpenCore(PolicyText(9));
  EXPECT_EQ(core_->policy_version(), 8u);
}

TEST_F(QuorumCoreTest, ListRequestsShowsEachPrincipalWhatItMaySee) {
  ASSERT_EQ(CreateKey("release-list", "code-signing").status().code(), v1::OK);
  const auto mine = SignDigest("release-list", Sha256("list")).pending();
  const auto theirs = CreateKey("list-ca", "ca").pending();
  auto list = [&](std::string_view principal, const std::string& state = "") {
    v1::Request req;
    req.mutable_list_requests()->set_state(state);
    auto resp = Call(principal, req);
    EXPECT_EQ(resp.status().code(), v1::OK) << resp.status().message();
    std::vector<std::string> ids;
    for (const auto& r : resp.list_requests().requests()) {
      ids.push_back(r.id());
      EXPECT_TRUE(r.payload().empty());
      EXPECT_FALSE(r.has_result());
    }
    return ids;
  };
  EXPECT_EQ(list(kBuilder), std::vector<std::string>{mine.id()});
  EXPECT_EQ(list(kBobPrincipal), (std::vector<std::string>{theirs.id(), mine.id()}));
  EXPECT_TRUE(list(kOutsider).empty());
  EXPECT_TRUE(list(kBuilder, "executed").empty());
  v1::Request bad;
  bad.mutable_list_requests()->set_state("sleeping");
  EXPECT_EQ(Call(kBuilder, bad).status().code(), v1::INVALID_ARGUMENT);
}

TEST_F(QuorumCoreTest, DestroyWaitsForQuorum) {
  ASSERT_EQ(CreateKey("doomed", "code-signing").status().code(), v1::OK);
  v1::Request destroy;
  destroy.mutable_destroy_key()->set_key("doomed@1");
  auto asked = Call(kAdmin, destroy);
  ASSERT_EQ(asked.status().code(), v1::PENDING_APPROVAL) << asked.status().message();
  EXPECT_EQ(KeyState("doomed"), "active");
  ASSERT_EQ(Vote("alice", asked.pending()).status().code(), v1::OK);
  ASSERT_EQ(Vote("bob", asked.pending()).status().code(), v1::OK);
  EXPECT_EQ(KeyState("doomed"), "destroyed");
  EXPECT_EQ(core_->Reconcile().versions.at("doomed@1"), "absent");
}

TEST_F(QuorumCoreTest, RestartResumesAnInterruptedExecutionExactlyOnce) {
  const auto info = CreateKey("resume-ca", "ca").pending();
  ASSERT_EQ(Vote("alice", info).status().code(), v1::OK);
  // A crash between "executing" and "executed": the row says executing.
  core_.reset();
  RawSql("UPDATE pending_requests SET state = 'executing' WHERE id = '" + info.id() + "'");
  OpenCore(PolicyText(7));
  EXPECT_EQ(KeyState("resume-ca"), "active");
  const auto after = Get(info.id());
  EXPECT_EQ(after.state(), "executed") << after.state_reason();
  ASSERT_TRUE(after.has_result());
  ASSERT_EQ(sink_.records.size(), 1u);  // the outcome; the intent was written before the crash
  EXPECT_EQ(sink_.records[0].quorum_request, info.id());
  EXPECT_EQ(sink_.records[0].outcome, "OK");
  // Once: another restart finds nothing to do.
  OpenCore(PolicyText(7));
  EXPECT_TRUE(sink_.records.empty());
  EXPECT_EQ(Get(info.id()).result().SerializeAsString(), after.result().SerializeAsString());
  EXPECT_EQ(KeyState("resume-ca"), "active");

  // A signature approved just before a crash (state approved) is made once.
  ASSERT_EQ(CreateKey("release-resume", "code-signing").status().code(), v1::OK);
  const auto sign = SignDigest("release-resume", Sha256("resume")).pending();
  core_.reset();
  RawSql("UPDATE pending_requests SET state = 'approved' WHERE id = '" + sign.id() + "'");
  OpenCore(PolicyText(7));
  // Approved without the votes the policy needs: back to pending, not run.
  EXPECT_EQ(Get(sign.id(), kBuilder).state(), "pending");
  ASSERT_EQ(Vote("alice", sign).status().code(), v1::OK);
  ASSERT_EQ(Vote("bob", sign).status().code(), v1::OK);
  const auto signed_once = Get(sign.id(), kBuilder);
  ASSERT_TRUE(signed_once.has_result());
  OpenCore(PolicyText(7));
  EXPECT_EQ(Get(sign.id(), kBuilder).result().sign().signature(),
            signed_once.result().sign().signature());
}

TEST_F(QuorumCoreTest, RemovedOfficerCannotVote) {
  // A v8 policy without bob is activated through quorum...
  std::string without_bob = PolicyText(8);
  const auto start = without_bob.find("officer { id: \"bob\"");
  without_bob.erase(start, without_bob.find('\n', start) - start + 1);
  v1::Request propose;
  propose.mutable_propose_policy()->set_text(without_bob);
  const auto change = Call(kAdmin, propose).pending();
  ASSERT_EQ(Vote("alice", change).status().code(), v1::OK);
  ASSERT_EQ(Vote("bob", change).status().code(), v1::OK);
  ASSERT_EQ(core_->policy_version(), 8u);
  // ...after which bob's votes are refused as unknown.
  const auto info = CreateKey("after-ca", "ca").pending();
  auto bob = Vote("bob", info);
  EXPECT_EQ(bob.status().code(), v1::PERMISSION_DENIED);
  EXPECT_TRUE(Contains(bob.status().message(), "UNKNOWN_OFFICER")) << bob.status().message();
}

}  // namespace
}  // namespace custos::service
