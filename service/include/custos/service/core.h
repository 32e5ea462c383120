// SigningCore: the secret-holding half of custosd. It owns the policy, the
// token and the key store, and is the only code that performs private-key
// operations. One entry point, Handle(), takes an authenticated principal and
// a decoded Request and returns the Response.
//
// Order of checks for every key operation (brief §4, §12):
//   1. shape: key reference syntax, algorithm / key type / usage names;
//   2. policy, before any HSM call, by key name (see "Probing" below);
//   3. key and version lookup, algorithm fits key, digest length or message
//      size;
//   4. the token.
//
// Probing: an unauthorised principal must not learn which key names exist.
// A principal that policy refuses the operation on a name under every usage
// gets the same PERMISSION_DENIED (rule and reason computed for usage
// "code-signing") whether or not the key exists. Only a principal that some
// usage would allow on that name learns NOT_FOUND for a missing key, and the
// real refusal for an existing key of another usage.
//
// Lifecycle (key_lifecycle.h): rotate and the state changes are checked by
// policy like any key operation (ROTATE with the key type as algorithm;
// DISABLE, ENABLE, DESTROY, MARK_COMPROMISED without one), then by the state
// machine (FAILED_PRECONDITION naming the state), then written to the store
// (durable) before the in-memory copy changes. Destroy removes the token
// objects first; objects already gone count as destroyed.
//
// Reconcile: at start (logged) and for ListKeysRequest.check (returned), the
// core compares the store with the token's private key objects and reports
// versions missing from the token and token objects no version names. It
// never deletes anything on its own.
//
// Thread safety: Handle() may be called from many threads at once. Key
// metadata is cached in memory under a reader-writer lock; signing never reads
// the store. Lifecycle changes are serialised among themselves; a signature
// racing a state change is ordered before it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "custos/pkcs11/token.h"
#include "custos/policy/policy.h"
#include "custos/service/handler.h"
#include "custos/service/key_lifecycle.h"
#include "custos/service/key_store.h"
#include "custos/service/log.h"
#include "custos/service/result.h"

namespace custos::service {

struct CoreLimits {
  std::size_t max_message_bytes = 65536;  // Ed25519 messages
  std::size_t max_batch_items = 1024;
};

class SigningCore final : public RequestHandler {
 public:
  // Loads every key's metadata from `store` into memory and checks that the
  // token still holds each active version (a missing one is logged, not
  // fatal: signing with it reports the token's error). `logger` must outlive
  // the core.
  static Result<std::unique_ptr<SigningCore>> Create(std::unique_ptr<pkcs11::Token> token,
                                                     policy::Policy policy,
                                                     std::unique_ptr<KeyStore> store,
                                                     CoreLimits limits, Logger& logger);
  ~SigningCore() override;

  custos::v1::Response Handle(std::string_view principal, std::string_view peer,
                              const custos::v1::Request& request) override;

  // The number of keys known (for start-up logs).
  std::size_t key_count() const;

  // custosd's own signature for audit checkpoints (audit_log.h): signs the
  // SHA-256 `digest` with ecdsa-p256-sha256 using the active version of key
  // `name`, which must be an ec-p256 key of usage "audit". No policy check:
  // the daemon itself asks. On success *key_version is "name@N".
  Result<std::vector<std::uint8_t>> SignAuditDigest(std::string_view name,
                                                    std::span<const std::uint8_t> digest,
                                                    std::string* key_version);

  // The result of comparing the store with the token.
  struct ReconcileReport {
    bool ok = false;
    std::string error;  // why the token could not be listed, when !ok
    // Per "name@version": "present", "missing", "public-key-differs",
    // "public-key-unreadable", "absent" (destroyed) or "present-after-destroy".
    std::map<std::string, std::string, std::less<>> versions;
    std::vector<custos::v1::TokenObjectInfo> unknown;  // objects no version names
    std::size_t problems = 0;  // versions not "present"/"absent", plus unknown objects
  };
  // Lists the token's objects now. Thread-safe.
  ReconcileReport Reconcile() const;

 private:
  struct CachedVersion;
  struct CachedKey;
  struct Resolved;

  SigningCore(std::unique_ptr<pkcs11::Token> token, policy::Policy policy,
              std::unique_ptr<KeyStore> store, CoreLimits limits, Logger& logger);

  void HandleSign(std::string_view principal, const custos::v1::SignRequest& req,
                  custos::v1::Response& resp);
  void HandleSignBatch(std::string_view principal, const custos::v1::SignBatchRequest& req,
                       custos::v1::Response& resp);
  void HandleCreateKey(std::string_view principal, const custos::v1::CreateKeyRequest& req,
                       custos::v1::Response& resp);
  void HandleListKeys(std::string_view principal, const custos::v1::ListKeysRequest& req,
                      custos::v1::Response& resp);
  void HandleRotateKey(std::string_view principal, const custos::v1::RotateKeyRequest& req,
                       custos::v1::Response& resp);
  void HandleKeyAction(std::string_view principal, KeyAction action,
                       const custos::v1::KeyVersionRequest& req, custos::v1::Response& resp);
  void LogReconcile(const ReconcileReport& report) const;
  // Writes `key` to the store, then makes it the cached copy.
  bool Commit(std::shared_ptr<CachedKey> key, custos::v1::Status* status);
  void HandleGetKey(std::string_view principal, const custos::v1::GetKeyRequest& req,
                    custos::v1::Response& resp);
  void HandleGetPublicKey(std::string_view principal, const custos::v1::GetPublicKeyRequest& req,
                          custos::v1::Response& resp);

  // Steps 1-3 of the check order for an operation on one key version. On
  // refusal fills `status` and returns false.
  bool Resolve(std::string_view principal, policy::Operation op, std::string_view key_text,
               std::string_view algorithm_text, Resolved* out, custos::v1::Status* status) const;
  // Policy for an operation on `name`; `key` is null when no such key exists.
  bool Authorize(std::string_view principal, policy::Operation op, std::string_view name,
                 const CachedKey* key, std::string_view algorithm,
                 custos::v1::Status* status) const;
  std::shared_ptr<const CachedKey> Find(std::string_view name) const;
  static void FillKeyInfo(const CachedKey& key, custos::v1::KeyInfo* info,
                          const ReconcileReport* check = nullptr);

  const std::unique_ptr<pkcs11::Token> token_;
  const policy::Policy policy_;
  const std::unique_ptr<KeyStore> store_;
  const CoreLimits limits_;
  Logger& logger_;

  mutable std::shared_mutex mu_;
  std::map<std::string, std::shared_ptr<const CachedKey>, std::less<>> keys_;  // GUARDED_BY(mu_)
  std::set<std::string, std::less<>> creating_;                                // GUARDED_BY(mu_)
  // Serialises rotate and state changes (each reads, changes and writes one key).
  std::mutex lifecycle_mu_;
};

}  // namespace custos::service
