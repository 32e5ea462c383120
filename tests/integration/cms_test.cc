// CMS detached signatures end to end (issue 6, docs/codesigning.md): a real
// custosd on a real SoftHSM token with the dev CA hierarchy of
// `custos-init dev`, the real `custos` CLI, and OpenSSL's `cms -verify` as
// the judge. Keys get certificates from the dev-intermediate CA (keys
// certify --profile code-signing) or from a CA the test makes with openssl
// (keys attach-cert).
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cctype>
#include <filesystem>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "custos/client/client.h"
#include "custos/client/config.h"
#include "custos/v1/custos.pb.h"
#include "harness.h"

namespace custos::testing {
namespace {

namespace v1 = custos::v1;

std::string Dump(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string Sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The DER of the one certificate in a PEM file.
std::string PemToDer(const std::string& pem_path) {
  return Exec({"openssl", "x509", "-in", pem_path, "-outform", "DER"}).out;
}

class Cms : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    deployment_ = new Deployment();
    work_ = new TempDir();
    ASSERT_TRUE(deployment_->Start()) << deployment_->log();
    for (const auto& [name, type] :
         std::vector<std::pair<std::string, std::string>>{{"cms-ec", "ec-p256"},
                                                          {"cms-rsa", "rsa-3072"},
                                                          {"cms-p384", "ec-p384"},
                                                          {"cms-bare", "ec-p256"},
                                                          {"cms-imported", "ec-p256"},
                                                          {"cms-ed", "ed25519"},
                                                          {"cms-revoked", "ec-p256"},
                                                          {"release-cms", "ec-p256"}}) {
      CommandResult r = deployment_->Custos(
          "admin", {"keys", "create", name, "--type", type, "--usage", "code-signing"});
      ASSERT_EQ(r.exit_code, 0) << name << "\n" << Dump(r);
    }
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(deployment_->Stop(), 0) << deployment_->log();
    delete work_;
    work_ = nullptr;
    delete deployment_;
    deployment_ = nullptr;
  }

  static std::string File(const std::string& name) { return work_->path() + "/" + name; }
  static std::string Root() { return deployment_->dir() + "/ca/dev-root.crt"; }

  // The exact verification command of the brief.
  static CommandResult OpensslVerify(const std::string& file, const std::string& p7s,
                                     const std::string& ca_file) {
    return Exec({"openssl", "cms", "-verify", "-binary", "-content", file, "-inform", "DER", "-in",
                 p7s, "-CAfile", ca_file, "-out", "/dev/null"});
  }

  // keys certify KEY --profile code-signing, certificate and chain in files.
  static void Certify(const std::string& key) {
    CommandResult r =
        deployment_->Custos("admin", {"keys", "certify", key, "--profile", "code-signing",
                                      "--subject", "OU=Release Engineering", "--out",
                                      File(key + ".crt"), "--chain", File(key + "-chain.pem")});
    ASSERT_EQ(r.exit_code, 0) << Dump(r);
    EXPECT_TRUE(Contains(r.out, "certified " + key + "@1")) << r.out;
  }

  // Certifies `key`, signs a file with it as CMS and checks the signature
  // with openssl (and that a modified file fails).
  static void CertifySignVerify(const std::string& key) {
    Certify(key);
    const std::string text =
        Exec({"openssl", "x509", "-in", File(key + ".crt"), "-noout", "-text"}).out;
    EXPECT_TRUE(Contains(text, "Code Signing")) << text;
    EXPECT_TRUE(Contains(text, "O = Custos Dev, OU = Release Engineering")) << text;

    const std::string artifact = File(key + "-artifact.tar");
    WriteFile(artifact, "release artifact of " + key + "\n" + std::string(100000, 'a'));
    CommandResult s = deployment_->Custos(
        "builder",
        {"sign", "--format", "cms", "--key", key, "--in", artifact, "--out", artifact + ".p7s"});
    ASSERT_EQ(s.exit_code, 0) << Dump(s);
    EXPECT_TRUE(Contains(s.out, "signed " + artifact + " with " + key + "@1 (CMS")) << s.out;

    CommandResult v = OpensslVerify(artifact, artifact + ".p7s", Root());
    EXPECT_EQ(v.exit_code, 0) << Dump(v);
    EXPECT_TRUE(Contains(v.err, "Verification successful")) << Dump(v);

    // One bit changed: the file's digest no longer matches messageDigest.
    const std::string modified = File(key + "-modified.tar");
    std::string content = ReadFile(artifact);
    content[10] ^= 1;
    WriteFile(modified, content);
    CommandResult bad = OpensslVerify(modified, artifact + ".p7s", Root());
    EXPECT_NE(bad.exit_code, 0) << Dump(bad);
    EXPECT_TRUE(Contains(bad.err, "content verify error")) << Dump(bad);
  }

  static std::unique_ptr<client::Client> Connect(const std::string& who) {
    auto config = client::LoadClientConfig(deployment_->client_conf(who));
    EXPECT_TRUE(config.ok()) << (config.ok() ? "" : config.error().message());
    if (!config.ok()) return nullptr;
    config->retries = 0;
    auto c = client::Client::Connect(*config);
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message());
    return c.ok() ? std::move(*c) : nullptr;
  }

  static Deployment* deployment_;
  static TempDir* work_;
};
Deployment* Cms::deployment_ = nullptr;
TempDir* Cms::work_ = nullptr;

TEST_F(Cms, EcdsaP256CertifiedSignatureVerifiesWithOpenssl) { CertifySignVerify("cms-ec"); }

TEST_F(Cms, Rsa3072CertifiedSignatureVerifiesWithOpenssl) { CertifySignVerify("cms-rsa"); }

TEST_F(Cms, EcdsaP384SignsWithSha384) {
  CertifySignVerify("cms-p384");
  // SHA-256 does not fit a P-384 key's CMS signature.
  const std::string artifact = File("cms-p384-artifact.tar");
  CommandResult r = deployment_->Custos("builder", {"sign", "--format", "cms", "--key", "cms-p384",
                                                    "--algorithm", "sha256", "--in", artifact});
  EXPECT_EQ(r.exit_code, 4) << Dump(r);
  EXPECT_TRUE(Contains(r.err, "hash with sha384, not sha256")) << Dump(r);
}

// The signed attributes as openssl prints them, and the messageDigest equal
// to the SHA-256 of the file (read from the DER with asn1parse).
TEST_F(Cms, SignedAttributesContentTypeMessageDigestSigningTime) {
  Certify("cms-ec");
  const std::string artifact = File("attrs.bin");
  WriteFile(artifact, "attributes\n");
  CommandResult s = deployment_->Custos(
      "builder", {"sign", "--format", "cms", "--key", "cms-ec", "--in", artifact, "--json"});
  ASSERT_EQ(s.exit_code, 0) << Dump(s);
  EXPECT_TRUE(Contains(s.out, "\"out\":\"" + artifact + ".p7s\"")) << s.out;
  CommandResult p =
      Exec({"openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", artifact + ".p7s"});
  ASSERT_EQ(p.exit_code, 0) << Dump(p);
  EXPECT_TRUE(Contains(p.out, "contentType: pkcs7-signedData")) << p.out;
  EXPECT_TRUE(Contains(p.out, "eContentType: pkcs7-data")) << p.out;
  EXPECT_TRUE(Contains(p.out, "eContent: <ABSENT>")) << p.out;
  EXPECT_TRUE(Contains(p.out, "object: contentType (1.2.840.113549.1.9.3)")) << p.out;
  EXPECT_TRUE(Contains(p.out, "object: messageDigest (1.2.840.113549.1.9.4)")) << p.out;
  EXPECT_TRUE(Contains(p.out, "object: signingTime (1.2.840.113549.1.9.5)")) << p.out;
  EXPECT_TRUE(Contains(p.out, "UTCTIME:")) << p.out;
  EXPECT_TRUE(Contains(p.out, "algorithm: ecdsa-with-SHA256")) << p.out;

  // GnuTLS, a second verifier nobody here wrote: signature, chain to the root,
  // the codeSigning purpose, and the signing time it read.
  CommandResult g =
      Exec({"certtool", "--p7-verify", "--inder", "--infile", artifact + ".p7s", "--load-data",
            artifact, "--load-ca-certificate", Root(), "--verify-purpose", "1.3.6.1.5.5.7.3.3"});
  EXPECT_EQ(g.exit_code, 0) << Dump(g);
  EXPECT_TRUE(Contains(g.out + g.err, "Signature status: ok")) << Dump(g);
  EXPECT_TRUE(Contains(g.out + g.err, "Signing time:")) << Dump(g);
  WriteFile(File("attrs-modified.bin"), "attributes!\n");
  CommandResult gbad = Exec({"certtool", "--p7-verify", "--inder", "--infile", artifact + ".p7s",
                             "--load-data", File("attrs-modified.bin"), "--load-ca-certificate",
                             Root(), "--verify-purpose", "1.3.6.1.5.5.7.3.3"});
  EXPECT_NE(gbad.exit_code, 0) << Dump(gbad);

  CommandResult a = Exec({"openssl", "asn1parse", "-inform", "DER", "-in", artifact + ".p7s"});
  ASSERT_EQ(a.exit_code, 0) << Dump(a);
  const std::size_t at = a.out.find(":messageDigest");
  ASSERT_NE(at, std::string::npos) << a.out;
  static const std::regex kHexDump("\\[HEX DUMP\\]:([0-9A-F]+)");
  std::smatch m;
  const std::string after = a.out.substr(at);
  ASSERT_TRUE(std::regex_search(after, m, kHexDump)) << after;
  EXPECT_EQ(Lower(m[1].str()), Sha256Hex("attributes\n"));
}

// The chain is in the CMS: with --no-chain, the root alone does not verify;
// given the intermediate separately, it does.
TEST_F(Cms, ChainTravelsInTheSignature) {
  Certify("cms-ec");
  const std::string artifact = File("chain.bin");
  WriteFile(artifact, "chain\n");
  CommandResult s = deployment_->Custos("builder", {"sign", "--format", "cms", "--key", "cms-ec",
                                                    "--in", artifact, "--out", File("chain.p7s")});
  ASSERT_EQ(s.exit_code, 0) << Dump(s);
  // Signer, intermediate and root, as openssl reads them from the SignedData.
  CommandResult certs = Exec(
      {"openssl", "pkcs7", "-print_certs", "-noout", "-inform", "DER", "-in", File("chain.p7s")});
  ASSERT_EQ(certs.exit_code, 0) << Dump(certs);
  EXPECT_TRUE(Contains(certs.out, "subject=O = Custos Dev, OU = Release Engineering")) << certs.out;
  EXPECT_TRUE(Contains(certs.out, "subject=O = Custos Dev, CN = Custos Dev Intermediate"))
      << certs.out;
  EXPECT_TRUE(Contains(certs.out, "subject=O = Custos Dev, CN = Custos Dev Root")) << certs.out;
  EXPECT_EQ(OpensslVerify(artifact, File("chain.p7s"), Root()).exit_code, 0);

  CommandResult n =
      deployment_->Custos("builder", {"sign", "--format", "cms", "--key", "cms-ec", "--in",
                                      artifact, "--out", File("nochain.p7s"), "--no-chain"});
  ASSERT_EQ(n.exit_code, 0) << Dump(n);
  CommandResult v = OpensslVerify(artifact, File("nochain.p7s"), Root());
  EXPECT_NE(v.exit_code, 0) << Dump(v);
  EXPECT_TRUE(Contains(v.err, "unable to get local issuer certificate")) << Dump(v);
  // The same signature verifies once the intermediate is trusted too.
  WriteFile(File("root+intermediate.pem"),
            ReadFile(Root()) + ReadFile(deployment_->dir() + "/ca/dev-intermediate.crt"));
  CommandResult with = OpensslVerify(artifact, File("nochain.p7s"), File("root+intermediate.pem"));
  EXPECT_EQ(with.exit_code, 0) << Dump(with);
}

TEST_F(Cms, KeyWithoutCertificateIsRefusedWithTheHint) {
  const std::string artifact = File("bare.bin");
  WriteFile(artifact, "bare\n");
  CommandResult r = deployment_->Custos(
      "builder", {"sign", "--format", "cms", "--key", "cms-bare", "--in", artifact});
  EXPECT_EQ(r.exit_code, 4) << Dump(r);
  EXPECT_TRUE(Contains(r.err, "FAILED_PRECONDITION")) << r.err;
  EXPECT_TRUE(Contains(r.err, "custos keys certify cms-bare --profile code-signing")) << r.err;
  EXPECT_TRUE(Contains(r.err, "keys attach-cert cms-bare")) << r.err;
}

TEST_F(Cms, WrongLengthDigestIsRefused) {
  Certify("cms-ec");
  auto c = Connect("builder");
  ASSERT_NE(c, nullptr);
  for (const auto& [alg, length] :
       std::vector<std::pair<std::string, std::size_t>>{{"sha256", 31}, {"sha256", 48}, {"", 0}}) {
    v1::Request req;
    auto* sign = req.mutable_sign_cms();
    sign->set_key("cms-ec");
    sign->set_digest_algorithm(alg);
    sign->set_digest(std::string(length, '\x11'));
    auto resp = c->Call(req);
    ASSERT_TRUE(resp.ok()) << resp.error().message();
    EXPECT_EQ(resp->status().code(), v1::INVALID_ARGUMENT) << resp->status().message();
    EXPECT_TRUE(Contains(resp->status().message(), "digest is " + std::to_string(length) +
                                                       " bytes; a sha256 digest is 32 bytes"))
        << resp->status().message();
  }
  v1::Request req;
  req.mutable_sign_cms()->set_key("cms-ec");
  req.mutable_sign_cms()->set_digest_algorithm("md5");
  req.mutable_sign_cms()->set_digest(std::string(16, 'x'));
  auto resp = c->Call(req);
  ASSERT_TRUE(resp.ok());
  EXPECT_EQ(resp->status().code(), v1::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(resp->status().message(), "use sha256, sha384 or sha512"));
}

// A certificate issued for one key is refused for another, naming the key.
TEST_F(Cms, AttachCertIssuedForAnotherKeyIsRefused) {
  Certify("cms-ec");
  CommandResult r = deployment_->Custos(
      "admin",
      {"keys", "attach-cert", "cms-bare", File("cms-ec.crt"), "--chain", File("cms-ec-chain.pem")});
  EXPECT_EQ(r.exit_code, 4) << Dump(r);
  EXPECT_TRUE(Contains(r.err, "public key is not the public key of cms-bare@1")) << r.err;
  // Garbage is refused as such.
  WriteFile(File("junk.crt"), "not a certificate");
  CommandResult j =
      deployment_->Custos("admin", {"keys", "attach-cert", "cms-bare", File("junk.crt")});
  EXPECT_NE(j.exit_code, 0) << Dump(j);
  // Only admins (MANAGE_CA) attach certificates.
  CommandResult b =
      deployment_->Custos("builder", {"keys", "attach-cert", "cms-ec", File("cms-ec.crt")});
  EXPECT_EQ(b.exit_code, 4) << Dump(b);
  EXPECT_TRUE(Contains(b.err, "PERMISSION_DENIED")) << b.err;
}

// A certificate from a CA that is not Custos's, made here with openssl for
// the key's public key, attached with its chain; the CMS signature verifies
// against that CA.
TEST_F(Cms, AttachCertFromAnExternalCa) {
  const std::string pub = File("imported.pub");
  CommandResult p =
      deployment_->Custos("builder", {"keys", "pubkey", "cms-imported", "--out", pub});
  ASSERT_EQ(p.exit_code, 0) << Dump(p);
  WriteFile(File("ext.cnf"),
            "[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier=hash\n"
            "[leaf]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=codeSigning,emailProtection\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n");
  CommandResult ca = Exec({"openssl",
                           "req",
                           "-x509",
                           "-newkey",
                           "ec",
                           "-pkeyopt",
                           "ec_paramgen_curve:P-256",
                           "-nodes",
                           "-keyout",
                           File("ext-ca.key"),
                           "-out",
                           File("ext-ca.pem"),
                           "-days",
                           "30",
                           "-subj",
                           "/O=External/CN=External CA",
                           "-extensions",
                           "ca",
                           "-config",
                           File("ext.cnf")});
  ASSERT_EQ(ca.exit_code, 0) << Dump(ca);
  // openssl x509 -new (OpenSSL 3) certifies a public key without a CSR.
  CommandResult leaf =
      Exec({"openssl", "x509", "-new", "-force_pubkey", pub, "-subj", "/O=External/CN=cms-imported",
            "-CA", File("ext-ca.pem"), "-CAkey", File("ext-ca.key"), "-days", "10", "-extfile",
            File("ext.cnf"), "-extensions", "leaf", "-out", File("imported.crt")});
  ASSERT_EQ(leaf.exit_code, 0) << Dump(leaf);

  // A chain certificate that did not sign it is refused.
  CommandResult wrong = deployment_->Custos(
      "admin", {"keys", "attach-cert", "cms-imported", File("imported.crt"), "--chain", Root()});
  EXPECT_EQ(wrong.exit_code, 4) << Dump(wrong);
  EXPECT_TRUE(Contains(wrong.err, "chain certificate 1 did not sign the certificate")) << wrong.err;

  CommandResult r =
      deployment_->Custos("admin", {"keys", "attach-cert", "cms-imported", File("imported.crt"),
                                    "--chain", File("ext-ca.pem"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << Dump(r);
  EXPECT_TRUE(Contains(r.out, "\"source\":\"imported\"")) << r.out;
  EXPECT_TRUE(Contains(r.out, "\"key\":\"cms-imported@1\"")) << r.out;

  const std::string artifact = File("imported.bin");
  WriteFile(artifact, "imported\n");
  CommandResult s = deployment_->Custos(
      "builder", {"sign", "--format", "cms", "--key", "cms-imported", "--in", artifact});
  ASSERT_EQ(s.exit_code, 0) << Dump(s);
  EXPECT_EQ(OpensslVerify(artifact, artifact + ".p7s", File("ext-ca.pem")).exit_code, 0);
  EXPECT_NE(OpensslVerify(artifact, artifact + ".p7s", Root()).exit_code, 0);

  // GetPublicKey returns the attached certificate and chain.
  auto c = Connect("builder");
  ASSERT_NE(c, nullptr);
  v1::Request req;
  req.mutable_get_public_key()->set_key("cms-imported");
  auto resp = c->Call(req);
  ASSERT_TRUE(resp.ok());
  ASSERT_EQ(resp->status().code(), v1::OK) << resp->status().message();
  EXPECT_EQ(resp->get_public_key().cert_der(), PemToDer(File("imported.crt")));
  ASSERT_EQ(resp->get_public_key().chain_der_size(), 1);
  EXPECT_EQ(resp->get_public_key().chain_der(0), PemToDer(File("ext-ca.pem")));
}

// Keys under a SIGN quorum rule (release-*) never sign CMS without the
// officers: refused, naming the rule.
TEST_F(Cms, QuorumKeyIsRefusedNamingTheRule) {
  Certify("release-cms");
  const std::string artifact = File("release.bin");
  WriteFile(artifact, "release\n");
  CommandResult r = deployment_->Custos(
      "builder", {"sign", "--format", "cms", "--key", "release-cms", "--in", artifact});
  EXPECT_EQ(r.exit_code, 4) << Dump(r);
  EXPECT_TRUE(Contains(r.err, "needs quorum approval (rule release-signing")) << r.err;
  EXPECT_FALSE(std::filesystem::exists(artifact + ".p7s"));
}

TEST_F(Cms, CertifyRefusals) {
  // The code-signing profile is for admins.
  CommandResult b =
      deployment_->Custos("builder", {"keys", "certify", "cms-bare", "--profile", "code-signing"});
  EXPECT_EQ(b.exit_code, 4) << Dump(b);
  EXPECT_TRUE(Contains(b.err, "profile:code-signing")) << b.err;
  // The profile's subject rules still apply (CN is not taken from requests).
  CommandResult cn = deployment_->Custos(
      "admin", {"keys", "certify", "cms-bare", "--profile", "code-signing", "--subject", "CN=x"});
  EXPECT_EQ(cn.exit_code, 4) << Dump(cn);
  EXPECT_TRUE(Contains(cn.err, "subject-attribute")) << cn.err;
  // Another profile's key checks: tls-server needs SANs under its suffix.
  CommandResult tls =
      deployment_->Custos("admin", {"keys", "certify", "cms-bare", "--profile", "tls-server"});
  EXPECT_EQ(tls.exit_code, 4) << Dump(tls);
  // Nothing was attached by the refusals.
  const std::string artifact = File("refusals.bin");
  WriteFile(artifact, "x");
  CommandResult s = deployment_->Custos(
      "builder", {"sign", "--format", "cms", "--key", "cms-bare", "--in", artifact});
  EXPECT_TRUE(Contains(s.err, "has no certificate")) << Dump(s);
}

// Ed25519 keys sign raw and SSHSIG, not CMS: refused in words, both ways.
TEST_F(Cms, Ed25519IsRefusedClearly) {
  CommandResult c =
      deployment_->Custos("admin", {"keys", "certify", "cms-ed", "--profile", "code-signing"});
  EXPECT_EQ(c.exit_code, 4) << Dump(c);
  EXPECT_TRUE(Contains(c.err, "is ed25519: custosd makes CMS signatures with RSA and EC keys only"))
      << c.err;
  const std::string artifact = File("ed.bin");
  WriteFile(artifact, "ed\n");
  CommandResult s = deployment_->Custos(
      "builder", {"sign", "--format", "cms", "--key", "cms-ed", "--in", artifact});
  EXPECT_EQ(s.exit_code, 4) << Dump(s);
  EXPECT_TRUE(Contains(s.err, "is ed25519: custosd makes CMS signatures with RSA and EC keys only"))
      << s.err;
}

// A revoked certificate (keyCompromise) signs nothing more.
TEST_F(Cms, RevokedCertificateSignsNothing) {
  CommandResult c = deployment_->Custos(
      "admin", {"keys", "certify", "cms-revoked", "--profile", "code-signing", "--json"});
  ASSERT_EQ(c.exit_code, 0) << Dump(c);
  std::smatch m;
  static const std::regex kSerial("\"serial\":\"([0-9a-f]+)\"");
  ASSERT_TRUE(std::regex_search(c.out, m, kSerial)) << c.out;
  const std::string serial = m[1].str();
  const std::string artifact = File("revoked.bin");
  WriteFile(artifact, "revoked\n");
  CommandResult ok = deployment_->Custos(
      "builder", {"sign", "--format", "cms", "--key", "cms-revoked", "--in", artifact});
  ASSERT_EQ(ok.exit_code, 0) << Dump(ok);
  CommandResult r =
      deployment_->Custos("admin", {"cert", "revoke", serial, "--reason", "keyCompromise"});
  ASSERT_EQ(r.exit_code, 0) << Dump(r);
  CommandResult s = deployment_->Custos(
      "builder", {"sign", "--format", "cms", "--key", "cms-revoked", "--in", artifact});
  EXPECT_EQ(s.exit_code, 4) << Dump(s);
  EXPECT_TRUE(Contains(s.err, "(serial " + serial + ") is revoked (keyCompromise)")) << s.err;
}

// Probing: a principal no rule lets sign (issuer) gets the same refusal for
// an RSA key, a P-256 key and a key that does not exist.
TEST_F(Cms, RefusalDoesNotRevealWhetherOrWhatKeyExists) {
  auto c = Connect("issuer");
  ASSERT_NE(c, nullptr);
  auto refusal = [&](const std::string& key) {
    v1::Request req;
    req.mutable_sign_cms()->set_key(key);
    req.mutable_sign_cms()->set_digest_algorithm("sha256");
    req.mutable_sign_cms()->set_digest(std::string(32, 'x'));
    auto resp = c->Call(req);
    EXPECT_TRUE(resp.ok());
    if (!resp.ok()) return std::string();
    EXPECT_EQ(resp->status().code(), v1::PERMISSION_DENIED) << resp->status().message();
    std::string text = resp->status().message() + " / " + resp->status().policy_rule();
    const std::size_t at = text.find(key);
    if (at != std::string::npos) text.replace(at, key.size(), "KEY");
    return text;
  };
  const std::string missing = refusal("cms-nonexistent");
  EXPECT_EQ(refusal("cms-rsa"), missing);
  EXPECT_EQ(refusal("cms-ec"), missing);
}

}  // namespace
}  // namespace custos::testing
