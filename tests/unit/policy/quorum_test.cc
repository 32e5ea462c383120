// Tests for quorum.h and the quorum parts of the policy file: officers,
// quorum rules, quorum settings, admin rules, CheckVote, Count,
// ForPolicyChange and DiffPolicies. Officer keys are real keys made by OpenSSL
// (ECDSA P-256 and Ed25519 in the test, RSA-3072 by the openssl CLI at build
// time); statements are signed with them.
#include "custos/policy/quorum.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "custos/policy/approval.h"
#include "custos/policy/policy.h"

namespace custos::policy {
namespace {

using std::chrono::seconds;

// --- Keys ---------------------------------------------------------------------

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

EVP_PKEY* ReadPrivateKey(const char* path) {
  BIO* bio = BIO_new_file(path, "r");
  if (bio == nullptr) throw std::runtime_error(std::string("cannot open ") + path);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr) throw std::runtime_error(std::string("no private key in ") + path);
  return key;
}

class TestKey {
 public:
  enum class Kind { kP256, kEd25519, kRsa3072 };

  explicit TestKey(Kind kind) : kind_(kind) {
    EVP_PKEY* raw = nullptr;
    switch (kind) {
      case Kind::kP256:
        raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
        break;
      case Kind::kEd25519:
        raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
        break;
      case Kind::kRsa3072:
        raw = ReadPrivateKey(CUSTOS_TEST_RSA3072_KEY);  // openssl genpkey, at build time
        break;
    }
    if (raw == nullptr) throw std::runtime_error("keygen failed");
    key_.reset(raw);
    BIO* bio = BIO_new(BIO_s_mem());
    if (bio == nullptr || PEM_write_bio_PUBKEY(bio, key_.get()) != 1) {
      throw std::runtime_error("PEM_write_bio_PUBKEY failed");
    }
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio, &data);
    pem_.assign(data, static_cast<std::size_t>(len));
    BIO_free(bio);
  }

  const std::string& pem() const { return pem_; }

  // The scheme OfficerPublicKey::Verify expects for this key type.
  std::string Sign(std::string_view message) const {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX* pctx = nullptr;
    const EVP_MD* md = kind_ == Kind::kEd25519 ? nullptr : EVP_sha256();
    bool ok = EVP_DigestSignInit(ctx, &pctx, md, nullptr, key_.get()) == 1;
    if (ok && kind_ == Kind::kRsa3072) {
      ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) == 1;
    }
    std::size_t len = 0;
    const auto* msg = reinterpret_cast<const unsigned char*>(message.data());
    ok = ok && EVP_DigestSign(ctx, nullptr, &len, msg, message.size()) == 1;
    std::string sig(len, '\0');
    ok = ok && EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, msg,
                              message.size()) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) throw std::runtime_error("sign failed");
    sig.resize(len);
    return sig;
  }

 private:
  Kind kind_;
  PkeyPtr key_;
  std::string pem_;
};

struct Keys {
  TestKey alice{TestKey::Kind::kP256};
  TestKey bob{TestKey::Kind::kEd25519};
  TestKey carol{TestKey::Kind::kRsa3072};
  TestKey dave{TestKey::Kind::kP256};
  TestKey other{TestKey::Kind::kEd25519};
};

const Keys& K() {
  static const Keys* keys = new Keys();
  return *keys;
}

// A PEM block as a text-format string literal body.
std::string Quote(const std::string& pem) {
  std::string out;
  for (char c : pem) {
    if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string ReplaceAll(std::string text, const std::string& from, const std::string& to) {
  for (std::size_t pos = 0; (pos = text.find(from, pos)) != std::string::npos;) {
    text.replace(pos, from.size(), to);
    pos += to.size();
  }
  return text;
}

// Substitutes KEY_ALICE, KEY_BOB, KEY_CAROL, KEY_DAVE, KEY_OTHER.
std::string WithKeys(std::string text) {
  text = ReplaceAll(text, "KEY_ALICE", Quote(K().alice.pem()));
  text = ReplaceAll(text, "KEY_BOB", Quote(K().bob.pem()));
  text = ReplaceAll(text, "KEY_CAROL", Quote(K().carol.pem()));
  text = ReplaceAll(text, "KEY_DAVE", Quote(K().dave.pem()));
  return ReplaceAll(text, "KEY_OTHER", Quote(K().other.pem()));
}

Policy MustParse(const std::string& text) {
  auto result = Policy::Parse(text);
  if (auto* error = std::get_if<ParseError>(&result)) {
    throw std::runtime_error("policy does not parse: " + error->ToString("test.txtpb"));
  }
  return std::move(std::get<Policy>(result));
}

// The quorum part of the starter policy of `custos-init dev`, plus dave, an
// auditor, and a rule for the auditors.
const std::string kOfficers = R"txt(
officer {
  id: "alice" name: "Alice (dev officer)" groups: "officers"
  principals: "spiffe://dev.custos.test/officer/alice"
  public_key: "KEY_ALICE"
}
officer {
  id: "bob" name: "Bob" groups: "officers"
  principals: "spiffe://dev.custos.test/officer/bob"
  public_key: "KEY_BOB"
}
officer {
  id: "carol" name: "Carol" groups: "officers"
  principals: ["spiffe://dev.custos.test/officer/carol", "spiffe://laptop/carol*"]
  public_key: "KEY_CAROL"
}
officer {
  id: "dave" name: "Dave" groups: ["auditors"]
  principals: "spiffe://dev.custos.test/officer/dave"
  public_key: "KEY_DAVE"
}
)txt";

const std::string kRules = R"txt(
role { name: "admin" }
role { name: "builder" }
binding { principal: "spiffe://dev.custos.test/admin" roles: "admin" }
binding { principal: "spiffe://dev.custos.test/officer/*" roles: "builder" }
key_rule { name: "admins-manage-keys" roles: "admin" operations: [CREATE, READ]
           keys: "*" usages: "*" algorithms: "*" }
admin_rule { name: "admins-manage-policy" roles: "admin" operations: [READ_POLICY, PROPOSE_POLICY] }
quorum_rule { name: "ca-key-creation" operation: KEY_CREATE keys: "*" usages: ["ca", "ssh-ca"]
              group: "officers" threshold: 2 }
quorum_rule { name: "key-destruction" operation: KEY_DESTROY keys: "*" usages: "*"
              group: "officers" threshold: 2 }
quorum_rule { name: "policy-change" operation: POLICY_CHANGE group: "officers" threshold: 2 }
quorum_rule { name: "officer-change" operation: OFFICER_CHANGE group: "officers" threshold: 2 }
quorum_rule { name: "ca-issuance" operation: CERT_ISSUE profiles: "*" group: "officers"
              threshold: 2 }
quorum_rule { name: "release-signing" operation: SIGN keys: "release-*" usages: "*"
              group: "officers" threshold: 2 }
quorum_rule { name: "audit-destruction" operation: KEY_DESTROY keys: "audit-*" usages: "*"
              group: "auditors" threshold: 1 deny_rejects: false expiry_seconds: 600 }
quorum_rule { name: "tls-issuance" operation: CERT_ISSUE profiles: ["tls-*", "mtls"]
              group: "officers" threshold: 1 }
)txt";

std::string StarterText(int version = 1) {
  return WithKeys("version: " + std::to_string(version) + "\n" + kOfficers + kRules);
}

const Policy& Starter() {
  static const Policy* policy = new Policy(MustParse(StarterText()));
  return *policy;
}

std::vector<std::string> RuleNames(const std::vector<QuorumRequirement>& reqs) {
  std::vector<std::string> out;
  for (const auto& r : reqs) out.push_back(r.rule);
  return out;
}

using Names = std::vector<std::string>;

// --- QuorumFor ----------------------------------------------------------------

struct QuorumForCase {
  const char* name;
  QuorumQuery query;
  Names rules;
};

class QuorumForTest : public testing::TestWithParam<QuorumForCase> {};

TEST_P(QuorumForTest, MatchesByOperationKeysUsagesAndProfiles) {
  const QuorumForCase& c = GetParam();
  EXPECT_EQ(RuleNames(QuorumPolicy(Starter()).QuorumFor(c.query)), c.rules);
}

INSTANTIATE_TEST_SUITE_P(
    Quorum, QuorumForTest,
    testing::Values(
        QuorumForCase{
            "CreateCaKey", {QuorumOperation::kKeyCreate, "root", "ca", ""}, {"ca-key-creation"}},
        QuorumForCase{"CreateSshCaKey",
                      {QuorumOperation::kKeyCreate, "ssh", "ssh-ca", ""},
                      {"ca-key-creation"}},
        QuorumForCase{"CreateCodeSigningKeyIsFree",
                      {QuorumOperation::kKeyCreate, "release-1", "code-signing", ""},
                      {}},
        QuorumForCase{"DestroyAnyKey",
                      {QuorumOperation::kKeyDestroy, "build", "code-signing", ""},
                      {"key-destruction"}},
        QuorumForCase{"DestroyAuditKeyMatchesTwoRulesInPolicyOrder",
                      {QuorumOperation::kKeyDestroy, "audit-1", "audit", ""},
                      {"key-destruction", "audit-destruction"}},
        QuorumForCase{
            "StateChangeIsFree", {QuorumOperation::kKeyStateChange, "root", "ca", ""}, {}},
        QuorumForCase{"SignReleaseKey",
                      {QuorumOperation::kSign, "release-2024", "code-signing", ""},
                      {"release-signing"}},
        QuorumForCase{"SignOtherKeyIsFree",
                      {QuorumOperation::kSign, "build-release", "code-signing", ""},
                      {}},
        QuorumForCase{"SignKeyNameIsNotAPrefixMatchOfOperation",
                      {QuorumOperation::kKeyCreate, "release-1", "ca", ""},
                      {"ca-key-creation"}},
        QuorumForCase{
            "PolicyChange", {QuorumOperation::kPolicyChange, "", "", ""}, {"policy-change"}},
        QuorumForCase{
            "OfficerChange", {QuorumOperation::kOfficerChange, "", "", ""}, {"officer-change"}},
        QuorumForCase{"CertIssueAnyProfile",
                      {QuorumOperation::kCertIssue, "", "", "ssh-user"},
                      {"ca-issuance"}},
        QuorumForCase{"CertIssueTlsProfile",
                      {QuorumOperation::kCertIssue, "", "", "tls-server"},
                      {"ca-issuance", "tls-issuance"}},
        QuorumForCase{"CertIssueExactProfile",
                      {QuorumOperation::kCertIssue, "", "", "mtls"},
                      {"ca-issuance", "tls-issuance"}}),
    [](const testing::TestParamInfo<QuorumForCase>& info) { return std::string(info.param.name); });

TEST(QuorumFor, RequirementCarriesGroupThresholdDenyAndExpiry) {
  const QuorumPolicy q(Starter());
  const auto reqs = q.QuorumFor({QuorumOperation::kKeyDestroy, "audit-1", "audit", ""});
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0], (QuorumRequirement{"key-destruction", "officers", 2, true, seconds{86400}}));
  EXPECT_EQ(reqs[1], (QuorumRequirement{"audit-destruction", "auditors", 1, false, seconds{600}}));
}

TEST(QuorumFor, SettingsChangeDefaultExpiryAndSkew) {
  const Policy p = MustParse(StarterText() + R"txt(
quorum_settings { default_expiry_seconds: 3600 max_statement_skew_seconds: 60 }
)txt");
  const QuorumPolicy q(p);
  EXPECT_EQ(q.max_statement_skew(), seconds{60});
  const auto reqs = q.QuorumFor({QuorumOperation::kKeyDestroy, "audit-1", "audit", ""});
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].expiry, seconds{3600});
  EXPECT_EQ(reqs[1].expiry, seconds{600});  // the rule's own expiry wins
  EXPECT_EQ(QuorumPolicy(Starter()).max_statement_skew(), seconds{300});
}

TEST(QuorumFor, PolicyWithoutQuorumRulesNeedsNothing) {
  const Policy p = MustParse("version: 1\n");
  const QuorumPolicy q(p);
  EXPECT_TRUE(q.QuorumFor({QuorumOperation::kPolicyChange, "", "", ""}).empty());
  EXPECT_TRUE(q.officers().empty());
  EXPECT_EQ(q.FindOfficer("alice"), nullptr);
}

// --- Officers -----------------------------------------------------------------

TEST(Officers, ParsedWithKeysGroupsAndPrincipals) {
  const QuorumPolicy q(Starter());
  ASSERT_EQ(q.officers().size(), 4u);
  const Officer* alice = q.FindOfficer("alice");
  ASSERT_NE(alice, nullptr);
  EXPECT_EQ(alice->name, "Alice (dev officer)");
  EXPECT_EQ(alice->groups, Names{"officers"});
  EXPECT_EQ(alice->public_key.algorithm(), "ecdsa-p256");
  EXPECT_EQ(q.FindOfficer("bob")->public_key.algorithm(), "ed25519");
  EXPECT_EQ(q.FindOfficer("carol")->public_key.algorithm(), "rsa-3072");
  EXPECT_EQ(q.FindOfficer("carol")->principals.size(), 2u);
  EXPECT_EQ(q.FindOfficer("mallory"), nullptr);
  EXPECT_EQ(q.FindOfficer(""), nullptr);
}

TEST(Officers, OfficersOfPrincipalUsesGlobs) {
  const QuorumPolicy q(Starter());
  EXPECT_EQ(q.OfficersOfPrincipal("spiffe://dev.custos.test/officer/bob"), Names{"bob"});
  EXPECT_EQ(q.OfficersOfPrincipal("spiffe://laptop/carol-2"), Names{"carol"});
  EXPECT_EQ(q.OfficersOfPrincipal("spiffe://dev.custos.test/officer/bobby"), Names{});
  EXPECT_EQ(q.OfficersOfPrincipal("spiffe://dev.custos.test/builder"), Names{});
  EXPECT_EQ(q.OfficersOfPrincipal(""), Names{});
}

// --- Admin rules --------------------------------------------------------------

TEST(Admin, CheckAdminByRole) {
  const Policy& p = Starter();
  for (auto op : {AdminOperation::kReadPolicy, AdminOperation::kProposePolicy}) {
    const Decision yes = p.CheckAdmin("spiffe://dev.custos.test/admin", op);
    EXPECT_TRUE(yes.allowed);
    EXPECT_EQ(yes.rule, "admins-manage-policy");
    const Decision no = p.CheckAdmin("spiffe://dev.custos.test/officer/bob", op);
    EXPECT_FALSE(no.allowed);
    EXPECT_EQ(no.rule, kDefaultDenyRule);
    EXPECT_NE(no.reason.find(std::string(AdminOperationName(op))), std::string::npos) << no.reason;
    EXPECT_NE(no.reason.find("builder"), std::string::npos) << no.reason;
  }
  EXPECT_FALSE(p.CheckAdmin("", AdminOperation::kReadPolicy).allowed);
  const Decision nobody = p.CheckAdmin("spiffe://elsewhere", AdminOperation::kReadPolicy);
  EXPECT_NE(nobody.reason.find("no binding matches"), std::string::npos) << nobody.reason;
}

TEST(Admin, OnlyListedOperations) {
  const Policy p = MustParse(R"txt(version: 1
role { name: "auditor" }
binding { principal: "a" roles: "auditor" }
admin_rule { name: "auditors-read" roles: "auditor" operations: READ_POLICY }
)txt");
  EXPECT_TRUE(p.CheckAdmin("a", AdminOperation::kReadPolicy).allowed);
  EXPECT_FALSE(p.CheckAdmin("a", AdminOperation::kProposePolicy).allowed);
}

TEST(Admin, Names) {
  EXPECT_EQ(AdminOperationName(AdminOperation::kReadPolicy), "READ_POLICY");
  EXPECT_EQ(AdminOperationName(AdminOperation::kProposePolicy), "PROPOSE_POLICY");
  EXPECT_EQ(QuorumOperationName(QuorumOperation::kKeyCreate), "KEY_CREATE");
  EXPECT_EQ(QuorumOperationName(QuorumOperation::kKeyDestroy), "KEY_DESTROY");
  EXPECT_EQ(QuorumOperationName(QuorumOperation::kKeyStateChange), "KEY_STATE_CHANGE");
  EXPECT_EQ(QuorumOperationName(QuorumOperation::kPolicyChange), "POLICY_CHANGE");
  EXPECT_EQ(QuorumOperationName(QuorumOperation::kOfficerChange), "OFFICER_CHANGE");
  EXPECT_EQ(QuorumOperationName(QuorumOperation::kCertIssue), "CERT_ISSUE");
  EXPECT_EQ(QuorumOperationName(QuorumOperation::kSign), "SIGN");
  EXPECT_EQ(VoteErrorCodeName(VoteErrorCode::kMalformedStatement), "MALFORMED_STATEMENT");
  EXPECT_EQ(VoteErrorCodeName(VoteErrorCode::kUnknownOfficer), "UNKNOWN_OFFICER");
  EXPECT_EQ(VoteErrorCodeName(VoteErrorCode::kBadSignature), "BAD_SIGNATURE");
  EXPECT_EQ(VoteErrorCodeName(VoteErrorCode::kTimeSkew), "TIME_SKEW");
  EXPECT_EQ(VoteErrorCodeName(VoteErrorCode::kWrongRequest), "WRONG_REQUEST");
  EXPECT_EQ(VoteErrorCodeName(VoteErrorCode::kNotInGroup), "NOT_IN_GROUP");
  EXPECT_EQ(VoteErrorCodeName(VoteErrorCode::kOfficerIsRequester), "OFFICER_IS_REQUESTER");
}

// --- Validation ---------------------------------------------------------------

// Lines 1-11 are fixed: two officers of group "officers" (alice, bob). The
// case's text starts at line 12; the error's column is where `token` starts
// on line `line`.
const std::string kValidationHead = R"txt(version: 1
officer {
  id: "alice"
  groups: "officers"
  public_key: "KEY_ALICE"
}
officer {
  id: "bob"
  groups: "officers"
  public_key: "KEY_BOB"
}
)txt";

struct ValidationCase {
  const char* name;
  std::string tail;
  int line;
  std::string token;  // column = its first occurrence on `line`; "" = column 1
  const char* message_contains;
};

class ValidationTest : public testing::TestWithParam<ValidationCase> {};

TEST_P(ValidationTest, ReportsLineColumnAndMessage) {
  const ValidationCase& c = GetParam();
  const std::string text = WithKeys(kValidationHead + c.tail);
  auto result = Policy::Parse(text);
  ASSERT_TRUE(std::holds_alternative<ParseError>(result)) << "parsed: " << c.tail;
  const ParseError& error = std::get<ParseError>(result);
  // The expected column, from the text.
  std::size_t start = 0;
  for (int l = 1; l < c.line; ++l) start = text.find('\n', start) + 1;
  const std::string line = text.substr(start, text.find('\n', start) - start);
  const std::size_t at = c.token.empty() ? 0 : line.find(c.token);
  ASSERT_NE(at, std::string::npos) << "test: no " << c.token << " on line " << c.line;
  EXPECT_EQ(error.line, c.line) << error.ToString();
  EXPECT_EQ(error.column, static_cast<int>(at) + 1) << error.ToString();
  EXPECT_NE(error.message.find(c.message_contains), std::string::npos) << error.ToString();
  EXPECT_EQ(error.message.find('\n'), std::string::npos) << error.message;
}

const std::string kSignRule =
    "quorum_rule { name: \"r\" operation: SIGN keys: \"*\" usages: \"*\" ";

INSTANTIATE_TEST_SUITE_P(
    Quorum, ValidationTest,
    testing::Values(
        ValidationCase{"DuplicateOfficerId",
                       "officer { id: \"alice\" groups: \"x\" public_key: \"KEY_CAROL\" }\n", 12,
                       "\"alice\"", "duplicate officer id \"alice\" (first declared at line 3)"},
        ValidationCase{"InvalidOfficerId", "officer { id: \"Alice\" public_key: \"KEY_CAROL\" }\n",
                       12, "\"Alice\"", "officer id \"Alice\" is not valid"},
        ValidationCase{"OfficerWithoutId", "officer { public_key: \"KEY_CAROL\" }\n", 12, "",
                       "officer has no id"},
        ValidationCase{"BadKey", "officer { id: \"carol\" public_key: \"not a key\" }\n", 12,
                       "\"not a key\"", "officer \"carol\" public_key: officer key: not a DER"},
        ValidationCase{"BadPemKey",
                       "officer { id: \"carol\"\n  public_key: \"-----BEGIN PUBLIC KEY-----\\nAAAA"
                       "\\n-----END PUBLIC KEY-----\\n\" }\n",
                       13, "\"-----BEGIN", "officer \"carol\" public_key"},
        ValidationCase{"MissingKey", "officer { id: \"carol\" groups: \"officers\" }\n", 12, "",
                       "officer \"carol\" has no public_key"},
        ValidationCase{"InvalidGroupName",
                       "officer { id: \"carol\" groups: \"Officers\" public_key: \"KEY_CAROL\" }\n",
                       12, "\"Officers\"", "officer \"carol\" group \"Officers\" is not valid"},
        ValidationCase{"EmptyPrincipal",
                       "officer { id: \"carol\" principals: \"\" public_key: \"KEY_CAROL\" }\n", 12,
                       "\"\"", "empty principal pattern"},
        ValidationCase{"UnknownGroup", kSignRule + "group: \"admins\" threshold: 1 }\n", 12,
                       "\"admins\"",
                       "names group \"admins\" that no officer is in (officers' "
                       "groups: officers)"},
        ValidationCase{"ThresholdLargerThanGroup",
                       kSignRule + "group: \"officers\" threshold: 3 }\n", 12, "3 }",
                       "quorum_rule \"r\" needs 3 approvals from group \"officers\" but only 2 "
                       "officers are in it"},
        ValidationCase{"ThresholdZero", kSignRule + "group: \"officers\" threshold: 0 }\n", 12,
                       "0 }", "threshold of at least 1"},
        ValidationCase{"ThresholdMissing", kSignRule + "group: \"officers\" }\n", 12, "",
                       "threshold of at least 1"},
        ValidationCase{"NoGroup", kSignRule + "threshold: 1 }\n", 12, "", "names no group"},
        ValidationCase{"NoOperation",
                       "quorum_rule { name: \"r\" group: \"officers\" threshold: 1 }\n", 12, "",
                       "quorum_rule \"r\" has no operation"},
        ValidationCase{"UnknownOperation",
                       "quorum_rule { name: \"r\" operation: SIGNING group: \"officers\" }\n", 12,
                       "SIGNING", "Unknown enumeration value"},
        ValidationCase{"SignWithoutKeys",
                       "quorum_rule { name: \"r\" operation: SIGN usages: \"*\"\n"
                       "              group: \"officers\" threshold: 1 }\n",
                       12, "", "(SIGN) lists no keys"},
        ValidationCase{"KeyCreateWithoutUsages",
                       "quorum_rule { name: \"r\" operation: KEY_CREATE keys: \"*\"\n"
                       "              group: \"officers\" threshold: 1 }\n",
                       12, "", "(KEY_CREATE) lists no usages"},
        ValidationCase{"BadKeyPattern",
                       "quorum_rule { name: \"r\" operation: SIGN keys: \"Release/*\" usages: "
                       "\"*\" group: \"officers\" threshold: 1 }\n",
                       12, "\"Release/*\"", "can never match"},
        ValidationCase{"UnknownUsage",
                       "quorum_rule { name: \"r\" operation: SIGN keys: \"*\" usages: [\"ca\", "
                       "\"tls\"] group: \"officers\" threshold: 1 }\n",
                       12, "\"tls\"", "unknown usage \"tls\""},
        ValidationCase{"KeysOnPolicyChange",
                       "quorum_rule { name: \"r\" operation: POLICY_CHANGE keys: \"*\" group: "
                       "\"officers\" threshold: 1 }\n",
                       12, "\"*\"", "(POLICY_CHANGE) cannot list keys"},
        ValidationCase{"ProfilesOnSign",
                       kSignRule + "profiles: \"tls\" group: \"officers\" threshold: 1 }\n", 12,
                       "\"tls\"", "(SIGN) cannot list profiles"},
        ValidationCase{"CertIssueWithoutProfiles",
                       "quorum_rule { name: \"r\" operation: CERT_ISSUE group: \"officers\" "
                       "threshold: 1 }\n",
                       12, "", "(CERT_ISSUE) lists no profiles"},
        ValidationCase{"DuplicateRuleName",
                       kSignRule + "group: \"officers\" threshold: 1 }\n" + kSignRule +
                           "group: \"officers\" threshold: 1 }\n",
                       13, "\"r\"", "duplicate quorum_rule name \"r\" (first defined at line 12)"},
        ValidationCase{"InvalidRuleName",
                       "quorum_rule { name: \"R 1\" operation: POLICY_CHANGE group: \"officers\" "
                       "threshold: 1 }\n",
                       12, "\"R 1\"", "quorum_rule name \"R 1\" is not valid"},
        ValidationCase{"ExpiryTooLong",
                       kSignRule + "group: \"officers\" threshold: 1 expiry_seconds: 99999999 }\n",
                       12, "99999999", "expiry_seconds 99999999 is more than"},
        ValidationCase{"SkewTooLarge",
                       "quorum_settings {\n  max_statement_skew_seconds: 100000\n}\n", 13, "100000",
                       "max_statement_skew_seconds 100000 is more than"},
        ValidationCase{"SettingsTwice", "quorum_settings { }\nquorum_settings { }\n", 13,
                       "quorum_settings", "specified multiple times"},
        ValidationCase{"AdminRuleUnknownRole",
                       "admin_rule { name: \"a\" roles: \"admin\" operations: READ_POLICY }\n", 12,
                       "\"admin\"", "admin_rule \"a\" names unknown role \"admin\""},
        ValidationCase{"AdminRuleNoOperations",
                       "role { name: \"admin\" }\nadmin_rule { name: \"a\" roles: \"admin\" }\n",
                       13, "", "admin_rule \"a\" lists no operations"},
        ValidationCase{"AdminRuleUnspecifiedOperation",
                       "role { name: \"admin\" }\nadmin_rule { name: \"a\" roles: \"admin\" "
                       "operations: [READ_POLICY, ADMIN_OPERATION_UNSPECIFIED] }\n",
                       13, "ADMIN_OPERATION_UNSPECIFIED",
                       "use READ_POLICY, PROPOSE_POLICY, MANAGE_CA"},
        ValidationCase{"AdminRuleKeyOperation",
                       "role { name: \"admin\" }\nadmin_rule { name: \"a\" roles: \"admin\" "
                       "operations: SIGN }\n",
                       13, "SIGN", "Unknown enumeration value"},
        ValidationCase{"DuplicateAdminRule",
                       "role { name: \"admin\" }\n"
                       "admin_rule { name: \"a\" roles: \"admin\" operations: READ_POLICY }\n"
                       "admin_rule { name: \"a\" roles: \"admin\" operations: READ_POLICY }\n",
                       14, "\"a\"", "duplicate admin_rule name \"a\""},
        ValidationCase{"UnknownOfficerField",
                       "officer { id: \"carol\" group: \"officers\" public_key: \"KEY_CAROL\" }\n",
                       12, "group", "no field named \"group\""}),
    [](const testing::TestParamInfo<ValidationCase>& info) {
      return std::string(info.param.name);
    });

TEST(Validation, OfficersAreOptionalUntilARuleNeedsThem) {
  auto result = Policy::Parse(
      "version: 1\nquorum_rule { name: \"p\" operation: POLICY_CHANGE group: \"officers\" "
      "threshold: 1 }\n");
  ASSERT_TRUE(std::holds_alternative<ParseError>(result));
  EXPECT_NE(std::get<ParseError>(result).message.find("no officer has a group"), std::string::npos)
      << std::get<ParseError>(result).message;
}

TEST(Validation, DenyRejectsDefaultsToTrue) {
  const Policy p = MustParse(WithKeys(kValidationHead + kSignRule +
                                      "group: \"officers\" threshold: 1 }\n"
                                      "quorum_rule { name: \"s\" operation: KEY_DESTROY keys: "
                                      "\"*\" usages: \"*\" group: \"officers\" threshold: 1 "
                                      "deny_rejects: true }\n"
                                      "quorum_rule { name: \"t\" operation: KEY_CREATE keys: "
                                      "\"*\" usages: \"*\" group: \"officers\" threshold: 2 "
                                      "deny_rejects: false }\n"));
  const QuorumPolicy q(p);
  EXPECT_TRUE(q.QuorumFor({QuorumOperation::kSign, "k", "ca", ""})[0].deny_rejects);
  EXPECT_TRUE(q.QuorumFor({QuorumOperation::kKeyDestroy, "k", "ca", ""})[0].deny_rejects);
  EXPECT_FALSE(q.QuorumFor({QuorumOperation::kKeyCreate, "k", "ca", ""})[0].deny_rejects);
}

// --- CheckVote ----------------------------------------------------------------

const std::chrono::sys_seconds kNow =
    std::chrono::sys_days{std::chrono::year{2026} / 3 / 14} + std::chrono::hours{10};

Sha256Digest DigestOf(std::uint8_t seed) {
  Sha256Digest d{};
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<std::uint8_t>(seed + i);
  return d;
}

VoteContext ReleaseRequest() {
  VoteContext ctx;
  ctx.request_id = "rq-0123456789abcdef0123456789abcdef";
  ctx.request_digest = DigestOf(7);
  ctx.requester = "spiffe://dev.custos.test/builder";
  ctx.requirements =
      QuorumPolicy(Starter()).QuorumFor({QuorumOperation::kSign, "release-1", "code-signing", ""});
  return ctx;
}

ApprovalStatement StatementFor(const VoteContext& ctx, const std::string& officer,
                               ApprovalDecision decision = ApprovalDecision::kApprove) {
  return ApprovalStatement{ctx.request_id, ctx.request_digest, decision, officer, kNow};
}

std::string Bytes(const ApprovalStatement& s) {
  auto bytes = CanonicalStatement(s);
  if (!bytes) throw std::logic_error("test statement is not encodable");
  return *bytes;
}

const TestKey& KeyOf(const std::string& officer) {
  if (officer == "alice") return K().alice;
  if (officer == "bob") return K().bob;
  if (officer == "carol") return K().carol;
  if (officer == "dave") return K().dave;
  return K().other;
}

struct Vote {
  std::string statement;
  std::string signature;
};

Vote Signed(const ApprovalStatement& s, const TestKey* key = nullptr) {
  const std::string bytes = Bytes(s);
  return Vote{bytes, (key != nullptr ? *key : KeyOf(s.officer_id)).Sign(bytes)};
}

std::variant<VerifiedVote, VoteError> Check(const Vote& vote, const VoteContext& ctx,
                                            const Policy& policy = Starter()) {
  return QuorumPolicy(policy).CheckVote(vote.statement, vote.signature, ctx, kNow, seconds{300});
}

TEST(CheckVote, AcceptsEachKeyType) {
  const VoteContext ctx = ReleaseRequest();
  for (const std::string officer : {"alice", "bob", "carol"}) {
    for (auto decision : {ApprovalDecision::kApprove, ApprovalDecision::kDeny}) {
      const ApprovalStatement s = StatementFor(ctx, officer, decision);
      auto result = Check(Signed(s), ctx);
      ASSERT_TRUE(std::holds_alternative<VerifiedVote>(result))
          << officer << ": " << std::get<VoteError>(result).message;
      EXPECT_EQ(std::get<VerifiedVote>(result).statement, s);
    }
  }
  auto alice = Check(Signed(StatementFor(ctx, "alice")), ctx);
  EXPECT_EQ(std::get<VerifiedVote>(alice).officer_name, "Alice (dev officer)");
}

struct VoteErrorCase {
  const char* name;
  // Makes the vote (and may change the context); each case also breaks every
  // later check, to show that the checks run in the documented order.
  std::function<Vote(VoteContext&)> make;
  VoteErrorCode code;
  std::vector<std::string> message_contains;
};

class VoteErrorTest : public testing::TestWithParam<VoteErrorCase> {};

TEST_P(VoteErrorTest, FirstFailingCheckIsReported) {
  const VoteErrorCase& c = GetParam();
  VoteContext ctx = ReleaseRequest();
  const Vote vote = c.make(ctx);
  auto result = Check(vote, ctx);
  ASSERT_TRUE(std::holds_alternative<VoteError>(result)) << c.name;
  const VoteError& e = std::get<VoteError>(result);
  EXPECT_EQ(VoteErrorCodeName(e.code), VoteErrorCodeName(c.code)) << e.message;
  for (const auto& part : c.message_contains) {
    EXPECT_NE(e.message.find(part), std::string::npos) << "no \"" << part << "\" in " << e.message;
  }
  EXPECT_EQ(e.message.find('\n'), std::string::npos) << e.message;
}

// The requester of the cases below is alice, an officer; dave is not in group
// "officers". A statement for `other_id` names another request.
ApprovalStatement Later(ApprovalStatement s, int secs) {
  s.time += seconds{secs};
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    Quorum, VoteErrorTest,
    testing::Values(
        VoteErrorCase{"Malformed",
                      [](VoteContext& ctx) {
                        Vote v = Signed(StatementFor(ctx, "alice"));
                        v.statement += "\n";
                        v.signature = K().alice.Sign(v.statement);
                        return v;
                      },
                      VoteErrorCode::kMalformedStatement,
                      {"rq-0123456789abcdef0123456789abcdef", "malformed approval statement"}},
        VoteErrorCase{"Empty",
                      [](VoteContext&) {
                        return Vote{"", ""};
                      },
                      VoteErrorCode::kMalformedStatement,
                      {"malformed"}},
        VoteErrorCase{"UnknownOfficer",
                      [](VoteContext& ctx) {
                        // Also a bad signature, a wrong request and a skewed time.
                        ApprovalStatement s = Later(StatementFor(ctx, "mallory"), 3600);
                        s.request_id = "rq-other";
                        return Signed(s, &K().other);
                      },
                      VoteErrorCode::kUnknownOfficer,
                      {"officer mallory is not an officer of policy version 1",
                       "rq-0123456789abcdef0123456789abcdef"}},
        VoteErrorCase{"BadSignatureOtherKey",
                      [](VoteContext& ctx) {
                        // Also skewed and for another request.
                        ApprovalStatement s = Later(StatementFor(ctx, "bob"), 3600);
                        s.request_id = "rq-other";
                        return Signed(s, &K().other);
                      },
                      VoteErrorCode::kBadSignature,
                      {"officer bob", "ed25519"}},
        VoteErrorCase{"BadSignatureFlippedBit",
                      [](VoteContext& ctx) {
                        Vote v = Signed(StatementFor(ctx, "carol"));
                        v.signature[v.signature.size() / 2] ^= 0x01;
                        return v;
                      },
                      VoteErrorCode::kBadSignature,
                      {"officer carol", "rsa-3072"}},
        VoteErrorCase{"BadSignatureOverOtherStatement",
                      [](VoteContext& ctx) {
                        Vote v = Signed(StatementFor(ctx, "alice"));
                        v.signature =
                            Signed(StatementFor(ctx, "alice", ApprovalDecision::kDeny)).signature;
                        return v;
                      },
                      VoteErrorCode::kBadSignature,
                      {"officer alice"}},
        VoteErrorCase{"TimeSkewAhead",
                      [](VoteContext& ctx) {
                        // Also for another request, by the requester.
                        ctx.requester = "spiffe://dev.custos.test/officer/alice";
                        ApprovalStatement s = Later(StatementFor(ctx, "alice"), 301);
                        s.request_id = "rq-other";
                        return Signed(s);
                      },
                      VoteErrorCode::kTimeSkew,
                      {"officer alice", "301 s ahead"}},
        VoteErrorCase{
            "TimeSkewBehind",
            [](VoteContext& ctx) { return Signed(Later(StatementFor(ctx, "bob"), -900)); },
            VoteErrorCode::kTimeSkew,
            {"900 s behind"}},
        VoteErrorCase{"WrongRequestId",
                      [](VoteContext& ctx) {
                        // Also by dave, who is not in the group.
                        ApprovalStatement s = StatementFor(ctx, "dave");
                        s.request_id = "rq-ffffffffffffffffffffffffffffffff";
                        return Signed(s);
                      },
                      VoteErrorCode::kWrongRequest,
                      {"officer dave", "rq-ffffffffffffffffffffffffffffffff",
                       "rq-0123456789abcdef0123456789abcdef"}},
        VoteErrorCase{"WrongDigest",
                      [](VoteContext& ctx) {
                        ApprovalStatement s = StatementFor(ctx, "bob");
                        s.request_digest = DigestOf(8);
                        return Signed(s);
                      },
                      VoteErrorCode::kWrongRequest,
                      {"officer bob", "does not match request", "content differs"}},
        VoteErrorCase{"NotInGroup",
                      [](VoteContext& ctx) {
                        // Also the requester.
                        ctx.requester = "spiffe://dev.custos.test/officer/dave";
                        return Signed(StatementFor(ctx, "dave"));
                      },
                      VoteErrorCode::kNotInGroup,
                      {"officer dave is not in group officers required by rule release-signing "
                       "for request rq-0123456789abcdef0123456789abcdef"}},
        VoteErrorCase{"NotInAnyOfTwoGroups",
                      [](VoteContext& ctx) {
                        ctx.requirements = QuorumPolicy(Starter()).QuorumFor(
                            {QuorumOperation::kKeyDestroy, "audit-1", "audit", ""});
                        ctx.requirements[1].group = "others";
                        return Signed(StatementFor(ctx, "dave"));
                      },
                      VoteErrorCode::kNotInGroup,
                      {"officer dave is not in any group", "group officers of rule key-destruction",
                       "group others of rule audit-destruction"}},
        VoteErrorCase{"OfficerIsRequester",
                      [](VoteContext& ctx) {
                        ctx.requester = "spiffe://laptop/carol-x1";
                        return Signed(StatementFor(ctx, "carol"));
                      },
                      VoteErrorCode::kOfficerIsRequester,
                      {"officer carol made request rq-0123456789abcdef0123456789abcdef",
                       "spiffe://laptop/carol-x1"}}),
    [](const testing::TestParamInfo<VoteErrorCase>& info) { return std::string(info.param.name); });

TEST(CheckVote, OfficerInOneOfSeveralGroupsIsAccepted) {
  VoteContext ctx = ReleaseRequest();
  ctx.requirements =
      QuorumPolicy(Starter()).QuorumFor({QuorumOperation::kKeyDestroy, "audit-1", "audit", ""});
  for (const std::string officer : {"alice", "dave"}) {
    auto result = Check(Signed(StatementFor(ctx, officer)), ctx);
    EXPECT_TRUE(std::holds_alternative<VerifiedVote>(result))
        << std::get<VoteError>(result).message;
  }
}

TEST(CheckVote, SkewIsTheCallersMaximum) {
  const VoteContext ctx = ReleaseRequest();
  const Vote vote = Signed(Later(StatementFor(ctx, "alice"), 120));
  const QuorumPolicy q(Starter());
  EXPECT_TRUE(std::holds_alternative<VerifiedVote>(
      q.CheckVote(vote.statement, vote.signature, ctx, kNow, seconds{120})));
  EXPECT_TRUE(std::holds_alternative<VoteError>(
      q.CheckVote(vote.statement, vote.signature, ctx, kNow, seconds{119})));
}

// --- Count --------------------------------------------------------------------

std::vector<ApprovalStatement> Votes(
    const VoteContext& ctx, const std::vector<std::pair<std::string, ApprovalDecision>>& votes) {
  std::vector<ApprovalStatement> out;
  for (const auto& [officer, decision] : votes) out.push_back(StatementFor(ctx, officer, decision));
  return out;
}

constexpr ApprovalDecision kYes = ApprovalDecision::kApprove;
constexpr ApprovalDecision kNo = ApprovalDecision::kDeny;

TEST(Count, ThresholdReachedWithTwoDistinctOfficers) {
  const VoteContext ctx = ReleaseRequest();
  const QuorumPolicy q(Starter());
  Tally t = q.Count(ctx.requirements, ctx.requester, Votes(ctx, {{"alice", kYes}}));
  EXPECT_FALSE(t.approved);
  EXPECT_FALSE(t.rejected);
  EXPECT_EQ(t.approved_by, (std::vector<Names>{{"alice"}}));
  t = q.Count(ctx.requirements, ctx.requester, Votes(ctx, {{"alice", kYes}, {"carol", kYes}}));
  EXPECT_TRUE(t.approved);
  EXPECT_EQ(t.approved_by, (std::vector<Names>{{"alice", "carol"}}));
}

TEST(Count, SameOfficerTwiceCountsOnce) {
  const VoteContext ctx = ReleaseRequest();
  const Tally t = QuorumPolicy(Starter()).Count(
      ctx.requirements, ctx.requester, Votes(ctx, {{"bob", kYes}, {"bob", kYes}, {"bob", kYes}}));
  EXPECT_FALSE(t.approved);
  EXPECT_EQ(t.approved_by, (std::vector<Names>{{"bob"}}));
}

TEST(Count, OfficerRemovedFromPolicyOrGroupNoLongerCounts) {
  const VoteContext ctx = ReleaseRequest();
  const auto votes = Votes(ctx, {{"alice", kYes}, {"bob", kYes}});
  ASSERT_TRUE(QuorumPolicy(Starter()).Count(ctx.requirements, ctx.requester, votes).approved);

  // bob removed from the policy.
  std::string text = StarterText(2);
  const std::size_t begin = text.find("officer {\n  id: \"bob\"");
  text.erase(begin, text.find("}\n", begin) + 2 - begin);
  const Policy without_bob = MustParse(text);
  Tally t = QuorumPolicy(without_bob).Count(ctx.requirements, ctx.requester, votes);
  EXPECT_FALSE(t.approved);
  EXPECT_EQ(t.approved_by, (std::vector<Names>{{"alice"}}));

  // bob moved to the auditors.
  const Policy moved = MustParse(ReplaceAll(StarterText(2),
                                            "id: \"bob\" name: \"Bob\" groups: "
                                            "\"officers\"",
                                            "id: \"bob\" name: \"Bob\" groups: \"auditors\""));
  t = QuorumPolicy(moved).Count(ctx.requirements, ctx.requester, votes);
  EXPECT_FALSE(t.approved);
  EXPECT_EQ(t.approved_by, (std::vector<Names>{{"alice"}}));
}

TEST(Count, RequesterOfficerNeverCounts) {
  const VoteContext ctx = ReleaseRequest();
  const auto votes = Votes(ctx, {{"alice", kYes}, {"bob", kYes}, {"carol", kNo}});
  const Tally t = QuorumPolicy(Starter()).Count(ctx.requirements,
                                                "spiffe://dev.custos.test/officer/bob", votes);
  EXPECT_EQ(t.approved_by, (std::vector<Names>{{"alice"}}));
  EXPECT_FALSE(t.approved);
  EXPECT_TRUE(t.rejected);  // carol's denial still counts
  // The requester's own denial does not reject either.
  const Tally t2 = QuorumPolicy(Starter()).Count(ctx.requirements,
                                                 "spiffe://dev.custos.test/officer/carol", votes);
  EXPECT_TRUE(t2.approved);
  EXPECT_FALSE(t2.rejected);
}

TEST(Count, DenyRejects) {
  const VoteContext ctx = ReleaseRequest();
  const QuorumPolicy q(Starter());
  const Tally t = q.Count(ctx.requirements, ctx.requester,
                          Votes(ctx, {{"alice", kYes}, {"bob", kNo}, {"carol", kYes}}));
  EXPECT_TRUE(t.rejected);
  EXPECT_EQ(t.rejected_by, "bob");
  EXPECT_FALSE(t.approved);
  EXPECT_EQ(t.approved_by, (std::vector<Names>{{"alice", "carol"}}));

  // A denial from an officer outside the group does not reject.
  const Tally t2 = q.Count(ctx.requirements, ctx.requester,
                           Votes(ctx, {{"dave", kNo}, {"alice", kYes}, {"carol", kYes}}));
  EXPECT_FALSE(t2.rejected);
  EXPECT_TRUE(t2.approved);
}

TEST(Count, DenyIgnoredWithoutDenyRejects) {
  VoteContext ctx = ReleaseRequest();
  ctx.requirements =
      QuorumPolicy(Starter()).QuorumFor({QuorumOperation::kKeyDestroy, "audit-1", "audit", ""});
  const QuorumPolicy q(Starter());
  // dave denies under audit-destruction (deny_rejects false): no effect.
  Tally t = q.Count(ctx.requirements, ctx.requester,
                    Votes(ctx, {{"dave", kNo}, {"alice", kYes}, {"bob", kYes}}));
  EXPECT_FALSE(t.rejected);
  EXPECT_FALSE(t.approved);  // audit-destruction still needs one approval
  EXPECT_EQ(t.approved_by, (std::vector<Names>{{"alice", "bob"}, {}}));
  // An officer's first vote is the one that counts.
  t = q.Count(ctx.requirements, ctx.requester,
              Votes(ctx, {{"dave", kNo}, {"dave", kYes}, {"alice", kYes}, {"bob", kYes}}));
  EXPECT_FALSE(t.approved);
  t = q.Count(ctx.requirements, ctx.requester,
              Votes(ctx, {{"dave", kYes}, {"alice", kYes}, {"bob", kYes}}));
  EXPECT_TRUE(t.approved);
  EXPECT_EQ(t.approved_by, (std::vector<Names>{{"alice", "bob"}, {"dave"}}));
}

TEST(Count, NoRequirementsNoVotes) {
  const QuorumPolicy q(Starter());
  const Tally t = q.Count({}, "x", {});
  EXPECT_TRUE(t.approved_by.empty());
  EXPECT_FALSE(t.rejected);
  const VoteContext ctx = ReleaseRequest();
  EXPECT_FALSE(q.Count(ctx.requirements, ctx.requester, {}).approved);
}

// --- ForPolicyChange ----------------------------------------------------------

TEST(ForPolicyChange, OfficerChangeRulesOnlyWhenOfficersDiffer) {
  const Policy& current = Starter();
  const Names policy_only = {"policy-change"};
  const Names both = {"policy-change", "officer-change"};
  auto rules = [&](const std::string& proposed) {
    return RuleNames(QuorumPolicy::ForPolicyChange(current, MustParse(proposed)));
  };
  EXPECT_EQ(rules(StarterText(2)), policy_only);
  EXPECT_EQ(rules(StarterText(2) + "role { name: \"extra\" }\n"), policy_only);
  // Order of officers, groups and principals is not a change.
  EXPECT_EQ(rules(ReplaceAll(StarterText(2),
                             "principals: [\"spiffe://dev.custos.test/officer/carol\", "
                             "\"spiffe://laptop/carol*\"]",
                             "principals: [\"spiffe://laptop/carol*\", "
                             "\"spiffe://dev.custos.test/officer/carol\"]")),
            policy_only);
  // The same key written differently (a blank line after the PEM block): the
  // keys are compared by their SubjectPublicKeyInfo, not their text.
  EXPECT_EQ(rules(ReplaceAll(StarterText(2), Quote(K().bob.pem()), Quote(K().bob.pem()) + "\\n")),
            policy_only);

  EXPECT_EQ(rules(ReplaceAll(StarterText(2), "name: \"Bob\"", "name: \"Robert\"")), both);
  EXPECT_EQ(rules(ReplaceAll(StarterText(2), Quote(K().bob.pem()), Quote(K().other.pem()))), both);
  EXPECT_EQ(rules(ReplaceAll(StarterText(2), "groups: [\"auditors\"]",
                             "groups: [\"auditors\", \"officers\"]")),
            both);
  EXPECT_EQ(rules(ReplaceAll(StarterText(2), "spiffe://dev.custos.test/officer/dave",
                             "spiffe://dev.custos.test/officer/david")),
            both);
  EXPECT_EQ(
      rules(StarterText(2) + WithKeys("officer { id: \"eve\" groups: \"officers\" public_key: "
                                      "\"KEY_OTHER\" }\n")),
      both);
  // Judged by the current policy: a proposal without quorum rules still needs them.
  EXPECT_EQ(rules("version: 2\n"), both);
}

TEST(ForPolicyChange, NothingWhenTheCurrentPolicyHasNoRules) {
  const Policy bare = MustParse("version: 1\n");
  EXPECT_TRUE(QuorumPolicy::ForPolicyChange(bare, Starter()).empty());
}

// --- DiffPolicies -------------------------------------------------------------

TEST(DiffPolicies, EquivalentPoliciesApartFromVersionHaveNoDiff) {
  EXPECT_EQ(DiffPolicies(Starter(), MustParse(StarterText(7))), Names{});
  EXPECT_EQ(DiffPolicies(Starter(), Starter()), Names{});
}

TEST(DiffPolicies, OneLinePerChange) {
  std::string text = StarterText(2);
  // - key_rule, ~ quorum_rule threshold, + officer, ~ binding, + admin_rule,
  // ~ quorum_settings, ~ officer key, - role (and the rules naming it).
  text = ReplaceAll(text,
                    "key_rule { name: \"admins-manage-keys\" roles: \"admin\" operations: "
                    "[CREATE, READ]\n           keys: \"*\" usages: \"*\" algorithms: \"*\" }\n",
                    "");
  text = ReplaceAll(text,
                    "\"release-*\" usages: \"*\"\n              group: \"officers\" threshold: 2",
                    "\"release-*\" usages: \"*\"\n              group: \"officers\" threshold: 3");
  text = ReplaceAll(text, "roles: \"builder\" }", "roles: [\"builder\", \"admin\"] }");
  text = ReplaceAll(text, Quote(K().dave.pem()), Quote(K().other.pem()));
  text += WithKeys(
      "officer { id: \"eve\" name: \"Eve\" groups: [\"officers\", \"auditors\"] public_key: "
      "\"KEY_OTHER\" }\n"
      "admin_rule { name: \"builders-read\" roles: \"builder\" operations: READ_POLICY }\n"
      "quorum_settings { max_statement_skew_seconds: 60 }\n");
  const Policy proposed = MustParse(text);
  const QuorumPolicy cq(Starter()), pq(proposed);
  const Names expected = {
      "version: 1 -> 2",
      "~ binding spiffe://dev.custos.test/officer/*: roles [builder] -> [builder, admin]",
      "- key_rule admins-manage-keys",
      "~ officer dave: public_key ecdsa-p256 " + cq.FindOfficer("dave")->public_key.Fingerprint() +
          " -> ed25519 " + pq.FindOfficer("dave")->public_key.Fingerprint(),
      "+ officer eve (groups: auditors, officers)",
      "~ quorum_rule release-signing: threshold 2 -> 3",
      "~ quorum_settings: max_statement_skew_seconds 300 -> 60",
      "+ admin_rule builders-read (roles: [builder], operations: [READ_POLICY])",
  };
  EXPECT_EQ(DiffPolicies(Starter(), proposed), expected);

  // And back: the reverse change.
  const Names back = DiffPolicies(proposed, Starter());
  EXPECT_EQ(back.front(), "version: 2 -> 1");
  EXPECT_NE(std::find(back.begin(), back.end(), "- officer eve"), back.end());
  EXPECT_NE(std::find(back.begin(), back.end(),
                      "+ key_rule admins-manage-keys (roles: [admin], operations: [CREATE, READ], "
                      "keys: [*])"),
            back.end());
  EXPECT_NE(std::find(back.begin(), back.end(), "- admin_rule builders-read"), back.end());
}

TEST(DiffPolicies, RemovedOfficerAndRuleAndRole) {
  const Policy a = MustParse(WithKeys(kValidationHead + R"txt(role { name: "x" description: "old" }
role { name: "y" }
quorum_rule { name: "p" operation: POLICY_CHANGE group: "officers" threshold: 1 }
)txt"));
  const Policy b = MustParse(WithKeys(ReplaceAll(kValidationHead, "version: 1", "version: 5")
                                          .substr(0, kValidationHead.find("officer {\n  id: "
                                                                          "\"bob\"")) +
                                      R"txt(role { name: "x" description: "new\nline" }
quorum_rule { name: "p" operation: POLICY_CHANGE group: "officers" threshold: 1
              deny_rejects: false expiry_seconds: 60 }
)txt"));
  const Names expected = {
      "version: 1 -> 5",
      "- role y",
      "~ role x: description old -> new\\x0aline",
      "- officer bob",
      "~ quorum_rule p: deny_rejects true -> false",
      "~ quorum_rule p: expiry_seconds 86400 -> 60",
  };
  EXPECT_EQ(DiffPolicies(a, b), expected);
}

}  // namespace
}  // namespace custos::policy
