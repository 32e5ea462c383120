// OfficerSigner: officer keys from PEM files (plain and passphrase-protected)
// and from a second SoftHSM token through libp11. What it signs must verify
// with policy::VerifyApproval and with the openssl CLI (an external verifier).
#include "custos/client/officer_signer.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "custos/policy/approval.h"

namespace custos::client {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr char kOpenssl[] = CUSTOS_OPENSSL_CLI;
constexpr char kPkcs11Tool[] = CUSTOS_PKCS11_TOOL;
constexpr char kSofthsmUtil[] = CUSTOS_SOFTHSM2_UTIL;
constexpr char kModule[] = CUSTOS_SOFTHSM2_MODULE;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "custos-officer-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

int ShellStatus(const std::string& command) {
  const std::string quiet = command + " >/dev/null 2>&1";
  return std::system(quiet.c_str());
}

void Shell(const std::string& command) {
  if (ShellStatus(command) != 0) throw std::runtime_error("command failed: " + command);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

// A statement for "now", as the console will make it.
std::string Statement(const std::string& officer,
                      policy::ApprovalDecision decision = policy::ApprovalDecision::kApprove) {
  policy::ApprovalStatement s;
  s.request_id = "r-0123456789abcdef";
  for (std::size_t i = 0; i < s.request_digest.size(); ++i) {
    s.request_digest[i] = static_cast<std::uint8_t>(i * 7);
  }
  s.decision = decision;
  s.officer_id = officer;
  s.time = std::chrono::floor<seconds>(std::chrono::system_clock::now());
  return *policy::CanonicalStatement(s);
}

SecretSource Fixed(std::string secret, int* calls = nullptr) {
  return [secret, calls](std::string_view) -> std::optional<SecretText> {
    if (calls != nullptr) ++*calls;
    return SecretText(std::string(secret));
  };
}

SecretSource Cancel() {
  return [](std::string_view) -> std::optional<SecretText> { return std::nullopt; };
}

// VerifyApproval with the signer's own SPKI and with a PEM made by openssl.
void ExpectVerifies(const std::string& statement, const std::string& sig,
                    const std::string& public_key) {
  auto v = policy::VerifyApproval(statement, sig, public_key, std::chrono::system_clock::now(),
                                  seconds{300});
  ASSERT_TRUE(std::holds_alternative<policy::ApprovalStatement>(v))
      << std::get<policy::ApprovalError>(v).message;
}

// The openssl CLI as an independent verifier, with the commands docs/quorum.md
// gives officers.
bool CliVerifies(const TempDir& dir, const std::string& algorithm, const std::string& pub_pem,
                 const std::string& statement, const std::string& sig) {
  const std::string pub = dir / "verify.pub";
  const std::string in = dir / "verify.statement";
  const std::string sigf = dir / "verify.sig";
  WriteFile(pub, pub_pem);
  WriteFile(in, statement);
  WriteFile(sigf, sig);
  const std::string openssl = kOpenssl;
  std::string cmd;
  if (algorithm == "ed25519") {
    cmd = openssl + " pkeyutl -verify -rawin -pubin -inkey " + pub + " -in " + in + " -sigfile " +
          sigf;
  } else if (algorithm.rfind("rsa-", 0) == 0) {
    cmd = openssl + " dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32" +
          " -verify " + pub + " -signature " + sigf + " " + in;
  } else {
    cmd = openssl + " dgst -sha256 -verify " + pub + " -signature " + sigf + " " + in;
  }
  return ShellStatus(cmd) == 0;
}

struct KeyKind {
  const char* name;
  const char* genpkey_args;
  const char* algorithm;
};
const KeyKind kKinds[] = {
    {"ecdsa", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256", "ecdsa-p256"},
    {"ed25519", "-algorithm ED25519", "ed25519"},
    {"rsa", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048", "rsa-2048"},
};

TEST(OfficerSignerPemTest, SignsWhatVerifyApprovalAndOpensslAccept) {
  TempDir dir;
  for (const KeyKind& k : kKinds) {
    SCOPED_TRACE(k.name);
    const std::string key = dir / (std::string(k.name) + ".pem");
    Shell(std::string(kOpenssl) + " genpkey " + k.genpkey_args + " -out " + key);
    Shell(std::string(kOpenssl) + " pkey -in " + key + " -pubout -outform DER -out " + key +
          ".der");
    int calls = 0;
    auto signer = OfficerSigner::FromPemFile(key, Fixed("unused", &calls));
    ASSERT_TRUE(signer.ok()) << signer.error().message();
    EXPECT_EQ(calls, 0) << "an unencrypted key needs no passphrase";
    EXPECT_EQ(signer->algorithm(), k.algorithm);
    EXPECT_EQ(signer->PublicKeySpki(), ReadFile(key + ".der"));

    const std::string statement = Statement("alice");
    auto sig = signer->Sign(statement);
    ASSERT_TRUE(sig.ok()) << sig.error().message();
    ExpectVerifies(statement, *sig, signer->PublicKeySpki());
    EXPECT_TRUE(CliVerifies(dir, k.algorithm, signer->PublicKeyPem(), statement, *sig));

    // The external verifier is not a rubber stamp: a changed statement fails.
    const std::string denial = Statement("alice", policy::ApprovalDecision::kDeny);
    EXPECT_FALSE(CliVerifies(dir, k.algorithm, signer->PublicKeyPem(), denial, *sig));
  }
}

TEST(OfficerSignerPemTest, EncryptedPemAsksForThePassphraseOnce) {
  TempDir dir;
  const std::string key = dir / "alice.pem";
  Shell(std::string(kOpenssl) +
        " genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes-256-cbc"
        " -pass pass:correct-horse -out " +
        key);
  ASSERT_NE(ReadFile(key).find("ENCRYPTED PRIVATE KEY"), std::string::npos);

  int calls = 0;
  auto signer = OfficerSigner::FromPemFile(key, Fixed("correct-horse", &calls));
  ASSERT_TRUE(signer.ok()) << signer.error().message();
  EXPECT_EQ(calls, 1);
  const std::string statement = Statement("alice");
  auto sig = signer->Sign(statement);
  ASSERT_TRUE(sig.ok()) << sig.error().message();
  ExpectVerifies(statement, *sig, signer->PublicKeyPem());

  calls = 0;
  auto wrong = OfficerSigner::FromPemFile(key, Fixed("battery-staple", &calls));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(wrong.error().code(), ErrorCode::kInvalidConfig);
  EXPECT_NE(wrong.error().message().find("wrong passphrase"), std::string::npos)
      << wrong.error().message();
  EXPECT_EQ(wrong.error().message().find("battery"), std::string::npos);

  auto cancelled = OfficerSigner::FromPemFile(key, Cancel());
  ASSERT_FALSE(cancelled.ok());
  EXPECT_EQ(cancelled.error().code(), ErrorCode::kCancelled);

  auto no_source = OfficerSigner::FromPemFile(key, SecretSource());
  EXPECT_FALSE(no_source.ok());
}

TEST(OfficerSignerPemTest, RefusesUnusableKeysAndNonStatements) {
  TempDir dir;
  const std::string openssl = kOpenssl;
  const std::string p384 = dir / "p384.pem";
  Shell(openssl + " genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out " + p384);
  auto r = OfficerSigner::FromPemFile(p384, SecretSource());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("P-256"), std::string::npos) << r.error().message();

  const std::string pub_only = dir / "pub.pem";
  Shell(openssl + " pkey -in " + p384 + " -pubout -out " + pub_only);
  EXPECT_FALSE(OfficerSigner::FromPemFile(pub_only, SecretSource()).ok());
  auto missing = OfficerSigner::FromPemFile(dir / "missing.pem", SecretSource());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message().find("missing.pem"), std::string::npos);

  const std::string ed = dir / "ed.pem";
  Shell(openssl + " genpkey -algorithm ED25519 -out " + ed);
  auto signer = OfficerSigner::FromPemFile(ed, SecretSource());
  ASSERT_TRUE(signer.ok()) << signer.error().message();
  EXPECT_FALSE(signer->Sign("hello").ok());
  EXPECT_FALSE(signer->Sign("").ok());
  EXPECT_FALSE(signer->Sign("custos-approval-v1").ok());  // no newline: not the prefix
}

// --- PKCS#11: the officer's own token, beside a second unrelated token -------

constexpr char kPin[] = "officer-pin-1234";
constexpr char kSoPin[] = "officer-so-5678";

class OfficerSignerTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFile(dir_ / "softhsm2.conf", "directories.tokendir = " + (dir_ / "tokens") +
                                          "\nobjectstore.backend = file\nlog.level = ERROR\n");
    fs::create_directory(dir_ / "tokens");
    ::setenv("SOFTHSM2_CONF", (dir_ / "softhsm2.conf").c_str(), 1);
    const std::string util = kSofthsmUtil;
    // A decoy first, so that finding the officer's token by label matters.
    for (const char* label : {"custos", "officer"}) {
      Shell(util + " --init-token --free --label " + label + " --pin " + kPin + " --so-pin " +
            kSoPin);
    }
    const std::string tool = std::string(kPkcs11Tool) + " --module " + kModule +
                             " --token-label officer --login --pin " + kPin;
    Shell(tool + " --keypairgen --key-type EC:prime256v1 --label alice --id 01");
    Shell(tool + " --keypairgen --key-type rsa:2048 --label bob --id 02");
    // Same label on the decoy token: only token= tells them apart.
    Shell(std::string(kPkcs11Tool) + " --module " + kModule +
          " --token-label custos --login --pin " + kPin +
          " --keypairgen --key-type EC:prime256v1 --label alice --id 01");
  }

  TempDir dir_;
};

TEST_F(OfficerSignerTokenTest, KeyOnSecondTokenSignsAcceptedApprovals) {
  for (const auto& [uri, algorithm] : {
           std::pair<const char*, const char*>{"pkcs11:token=officer;object=alice", "ecdsa-p256"},
           {"pkcs11:token=officer;id=%02;type=private", "rsa-2048"},
       }) {
    SCOPED_TRACE(uri);
    int calls = 0;
    auto signer = OfficerSigner::FromPkcs11Uri(uri, Fixed(kPin, &calls), kModule);
    ASSERT_TRUE(signer.ok()) << signer.error().message();
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(signer->algorithm(), algorithm);
    for (int i = 0; i < 2; ++i) {  // the session stays usable
      const std::string statement = Statement("alice");
      auto sig = signer->Sign(statement);
      ASSERT_TRUE(sig.ok()) << sig.error().message();
      ExpectVerifies(statement, *sig, signer->PublicKeySpki());
      EXPECT_TRUE(CliVerifies(dir_, algorithm, signer->PublicKeyPem(), statement, *sig));
    }
  }
}

TEST_F(OfficerSignerTokenTest, PublicKeyIsTheOneOnTheToken) {
  auto signer =
      OfficerSigner::FromPkcs11Uri("pkcs11:token=officer;object=alice", Fixed(kPin), kModule);
  ASSERT_TRUE(signer.ok()) << signer.error().message();
  const std::string der = dir_ / "alice.der";
  Shell(std::string(kPkcs11Tool) + " --module " + kModule +
        " --token-label officer --read-object --type pubkey --label alice -o " + der);
  EXPECT_EQ(signer->PublicKeySpki(), ReadFile(der));
  // The decoy token's "alice" is another key.
  auto decoy =
      OfficerSigner::FromPkcs11Uri("pkcs11:token=custos;object=alice", Fixed(kPin), kModule);
  ASSERT_TRUE(decoy.ok()) << decoy.error().message();
  EXPECT_NE(decoy->PublicKeySpki(), signer->PublicKeySpki());
}

TEST_F(OfficerSignerTokenTest, RefusalsAreClear) {
  struct Case {
    const char* uri;
    const char* message_part;
  };
  const Case cases[] = {
      {"pkcs11:token=nobody;object=alice", "no token matching"},
      {"pkcs11:token=officer;object=mallory", "no private key matching"},
      {"pkcs11:object=alice", "several tokens"},
      {"pkcs11:token=officer", "object="},
      {"pkcs11:token=officer;object=alice?pin-value=1234", "pin-value"},
      {"pkcs11:token=officer;object=alice;slot-id=3", "slot-id"},
      {"pkcs11:token=officer;object=alice;type=public", "type"},
      {"pkcs11:token=officer;object=al%4", "percent"},
      {"file:///alice.pem", "pkcs11:"},
  };
  for (const Case& c : cases) {
    auto r = OfficerSigner::FromPkcs11Uri(c.uri, Fixed(kPin), kModule);
    ASSERT_FALSE(r.ok()) << c.uri;
    EXPECT_NE(r.error().message().find(c.message_part), std::string::npos)
        << c.uri << ": " << r.error().message();
  }

  auto wrong_pin = OfficerSigner::FromPkcs11Uri("pkcs11:token=officer;object=alice",
                                                Fixed("not-the-pin"), kModule);
  ASSERT_FALSE(wrong_pin.ok());
  EXPECT_NE(wrong_pin.error().message().find("wrong PIN"), std::string::npos)
      << wrong_pin.error().message();
  EXPECT_EQ(wrong_pin.error().message().find("not-the-pin"), std::string::npos);

  auto cancelled =
      OfficerSigner::FromPkcs11Uri("pkcs11:token=officer;object=alice", Cancel(), kModule);
  ASSERT_FALSE(cancelled.ok());
  EXPECT_EQ(cancelled.error().code(), ErrorCode::kCancelled);

  auto bad_module = OfficerSigner::FromPkcs11Uri("pkcs11:token=officer;object=alice", Fixed(kPin),
                                                 dir_ / "no-such-module.so");
  ASSERT_FALSE(bad_module.ok());
  EXPECT_NE(bad_module.error().message().find("cannot load"), std::string::npos);

  // module-path from the URI when the caller gives none.
  auto from_uri = OfficerSigner::FromPkcs11Uri(
      std::string("pkcs11:token=officer;object=alice?module-path=") + kModule, Fixed(kPin), "");
  EXPECT_TRUE(from_uri.ok()) << from_uri.error().message();
}

TEST(SecretTextTest, MoveLeavesNothingBehind) {
  std::string source = "s3cret";
  SecretText a(std::move(source));
  EXPECT_EQ(source.size(), 0u);
  EXPECT_STREQ(a.Reveal(), "s3cret");
  SecretText b(std::move(a));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the contract under test
  EXPECT_STREQ(a.Reveal(), "");
  EXPECT_EQ(b.size(), 6u);
  a = std::move(b);
  EXPECT_STREQ(a.Reveal(), "s3cret");
}

}  // namespace
}  // namespace custos::client
