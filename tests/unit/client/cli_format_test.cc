// The custos CLI's CA formats (client/cli/format.cc) on objects made here with
// OpenSSL, and its argument handling, run as the real `custos` binary
// (usage errors need no server).
#include <sys/wait.h>

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "cli.h"

namespace custos::cli {
namespace {

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

template <typename I2d, typename T>
std::string ToDer(I2d i2d, T* object) {
  unsigned char* der = nullptr;
  const int len = i2d(object, &der);
  std::string out(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  return out;
}

template <typename Write, typename T>
std::string ToPem(Write write, T* object) {
  BIO* bio = BIO_new(BIO_s_mem());
  write(bio, object);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return out;
}

PkeyPtr Key() { return PkeyPtr(EVP_EC_gen("P-256")); }

X509_NAME* Cn(const char* cn) {
  X509_NAME* name = X509_NAME_new();
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  return name;
}

X509_REQ* MakeCsr(EVP_PKEY* key) {
  X509_REQ* req = X509_REQ_new();
  X509_NAME* name = Cn("www.dev.custos.test");
  X509_REQ_set_subject_name(req, name);
  X509_NAME_free(name);
  X509_REQ_set_pubkey(req, key);
  X509_REQ_sign(req, key, EVP_sha256());
  return req;
}

X509* MakeCert(EVP_PKEY* key, const char* cn, long serial) {
  X509* x = X509_new();
  X509_set_version(x, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_NAME* name = Cn(cn);
  X509_set_subject_name(x, name);
  X509_set_issuer_name(x, name);
  X509_NAME_free(name);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_sign(x, key, EVP_sha256());
  return x;
}

TEST(CliFormat, ParseDuration) {
  struct Case {
    const char* text;
    std::uint64_t seconds;  // 0: refused
  };
  const Case cases[] = {
      {"30s", 30},
      {"5m", 300},
      {"12h", 43200},
      {"90d", 7776000},
      {"20y", 630720000},
      {"1y", 31536000},
      {"0d", 0},
      {"d", 0},
      {"", 0},
      {"10", 0},
      {"-5d", 0},
      {"1.5d", 0},
      {"5w", 0},
      {"3 d", 0},
      {"99999999999999999999s", 0},
      {"300000000000y", 0},  // over 2^63 seconds
  };
  for (const Case& c : cases) {
    std::uint64_t seconds = 12345;
    auto failure = ParseDuration(c.text, "validity", &seconds);
    if (c.seconds == 0) {
      ASSERT_TRUE(failure.has_value()) << c.text;
      EXPECT_EQ(failure->exit_code, kExitUsage);
      EXPECT_NE(failure->message.find("--validity '" + std::string(c.text) + "'"),
                std::string::npos)
          << failure->message;
    } else {
      EXPECT_FALSE(failure.has_value()) << c.text << ": " << failure->message;
      EXPECT_EQ(seconds, c.seconds) << c.text;
    }
  }
}

TEST(CliFormat, CsrFromPemOrDer) {
  PkeyPtr key = Key();
  X509_REQ* req = MakeCsr(key.get());
  const std::string der = ToDer(i2d_X509_REQ, req);
  const std::string pem = ToPem(PEM_write_bio_X509_REQ, req);
  X509_REQ_free(req);

  std::string out;
  EXPECT_FALSE(CsrToDer(der, &out).has_value());
  EXPECT_EQ(out, der);
  out.clear();
  EXPECT_FALSE(CsrToDer("Certificate Request:\n    Data: ...\n" + pem, &out).has_value());
  EXPECT_EQ(out, der);
  // CsrPem writes what CsrToDer reads.
  out.clear();
  EXPECT_FALSE(CsrToDer(CsrPem(der), &out).has_value());
  EXPECT_EQ(out, der);

  EXPECT_NE(CsrToDer("hello", &out)->find("not a PKCS#10"), std::string::npos);
  EXPECT_NE(CsrToDer(der + "x", &out)->find("not a PKCS#10"), std::string::npos);
  EXPECT_NE(CsrToDer(der.substr(0, der.size() - 1), &out)->find("not a PKCS#10"),
            std::string::npos);
  EXPECT_NE(CsrToDer("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", &out)
                ->find("not a PKCS#10"),
            std::string::npos);
  // A certificate is not a certificate request.
  X509* cert = MakeCert(key.get(), "x", 1);
  EXPECT_TRUE(CsrToDer(ToDer(i2d_X509, cert), &out).has_value());
  X509_free(cert);
  EXPECT_EQ(CsrPem("junk"), "");
}

TEST(CliFormat, CertificatesFromBundleOrDer) {
  PkeyPtr key = Key();
  X509* a = MakeCert(key.get(), "a", 1);
  X509* b = MakeCert(key.get(), "b", 2);
  const std::string a_der = ToDer(i2d_X509, a), b_der = ToDer(i2d_X509, b);
  const std::string bundle = "leaf first\n" + ToPem(PEM_write_bio_X509, a) +
                             ToPem(PEM_write_bio_PUBKEY, key.get()) + ToPem(PEM_write_bio_X509, b);
  X509_free(a);
  X509_free(b);

  std::vector<std::string> ders;
  ASSERT_FALSE(CertificatesToDer(bundle, &ders).has_value());
  EXPECT_EQ(ders, (std::vector<std::string>{a_der, b_der}));
  ASSERT_FALSE(CertificatesToDer(b_der, &ders).has_value());
  EXPECT_EQ(ders, std::vector<std::string>{b_der});
  // Two DER certificates back to back are not one DER certificate.
  EXPECT_TRUE(CertificatesToDer(a_der + b_der, &ders).has_value());
  EXPECT_NE(CertificatesToDer("", &ders)->find("not an X.509 certificate"), std::string::npos);
  EXPECT_NE(CertificatesToDer("0junk", &ders)->find("not an X.509 certificate"), std::string::npos);
  EXPECT_NE(CertificatesToDer(ToPem(PEM_write_bio_PUBKEY, key.get()), &ders)
                ->find("not an X.509 certificate"),
            std::string::npos);
  const std::string bad_block =
      "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
  EXPECT_NE(CertificatesToDer(bad_block, &ders)->find("block 1"), std::string::npos);

  // PEM output reads back to the same DER; junk gives "".
  const std::string pem = CertificatePem(a_der);
  EXPECT_EQ(pem.rfind("-----BEGIN CERTIFICATE-----\n", 0), 0u) << pem;
  ASSERT_FALSE(CertificatesToDer(pem, &ders).has_value());
  EXPECT_EQ(ders, std::vector<std::string>{a_der});
  EXPECT_EQ(CertificatePem(a_der + std::string(1, '\0')), "");
  EXPECT_EQ(CertificatePem(""), "");
}

TEST(CliFormat, CrlPemAndEntries) {
  PkeyPtr key = Key();
  X509_CRL* crl = X509_CRL_new();
  X509_CRL_set_version(crl, X509_CRL_VERSION_2);
  X509_NAME* name = Cn("Custos Dev Intermediate");
  X509_CRL_set_issuer_name(crl, name);
  X509_NAME_free(name);
  ASN1_TIME* now = ASN1_TIME_set(nullptr, 1780000000);
  X509_CRL_set1_lastUpdate(crl, now);
  X509_CRL_set1_nextUpdate(crl, now);
  for (long serial : {7L, 9L}) {
    X509_REVOKED* r = X509_REVOKED_new();
    ASN1_INTEGER* s = ASN1_INTEGER_new();
    ASN1_INTEGER_set(s, serial);
    X509_REVOKED_set_serialNumber(r, s);
    X509_REVOKED_set_revocationDate(r, now);
    ASN1_INTEGER_free(s);
    X509_CRL_add0_revoked(crl, r);
  }
  ASN1_TIME_free(now);
  X509_CRL_sign(crl, key.get(), EVP_sha256());
  const std::string der = ToDer(i2d_X509_CRL, crl);
  X509_CRL_free(crl);

  EXPECT_EQ(CrlEntryCount(der), 2);
  EXPECT_EQ(CrlEntryCount("junk"), -1);
  const std::string pem = CrlPem(der);
  EXPECT_EQ(pem.rfind("-----BEGIN X509 CRL-----\n", 0), 0u) << pem;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509_CRL* back = PEM_read_bio_X509_CRL(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(back, nullptr);
  EXPECT_EQ(ToDer(i2d_X509_CRL, back), der);
  X509_CRL_free(back);
  EXPECT_EQ(CrlPem(der.substr(1)), "");

  v1::CrlInfo info;
  info.set_ca("dev-intermediate");
  info.set_crl_der(der);
  info.set_number(4);
  info.set_this_update(1780000000);
  info.set_next_update(1780604800);
  EXPECT_EQ(CrlJson(info),
            "{\"ca\":\"dev-intermediate\",\"number\":4,\"this_update\":1780000000,"
            "\"this_update_utc\":\"2026-05-28T20:26:40Z\",\"next_update\":1780604800,"
            "\"next_update_utc\":\"2026-06-04T20:26:40Z\",\"revoked_count\":2}");
}

TEST(CliFormat, RevocationReasonsAndSanSyntax) {
  for (const char* r :
       {"unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
        "cessationOfOperation", "certificateHold", "privilegeWithdrawn", "aACompromise"}) {
    EXPECT_TRUE(IsRevocationReason(r)) << r;
    EXPECT_NE(RevocationReasonNames().find(r), std::string::npos);
  }
  for (const char* r : {"", "keycompromise", "removeFromCRL", "key-compromise"}) {
    EXPECT_FALSE(IsRevocationReason(r)) << r;
  }
  for (const char* s : {"dns:a.test", "ip:10.0.0.1", "uri:spiffe://x/y", "email:a@b.test"}) {
    EXPECT_FALSE(CheckSanSyntax(s).has_value()) << s;
  }
  for (const char* s : {"a.test", "dns:", "DNS:a.test", "ip", "x:y"}) {
    ASSERT_TRUE(CheckSanSyntax(s).has_value()) << s;
    EXPECT_NE(CheckSanSyntax(s)->find("dns:NAME"), std::string::npos);
  }
}

v1::CertificateInfo SampleCertificate() {
  v1::CertificateInfo c;
  c.set_serial("5a0c11d2e3f4a5b6c7d8e9f00112233445566778");
  c.set_ca("dev-intermediate");
  c.set_profile("tls-server");
  c.set_subject("CN=www.dev.custos.test,O=Custos Dev");
  c.add_sans("dns:www.dev.custos.test");
  c.add_sans("ip:10.0.0.1");
  c.set_requester("spiffe://dev.custos.test/issuer");
  c.set_not_before(1780000000);
  c.set_not_after(1782591999);
  c.set_state("valid");
  c.set_issued_at(1780000060);
  return c;
}

TEST(CliFormat, CertificateJsonAndText) {
  v1::CertificateInfo c = SampleCertificate();
  EXPECT_EQ(CertificateJson(c),
            "{\"serial\":\"5a0c11d2e3f4a5b6c7d8e9f00112233445566778\",\"ca\":\"dev-intermediate\","
            "\"profile\":\"tls-server\",\"subject\":\"CN=www.dev.custos.test,O=Custos Dev\","
            "\"sans\":[\"dns:www.dev.custos.test\",\"ip:10.0.0.1\"],"
            "\"requester\":\"spiffe://dev.custos.test/issuer\",\"state\":\"valid\","
            "\"not_before\":1780000000,\"not_before_utc\":\"2026-05-28T20:26:40Z\","
            "\"not_after\":1782591999,\"not_after_utc\":\"2026-06-27T20:26:39Z\","
            "\"issued_at\":1780000060,\"issued_utc\":\"2026-05-28T20:27:40Z\","
            "\"renews\":\"\",\"renewed_by\":\"\"}");
  EXPECT_EQ(CertificateText(c),
            "serial:         5a0c11d2e3f4a5b6c7d8e9f00112233445566778\n"
            "ca:             dev-intermediate\n"
            "profile:        tls-server\n"
            "subject:        CN=www.dev.custos.test,O=Custos Dev\n"
            "sans:           dns:www.dev.custos.test, ip:10.0.0.1\n"
            "requester:      spiffe://dev.custos.test/issuer\n"
            "state:          valid\n"
            "not before:     2026-05-28T20:26:40Z\n"
            "not after:      2026-06-27T20:26:39Z\n"
            "issued:         2026-05-28T20:27:40Z\n");

  // Revoked, renewed, with the DER: reason and time, links, PEM.
  PkeyPtr key = Key();
  X509* leaf = MakeCert(key.get(), "www", 3);
  X509* ca = MakeCert(key.get(), "ca", 4);
  c.set_cert_der(ToDer(i2d_X509, leaf));
  c.add_chain_der(ToDer(i2d_X509, ca));
  X509_free(leaf);
  X509_free(ca);
  c.set_state("revoked");
  c.set_revocation_reason("keyCompromise");
  c.set_revoked_at(1781000000);
  c.set_renews("01ab");
  const std::string json = CertificateJson(c);
  EXPECT_NE(json.find("\"revocation_reason\":\"keyCompromise\",\"revoked_at\":1781000000,"
                      "\"revoked_utc\":\"2026-06-09T10:13:20Z\""),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"cert_pem\":\"-----BEGIN CERTIFICATE-----\\n"), std::string::npos) << json;
  EXPECT_NE(json.find("\"chain_pem\":[\"-----BEGIN CERTIFICATE-----\\n"), std::string::npos)
      << json;
  const std::string text = CertificateText(c);
  EXPECT_NE(text.find("state:          revoked (keyCompromise) at 2026-06-09T10:13:20Z\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("renews:         01ab\n"), std::string::npos) << text;

  // Lists: fixed columns, subject and SANs last.
  const std::string header = CertificateListHeader();
  const std::string line = CertificateListLine(SampleCertificate());
  EXPECT_EQ(header.find("CA"), line.find("dev-intermediate"));
  EXPECT_EQ(header.find("NOT_AFTER"), line.find("2026-06-27T20:26:39Z"));
  EXPECT_NE(
      line.find("CN=www.dev.custos.test,O=Custos Dev [dns:www.dev.custos.test,ip:10.0.0.1]\n"),
      std::string::npos)
      << line;
}

TEST(CliFormat, CaJsonAndText) {
  v1::CaInfo ca;
  ca.set_name("dev-intermediate");
  ca.set_key("dev-intermediate@1");
  ca.set_subject("CN=Custos Dev Intermediate,O=Custos Dev");
  ca.set_serial("7f01");
  ca.set_not_before(1780000000);
  ca.set_not_after(1937680000);
  ca.set_parent("dev-root");
  ca.set_path_len(0);
  ca.set_state("active");
  ca.set_key_id("a1b2");
  const std::string json = CaJson(ca);
  EXPECT_EQ(json,
            "{\"name\":\"dev-intermediate\",\"key\":\"dev-intermediate@1\","
            "\"subject\":\"CN=Custos Dev Intermediate,O=Custos Dev\",\"serial\":\"7f01\","
            "\"state\":\"active\",\"parent\":\"dev-root\",\"path_len\":0,"
            "\"not_before\":1780000000,\"not_before_utc\":\"2026-05-28T20:26:40Z\","
            "\"not_after\":1937680000,\"not_after_utc\":\"2031-05-27T20:26:40Z\","
            "\"key_id\":\"a1b2\",\"chain_pem\":[]}");
  const std::string text = CaText(ca);
  EXPECT_NE(text.find("parent:         dev-root\n"), std::string::npos) << text;
  EXPECT_NE(text.find("path length:    0\n"), std::string::npos) << text;
  ca.set_parent("");
  ca.set_path_len(-1);
  EXPECT_NE(CaText(ca).find("parent:         (root, self-signed)\n"), std::string::npos);
  EXPECT_NE(CaText(ca).find("path length:    unlimited\n"), std::string::npos);
  const std::string line = CaListLine(ca);
  EXPECT_EQ(CaListHeader().find("PATHLEN"), line.find("- "));
  EXPECT_NE(line.find("(root)"), std::string::npos);
}

// --- The binary ---

struct RunResult {
  int exit_code = -1;
  std::string out, err;
};

class CliBinary : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/custos-cli-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs custos with `args` (shell words, quoted by the caller) and no
  // configuration from the environment.
  RunResult Custos(const std::string& args) {
    const std::string out = dir_ + "/out", err = dir_ + "/err";
    const std::string command =
        "env -u CUSTOS_CONFIG -u CUSTOS_SERVER -u CUSTOS_CERT -u CUSTOS_KEY -u CUSTOS_CA " +
        std::string(CUSTOS_CLI) + " " + args + " >" + out + " 2>" + err + " </dev/null";
    const int status = std::system(command.c_str());
    RunResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = Slurp(out);
    r.err = Slurp(err);
    return r;
  }
  static std::string Slurp(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  std::string dir_;
};

TEST_F(CliBinary, UsageErrorsExitTwoWithOneLine) {
  struct Case {
    const char* args;
    const char* expected;
  };
  const Case cases[] = {
      {"ca", "ca needs a subcommand: create-root, create-intermediate, list"},
      {"cert", "cert needs a subcommand: issue, list, show or revoke"},
      {"ca frobnicate", "unknown command 'ca frobnicate'"},
      {"ca create-root r --key k --subject CN=r", "usage: custos ca create-root NAME"},
      {"ca create-intermediate i --key k --subject CN=i", "usage: custos ca create-intermediate"},
      {"ca create-root r --key k --subject CN=r --validity 20q", "--validity '20q'"},
      {"ca create-intermediate i --key k --subject CN=i --parent r --path-len x",
       "--path-len 'x' is not a path length"},
      {"ca csr n --key k --subject CN=n", "usage: custos ca csr"},
      {"ca import-cert n", "usage: custos ca import-cert NAME CERT"},
      {"cert issue --profile p --csr c.pem", "usage: custos cert issue"},
      {"cert issue --profile p --csr c.pem --out x --san www.test",
       "--san 'www.test' needs a type"},
      {"cert issue --profile p --csr c.pem --out x --validity 1w", "--validity '1w'"},
      {"cert revoke 01", "usage: custos cert revoke SERIAL --reason REASON"},
      {"cert revoke 01 --reason stolen", "unknown revocation reason 'stolen'"},
      {"cert list --expiring soon", "--expiring 'soon'"},
      {"cert list extra", "usage: custos cert list"},
      {"cert show", "usage: custos cert show SERIAL"},
      {"crl", "usage: custos crl --ca NAME"},
      {"crl --ca dev --der", "--der needs --out"},
      {"cert list --subject x", "option --subject does not apply to 'cert list'"},
      {"ca list --der", "option --der does not apply to 'ca list'"},
      {"keys list --san dns:x", "option --san does not apply to 'keys list'"},
  };
  for (const Case& c : cases) {
    const RunResult r = Custos(c.args);
    EXPECT_EQ(r.exit_code, kExitUsage) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.expected), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("custos: error: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.out, "") << c.args;
  }
}

TEST_F(CliBinary, LocalFilesAreCheckedBeforeConnecting) {
  // No server is configured: these fail on the file first (exit 5).
  const std::string junk = Write("junk.csr", "not a request");
  RunResult r = Custos("cert issue --profile p --csr " + junk + " --out " + dir_ + "/c.pem");
  EXPECT_EQ(r.exit_code, kExitFile) << r.err;
  EXPECT_NE(r.err.find(junk + " is not a PKCS#10 certificate request"), std::string::npos) << r.err;
  r = Custos("cert issue --profile p --csr " + dir_ + "/missing.csr --out " + dir_ + "/c.pem");
  EXPECT_EQ(r.exit_code, kExitFile) << r.err;
  EXPECT_NE(r.err.find("cannot open " + dir_ + "/missing.csr"), std::string::npos) << r.err;
  r = Custos("ca import-cert n " + junk);
  EXPECT_EQ(r.exit_code, kExitFile) << r.err;
  EXPECT_NE(r.err.find("is not an X.509 certificate"), std::string::npos) << r.err;

  // A valid CSR gets as far as the connection settings (exit 2: none).
  PkeyPtr key = Key();
  X509_REQ* req = MakeCsr(key.get());
  const std::string csr = Write("good.csr", ToPem(PEM_write_bio_X509_REQ, req));
  X509_REQ_free(req);
  r = Custos("cert issue --profile p --csr " + csr + " --out " + dir_ + "/c.pem --san dns:a.test");
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
  EXPECT_NE(r.err.find("no server configured"), std::string::npos) << r.err;
}

TEST_F(CliBinary, CaNamesACaAfterCaCommandsAndTheTlsCaElsewhere) {
  // After `cert list`, --ca is the CA's name, so the TLS CA file is not set
  // and the missing server is the first complaint; --tls-ca sets the file.
  RunResult r = Custos("--server 127.0.0.1:1 cert list --ca dev-intermediate");
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
  EXPECT_EQ(r.err.find("dev-intermediate"), std::string::npos) << r.err;
  // Before the command, --ca is the TLS CA file: a missing file is named.
  r = Custos("--server 127.0.0.1:1 --cert /nonexistent/c.pem --tls-key /nonexistent/k.pem --ca " +
             dir_ + "/no-ca.pem cert list --ca dev-intermediate");
  EXPECT_NE(r.exit_code, kExitOk);
  EXPECT_EQ(r.err.find("dev-intermediate"), std::string::npos) << r.err;
  r = Custos("--help");
  EXPECT_EQ(r.exit_code, kExitOk);
  for (const char* s : {"ca create-root NAME", "cert issue --profile P", "crl --ca NAME",
                        "cert revoke SERIAL --reason REASON", "--tls-ca"}) {
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
  }
}

}  // namespace
}  // namespace custos::cli
