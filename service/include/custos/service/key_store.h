// The key metadata store: SQLite at STATE_DIR/custos.db (WAL,
// synchronous=FULL). Holds names, types, usages and, per version, the token
// object's CKA_LABEL, CKA_ID and public key. Never holds private key material.
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
  std::int64_t created_at = 0;  // seconds since the Unix epoch
  std::string token_label;
  std::vector<std::uint8_t> token_id;
  std::vector<std::uint8_t> spki_der;
};

struct KeyRecord {
  std::string name;
  std::string key_type;  // "ec-p256", ...
  std::string usage;     // "code-signing", ...
  std::uint32_t active_version = 1;
  std::int64_t created_at = 0;
  std::vector<KeyVersionRecord> versions;  // ascending by version
};

class KeyStore {
 public:
  // Opens (creating if needed) the database at `path` and its schema.
  static Result<std::unique_ptr<KeyStore>> Open(const std::string& path);
  ~KeyStore();
  KeyStore(const KeyStore&) = delete;
  KeyStore& operator=(const KeyStore&) = delete;

  enum class InsertResult { kInserted, kAlreadyExists };
  // Inserts a key and all its versions in one transaction; durable on return.
  Result<InsertResult> InsertKey(const KeyRecord& key);

  // Every key with its versions, ordered by name.
  Result<std::vector<KeyRecord>> LoadAll();

 private:
  struct Impl;
  explicit KeyStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace custos::service
