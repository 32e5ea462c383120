#include "custos/pkcs11/algorithms.h"

#include <array>
#include <utility>

namespace custos::pkcs11 {
namespace {

constexpr std::array<std::pair<KeyType, std::string_view>, 6> kKeyTypeNames = {{
    {KeyType::kEcP256, "ec-p256"},
    {KeyType::kEcP384, "ec-p384"},
    {KeyType::kRsa2048, "rsa-2048"},
    {KeyType::kRsa3072, "rsa-3072"},
    {KeyType::kRsa4096, "rsa-4096"},
    {KeyType::kEd25519, "ed25519"},
}};

constexpr std::array<std::pair<SignAlgorithm, std::string_view>, 9> kAlgorithmNames = {{
    {SignAlgorithm::kEcdsaP256Sha256, "ecdsa-p256-sha256"},
    {SignAlgorithm::kEcdsaP384Sha384, "ecdsa-p384-sha384"},
    {SignAlgorithm::kRsaPkcs1Sha256, "rsa-pkcs1-sha256"},
    {SignAlgorithm::kRsaPkcs1Sha384, "rsa-pkcs1-sha384"},
    {SignAlgorithm::kRsaPkcs1Sha512, "rsa-pkcs1-sha512"},
    {SignAlgorithm::kRsaPssSha256, "rsa-pss-sha256"},
    {SignAlgorithm::kRsaPssSha384, "rsa-pss-sha384"},
    {SignAlgorithm::kRsaPssSha512, "rsa-pss-sha512"},
    {SignAlgorithm::kEd25519, "ed25519"},
}};

bool IsRsa(KeyType type) {
  return type == KeyType::kRsa2048 || type == KeyType::kRsa3072 || type == KeyType::kRsa4096;
}

}  // namespace

std::string_view KeyTypeName(KeyType type) {
  for (const auto& [value, name] : kKeyTypeNames) {
    if (value == type) return name;
  }
  return "unknown";
}

std::optional<KeyType> ParseKeyType(std::string_view name) {
  for (const auto& [value, candidate] : kKeyTypeNames) {
    if (candidate == name) return value;
  }
  return std::nullopt;
}

std::string_view SignAlgorithmName(SignAlgorithm algorithm) {
  for (const auto& [value, name] : kAlgorithmNames) {
    if (value == algorithm) return name;
  }
  return "unknown";
}

std::optional<SignAlgorithm> ParseSignAlgorithm(std::string_view name) {
  for (const auto& [value, candidate] : kAlgorithmNames) {
    if (candidate == name) return value;
  }
  return std::nullopt;
}

HashAlgorithm HashOf(SignAlgorithm algorithm) {
  switch (algorithm) {
    case SignAlgorithm::kEcdsaP256Sha256:
    case SignAlgorithm::kRsaPkcs1Sha256:
    case SignAlgorithm::kRsaPssSha256:
      return HashAlgorithm::kSha256;
    case SignAlgorithm::kEcdsaP384Sha384:
    case SignAlgorithm::kRsaPkcs1Sha384:
    case SignAlgorithm::kRsaPssSha384:
      return HashAlgorithm::kSha384;
    case SignAlgorithm::kRsaPkcs1Sha512:
    case SignAlgorithm::kRsaPssSha512:
      return HashAlgorithm::kSha512;
    case SignAlgorithm::kEd25519:
      return HashAlgorithm::kNone;
  }
  return HashAlgorithm::kNone;
}

std::string_view HashName(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha256:
      return "sha256";
    case HashAlgorithm::kSha384:
      return "sha384";
    case HashAlgorithm::kSha512:
      return "sha512";
    case HashAlgorithm::kNone:
      return "";
  }
  return "";
}

std::size_t DigestLength(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha256:
      return 32;
    case HashAlgorithm::kSha384:
      return 48;
    case HashAlgorithm::kSha512:
      return 64;
    case HashAlgorithm::kNone:
      return 0;
  }
  return 0;
}

bool AlgorithmFitsKey(SignAlgorithm algorithm, KeyType type) {
  switch (algorithm) {
    case SignAlgorithm::kEcdsaP256Sha256:
      return type == KeyType::kEcP256;
    case SignAlgorithm::kEcdsaP384Sha384:
      return type == KeyType::kEcP384;
    case SignAlgorithm::kRsaPkcs1Sha256:
    case SignAlgorithm::kRsaPkcs1Sha384:
    case SignAlgorithm::kRsaPkcs1Sha512:
    case SignAlgorithm::kRsaPssSha256:
    case SignAlgorithm::kRsaPssSha384:
    case SignAlgorithm::kRsaPssSha512:
      return IsRsa(type);
    case SignAlgorithm::kEd25519:
      return type == KeyType::kEd25519;
  }
  return false;
}

std::vector<SignAlgorithm> AlgorithmsFor(KeyType type) {
  std::vector<SignAlgorithm> out;
  for (const auto& [algorithm, name] : kAlgorithmNames) {
    if (AlgorithmFitsKey(algorithm, type)) out.push_back(algorithm);
  }
  return out;
}

}  // namespace custos::pkcs11
