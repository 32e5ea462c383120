// Quorum approvals as signed statements (brief §5, docs/quorum.md).
//
// An officer approves or denies a pending request by signing a canonical
// statement with the officer's own key. This header defines the statement's
// byte-exact encoding and its verification against an officer's registered
// public key. Pure: no files, sockets or HSM; OpenSSL does the public-key
// work. Every function here is thread-safe.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace custos::policy {

// The first line of every statement: domain separation, so that a signature
// over a statement can never be mistaken for a signature over anything else
// the officer's key might sign, and a version for the format.
inline constexpr std::string_view kApprovalStatementPrefix = "custos-approval-v1\n";

// Identifier limits. Request ids and officer ids are 1..kMaxIdLength bytes of
// [a-z0-9._-] and start with [a-z0-9].
inline constexpr std::size_t kMaxIdLength = 128;

using Sha256Digest = std::array<std::uint8_t, 32>;

enum class ApprovalDecision { kApprove, kDeny };
std::string_view ApprovalDecisionName(ApprovalDecision decision);  // "approve" | "deny"

struct ApprovalStatement {
  std::string request_id;
  Sha256Digest request_digest{};  // SHA-256 of the request's canonical encoding
  ApprovalDecision decision = ApprovalDecision::kApprove;
  std::string officer_id;
  // UTC, whole seconds, years 1970..9999.
  std::chrono::sys_seconds time{};

  friend bool operator==(const ApprovalStatement&, const ApprovalStatement&) = default;
};

// Why a statement or an approval was refused.
enum class ApprovalErrorCode {
  kMalformedStatement,  // not a canonical statement (or fields out of range)
  kUnsupportedKey,      // officer key unreadable or not ECDSA P-256 / Ed25519 / RSA >= 2048
  kBadSignature,        // signature does not verify under the officer's key
  kTimeSkew,            // statement time too far from now
  kWrongRequest,        // statement names another request id or digest
  kWrongOfficer,        // statement names another officer than expected
};
// "MALFORMED_STATEMENT", ... for messages and audit records.
std::string_view ApprovalErrorCodeName(ApprovalErrorCode code);

struct ApprovalError {
  ApprovalErrorCode code;
  std::string message;  // one line, e.g. "statement time 2024-... is 612 s from now (max 300 s)"
};

// The canonical encoding, exactly (docs/quorum.md):
//
//   custos-approval-v1\n
//   request-id: <request_id>\n
//   request-digest: sha256:<64 lowercase hex digits>\n
//   decision: approve|deny\n
//   officer: <officer_id>\n
//   time: <YYYY-MM-DDTHH:MM:SSZ>\n
//
// Requires IsValidApprovalId() for both ids and a time within 1970..9999;
// returns std::nullopt otherwise (a programming error in the caller, or a
// hostile id that must not be signed).
std::optional<std::string> CanonicalStatement(const ApprovalStatement& statement);

// Strict parse: accepts exactly the bytes CanonicalStatement() produces for
// some valid statement and nothing else (no reordering, extra or missing
// whitespace, CR, uppercase hex, missing final newline, trailing bytes).
std::variant<ApprovalStatement, ApprovalError> ParseStatement(std::string_view bytes);

// True for 1..kMaxIdLength bytes of [a-z0-9._-] starting with [a-z0-9].
bool IsValidApprovalId(std::string_view id);

// "sha256:<64 lowercase hex>" as it appears in statements and in the console.
std::string DigestToString(const Sha256Digest& digest);

// An officer's public key, parsed and checked once (validating factory).
// Accepted: ECDSA on P-256, Ed25519, RSA with a modulus of 2048..16384 bits.
// Cheap to copy (shared, immutable).
class OfficerPublicKey {
 public:
  // `key` is a PEM "PUBLIC KEY" block or a DER SubjectPublicKeyInfo.
  static std::variant<OfficerPublicKey, ApprovalError> Parse(std::string_view key);

  // "ecdsa-p256" | "ed25519" | "rsa-2048" / "rsa-3072" / ...
  const std::string& algorithm() const;
  // The DER SubjectPublicKeyInfo.
  const std::string& spki_der() const;
  // "sha256:<hex>" of spki_der(), for showing which key is registered.
  std::string Fingerprint() const;

  // Verifies `signature` over `message` with this key's scheme:
  //   ECDSA P-256: SHA-256, DER-encoded ECDSA-Sig-Value;
  //   Ed25519:     pure Ed25519 (RFC 8032), 64 bytes;
  //   RSA:         RSASSA-PSS, SHA-256, MGF1-SHA-256, salt length 32.
  bool Verify(std::string_view message, std::string_view signature) const;

 private:
  struct Impl;
  explicit OfficerPublicKey(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

// Verifies one approval: `statement_bytes` parses strictly, `signature`
// verifies under `officer_key`, and the statement time is within `max_skew`
// of `now`. Returns the parsed statement on success. Checks in that order, so
// a malformed statement is reported as such even when its signature is bad.
//
// The caller must still bind the statement to its context: pick the officer's
// key by statement.officer_id (or compare it), and call CheckApprovalFor().
std::variant<ApprovalStatement, ApprovalError> VerifyApproval(
    std::string_view statement_bytes, std::string_view signature,
    const OfficerPublicKey& officer_key, std::chrono::system_clock::time_point now,
    std::chrono::seconds max_skew);

// As above with the officer key given as PEM or DER SPKI; an unreadable or
// unsupported key yields kUnsupportedKey.
std::variant<ApprovalStatement, ApprovalError> VerifyApproval(
    std::string_view statement_bytes, std::string_view signature,
    std::string_view officer_public_key, std::chrono::system_clock::time_point now,
    std::chrono::seconds max_skew);

// kWrongRequest unless the statement names exactly `request_id` and
// `request_digest`; kWrongOfficer if `officer_id` is non-empty and differs
// from the statement's. std::nullopt when it matches.
std::optional<ApprovalError> CheckApprovalFor(const ApprovalStatement& statement,
                                              std::string_view request_id,
                                              const Sha256Digest& request_digest,
                                              std::string_view officer_id = {});

}  // namespace custos::policy
