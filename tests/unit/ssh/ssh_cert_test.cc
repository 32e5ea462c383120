// OpenSSH certificates: made with software CA keys through EvpSigner,
// checked with ssh-keygen -L (which verifies the CA signature), with an
// independent OpenSSL verification, and with ssh-keygen -Y verify against a
// cert-authority allowed_signers line (OpenSSH's own principal and validity
// checks for certificates).
#include <gtest/gtest.h>
#include <openssl/ecdsa.h>

#include <ctime>

#include "ssh_test_util.h"

namespace custos::service::ssh {
namespace {

using testing::NewKey;
using testing::ReadFile;
using testing::RunCommand;
using testing::SshKeygen;
using testing::TempDir;
using testing::ToBytes;
using testing::WriteFile;

constexpr std::uint64_t kJan2026 = 1767225600;  // 2026-01-01T00:00:00Z

// Splits a certificate blob into (to-be-signed, signature blob).
std::pair<Bytes, Bytes> SplitCertificate(const Bytes& cert) {
  // The signature is the last string; find it by walking the fields would
  // need the key type, so scan from the end: the length prefix must match.
  for (std::size_t start = cert.size() - 4; start > 0; --start) {
    const std::uint32_t len =
        (cert[start] << 24) | (cert[start + 1] << 16) | (cert[start + 2] << 8) | cert[start + 3];
    if (start + 4 + len == cert.size()) {
      Reader r(ByteSpan(cert).subspan(start + 4));
      std::string alg;
      ByteSpan sig;
      if (r.String(&alg) && r.String(&sig) && r.empty() &&
          (alg.rfind("ssh-", 0) == 0 || alg.rfind("ecdsa-", 0) == 0 || alg.rfind("rsa-", 0) == 0)) {
        return {Bytes(cert.begin(), cert.begin() + static_cast<long>(start)),
                Bytes(cert.begin() + static_cast<long>(start) + 4, cert.end())};
      }
    }
  }
  return {};
}

// Verifies an SSH signature blob with OpenSSL directly (independent of
// VerifySignatureBlob).
bool OpenSslVerify(EVP_PKEY* key, const Bytes& data, const Bytes& sig_blob) {
  Reader r(sig_blob);
  std::string alg;
  ByteSpan sig;
  if (!r.String(&alg) || !r.String(&sig)) return false;
  Bytes der(sig.begin(), sig.end());
  const EVP_MD* md = nullptr;
  if (alg == "rsa-sha2-512") md = EVP_sha512();
  if (alg == "ecdsa-sha2-nistp256") md = EVP_sha256();
  if (alg == "ecdsa-sha2-nistp384") md = EVP_sha384();
  if (alg.rfind("ecdsa-", 0) == 0) {
    Reader sr(sig);
    ByteSpan rr, ss;
    if (!sr.String(&rr) || !sr.String(&ss)) return false;
    ECDSA_SIG* es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(rr.data(), static_cast<int>(rr.size()), nullptr),
                   BN_bin2bn(ss.data(), static_cast<int>(ss.size()), nullptr));
    unsigned char* p = nullptr;
    const int len = i2d_ECDSA_SIG(es, &p);
    der.assign(p, p + len);
    OPENSSL_free(p);
    ECDSA_SIG_free(es);
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = EVP_DigestVerifyInit(ctx, nullptr, md, nullptr, key) == 1 &&
                  EVP_DigestVerify(ctx, der.data(), der.size(), data.data(), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

std::string UtcTimestamp(std::uint64_t t) {
  const std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  return buf;
}

class CertTest : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(CertTest, SshKeygenShowsWhatWasSigned) {
  const auto& [ca_kind, ca_label] = GetParam();
  TempDir dir;
  auto ca_key = NewKey(ca_kind);
  auto ca = PublicKey::FromEvp(ca_key.get());
  ASSERT_TRUE(ca.ok());
  auto signer = EvpSigner(ca_key.get());
  ASSERT_TRUE(signer.ok());

  for (const char* subject_type : {"ed25519", "ecdsa -b 384", "rsa -b 3072"}) {
    const std::string id = SshKeygen(dir, subject_type, "id");
    auto subject = ParseAuthorizedKey(ReadFile(id + ".pub"));
    ASSERT_TRUE(subject.ok()) << subject.error().ToString();

    CertificateSpec spec;
    spec.type = CertType::kUser;
    spec.serial = 4242;
    spec.key_id = "custos:ci deploy";
    spec.principals = {"alice", "deploy"};
    spec.valid_after = kJan2026;
    spec.valid_before = kJan2026 + 8 * 3600;
    spec.force_command = "/usr/bin/rsync --server";
    spec.source_address = "10.0.0.0/8,192.168.1.7";
    spec.extensions = {"permit-pty", "permit-agent-forwarding", "permit-pty"};
    auto cert = SignCertificate(spec, subject->key, *ca, *signer);
    ASSERT_TRUE(cert.ok()) << cert.error().ToString();
    WriteFile(id + "-cert.pub", cert->ToLine("alice@custos") + "\n");

    auto [rc, out] = RunCommand("TZ=UTC ssh-keygen -L -f " + id + "-cert.pub");
    ASSERT_EQ(rc, 0) << out;
    EXPECT_NE(
        out.find("Type: " + std::string(CertTypeName(subject->key.type())) + " user certificate"),
        std::string::npos)
        << out;
    EXPECT_NE(out.find("Signing CA: " + ca_label + " " + ca->Fingerprint() + " (using " +
                       std::string(SignatureAlgorithm(ca->type())) + ")"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("Key ID: \"custos:ci deploy\""), std::string::npos) << out;
    EXPECT_NE(out.find("Serial: 4242"), std::string::npos) << out;
    EXPECT_NE(out.find("Valid: from " + UtcTimestamp(spec.valid_after) + " to " +
                       UtcTimestamp(spec.valid_before)),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("Principals: \n                alice\n                deploy\n"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("force-command /usr/bin/rsync --server"), std::string::npos) << out;
    EXPECT_NE(out.find("source-address 10.0.0.0/8,192.168.1.7"), std::string::npos) << out;
    EXPECT_NE(out.find("Extensions: \n                permit-agent-forwarding\n"
                       "                permit-pty\n"),
              std::string::npos)
        << out;

    // Independent check of the CA signature with OpenSSL.
    auto [tbs, sig] = SplitCertificate(cert->blob);
    ASSERT_FALSE(sig.empty());
    EXPECT_TRUE(OpenSslVerify(ca_key.get(), tbs, sig));
    auto expected_tbs = CertificateToBeSigned(
        [&] {
          CertificateSpec s = spec;
          Reader r(ByteSpan(cert->blob));
          std::string name;
          ByteSpan nonce;
          EXPECT_TRUE(r.String(&name) && r.String(&nonce));
          s.nonce.assign(nonce.begin(), nonce.end());
          return s;
        }(),
        subject->key, *ca);
    ASSERT_TRUE(expected_tbs.ok());
    EXPECT_EQ(*expected_tbs, tbs);

    // A flipped signature bit makes ssh-keygen refuse the certificate.
    Bytes broken = cert->blob;
    broken[broken.size() - 5] ^= 0x01;
    WriteFile(id + "-cert.pub",
              std::string(CertTypeName(subject->key.type())) + " " + Base64Encode(broken) + "\n");
    auto [rc2, out2] = RunCommand("ssh-keygen -L -f " + id + "-cert.pub");
    EXPECT_NE(rc2, 0) << out2;

    std::filesystem::remove(id);
    std::filesystem::remove(id + ".pub");
    std::filesystem::remove(id + "-cert.pub");
  }
}

INSTANTIATE_TEST_SUITE_P(CaKeys, CertTest,
                         ::testing::Values(std::pair{"ED25519", "ED25519"},
                                           std::pair{"P-256", "ECDSA"}, std::pair{"P-384", "ECDSA"},
                                           std::pair{"RSA-3072", "RSA"}));

// OpenSSH's own certificate checks (CA trust, principal, validity window):
// a file signed with the certified key verifies against a cert-authority
// allowed_signers line for a listed principal only.
TEST(Cert, OpenSshAcceptsCertificateForListedPrincipalOnly) {
  TempDir dir;
  auto ca_key = NewKey("P-256");
  auto ca = PublicKey::FromEvp(ca_key.get());
  auto signer = EvpSigner(ca_key.get());
  ASSERT_TRUE(ca.ok() && signer.ok());
  const std::string id = SshKeygen(dir, "ed25519", "id");
  auto subject = ParseAuthorizedKey(ReadFile(id + ".pub"));
  ASSERT_TRUE(subject.ok());

  const auto now = static_cast<std::uint64_t>(std::time(nullptr));
  CertificateSpec spec;
  spec.serial = 7;
  spec.key_id = "ci";
  spec.principals = {"alice"};
  spec.valid_after = now - 60;
  spec.valid_before = now + 3600;
  spec.extensions = {"permit-pty"};
  auto cert = SignCertificate(spec, subject->key, *ca, *signer);
  ASSERT_TRUE(cert.ok()) << cert.error().ToString();
  WriteFile(id + "-cert.pub", cert->ToLine() + "\n");

  WriteFile(dir / "message", "payload\n");
  auto [rc, out] =
      RunCommand("ssh-keygen -Y sign -f " + id + "-cert.pub -n file " + dir / "message");
  ASSERT_EQ(rc, 0) << out;
  WriteFile(dir / "allowed", "alice,bob cert-authority,namespaces=\"file\" " + ca->ToLine() + "\n");
  auto verify = [&](const std::string& who) {
    return RunCommand("ssh-keygen -Y verify -f " + dir / "allowed" + " -I " + who + " -n file -s " +
                      dir / "message.sig" + " < " + dir / "message");
  };
  auto [ok_rc, ok_out] = verify("alice");
  EXPECT_EQ(ok_rc, 0) << ok_out;
  EXPECT_NE(ok_out.find("Good \"file\" signature for alice"), std::string::npos) << ok_out;
  auto [bob_rc, bob_out] = verify("bob");  // trusted CA, but bob is not in the certificate
  EXPECT_NE(bob_rc, 0) << bob_out;
}

TEST(Cert, HostCertificate) {
  TempDir dir;
  auto ca_key = NewKey("ED25519");
  auto ca = PublicKey::FromEvp(ca_key.get());
  auto signer = EvpSigner(ca_key.get());
  ASSERT_TRUE(ca.ok() && signer.ok());
  const std::string id = SshKeygen(dir, "ecdsa -b 256", "host");
  auto subject = ParseAuthorizedKey(ReadFile(id + ".pub"));
  ASSERT_TRUE(subject.ok());
  CertificateSpec spec;
  spec.type = CertType::kHost;
  spec.serial = 1;
  spec.key_id = "host:web1";
  spec.principals = {"web1.example.org", "web1"};
  spec.valid_after = kJan2026;
  spec.valid_before = kJan2026 + 86400 * 30;
  auto cert = SignCertificate(spec, subject->key, *ca, *signer);
  ASSERT_TRUE(cert.ok()) << cert.error().ToString();
  WriteFile(id + "-cert.pub", cert->ToLine() + "\n");
  auto [rc, out] = RunCommand("ssh-keygen -L -f " + id + "-cert.pub");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("ecdsa-sha2-nistp256-cert-v01@openssh.com host certificate"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("web1.example.org"), std::string::npos) << out;
}

TEST(Cert, RefusesBadSpecs) {
  auto ca_key = NewKey("ED25519");
  auto ca = PublicKey::FromEvp(ca_key.get());
  auto subject = PublicKey::FromEvp(NewKey("ED25519").get());
  auto signer = EvpSigner(ca_key.get());
  ASSERT_TRUE(ca.ok() && subject.ok() && signer.ok());
  CertificateSpec good;
  good.principals = {"alice"};
  good.valid_after = kJan2026;
  good.valid_before = kJan2026 + 3600;
  ASSERT_TRUE(SignCertificate(good, *subject, *ca, *signer).ok());

  struct Case {
    std::function<void(CertificateSpec&)> change;
    std::string rule;
  };
  const Case cases[] = {
      {[](CertificateSpec& s) { s.principals.clear(); }, "ssh-cert-principals"},
      {[](CertificateSpec& s) { s.principals = {"a,b"}; }, "ssh-cert-principals"},
      {[](CertificateSpec& s) { s.principals = {"a b"}; }, "ssh-cert-principals"},
      {[](CertificateSpec& s) { s.principals = {""}; }, "ssh-cert-principals"},
      {[](CertificateSpec& s) {
         s.principals = {"a", "a"};
       },
       "ssh-cert-principals"},
      {[](CertificateSpec& s) { s.principals = {std::string(300, 'a')}; }, "ssh-cert-principals"},
      {[](CertificateSpec& s) { s.principals.assign(300, "x"); }, "ssh-cert-principals"},
      {[](CertificateSpec& s) { s.key_id = "bad\nid"; }, "ssh-cert-key-id"},
      {[](CertificateSpec& s) { s.valid_before = s.valid_after; }, "ssh-cert-validity"},
      {[](CertificateSpec& s) { s.nonce = Bytes(16, 1); }, "ssh-cert-nonce"},
      {[](CertificateSpec& s) { s.extensions = {"permit-everything"}; }, "ssh-cert-extension"},
      {[](CertificateSpec& s) { s.force_command = ""; }, "ssh-cert-options"},
      {[](CertificateSpec& s) { s.force_command = "a\nb"; }, "ssh-cert-options"},
      {[](CertificateSpec& s) { s.source_address = "10.0.0.0/8,,"; }, "ssh-cert-options"},
      {[](CertificateSpec& s) { s.source_address = "host.example"; }, "ssh-cert-options"},
      {[](CertificateSpec& s) {
         s.type = CertType::kHost;
         s.extensions = {"permit-pty"};
       },
       "ssh-cert-options"},
      {[](CertificateSpec& s) {
         s.type = CertType::kHost;
         s.force_command = "/bin/true";
       },
       "ssh-cert-options"},
      {[](CertificateSpec& s) { s.type = static_cast<CertType>(3); }, "ssh-cert-type"},
  };
  for (const Case& c : cases) {
    CertificateSpec spec = good;
    c.change(spec);
    auto r = SignCertificate(spec, *subject, *ca, *signer);
    ASSERT_FALSE(r.ok()) << c.rule;
    EXPECT_EQ(r.error().rule, c.rule) << r.error().message;
  }
  auto self = SignCertificate(good, *ca, *ca, *signer);
  ASSERT_FALSE(self.ok());
  EXPECT_EQ(self.error().rule, "ssh-cert-subject");
}

TEST(Cert, SignerFaultsNeverYieldACertificate) {
  auto ca_key = NewKey("P-256");
  auto other_key = NewKey("P-256");
  auto ca = PublicKey::FromEvp(ca_key.get());
  auto subject = PublicKey::FromEvp(NewKey("ED25519").get());
  auto wrong_signer = EvpSigner(other_key.get());
  ASSERT_TRUE(ca.ok() && subject.ok() && wrong_signer.ok());
  CertificateSpec spec;
  spec.principals = {"alice"};
  spec.valid_after = kJan2026;
  spec.valid_before = kJan2026 + 3600;

  auto r = SignCertificate(spec, *subject, *ca, *wrong_signer);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().rule, "ssh-cert-signature");

  Signer garbage = [](ByteSpan) -> Result<Bytes> { return Bytes(64, 0x41); };
  r = SignCertificate(spec, *subject, *ca, garbage);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().rule, "ssh-signature-format");

  Signer failing = [](ByteSpan) -> Result<Bytes> {
    return Error{"hsm-unavailable", "the HSM did not answer"};
  };
  r = SignCertificate(spec, *subject, *ca, failing);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().rule, "hsm-unavailable");
}

TEST(Cert, FreshNonceEachTime) {
  auto ca_key = NewKey("ED25519");
  auto ca = PublicKey::FromEvp(ca_key.get());
  auto subject = PublicKey::FromEvp(NewKey("ED25519").get());
  ASSERT_TRUE(ca.ok() && subject.ok());
  CertificateSpec spec;
  spec.principals = {"alice"};
  spec.valid_after = kJan2026;
  spec.valid_before = kJan2026 + 3600;
  auto a = CertificateToBeSigned(spec, *subject, *ca);
  auto b = CertificateToBeSigned(spec, *subject, *ca);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  spec.nonce = Bytes(32, 7);
  auto c = CertificateToBeSigned(spec, *subject, *ca);
  auto d = CertificateToBeSigned(spec, *subject, *ca);
  ASSERT_TRUE(c.ok() && d.ok());
  EXPECT_EQ(*c, *d);
}

}  // namespace
}  // namespace custos::service::ssh
