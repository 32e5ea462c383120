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

namespace {

// DER: tag, definite length, contents.
void AppendTlv(Bytes& out, std::uint8_t tag, std::span<const std::uint8_t> contents) {
  out.push_back(tag);
  const std::size_t n = contents.size();
  if (n < 0x80) {
    out.push_back(static_cast<std::uint8_t>(n));
  } else {
    std::uint8_t len[sizeof(std::size_t)];
    int k = 0;
    for (std::size_t v = n; v != 0; v >>= 8) len[k++] = static_cast<std::uint8_t>(v & 0xff);
    out.push_back(static_cast<std::uint8_t>(0x80 | k));
    while (k > 0) out.push_back(len[--k]);
  }
  out.insert(out.end(), contents.begin(), contents.end());
}

// Certificate ::= SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }.
Bytes WrapCertificate(std::span<const std::uint8_t> tbs, std::span<const std::uint8_t> alg,
                      std::span<const std::uint8_t> signature) {
  Bytes bits;
  bits.push_back(0);  // no unused bits
  bits.insert(bits.end(), signature.begin(), signature.end());
  Bytes body(tbs.begin(), tbs.end());
  body.insert(body.end(), alg.begin(), alg.end());
  AppendTlv(body, V_ASN1_BIT_STRING, bits);
  Bytes out;
  AppendTlv(out, V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED, body);
  return out;
}

}  // namespace

UniqueX509 ParseTbs(std::span<const std::uint8_t> tbs_der) {
  // Wrapped with a placeholder outer algorithm (sha256WithRSAEncryption) and
  // an empty signature: only the TBS part is read.
  static constexpr std::uint8_t kPlaceholderAlg[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                                     0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00};
  if (tbs_der.empty() || tbs_der[0] != (V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED)) return nullptr;
  const Bytes wrapped = WrapCertificate(tbs_der, kPlaceholderAlg, {});
  const unsigned char* p = wrapped.data();
  UniqueX509 x(d2i_X509(nullptr, &p, static_cast<long>(wrapped.size())));
  if (x == nullptr || p != wrapped.data() + wrapped.size() ||
      TbsOf(wrapped) != Bytes(tbs_der.begin(), tbs_der.end())) {
    ERR_clear_error();
    return nullptr;
  }
  // The TBS must be exactly what re-encoding it gives (canonical DER).
  if (ToDer(x.get(), i2d_re_X509_tbs) != Bytes(tbs_der.begin(), tbs_der.end())) return nullptr;
  return x;
}

Result<UniqueX509> SignTbs(std::span<const std::uint8_t> tbs_der, const X509* issuer, EVP_PKEY* key,
                           EVP_PKEY* verify_key, const LintOptions& lint) {
  UniqueX509 x = ParseTbs(tbs_der);
  if (x == nullptr)
    return Fail("tbs-invalid", "the to-be-signed certificate does not parse as DER");
  const std::optional<SigningAlgorithm> alg = SigningAlgorithmFor(key);
  if (!alg) return Fail("sign-failed", "the CA key type cannot sign certificates");
  // The TBS names the algorithm the key signs with.
  const X509_ALGOR* tbs_alg = X509_get0_tbs_sigalg(x.get());
  const ASN1_OBJECT* oid = nullptr;
  int param_type = 0;
  X509_ALGOR_get0(&oid, &param_type, nullptr, tbs_alg);
  if (OBJ_obj2nid(oid) != alg->signature_nid ||
      param_type != (alg->null_parameters ? V_ASN1_NULL : V_ASN1_UNDEF)) {
    return Fail("sign-failed", "the certificate's signature algorithm does not fit the CA key");
  }
  // Linted again right before signing: what is signed passed the linter.
  Status findings = Lint(x.get(), issuer != nullptr ? issuer : x.get(), lint);
  if (!findings.ok()) return findings.error();
  const Bytes alg_der = ToDer(tbs_alg, i2d_X509_ALGOR);
  if (alg_der.empty()) return Fail("sign-failed", "encoding the signature algorithm failed");

  ERR_clear_error();
  UniqueMdCtx ctx(EVP_MD_CTX_new());
  std::size_t sig_len = 0;
  if (ctx == nullptr || EVP_DigestSignInit(ctx.get(), nullptr, alg->md, nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &sig_len, tbs_der.data(), tbs_der.size()) != 1) {
    return Fail("sign-failed", "signing the certificate failed: " + OpenSslErrors());
  }
  Bytes sig(sig_len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &sig_len, tbs_der.data(), tbs_der.size()) != 1) {
    return Fail("sign-failed", "signing the certificate failed: " + OpenSslErrors());
  }
  sig.resize(sig_len);
  const Bytes der = WrapCertificate(tbs_der, alg_der, sig);

  const unsigned char* p = der.data();
  UniqueX509 parsed(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (parsed == nullptr || p != der.data() + der.size()) {
    ERR_clear_error();
    return Fail("sign-verify", "the signed certificate does not parse back");
  }
  if (X509_verify(parsed.get(), verify_key) != 1) {
    ERR_clear_error();
    return Fail("sign-verify", "the signed certificate does not verify with the CA public key");
  }
  if (ToDer(parsed.get(), i2d_X509) != der || TbsOf(der) != Bytes(tbs_der.begin(), tbs_der.end())) {
    return Fail("sign-tbs-mismatch", "the signed TBS certificate differs from the linted one");
  }
  return parsed;
}

}  // namespace custos::service::ca::internal
