// The certificate linter: RFC 5280 and Custos profile rules checked on the
// to-be-signed certificate before it is signed, and on any DER certificate.
#include <openssl/err.h>
#include <openssl/objects.h>

#include <ctime>
#include <set>

#include "ca_internal.h"

namespace custos::service::ca {

namespace internal {

namespace {

// An extension decoded by OpenSSL, freed with its item's free function.
template <typename T>
struct Decoded {
  T* value = nullptr;
  int critical = -1;  // -1: absent, -2: present more than once
  void (*free_fn)(T*) = nullptr;
  ~Decoded() {
    if (value != nullptr) free_fn(value);
  }
};

template <typename T>
void DecodeExt(const X509* x, int nid, void (*free_fn)(T*), Decoded<T>& out) {
  out.free_fn = free_fn;
  out.value = static_cast<T*>(X509_get_ext_d2i(x, nid, &out.critical, nullptr));
}

void FreeBc(BASIC_CONSTRAINTS* v) { BASIC_CONSTRAINTS_free(v); }
void FreeBits(ASN1_BIT_STRING* v) { ASN1_BIT_STRING_free(v); }
void FreeEku(EXTENDED_KEY_USAGE* v) { sk_ASN1_OBJECT_pop_free(v, ASN1_OBJECT_free); }
void FreeNames(GENERAL_NAMES* v) { GENERAL_NAMES_free(v); }
void FreeOctets(ASN1_OCTET_STRING* v) { ASN1_OCTET_STRING_free(v); }
void FreeAkid(AUTHORITY_KEYID* v) { AUTHORITY_KEYID_free(v); }

Bytes OctetsOf(const ASN1_STRING* s) {
  if (s == nullptr) return {};
  return Bytes(ASN1_STRING_get0_data(s), ASN1_STRING_get0_data(s) + ASN1_STRING_length(s));
}

bool CriticalityOf(const X509* x, int nid, bool* critical) {
  const int idx = X509_get_ext_by_NID(x, nid, -1);
  if (idx < 0) return false;
  *critical = X509_EXTENSION_get_critical(X509_get_ext(x, idx)) != 0;
  return true;
}

Status CheckTime(const ASN1_TIME* t, const char* which) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return Fail("lint-validity-encoding", std::string(which) + " does not decode");
  }
  const int year = tm.tm_year + 1900;
  const int type = ASN1_STRING_type(t);
  const bool utc_expected = year >= 1950 && year < 2050;
  if ((utc_expected && type != V_ASN1_UTCTIME) ||
      (!utc_expected && type != V_ASN1_GENERALIZEDTIME)) {
    return Fail("lint-validity-encoding", std::string(which) +
                                              " must be UTCTime through 2049 and "
                                              "GeneralizedTime from 2050 (RFC 5280 4.1.2.5)");
  }
  return {};
}

}  // namespace

Status Lint(const X509* x, const X509* issuer, const LintOptions& options) {
  // Version 3: extensions are present.
  if (X509_get_version(x) != X509_VERSION_3) {
    return Fail("lint-version", "the certificate must be version 3");
  }

  // Serial: positive, non-zero, at most 20 content octets (RFC 5280 4.1.2.2).
  const ASN1_INTEGER* serial = X509_get0_serialNumber(x);
  {
    const Bytes mag = OctetsOf(serial);
    bool nonzero = false;
    for (std::uint8_t b : mag) nonzero |= b != 0;
    const size_t der_len = mag.size() + ((!mag.empty() && (mag[0] & 0x80) != 0) ? 1 : 0);
    if (ASN1_STRING_type(serial) != V_ASN1_INTEGER || !nonzero || der_len > 20) {
      return Fail("lint-serial", "the serial number must be positive and at most 20 octets");
    }
  }

  // Issuer name byte-identical to the CA's subject.
  if (ToDer(X509_get_issuer_name(x), i2d_X509_NAME) !=
      ToDer(X509_get_subject_name(issuer), i2d_X509_NAME)) {
    return Fail("lint-issuer-matches-ca",
                "the issuer name is not byte-identical to the CA certificate's subject");
  }

  // Key identifiers: SKI by RFC 5280 method 1; AKI keyIdentifier = CA's SKI.
  Decoded<ASN1_OCTET_STRING> ski;
  DecodeExt(x, NID_subject_key_identifier, FreeOctets, ski);
  if (ski.value == nullptr ||
      OctetsOf(ski.value) != KeyIdentifier(X509_get_X509_PUBKEY(const_cast<X509*>(x)))) {
    return Fail("lint-key-identifiers",
                "the subject key identifier is missing or not the SHA-1 of the subject key");
  }
  Bytes issuer_key_id;
  if (issuer == x) {
    issuer_key_id = OctetsOf(ski.value);
  } else {
    Decoded<ASN1_OCTET_STRING> issuer_ski;
    DecodeExt(issuer, NID_subject_key_identifier, FreeOctets, issuer_ski);
    issuer_key_id = issuer_ski.value != nullptr
                        ? OctetsOf(issuer_ski.value)
                        : KeyIdentifier(X509_get_X509_PUBKEY(const_cast<X509*>(issuer)));
  }
  Decoded<AUTHORITY_KEYID> aki;
  DecodeExt(x, NID_authority_key_identifier, FreeAkid, aki);
  if (aki.value == nullptr || aki.value->keyid == nullptr ||
      OctetsOf(aki.value->keyid) != issuer_key_id) {
    return Fail("lint-aki-matches-ca",
                "the authority key identifier is missing or differs from the CA's SKI");
  }

  // Signature algorithm in the TBS fits the issuer's key.
  {
    const X509_ALGOR* alg = X509_get0_tbs_sigalg(x);
    const ASN1_OBJECT* obj = nullptr;
    X509_ALGOR_get0(&obj, nullptr, nullptr, alg);
    EVP_PKEY* issuer_key = X509_get0_pubkey(issuer);
    const std::optional<SigningAlgorithm> expected =
        issuer_key != nullptr ? SigningAlgorithmFor(issuer_key) : std::nullopt;
    if (!expected || obj == nullptr || OBJ_obj2nid(obj) != expected->signature_nid) {
      return Fail("lint-signature-algorithm",
                  "the signature algorithm does not fit the issuing CA's key");
    }
  }

  // Validity.
  const std::optional<Time> nb = FromAsn1Time(X509_get0_notBefore(x));
  const std::optional<Time> na = FromAsn1Time(X509_get0_notAfter(x));
  if (!nb || !na || *nb >= *na) {
    return Fail("lint-validity-order", "notBefore must be before notAfter");
  }
  if (Status s = CheckTime(X509_get0_notBefore(x), "notBefore"); !s.ok()) return s;
  if (Status s = CheckTime(X509_get0_notAfter(x), "notAfter"); !s.ok()) return s;

  // Duplicate extensions (RFC 5280 4.2: at most one instance of each).
  std::set<std::string> oids;
  for (int i = 0; i < X509_get_ext_count(x); ++i) {
    const std::string oid = OidText(X509_EXTENSION_get_object(X509_get_ext(x, i)));
    if (!oids.insert(oid).second) {
      return Fail("lint-duplicate-extension", "extension " + oid + " appears more than once");
    }
  }

  // Key usage versus basic constraints (RFC 5280 4.2.1.3, 4.2.1.9).
  Decoded<BASIC_CONSTRAINTS> bc;
  DecodeExt(x, NID_basic_constraints, FreeBc, bc);
  const bool is_ca = bc.value != nullptr && bc.value->ca != 0;
  Decoded<ASN1_BIT_STRING> ku;
  DecodeExt(x, NID_key_usage, FreeBits, ku);
  const bool cert_sign = ku.value != nullptr && ASN1_BIT_STRING_get_bit(ku.value, 5) != 0;
  const bool crl_sign = ku.value != nullptr && ASN1_BIT_STRING_get_bit(ku.value, 6) != 0;
  if (is_ca && !cert_sign) {
    return Fail("lint-ku-vs-bc", "a CA certificate (CA:TRUE) needs keyCertSign in key usage");
  }
  if (!is_ca && (cert_sign || crl_sign)) {
    return Fail("lint-ku-vs-bc", "a leaf certificate must not assert keyCertSign or cRLSign");
  }
  if (!is_ca && bc.value != nullptr && bc.value->pathlen != nullptr) {
    return Fail("lint-ku-vs-bc", "pathLenConstraint is only meaningful for CA certificates");
  }
  if (ku.value != nullptr && ASN1_STRING_length(ku.value) == 0) {
    return Fail("lint-ku-vs-bc", "the key usage extension asserts no bit");
  }

  // Leaves carry an EKU, and never anyExtendedKeyUsage.
  Decoded<EXTENDED_KEY_USAGE> eku;
  DecodeExt(x, NID_ext_key_usage, FreeEku, eku);
  if (!is_ca) {
    if (eku.value == nullptr || sk_ASN1_OBJECT_num(eku.value) == 0) {
      return Fail("lint-eku-present", "a leaf certificate needs an extended key usage");
    }
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku.value); ++i) {
      if (OBJ_obj2nid(sk_ASN1_OBJECT_value(eku.value, i)) == NID_anyExtendedKeyUsage) {
        return Fail("lint-eku-present", "a leaf certificate must not use anyExtendedKeyUsage");
      }
    }
  }

  // SAN encoding.
  Decoded<GENERAL_NAMES> san;
  DecodeExt(x, NID_subject_alt_name, FreeNames, san);
  const bool has_san_ext = X509_get_ext_by_NID(x, NID_subject_alt_name, -1) >= 0;
  if (has_san_ext && (san.value == nullptr || sk_GENERAL_NAME_num(san.value) == 0)) {
    return Fail("lint-san-encoding", "the subjectAltName extension is empty or malformed");
  }
  for (int i = 0; san.value != nullptr && i < sk_GENERAL_NAME_num(san.value); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(san.value, i);
    int type = 0;
    const void* raw = GENERAL_NAME_get0_value(gn, &type);
    std::string value;
    // Only DNS, IP, URI and e-mail names hold an ASN1_STRING.
    if (raw != nullptr &&
        (type == GEN_DNS || type == GEN_IPADD || type == GEN_URI || type == GEN_EMAIL)) {
      const auto* str = static_cast<const ASN1_STRING*>(raw);
      value.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(str)),
                   static_cast<size_t>(ASN1_STRING_length(str)));
    } else {
      type = -1;
    }
    bool ok = false;
    switch (type) {
      case GEN_DNS:
        ok = IsValidDnsName(value, options.allow_wildcards);
        break;
      case GEN_IPADD:
        ok = value.size() == 4 || value.size() == 16;
        break;
      case GEN_URI:
        ok = IsValidUri(value);
        break;
      case GEN_EMAIL:
        ok = IsValidEmail(value);
        break;
      default:
        ok = false;
    }
    if (!ok) {
      return Fail("lint-san-encoding", "SAN entry " + std::to_string(i + 1) +
                                           " is not a valid DNS name, IP address, URI or e-mail");
    }
  }

  // Empty subject needs a critical SAN (RFC 5280 4.1.2.6, 4.2.1.6).
  const bool empty_subject = X509_NAME_entry_count(X509_get_subject_name(x)) == 0;
  bool san_critical = false;
  const bool san_present = CriticalityOf(x, NID_subject_alt_name, &san_critical);
  if (empty_subject && (!san_present || !san_critical)) {
    return Fail("lint-empty-subject-san-critical",
                "an empty subject needs a critical subjectAltName extension");
  }

  // Criticality.
  bool critical = false;
  if (is_ca && !(CriticalityOf(x, NID_basic_constraints, &critical) && critical)) {
    return Fail("lint-extension-criticality", "basicConstraints must be critical in a CA");
  }
  if (CriticalityOf(x, NID_key_usage, &critical) && !critical) {
    return Fail("lint-extension-criticality", "keyUsage must be critical");
  }
  if (san_present && san_critical != empty_subject) {
    return Fail("lint-extension-criticality",
                "subjectAltName must be critical exactly when the subject is empty");
  }
  for (int nid : {NID_authority_key_identifier, NID_subject_key_identifier, NID_info_access,
                  NID_crl_distribution_points, NID_ext_key_usage}) {
    if (CriticalityOf(x, nid, &critical) && critical) {
      return Fail("lint-extension-criticality",
                  std::string(OBJ_nid2sn(nid)) + " must not be critical");
    }
  }
  ERR_clear_error();
  return {};
}

}  // namespace internal

Status LintCertificate(std::span<const std::uint8_t> cert_der,
                       std::span<const std::uint8_t> issuer_cert_der, const LintOptions& options) {
  auto parse = [](std::span<const std::uint8_t> der) {
    const unsigned char* p = der.data();
    internal::UniqueX509 x(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
    if (x != nullptr && p != der.data() + der.size()) x.reset();
    return x;
  };
  internal::UniqueX509 cert = parse(cert_der);
  if (cert == nullptr) {
    internal::OpenSslErrors();
    return internal::Fail("lint-der", "the certificate does not parse as DER");
  }
  const bool self = cert_der.size() == issuer_cert_der.size() &&
                    std::equal(cert_der.begin(), cert_der.end(), issuer_cert_der.begin());
  if (self) return internal::Lint(cert.get(), cert.get(), options);
  internal::UniqueX509 issuer = parse(issuer_cert_der);
  if (issuer == nullptr) {
    internal::OpenSslErrors();
    return internal::Fail("lint-der", "the issuer certificate does not parse as DER");
  }
  return internal::Lint(cert.get(), issuer.get(), options);
}

}  // namespace custos::service::ca
