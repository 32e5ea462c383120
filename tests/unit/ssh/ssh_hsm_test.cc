// SSH certificates and SSHSIG signed inside a real SoftHSM token, through
// pkcs11::Token::Sign (all key types, the way custosd will sign) and through
// Token::OpenSslKey with EvpSigner (EC and RSA); verified by ssh-keygen.
#include <gtest/gtest.h>

#include "custos/pkcs11/token.h"
#include "softhsm_token.h"
#include "ssh_test_util.h"

namespace custos::service::ssh {
namespace {

using testing::ReadFile;
using testing::RunCommand;
using testing::Sha512;
using testing::SshKeygen;
using testing::TempDir;
using testing::WriteFile;

struct HsmCase {
  pkcs11::KeyType hsm_type;
  pkcs11::SignAlgorithm algorithm;
};

// The Signer custosd will build: hash here, sign the digest in the HSM.
Signer TokenSigner(pkcs11::Token* token, const pkcs11::KeyRef& ref, pkcs11::SignAlgorithm alg,
                   KeyType type) {
  return [token, ref, alg, type](ByteSpan data) -> Result<Bytes> {
    auto sig = token->Sign(ref, alg, SigningInput(type, data));
    if (!sig.ok()) return Error{"hsm-sign", sig.error().message()};
    return SshSignatureFromStandard(type, *sig);
  };
}

class HsmSshTest : public ::testing::Test {
 protected:
  void SetUp() override {
    softhsm_ = std::make_unique<pkcs11::testing::SoftHsmToken>("custos-ssh-test");
    auto token = pkcs11::Token::Open(softhsm_->Config());
    ASSERT_TRUE(token.ok()) << token.error().message();
    token_ = std::move(token).value();
  }
  void TearDown() override {
    token_.reset();
    softhsm_.reset();
  }

  // Signs a user certificate and an SSHSIG with `sign`, checks both with
  // ssh-keygen.
  void SignAndCheck(const PublicKey& ca, const Signer& sign) {
    const std::string id = SshKeygen(dir_, "ed25519", "id");
    auto subject = ParseAuthorizedKey(ReadFile(id + ".pub"));
    ASSERT_TRUE(subject.ok()) << subject.error().ToString();
    const auto now = static_cast<std::uint64_t>(std::time(nullptr));
    CertificateSpec spec;
    spec.serial = 99;
    spec.key_id = "hsm";
    spec.principals = {"alice"};
    spec.valid_after = now - 60;
    spec.valid_before = now + 8 * 3600;
    spec.extensions = {"permit-pty"};
    auto cert = SignCertificate(spec, subject->key, ca, sign);
    ASSERT_TRUE(cert.ok()) << cert.error().ToString();
    WriteFile(id + "-cert.pub", cert->ToLine() + "\n");
    auto [rc, out] = RunCommand("ssh-keygen -L -f " + id + "-cert.pub");
    ASSERT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("Signing CA: "), std::string::npos) << out;
    EXPECT_NE(out.find(ca.Fingerprint()), std::string::npos) << out;

    // OpenSSH's certificate checks: sign with the certified key, verify
    // against the CA as cert-authority for principal alice.
    WriteFile(dir_ / "message", "built artefact\n");
    auto [src, sout] =
        RunCommand("ssh-keygen -Y sign -f " + id + "-cert.pub -n file " + dir_ / "message");
    ASSERT_EQ(src, 0) << sout;
    WriteFile(dir_ / "ca_signers",
              "alice cert-authority,namespaces=\"file\" " + ca.ToLine() + "\n");
    auto [vrc, vout] =
        RunCommand("ssh-keygen -Y verify -f " + dir_ / "ca_signers" + " -I alice -n file -s " +
                   dir_ / "message.sig" + " < " + dir_ / "message");
    EXPECT_EQ(vrc, 0) << vout;

    // SSHSIG made by the HSM key itself.
    const std::string message = "release 1.2.3\n";
    WriteFile(dir_ / "release", message);
    auto armored = SignSshsig(ca, "file", Sha512(message), sign);
    ASSERT_TRUE(armored.ok()) << armored.error().ToString();
    WriteFile(dir_ / "release.sig", *armored);
    WriteFile(dir_ / "signers", "release@custos " + ca.ToLine() + "\n");
    const std::string verify = "ssh-keygen -Y verify -f " + dir_ / "signers" +
                               " -I release@custos -n file -s " + dir_ / "release.sig" + " < ";
    auto [grc, gout] = RunCommand(verify + dir_ / "release");
    EXPECT_EQ(grc, 0) << gout;
    WriteFile(dir_ / "tampered", "release 1.2.4\n");
    auto [trc, tout] = RunCommand(verify + dir_ / "tampered");
    EXPECT_NE(trc, 0) << tout;

    for (const char* f : {"id", "id.pub", "id-cert.pub", "message.sig"}) {
      std::filesystem::remove(dir_ / f);
    }
  }

  std::unique_ptr<pkcs11::testing::SoftHsmToken> softhsm_;
  std::unique_ptr<pkcs11::Token> token_;
  TempDir dir_;
};

TEST_F(HsmSshTest, TokenSignForEveryKeyType) {
  const HsmCase cases[] = {
      {pkcs11::KeyType::kEd25519, pkcs11::SignAlgorithm::kEd25519},
      {pkcs11::KeyType::kEcP256, pkcs11::SignAlgorithm::kEcdsaP256Sha256},
      {pkcs11::KeyType::kEcP384, pkcs11::SignAlgorithm::kEcdsaP384Sha384},
      {pkcs11::KeyType::kRsa3072, pkcs11::SignAlgorithm::kRsaPkcs1Sha512},
  };
  for (const HsmCase& c : cases) {
    SCOPED_TRACE(std::string(pkcs11::KeyTypeName(c.hsm_type)));
    auto ref = token_->GenerateKeyPair(c.hsm_type, "custos/ssh-ca@1");
    ASSERT_TRUE(ref.ok()) << ref.error().message();
    auto ca = PublicKey::FromSpki(ref->spki_der);
    ASSERT_TRUE(ca.ok()) << ca.error().ToString();
    SignAndCheck(*ca, TokenSigner(token_.get(), *ref, c.algorithm, ca->type()));
  }
}

TEST_F(HsmSshTest, EvpSignerOnHsmBackedKeys) {
  for (pkcs11::KeyType type : {pkcs11::KeyType::kEcP256, pkcs11::KeyType::kRsa2048}) {
    SCOPED_TRACE(std::string(pkcs11::KeyTypeName(type)));
    auto ref = token_->GenerateKeyPair(type, "custos/ssh-evp@1");
    ASSERT_TRUE(ref.ok()) << ref.error().message();
    auto pkey = token_->OpenSslKey(*ref);
    ASSERT_TRUE(pkey.ok()) << pkey.error().message();
    auto ca = PublicKey::FromEvp(pkey->get());
    ASSERT_TRUE(ca.ok()) << ca.error().ToString();
    auto signer = EvpSigner(pkey->get());
    ASSERT_TRUE(signer.ok()) << signer.error().ToString();
    SignAndCheck(*ca, *signer);
  }
}

}  // namespace
}  // namespace custos::service::ssh
