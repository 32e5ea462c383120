// Helpers for the CA core tests: real OpenSSL keys, CSRs made with OpenSSL
// itself (so the parser is tested on outside input), the starter profiles,
// temporary directories, and running the openssl / certtool verifiers.
#pragma once

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ca_internal.h"
#include "custos/service/ca.h"

namespace custos::service::ca::testing {

using internal::UniqueBn;
using internal::UniquePkey;
using internal::UniqueReq;
using internal::UniqueX509;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "custos-ca-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Runs a shell command; returns its exit status and combined output.
inline std::pair<int, std::string> RunCommand(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::array<char, 512> buf;
  while (std::fgets(buf.data(), buf.size(), pipe) != nullptr) out += buf.data();
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

inline void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

// Writes DER certificates (concatenated) as PEM.
inline void WriteCertsPem(const std::string& path, const std::vector<Bytes>& certs) {
  std::string pem;
  for (const Bytes& der : certs) {
    const unsigned char* p = der.data();
    UniqueX509 x(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
    if (x == nullptr) throw std::runtime_error("bad certificate DER");
    internal::UniqueBio bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509(bio.get(), x.get());
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio.get(), &data);
    pem.append(data, static_cast<size_t>(len));
  }
  WriteFile(path, pem);
}

inline void WriteCrlPem(const std::string& path, const Bytes& der) {
  const unsigned char* p = der.data();
  internal::UniqueCrl crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
  if (crl == nullptr) throw std::runtime_error("bad CRL DER");
  internal::UniqueBio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_CRL(bio.get(), crl.get());
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  WriteFile(path, std::string(data, static_cast<size_t>(len)));
}

inline UniqueX509 ParseCert(const Bytes& der) {
  const unsigned char* p = der.data();
  return UniqueX509(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
}

// "RSA" with bits, "EC" with a curve name, or "ED25519".
inline UniquePkey GenerateKey(const std::string& type, const std::string& param = "") {
  EVP_PKEY* key = nullptr;
  if (type == "RSA") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(std::stoul(param)));
  } else if (type == "EC") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", param.c_str());
  } else {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, type.c_str());
  }
  if (key == nullptr) throw std::runtime_error("keygen failed");
  return UniquePkey(key);
}

inline Bytes Spki(EVP_PKEY* key) { return internal::ToDer(key, i2d_PUBKEY); }

// An RSA private key from two primes and e = 65537, for weak-key tests.
inline UniquePkey RsaFromPrimes(const BIGNUM* p, const BIGNUM* q) {
  internal::UniqueBnCtx ctx(BN_CTX_new());
  UniqueBn n(BN_new()), e(BN_new()), d(BN_new()), p1(BN_new()), q1(BN_new()), phi(BN_new()),
      dp(BN_new()), dq(BN_new()), qinv(BN_new());
  BN_set_word(e.get(), 65537);
  BN_mul(n.get(), p, q, ctx.get());
  BN_sub(p1.get(), p, BN_value_one());
  BN_sub(q1.get(), q, BN_value_one());
  BN_mul(phi.get(), p1.get(), q1.get(), ctx.get());
  if (BN_mod_inverse(d.get(), e.get(), phi.get(), ctx.get()) == nullptr) return nullptr;
  BN_mod(dp.get(), d.get(), p1.get(), ctx.get());
  BN_mod(dq.get(), d.get(), q1.get(), ctx.get());
  BN_mod_inverse(qinv.get(), q, p, ctx.get());
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n.get());
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e.get());
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d.get());
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, p);
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, q);
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, dp.get());
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, dq.get());
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, qinv.get());
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  OSSL_PARAM_BLD_free(bld);
  EVP_PKEY_CTX* pctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr);
  EVP_PKEY* key = nullptr;
  if (EVP_PKEY_fromdata_init(pctx) != 1 ||
      EVP_PKEY_fromdata(pctx, &key, EVP_PKEY_KEYPAIR, params) != 1) {
    key = nullptr;
  }
  EVP_PKEY_CTX_free(pctx);
  OSSL_PARAM_free(params);
  return UniquePkey(key);
}

// What a CSR made by OpenSSL should carry.
struct CsrSpec {
  std::vector<std::pair<std::string, std::string>> subject;  // {"CN", "x"}, in order
  std::string san;                 // OpenSSL syntax "DNS:a,IP:1.2.3.4"; empty: none
  std::string extended_key_usage;  // e.g. "codeSigning"
  std::string basic_constraints;   // e.g. "critical,CA:TRUE"
  std::vector<std::pair<std::string, std::string>> raw_extensions;  // {oid, "DER:..."}
};

inline Bytes MakeCsr(EVP_PKEY* key, const CsrSpec& spec, const EVP_MD* md = EVP_sha256()) {
  UniqueReq req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  for (const auto& [type, value] : spec.subject) {
    X509_NAME_add_entry_by_txt(name, type.c_str(), MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0);
  }
  X509_REQ_set_pubkey(req.get(), key);
  STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
  auto add = [&](int nid, const std::string& value) {
    if (value.empty()) return;
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, nid, value.c_str());
    if (ext == nullptr) throw std::runtime_error("bad extension " + value);
    sk_X509_EXTENSION_push(exts, ext);
  };
  add(NID_subject_alt_name, spec.san);
  add(NID_ext_key_usage, spec.extended_key_usage);
  add(NID_basic_constraints, spec.basic_constraints);
  for (const auto& [oid, value] : spec.raw_extensions) {
    X509_EXTENSION* ext = X509V3_EXT_conf(nullptr, nullptr, oid.c_str(), value.c_str());
    if (ext == nullptr) throw std::runtime_error("bad extension " + oid);
    sk_X509_EXTENSION_push(exts, ext);
  }
  if (sk_X509_EXTENSION_num(exts) > 0) X509_REQ_add_extensions(req.get(), exts);
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  if (X509_REQ_sign(req.get(), key, md) <= 0) throw std::runtime_error("CSR signing failed");
  return internal::ToDer(req.get(), i2d_X509_REQ);
}

inline Csr ParsedCsr(const Bytes& der) {
  Result<Csr> csr = Csr::Parse(der);
  if (!csr.ok()) throw std::runtime_error("CSR refused: " + csr.error().ToString());
  return std::move(csr).value();
}

// The starter profiles of issue 5 (custos-init dev).
inline Profile TlsServerProfile() {
  Profile p;
  p.name = "tls-server";
  p.key_algorithms = {KeyAlgorithm::kEcP256, KeyAlgorithm::kEcP384, KeyAlgorithm::kRsa};
  p.max_validity = std::chrono::days(90);
  p.default_validity = std::chrono::days(30);
  p.key_usage = kDigitalSignature;
  p.ext_key_usages = {kEkuServerAuth};
  p.sans.dns_suffixes = {".dev.custos.test"};
  p.sans.ip_ranges = {"127.0.0.0/8", "fd00::/8"};
  p.subject.allowed_from_csr = {"CN"};
  p.crl_urls = {"http://ca.dev.custos.test/dev-intermediate.crl"};
  p.ocsp_urls = {"http://ocsp.dev.custos.test/"};
  p.ca_issuers_urls = {"http://ca.dev.custos.test/dev-intermediate.crt"};
  return p;
}

inline Profile SpiffeProfile() {
  Profile p;
  p.name = "spiffe-svid";
  p.key_algorithms = {KeyAlgorithm::kEcP256, KeyAlgorithm::kEcP384, KeyAlgorithm::kRsa};
  p.max_validity = std::chrono::hours(24);
  p.default_validity = std::chrono::hours(1);
  p.key_usage = kDigitalSignature;
  p.ext_key_usages = {kEkuClientAuth, kEkuServerAuth};
  p.sans.uri_prefixes = {"spiffe://dev.custos.test/"};
  p.sans.min_count = 1;
  p.sans.max_count = 1;
  p.sans.max_uri_count = 1;
  p.subject.mode = SubjectMode::kEmpty;
  return p;
}

inline Profile SubCaProfile() {
  Profile p;
  p.name = "sub-ca";
  p.key_algorithms = {KeyAlgorithm::kEcP256, KeyAlgorithm::kEcP384, KeyAlgorithm::kRsa};
  p.max_validity = std::chrono::days(5 * 365);
  p.default_validity = std::chrono::days(3 * 365);
  p.key_usage = kKeyCertSign | kCrlSign;
  p.is_ca = true;
  p.path_len = 0;
  p.sans.min_count = 0;
  p.subject.allowed_from_csr = {"CN", "O", "C"};
  return p;
}

// A software root -> intermediate hierarchy, the shape custos-init dev makes
// on the token.
struct SoftwareHierarchy {
  UniquePkey root_key;
  UniquePkey inter_key;
  Bytes root_der;
  Bytes inter_der;
  std::optional<CertificateAuthority> root;
  std::optional<CertificateAuthority> inter;

  explicit SoftwareHierarchy(std::optional<Time> now = std::nullopt,
                             std::chrono::seconds inter_validity = std::chrono::days(5 * 365)) {
    root_key = GenerateKey("EC", "P-384");
    inter_key = GenerateKey("EC", "P-256");
    RootRequest rr;
    rr.subject_dn = "CN=Custos Dev Root,O=Custos Test,C=US";
    rr.validity = std::chrono::days(20 * 365);
    rr.path_len = 1;
    rr.now = now;
    Result<IssuedCertificate> r = CreateRoot(rr, root_key.get());
    if (!r.ok()) throw std::runtime_error("CreateRoot: " + r.error().ToString());
    root_der = r->der;
    Result<CertificateAuthority> rca = CertificateAuthority::Create(root_der, root_key.get());
    if (!rca.ok()) throw std::runtime_error("root CA: " + rca.error().ToString());
    root.emplace(std::move(rca).value());
    IntermediateRequest ir;
    ir.subject_dn = "CN=Custos Dev Intermediate,O=Custos Test,C=US";
    ir.spki_der = Spki(inter_key.get());
    ir.validity = inter_validity;
    ir.path_len = 0;
    ir.crl_urls = {"http://ca.dev.custos.test/dev-root.crl"};
    IssueHooks hooks;
    hooks.now = now;
    Result<IssuedCertificate> i = CreateIntermediate(*root, ir, hooks);
    if (!i.ok()) throw std::runtime_error("CreateIntermediate: " + i.error().ToString());
    inter_der = i->der;
    Result<CertificateAuthority> ica = CertificateAuthority::Create(inter_der, inter_key.get());
    if (!ica.ok()) throw std::runtime_error("intermediate CA: " + ica.error().ToString());
    inter.emplace(std::move(ica).value());
  }
};

// Runs openssl verify -x509_strict and certtool --verify-chain on a chain.
// Returns "" on success, else the failing tool's output.
inline std::string VerifyWithTools(const TempDir& dir, const Bytes& root, const Bytes& inter,
                                   const Bytes& leaf, const std::string& purpose = "") {
  WriteCertsPem(dir / "root.pem", {root});
  WriteCertsPem(dir / "inter.pem", {inter});
  WriteCertsPem(dir / "leaf.pem", {leaf});
  WriteCertsPem(dir / "chain.pem", {leaf, inter, root});
  std::string cmd = "openssl verify -x509_strict -CAfile " + (dir / "root.pem") + " -untrusted " +
                    (dir / "inter.pem");
  if (!purpose.empty()) cmd += " -purpose " + purpose;
  cmd += " " + (dir / "leaf.pem");
  auto [rc, out] = RunCommand(cmd);
  if (rc != 0) return "openssl verify: " + out;
  // GnuTLS: the whole chain ending in the self-signed root, and the chain
  // against the root as the only trust anchor.
  auto [rc2, out2] =
      RunCommand("certtool --verify-chain --verify-profile medium --infile " + (dir / "chain.pem"));
  if (rc2 != 0) return "certtool --verify-chain: " + out2;
  WriteCertsPem(dir / "untrusted.pem", {leaf, inter});
  auto [rc3, out3] = RunCommand("certtool --verify --verify-profile medium --load-ca-certificate " +
                                (dir / "root.pem") + " --infile " + (dir / "untrusted.pem"));
  if (rc3 != 0) return "certtool --verify: " + out3;
  return "";
}

}  // namespace custos::service::ca::testing
