// The key metadata store: SQLite at STATE_DIR/custos.db (WAL,
// synchronous=FULL). Holds names, types, usages and, per version, the state,
// crypto-period, the token object's CKA_LABEL, CKA_ID and public key. Never
// holds private key material.
//
// Schema versions (PRAGMA user_version), upgraded in place by Open():
//   0: keys, key_versions (issue 2);
//   1: key_versions gains expires_at and state_changed_at (0 = none/unknown).
//
// Thread safety: a KeyStore may be used from many threads; calls are
// serialised on an internal mutex. The signing hot path does not read it: the
// core loads everything once at start and keeps its own cache.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "custos/service/result.h"

namespace custos::service {

// NIST SP 800-57 key states, stored as text.
enum class KeyState { kPreActivation, kActive, kDeactivated, kCompromised, kDestroyed };
// "pre-activation", "active", "deactivated", "compromised", "destroyed".
std::string_view KeyStateName(KeyState state);
std::optional<KeyState> ParseKeyState(std::string_view name);

struct KeyVersionRecord {
  std::uint32_t version = 1;
  KeyState state = KeyState::kActive;
  std::int64_t created_at = 0;        // seconds since the Unix epoch
  std::int64_t expires_at = 0;        // end of the crypto-period; 0: no expiry
  std::int64_t state_changed_at = 0;  // 0: unknown (set before schema 1)
  std::string token_label;
  std::vector<std::uint8_t> token_id;
  std::vector<std::uint8_t> spki_der;
};

struct KeyRecord {
  std::string name;
  std::string key_type;  // "ec-p256", ...
  std::string usage;     // "code-signing", ...
  // The version that signs when none is named; 0 when no version is active.
  std::uint32_t active_version = 1;
  std::int64_t created_at = 0;
  std::vector<KeyVersionRecord> versions;  // ascending by version
};

class KeyStore {
 public:
  // Opens (creating if needed) the database at `path` and its schema,
  // upgrading an older schema in place (one transaction per step). Refuses a
  // database whose schema is newer than this build knows.
  static Result<std::unique_ptr<KeyStore>> Open(const std::string& path);

  // The schema version this build writes.
  static constexpr int kSchemaVersion = 1;
  ~KeyStore();
  KeyStore(const KeyStore&) = delete;
  KeyStore& operator=(const KeyStore&) = delete;

  enum class InsertResult { kInserted, kAlreadyExists };
  // Inserts a key and all its versions in one transaction; durable on return.
  Result<InsertResult> InsertKey(const KeyRecord& key);

  // Writes the mutable parts of an existing key in one transaction, durable
  // on return: keys.active_version, and for every version in `key` its state,
  // state_changed_at and expires_at; versions not yet stored are inserted
  // (rotation). Fails if the key does not exist.
  Result<void> UpdateKey(const KeyRecord& key);

  // Every key with its versions, ordered by name.
  Result<std::vector<KeyRecord>> LoadAll();

 private:
  struct Impl;
  explicit KeyStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace custos::service
