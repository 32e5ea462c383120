// DER and key-format helpers for the HSM layer, all built on OpenSSL:
// SubjectPublicKeyInfo from PKCS#11 public-key attributes, ECDSA r||s to
// ECDSA-Sig-Value, PKCS#1 v1.5 DigestInfo. Internal to pkcs11/.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "custos/pkcs11/algorithms.h"
#include "custos/pkcs11/result.h"

namespace custos::pkcs11::internal {

// DER of the CKA_EC_PARAMS we generate with (namedCurve OIDs, RFC 5480;
// id-Ed25519, RFC 8410).
std::span<const std::uint8_t> EcParamsFor(KeyType type);
// The key type named by a CKA_EC_PARAMS value (also accepts the
// PrintableString "edwards25519" some modules use); nullopt if unknown.
std::optional<KeyType> KeyTypeFromEcParams(std::span<const std::uint8_t> params);
// The RSA key type with this modulus size, nullopt for other sizes.
std::optional<KeyType> RsaKeyTypeFromBits(std::size_t bits);

// SPKI DER for an EC (P-256/P-384) or Ed25519 public key, from CKA_EC_POINT
// (a DER OCTET STRING around the point, or the bare point).
Result<std::vector<std::uint8_t>> SpkiFromEcPoint(KeyType type,
                                                  std::span<const std::uint8_t> ec_point);
// SPKI DER for an RSA public key, from CKA_MODULUS and CKA_PUBLIC_EXPONENT.
Result<std::vector<std::uint8_t>> SpkiFromRsa(std::span<const std::uint8_t> modulus,
                                              std::span<const std::uint8_t> exponent);
// The key type of an SPKI (as far as Custos knows it), nullopt otherwise.
std::optional<KeyType> KeyTypeOfSpki(std::span<const std::uint8_t> spki_der);

// ECDSA r||s (two equal halves) -> DER ECDSA-Sig-Value (RFC 3279 2.2.3).
Result<std::vector<std::uint8_t>> EcdsaRawToDer(std::span<const std::uint8_t> raw);

// The DER DigestInfo prefix for the hash (RFC 8017 section 9.2, note 1);
// DigestInfo = prefix || digest.
std::span<const std::uint8_t> DigestInfoPrefix(HashAlgorithm hash);

// Signature size for a key type (ECDSA: r||s; RSA: modulus bytes).
std::size_t SignatureSize(KeyType type);

}  // namespace custos::pkcs11::internal
