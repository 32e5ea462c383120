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
// Thread safety: Handle() may be called from many threads at once. Key
// metadata is cached in memory under a reader-writer lock; signing never reads
// the store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "custos/pkcs11/token.h"
#include "custos/policy/policy.h"
#include "custos/service/handler.h"
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
  void HandleListKeys(std::string_view principal, custos::v1::Response& resp);
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
  static void FillKeyInfo(const CachedKey& key, custos::v1::KeyInfo* info);

  const std::unique_ptr<pkcs11::Token> token_;
  const policy::Policy policy_;
  const std::unique_ptr<KeyStore> store_;
  const CoreLimits limits_;
  Logger& logger_;

  mutable std::shared_mutex mu_;
  std::map<std::string, std::shared_ptr<const CachedKey>, std::less<>> keys_;  // GUARDED_BY(mu_)
  std::set<std::string, std::less<>> creating_;                                // GUARDED_BY(mu_)
};

}  // namespace custos::service
