// The state store: SQLite at STATE_DIR/custos.db (WAL, synchronous=FULL).
// Holds key metadata (names, types, usages and, per version, the state,
// crypto-period, the token object's CKA_LABEL, CKA_ID and public key), the
// quorum's pending requests and officers' votes, and the policy versions.
// Never holds private key material.
//
// Schema versions (PRAGMA user_version), upgraded in place by Open():
//   0: keys, key_versions (issue 2);
//   1: key_versions gains expires_at and state_changed_at (0 = none/unknown);
//   2: pending_requests, votes, policies (quorum, issue 4);
//   3: cas, certificates, crls (CA back-end, issue 5).
//
// Key changes that belong to a pending request's state change (activating a
// version when the request executes, destroying it when it is denied) are
// written in the same transaction as that state change (StoreChange).
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

#include "custos/policy/quorum.h"
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

// One quorum request (table pending_requests). States: "pending",
// "approved" (threshold reached, not yet run), "executing", "executed",
// "denied", "expired", "invalidated", "failed".
struct PendingRecord {
  std::string id;         // "rq-" + 32 hex
  std::string requester;  // principal
  std::string operation;  // "sign", "create-key", ... (PendingRequestInfo.operation)
  std::string key;        // "name@version" or ""
  std::string canonical;  // pending_request.h encoding
  std::string digest;     // "sha256:<hex>" of canonical
  std::string payload;    // e.g. a proposed policy's text
  std::string summary;
  std::int64_t created_at = 0;
  std::int64_t expires_at = 0;
  std::string state = "pending";
  std::string state_reason;
  std::uint64_t policy_version = 0;
  std::vector<policy::QuorumRequirement> requirements;
  std::string request;  // serialized custos.v1.Request (the operation to run)
  std::string idempotency_key;
  std::string op_sha256;  // request_info::OpSha256 of `request`, for idempotency
  std::string result;     // serialized custos.v1.Response once executed
  bool audit_done = false;
};

// One officer's vote (table votes), exactly as submitted and verified.
struct VoteRecord {
  std::string request_id;
  std::string officer;
  std::string decision;  // "approve" | "deny"
  std::string statement;
  std::string signature;
  std::string reason;
  std::string time;  // the statement's "YYYY-MM-DDTHH:MM:SSZ"
  std::int64_t received_at = 0;
  std::string submitted_by;  // principal that carried it
};

// One policy version (table policies). At most one is active.
struct PolicyRecord {
  std::uint64_t version = 0;
  std::string text;
  std::string sha256;  // lowercase hex of text
  std::int64_t activated_at = 0;
  std::string request_id;  // "bootstrap", "file" or "rq-…"
  std::string proposed_by;
  std::vector<std::string> approved_by;
  bool active = false;
};

// One CA (table cas): a name bound to a key version of usage "ca" and, once
// it has one, its certificate. States: "active", "pending-certificate" (key
// and CSR made, certificate not imported yet), "revoked" (its certificate was
// revoked by its parent).
struct CaRecord {
  std::string name;
  std::string key;  // key name
  std::uint32_t key_version = 0;
  std::string parent;   // a CA's name, "" for a root, "external" for an imported certificate
  std::string subject;  // RFC 4514, as requested (pending) or as certified
  std::vector<std::uint8_t> cert_der;  // empty while pending-certificate
  // The chain above the certificate, nearest first, up to and including the
  // root (DER); empty for a root.
  std::vector<std::vector<std::uint8_t>> chain;
  std::string state = "active";
  std::int64_t created_at = 0;
};

// One issued certificate (table certificates), keyed by (ca, serial).
struct CertificateRecord {
  std::string ca;
  std::string serial;   // lowercase hex of the serial's content octets
  std::string profile;  // a profile name, or "ca:root" / "ca:intermediate"
  std::string subject;
  std::vector<std::string> sans;  // "dns:NAME", "ip:ADDR", ...
  std::string requester;
  std::int64_t not_before = 0;
  std::int64_t not_after = 0;
  std::string state = "valid";  // "valid" | "revoked" (expiry is computed on read)
  std::string reason;           // revocation reason name, "" unless revoked
  std::int64_t revoked_at = 0;
  std::vector<std::uint8_t> der;
  std::string renews;      // serial this one renews, or ""
  std::string renewed_by;  // serial that renewed this one, or ""
  std::int64_t issued_at = 0;
};

// The current CRL of a CA (table crls).
struct CrlRecord {
  std::string ca;
  std::uint64_t number = 0;
  std::vector<std::uint8_t> der;
  std::int64_t this_update = 0;
  std::int64_t next_update = 0;
};

// Filters for ListCertificates; empty/zero fields do not filter.
struct CertificateQuery {
  std::string ca;
  std::string requester;
  std::string profile;
  std::string serial;
  // not_after in [not_after_from, not_after_to] when not zero.
  std::int64_t not_after_from = 0;
  std::int64_t not_after_to = 0;
  bool with_der = true;
};

// A revocation: (ca, serial) from "valid" to "revoked".
struct CertificateRevocation {
  std::string ca;
  std::string serial;
  std::string reason;
  std::int64_t revoked_at = 0;
  // The CA whose certificate this is, if any: it becomes "revoked" too.
  std::string revokes_ca;
};

// Changes written together with a pending request's insert or state change.
struct StoreChange {
  const KeyRecord* insert_key = nullptr;  // a new key (kAlreadyExists if the name is taken)
  const KeyRecord* update_key = nullptr;  // as UpdateKey()
  // Inserted (or replaced, same version) and made the only active policy.
  const PolicyRecord* activate_policy = nullptr;
  // Inserted, or replaced when a CA of that name exists.
  const CaRecord* put_ca = nullptr;
  // As InsertCertificate (an existing (ca, serial) is an error here).
  const CertificateRecord* insert_certificate = nullptr;
  // As RevokeCertificate (a certificate not "valid" is an error here).
  const CertificateRevocation* revoke = nullptr;
};

// A conditional state change of one pending request.
struct PendingUpdate {
  std::string id;
  std::vector<std::string> from_states;  // applies only in one of these
  std::string to_state;
  std::string reason;
  const std::string* result = nullptr;  // sets result when non-null
  bool audit_done = false;              // sets audit_done = 1 when true
};

class KeyStore {
 public:
  // Opens (creating if needed) the database at `path` and its schema,
  // upgrading an older schema in place (one transaction per step). Refuses a
  // database whose schema is newer than this build knows.
  static Result<std::unique_ptr<KeyStore>> Open(const std::string& path);

  // The schema version this build writes.
  static constexpr int kSchemaVersion = 4;
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

  // --- Quorum: pending requests, votes, policies (schema 2). ---

  // Writes `change` and then inserts `rec`, in one transaction. kAlreadyExists
  // (nothing written) when change.insert_key names an existing key.
  Result<InsertResult> InsertPending(const PendingRecord& rec, const StoreChange& change = {});
  // Applies `update` if the request is in one of its from_states, together
  // with `change`, in one transaction. False (nothing written) when the
  // request does not exist or is in another state.
  Result<bool> UpdatePending(const PendingUpdate& update, const StoreChange& change = {});
  Result<std::optional<PendingRecord>> GetPending(std::string_view id);
  // Requests in `states` (every state when empty), newest first.
  Result<std::vector<PendingRecord>> ListPending(const std::vector<std::string>& states = {});
  // The request `requester` made with `idempotency_key` for the same
  // operation (op_sha256), in any state.
  Result<std::optional<PendingRecord>> FindByIdempotencyKey(std::string_view requester,
                                                            std::string_view idempotency_key,
                                                            std::string_view op_sha256);
  // kAlreadyExists when the officer already voted on the request.
  Result<InsertResult> InsertVote(const VoteRecord& vote);
  // A request's votes in arrival order.
  Result<std::vector<VoteRecord>> Votes(std::string_view request_id);

  // Inserts (or replaces) the policy and makes it the only active one.
  Result<void> ActivatePolicy(const PolicyRecord& policy);
  Result<std::optional<PolicyRecord>> ActivePolicy();

  // --- CA back-end: CAs, certificates, CRLs (schema 3). Each call is one
  // transaction, durable on return. ---

  // Inserts a CA (kAlreadyExists, nothing written, if the name is taken).
  Result<InsertResult> InsertCa(const CaRecord& ca);
  // Replaces the CA of that name (certificate import, state change); fails if
  // there is none.
  Result<void> UpdateCa(const CaRecord& ca);
  Result<std::optional<CaRecord>> GetCa(std::string_view name);
  // Every CA, ordered by name.
  Result<std::vector<CaRecord>> ListCas();

  // Inserts an issued certificate (kAlreadyExists, nothing written, if the CA
  // already has that serial). A renewal (renews set) also sets renewed_by of
  // the renewed certificate, in the same transaction.
  Result<InsertResult> InsertCertificate(const CertificateRecord& cert);
  Result<std::optional<CertificateRecord>> GetCertificate(std::string_view ca,
                                                          std::string_view serial);
  // Matching certificates, ordered by issued_at then serial.
  Result<std::vector<CertificateRecord>> ListCertificates(const CertificateQuery& query);
  // True if the CA has issued a certificate with this serial.
  Result<bool> SerialExists(std::string_view ca, std::string_view serial);
  // Marks a valid certificate revoked (and revocation.revokes_ca revoked).
  // False, nothing written, when it is not "valid" (or does not exist).
  Result<bool> RevokeCertificate(const CertificateRevocation& revocation);

  Result<std::optional<CrlRecord>> GetCrl(std::string_view ca);
  // Stores a CA's new CRL. False, nothing written, unless its number is
  // greater than the stored one's: CRL numbers only increase.
  Result<bool> PutCrl(const CrlRecord& crl);

  // --- SSH certificates (schema 4; ssh_core.cc). ---

  // One OpenSSH certificate an ssh-ca key signed (table ssh_certificates).
  struct SshCertificateRecord {
    std::string ca_key;  // "name@version"
    std::uint64_t serial = 0;
    std::string key_id;
    std::string cert_type;  // "user" or "host"
    std::vector<std::string> principals;
    std::int64_t valid_after = 0;
    std::int64_t valid_before = 0;
    std::string requester;
    std::string profile;
    std::string subject_fingerprint;  // "SHA256:..."
    std::string certificate;          // the certificate line
    std::int64_t issued_at = 0;
  };
  // Stores a certificate. False, nothing written, when the CA key (name,
  // any version) already used the serial.
  Result<bool> InsertSshCertificate(const SshCertificateRecord& cert);
  // True if CA key `ca_name` (any version) has used `serial`.
  Result<bool> SshSerialExists(std::string_view ca_name, std::uint64_t serial);
  // Certificates of CA key `ca_name` (any version; empty: all) requested by
  // `requester` (empty: anyone), ordered by issued_at then serial.
  Result<std::vector<SshCertificateRecord>> ListSshCertificates(std::string_view ca_name,
                                                                std::string_view requester);

  // --- Certificates attached to signing keys (schema 4; cms_core.cc). ---

  // The certificate of one key version (table key_certificates).
  struct KeyCertificate {
    std::string key;
    std::uint32_t version = 0;
    std::vector<std::uint8_t> cert_der;
    // The chain above it, nearest first (DER); may be empty.
    std::vector<std::vector<std::uint8_t>> chain;
    std::string source;  // "custos" (keys certify) or "imported" (keys attach-cert)
    std::int64_t attached_at = 0;
  };
  // Attaches `cert` to its key version, replacing an earlier one. With
  // `issued` (a Custos CA issued it), that inventory row is inserted in the
  // same transaction; a taken serial fails the whole change.
  Result<bool> PutKeyCertificate(const KeyCertificate& cert, const CertificateRecord* issued);
  Result<std::optional<KeyCertificate>> GetKeyCertificate(std::string_view key,
                                                          std::uint32_t version);

 private:
  struct Impl;
  explicit KeyStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace custos::service
