// The CA back-end end to end (issue 5, docs/ca.md): a real custosd on a real
// SoftHSM token with the dev CA hierarchy and starter profiles of
// `custos-init dev`, driven by the real `custos` and `custos-officer` CLIs
// (and the client library where the CLI would refuse bytes first). Every
// certificate, chain and CRL Custos makes is judged by real verifiers:
// OpenSSL (verify -x509_strict, crl -verify, s_server/s_client), GnuTLS
// certtool and NSS (certutil, vfychain).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "custos/client/client.h"
#include "custos/client/config.h"
#include "custos/v1/custos.pb.h"
#include "harness.h"

namespace custos::testing {
namespace {
using namespace std::chrono_literals;
namespace v1 = custos::v1;

constexpr char kIssuer[] = "spiffe://dev.custos.test/issuer";

std::string Dump(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The request id ("rq-" + 32 hex) in a command's output, or "".
std::string RequestIdIn(const CommandResult& r) {
  static const std::regex kId("rq-[0-9a-f]{32}");
  std::smatch m;
  const std::string all = r.out + "\n" + r.err;
  return std::regex_search(all, m, kId) ? m.str() : "";
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// `openssl x509 -text` of a PEM certificate file.
std::string CertText(const std::string& pem_path) {
  return Exec({"openssl", "x509", "-in", pem_path, "-noout", "-text"}).out;
}

// The serial of a PEM certificate as Custos writes it: lowercase hex of the
// INTEGER's content octets (Custos serials never need a leading zero byte).
std::string SerialOf(const std::string& pem_path) {
  CommandResult r = Exec({"openssl", "x509", "-in", pem_path, "-noout", "-serial"});
  const std::string prefix = "serial=";
  if (r.exit_code != 0 || r.out.rfind(prefix, 0) != 0) return "";
  std::string hex = r.out.substr(prefix.size());
  while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r')) hex.pop_back();
  return Lower(hex);
}

// The CRL number of a PEM CRL file.
std::uint64_t CrlNumberOf(const std::string& pem_path) {
  CommandResult r = Exec({"openssl", "crl", "-in", pem_path, "-noout", "-crlnumber"});
  const std::size_t eq = r.out.find('=');
  if (r.exit_code != 0 || eq == std::string::npos) return 0;
  return std::stoull(r.out.substr(eq + 1), nullptr, 0);
}

// Splits a PEM bundle into its certificate blocks, in order.
std::vector<std::string> PemBlocks(const std::string& bundle) {
  std::vector<std::string> out;
  const std::string end = "-----END CERTIFICATE-----\n";
  std::size_t at = 0;
  while (true) {
    const std::size_t begin = bundle.find("-----BEGIN CERTIFICATE-----", at);
    if (begin == std::string::npos) break;
    const std::size_t stop = bundle.find(end, begin);
    if (stop == std::string::npos) break;
    out.push_back(bundle.substr(begin, stop + end.size() - begin));
    at = stop + end.size();
  }
  return out;
}

// --- Keys and CSRs made in the test --------------------------------------------

struct BnFree {
  void operator()(BIGNUM* b) const { BN_free(b); }
};
using Bn = std::unique_ptr<BIGNUM, BnFree>;
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

// An RSA-2048 key pair with exponent 65537 whose primes are neighbours
// (q is the next prime after p), so Fermat's method factors n in one step.
Pkey FermatKey() {
  Bn e(BN_new());
  BN_set_word(e.get(), RSA_F4);
  std::unique_ptr<BN_CTX, void (*)(BN_CTX*)> ctx(BN_CTX_new(), BN_CTX_free);
  for (int attempt = 0; attempt < 20; ++attempt) {
    Bn p(BN_new()), q(BN_new()), n(BN_new()), p1(BN_new()), q1(BN_new()), phi(BN_new());
    if (BN_generate_prime_ex(p.get(), 1024, 0, nullptr, nullptr, nullptr) != 1) return nullptr;
    BN_copy(q.get(), p.get());
    do {
      BN_add_word(q.get(), 2);
    } while (BN_check_prime(q.get(), ctx.get(), nullptr) != 1);
    BN_mul(n.get(), p.get(), q.get(), ctx.get());
    if (BN_num_bits(n.get()) != 2048) continue;
    BN_copy(p1.get(), p.get());
    BN_sub_word(p1.get(), 1);
    BN_copy(q1.get(), q.get());
    BN_sub_word(q1.get(), 1);
    BN_mul(phi.get(), p1.get(), q1.get(), ctx.get());
    Bn d(BN_mod_inverse(nullptr, e.get(), phi.get(), ctx.get()));
    if (!d) continue;  // e divides p-1 or q-1: try other primes
    Bn dp(BN_new()), dq(BN_new());
    BN_mod(dp.get(), d.get(), p1.get(), ctx.get());
    BN_mod(dq.get(), d.get(), q1.get(), ctx.get());
    Bn qinv(BN_mod_inverse(nullptr, q.get(), p.get(), ctx.get()));
    if (!qinv) continue;
    std::unique_ptr<OSSL_PARAM_BLD, void (*)(OSSL_PARAM_BLD*)> bld(OSSL_PARAM_BLD_new(),
                                                                   OSSL_PARAM_BLD_free);
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get());
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get());
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_D, d.get());
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_FACTOR1, p.get());
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_FACTOR2, q.get());
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_EXPONENT1, dp.get());
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_EXPONENT2, dq.get());
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_COEFFICIENT1, qinv.get());
    std::unique_ptr<OSSL_PARAM, void (*)(OSSL_PARAM*)> params(OSSL_PARAM_BLD_to_param(bld.get()),
                                                              OSSL_PARAM_free);
    std::unique_ptr<EVP_PKEY_CTX, void (*)(EVP_PKEY_CTX*)> kctx(
        EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr), EVP_PKEY_CTX_free);
    EVP_PKEY* key = nullptr;
    if (!params || !kctx || EVP_PKEY_fromdata_init(kctx.get()) != 1 ||
        EVP_PKEY_fromdata(kctx.get(), &key, EVP_PKEY_KEYPAIR, params.get()) != 1) {
      return nullptr;
    }
    return Pkey(key);
  }
  return nullptr;
}

// A PEM CSR for `key`: subject CN=cn, one DNS SAN, SHA-256 signature.
bool WriteCsr(EVP_PKEY* key, const std::string& cn, const std::string& path) {
  std::unique_ptr<X509_REQ, void (*)(X509_REQ*)> req(X509_REQ_new(), X509_REQ_free);
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
  X509_EXTENSION* san =
      X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, ("DNS:" + cn).c_str());
  sk_X509_EXTENSION_push(exts, san);
  const bool ok = X509_REQ_set_version(req.get(), 0) == 1 &&
                  X509_REQ_set_pubkey(req.get(), key) == 1 &&
                  X509_REQ_add_extensions(req.get(), exts) == 1 &&
                  X509_REQ_sign(req.get(), key, EVP_sha256()) > 0;
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  if (!ok) return false;
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "w"), std::fclose);
  return f && PEM_write_X509_REQ(f.get(), req.get()) == 1;
}

// A TCP port nobody listens on right now.
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// A child process (no shell), killed and reaped on destruction.
class Background {
 public:
  explicit Background(const std::vector<std::string>& argv) {
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      freopen("/dev/null", "r", stdin);
      freopen("/dev/null", "w", stdout);
      execvp(args[0], args.data());
      _exit(127);
    }
  }
  ~Background() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

 private:
  pid_t pid_ = -1;
};

// --- The suite -------------------------------------------------------------------

class Ca : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work_ = new TempDir();
    deployment_ = new Deployment();
    ASSERT_TRUE(deployment_->Start()) << deployment_->log();
    // The trust anchor and the issuing CA, as custosd serves them.
    CommandResult root = Custos("issuer", {"ca", "show", "dev-root", "--out", File("root.pem")});
    ASSERT_EQ(root.exit_code, 0) << Dump(root);
    CommandResult inter =
        Custos("issuer", {"ca", "show", "dev-intermediate", "--out", File("inter.pem")});
    ASSERT_EQ(inter.exit_code, 0) << Dump(inter);
  }
  static void TearDownTestSuite() {
    delete deployment_;
    deployment_ = nullptr;
    delete work_;
    work_ = nullptr;
  }

  static std::string File(const std::string& name) { return work_->path() + "/" + name; }

  static CommandResult Custos(const std::string& who, const std::vector<std::string>& args) {
    return deployment_->Custos(who, args);
  }

  // A new private key (PEM) of `spec`: "ec-p256", "ec-p384", "ec-p521",
  // "ed25519", "rsa2048", "rsa1024". Returns its path.
  static std::string NewKey(const std::string& spec) {
    static int counter = 0;
    const std::string path = File("key-" + spec + "-" + std::to_string(++counter) + ".pem");
    std::vector<std::string> argv = {"openssl", "genpkey", "-out", path};
    if (spec.rfind("ec-p", 0) == 0) {
      argv.insert(argv.end(),
                  {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-" + spec.substr(4)});
    } else if (spec == "ed25519") {
      argv.insert(argv.end(), {"-algorithm", "ED25519"});
    } else {
      argv.insert(argv.end(),
                  {"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:" + spec.substr(3)});
    }
    CommandResult r = Exec(argv);
    EXPECT_EQ(r.exit_code, 0) << Dump(r);
    return path;
  }

  // A PEM CSR for `key` with subject `subject` ("/CN=x", or "/" for an empty
  // one) and extra `-addext` extensions ("subjectAltName=DNS:x").
  static std::string NewCsr(const std::string& key, const std::string& subject,
                            const std::vector<std::string>& addext = {}) {
    static int counter = 0;
    const std::string path = File("req-" + std::to_string(++counter) + ".csr");
    std::vector<std::string> argv = {"openssl", "req",   "-new", "-key", key,
                                     "-subj",   subject, "-out", path};
    for (const std::string& ext : addext) argv.insert(argv.end(), {"-addext", ext});
    CommandResult r = Exec(argv);
    EXPECT_EQ(r.exit_code, 0) << Dump(r);
    return path;
  }

  // A CSR for a new P-256 key with CN=name and a DNS SAN for it.
  static std::string ServerCsr(const std::string& name, std::string* key_out = nullptr) {
    const std::string key = NewKey("ec-p256");
    if (key_out != nullptr) *key_out = key;
    return NewCsr(key, "/CN=" + name, {"subjectAltName=DNS:" + name});
  }

  // `custos cert issue` as `who`; the certificate goes to `out`.
  static CommandResult Issue(const std::string& who, const std::string& profile,
                             const std::string& csr, const std::string& out,
                             const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"cert",  "issue", "--profile", profile,
                                     "--csr", csr,     "--out",     out};
    args.insert(args.end(), extra.begin(), extra.end());
    return Custos(who, args);
  }

  // Issues a tls-server certificate for `name`; returns its PEM path.
  static std::string IssueServerCert(const std::string& name,
                                     const std::vector<std::string>& extra = {},
                                     std::string* key_out = nullptr) {
    static int counter = 0;
    const std::string out = File("leaf-" + std::to_string(++counter) + ".pem");
    CommandResult r = Issue("issuer", "tls-server", ServerCsr(name, key_out), out, extra);
    EXPECT_EQ(r.exit_code, 0) << Dump(r);
    return out;
  }

  // Expects a refusal that names `rule` (in the CLI's one-line message).
  static void ExpectRefused(const CommandResult& r, const std::string& rule) {
    EXPECT_NE(r.exit_code, 0) << Dump(r);
    EXPECT_NE(r.exit_code, 6) << "unexpectedly pending:\n" << Dump(r);
    EXPECT_TRUE(Contains(r.err, rule)) << "the refusal does not name " << rule << ":\n" << Dump(r);
  }

  // openssl verify -x509_strict of `leaf` against the dev root (and the
  // intermediate as untrusted), with extra options; returns the result.
  static CommandResult OpensslVerify(const std::string& leaf,
                                     const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {"openssl",        "verify",     "-x509_strict",   "-CAfile",
                                     File("root.pem"), "-untrusted", File("inter.pem")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(leaf);
    return Exec(argv);
  }

  // Officers alice and bob approve request `id`.
  static void ApproveTwice(const std::string& id) {
    for (const char* officer : {"alice", "bob"}) {
      CommandResult r = deployment_->Officer(officer, {"approve", id, "--yes"});
      EXPECT_EQ(r.exit_code, 0) << officer << "\n" << Dump(r);
    }
  }

  // A client-library connection as `who` (from its client config file).
  static std::unique_ptr<client::Client> Connect(const std::string& who) {
    auto config = client::LoadClientConfig(deployment_->client_conf(who));
    EXPECT_TRUE(config.ok()) << (config.ok() ? "" : config.error().message());
    if (!config.ok()) return nullptr;
    config->retries = 0;
    auto c = client::Client::Connect(*config);
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message());
    return c.ok() ? std::move(*c) : nullptr;
  }

  static TempDir* work_;
  static Deployment* deployment_;
};

TempDir* Ca::work_ = nullptr;
Deployment* Ca::deployment_ = nullptr;

// custos-init's dev hierarchy is what custosd serves: dev-root self-signed
// (P-384), dev-intermediate under it with pathLenConstraint 0, both listed.
TEST_F(Ca, DevHierarchyIsServedAndListed) {
  EXPECT_EQ(ReadFile(File("root.pem")), ReadFile(deployment_->dir() + "/ca/dev-root.crt"));
  EXPECT_EQ(ReadFile(File("inter.pem")), ReadFile(deployment_->dir() + "/ca/dev-intermediate.crt"));
  const std::string root = CertText(File("root.pem"));
  EXPECT_TRUE(Contains(root, "Subject: CN = Custos Dev Root, O = Custos Dev") ||
              Contains(root, "Subject: O = Custos Dev, CN = Custos Dev Root"))
      << root;
  EXPECT_TRUE(Contains(root, "NIST CURVE: P-384")) << root;
  const std::string inter = CertText(File("inter.pem"));
  EXPECT_TRUE(Contains(inter, "CA:TRUE, pathlen:0")) << inter;
  CommandResult v =
      Exec({"openssl", "verify", "-x509_strict", "-CAfile", File("root.pem"), File("inter.pem")});
  EXPECT_EQ(v.exit_code, 0) << Dump(v);

  CommandResult list = Custos("admin", {"ca", "list"});
  ASSERT_EQ(list.exit_code, 0) << Dump(list);
  EXPECT_TRUE(Contains(list.out, "dev-root")) << list.out;
  EXPECT_TRUE(Contains(list.out, "dev-intermediate")) << list.out;

  // The chain of dev-intermediate: itself, then the root.
  CommandResult chain =
      Custos("admin", {"ca", "chain", "dev-intermediate", "--out", File("inter-chain.pem")});
  ASSERT_EQ(chain.exit_code, 0) << Dump(chain);
  const std::vector<std::string> blocks = PemBlocks(ReadFile(File("inter-chain.pem")));
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[0], ReadFile(File("inter.pem")));
  EXPECT_EQ(blocks[1], ReadFile(File("root.pem")));
}

// Root -> intermediate -> leaf verifies with OpenSSL (-x509_strict), GnuTLS
// and NSS; the leaf carries what the tls-server profile says.
TEST_F(Ca, ChainVerifiesWithOpensslGnutlsAndNss) {
  const std::string leaf = File("www.pem");
  const std::string chain = File("www-chain.pem");
  CommandResult r =
      Issue("issuer", "tls-server", ServerCsr("www.dev.custos.test"), leaf, {"--chain", chain});
  ASSERT_EQ(r.exit_code, 0) << Dump(r);
  EXPECT_TRUE(Contains(r.out, SerialOf(leaf))) << r.out;
  // --chain: the issuing CA, then the root.
  const std::vector<std::string> blocks = PemBlocks(ReadFile(chain));
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[0], ReadFile(File("inter.pem")));
  EXPECT_EQ(blocks[1], ReadFile(File("root.pem")));

  CommandResult openssl = OpensslVerify(leaf, {"-purpose", "sslserver"});
  EXPECT_EQ(openssl.exit_code, 0) << Dump(openssl);

  WriteFile(File("www-full.pem"), ReadFile(leaf) + ReadFile(chain));
  CommandResult gnutls = Exec({"certtool", "--verify-chain", "--verify-profile", "medium",
                               "--infile", File("www-full.pem")});
  EXPECT_EQ(gnutls.exit_code, 0) << Dump(gnutls);
  EXPECT_TRUE(Contains(gnutls.out, "Chain verification output: Verified")) << gnutls.out;

  // NSS: a fresh database trusting only the dev root as a CA.
  const std::string db = "sql:" + File("nssdb");
  ASSERT_EQ(Exec({"mkdir", "-p", File("nssdb")}).exit_code, 0);
  CommandResult n1 = Exec({"certutil", "-N", "-d", db, "--empty-password"});
  ASSERT_EQ(n1.exit_code, 0) << Dump(n1);
  CommandResult n2 =
      Exec({"certutil", "-A", "-d", db, "-n", "dev-root", "-t", "C,,", "-i", File("root.pem")});
  ASSERT_EQ(n2.exit_code, 0) << Dump(n2);
  CommandResult n3 = Exec(
      {"certutil", "-A", "-d", db, "-n", "dev-intermediate", "-t", ",,", "-i", File("inter.pem")});
  ASSERT_EQ(n3.exit_code, 0) << Dump(n3);
  CommandResult n4 = Exec({"certutil", "-A", "-d", db, "-n", "www", "-t", ",,", "-i", leaf});
  ASSERT_EQ(n4.exit_code, 0) << Dump(n4);
  CommandResult nss = Exec({"certutil", "-V", "-d", db, "-n", "www", "-u", "V"});
  EXPECT_EQ(nss.exit_code, 0) << Dump(nss);
  EXPECT_TRUE(Contains(nss.out, "certificate is valid")) << Dump(nss);
  CommandResult vfy = Exec({"vfychain", "-d", db, "-u", "1", "-a", leaf});
  EXPECT_EQ(vfy.exit_code, 0) << Dump(vfy);
  // NSS does not accept it as a code-signing (object signer) certificate.
  CommandResult wrong_usage = Exec({"certutil", "-V", "-d", db, "-n", "www", "-u", "O"});
  EXPECT_NE(wrong_usage.exit_code, 0) << Dump(wrong_usage);

  // What the profile put in: O fixed, CN from the CSR, the SAN, serverAuth
  // only, CA:FALSE, the CRL distribution point, key identifiers.
  const std::string text = CertText(leaf);
  EXPECT_TRUE(Contains(text, "O = Custos Dev, CN = www.dev.custos.test")) << text;
  EXPECT_TRUE(Contains(text, "DNS:www.dev.custos.test")) << text;
  EXPECT_TRUE(Contains(text, "TLS Web Server Authentication")) << text;
  EXPECT_FALSE(Contains(text, "TLS Web Client Authentication")) << text;
  EXPECT_TRUE(Contains(text, "CA:FALSE")) << text;
  EXPECT_TRUE(Contains(text, "http://ca.dev.custos.test/dev-intermediate.crl")) << text;
  EXPECT_TRUE(Contains(text, "X509v3 Subject Key Identifier")) << text;
  EXPECT_TRUE(Contains(text, "X509v3 Authority Key Identifier")) << text;
  // A serial of 20 bytes (at least 128 random bits), positive.
  EXPECT_EQ(SerialOf(leaf).size(), 40u) << SerialOf(leaf);

  // An RSA-2048 subject key is fine as well.
  const std::string rsa_key = NewKey("rsa2048");
  const std::string rsa_leaf = File("rsa.pem");
  CommandResult rsa =
      Issue("issuer", "tls-server",
            NewCsr(rsa_key, "/CN=rsa.dev.custos.test", {"subjectAltName=DNS:rsa.dev.custos.test"}),
            rsa_leaf);
  ASSERT_EQ(rsa.exit_code, 0) << Dump(rsa);
  CommandResult rsa_ok = OpensslVerify(rsa_leaf, {"-purpose", "sslserver"});
  EXPECT_EQ(rsa_ok.exit_code, 0) << Dump(rsa_ok);
}

// A TLS server presenting a Custos leaf (and the intermediate) is accepted by
// openssl s_client with the dev root as the only trust anchor.
TEST_F(Ca, TlsServerWithCustosLeafIsAcceptedByOpensslClient) {
  std::string key;
  const std::string leaf = IssueServerCert("tls.dev.custos.test", {}, &key);
  const int port = FreePort();
  Background server({"openssl", "s_server", "-quiet", "-accept", std::to_string(port), "-cert",
                     leaf, "-key", key, "-cert_chain", File("inter.pem"), "-www"});
  CommandResult client;
  for (int attempt = 0; attempt < 50; ++attempt) {
    client = Exec({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port),
                   "-servername", "tls.dev.custos.test", "-verify_hostname", "tls.dev.custos.test",
                   "-verify_return_error", "-CAfile", File("root.pem")});
    if (!Contains(client.err, "connect:errno") && !Contains(client.out, "connect:errno")) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(client.exit_code, 0) << Dump(client);
  EXPECT_TRUE(Contains(client.out, "Verify return code: 0 (ok)")) << Dump(client);

  // The same server is refused when the client trusts another root.
  CommandResult other =
      Exec({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port),
            "-verify_return_error", "-CAfile", deployment_->dir() + "/pki/ca.crt"});
  EXPECT_NE(other.exit_code, 0) << Dump(other);
}

// Revocation: the CRL verifies with the intermediate's key, its number
// increases strictly with each revocation, a revoked leaf fails
// `openssl verify -crl_check` while an unrevoked one passes.
TEST_F(Ca, RevokedLeafFailsCrlCheckAndCrlNumbersIncrease) {
  const std::string revoked = IssueServerCert("revoked.dev.custos.test");
  const std::string kept = IssueServerCert("kept.dev.custos.test");
  const std::string later = IssueServerCert("later.dev.custos.test");

  // Any authenticated principal may fetch a CRL (here: builder).
  CommandResult c0 =
      Custos("builder", {"crl", "--ca", "dev-intermediate", "--out", File("crl0.pem")});
  ASSERT_EQ(c0.exit_code, 0) << Dump(c0);
  const std::uint64_t n0 = CrlNumberOf(File("crl0.pem"));

  // Issuers may not revoke (REVOKE_CERTIFICATE is the admin's).
  CommandResult denied =
      Custos("issuer", {"cert", "revoke", SerialOf(revoked), "--reason", "keyCompromise"});
  EXPECT_NE(denied.exit_code, 0) << Dump(denied);
  CommandResult rv =
      Custos("admin", {"cert", "revoke", SerialOf(revoked), "--reason", "keyCompromise"});
  ASSERT_EQ(rv.exit_code, 0) << Dump(rv);

  CommandResult c1 =
      Custos("issuer", {"crl", "--ca", "dev-intermediate", "--out", File("crl1.pem")});
  ASSERT_EQ(c1.exit_code, 0) << Dump(c1);
  const std::uint64_t n1 = CrlNumberOf(File("crl1.pem"));
  EXPECT_GT(n1, n0);

  CommandResult crl_ok = Exec({"openssl", "crl", "-in", File("crl1.pem"), "-CAfile",
                               File("inter.pem"), "-noout", "-verify"});
  EXPECT_EQ(crl_ok.exit_code, 0) << Dump(crl_ok);
  EXPECT_TRUE(Contains(crl_ok.err + crl_ok.out, "verify OK")) << Dump(crl_ok);
  CommandResult gnutls_crl = Exec({"certtool", "--verify-crl", "--load-ca-certificate",
                                   File("inter.pem"), "--infile", File("crl1.pem")});
  EXPECT_EQ(gnutls_crl.exit_code, 0) << Dump(gnutls_crl);
  const std::string crl_text =
      Exec({"openssl", "crl", "-in", File("crl1.pem"), "-noout", "-text"}).out;
  EXPECT_TRUE(Contains(Lower(crl_text), SerialOf(revoked))) << crl_text;
  EXPECT_TRUE(Contains(crl_text, "Key Compromise")) << crl_text;

  CommandResult fails = OpensslVerify(revoked, {"-crl_check", "-CRLfile", File("crl1.pem")});
  EXPECT_NE(fails.exit_code, 0) << Dump(fails);
  EXPECT_TRUE(Contains(fails.out + fails.err, "certificate revoked")) << Dump(fails);
  CommandResult passes = OpensslVerify(kept, {"-crl_check", "-CRLfile", File("crl1.pem")});
  EXPECT_EQ(passes.exit_code, 0) << Dump(passes);

  // The inventory shows the revocation.
  CommandResult shown = Custos("admin", {"cert", "show", SerialOf(revoked), "--json"});
  ASSERT_EQ(shown.exit_code, 0) << Dump(shown);
  EXPECT_TRUE(Contains(shown.out, "\"revoked\"")) << shown.out;
  EXPECT_TRUE(Contains(shown.out, "keyCompromise")) << shown.out;

  // A second revocation: a new CRL with a greater number listing both.
  CommandResult rv2 =
      Custos("admin", {"cert", "revoke", SerialOf(later), "--reason", "superseded"});
  ASSERT_EQ(rv2.exit_code, 0) << Dump(rv2);
  CommandResult c2 =
      Custos("issuer", {"crl", "--ca", "dev-intermediate", "--out", File("crl2.pem")});
  ASSERT_EQ(c2.exit_code, 0) << Dump(c2);
  const std::uint64_t n2 = CrlNumberOf(File("crl2.pem"));
  EXPECT_GT(n2, n1);
  const std::string crl2_text =
      Lower(Exec({"openssl", "crl", "-in", File("crl2.pem"), "-noout", "-text"}).out);
  EXPECT_TRUE(Contains(crl2_text, SerialOf(revoked))) << crl2_text;
  EXPECT_TRUE(Contains(crl2_text, SerialOf(later))) << crl2_text;
  CommandResult crl2_ok = Exec({"openssl", "crl", "-in", File("crl2.pem"), "-CAfile",
                                File("inter.pem"), "-noout", "-verify"});
  EXPECT_EQ(crl2_ok.exit_code, 0) << Dump(crl2_ok);
  // Fetching again without a revocation serves the same CRL.
  CommandResult c3 =
      Custos("issuer", {"crl", "--ca", "dev-intermediate", "--out", File("crl3.pem")});
  ASSERT_EQ(c3.exit_code, 0) << Dump(c3);
  EXPECT_EQ(CrlNumberOf(File("crl3.pem")), n2);
  // Revoking again is refused; the CRL stays.
  CommandResult again =
      Custos("admin", {"cert", "revoke", SerialOf(revoked), "--reason", "keyCompromise"});
  EXPECT_NE(again.exit_code, 0) << Dump(again);
}

// A SPIFFE X.509-SVID: one URI SAN in the trust domain, empty subject, the
// SAN extension critical, clientAuth and serverAuth; verifies with openssl.
TEST_F(Ca, SpiffeSvidVerifiesWithOpenssl) {
  const std::string key = NewKey("ec-p256");
  const std::string id = "spiffe://dev.custos.test/workload/web";
  const std::string svid = File("svid.pem");
  CommandResult r = Issue("issuer", "spiffe-svid",
                          NewCsr(key, "/CN=ignored", {"subjectAltName=URI:" + id}), svid);
  ASSERT_EQ(r.exit_code, 0) << Dump(r);
  const std::string text = CertText(svid);
  EXPECT_TRUE(Contains(text, "Subject: \n") || Contains(text, "Subject:\n") ||
              Contains(text, "Subject: \r\n"))
      << text;
  EXPECT_TRUE(Contains(text, "X509v3 Subject Alternative Name: critical")) << text;
  EXPECT_TRUE(Contains(text, "URI:" + id)) << text;
  EXPECT_TRUE(Contains(text, "TLS Web Client Authentication")) << text;
  EXPECT_TRUE(Contains(text, "TLS Web Server Authentication")) << text;
  EXPECT_TRUE(Contains(text, "CA:FALSE")) << text;
  CommandResult client = OpensslVerify(svid, {"-purpose", "sslclient"});
  EXPECT_EQ(client.exit_code, 0) << Dump(client);
  CommandResult server = OpensslVerify(svid, {"-purpose", "sslserver"});
  EXPECT_EQ(server.exit_code, 0) << Dump(server);
  // At most a day.
  ExpectRefused(Issue("issuer", "spiffe-svid", NewCsr(key, "/", {"subjectAltName=URI:" + id}),
                      File("svid-long.pem"), {"--validity", "2d"}),
                "validity-cap");
  // Another trust domain, or two URIs, are refused.
  ExpectRefused(Issue("issuer", "spiffe-svid",
                      NewCsr(key, "/", {"subjectAltName=URI:spiffe://evil.test/workload/web"}),
                      File("svid-evil.pem")),
                "san-uri-prefix");
  ExpectRefused(Issue("issuer", "spiffe-svid",
                      NewCsr(key, "/", {"subjectAltName=URI:" + id + ",URI:" + id + "2"}),
                      File("svid-two.pem")),
                "san-count");
}

// Refusals, each naming the rule that refused.
TEST_F(Ca, RefusalsNameTheRule) {
  // A CSR whose self-signature does not verify (one signature bit flipped).
  {
    const std::string csr = ServerCsr("badsig.dev.custos.test");
    const std::string der_path = File("badsig.der");
    ASSERT_EQ(Exec({"openssl", "req", "-in", csr, "-outform", "DER", "-out", der_path}).exit_code,
              0);
    std::string der = ReadFile(der_path);
    der[der.size() - 5] = static_cast<char>(der[der.size() - 5] ^ 0x01);
    WriteFile(der_path, der);
    ExpectRefused(Issue("issuer", "tls-server", der_path, File("badsig.pem")), "csr-signature");
  }
  // RSA-1024.
  ExpectRefused(Issue("issuer", "tls-server",
                      NewCsr(NewKey("rsa1024"), "/CN=small.dev.custos.test",
                             {"subjectAltName=DNS:small.dev.custos.test"}),
                      File("rsa1024.pem")),
                "rsa-min-bits");
  // Curves the profile does not allow: P-521, Ed25519.
  ExpectRefused(Issue("issuer", "tls-server",
                      NewCsr(NewKey("ec-p521"), "/CN=p521.dev.custos.test",
                             {"subjectAltName=DNS:p521.dev.custos.test"}),
                      File("p521.pem")),
                "key-algorithm");
  ExpectRefused(Issue("issuer", "tls-server",
                      NewCsr(NewKey("ed25519"), "/CN=ed.dev.custos.test",
                             {"subjectAltName=DNS:ed.dev.custos.test"}),
                      File("ed25519.pem")),
                "key-algorithm");
  // An RSA key whose primes are neighbours (Fermat-factorable).
  {
    Pkey fermat = FermatKey();
    ASSERT_TRUE(fermat != nullptr);
    ASSERT_TRUE(WriteCsr(fermat.get(), "fermat.dev.custos.test", File("fermat.csr")));
    ExpectRefused(Issue("issuer", "tls-server", File("fermat.csr"), File("fermat.pem")),
                  "rsa-fermat");
  }
  // A SAN outside the profile: in the CSR, or asked for with --san.
  ExpectRefused(Issue("issuer", "tls-server",
                      NewCsr(NewKey("ec-p256"), "/CN=www.example.com",
                             {"subjectAltName=DNS:www.example.com"}),
                      File("example.pem")),
                "san-dns-suffix");
  ExpectRefused(Issue("issuer", "tls-server", ServerCsr("ok.dev.custos.test"), File("san.pem"),
                      {"--san", "dns:ok.dev.custos.test", "--san", "dns:dev.custos.test"}),
                "san-dns-suffix");
  // The CN must be one of the SANs.
  ExpectRefused(Issue("issuer", "tls-server",
                      NewCsr(NewKey("ec-p256"), "/CN=a.dev.custos.test",
                             {"subjectAltName=DNS:b.dev.custos.test"}),
                      File("cn.pem")),
                "cn-not-in-sans");
  // Validity over the profile's 90 days.
  ExpectRefused(Issue("issuer", "tls-server", ServerCsr("long.dev.custos.test"), File("long.pem"),
                      {"--validity", "91d"}),
                "validity-cap");
  // A principal the profile does not name (builder), and admin.
  ExpectRefused(Issue("builder", "tls-server", ServerCsr("b.dev.custos.test"), File("b.pem")),
                "profile:tls-server");
  ExpectRefused(
      Issue("admin", "spiffe-svid",
            NewCsr(NewKey("ec-p256"), "/", {"subjectAltName=URI:spiffe://dev.custos.test/x"}),
            File("a.pem")),
      "profile:spiffe-svid");
  // An unknown profile.
  {
    CommandResult r =
        Issue("issuer", "no-such-profile", ServerCsr("u.dev.custos.test"), File("u.pem"));
    EXPECT_NE(r.exit_code, 0) << Dump(r);
    EXPECT_TRUE(Contains(r.err, "no-such-profile")) << Dump(r);
  }
  // A subject attribute the profile does not take from the CSR.
  ExpectRefused(Issue("issuer", "tls-server",
                      NewCsr(NewKey("ec-p256"), "/CN=ou.dev.custos.test/OU=Sales",
                             {"subjectAltName=DNS:ou.dev.custos.test"}),
                      File("ou.pem")),
                "subject-attribute");
}

// A CSR carrying the public key of one of Custos's own CA keys is refused,
// for the issuing CA's key and for another CA key Custos holds (dev-root's,
// through `custos ca csr`, which makes a CSR signed inside the HSM).
TEST_F(Ca, CsrWithCustosHeldCaKeyIsRefused) {
  CommandResult csr =
      Custos("admin", {"ca", "csr", "own-root-key", "--key", "dev-root", "--subject",
                       "CN=own.dev.custos.test", "--out", File("own-root.csr")});
  ASSERT_EQ(csr.exit_code, 0) << Dump(csr);
  ExpectRefused(Issue("issuer", "tls-server", File("own-root.csr"), File("own-root.pem"),
                      {"--san", "dns:own.dev.custos.test"}),
                "key-held-by-custos");
  CommandResult csr2 =
      Custos("admin", {"ca", "csr", "own-inter-key", "--key", "dev-intermediate", "--subject",
                       "CN=own2.dev.custos.test", "--out", File("own-inter.csr")});
  ASSERT_EQ(csr2.exit_code, 0) << Dump(csr2);
  ExpectRefused(Issue("issuer", "tls-server", File("own-inter.csr"), File("own-inter.pem"),
                      {"--san", "dns:own2.dev.custos.test"}),
                "key-held-by-custos");
}

// A CSR asking for codeSigning and CA:TRUE through the TLS leaf profile: the
// certificate is issued from the profile, and neither extension is copied.
TEST_F(Ca, CsrExtensionsAreNotCopied) {
  const std::string leaf = File("greedy.pem");
  CommandResult r =
      Issue("issuer", "tls-server",
            NewCsr(NewKey("ec-p256"), "/CN=greedy.dev.custos.test",
                   {"subjectAltName=DNS:greedy.dev.custos.test", "extendedKeyUsage=codeSigning",
                    "basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign",
                    "nsComment=copy me"}),
            leaf);
  ASSERT_EQ(r.exit_code, 0) << Dump(r);
  const std::string text = CertText(leaf);
  EXPECT_FALSE(Contains(text, "Code Signing")) << text;
  EXPECT_FALSE(Contains(text, "CA:TRUE")) << text;
  EXPECT_TRUE(Contains(text, "CA:FALSE")) << text;
  EXPECT_FALSE(Contains(text, "Certificate Sign")) << text;
  EXPECT_FALSE(Contains(text, "copy me")) << text;
  EXPECT_TRUE(Contains(text, "TLS Web Server Authentication")) << text;
  // It cannot act as a CA or sign code.
  CommandResult as_ca = Exec({"openssl", "verify", "-x509_strict", "-CAfile", File("root.pem"),
                              "-untrusted", File("inter.pem"), "-purpose", "codesign", leaf});
  EXPECT_NE(as_ca.exit_code, 0) << Dump(as_ca);
}

// The sub-ca profile (CA:TRUE, pathLenConstraint 0) always needs quorum:
// pending, two officers approve, then the certificate is issued by dev-root.
TEST_F(Ca, SubCaProfileNeedsQuorum) {
  const std::string key = NewKey("ec-p384");
  const std::string csr = NewCsr(key, "/CN=Custos Dev Team CA/OU=Team");
  const std::string out = File("subca.pem");
  CommandResult r = Issue("admin", "sub-ca", csr, out);
  ASSERT_EQ(r.exit_code, 6) << Dump(r);
  const std::string id = RequestIdIn(r);
  ASSERT_FALSE(id.empty()) << Dump(r);
  // Officers see what they approve: the subject and CA:TRUE.
  CommandResult shown = deployment_->Officer("alice", {"show", id});
  EXPECT_EQ(shown.exit_code, 0) << Dump(shown);
  EXPECT_TRUE(Contains(shown.out, "Custos Dev Team CA")) << Dump(shown);
  // One approval is not enough.
  CommandResult one = deployment_->Officer("alice", {"approve", id, "--yes"});
  EXPECT_EQ(one.exit_code, 0) << Dump(one);
  CommandResult early = Custos("admin", {"request", "wait", id, "--out", out, "--timeout", "1s"});
  EXPECT_EQ(early.exit_code, 6) << Dump(early);
  CommandResult two = deployment_->Officer("bob", {"approve", id, "--yes"});
  EXPECT_EQ(two.exit_code, 0) << Dump(two);
  CommandResult done = Custos("admin", {"request", "wait", id, "--out", out});
  ASSERT_EQ(done.exit_code, 0) << Dump(done);
  const std::string text = CertText(out);
  EXPECT_TRUE(Contains(text, "CA:TRUE, pathlen:0")) << text;
  EXPECT_TRUE(Contains(text, "Certificate Sign")) << text;
  EXPECT_TRUE(Contains(text, "Custos Dev Team CA")) << text;
  CommandResult v = Exec({"openssl", "verify", "-x509_strict", "-CAfile", File("root.pem"), out});
  EXPECT_EQ(v.exit_code, 0) << Dump(v);
  // Inventory: issued by dev-root under sub-ca.
  CommandResult listed =
      Custos("admin", {"cert", "list", "--ca", "dev-root", "--profile", "sub-ca", "--json"});
  ASSERT_EQ(listed.exit_code, 0) << Dump(listed);
  EXPECT_TRUE(Contains(listed.out, SerialOf(out))) << listed.out;
}

// Inventory queries and renewal links.
TEST_F(Ca, InventoryExpiringAndRenewal) {
  const std::string short_cert = IssueServerCert("short.dev.custos.test", {"--validity", "10d"});
  const std::string long_cert = IssueServerCert("longer.dev.custos.test", {"--validity", "80d"});

  CommandResult expiring = Custos("issuer", {"cert", "list", "--expiring", "30d", "--json"});
  ASSERT_EQ(expiring.exit_code, 0) << Dump(expiring);
  EXPECT_TRUE(Contains(expiring.out, SerialOf(short_cert))) << expiring.out;
  EXPECT_FALSE(Contains(expiring.out, SerialOf(long_cert))) << expiring.out;

  CommandResult mine = Custos("issuer", {"cert", "list", "--requester", kIssuer, "--json"});
  ASSERT_EQ(mine.exit_code, 0) << Dump(mine);
  EXPECT_TRUE(Contains(mine.out, SerialOf(short_cert))) << mine.out;
  EXPECT_TRUE(Contains(mine.out, SerialOf(long_cert))) << mine.out;
  CommandResult others = Custos(
      "issuer", {"cert", "list", "--requester", "spiffe://dev.custos.test/builder", "--json"});
  ASSERT_EQ(others.exit_code, 0) << Dump(others);
  EXPECT_FALSE(Contains(others.out, SerialOf(short_cert))) << others.out;
  // The plain listing names the certificate with its profile and state.
  CommandResult table = Custos("issuer", {"cert", "list"});
  ASSERT_EQ(table.exit_code, 0) << Dump(table);
  EXPECT_TRUE(Contains(table.out, SerialOf(short_cert))) << table.out;
  EXPECT_TRUE(Contains(table.out, "tls-server")) << table.out;

  // Renewal: a new CSR under the same profile, linked both ways.
  const std::string old_serial = SerialOf(short_cert);
  const std::string renewed = IssueServerCert("short.dev.custos.test", {"--renews", old_serial});
  const std::string new_serial = SerialOf(renewed);
  ASSERT_FALSE(new_serial.empty());
  CommandResult old_info = Custos("issuer", {"cert", "show", old_serial, "--json"});
  ASSERT_EQ(old_info.exit_code, 0) << Dump(old_info);
  EXPECT_TRUE(Contains(old_info.out, "\"renewed_by\":\"" + new_serial + "\"")) << old_info.out;
  CommandResult new_info = Custos("issuer", {"cert", "show", new_serial, "--json"});
  ASSERT_EQ(new_info.exit_code, 0) << Dump(new_info);
  EXPECT_TRUE(Contains(new_info.out, "\"renews\":\"" + old_serial + "\"")) << new_info.out;
  // Renewing under another profile is refused.
  CommandResult wrong =
      Issue("issuer", "spiffe-svid",
            NewCsr(NewKey("ec-p256"), "/", {"subjectAltName=URI:spiffe://dev.custos.test/r"}),
            File("wrong-renew.pem"), {"--renews", SerialOf(long_cert)});
  EXPECT_NE(wrong.exit_code, 0) << Dump(wrong);
}

// Bytes the CLI would refuse to send (it parses the CSR first) go straight
// through the client library: custosd's strict parser names the rule.
TEST_F(Ca, MalformedDerCsrIsRefusedByTheServer) {
  auto c = Connect("issuer");
  ASSERT_TRUE(c);
  const std::string good_der = [&] {
    const std::string der_path = File("good.der");
    Exec({"openssl", "req", "-in", ServerCsr("der.dev.custos.test"), "-outform", "DER", "-out",
          der_path});
    return ReadFile(der_path);
  }();
  ASSERT_GT(good_der.size(), 100u);
  // The outer length with one more (zero) length octet than needed: BER, not DER.
  std::string long_form = good_der;
  const auto length_octets = static_cast<unsigned char>(long_form[1]);
  ASSERT_GE(length_octets, 0x81);
  long_form[1] = static_cast<char>(length_octets + 1);
  long_form.insert(2, 1, '\0');
  const std::vector<std::pair<std::string, std::string>> inputs = {
      {"garbage", "this is not a certificate request"},
      {"truncated", good_der.substr(0, good_der.size() / 2)},
      {"trailing", good_der + std::string("\x00\x00", 2)},
      {"long-form length", long_form},
  };
  for (const auto& [what, bytes] : inputs) {
    v1::Request req;
    req.mutable_issue_certificate()->set_profile("tls-server");
    req.mutable_issue_certificate()->set_csr(bytes);
    auto resp = c->Call(req);
    ASSERT_TRUE(resp.ok()) << what << ": " << resp.error().message();
    EXPECT_EQ(resp->status().code(), v1::INVALID_ARGUMENT) << what;
    EXPECT_EQ(resp->status().policy_rule().rfind("csr-", 0), 0u)
        << what << ": " << resp->status().policy_rule() << " " << resp->status().message();
    EXPECT_EQ(resp->status().message().rfind(resp->status().policy_rule() + ": ", 0), 0u)
        << what << ": " << resp->status().message();
  }
  // The CLI refuses such a file itself.
  WriteFile(File("garbage.csr"), "this is not a certificate request");
  CommandResult r = Issue("issuer", "tls-server", File("garbage.csr"), File("garbage.pem"));
  EXPECT_NE(r.exit_code, 0) << Dump(r);
}

// The worked example of docs/ca.md: another issuer (an ACME server, say)
// issues through the client library with its own client config.
TEST_F(Ca, ClientLibraryIssuanceAsInTheDocs) {
  const std::string csr_path = ServerCsr("acme.dev.custos.test");
  const std::string csr_der = [&] {
    Exec({"openssl", "req", "-in", csr_path, "-outform", "DER", "-out", File("acme.der")});
    return ReadFile(File("acme.der"));
  }();

  // --- docs/ca.md example, begin ---
  auto config = custos::client::LoadClientConfig(deployment_->client_conf("issuer"));
  ASSERT_TRUE(config.ok()) << config.error().message();
  auto client = custos::client::Client::Connect(*config);
  ASSERT_TRUE(client.ok()) << client.error().message();

  custos::v1::Request request;
  auto* issue = request.mutable_issue_certificate();
  issue->set_profile("tls-server");
  issue->set_csr(csr_der);                      // DER or PEM PKCS#10
  issue->add_sans("dns:acme.dev.custos.test");  // empty: the CSR's SANs
  issue->set_validity_seconds(7 * 24 * 3600);   // 0: the profile's default

  auto response = (*client)->Call(request);
  ASSERT_TRUE(response.ok()) << response.error().message();
  const custos::v1::Status& status = response->status();
  ASSERT_EQ(status.code(), custos::v1::OK) << status.policy_rule() << " " << status.message();
  const custos::v1::CertificateInfo& cert = response->issue_certificate();
  // cert.cert_der(): the certificate; cert.chain_der(): issuing CA first.
  // --- docs/ca.md example, end ---

  EXPECT_EQ(cert.profile(), "tls-server");
  EXPECT_EQ(cert.ca(), "dev-intermediate");
  EXPECT_EQ(cert.requester(), kIssuer);
  EXPECT_EQ(cert.state(), "valid");
  EXPECT_EQ(cert.not_after() - cert.not_before() + 1, 7 * 24 * 3600);
  ASSERT_EQ(cert.chain_der_size(), 2);
  // The answer verifies like the CLI's.
  const unsigned char* p = reinterpret_cast<const unsigned char*>(cert.cert_der().data());
  std::unique_ptr<X509, void (*)(X509*)> x509(
      d2i_X509(nullptr, &p, static_cast<long>(cert.cert_der().size())), X509_free);
  ASSERT_TRUE(x509);
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(File("acme.pem").c_str(), "w"), std::fclose);
  ASSERT_TRUE(f);
  PEM_write_X509(f.get(), x509.get());
  f.reset();
  CommandResult v = OpensslVerify(File("acme.pem"), {"-purpose", "sslserver"});
  EXPECT_EQ(v.exit_code, 0) << Dump(v);
  EXPECT_EQ(SerialOf(File("acme.pem")), cert.serial());
}

}  // namespace
}  // namespace custos::testing
