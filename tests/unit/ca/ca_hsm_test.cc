// The CA core with its keys on a real SoftHSM token, through
// pkcs11::Token::OpenSslKey: root -> intermediate -> leaf and a CRL, every
// signature made inside the HSM, verified by openssl and GnuTLS.
#include <gtest/gtest.h>

#include "ca_test_util.h"
#include "custos/pkcs11/token.h"
#include "softhsm_token.h"

namespace custos::service::ca {
namespace {

using namespace testing;  // NOLINT
using pkcs11::KeyRef;
using pkcs11::KeyType;
using pkcs11::Token;
using std::chrono::days;
using std::chrono::seconds;

class HsmCaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    softhsm_ = std::make_unique<pkcs11::testing::SoftHsmToken>("custos-ca-test");
    pkcs11::Result<std::unique_ptr<Token>> token = Token::Open(softhsm_->Config());
    ASSERT_TRUE(token.ok()) << token.error().message();
    token_ = std::move(token).value();
  }
  void TearDown() override {
    token_.reset();  // before the token directory goes
    softhsm_.reset();
  }

  // A key pair on the token and its HSM-backed EVP_PKEY.
  std::pair<KeyRef, pkcs11::UniqueEvpPkey> HsmKey(KeyType type, const std::string& label) {
    pkcs11::Result<KeyRef> key = token_->GenerateKeyPair(type, label);
    if (!key.ok()) throw std::runtime_error(key.error().message());
    pkcs11::Result<pkcs11::UniqueEvpPkey> pkey = token_->OpenSslKey(*key);
    if (!pkey.ok()) throw std::runtime_error(pkey.error().message());
    return {*key, std::move(pkey).value()};
  }

  std::unique_ptr<pkcs11::testing::SoftHsmToken> softhsm_;
  std::unique_ptr<Token> token_;
  TempDir dir_;
};

TEST_F(HsmCaTest, ChainAndCrlSignedInsideTheHsmVerify) {
  struct Shape {
    KeyType root;
    KeyType inter;
  };
  for (const Shape& shape :
       {Shape{KeyType::kEcP384, KeyType::kRsa2048}, Shape{KeyType::kRsa2048, KeyType::kEcP256}}) {
    SCOPED_TRACE(std::string(pkcs11::KeyTypeName(shape.root)) + " -> " +
                 std::string(pkcs11::KeyTypeName(shape.inter)));
    auto [root_ref, root_key] = HsmKey(shape.root, "custos/dev-root@1");
    auto [inter_ref, inter_key] = HsmKey(shape.inter, "custos/dev-intermediate@1");

    RootRequest rr;
    rr.subject_dn = "CN=Custos HSM Root,O=Custos Test,C=US";
    rr.validity = days(20 * 365);
    rr.path_len = 1;
    Result<IssuedCertificate> root = CreateRoot(rr, root_key.get());
    ASSERT_TRUE(root.ok()) << root.error().ToString();
    Result<CertificateAuthority> root_ca = CertificateAuthority::Create(root->der, root_key.get());
    ASSERT_TRUE(root_ca.ok()) << root_ca.error().ToString();

    IntermediateRequest ir;
    ir.subject_dn = "CN=Custos HSM Intermediate,O=Custos Test,C=US";
    ir.spki_der = inter_ref.spki_der;
    ir.validity = days(5 * 365);
    ir.path_len = 0;
    ir.crl_urls = {"http://ca.dev.custos.test/dev-root.crl"};
    Result<IssuedCertificate> inter = CreateIntermediate(*root_ca, ir, {});
    ASSERT_TRUE(inter.ok()) << inter.error().ToString();
    Result<CertificateAuthority> inter_ca =
        CertificateAuthority::Create(inter->der, inter_key.get());
    ASSERT_TRUE(inter_ca.ok()) << inter_ca.error().ToString();

    // A leaf for an outside key; the CA's keys are Custos-held.
    UniquePkey leaf_key = GenerateKey("EC", "P-256");
    const std::vector<Bytes> ours = {root_ref.spki_der, inter_ref.spki_der};
    IssueHooks hooks;
    hooks.keys.key_is_custos_held = [&](std::span<const std::uint8_t> spki) {
      const Bytes b(spki.begin(), spki.end());
      return std::find(ours.begin(), ours.end(), b) != ours.end();
    };
    Result<IssuedCertificate> leaf =
        Issue(*inter_ca, TlsServerProfile(),
              ParsedCsr(MakeCsr(leaf_key.get(),
                                {{{"CN", "hsm.dev.custos.test"}}, "DNS:hsm.dev.custos.test"})),
              {}, hooks);
    ASSERT_TRUE(leaf.ok()) << leaf.error().ToString();
    EXPECT_EQ(VerifyWithTools(dir_, root->der, inter->der, leaf->der, "sslserver"), "");

    // A CSR carrying the root's public key is refused.
    // (The CSR is signed by the HSM key itself, through the bridge.)
    Result<Bytes> own_csr = GenerateCsr("CN=hsm.dev.custos.test", root_key.get(), false);
    ASSERT_TRUE(own_csr.ok()) << own_csr.error().ToString();
    Result<Csr> own = Csr::Parse(*own_csr);
    ASSERT_TRUE(own.ok()) << own.error().ToString();
    IssueRequest with_san;
    with_san.sans = {{San::Type::kDns, "hsm.dev.custos.test"}};
    Result<IssuedCertificate> refused = Issue(*inter_ca, TlsServerProfile(), *own, with_san, hooks);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().rule, "key-held-by-custos") << refused.error().ToString();

    // The intermediate's CRL revokes the leaf.
    CrlRequest crl_request;
    crl_request.crl_number = 1;
    crl_request.this_update = std::chrono::floor<seconds>(Clock::now()) - seconds(60);
    crl_request.next_update = crl_request.this_update + days(7);
    crl_request.revoked = {{leaf->serial, Clock::now(), RevocationReason::kKeyCompromise}};
    Result<Bytes> crl = BuildCrl(*inter_ca, crl_request);
    ASSERT_TRUE(crl.ok()) << crl.error().ToString();
    WriteCrlPem(dir_ / "crl.pem", *crl);
    auto [rc, out] = RunCommand("openssl crl -in " + (dir_ / "crl.pem") + " -CAfile " +
                                (dir_ / "inter.pem") + " -noout -verify");
    EXPECT_EQ(rc, 0) << out;
    auto [rc2, out2] = RunCommand("openssl verify -x509_strict -crl_check -CAfile " +
                                  (dir_ / "root.pem") + " -untrusted " + (dir_ / "inter.pem") +
                                  " -CRLfile " + (dir_ / "crl.pem") + " " + (dir_ / "leaf.pem"));
    EXPECT_NE(rc2, 0) << out2;
    EXPECT_NE(out2.find("certificate revoked"), std::string::npos) << out2;
    auto [rc3, out3] = RunCommand("certtool --verify-crl --load-ca-certificate " +
                                  (dir_ / "inter.pem") + " --infile " + (dir_ / "crl.pem"));
    EXPECT_EQ(rc3, 0) << out3;

    ASSERT_TRUE(token_->DestroyKey(root_ref).ok());
    ASSERT_TRUE(token_->DestroyKey(inter_ref).ok());
  }
}

TEST_F(HsmCaTest, CsrForAnHsmKeyVerifiesWithOpenssl) {
  auto [ref, key] = HsmKey(KeyType::kEcP256, "custos/external-intermediate@1");
  Result<Bytes> der = GenerateCsr("CN=Custos Issuing CA,O=Custos Test,C=US", key.get(), true);
  ASSERT_TRUE(der.ok()) << der.error().ToString();
  Result<Csr> csr = Csr::Parse(*der);
  ASSERT_TRUE(csr.ok()) << csr.error().ToString();
  EXPECT_EQ(csr->spki_der(), ref.spki_der);
  WriteFile(dir_ / "csr.der", std::string(der->begin(), der->end()));
  auto [rc, out] =
      RunCommand("openssl req -inform DER -in " + (dir_ / "csr.der") + " -verify -noout");
  EXPECT_EQ(rc, 0) << out;
}

}  // namespace
}  // namespace custos::service::ca
