#include "dev_pki.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <stdexcept>

namespace custos::init {
namespace {

[[noreturn]] void Fail(const std::string& what) {
  char buf[256] = {0};
  ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
  throw std::runtime_error(what + ": " + buf);
}

void Check(int rc, const char* what) {
  if (rc <= 0) Fail(what);
}

void SetRandomSerial(X509* cert) {
  unsigned char bytes[16];
  Check(RAND_bytes(bytes, sizeof bytes), "RAND_bytes");
  bytes[0] &= 0x7f;  // positive
  bytes[0] |= 0x01;  // never zero, full length
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(BN_bin2bn(bytes, sizeof bytes, nullptr), BN_free);
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert))) Fail("serial");
}

void SetName(X509_NAME* name, const std::string& common_name) {
  Check(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>("Custos Development"), -1,
                                   -1, 0),
        "subject O");
  Check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                                   -1, 0),
        "subject CN");
}

void AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) Fail("extension " + std::string(OBJ_nid2sn(nid)) + "=" + value);
  int rc = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  Check(rc, "X509_add_ext");
}

UniqueX509 NewCert(EVP_PKEY* subject_key, const std::string& common_name, int days) {
  UniqueX509 cert(X509_new(), X509_free);
  if (!cert) Fail("X509_new");
  Check(X509_set_version(cert.get(), X509_VERSION_3), "X509_set_version");
  SetRandomSerial(cert.get());
  // Backdate a minute so that clocks a little behind still accept it.
  if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60)) Fail("notBefore");
  if (!X509_gmtime_adj(X509_getm_notAfter(cert.get()), 60L * 60 * 24 * days)) Fail("notAfter");
  SetName(X509_get_subject_name(cert.get()), common_name);
  Check(X509_set_pubkey(cert.get(), subject_key), "X509_set_pubkey");
  return cert;
}

}  // namespace

UniquePkey NewP256Key() {
  UniquePkey key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  if (!key) Fail("EVP_EC_gen");
  return key;
}

Issued MakeCa(const std::string& common_name, int days) {
  Issued ca;
  ca.key = NewP256Key();
  ca.cert = NewCert(ca.key.get(), common_name, days);
  Check(X509_set_issuer_name(ca.cert.get(), X509_get_subject_name(ca.cert.get())), "issuer");
  AddExt(ca.cert.get(), ca.cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  AddExt(ca.cert.get(), ca.cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  AddExt(ca.cert.get(), ca.cert.get(), NID_subject_key_identifier, "hash");
  AddExt(ca.cert.get(), ca.cert.get(), NID_authority_key_identifier, "keyid:always");
  Check(X509_sign(ca.cert.get(), ca.key.get(), EVP_sha256()), "X509_sign");
  return ca;
}

Issued MakeLeaf(const Issued& ca, const LeafSpec& spec) {
  Issued leaf;
  leaf.key = NewP256Key();
  leaf.cert = NewCert(leaf.key.get(), spec.common_name, spec.days);
  Check(X509_set_issuer_name(leaf.cert.get(), X509_get_subject_name(ca.cert.get())), "issuer");
  AddExt(leaf.cert.get(), ca.cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  AddExt(leaf.cert.get(), ca.cert.get(), NID_key_usage, "critical,digitalSignature");
  std::string eku;
  if (spec.server_auth) eku += "serverAuth";
  if (spec.client_auth) eku += std::string(eku.empty() ? "" : ",") + "clientAuth";
  if (!eku.empty()) AddExt(leaf.cert.get(), ca.cert.get(), NID_ext_key_usage, eku);
  std::string san;
  auto append = [&san](const std::string& kind, const std::string& value) {
    san += (san.empty() ? "" : ",") + kind + ":" + value;
  };
  for (const auto& v : spec.uri_sans) append("URI", v);
  for (const auto& v : spec.dns_sans) append("DNS", v);
  for (const auto& v : spec.ip_sans) append("IP", v);
  if (!san.empty()) AddExt(leaf.cert.get(), ca.cert.get(), NID_subject_alt_name, san);
  AddExt(leaf.cert.get(), ca.cert.get(), NID_subject_key_identifier, "hash");
  AddExt(leaf.cert.get(), ca.cert.get(), NID_authority_key_identifier, "keyid:always");
  Check(X509_sign(leaf.cert.get(), ca.key.get(), EVP_sha256()), "X509_sign");
  return leaf;
}

namespace {
template <typename Writer>
std::string ToPem(Writer write) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || write(bio.get()) <= 0) Fail("PEM write");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}
}  // namespace

std::string KeyToPem(EVP_PKEY* key) {
  return ToPem([key](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
}

std::string PublicKeyToPem(EVP_PKEY* key) {
  return ToPem([key](BIO* bio) { return PEM_write_bio_PUBKEY(bio, key); });
}

std::string CertToPem(X509* cert) {
  return ToPem([cert](BIO* bio) { return PEM_write_bio_X509(bio, cert); });
}

}  // namespace custos::init
