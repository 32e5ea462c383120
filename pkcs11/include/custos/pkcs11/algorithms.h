// Key types and signing algorithms Custos knows, with their canonical names
// (the names on the wire, in policy files and on the command line).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

namespace custos::pkcs11 {

enum class KeyType { kEcP256, kEcP384, kRsa2048, kRsa3072, kRsa4096, kEd25519 };

enum class SignAlgorithm {
  kEcdsaP256Sha256,
  kEcdsaP384Sha384,
  kRsaPkcs1Sha256,
  kRsaPkcs1Sha384,
  kRsaPkcs1Sha512,
  kRsaPssSha256,
  kRsaPssSha384,
  kRsaPssSha512,
  kEd25519,
};

enum class HashAlgorithm { kNone, kSha256, kSha384, kSha512 };

// "ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519".
std::string_view KeyTypeName(KeyType type);
std::optional<KeyType> ParseKeyType(std::string_view name);

// "ecdsa-p256-sha256", ..., "rsa-pss-sha512", "ed25519".
std::string_view SignAlgorithmName(SignAlgorithm algorithm);
std::optional<SignAlgorithm> ParseSignAlgorithm(std::string_view name);

HashAlgorithm HashOf(SignAlgorithm algorithm);
// "sha256", ...; "" for kNone.
std::string_view HashName(HashAlgorithm hash);
// Digest length in bytes; 0 for kNone (Ed25519 signs the message).
std::size_t DigestLength(HashAlgorithm hash);

// Whether a key of this type can sign with this algorithm.
bool AlgorithmFitsKey(SignAlgorithm algorithm, KeyType type);
// Every algorithm a key of this type can sign with, in canonical order.
std::vector<SignAlgorithm> AlgorithmsFor(KeyType type);

}  // namespace custos::pkcs11
