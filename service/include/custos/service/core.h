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
// Quorum (docs/quorum.md): after the policy check, an operation a quorum rule
// covers (policy::QuorumPolicy::QuorumFor) becomes a pending request in the
// store and is answered PENDING_APPROVAL with Response.pending. create_key and
// rotate_key generate the new version now, in state pre-activation; the rest
// change nothing until executed. Officers' votes (submit_approval) are
// verified and counted; when every rule has its threshold the core executes
// the stored operation exactly once (intent audit record, state executing,
// then one store transaction: executed + result + key change, then the
// outcome's audit record), also across a restart (ResumeQuorum). A denial,
// expiry or invalidation (policy changed) destroys a pre-activation version
// made for the request. The policy itself is versioned in the store and
// replaced through propose_policy.
//
// Thread safety: Handle() may be called from many threads at once. Key
// metadata and the active policy are cached in memory under a reader-writer
// lock; signing never reads the store. Lifecycle changes are serialised among
// themselves; a signature racing a state change is ordered before it. Quorum
// operations (pending requests, votes, executions, policy changes) are
// serialised on their own mutex, taken before the lifecycle one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "custos/pkcs11/token.h"
#include "custos/policy/policy.h"
#include "custos/policy/quorum.h"
#include "custos/service/audit_sink.h"
#include "custos/service/handler.h"
#include "custos/service/key_lifecycle.h"
#include "custos/service/key_store.h"
#include "custos/service/log.h"
#include "custos/service/result.h"

namespace custos::service {

struct CoreLimits {
  std::size_t max_message_bytes = 65536;  // Ed25519 messages
  std::size_t max_batch_items = 1024;
  // How often ResumeQuorum()'s sweeper expires pending requests and retries
  // executions that could not finish (audit log down); 0: no sweeper.
  std::chrono::seconds quorum_sweep_interval{30};
  // Seconds since the Unix epoch for quorum times (creation, expiry, statement
  // skew); unset: the system clock. Tests move it.
  std::function<std::int64_t()> clock;
};

class SigningCore final : public RequestHandler {
 public:
  // Loads every key's metadata from `store` into memory and checks that the
  // token still holds each active version (a missing one is logged, not
  // fatal: signing with it reports the token's error). `logger` must outlive
  // the core.
  //
  // `policy` is the configured policy file, parsed, and `policy_text` its
  // bytes. The store's active policy wins over it (docs/quorum.md): at first
  // start the file is imported ("bootstrap"); later, a file that differs is
  // ignored with a warning when the active policy has a POLICY_CHANGE quorum
  // rule, replaces it when its version is higher ("file"), and is a start
  // error otherwise.
  static Result<std::unique_ptr<SigningCore>> Create(std::unique_ptr<pkcs11::Token> token,
                                                     policy::Policy policy, std::string policy_text,
                                                     std::unique_ptr<KeyStore> store,
                                                     CoreLimits limits, Logger& logger);
  ~SigningCore() override;

  // Where the core writes the audit records of quorum executions and policy
  // imports. Call before ResumeQuorum(); `sink` must outlive the core (or be
  // reset to null first).
  void SetAuditSink(AuditSink* sink);

  // Once at start, after the audit log is open: records the policy import (if
  // any), invalidates pending requests judged under another policy version,
  // expires overdue ones, finishes executions a restart interrupted (exactly
  // once: every execution is idempotent) and writes missing outcome records,
  // then starts the sweeper (CoreLimits::quorum_sweep_interval).
  Result<void> ResumeQuorum();

  // Expires overdue pending requests and retries stuck executions. The
  // sweeper calls it; tests may too. Thread-safe.
  void SweepQuorum();

  // The active policy's version.
  std::uint64_t policy_version() const;

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

  struct QueueSpec;
  struct Outcome;

  SigningCore(std::unique_ptr<pkcs11::Token> token, policy::Policy policy,
              std::unique_ptr<KeyStore> store, CoreLimits limits, Logger& logger);

  void HandleSign(std::string_view principal, const custos::v1::Request& request,
                  custos::v1::Response& resp);
  void HandleSignBatch(std::string_view principal, const custos::v1::Request& request,
                       custos::v1::Response& resp);
  void HandleCreateKey(std::string_view principal, const custos::v1::Request& request,
                       custos::v1::Response& resp);
  void HandleListKeys(std::string_view principal, const custos::v1::ListKeysRequest& req,
                      custos::v1::Response& resp);
  void HandleRotateKey(std::string_view principal, const custos::v1::Request& request,
                       custos::v1::Response& resp);
  void HandleKeyAction(std::string_view principal, KeyAction action,
                       const custos::v1::Request& request, custos::v1::Response& resp);
  // Checks `action` on version `version` of `current` at `now` and returns
  // the key after it (token objects destroyed first for kDestroy). A version
  // already in the action's target state is returned unchanged (idempotent
  // re-execution) when `idempotent`.
  bool PrepareKeyAction(KeyAction action, const CachedKey& current, std::uint32_t version,
                        std::int64_t now, bool idempotent, std::shared_ptr<CachedKey>* updated,
                        custos::v1::Status* status);

  // CA back-end (ca_core.cc): requests 50-59.
  struct LoadedCa;
  // SSH certificates and SSHSIG (ssh_core.cc).
  void HandleSsh(std::string_view principal, const custos::v1::Request& request,
                 custos::v1::Response& resp);
  // CMS signatures and certificates attached to keys (cms_core.cc).
  void HandleCms(std::string_view principal, const custos::v1::Request& request,
                 custos::v1::Response& resp);
  void HandleSignCms(std::string_view principal, const custos::v1::Request& request,
                     custos::v1::Response& resp);
  void HandleCertifyKey(std::string_view principal, const custos::v1::Request& request,
                        custos::v1::Response& resp);
  void HandleAttachKeyCert(std::string_view principal, const custos::v1::Request& request,
                           custos::v1::Response& resp);
  void HandleCa(std::string_view principal, const custos::v1::Request& request,
                custos::v1::Response& resp);
  void HandleCreateCa(std::string_view principal, const custos::v1::Request& request,
                      custos::v1::Response& resp);
  void HandleCaCsr(std::string_view principal, const custos::v1::CaCsrRequest& req,
                   custos::v1::Response& resp);
  void HandleImportCaCert(std::string_view principal, const custos::v1::ImportCaCertRequest& req,
                          custos::v1::Response& resp);
  void HandleListCas(std::string_view principal, custos::v1::Response& resp);
  void HandleGetCa(std::string_view principal, const custos::v1::GetCaRequest& req,
                   custos::v1::Response& resp);
  void HandleIssueCertificate(std::string_view principal, const custos::v1::Request& request,
                              custos::v1::Response& resp);
  void HandleListCertificates(std::string_view principal,
                              const custos::v1::ListCertificatesRequest& req,
                              custos::v1::Response& resp);
  void HandleGetCertificate(std::string_view principal,
                            const custos::v1::GetCertificateRequest& req,
                            custos::v1::Response& resp);
  void HandleRevokeCertificate(std::string_view principal, const custos::v1::Request& request,
                               custos::v1::Response& resp);
  void HandleGetCrl(std::string_view principal, const custos::v1::GetCrlRequest& req,
                    custos::v1::Response& resp);
  // Loads CA `name` with its signing key (from the token). `need_active`:
  // refuses a CA that is not "active". False (status filled) when refused.
  bool LoadCa(std::string_view name, bool need_active, LoadedCa* out,
              custos::v1::Status* status) const;
  // Runs an approved issue-certificate, create-ca or revoke-certificate.
  void RunCaOperation(const PendingRecord& rec, const custos::v1::Request& request, Outcome* out);
  // Re-signs CA `ca`'s CRL when `force`, when it has none, or when its
  // nextUpdate is within the policy's crl_resign_before. The new CRL is in
  // the store before this returns. Serialised on crl_mu_.
  bool RefreshCrl(const std::string& ca, bool force, std::string* error);

 public:
  // Re-signs every active CA's CRL that is due (RefreshCrl without force).
  // The sweeper calls it after SweepQuorum(); tests may too. Thread-safe.
  void SweepCrls();

 private:
  // Quorum (quorum_core.cc).
  void HandleListRequests(std::string_view principal, const custos::v1::ListRequestsRequest& req,
                          custos::v1::Response& resp);
  void HandleGetRequest(std::string_view principal, const custos::v1::GetRequestRequest& req,
                        custos::v1::Response& resp);
  void HandleSubmitApproval(std::string_view principal,
                            const custos::v1::SubmitApprovalRequest& req,
                            custos::v1::Response& resp);
  void HandleProposePolicy(std::string_view principal, const custos::v1::Request& request,
                           custos::v1::Response& resp);
  void HandleGetPolicy(std::string_view principal, custos::v1::Response& resp);
  // The active policy (shared, immutable).
  std::shared_ptr<const policy::Policy> CurrentPolicy() const;
  std::int64_t QuorumNow() const;
  // The quorum rules covering `query` under `policy`; when some do, locks
  // `quorum_lock` and checks that the policy did not change meanwhile
  // (UNAVAILABLE, retryable, if it did). False when refused.
  bool QuorumCheck(const policy::Policy& policy, const policy::QuorumQuery& query,
                   std::unique_lock<std::mutex>& quorum_lock,
                   std::vector<policy::QuorumRequirement>* requirements,
                   custos::v1::Status* status);
  // With an idempotency key that names an earlier request of the same
  // principal and operation: answers with it and returns true.
  bool AnswerIdempotent(std::string_view principal, const custos::v1::Request& request,
                        custos::v1::Response& resp);
  // Stores a new pending request (with `change`, in one transaction) and
  // answers PENDING_APPROVAL. False (status filled) when nothing was stored.
  bool Enqueue(std::string_view principal, const custos::v1::Request& request,
               std::uint64_t policy_version, std::vector<policy::QuorumRequirement> requirements,
               QueueSpec spec, const StoreChange& change, custos::v1::Response& resp);
  // Counts the votes of `rec` under `policy`.
  policy::Tally CountVotes(const PendingRecord& rec, const std::vector<VoteRecord>& votes,
                           const policy::Policy& policy) const;
  void FillInfo(const PendingRecord& rec, const std::vector<VoteRecord>& votes,
                std::string_view principal, bool full, custos::v1::PendingRequestInfo* info) const;
  bool MayRead(std::string_view principal, const PendingRecord& rec,
               const policy::Policy& policy) const;
  // The rest need quorum_mu_ held.
  // Moves `rec` from one of `from` to a final failure state (denied, expired,
  // invalidated, failed), destroying a pre-activation version made for it.
  void Abandon(const PendingRecord& rec, std::vector<std::string> from, const std::string& state,
               const std::string& reason);
  // Runs an approved (or interrupted, executing) request; see core.h top.
  void Execute(const std::string& id);
  Outcome RunOperation(const PendingRecord& rec);
  // Writes the outcome record of an executed/failed request and marks it done.
  void AuditOutcome(const PendingRecord& rec);
  audit::RequestFields RecordOf(const PendingRecord& rec, std::string_view kind) const;
  void InvalidateOthers(std::uint64_t new_version, const std::string& except_id);
  void ExpireOverdue();
  void SweeperLoop();
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
  bool Authorize(std::string_view principal, const policy::Policy& policy, policy::Operation op,
                 std::string_view name, const CachedKey* key, std::string_view algorithm,
                 custos::v1::Status* status) const;
  std::shared_ptr<const CachedKey> Find(std::string_view name) const;
  // As Find(), also taking the active policy under the same lock.
  std::shared_ptr<const CachedKey> Find(std::string_view name,
                                        std::shared_ptr<const policy::Policy>* policy) const;
  static void FillKeyInfo(const CachedKey& key, custos::v1::KeyInfo* info,
                          const ReconcileReport* check = nullptr);

  const std::unique_ptr<pkcs11::Token> token_;
  const std::unique_ptr<KeyStore> store_;
  const CoreLimits limits_;
  Logger& logger_;
  AuditSink* audit_sink_ = nullptr;
  // Audit records of start-up policy imports, written by ResumeQuorum().
  std::vector<audit::RequestFields> startup_records_;

  // Serialises quorum operations (taken before lifecycle_mu_ and mu_).
  std::mutex quorum_mu_;

  mutable std::shared_mutex mu_;
  std::shared_ptr<const policy::Policy> policy_;                               // GUARDED_BY(mu_)
  std::map<std::string, std::shared_ptr<const CachedKey>, std::less<>> keys_;  // GUARDED_BY(mu_)
  std::set<std::string, std::less<>> creating_;                                // GUARDED_BY(mu_)
  // Serialises rotate and state changes (each reads, changes and writes one key).
  std::mutex lifecycle_mu_;

  // Serialises CRL signing, so CRL numbers strictly increase.
  std::mutex crl_mu_;

  // The sweeper thread (ResumeQuorum) and its stop signal.
  std::mutex sweeper_mu_;
  std::condition_variable sweeper_cv_;
  bool stopping_ = false;  // GUARDED_BY(sweeper_mu_)
  std::thread sweeper_;
};

}  // namespace custos::service
