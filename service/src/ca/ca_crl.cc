// CRLs (RFC 5280 §5): built with OpenSSL's X509_CRL builders, signed with the
// CA key, re-parsed and verified before they are returned.
#include <openssl/err.h>
#include <openssl/objects.h>

#include <algorithm>
#include <set>

#include "ca_internal.h"

namespace custos::service::ca {

namespace {

using internal::Fail;

bool ValidReason(RevocationReason reason) {
  switch (reason) {
    case RevocationReason::kUnspecified:
    case RevocationReason::kKeyCompromise:
    case RevocationReason::kCaCompromise:
    case RevocationReason::kAffiliationChanged:
    case RevocationReason::kSuperseded:
    case RevocationReason::kCessationOfOperation:
    case RevocationReason::kCertificateHold:
    case RevocationReason::kPrivilegeWithdrawn:
    case RevocationReason::kAaCompromise:
      return true;
  }
  return false;
}

}  // namespace

Result<Bytes> BuildCrl(const CertificateAuthority& ca, const CrlRequest& request) {
  const uint32_t ku = X509_get_key_usage(const_cast<X509*>(ca.cert()));
  if (ku != UINT32_MAX && (ku & KU_CRL_SIGN) == 0) {
    return Fail("crl-ca-no-crlsign", "the CA certificate's key usage lacks cRLSign");
  }
  if (request.previous_crl_number && request.crl_number <= *request.previous_crl_number) {
    return Fail("crl-number", "CRL number " + std::to_string(request.crl_number) +
                                  " is not greater than the last one issued (" +
                                  std::to_string(*request.previous_crl_number) + ")");
  }
  if (request.next_update <= request.this_update) {
    return Fail("crl-next-update", "nextUpdate must be after thisUpdate");
  }
  const std::optional<internal::SigningAlgorithm> alg = internal::SigningAlgorithmFor(ca.key());
  if (!alg) return Fail("sign-failed", "the CA key type cannot sign CRLs");

  auto failed = [](const char* what) {
    return Fail("build-failed", std::string("building the CRL failed at ") + what + ": " +
                                    internal::OpenSslErrors());
  };
  internal::UniqueCrl crl(X509_CRL_new());
  if (crl == nullptr || X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) != 1) {
    return failed("version");
  }
  if (X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.cert())) != 1) {
    return failed("issuer");
  }
  internal::UniqueAsn1Time this_update = internal::ToAsn1Time(request.this_update);
  internal::UniqueAsn1Time next_update = internal::ToAsn1Time(request.next_update);
  if (this_update == nullptr || next_update == nullptr ||
      X509_CRL_set1_lastUpdate(crl.get(), this_update.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next_update.get()) != 1) {
    return failed("thisUpdate/nextUpdate");
  }

  std::set<Bytes> seen;
  for (const RevokedCertificate& entry : request.revoked) {
    if (entry.serial.empty() || entry.serial.size() > 20 || entry.serial[0] == 0) {
      return Fail("crl-serial", "a revoked serial must be 1..20 octets with no leading zero");
    }
    if (!seen.insert(entry.serial).second) {
      return Fail("crl-duplicate-serial", "a serial is listed twice");
    }
    if (!ValidReason(entry.reason)) return Fail("crl-reason", "unknown revocation reason");
    internal::UniqueRevoked revoked(X509_REVOKED_new());
    internal::UniqueBn bn(
        BN_bin2bn(entry.serial.data(), static_cast<int>(entry.serial.size()), nullptr));
    internal::UniqueAsn1Int serial(bn ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr);
    internal::UniqueAsn1Time when = internal::ToAsn1Time(entry.revoked_at);
    if (revoked == nullptr || serial == nullptr || when == nullptr ||
        X509_REVOKED_set_serialNumber(revoked.get(), serial.get()) != 1 ||
        X509_REVOKED_set_revocationDate(revoked.get(), when.get()) != 1) {
      return failed("revoked entry");
    }
    // RFC 5280 §5.3.1: reasonCode is omitted rather than "unspecified".
    if (entry.reason != RevocationReason::kUnspecified) {
      ASN1_ENUMERATED* code = ASN1_ENUMERATED_new();
      const bool ok =
          code != nullptr && ASN1_ENUMERATED_set(code, static_cast<long>(entry.reason)) == 1 &&
          X509_REVOKED_add1_ext_i2d(revoked.get(), NID_crl_reason, code, 0, X509V3_ADD_DEFAULT) ==
              1;
      ASN1_ENUMERATED_free(code);
      if (!ok) return failed("reasonCode");
    }
    if (X509_CRL_add0_revoked(crl.get(), revoked.get()) != 1) return failed("revoked entry");
    revoked.release();
  }

  // crlNumber (non-critical, RFC 5280 §5.2.3) and AKI (§5.2.1).
  internal::UniqueAsn1Int number(ASN1_INTEGER_new());
  if (number == nullptr || ASN1_INTEGER_set_uint64(number.get(), request.crl_number) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return failed("cRLNumber");
  }
  AUTHORITY_KEYID* akid = AUTHORITY_KEYID_new();
  const Bytes& key_id = ca.key_id();
  const bool aki_ok =
      akid != nullptr && (akid->keyid = ASN1_OCTET_STRING_new()) != nullptr &&
      ASN1_OCTET_STRING_set(akid->keyid, key_id.data(), static_cast<int>(key_id.size())) == 1 &&
      X509_CRL_add1_ext_i2d(crl.get(), NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT) ==
          1;
  AUTHORITY_KEYID_free(akid);
  if (!aki_ok) return failed("authorityKeyIdentifier");
  if (X509_CRL_sort(crl.get()) != 1) return failed("sort");

  ERR_clear_error();
  if (X509_CRL_sign(crl.get(), ca.key(), alg->md) <= 0) {
    return Fail("sign-failed", "signing the CRL failed: " + internal::OpenSslErrors());
  }
  Bytes der = internal::ToDer(crl.get(), i2d_X509_CRL);
  if (der.empty()) return Fail("sign-failed", "encoding the CRL failed");

  // Re-parse what will be returned and check it.
  const unsigned char* p = der.data();
  internal::UniqueCrl parsed(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
  if (parsed == nullptr || p != der.data() + der.size()) {
    return Fail("sign-verify", "the signed CRL does not parse back");
  }
  if (X509_CRL_verify(parsed.get(), X509_get0_pubkey(ca.cert())) != 1) {
    ERR_clear_error();
    return Fail("sign-verify", "the signed CRL does not verify with the CA public key");
  }
  int crit = 0;
  internal::UniqueAsn1Int parsed_number(static_cast<ASN1_INTEGER*>(
      X509_CRL_get_ext_d2i(parsed.get(), NID_crl_number, &crit, nullptr)));
  uint64_t n = 0;
  if (parsed_number == nullptr || ASN1_INTEGER_get_uint64(&n, parsed_number.get()) != 1 ||
      n != request.crl_number ||
      std::max(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(parsed.get())), 0) !=
          static_cast<int>(request.revoked.size())) {
    ERR_clear_error();
    return Fail("sign-verify", "the signed CRL does not carry what was built");
  }
  return der;
}

}  // namespace custos::service::ca
