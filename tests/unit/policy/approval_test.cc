// Approval statements: the canonical encoding, the strict parser, and
// verification against officer keys made and signatures made by the openssl
// CLI (an implementation that is not ours).
#include "custos/policy/approval.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace custos::policy {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;
using std::chrono::sys_days;

constexpr char kOpenssl[] = CUSTOS_OPENSSL_CLI;

ApprovalStatement Example() {
  ApprovalStatement s;
  s.request_id = "req-7f3a9c";
  for (std::size_t i = 0; i < s.request_digest.size(); ++i) {
    s.request_digest[i] = static_cast<std::uint8_t>(0xa0 + i);
  }
  s.decision = ApprovalDecision::kApprove;
  s.officer_id = "alice";
  s.time = sys_days{std::chrono::year{2025} / 3 / 14} + std::chrono::hours{9} +
           std::chrono::minutes{26} + seconds{53};
  return s;
}

constexpr char kExampleBytes[] =
    "custos-approval-v1\n"
    "request-id: req-7f3a9c\n"
    "request-digest: sha256:a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf\n"
    "decision: approve\n"
    "officer: alice\n"
    "time: 2025-03-14T09:26:53Z\n";

TEST(ApprovalStatementTest, CanonicalEncodingIsExactlyTheDocumentedBytes) {
  const auto bytes = CanonicalStatement(Example());
  ASSERT_TRUE(bytes.has_value());
  EXPECT_EQ(*bytes, kExampleBytes);
}

TEST(ApprovalStatementTest, RoundTrips) {
  for (ApprovalDecision d : {ApprovalDecision::kApprove, ApprovalDecision::kDeny}) {
    ApprovalStatement s = Example();
    s.decision = d;
    s.officer_id = "security.officer_2-b";
    const auto bytes = CanonicalStatement(s);
    ASSERT_TRUE(bytes.has_value());
    auto parsed = ParseStatement(*bytes);
    ASSERT_TRUE(std::holds_alternative<ApprovalStatement>(parsed))
        << std::get<ApprovalError>(parsed).message;
    EXPECT_EQ(std::get<ApprovalStatement>(parsed), s);
  }
}

TEST(ApprovalStatementTest, CanonicalRefusesWhatCannotBeEncodedUnambiguously) {
  for (const char* bad : {"", "Alice", "al ice", "alice\n", "-alice", ".alice", "al:ice",
                          "alice\nofficer: mallory"}) {
    ApprovalStatement s = Example();
    s.officer_id = bad;
    EXPECT_FALSE(CanonicalStatement(s).has_value()) << bad;
    s = Example();
    s.request_id = bad;
    EXPECT_FALSE(CanonicalStatement(s).has_value()) << bad;
  }
  ApprovalStatement s = Example();
  s.request_id = std::string(kMaxIdLength, 'a');
  EXPECT_TRUE(CanonicalStatement(s).has_value());
  s.request_id.push_back('a');
  EXPECT_FALSE(CanonicalStatement(s).has_value());

  s = Example();
  s.time = std::chrono::sys_seconds{seconds{-1}};
  EXPECT_FALSE(CanonicalStatement(s).has_value());
  s.time = sys_days{std::chrono::year{10000} / 1 / 1};
  EXPECT_FALSE(CanonicalStatement(s).has_value());
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  const std::size_t pos = text.find(from);
  if (pos == std::string::npos) throw std::logic_error("test vector: no \"" + from + "\"");
  return text.replace(pos, from.size(), to);
}

struct StrictCase {
  const char* name;
  std::string bytes;
};

TEST(ApprovalStatementTest, StrictParseRejectsEverythingNotCanonical) {
  const std::string good = kExampleBytes;
  const std::string digest = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";
  const std::vector<StrictCase> cases = {
      {"empty", ""},
      {"prefix only", "custos-approval-v1\n"},
      {"other version", Replace(good, "-v1", "-v2")},
      {"no prefix", good.substr(19)},
      {"reordered fields", Replace(Replace(good, "decision: approve\nofficer: alice\n", ""),
                                   "time:", "officer: alice\ndecision: approve\ntime:")},
      {"duplicated field", Replace(good, "officer: alice\n", "officer: alice\nofficer: alice\n")},
      {"extra field", good + "note: hi\n"},
      {"extra space after colon", Replace(good, "officer: alice", "officer:  alice")},
      {"no space after colon", Replace(good, "officer: alice", "officer:alice")},
      {"trailing space", Replace(good, "officer: alice", "officer: alice ")},
      {"leading space", Replace(good, "officer: alice", " officer: alice")},
      {"CRLF", Replace(good, "officer: alice\n", "officer: alice\r\n")},
      {"CRLF everywhere",
       [&] {
         std::string out;
         for (char c : good) {
           if (c == '\n') out.push_back('\r');
           out.push_back(c);
         }
         return out;
       }()},
      {"missing final newline", good.substr(0, good.size() - 1)},
      {"two final newlines", good + "\n"},
      {"trailing NUL", good + std::string(1, '\0')},
      {"uppercase field name", Replace(good, "officer:", "Officer:")},
      {"uppercase hex",
       Replace(good, digest, "A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF")},
      {"bad hex", Replace(good, "a0a1", "g0a1")},
      {"short digest", Replace(good, digest, digest.substr(2))},
      {"long digest", Replace(good, digest, digest + "00")},
      {"other hash", Replace(good, "sha256:", "sha512:")},
      {"uppercase decision", Replace(good, "approve", "APPROVE")},
      {"unknown decision", Replace(good, "approve", "abstain")},
      {"uppercase officer", Replace(good, "alice", "Alice")},
      {"officer with colon", Replace(good, "alice", "al:ice")},
      {"empty officer", Replace(good, "alice", "")},
      {"request id with slash", Replace(good, "req-7f3a9c", "req/7f3a9c")},
      {"request id starting with dot", Replace(good, "req-7f3a9c", ".req")},
      {"fractional seconds", Replace(good, "09:26:53Z", "09:26:53.000Z")},
      {"offset instead of Z", Replace(good, "09:26:53Z", "09:26:53+00:00")},
      {"lowercase t", Replace(good, "14T09", "14t09")},
      {"space instead of T", Replace(good, "14T09", "14 09")},
      {"February 30", Replace(good, "2025-03-14", "2025-02-30")},
      {"month 13", Replace(good, "2025-03-14", "2025-13-14")},
      {"hour 24", Replace(good, "T09:", "T24:")},
      {"leap second", Replace(good, ":53Z", ":60Z")},
      {"before 1970", Replace(good, "2025-03-14", "1969-12-31")},
      {"five-digit year", Replace(good, "2025-03-14", "12025-03-14")},
      {"signed digits", Replace(good, "T09:26", "T+9:26")},
      {"oversized", good + std::string(2000, 'x')},
  };
  for (const StrictCase& c : cases) {
    auto parsed = ParseStatement(c.bytes);
    ASSERT_TRUE(std::holds_alternative<ApprovalError>(parsed)) << c.name;
    EXPECT_EQ(std::get<ApprovalError>(parsed).code, ApprovalErrorCode::kMalformedStatement)
        << c.name;
    EXPECT_EQ(std::get<ApprovalError>(parsed).message.find('\n'), std::string::npos) << c.name;
  }
  // The control: the untouched vector parses.
  EXPECT_TRUE(std::holds_alternative<ApprovalStatement>(ParseStatement(good)));
}

TEST(ApprovalStatementTest, LeapDayAndEdgesOfTheDay) {
  for (const char* t : {"2024-02-29T00:00:00Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z"}) {
    const std::string bytes = Replace(kExampleBytes, "2025-03-14T09:26:53Z", t);
    auto parsed = ParseStatement(bytes);
    ASSERT_TRUE(std::holds_alternative<ApprovalStatement>(parsed)) << t;
    EXPECT_EQ(CanonicalStatement(std::get<ApprovalStatement>(parsed)), bytes);
  }
  EXPECT_TRUE(std::holds_alternative<ApprovalError>(
      ParseStatement(Replace(kExampleBytes, "2025-03-14", "2023-02-29"))));
}

// --- Signatures from the openssl CLI -------------------------------------------

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "custos-approval-XXXXXX").string();
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

void Shell(const std::string& command) {
  const std::string quiet = command + " 2>/dev/null";
  if (std::system(quiet.c_str()) != 0) throw std::runtime_error("command failed: " + command);
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

struct KeyKind {
  const char* name;
  const char* genpkey_args;
  const char* algorithm;  // OfficerPublicKey::algorithm()
};

const KeyKind kKinds[] = {
    {"ecdsa", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256", "ecdsa-p256"},
    {"ed25519", "-algorithm ED25519", "ed25519"},
    {"rsa", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048", "rsa-2048"},
};

class ApprovalVerifyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    for (const KeyKind& k : kKinds) {
      for (const char* who : {"alice", "bob"}) {
        const std::string key = *dir_ / (std::string(k.name) + "-" + who + ".pem");
        Shell(std::string(kOpenssl) + " genpkey " + k.genpkey_args + " -out " + key);
        Shell(std::string(kOpenssl) + " pkey -in " + key + " -pubout -out " + key + ".pub");
        Shell(std::string(kOpenssl) + " pkey -in " + key + " -pubout -outform DER -out " + key +
              ".der");
      }
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static std::string KeyPath(const KeyKind& k, const char* who) {
    return *dir_ / (std::string(k.name) + "-" + who + ".pem");
  }
  static std::string PublicPem(const KeyKind& k, const char* who) {
    return ReadFile(KeyPath(k, who) + ".pub");
  }

  // Signs `statement` with the openssl CLI, as an officer could by hand.
  static std::string CliSign(const KeyKind& k, const char* who, const std::string& statement) {
    const std::string in = *dir_ / "statement";
    const std::string sig = *dir_ / "sig";
    WriteFile(in, statement);
    const std::string key = KeyPath(k, who);
    const std::string openssl = kOpenssl;
    if (std::string_view(k.name) == "ed25519") {
      Shell(openssl + " pkeyutl -sign -rawin -inkey " + key + " -in " + in + " -out " + sig);
    } else if (std::string_view(k.name) == "rsa") {
      Shell(openssl + " dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32" +
            " -sign " + key + " -out " + sig + " " + in);
    } else {
      Shell(openssl + " dgst -sha256 -sign " + key + " -out " + sig + " " + in);
    }
    return ReadFile(sig);
  }

  static std::chrono::system_clock::time_point Now() { return Example().time + seconds{20}; }

  static TempDir* dir_;
};
TempDir* ApprovalVerifyTest::dir_ = nullptr;

ApprovalErrorCode CodeOf(const std::variant<ApprovalStatement, ApprovalError>& v) {
  EXPECT_TRUE(std::holds_alternative<ApprovalError>(v));
  return std::get<ApprovalError>(v).code;
}

TEST_F(ApprovalVerifyTest, CliSignedApprovalsVerifyFromPemAndDer) {
  const std::string statement = kExampleBytes;
  for (const KeyKind& k : kKinds) {
    SCOPED_TRACE(k.name);
    const std::string sig = CliSign(k, "alice", statement);
    auto key = OfficerPublicKey::Parse(PublicPem(k, "alice"));
    ASSERT_TRUE(std::holds_alternative<OfficerPublicKey>(key))
        << std::get<ApprovalError>(key).message;
    EXPECT_EQ(std::get<OfficerPublicKey>(key).algorithm(), k.algorithm);
    EXPECT_EQ(std::get<OfficerPublicKey>(key).spki_der(), ReadFile(KeyPath(k, "alice") + ".der"));

    auto ok = VerifyApproval(statement, sig, PublicPem(k, "alice"), Now(), seconds{300});
    ASSERT_TRUE(std::holds_alternative<ApprovalStatement>(ok))
        << std::get<ApprovalError>(ok).message;
    EXPECT_EQ(std::get<ApprovalStatement>(ok), Example());
    EXPECT_EQ(CheckApprovalFor(std::get<ApprovalStatement>(ok), "req-7f3a9c",
                               Example().request_digest, "alice"),
              std::nullopt);

    auto der =
        VerifyApproval(statement, sig, ReadFile(KeyPath(k, "alice") + ".der"), Now(), seconds{300});
    EXPECT_TRUE(std::holds_alternative<ApprovalStatement>(der));
  }
}

TEST_F(ApprovalVerifyTest, RefusalsCarryTheRightReason) {
  const std::string statement = kExampleBytes;
  for (const KeyKind& k : kKinds) {
    SCOPED_TRACE(k.name);
    const std::string sig = CliSign(k, "alice", statement);
    const std::string pub = PublicPem(k, "alice");

    std::string flipped_sig = sig;
    flipped_sig[flipped_sig.size() / 2] ^= 0x01;
    EXPECT_EQ(CodeOf(VerifyApproval(statement, flipped_sig, pub, Now(), seconds{300})),
              ApprovalErrorCode::kBadSignature);

    // Still canonical, but not what was signed: another digest, a denial.
    std::string other_digest = Replace(statement, "a0a1", "a0a2");
    EXPECT_EQ(CodeOf(VerifyApproval(other_digest, sig, pub, Now(), seconds{300})),
              ApprovalErrorCode::kBadSignature);
    std::string denial = Replace(statement, "approve", "deny");
    EXPECT_EQ(CodeOf(VerifyApproval(denial, sig, pub, Now(), seconds{300})),
              ApprovalErrorCode::kBadSignature);

    EXPECT_EQ(CodeOf(VerifyApproval(statement, sig, PublicPem(k, "bob"), Now(), seconds{300})),
              ApprovalErrorCode::kBadSignature);
    EXPECT_EQ(CodeOf(VerifyApproval(statement, "", pub, Now(), seconds{300})),
              ApprovalErrorCode::kBadSignature);

    // Time skew, both directions; the boundary is inclusive.
    EXPECT_EQ(
        CodeOf(VerifyApproval(statement, sig, pub, Example().time + seconds{301}, seconds{300})),
        ApprovalErrorCode::kTimeSkew);
    EXPECT_EQ(
        CodeOf(VerifyApproval(statement, sig, pub, Example().time - seconds{301}, seconds{300})),
        ApprovalErrorCode::kTimeSkew);
    EXPECT_TRUE(std::holds_alternative<ApprovalStatement>(
        VerifyApproval(statement, sig, pub, Example().time + seconds{300}, seconds{300})));

    // A correctly signed but malformed statement is refused as malformed.
    const std::string crlf = Replace(statement, "alice\n", "alice\r\n");
    EXPECT_EQ(CodeOf(VerifyApproval(crlf, CliSign(k, "alice", crlf), pub, Now(), seconds{300})),
              ApprovalErrorCode::kMalformedStatement);
  }
}

TEST_F(ApprovalVerifyTest, CheckApprovalForBindsRequestAndOfficer) {
  const ApprovalStatement s = Example();
  Sha256Digest other = s.request_digest;
  other[31] ^= 0xff;
  auto wrong_digest = CheckApprovalFor(s, "req-7f3a9c", other);
  ASSERT_TRUE(wrong_digest.has_value());
  EXPECT_EQ(wrong_digest->code, ApprovalErrorCode::kWrongRequest);
  EXPECT_NE(wrong_digest->message.find(DigestToString(other)), std::string::npos);

  auto wrong_id = CheckApprovalFor(s, "req-other", s.request_digest);
  ASSERT_TRUE(wrong_id.has_value());
  EXPECT_EQ(wrong_id->code, ApprovalErrorCode::kWrongRequest);

  auto wrong_officer = CheckApprovalFor(s, "req-7f3a9c", s.request_digest, "bob");
  ASSERT_TRUE(wrong_officer.has_value());
  EXPECT_EQ(wrong_officer->code, ApprovalErrorCode::kWrongOfficer);

  EXPECT_EQ(CheckApprovalFor(s, "req-7f3a9c", s.request_digest), std::nullopt);
}

TEST_F(ApprovalVerifyTest, UnsupportedKeysAreRefused) {
  const std::string p384 = *dir_ / "p384.pem";
  const std::string rsa1024 = *dir_ / "rsa1024.pem";
  const std::string x25519 = *dir_ / "x25519.pem";
  const std::string openssl = kOpenssl;
  Shell(openssl + " genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out " + p384);
  Shell(openssl + " genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out " + rsa1024);
  Shell(openssl + " genpkey -algorithm X25519 -out " + x25519);
  for (const std::string& key : {p384, rsa1024, x25519}) {
    Shell(openssl + " pkey -in " + key + " -pubout -out " + key + ".pub");
    auto parsed = OfficerPublicKey::Parse(ReadFile(key + ".pub"));
    ASSERT_TRUE(std::holds_alternative<ApprovalError>(parsed)) << key;
    EXPECT_EQ(std::get<ApprovalError>(parsed).code, ApprovalErrorCode::kUnsupportedKey);
  }
  for (const std::string& junk :
       {std::string(), std::string("not a key"), std::string("-----BEGIN PUBLIC KEY-----\n"),
        ReadFile(KeyPath(kKinds[0], "alice"))}) {  // a private key is not a public key
    EXPECT_EQ(CodeOf(VerifyApproval(kExampleBytes, "sig", junk, Now(), seconds{300})),
              ApprovalErrorCode::kUnsupportedKey);
  }
  std::string der = ReadFile(KeyPath(kKinds[0], "alice") + ".der");
  auto trailing = OfficerPublicKey::Parse(der + "x");
  EXPECT_TRUE(std::holds_alternative<ApprovalError>(trailing));
}

TEST_F(ApprovalVerifyTest, FingerprintIsSha256OfSpki) {
  auto key = OfficerPublicKey::Parse(PublicPem(kKinds[1], "alice"));
  ASSERT_TRUE(std::holds_alternative<OfficerPublicKey>(key));
  const std::string der = KeyPath(kKinds[1], "alice") + ".der";
  Shell(std::string(kOpenssl) + " dgst -sha256 -r -out " + der + ".sum " + der);
  const std::string sum = ReadFile(der + ".sum").substr(0, 64);
  EXPECT_EQ(std::get<OfficerPublicKey>(key).Fingerprint(), "sha256:" + sum);
}

}  // namespace
}  // namespace custos::policy
