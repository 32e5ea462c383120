// Shared helpers of the CA core: RAII owners for OpenSSL objects, time and
// encoding conversions. Internal to service/src/ca/.
#pragma once

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "custos/service/ca.h"

namespace custos::service::ca::internal {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};

using UniqueX509 = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using UniqueReq = std::unique_ptr<X509_REQ, Deleter<X509_REQ, X509_REQ_free>>;
using UniqueCrl = std::unique_ptr<X509_CRL, Deleter<X509_CRL, X509_CRL_free>>;
using UniqueRevoked = std::unique_ptr<X509_REVOKED, Deleter<X509_REVOKED, X509_REVOKED_free>>;
using UniquePkey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using UniqueName = std::unique_ptr<X509_NAME, Deleter<X509_NAME, X509_NAME_free>>;
using UniqueExt = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;
using UniqueBn = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using UniqueBnCtx = std::unique_ptr<BN_CTX, Deleter<BN_CTX, BN_CTX_free>>;
using UniqueAsn1Int = std::unique_ptr<ASN1_INTEGER, Deleter<ASN1_INTEGER, ASN1_INTEGER_free>>;
using UniqueAsn1Time = std::unique_ptr<ASN1_TIME, Deleter<ASN1_TIME, ASN1_TIME_free>>;
using UniqueOctets =
    std::unique_ptr<ASN1_OCTET_STRING, Deleter<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>>;
using UniqueBitString =
    std::unique_ptr<ASN1_BIT_STRING, Deleter<ASN1_BIT_STRING, ASN1_BIT_STRING_free>>;
using UniqueObject = std::unique_ptr<ASN1_OBJECT, Deleter<ASN1_OBJECT, ASN1_OBJECT_free>>;
using UniqueBio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using UniqueMdCtx = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX, EVP_MD_CTX_free>>;
using UniquePkeyCtx = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;

inline void FreeGeneralNames(GENERAL_NAMES* names) { GENERAL_NAMES_free(names); }
using UniqueGeneralNames = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES, FreeGeneralNames>>;
inline void FreeGeneralName(GENERAL_NAME* name) { GENERAL_NAME_free(name); }
using UniqueGeneralName = std::unique_ptr<GENERAL_NAME, Deleter<GENERAL_NAME, FreeGeneralName>>;
inline void FreeExtensions(STACK_OF(X509_EXTENSION) * exts) {
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
}
using UniqueExtensions =
    std::unique_ptr<STACK_OF(X509_EXTENSION), Deleter<STACK_OF(X509_EXTENSION), FreeExtensions>>;

inline Error Fail(std::string rule, std::string message) {
  return Error{std::move(rule), std::move(message)};
}

// Drains the thread's OpenSSL error queue into "a; b" ("" when empty).
std::string OpenSslErrors();

// i2d of any OpenSSL object into a byte vector; empty on failure.
template <typename T, typename F>
Bytes ToDer(const T* object, F i2d) {
  unsigned char* der = nullptr;
  const int len = i2d(const_cast<T*>(object), &der);
  if (len <= 0 || der == nullptr) return {};
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

// Seconds-precision conversions. ToAsn1Time uses UTCTime through 2049 and
// GeneralizedTime from 2050 (RFC 5280 §4.1.2.5).
UniqueAsn1Time ToAsn1Time(Time t);
std::optional<Time> FromAsn1Time(const ASN1_TIME* t);

// Dotted text of an OID.
std::string OidText(const ASN1_OBJECT* object);
// Parses a dotted OID strictly (digits and dots only); nullptr if malformed.
UniqueObject ParseOid(std::string_view dotted);

// RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING.
Bytes KeyIdentifier(X509_PUBKEY* pubkey);

// The hash to sign with for a CA key: SHA-256 (RSA, P-256), SHA-384
// (P-384), nullptr (Ed25519, which signs the message itself). Sets
// `signature_nid` to the certificate signature algorithm. nullopt for a key
// type the CA core does not sign with.
struct SigningAlgorithm {
  const EVP_MD* md;
  int signature_nid;
  bool null_parameters;  // RSA PKCS#1 v1.5: parameters are NULL, else absent
};
std::optional<SigningAlgorithm> SigningAlgorithmFor(EVP_PKEY* key);

// The SubjectPublicKeyInfo of `key` re-encoded canonically (EC points
// uncompressed), so that the same key always has the same bytes; empty on
// failure.
Bytes CanonicalSpki(EVP_PKEY* key);

// basicConstraints (always critical) and keyUsage (critical) extensions.
UniqueExt MakeBasicConstraints(bool ca, int path_len);
UniqueExt MakeKeyUsage(std::uint16_t bits);

// Lints an X509 object (the TBS part; the outer signature is not looked at).
Status Lint(const X509* cert, const X509* issuer, const LintOptions& options);

// DNS name syntax for SANs: LDH labels of 1..63 octets, 253 octets in all, at
// least two labels, no leading or trailing hyphen; "*" allowed only as the
// whole leftmost label and only if `allow_wildcard`.
bool IsValidDnsName(std::string_view name, bool allow_wildcard);
// An absolute URI: scheme ":" then at least one character, no spaces or
// control characters, printable ASCII only.
bool IsValidUri(std::string_view uri);
// local@domain with a non-empty local part and a valid DNS domain.
bool IsValidEmail(std::string_view email);

// Builds a GENERAL_NAME for a SAN (already syntax-checked).
UniqueGeneralName ToGeneralName(const San& san);
// Decodes a GENERAL_NAME of type DNS, IP, URI or e-mail; nullopt otherwise.
std::optional<San> FromGeneralName(const GENERAL_NAME* name);

// Encodes a name from attributes (re-encoded by NID: PrintableString for C,
// IA5String for DC and emailAddress, UTF8String otherwise). Rule
// "subject-attribute-invalid" for an unknown type or a value too long.
Result<UniqueName> BuildName(const std::vector<NameAttribute>& attributes);
// Decodes a name into attributes; rule "subject-multivalued-rdn" for RDNs
// with more than one attribute, "subject-attribute-invalid" for undecodable
// values.
Result<std::vector<NameAttribute>> DecodeName(const X509_NAME* name);

// Parses a DER TBSCertificate (canonical: it re-encodes to the same bytes)
// into an X509 whose signature is empty; nullptr if it does not parse.
UniqueX509 ParseTbs(std::span<const std::uint8_t> tbs_der);

// Signs exactly `tbs_der` with `key`: parses it, checks that its signature
// algorithm fits `key`, lints it against `issuer` (null: self-signed), signs
// the bytes, wraps them into a certificate, re-parses it, verifies it with
// `verify_key` and checks that its TBS bytes are `tbs_der`. Returns the
// signed certificate.
Result<UniqueX509> SignTbs(std::span<const std::uint8_t> tbs_der, const X509* issuer, EVP_PKEY* key,
                           EVP_PKEY* verify_key, const LintOptions& lint);

}  // namespace custos::service::ca::internal
