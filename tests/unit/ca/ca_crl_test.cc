// CRLs with software keys: openssl crl -verify, certtool --verify-crl, and
// openssl verify -crl_check refusing a revoked leaf; CRL number and entry
// rules.
#include <gtest/gtest.h>

#include "ca_test_util.h"

namespace custos::service::ca {
namespace {

using namespace testing;  // NOLINT
using std::chrono::days;
using std::chrono::hours;
using std::chrono::seconds;

class CrlTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { h_ = new SoftwareHierarchy(); }
  static void TearDownTestSuite() {
    delete h_;
    h_ = nullptr;
  }

  IssuedCertificate Leaf(const std::string& name) {
    UniquePkey key = GenerateKey("EC", "P-256");
    Result<IssuedCertificate> leaf =
        Issue(*h_->inter, TlsServerProfile(),
              ParsedCsr(MakeCsr(key.get(), {{{"CN", name}}, "DNS:" + name})), {}, {});
    if (!leaf.ok()) throw std::runtime_error(leaf.error().ToString());
    return std::move(leaf).value();
  }

  static CrlRequest Request(std::uint64_t number) {
    CrlRequest r;
    r.crl_number = number;
    r.this_update = std::chrono::floor<seconds>(Clock::now()) - seconds(60);
    r.next_update = r.this_update + days(7);
    return r;
  }

  static SoftwareHierarchy* h_;
  TempDir dir_;
};

SoftwareHierarchy* CrlTest::h_ = nullptr;

TEST_F(CrlTest, RevokedLeafFailsCrlCheckAndTheCrlVerifies) {
  const IssuedCertificate revoked = Leaf("revoked.dev.custos.test");
  const IssuedCertificate good = Leaf("good.dev.custos.test");
  CrlRequest request = Request(7);
  request.previous_crl_number = 6;
  request.revoked = {{revoked.serial, Clock::now() - hours(1), RevocationReason::kKeyCompromise}};
  Result<Bytes> crl = BuildCrl(*h_->inter, request);
  ASSERT_TRUE(crl.ok()) << crl.error().ToString();

  WriteCrlPem(dir_ / "crl.pem", *crl);
  WriteCertsPem(dir_ / "root.pem", {h_->root_der});
  WriteCertsPem(dir_ / "inter.pem", {h_->inter_der});
  WriteCertsPem(dir_ / "revoked.pem", {revoked.der});
  WriteCertsPem(dir_ / "good.pem", {good.der});

  auto [rc, out] = RunCommand("openssl crl -in " + (dir_ / "crl.pem") + " -CAfile " +
                              (dir_ / "inter.pem") + " -noout -verify -text");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("verify OK"), std::string::npos) << out;
  EXPECT_NE(out.find("X509v3 CRL Number: \n                7"), std::string::npos) << out;
  EXPECT_NE(out.find("Key Compromise"), std::string::npos) << out;
  EXPECT_NE(out.find("X509v3 Authority Key Identifier"), std::string::npos) << out;

  auto [rc2, out2] = RunCommand("certtool --verify-crl --load-ca-certificate " +
                                (dir_ / "inter.pem") + " --infile " + (dir_ / "crl.pem"));
  EXPECT_EQ(rc2, 0) << out2;

  const std::string check = "openssl verify -x509_strict -crl_check -CAfile " +
                            (dir_ / "root.pem") + " -untrusted " + (dir_ / "inter.pem") +
                            " -CRLfile " + (dir_ / "crl.pem") + " ";
  auto [rc3, out3] = RunCommand(check + (dir_ / "revoked.pem"));
  EXPECT_NE(rc3, 0) << out3;
  EXPECT_NE(out3.find("certificate revoked"), std::string::npos) << out3;
  auto [rc4, out4] = RunCommand(check + (dir_ / "good.pem"));
  EXPECT_EQ(rc4, 0) << out4;
}

TEST_F(CrlTest, RootCrlCoversTheIntermediate) {
  CrlRequest request = Request(1);
  Result<Bytes> crl = BuildCrl(*h_->root, request);
  ASSERT_TRUE(crl.ok()) << crl.error().ToString();
  WriteCrlPem(dir_ / "crl.pem", *crl);
  WriteCertsPem(dir_ / "root.pem", {h_->root_der});
  auto [rc, out] = RunCommand("openssl crl -in " + (dir_ / "crl.pem") + " -CAfile " +
                              (dir_ / "root.pem") + " -noout -verify");
  EXPECT_EQ(rc, 0) << out;
}

TEST_F(CrlTest, Refusals) {
  const IssuedCertificate leaf = Leaf("x.dev.custos.test");
  CrlRequest request = Request(5);
  request.previous_crl_number = 5;
  Result<Bytes> same = BuildCrl(*h_->inter, request);
  ASSERT_FALSE(same.ok());
  EXPECT_EQ(same.error().rule, "crl-number");

  request = Request(5);
  request.next_update = request.this_update;
  Result<Bytes> stale = BuildCrl(*h_->inter, request);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().rule, "crl-next-update");

  request = Request(5);
  request.revoked = {{leaf.serial, Clock::now(), RevocationReason::kSuperseded},
                     {leaf.serial, Clock::now(), RevocationReason::kSuperseded}};
  Result<Bytes> dup = BuildCrl(*h_->inter, request);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().rule, "crl-duplicate-serial");

  request.revoked = {{Bytes{0x00, 0x01}, Clock::now(), RevocationReason::kSuperseded}};
  Result<Bytes> bad_serial = BuildCrl(*h_->inter, request);
  ASSERT_FALSE(bad_serial.ok());
  EXPECT_EQ(bad_serial.error().rule, "crl-serial");

  request.revoked = {{leaf.serial, Clock::now(), static_cast<RevocationReason>(7)}};
  Result<Bytes> bad_reason = BuildCrl(*h_->inter, request);
  ASSERT_FALSE(bad_reason.ok());
  EXPECT_EQ(bad_reason.error().rule, "crl-reason");
}

TEST_F(CrlTest, UnspecifiedReasonIsOmittedAndEntriesParse) {
  const IssuedCertificate a = Leaf("a.dev.custos.test");
  const IssuedCertificate b = Leaf("b.dev.custos.test");
  CrlRequest request = Request(9);
  request.revoked = {{a.serial, Clock::now(), RevocationReason::kUnspecified},
                     {b.serial, Clock::now(), RevocationReason::kCessationOfOperation}};
  Result<Bytes> crl = BuildCrl(*h_->inter, request);
  ASSERT_TRUE(crl.ok()) << crl.error().ToString();
  const unsigned char* p = crl->data();
  internal::UniqueCrl parsed(d2i_X509_CRL(nullptr, &p, static_cast<long>(crl->size())));
  ASSERT_NE(parsed, nullptr);
  EXPECT_EQ(X509_CRL_get_version(parsed.get()), X509_CRL_VERSION_2);
  STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(parsed.get());
  ASSERT_EQ(sk_X509_REVOKED_num(entries), 2);
  int with_reason = 0;
  for (int i = 0; i < 2; ++i) {
    X509_REVOKED* r = sk_X509_REVOKED_value(entries, i);
    if (X509_REVOKED_get_ext_by_NID(r, NID_crl_reason, -1) >= 0) ++with_reason;
  }
  EXPECT_EQ(with_reason, 1);
}

}  // namespace
}  // namespace custos::service::ca
