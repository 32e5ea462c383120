// The linter on certificates built by hand with OpenSSL, one defect each.
// The base certificate passes, so each finding is the defect's.
#include <gtest/gtest.h>

#include <functional>

#include "ca_test_util.h"

namespace custos::service::ca {
namespace {

using namespace testing;  // NOLINT

class LintTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { h_ = new SoftwareHierarchy(); }
  static void TearDownTestSuite() {
    delete h_;
    h_ = nullptr;
  }

  struct Knobs {
    std::string subject_cn = "a.dev.custos.test";
    std::string san = "DNS:a.dev.custos.test";
    std::string san_critical;  // "critical," or ""
    std::string bc = "critical,CA:FALSE";
    std::string ku = "critical,digitalSignature";
    std::string eku = "serverAuth";
    std::string aki_critical;
    bool ski = true;
    bool aki = true;
    bool wrong_aki = false;
    long version = X509_VERSION_3;
    int serial_bytes = 16;
    bool negative_serial = false;
    long not_before_offset = -60;
    long not_after_offset = 86400;
    bool generalized_not_after = false;
    bool printable_issuer = false;
    bool duplicate_eku = false;
    EVP_PKEY* signer = nullptr;  // default: the intermediate key
  };

  // A leaf under the intermediate, with the knobs' defects, signed.
  Bytes Build(const Knobs& k) {
    UniquePkey key = GenerateKey("EC", "P-256");
    UniqueX509 x(X509_new());
    X509_set_version(x.get(), k.version);
    UniqueBn bn(BN_new());
    BN_rand(bn.get(), k.serial_bytes * 8, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY);
    BN_set_negative(bn.get(), k.negative_serial ? 1 : 0);
    internal::UniqueAsn1Int serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
    X509_set_serialNumber(x.get(), serial.get());
    UniqueX509 inter = ParseCert(h_->inter_der);
    if (k.printable_issuer) {
      internal::UniqueName issuer(X509_NAME_new());
      X509_NAME_add_entry_by_txt(issuer.get(), "C", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>("US"), -1, -1, 0);
      X509_NAME_add_entry_by_txt(issuer.get(), "O", V_ASN1_PRINTABLESTRING,
                                 reinterpret_cast<const unsigned char*>("Custos Test"), -1, -1, 0);
      X509_NAME_add_entry_by_txt(issuer.get(), "CN", V_ASN1_PRINTABLESTRING,
                                 reinterpret_cast<const unsigned char*>("Custos Dev Intermediate"),
                                 -1, -1, 0);
      X509_set_issuer_name(x.get(), issuer.get());
    } else {
      X509_set_issuer_name(x.get(), X509_get_subject_name(inter.get()));
    }
    if (!k.subject_cn.empty()) {
      X509_NAME_add_entry_by_txt(X509_get_subject_name(x.get()), "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(k.subject_cn.c_str()), -1,
                                 -1, 0);
    }
    X509_gmtime_adj(X509_getm_notBefore(x.get()), k.not_before_offset);
    if (k.generalized_not_after) {
      internal::UniqueAsn1Time t(ASN1_GENERALIZEDTIME_set(nullptr, time(nullptr) + 86400));
      X509_set1_notAfter(x.get(), t.get());
    } else {
      X509_gmtime_adj(X509_getm_notAfter(x.get()), k.not_after_offset);
    }
    X509_set_pubkey(x.get(), key.get());
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, inter.get(), x.get(), nullptr, nullptr, 0);
    auto add = [&](int nid, const std::string& value) {
      if (value.empty()) return;
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
      if (ext == nullptr) throw std::runtime_error("bad extension " + value);
      X509_add_ext(x.get(), ext, -1);
      X509_EXTENSION_free(ext);
    };
    add(NID_basic_constraints, k.bc);
    add(NID_key_usage, k.ku);
    add(NID_ext_key_usage, k.eku);
    if (k.duplicate_eku) add(NID_ext_key_usage, k.eku);
    if (k.ski) add(NID_subject_key_identifier, "hash");
    if (k.aki) {
      // wrong_aki: the key id of the certificate itself, not of its issuer.
      if (k.wrong_aki) X509V3_set_ctx(&ctx, x.get(), x.get(), nullptr, nullptr, 0);
      add(NID_authority_key_identifier, k.aki_critical + "keyid:always");
    }
    add(NID_subject_alt_name, k.san.empty() ? "" : k.san_critical + k.san);
    EVP_PKEY* signer = k.signer != nullptr ? k.signer : h_->inter_key.get();
    if (X509_sign(x.get(), signer,
                  EVP_PKEY_get_base_id(signer) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256()) <= 0) {
      throw std::runtime_error("sign failed");
    }
    return internal::ToDer(x.get(), i2d_X509);
  }

  void ExpectFinding(const Knobs& k, const std::string& rule) {
    const Bytes der = Build(k);
    Status s = LintCertificate(der, h_->inter_der, {});
    ASSERT_FALSE(s.ok()) << "lint passed, expected " << rule;
    EXPECT_EQ(s.error().rule, rule) << s.error().ToString();
  }

  static SoftwareHierarchy* h_;
};

SoftwareHierarchy* LintTest::h_ = nullptr;

TEST_F(LintTest, BaseCertificatePasses) {
  Status s = LintCertificate(Build(Knobs{}), h_->inter_der, {});
  EXPECT_TRUE(s.ok()) << s.error().ToString();
}

TEST_F(LintTest, EachDefectIsNamed) {
  struct Case {
    const char* name;
    std::function<void(Knobs&)> defect;
    const char* rule;
  };
  const std::vector<Case> cases = {
      {"v1", [](Knobs& k) { k.version = X509_VERSION_1; }, "lint-version"},
      {"21-byte serial", [](Knobs& k) { k.serial_bytes = 21; }, "lint-serial"},
      {"negative serial", [](Knobs& k) { k.negative_serial = true; }, "lint-serial"},
      {"issuer re-encoded", [](Knobs& k) { k.printable_issuer = true; }, "lint-issuer-matches-ca"},
      {"no SKI", [](Knobs& k) { k.ski = false; }, "lint-key-identifiers"},
      {"no AKI", [](Knobs& k) { k.aki = false; }, "lint-aki-matches-ca"},
      {"wrong AKI", [](Knobs& k) { k.wrong_aki = true; }, "lint-aki-matches-ca"},
      {"notBefore after notAfter",
       [](Knobs& k) {
         k.not_before_offset = 3600;
         k.not_after_offset = 60;
       },
       "lint-validity-order"},
      {"GeneralizedTime before 2050", [](Knobs& k) { k.generalized_not_after = true; },
       "lint-validity-encoding"},
      {"duplicate EKU", [](Knobs& k) { k.duplicate_eku = true; }, "lint-duplicate-extension"},
      {"leaf with keyCertSign", [](Knobs& k) { k.ku = "critical,digitalSignature,keyCertSign"; },
       "lint-ku-vs-bc"},
      {"CA without keyCertSign",
       [](Knobs& k) {
         k.bc = "critical,CA:TRUE";
         k.ku = "critical,digitalSignature";
       },
       "lint-ku-vs-bc"},
      {"leaf without EKU", [](Knobs& k) { k.eku = ""; }, "lint-eku-present"},
      {"leaf with anyEKU", [](Knobs& k) { k.eku = "anyExtendedKeyUsage"; }, "lint-eku-present"},
      {"bad DNS SAN",
       [](Knobs& k) {
         k.san = "DNS:a_b.dev.custos.test";
         k.subject_cn = "";
         k.san_critical = "critical,";
       },
       "lint-san-encoding"},
      {"wildcard not allowed",
       [](Knobs& k) {
         k.san = "DNS:*.dev.custos.test";
         k.subject_cn = "";
         k.san_critical = "critical,";
       },
       "lint-san-encoding"},
      {"relative URI",
       [](Knobs& k) {
         k.san = "URI:dev/custos";
         k.subject_cn = "";
         k.san_critical = "critical,";
       },
       "lint-san-encoding"},
      {"empty subject, SAN not critical", [](Knobs& k) { k.subject_cn = ""; },
       "lint-empty-subject-san-critical"},
      {"empty subject, no SAN",
       [](Knobs& k) {
         k.subject_cn = "";
         k.san = "";
       },
       "lint-empty-subject-san-critical"},
      {"KU not critical", [](Knobs& k) { k.ku = "digitalSignature"; },
       "lint-extension-criticality"},
      {"SAN critical with a subject", [](Knobs& k) { k.san_critical = "critical,"; },
       "lint-extension-criticality"},
      {"AKI critical", [](Knobs& k) { k.aki_critical = "critical,"; },
       "lint-extension-criticality"},
      {"CA with non-critical BC",
       [](Knobs& k) {
         k.bc = "CA:TRUE";
         k.ku = "critical,keyCertSign,cRLSign";
       },
       "lint-extension-criticality"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Knobs k;
    c.defect(k);
    ExpectFinding(k, c.rule);
  }
}

TEST_F(LintTest, SignatureAlgorithmMustFitTheIssuer) {
  UniquePkey rsa = GenerateKey("RSA", "2048");
  Knobs k;
  k.signer = rsa.get();
  ExpectFinding(k, "lint-signature-algorithm");
}

TEST_F(LintTest, WildcardsPassWhenAllowed) {
  Knobs k;
  k.san = "DNS:*.dev.custos.test";
  k.subject_cn = "";
  k.san_critical = "critical,";
  const Bytes der = Build(k);
  EXPECT_TRUE(LintCertificate(der, h_->inter_der, LintOptions{true}).ok());
}

TEST_F(LintTest, IssuedChainPasses) {
  EXPECT_TRUE(LintCertificate(h_->root_der, h_->root_der, {}).ok());
  Status s = LintCertificate(h_->inter_der, h_->root_der, {});
  EXPECT_TRUE(s.ok()) << s.error().ToString();
  Status garbage = LintCertificate(Bytes{0x30, 0x00}, h_->root_der, {});
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.error().rule, "lint-der");
}

}  // namespace
}  // namespace custos::service::ca
