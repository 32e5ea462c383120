// Pieces shared by the signing core's translation units (core.cc: requests
// and signing; core_lifecycle.cc: rotation, state changes, reconcile). Not a
// public header: only service/src includes it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "custos/service/ca.h"
#include "custos/service/core.h"
#include "custos/service/key_lifecycle.h"

namespace custos::service {

struct SigningCore::CachedVersion {
  KeyVersionRecord record;
  pkcs11::KeyRef ref;
  std::string spki_sha256;
};

struct SigningCore::CachedKey {
  std::string name;
  pkcs11::KeyType type = pkcs11::KeyType::kEcP256;
  std::string usage;
  std::int64_t created_at = 0;
  std::uint32_t active_version = 1;  // 0: none; derived from the states
  std::map<std::uint32_t, CachedVersion> versions;
  std::vector<VersionState> states;  // derived from `versions`, ascending

  // Recomputes `states` and `active_version` after `versions` changed.
  void Refresh() {
    states.clear();
    for (const auto& [n, v] : versions) {
      states.push_back(VersionState{n, v.record.state, v.record.expires_at});
    }
    active_version = ActiveVersion(states);
  }

  KeyRecord ToRecord() const {
    KeyRecord rec;
    rec.name = name;
    rec.key_type = std::string(pkcs11::KeyTypeName(type));
    rec.usage = usage;
    rec.active_version = active_version;
    rec.created_at = created_at;
    for (const auto& [n, v] : versions) rec.versions.push_back(v.record);
    return rec;
  }
};

struct SigningCore::Resolved {
  std::shared_ptr<const policy::Policy> policy;
  std::shared_ptr<const CachedKey> key;
  const CachedVersion* version = nullptr;
  pkcs11::SignAlgorithm algorithm = pkcs11::SignAlgorithm::kEcdsaP256Sha256;
};

// A CA with its signing key opened on the token (ca_core.cc LoadCa; also
// cms_core.cc, which issues certificates for signing keys).
struct SigningCore::LoadedCa {
  CaRecord rec;
  std::shared_ptr<const CachedKey> key;
  std::optional<ca::CertificateAuthority> ca;
};

// What a pending request shows officers, besides the common canonical
// fields (operation, requester, times, policy version, quorum).
struct SigningCore::QueueSpec {
  std::string operation;  // "sign", "create-key", ... (PendingRequestInfo.operation)
  std::string key;        // "name@version" or ""
  // Operation-specific canonical fields, in docs/quorum.md order (before "note").
  std::vector<std::pair<std::string, std::string>> fields;
  std::string summary;
  std::string payload;
};

// The result of running an approved request's operation.
struct SigningCore::Outcome {
  bool ok = false;
  std::string reason;  // why it failed
  custos::v1::Response result;
  // Store changes (same transaction as "executed") and what the caches
  // become afterwards.
  std::shared_ptr<CachedKey> key;
  std::optional<KeyRecord> key_record;
  std::optional<PolicyRecord> policy_record;
  std::shared_ptr<const policy::Policy> policy;
  // CA back-end (ca_core.cc): rows written with "executed", and the CA whose
  // CRL is re-signed afterwards.
  std::optional<CaRecord> ca_record;
  std::optional<CertificateRecord> certificate;
  std::optional<CertificateRevocation> revocation;
  std::string refresh_crl;
};

namespace core_internal {

// The longest crypto-period a request may ask for: 100 years.
inline constexpr std::uint64_t kMaxCryptoPeriodSeconds = 100ull * 365 * 24 * 3600;

std::string Hex(std::span<const std::uint8_t> bytes);
std::string Sha256Hex(std::span<const std::uint8_t> bytes);
// A value quoted for a message, with control characters escaped.
std::string Quote(std::string_view text);
void SetStatus(custos::v1::Status* s, custos::v1::StatusCode code, std::string message);
// UNAVAILABLE (retryable, with the CKR name) or INTERNAL from a token error.
void FromTokenError(const pkcs11::Error& e, std::string_view what, custos::v1::Status* s);
// "name@version".
std::string VersionKey(std::string_view name, std::uint32_t version);
policy::Operation OperationOf(KeyAction action);
// Seconds since the Unix epoch.
std::int64_t Now();
bool IsKnownUsage(std::string_view usage);
std::span<const std::uint8_t> Bytes(const std::string& s);
// Checks one signing input (digest or Ed25519 message) against the algorithm
// and limits; returns the bytes to hand to the token, or fills `error`.
bool CheckInput(pkcs11::SignAlgorithm alg, const std::string& digest, const std::string& message,
                std::size_t max_message, std::span<const std::uint8_t>* input, std::string* error);
// The usages a key can have, in the order Authorize tries them.
std::span<const std::string_view> Usages();

// The CA core's view of a policy profile, and an inventory row for a
// certificate issued under it (ca_core.cc; also used by cms_core.cc).
ca::Profile ToCaProfile(const policy::CertProfile& p);
CertificateRecord ToRecord(const std::string& ca_name, const std::string& profile,
                           const ca::IssuedCertificate& cert, std::string_view requester,
                           std::int64_t now);

}  // namespace core_internal
}  // namespace custos::service
