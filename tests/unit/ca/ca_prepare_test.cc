// Issuance split for quorum: PrepareIssue builds and lints the TBS, officers
// approve those bytes, SignPrepared signs exactly them (possibly much later).
#include <gtest/gtest.h>

#include "ca_test_util.h"

namespace custos::service::ca {
namespace {

using namespace testing;  // NOLINT
using std::chrono::seconds;

class PrepareTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { hierarchy_ = new SoftwareHierarchy(); }
  static void TearDownTestSuite() {
    delete hierarchy_;
    hierarchy_ = nullptr;
  }
  static SoftwareHierarchy* hierarchy_;
  TempDir dir_;
};

SoftwareHierarchy* PrepareTest::hierarchy_ = nullptr;

TEST_F(PrepareTest, SignPreparedSignsExactlyThePreparedTbs) {
  UniquePkey key = GenerateKey("EC", "P-256");
  Result<Csr> csr =
      Csr::Parse(MakeCsr(key.get(), {{{"CN", "api.dev.custos.test"}}, "DNS:api.dev.custos.test"}));
  ASSERT_TRUE(csr.ok()) << csr.error().ToString();
  Result<PreparedCertificate> prepared =
      PrepareIssue(*hierarchy_->inter, TlsServerProfile(), *csr, {}, {});
  ASSERT_TRUE(prepared.ok()) << prepared.error().ToString();
  EXPECT_EQ(prepared->subject, "CN=api.dev.custos.test");
  EXPECT_EQ(prepared->key_algorithm, "ec-p256");
  EXPECT_FALSE(prepared->is_ca);
  ASSERT_EQ(prepared->ext_key_usages.size(), 1u);
  EXPECT_EQ(prepared->ext_key_usages[0], kEkuServerAuth);
  ASSERT_EQ(prepared->serial.size(), 20u);

  // What an officer's console reads back from the payload.
  Result<PreparedCertificate> described = DescribeTbs(prepared->tbs_der);
  ASSERT_TRUE(described.ok()) << described.error().ToString();
  EXPECT_EQ(described->serial, prepared->serial);
  EXPECT_EQ(described->sans, prepared->sans);
  EXPECT_EQ(described->not_after, prepared->not_after);
  EXPECT_EQ(described->issuer, "CN=Custos Dev Intermediate,O=Custos Test,C=US");

  Result<IssuedCertificate> issued = SignPrepared(*hierarchy_->inter, prepared->tbs_der, {});
  ASSERT_TRUE(issued.ok()) << issued.error().ToString();
  EXPECT_EQ(issued->serial, prepared->serial);
  EXPECT_EQ(issued->not_before, prepared->not_before);
  // The certificate's TBS is byte for byte the prepared one.
  UniqueX509 x = ParseCert(issued->der);
  EXPECT_EQ(internal::ToDer(x.get(), i2d_re_X509_tbs), prepared->tbs_der);
  EXPECT_EQ(
      VerifyWithTools(dir_, hierarchy_->root_der, hierarchy_->inter_der, issued->der, "sslserver"),
      "");
}

TEST_F(PrepareTest, SignPreparedRefusesATbsOfAnotherCaOrGarbage) {
  UniquePkey key = GenerateKey("EC", "P-256");
  Result<Csr> csr =
      Csr::Parse(MakeCsr(key.get(), {{{"CN", "api.dev.custos.test"}}, "DNS:api.dev.custos.test"}));
  ASSERT_TRUE(csr.ok());
  Result<PreparedCertificate> prepared =
      PrepareIssue(*hierarchy_->inter, TlsServerProfile(), *csr, {}, {});
  ASSERT_TRUE(prepared.ok());
  // Prepared under the intermediate, signed by the root: the root's key is
  // P-384 (another signature algorithm) and another issuer.
  Result<IssuedCertificate> wrong = SignPrepared(*hierarchy_->root, prepared->tbs_der, {});
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().rule, "sign-failed") << wrong.error().ToString();

  Bytes tampered = prepared->tbs_der;
  tampered.push_back(0);
  Result<IssuedCertificate> trailing = SignPrepared(*hierarchy_->inter, tampered, {});
  ASSERT_FALSE(trailing.ok());
  EXPECT_EQ(trailing.error().rule, "tbs-invalid");
  Result<IssuedCertificate> empty = SignPrepared(*hierarchy_->inter, Bytes{}, {});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().rule, "tbs-invalid");
  EXPECT_FALSE(DescribeTbs(Bytes{0x30, 0x03, 0x02, 0x01, 0x01}).ok());
}

TEST_F(PrepareTest, SignPreparedRelintsAgainstTheSigningCa) {
  // A second intermediate with a P-256 key: same algorithm, other issuer.
  SoftwareHierarchy other;
  UniquePkey key = GenerateKey("EC", "P-256");
  Result<Csr> csr =
      Csr::Parse(MakeCsr(key.get(), {{{"CN", "api.dev.custos.test"}}, "DNS:api.dev.custos.test"}));
  ASSERT_TRUE(csr.ok());
  Result<PreparedCertificate> prepared =
      PrepareIssue(*hierarchy_->inter, TlsServerProfile(), *csr, {}, {});
  ASSERT_TRUE(prepared.ok());
  Result<IssuedCertificate> wrong = SignPrepared(*other.inter, prepared->tbs_der, {});
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().rule.rfind("lint-", 0), 0u) << wrong.error().ToString();
}

TEST_F(PrepareTest, RootAndIntermediateFromPreparedTbs) {
  UniquePkey root_key = GenerateKey("EC", "P-256");
  RootRequest rr;
  rr.subject_dn = "CN=Prepared Root,O=Custos Test";
  rr.validity = std::chrono::days(3650);
  Result<PreparedCertificate> root_tbs = PrepareRoot(rr, root_key.get());
  ASSERT_TRUE(root_tbs.ok()) << root_tbs.error().ToString();
  EXPECT_TRUE(root_tbs->is_ca);
  EXPECT_EQ(root_tbs->subject, root_tbs->issuer);
  // Another key cannot sign the root's TBS.
  UniquePkey other = GenerateKey("EC", "P-256");
  Result<IssuedCertificate> wrong = SignPreparedRoot(root_tbs->tbs_der, other.get());
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().rule, "ca-invalid");
  Result<IssuedCertificate> root = SignPreparedRoot(root_tbs->tbs_der, root_key.get());
  ASSERT_TRUE(root.ok()) << root.error().ToString();
  Result<CertificateAuthority> root_ca = CertificateAuthority::Create(root->der, root_key.get());
  ASSERT_TRUE(root_ca.ok()) << root_ca.error().ToString();

  UniquePkey inter_key = GenerateKey("RSA", "2048");
  IntermediateRequest ir;
  ir.subject_dn = "CN=Prepared Intermediate,O=Custos Test";
  ir.spki_der = Spki(inter_key.get());
  ir.validity = std::chrono::days(365);
  ir.path_len = 0;
  Result<PreparedCertificate> inter_tbs = PrepareIntermediate(*root_ca, ir, {});
  ASSERT_TRUE(inter_tbs.ok()) << inter_tbs.error().ToString();
  EXPECT_EQ(inter_tbs->key_algorithm, "rsa-2048");
  EXPECT_EQ(inter_tbs->path_len, 0);
  Result<IssuedCertificate> inter = SignPrepared(*root_ca, inter_tbs->tbs_der, {});
  ASSERT_TRUE(inter.ok()) << inter.error().ToString();

  WriteCertsPem(dir_ / "root.pem", {root->der});
  WriteCertsPem(dir_ / "inter.pem", {inter->der});
  auto [rc, out] = RunCommand("openssl verify -x509_strict -CAfile " + (dir_ / "root.pem") + " " +
                              (dir_ / "inter.pem"));
  EXPECT_EQ(rc, 0) << out;
}

}  // namespace
}  // namespace custos::service::ca
