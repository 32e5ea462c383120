// Tests for certificate profiles and CA settings in the policy (profile.h,
// Policy::profiles/FindProfile/ca_settings/CheckProfile, the CA admin
// operations, DiffPolicies for profiles): the starter profiles as custos-init
// writes them, validation errors with exact line:column, and decisions.
// The officer key that CERT_ISSUE rules need is a real Ed25519 key made by
// OpenSSL in the test.
#include "custos/policy/profile.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <chrono>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "custos/policy/policy.h"
#include "custos/policy/quorum.h"

namespace custos::policy {
namespace {

using std::chrono::seconds;

// A PEM public key on one line with "\n" escapes, for a text-format string.
std::string OfficerKeyText() {
  static const std::string text = [] {
    EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    if (key == nullptr) throw std::runtime_error("keygen failed");
    BIO* bio = BIO_new(BIO_s_mem());
    if (bio == nullptr || PEM_write_bio_PUBKEY(bio, key) != 1) {
      throw std::runtime_error("PEM_write_bio_PUBKEY failed");
    }
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio, &data);
    std::string out;
    for (long i = 0; i < len; ++i) {
      if (data[i] == '\n') {
        out += "\\n";
      } else {
        out += data[i];
      }
    }
    BIO_free(bio);
    EVP_PKEY_free(key);
    return out;
  }();
  return text;
}

// Lines 1-6 of every test policy.
std::string Head() {
  return "version: 1\n"
         "role { name: \"issuer\" }\n"
         "role { name: \"admin\" }\n"
         "binding { principal: \"spiffe://dev.custos.test/issuer\" roles: \"issuer\" }\n"
         "officer { id: \"alice\" groups: \"officers\" public_key: \"" +
         OfficerKeyText() +
         "\" }\n"
         "quorum_rule { name: \"ca-issuance\" operation: CERT_ISSUE profiles: \"sub-*\" "
         "group: \"officers\" threshold: 1 }\n";
}

Policy MustParse(const std::string& text) {
  auto result = Policy::Parse(text);
  if (auto* error = std::get_if<ParseError>(&result)) {
    throw std::runtime_error("policy does not parse: " + error->ToString("test.txtpb"));
  }
  return std::move(std::get<Policy>(result));
}

// The profiles and CA settings of the `custos-init dev` starter policy
// (docs/policy.md shows the same text).
const std::string kStarterProfiles = R"txt(
binding { principal: "spiffe://dev.custos.test/admin" roles: "admin" }
admin_rule { name: "admins-manage-cas" roles: "admin"
             operations: [MANAGE_CA, REVOKE_CERTIFICATE, READ_CERTIFICATES] }
admin_rule { name: "issuers-read-certs" roles: "issuer" operations: READ_CERTIFICATES }
profile {
  name: "tls-server"
  ca: "dev-intermediate"
  roles: "issuer"
  key_algorithms: ["ec-p256", "ec-p384", "rsa"]
  rsa_min_bits: 2048
  max_validity: "90d"  default_validity: "30d"
  key_usage: ["digitalSignature"]
  ext_key_usage: ["serverAuth"]
  san { dns_suffix: ".dev.custos.test" max_count: 10 }
  subject { mode: FROM_CSR allowed_from_csr: ["CN"] fixed { type: "O" value: "Custos Dev" } }
  crl_url: "http://ca.dev.custos.test/dev-intermediate.crl"
}
profile {
  name: "spiffe-svid"
  ca: "dev-intermediate"
  roles: "issuer"
  key_algorithms: ["ec-p256"]
  max_validity: "24h"  default_validity: "1h"
  key_usage: ["digitalSignature", "keyAgreement"]
  ext_key_usage: ["clientAuth", "serverAuth"]
  san { uri_prefix: "spiffe://dev.custos.test/" min_count: 1 max_count: 1 max_uri_count: 1 }
  subject { mode: EMPTY }
}
profile {
  name: "sub-ca"
  ca: "dev-root"
  roles: "admin"
  key_algorithms: ["ec-p256", "ec-p384"]
  max_validity: "5y"
  key_usage: ["keyCertSign", "cRLSign", "digitalSignature"]
  is_ca: true  path_len: 0
  subject { allowed_from_csr: ["CN", "O", "OU"] }
}
profile {
  name: "code-signing"
  ca: "dev-intermediate"
  roles: "admin"
  key_algorithms: ["ec-p256", "rsa"]
  rsa_min_bits: 3072
  max_validity: "1y"  default_validity: "90d"
  key_usage: ["digitalSignature"]
  ext_key_usage: ["codeSigning", "1.3.6.1.4.1.311.10.3.13"]
  san { email_domain: "Custos.Test" ip_range: ["10.0.0.0/8", "fd00::/8"] min_count: 0 }
  ocsp_url: "http://ocsp.dev.custos.test/"
  ca_issuers_url: "http://ca.dev.custos.test/dev-intermediate.cer"
  csr_extension_allowlist: "1.3.6.1.4.1.311.20.2"
  public_tls: false
}
ca_settings { crl_validity: "7d" crl_resign_before: "1d" }
)txt";

TEST(ProfileTest, StarterProfilesParse) {
  const Policy policy = MustParse(Head() + kStarterProfiles);
  const std::vector<CertProfile> profiles = policy.profiles();
  ASSERT_EQ(profiles.size(), 4u);
  EXPECT_EQ(profiles[0].name, "tls-server");
  EXPECT_EQ(profiles[1].name, "spiffe-svid");
  EXPECT_EQ(profiles[2].name, "sub-ca");
  EXPECT_EQ(profiles[3].name, "code-signing");

  const CertProfile* tls = policy.FindProfile("tls-server");
  ASSERT_NE(tls, nullptr);
  EXPECT_EQ(tls->ca, "dev-intermediate");
  EXPECT_EQ(tls->roles, std::vector<std::string>{"issuer"});
  EXPECT_EQ(tls->key_algorithms, (std::vector<std::string>{"ec-p256", "ec-p384", "rsa"}));
  EXPECT_EQ(tls->rsa_min_bits, 2048);
  EXPECT_EQ(tls->max_validity, seconds(90 * 86400));
  EXPECT_EQ(tls->default_validity, seconds(30 * 86400));
  EXPECT_EQ(tls->key_usage, std::vector<std::string>{"digitalSignature"});
  EXPECT_EQ(tls->key_usage_bits, kKuDigitalSignature);
  EXPECT_EQ(tls->ext_key_usages, std::vector<std::string>{"1.3.6.1.5.5.7.3.1"});
  EXPECT_FALSE(tls->is_ca);
  EXPECT_EQ(tls->path_len, -1);
  EXPECT_EQ(tls->san.dns_suffixes, std::vector<std::string>{".dev.custos.test"});
  EXPECT_EQ(tls->san.min_count, 1);
  EXPECT_EQ(tls->san.max_count, 10);
  EXPECT_EQ(tls->san.max_uri_count, -1);
  EXPECT_FALSE(tls->san.allow_wildcards);
  EXPECT_EQ(tls->subject.mode, CertSubjectMode::kFromCsr);
  EXPECT_EQ(tls->subject.allowed_from_csr, std::vector<std::string>{"CN"});
  ASSERT_EQ(tls->subject.fixed.size(), 1u);
  EXPECT_EQ(tls->subject.fixed[0].type, "O");
  EXPECT_EQ(tls->subject.fixed[0].value, "Custos Dev");
  EXPECT_EQ(tls->crl_urls,
            std::vector<std::string>{"http://ca.dev.custos.test/dev-intermediate.crl"});
  EXPECT_TRUE(tls->ocsp_urls.empty());
  EXPECT_FALSE(tls->public_tls);

  const CertProfile* svid = policy.FindProfile("spiffe-svid");
  ASSERT_NE(svid, nullptr);
  EXPECT_EQ(svid->max_validity, seconds(86400));
  EXPECT_EQ(svid->default_validity, seconds(3600));
  EXPECT_EQ(svid->key_usage_bits, kKuDigitalSignature | kKuKeyAgreement);
  EXPECT_EQ(svid->ext_key_usages,
            (std::vector<std::string>{"1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.1"}));
  EXPECT_EQ(svid->subject.mode, CertSubjectMode::kEmpty);
  EXPECT_TRUE(svid->subject.allowed_from_csr.empty());
  EXPECT_TRUE(svid->subject.fixed.empty());
  EXPECT_EQ(svid->san.uri_prefixes, std::vector<std::string>{"spiffe://dev.custos.test/"});
  EXPECT_EQ(svid->san.max_count, 1);
  EXPECT_EQ(svid->san.max_uri_count, 1);

  const CertProfile* sub = policy.FindProfile("sub-ca");
  ASSERT_NE(sub, nullptr);
  EXPECT_TRUE(sub->is_ca);
  EXPECT_EQ(sub->path_len, 0);
  EXPECT_EQ(sub->max_validity, seconds(5 * 365 * 86400));
  EXPECT_EQ(sub->default_validity, sub->max_validity);  // absent: max
  EXPECT_EQ(sub->key_usage_bits, kKuKeyCertSign | kKuCrlSign | kKuDigitalSignature);
  EXPECT_TRUE(sub->ext_key_usages.empty());
  EXPECT_EQ(sub->san.min_count, 0);  // no san block on a CA profile: no SANs
  EXPECT_EQ(sub->san.max_count, 0);
  EXPECT_EQ(sub->subject.allowed_from_csr, (std::vector<std::string>{"CN", "O", "OU"}));

  const CertProfile* code = policy.FindProfile("code-signing");
  ASSERT_NE(code, nullptr);
  EXPECT_EQ(code->rsa_min_bits, 3072);
  EXPECT_EQ(code->max_validity, seconds(365 * 86400));
  EXPECT_EQ(code->ext_key_usages,
            (std::vector<std::string>{"1.3.6.1.5.5.7.3.3", "1.3.6.1.4.1.311.10.3.13"}));
  EXPECT_EQ(code->san.email_domains, std::vector<std::string>{"custos.test"});  // lower case
  EXPECT_EQ(code->san.ip_ranges, (std::vector<std::string>{"10.0.0.0/8", "fd00::/8"}));
  EXPECT_EQ(code->san.min_count, 0);
  EXPECT_EQ(code->ocsp_urls, std::vector<std::string>{"http://ocsp.dev.custos.test/"});
  EXPECT_EQ(code->ca_issuers_urls,
            std::vector<std::string>{"http://ca.dev.custos.test/dev-intermediate.cer"});
  EXPECT_EQ(code->csr_extension_allowlist, std::vector<std::string>{"1.3.6.1.4.1.311.20.2"});
  // No subject block: FROM_CSR with CN only.
  EXPECT_EQ(code->subject.mode, CertSubjectMode::kFromCsr);
  EXPECT_EQ(code->subject.allowed_from_csr, std::vector<std::string>{"CN"});

  EXPECT_EQ(policy.FindProfile("tls"), nullptr);
  EXPECT_EQ(policy.FindProfile(""), nullptr);
  EXPECT_EQ(policy.ca_settings().crl_validity, seconds(7 * 86400));
  EXPECT_EQ(policy.ca_settings().crl_resign_before, seconds(86400));
}

TEST(ProfileTest, FindProfilePointsIntoThePolicy) {
  const Policy policy = MustParse(Head() + kStarterProfiles);
  EXPECT_EQ(policy.FindProfile("sub-ca"), policy.FindProfile("sub-ca"));
}

TEST(ProfileTest, DefaultsWithoutProfilesOrSettings) {
  const Policy policy = MustParse(Head());
  EXPECT_TRUE(policy.profiles().empty());
  EXPECT_EQ(policy.ca_settings().crl_validity, seconds(7 * 86400));
  EXPECT_EQ(policy.ca_settings().crl_resign_before, seconds(86400));
  const Policy partial = MustParse(Head() + "ca_settings { crl_validity: \"2d\" }\n");
  EXPECT_EQ(partial.ca_settings().crl_validity, seconds(2 * 86400));
  EXPECT_EQ(partial.ca_settings().crl_resign_before, seconds(86400));
}

TEST(ProfileTest, CheckProfile) {
  const Policy policy = MustParse(Head() + kStarterProfiles);
  const Decision allowed = policy.CheckProfile("spiffe://dev.custos.test/issuer", "tls-server");
  EXPECT_TRUE(allowed.allowed) << allowed.reason;
  EXPECT_EQ(allowed.rule, "profile:tls-server");
  EXPECT_NE(allowed.reason.find("role \"issuer\""), std::string::npos) << allowed.reason;

  const Decision admin_only = policy.CheckProfile("spiffe://dev.custos.test/issuer", "sub-ca");
  EXPECT_FALSE(admin_only.allowed);
  EXPECT_EQ(admin_only.rule, "profile:sub-ca");
  EXPECT_NE(admin_only.reason.find("(roles: issuer) may not issue under profile \"sub-ca\"; it "
                                   "allows roles admin only"),
            std::string::npos)
      << admin_only.reason;

  const Decision admin = policy.CheckProfile("spiffe://dev.custos.test/admin", "sub-ca");
  EXPECT_TRUE(admin.allowed) << admin.reason;

  const Decision stranger = policy.CheckProfile("spiffe://elsewhere/x", "tls-server");
  EXPECT_FALSE(stranger.allowed);
  EXPECT_EQ(stranger.rule, "profile:tls-server");
  EXPECT_NE(stranger.reason.find("(roles: none)"), std::string::npos) << stranger.reason;

  const Decision unknown = policy.CheckProfile("spiffe://dev.custos.test/issuer", "tls-client");
  EXPECT_FALSE(unknown.allowed);
  EXPECT_EQ(unknown.rule, "default-deny");
  EXPECT_NE(unknown.reason.find("no certificate profile named \"tls-client\" (profiles: "
                                "tls-server, spiffe-svid, sub-ca, code-signing)"),
            std::string::npos)
      << unknown.reason;

  const Decision anonymous = policy.CheckProfile("", "tls-server");
  EXPECT_FALSE(anonymous.allowed);
  EXPECT_EQ(anonymous.rule, "profile:tls-server");

  // Hostile names are escaped: one line, no forged quotes.
  const Decision hostile = policy.CheckProfile("a\nb\"", "x\ny");
  EXPECT_FALSE(hostile.allowed);
  EXPECT_EQ(hostile.reason.find('\n'), std::string::npos) << hostile.reason;
  EXPECT_NE(hostile.reason.find("\"x\\x0ay\""), std::string::npos) << hostile.reason;

  const Policy no_profiles = MustParse(Head());
  EXPECT_NE(no_profiles.CheckProfile("spiffe://dev.custos.test/issuer", "tls-server")
                .reason.find("the policy has no profiles"),
            std::string::npos);
}

TEST(ProfileTest, CaAdminOperations) {
  const Policy policy = MustParse(Head() + kStarterProfiles);
  const std::string admin = "spiffe://dev.custos.test/admin";
  const std::string issuer = "spiffe://dev.custos.test/issuer";
  for (AdminOperation op : {AdminOperation::kManageCa, AdminOperation::kRevokeCertificate,
                            AdminOperation::kReadCertificates}) {
    const Decision d = policy.CheckAdmin(admin, op);
    EXPECT_TRUE(d.allowed) << AdminOperationName(op) << ": " << d.reason;
    EXPECT_EQ(d.rule, "admins-manage-cas");
  }
  const Decision read = policy.CheckAdmin(issuer, AdminOperation::kReadCertificates);
  EXPECT_TRUE(read.allowed) << read.reason;
  EXPECT_EQ(read.rule, "issuers-read-certs");
  for (AdminOperation op : {AdminOperation::kManageCa, AdminOperation::kRevokeCertificate,
                            AdminOperation::kReadPolicy}) {
    const Decision d = policy.CheckAdmin(issuer, op);
    EXPECT_FALSE(d.allowed) << AdminOperationName(op);
    EXPECT_EQ(d.rule, "default-deny");
    EXPECT_NE(d.reason.find(std::string(AdminOperationName(op))), std::string::npos) << d.reason;
  }
  EXPECT_EQ(AdminOperationName(AdminOperation::kManageCa), "MANAGE_CA");
  EXPECT_EQ(AdminOperationName(AdminOperation::kRevokeCertificate), "REVOKE_CERTIFICATE");
  EXPECT_EQ(AdminOperationName(AdminOperation::kReadCertificates), "READ_CERTIFICATES");
}

TEST(ProfileTest, SubCaProfilesNeedQuorum) {
  // Covered through a glob ("sub-*" in Head()), and by "*".
  const std::string sub_ca =
      "profile { name: \"NAME\" ca: \"dev-root\" roles: \"admin\" key_algorithms: \"ec-p384\" "
      "max_validity: \"5y\" key_usage: \"keyCertSign\" is_ca: true }\n";
  auto with_name = [&](const std::string& name) {
    std::string text = sub_ca;
    text.replace(text.find("NAME"), 4, name);
    return text;
  };
  EXPECT_TRUE(std::holds_alternative<Policy>(Policy::Parse(Head() + with_name("sub-ca-2"))));
  auto refused = Policy::Parse(Head() + with_name("intermediate"));
  ASSERT_TRUE(std::holds_alternative<ParseError>(refused));
  const ParseError& e = std::get<ParseError>(refused);
  EXPECT_EQ(e.line, 7);
  EXPECT_EQ(e.column, static_cast<int>(with_name("intermediate").find("true")) + 1);
  EXPECT_NE(e.message.find("profile \"intermediate\" issues CA certificates (is_ca: true) but no "
                           "CERT_ISSUE quorum_rule covers it"),
            std::string::npos)
      << e.ToString();
  // A SIGN rule naming the profile does not count.
  std::string head = Head();
  head.replace(head.find("profiles: \"sub-*\""), 17, "profiles: \"*\"");
  EXPECT_TRUE(std::holds_alternative<Policy>(Policy::Parse(head + with_name("intermediate"))));
}

TEST(ProfileTest, QuorumRulesNameCaOperations) {
  // CA creation and CA revocation are judged as the pseudo-profiles
  // "ca:root", "ca:intermediate" and "ca:revoke"; rules may name them.
  for (const char* patterns : {"[\"ca:root\", \"ca:intermediate\", \"ca:revoke\"]", "\"ca:*\""}) {
    std::string head = Head();
    head.replace(head.find("profiles: \"sub-*\""), 17, std::string("profiles: ") + patterns);
    auto parsed = Policy::Parse(head);
    ASSERT_TRUE(std::holds_alternative<Policy>(parsed))
        << patterns << ": " << std::get<ParseError>(parsed).ToString();
    const Policy& policy = std::get<Policy>(parsed);
    QuorumPolicy quorum(policy);
    for (const char* op : {"ca:root", "ca:intermediate", "ca:revoke"}) {
      QuorumQuery query;
      query.operation = QuorumOperation::kCertIssue;
      query.profile = op;
      EXPECT_FALSE(quorum.QuorumFor(query).empty()) << patterns << " " << op;
    }
    QuorumQuery leaf;
    leaf.operation = QuorumOperation::kCertIssue;
    leaf.profile = "tls-server";
    EXPECT_TRUE(quorum.QuorumFor(leaf).empty()) << patterns;
  }
  std::string bad = Head();
  bad.replace(bad.find("profiles: \"sub-*\""), 17, "profiles: \"ca:Root\"");
  auto refused = Policy::Parse(bad);
  ASSERT_TRUE(std::holds_alternative<ParseError>(refused));
  EXPECT_NE(std::get<ParseError>(refused).message.find("can never match"), std::string::npos)
      << std::get<ParseError>(refused).ToString();
}

TEST(ProfileTest, ParsePolicyDuration) {
  const std::vector<std::pair<std::string, long long>> good = {
      {"0s", 0},
      {"1s", 1},
      {"90s", 90},
      {"5m", 300},
      {"12h", 43200},
      {"30d", 2592000},
      {"1y", 31536000},
      {"20y", 20LL * 31536000},
      {"100y", 3153600000},
      {"36500d", 3153600000},
  };
  for (const auto& [text, want] : good) {
    seconds out{-1};
    EXPECT_TRUE(ParsePolicyDuration(text, &out)) << text;
    EXPECT_EQ(out.count(), want) << text;
  }
  for (const char* text : {"", "d", "1", "1w", "01d", "-1d", "+1d", "1.5d", " 1d", "1d ", "1D",
                           "101y", "36501d", "99999999999999999999s", "1dd", "0x1d"}) {
    seconds out{-7};
    EXPECT_FALSE(ParsePolicyDuration(text, &out)) << text;
    EXPECT_EQ(out.count(), -7) << text;
  }
}

// ---------------------------------------------------------------------------
// Validation errors: line, column (of `token`'s first occurrence on that
// line; "" = column 1) and the gist of the message.

// A valid leaf profile on one line; `overrides` replace (or, when empty,
// remove) whole "field: value" entries.
std::string LeafProfile(const std::map<std::string, std::string>& overrides = {}) {
  const std::vector<std::pair<std::string, std::string>> fields = {
      {"name", "name: \"tls\""},
      {"ca", "ca: \"dev-intermediate\""},
      {"roles", "roles: \"issuer\""},
      {"key_algorithms", "key_algorithms: [\"ec-p256\", \"rsa\"]"},
      {"rsa_min_bits", ""},
      {"max_validity", "max_validity: \"90d\""},
      {"default_validity", "default_validity: \"30d\""},
      {"key_usage", "key_usage: \"digitalSignature\""},
      {"ext_key_usage", "ext_key_usage: \"serverAuth\""},
      {"is_ca", ""},
      {"path_len", ""},
      {"san", "san { dns_suffix: \".dev.custos.test\" }"},
      {"subject", ""},
      {"crl_url", ""},
      {"csr_extension_allowlist", ""},
  };
  std::string out = "profile {";
  for (const auto& [key, value] : fields) {
    auto it = overrides.find(key);
    const std::string& text = it == overrides.end() ? value : it->second;
    if (!text.empty()) out += " " + text;
  }
  return out + " }\n";
}

struct ValidationCase {
  const char* name;
  std::string tail;  // from line 7
  int line;
  std::string token;
  const char* message_contains;
};

class ProfileValidationTest : public testing::TestWithParam<ValidationCase> {};

TEST_P(ProfileValidationTest, ReportsLineColumnAndMessage) {
  const ValidationCase& c = GetParam();
  const std::string text = Head() + c.tail;
  auto result = Policy::Parse(text);
  ASSERT_TRUE(std::holds_alternative<ParseError>(result)) << "parsed: " << c.tail;
  const ParseError& error = std::get<ParseError>(result);
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

const std::string kCaProfile =
    "profile { name: \"sub-x\" ca: \"dev-root\" roles: \"admin\" key_algorithms: \"ec-p384\" "
    "max_validity: \"5y\" key_usage: [\"keyCertSign\", \"cRLSign\"] is_ca: true";

INSTANTIATE_TEST_SUITE_P(
    Profiles, ProfileValidationTest,
    testing::Values(
        ValidationCase{"NoName", LeafProfile({{"name", ""}}), 7, "", "profile has no name"},
        ValidationCase{"InvalidName", LeafProfile({{"name", "name: \"TLS\""}}), 7, "\"TLS\"",
                       "profile name \"TLS\" is not valid"},
        ValidationCase{"ColonInName", LeafProfile({{"name", "name: \"ca:root\""}}), 7,
                       "\"ca:root\"", "is not valid"},
        ValidationCase{"DuplicateName", LeafProfile() + LeafProfile(), 8, "\"tls\"",
                       "duplicate profile name \"tls\" (first defined at line 7)"},
        ValidationCase{"NoCa", LeafProfile({{"ca", ""}}), 7, "", "profile \"tls\" names no ca"},
        ValidationCase{"InvalidCaName", LeafProfile({{"ca", "ca: \"Dev Root\""}}), 7,
                       "\"Dev Root\"", "ca \"Dev Root\" is not a valid CA name"},
        ValidationCase{"NoRoles", LeafProfile({{"roles", ""}}), 7, "", "names no roles"},
        ValidationCase{"UnknownRole", LeafProfile({{"roles", "roles: [\"issuer\", \"builder\"]"}}),
                       7, "\"builder\"",
                       "profile \"tls\" names unknown role \"builder\" (declared roles: issuer, "
                       "admin)"},
        ValidationCase{"NoKeyAlgorithms", LeafProfile({{"key_algorithms", ""}}), 7, "",
                       "lists no key_algorithms (use rsa, ec-p256, ec-p384, ed25519)"},
        ValidationCase{"UnknownKeyAlgorithm",
                       LeafProfile({{"key_algorithms", "key_algorithms: [\"ec-p256\", \"dsa\"]"}}),
                       7, "\"dsa\"", "unknown key algorithm \"dsa\""},
        ValidationCase{"KeyTypeNameIsNotAlgorithm",
                       LeafProfile({{"key_algorithms", "key_algorithms: \"rsa-2048\""}}), 7,
                       "\"rsa-2048\"", "unknown key algorithm"},
        ValidationCase{"DuplicateKeyAlgorithm",
                       LeafProfile({{"key_algorithms", "key_algorithms: [\"rsa\", \"rsa\"]"}}), 7,
                       "\"rsa\"]", "lists key algorithm \"rsa\" twice"},
        ValidationCase{"RsaMinBitsTooSmall", LeafProfile({{"rsa_min_bits", "rsa_min_bits: 1024"}}),
                       7, "1024", "rsa_min_bits 1024 is outside 2048..16384"},
        ValidationCase{"RsaMinBitsTooLarge", LeafProfile({{"rsa_min_bits", "rsa_min_bits: 32768"}}),
                       7, "32768", "outside 2048..16384"},
        ValidationCase{"NoMaxValidity", LeafProfile({{"max_validity", ""}}), 7, "",
                       "has no max_validity"},
        ValidationCase{"BadMaxValidity",
                       LeafProfile({{"max_validity", "max_validity: \"90 days\""}}), 7,
                       "\"90 days\"", "max_validity \"90 days\" is not a duration"},
        ValidationCase{"WeeksAreNotADuration",
                       LeafProfile({{"max_validity", "max_validity: \"2w\""}}), 7, "\"2w\"",
                       "is not a duration"},
        ValidationCase{
            "ZeroMaxValidity",
            LeafProfile({{"max_validity", "max_validity: \"0d\""}, {"default_validity", ""}}), 7,
            "\"0d\"", "max_validity must be more than 0"},
        ValidationCase{"ZeroDefaultValidity",
                       LeafProfile({{"default_validity", "default_validity: \"0s\""}}), 7, "\"0s\"",
                       "default_validity must be more than 0"},
        ValidationCase{"DefaultOverMax",
                       LeafProfile({{"default_validity", "default_validity: \"2160h\""},
                                    {"max_validity", "max_validity: \"89d\""}}),
                       7, "\"2160h\"",
                       "default_validity \"2160h\" is longer than max_validity \"89d\""},
        ValidationCase{"NoKeyUsage", LeafProfile({{"key_usage", ""}}), 7, "",
                       "lists no key_usage (RFC 5280 names: digitalSignature"},
        ValidationCase{"UnknownKeyUsage",
                       LeafProfile({{"key_usage", "key_usage: \"digitalsignature\""}}), 7,
                       "\"digitalsignature\"", "unknown key usage \"digitalsignature\""},
        ValidationCase{
            "DuplicateKeyUsage",
            LeafProfile({{"key_usage", "key_usage: [\"digitalSignature\", \"digitalSignature\"]"}}),
            7, "\"digitalSignature\"]", "twice"},
        ValidationCase{
            "LeafWithKeyCertSign",
            LeafProfile({{"key_usage", "key_usage: [\"digitalSignature\", \"keyCertSign\"]"}}), 7,
            "\"digitalSignature\"", "may not have keyCertSign or cRLSign"},
        ValidationCase{"LeafWithPathLen", LeafProfile({{"path_len", "path_len: 7"}}), 7, "7 ",
                       "sets path_len but is not a CA profile"},
        ValidationCase{"UnknownEku",
                       LeafProfile({{"ext_key_usage", "ext_key_usage: \"serverauth\""}}), 7,
                       "\"serverauth\"",
                       "unknown extended key usage \"serverauth\" (use serverAuth, clientAuth"},
        ValidationCase{"BadEkuOid", LeafProfile({{"ext_key_usage", "ext_key_usage: \"1.3.06.1\""}}),
                       7, "\"1.3.06.1\"", "unknown extended key usage"},
        ValidationCase{"AnyEku", LeafProfile({{"ext_key_usage", "ext_key_usage: \"2.5.29.37.0\""}}),
                       7, "\"2.5.29.37.0\"", "anyExtendedKeyUsage"},
        ValidationCase{"DuplicateEkuByNameAndOid",
                       LeafProfile({{"ext_key_usage",
                                     "ext_key_usage: [\"serverAuth\", \"1.3.6.1.5.5.7.3.1\"]"}}),
                       7, "\"1.3.6.1.5.5.7.3.1\"", "twice"},
        ValidationCase{"LeafWithoutEku", LeafProfile({{"ext_key_usage", ""}}), 7, "",
                       "lists no ext_key_usage"},
        ValidationCase{"LeafWithoutSan", LeafProfile({{"san", ""}}), 7, "", "has no san rules"},
        ValidationCase{"SanAdmitsNothing", LeafProfile({{"san", "san { allow_wildcards: true }"}}),
                       7, "san {", "san needs at least 1 name(s) but admits none"},
        ValidationCase{"BadDnsSuffix",
                       LeafProfile({{"san", "san { dns_suffix: [\".ok.test\", \".dev..test\"] }"}}),
                       7, "\".dev..test\"", "san dns_suffix \".dev..test\" is not a domain name"},
        ValidationCase{"SingleLabelSuffix", LeafProfile({{"san", "san { dns_suffix: \"test\" }"}}),
                       7, "\"test\"", "at least two labels"},
        ValidationCase{"WildcardExactWithoutFlag",
                       LeafProfile({{"san", "san { dns_exact: \"*.a.test\" }"}}), 7, "\"*.a.test\"",
                       "wildcards need allow_wildcards: true"},
        ValidationCase{"BadCidrPrefix", LeafProfile({{"san", "san { ip_range: \"10.0.0.0/33\" }"}}),
                       7, "\"10.0.0.0/33\"", "san ip_range \"10.0.0.0/33\" is not CIDR"},
        ValidationCase{"BadCidrAddress", LeafProfile({{"san", "san { ip_range: \"10.0.0/8\" }"}}),
                       7, "\"10.0.0/8\"", "is not CIDR"},
        ValidationCase{"CidrWithoutPrefix",
                       LeafProfile({{"san", "san { ip_range: [\"fd00::/8\", \"fd00::1\"] }"}}), 7,
                       "\"fd00::1\"", "is not CIDR"},
        ValidationCase{"BadUriPrefix",
                       LeafProfile({{"san", "san { uri_prefix: \"dev.custos.test/\" }"}}), 7,
                       "\"dev.custos.test/\"", "is not an absolute URI"},
        ValidationCase{"BadEmailDomain",
                       LeafProfile({{"san", "san { email_domain: \"custos test\" }"}}), 7,
                       "\"custos test\"", "san email_domain \"custos test\" is not a domain"},
        ValidationCase{
            "MaxCountBelowMin",
            LeafProfile({{"san", "san { dns_suffix: \".a.test\" min_count: 50 max_count: 42 }"}}),
            7, "42", "san max_count 42 is less than min_count 50"},
        ValidationCase{"NegativeMinCount",
                       LeafProfile({{"san", "san { dns_suffix: \".a.test\" min_count: -3 }"}}), 7,
                       "-3", "min_count must be 0 or more"},
        ValidationCase{"MaxCountTooLarge",
                       LeafProfile({{"san", "san { dns_suffix: \".a.test\" max_count: 5000 }"}}), 7,
                       "5000", "at most 1000"},
        ValidationCase{"BadMaxUriCount",
                       LeafProfile({{"san", "san { dns_suffix: \".a.test\" max_uri_count: -5 }"}}),
                       7, "-5", "max_uri_count must be -1"},
        ValidationCase{"UnknownSubjectAttribute",
                       LeafProfile({{"subject",
                                     "subject { allowed_from_csr: [\"CN\", "
                                     "\"emailAddress\"] }"}}),
                       7, "\"emailAddress\"", "unknown attribute type \"emailAddress\""},
        ValidationCase{"DuplicateSubjectAttribute",
                       LeafProfile({{"subject", "subject { allowed_from_csr: [\"CN\", \"CN\"] }"}}),
                       7, "\"CN\"]", "lists \"CN\" twice"},
        ValidationCase{"UnknownSubjectMode", LeafProfile({{"subject", "subject { mode: FULL }"}}),
                       7, "FULL", "Unknown enumeration value"},
        ValidationCase{
            "EmptySubjectWithAllowed",
            LeafProfile({{"subject", "subject { mode: EMPTY allowed_from_csr: \"CN\" }"}}), 7,
            "\"CN\"", "subject mode EMPTY cannot have allowed_from_csr"},
        ValidationCase{"EmptySubjectWithFixed",
                       LeafProfile({{"subject",
                                     "subject { mode: EMPTY fixed { type: \"O\" value: "
                                     "\"x\" } }"}}),
                       7, "fixed", "cannot have fixed"},
        ValidationCase{"EmptySubjectNeedsSan",
                       LeafProfile({{"subject", "subject { mode: EMPTY }"},
                                    {"san", "san { dns_suffix: \".a.test\" min_count: 0 }"}}),
                       7, "san {", "needs san min_count of at least 1"},
        ValidationCase{"FixedUnknownType",
                       LeafProfile({{"subject", "subject { fixed { type: \"E\" value: \"x\" } }"}}),
                       7, "\"E\"", "fixed attribute type \"E\" is not known"},
        ValidationCase{
            "FixedBadCountry",
            LeafProfile({{"subject", "subject { fixed { type: \"C\" value: \"USA\" } }"}}), 7,
            "\"USA\"", "fixed C value \"USA\" must be two upper-case letters"},
        ValidationCase{"FixedEmptyValue",
                       LeafProfile({{"subject", "subject { fixed { type: \"O\" } }"}}), 7, "fixed",
                       "fixed O value \"\" is empty"},
        ValidationCase{"BadCrlUrl", LeafProfile({{"crl_url", "crl_url: \"ftp://ca.test/x.crl\""}}),
                       7, "\"ftp://ca.test/x.crl\"", "crl_url \"ftp://ca.test/x.crl\" is not an"},
        ValidationCase{"CrlUrlWithSpace",
                       LeafProfile({{"crl_url",
                                     "crl_url: [\"http://a.test/x.crl\", "
                                     "\"http://a.test/x y.crl\"]"}}),
                       7, "\"http://a.test/x y.crl\"", "without spaces"},
        ValidationCase{
            "AllowlistNotAnOid",
            LeafProfile({{"csr_extension_allowlist", "csr_extension_allowlist: \"1.2.abc\""}}), 7,
            "\"1.2.abc\"", "is not a dotted OID"},
        ValidationCase{
            "AllowlistBuiltExtension",
            LeafProfile({{"csr_extension_allowlist", "csr_extension_allowlist: \"2.5.29.17\""}}), 7,
            "\"2.5.29.17\"", "an extension the profile builds itself"},
        ValidationCase{"CaWithoutKeyCertSign",
                       "profile { name: \"sub-x\" ca: \"dev-root\" roles: \"admin\" "
                       "key_algorithms: \"ec-p384\" max_validity: \"5y\" key_usage: "
                       "\"digitalSignature\" is_ca: true }\n",
                       7, "\"digitalSignature\"", "key_usage lacks keyCertSign"},
        ValidationCase{"CaPathLenBelowMinusOne", kCaProfile + " path_len: -2 }\n", 7, "-2",
                       "path_len -2 is not valid"},
        ValidationCase{"SubCaNotCovered",
                       "profile { name: \"intermediate\" ca: \"dev-root\" roles: \"admin\" "
                       "key_algorithms: \"ec-p384\" max_validity: \"5y\" key_usage: "
                       "\"keyCertSign\" is_ca: true }\n",
                       7, "true", "add \"intermediate\" to the profiles of a CERT_ISSUE"},
        ValidationCase{"CrlValidityNotADuration", "ca_settings { crl_validity: \"7days\" }\n", 7,
                       "\"7days\"", "ca_settings crl_validity \"7days\" is not a duration"},
        ValidationCase{"CrlValidityTooLong", "ca_settings { crl_validity: \"2y\" }\n", 7, "\"2y\"",
                       "at most 366d"},
        ValidationCase{"ResignNotBeforeValidity", "ca_settings { crl_validity: \"12h\" }\n", 7,
                       "\"12h\"", "crl_resign_before (86400 s) must be less than crl_validity"},
        ValidationCase{"ResignEqualsValidity",
                       "ca_settings { crl_validity: \"2d\" crl_resign_before: \"48h\" }\n", 7,
                       "\"48h\"", "must be less than crl_validity"},
        ValidationCase{"ResignZero", "ca_settings { crl_resign_before: \"0m\" }\n", 7, "\"0m\"",
                       "crl_resign_before must be more than 0"},
        ValidationCase{"UnknownProfileField", "profile { name: \"a\" validity: \"1d\" }\n", 7,
                       "validity", "has no field named \"validity\""},
        ValidationCase{"AdminRuleCaOperationsListed",
                       "admin_rule { name: \"a\" roles: \"admin\" operations: [MANAGE_CA, "
                       "ADMIN_OPERATION_UNSPECIFIED] }\n",
                       7, "ADMIN_OPERATION_UNSPECIFIED",
                       "use READ_POLICY, PROPOSE_POLICY, MANAGE_CA, REVOKE_CERTIFICATE or "
                       "READ_CERTIFICATES"}),
    [](const testing::TestParamInfo<ValidationCase>& info) { return info.param.name; });

TEST(ProfileTest, MultiLineProfileErrorsPointAtTheValue) {
  const std::string tail =
      "profile {\n"                                     // 7
      "  name: \"tls\"\n"                               // 8
      "  ca: \"dev-intermediate\" roles: \"issuer\"\n"  // 9
      "  key_algorithms: [\"ec-p256\",\n"               // 10
      "                   \"ec-p521\"]\n"               // 11
      "}\n";
  auto result = Policy::Parse(Head() + tail);
  ASSERT_TRUE(std::holds_alternative<ParseError>(result));
  const ParseError& e = std::get<ParseError>(result);
  EXPECT_EQ(e.line, 11) << e.ToString();
  EXPECT_EQ(e.column, 20) << e.ToString();
  EXPECT_EQ(e.ToString("policy.txtpb")
                .rfind("policy.txtpb:11:20: profile \"tls\" names unknown "
                       "key algorithm \"ec-p521\"",
                       0),
            0u)
      << e.ToString("policy.txtpb");
}

TEST(ProfileTest, SanAndSubjectNormalisation) {
  const Policy policy = MustParse(
      Head() + LeafProfile({{"san",
                             "san { dns_suffix: [\"Dev.Custos.Test\", \".b.test\"] dns_exact: "
                             "[\"*.Wild.test\", \"www.x.test\"] allow_wildcards: true }"},
                            {"subject", "subject { mode: FROM_CSR }"}}));
  const CertProfile* p = policy.FindProfile("tls");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->san.dns_suffixes, (std::vector<std::string>{".dev.custos.test", ".b.test"}));
  EXPECT_EQ(p->san.dns_exact, (std::vector<std::string>{"*.wild.test", "www.x.test"}));
  EXPECT_TRUE(p->san.allow_wildcards);
  // An explicit subject block lists exactly what the CSR may supply: nothing.
  EXPECT_TRUE(p->subject.allowed_from_csr.empty());
}

TEST(ProfileTest, DiffPoliciesListsProfileChanges) {
  const Policy before = MustParse(Head() + kStarterProfiles);
  std::string text = Head() + kStarterProfiles;
  // Same durations written differently: no change.
  text.replace(text.find("default_validity: \"30d\""), 23, "default_validity: \"720h\"");
  EXPECT_TRUE(DiffPolicies(before, MustParse(text)).empty());

  text.replace(text.find("max_validity: \"90d\""), 19, "max_validity: \"60d\"");
  text.replace(text.find("name: \"code-signing\""), 20, "name: \"code-sign\"");
  text.replace(text.find("crl_validity: \"7d\""), 18, "crl_validity: \"3d\"");
  const std::vector<std::string> diff = DiffPolicies(before, MustParse(text));
  const std::vector<std::string> want = {
      "- profile code-signing",
      "~ profile tls-server: max_validity 7776000s -> 5184000s",
      "+ profile code-sign (ca: dev-intermediate, roles: [admin])",
      "~ ca_settings: crl_validity 604800s -> 259200s",
  };
  EXPECT_EQ(diff, want);
}

}  // namespace
}  // namespace custos::policy
