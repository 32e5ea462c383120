// The raw private-key operations the token offers to the OpenSSL bridge.
// Internal to pkcs11/: callers above it never see this.
#pragma once

namespace custos::pkcs11 {

enum class RawMechanism {
  // CKM_RSA_PKCS: PKCS#1 v1.5 type-1 padding applied by the token to the
  // given bytes (typically a DigestInfo); returns the raw signature.
  kRsaPkcs1,
  // CKM_RSA_X_509: raw RSA on a modulus-length input (padding done by the
  // caller, e.g. for PSS); returns modulus-length output.
  kRsaX509,
  // CKM_ECDSA on a digest; returns r||s, each half the field size.
  kEcdsa,
};

}  // namespace custos::pkcs11
