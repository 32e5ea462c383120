// Small conversions shared by the CA core: OpenSSL errors, times, OIDs, key
// identifiers, the signing algorithm of a CA key, and signing with the
// "sign exactly what was linted" check.
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>

#include <cctype>
#include <cstring>
#include <ctime>

#include "ca_internal.h"

namespace custos::service::ca::internal {

std::string OpenSslErrors() {
  std::string out;
  unsigned long code;
  while ((code = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

UniqueAsn1Time ToAsn1Time(Time t) {
  const std::time_t secs = Clock::to_time_t(t);
  // ASN1_TIME_set picks UTCTime for 1950..2049 and GeneralizedTime otherwise,
  // which is what RFC 5280 §4.1.2.5 requires.
  return UniqueAsn1Time(ASN1_TIME_set(nullptr, secs));
}

std::optional<Time> FromAsn1Time(const ASN1_TIME* t) {
  if (t == nullptr) return std::nullopt;
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return std::nullopt;
  const std::time_t secs = timegm(&tm);
  if (secs == static_cast<std::time_t>(-1)) return std::nullopt;
  return Clock::from_time_t(secs);
}

std::string OidText(const ASN1_OBJECT* object) {
  char buf[128];
  const int len = OBJ_obj2txt(buf, sizeof(buf), object, 1);
  if (len <= 0 || static_cast<size_t>(len) >= sizeof(buf)) return "?";
  return std::string(buf, static_cast<size_t>(len));
}

UniqueObject ParseOid(std::string_view dotted) {
  if (dotted.empty() || dotted.size() > 100 || dotted.front() == '.' || dotted.back() == '.') {
    return nullptr;
  }
  int dots = 0;
  char prev = 0;
  for (char c : dotted) {
    if (c == '.') {
      if (prev == '.') return nullptr;
      ++dots;
    } else if (!std::isdigit(static_cast<unsigned char>(c))) {
      return nullptr;
    }
    prev = c;
  }
  if (dots < 1) return nullptr;
  const std::string text(dotted);
  return UniqueObject(OBJ_txt2obj(text.c_str(), 1));
}

Bytes KeyIdentifier(X509_PUBKEY* pubkey) {
  const unsigned char* bits = nullptr;
  int bits_len = 0;
  if (pubkey == nullptr ||
      X509_PUBKEY_get0_param(nullptr, &bits, &bits_len, nullptr, pubkey) != 1) {
    return {};
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_Digest(bits, static_cast<size_t>(bits_len), md, &md_len, EVP_sha1(), nullptr) != 1) {
    return {};
  }
  return Bytes(md, md + md_len);
}

std::optional<SigningAlgorithm> SigningAlgorithmFor(EVP_PKEY* key) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
      return SigningAlgorithm{EVP_sha256(), NID_sha256WithRSAEncryption, true};
    case EVP_PKEY_EC: {
      // Keys from the pkcs11 bridge are legacy EC keys; the bit size names
      // the curve for the two curves Custos holds (P-256, P-384).
      char group[64] = {0};
      size_t len = 0;
      std::string name;
      if (EVP_PKEY_get_group_name(key, group, sizeof(group), &len) == 1) name = group;
      ERR_clear_error();
      const int bits = EVP_PKEY_get_bits(key);
      if (name == "prime256v1" || (name.empty() && bits == 256)) {
        return SigningAlgorithm{EVP_sha256(), NID_ecdsa_with_SHA256, false};
      }
      if (name == "secp384r1" || (name.empty() && bits == 384)) {
        return SigningAlgorithm{EVP_sha384(), NID_ecdsa_with_SHA384, false};
      }
      return std::nullopt;
    }
    case EVP_PKEY_ED25519:
      return SigningAlgorithm{nullptr, NID_ED25519, false};
    default:
      return std::nullopt;
  }
}

namespace {

// The raw TBSCertificate bytes of a DER certificate, read with OpenSSL's
// ASN.1 header parser: Certificate ::= SEQUENCE { tbsCertificate, ... }.
Bytes TbsOf(const Bytes& cert_der) {
  const unsigned char* p = cert_der.data();
  long len = 0;
  int tag = 0;
  int cls = 0;
  const long total = static_cast<long>(cert_der.size());
  int r = ASN1_get_object(&p, &len, &tag, &cls, total);
  if ((r & 0x80) != 0 || tag != V_ASN1_SEQUENCE) return {};
  const unsigned char* tbs_start = p;
  r = ASN1_get_object(&p, &len, &tag, &cls, total - (p - cert_der.data()));
  if ((r & 0x80) != 0 || tag != V_ASN1_SEQUENCE) return {};
  const unsigned char* tbs_end = p + len;
  if (tbs_end > cert_der.data() + cert_der.size()) return {};
  return Bytes(tbs_start, tbs_end);
}

}  // namespace

Result<Bytes> SignAndVerify(X509* cert, EVP_PKEY* key, EVP_PKEY* verify_key,
                            const Bytes& linted_tbs) {
  const std::optional<SigningAlgorithm> alg = SigningAlgorithmFor(key);
  if (!alg) return Fail("sign-failed", "the CA key type cannot sign certificates");
  ERR_clear_error();
  if (X509_sign(cert, key, alg->md) <= 0) {
    return Fail("sign-failed", "signing the certificate failed: " + OpenSslErrors());
  }
  const Bytes der = ToDer(cert, i2d_X509);
  if (der.empty()) return Fail("sign-failed", "encoding the signed certificate failed");

  const unsigned char* p = der.data();
  UniqueX509 parsed(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (parsed == nullptr || p != der.data() + der.size()) {
    return Fail("sign-verify", "the signed certificate does not parse back");
  }
  if (X509_verify(parsed.get(), verify_key) != 1) {
    ERR_clear_error();
    return Fail("sign-verify", "the signed certificate does not verify with the CA public key");
  }
  if (TbsOf(der) != linted_tbs) {
    return Fail("sign-tbs-mismatch", "the signed TBS certificate differs from the linted one");
  }
  return der;
}

}  // namespace custos::service::ca::internal
