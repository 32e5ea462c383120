// The canonical encoding of a pending (quorum) request: the bytes whose
// SHA-256 officers sign (approval.h), and which a console parses to show an
// officer what is being approved. docs/quorum.md defines it byte by byte:
//
//   custos-request-v1\n
//   id: <request id>\n
//   <name>: <value>\n        one line per field, in the order given
//   ...
//
// Field names are 1..64 bytes of [a-z0-9-]. Values are escaped: every byte
// below 0x20, 0x7f and '%' is written as %XX (uppercase hex); everything else
// (including UTF-8) is written as is. A field may repeat. The service writes
// the fields listed in docs/quorum.md ("operation", "requester", "created",
// "expires", "policy-version", "quorum", then the operation's own: "key",
// "algorithm", "digest", "file", "note", "payload-sha256", ...).
// Pure; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "custos/policy/approval.h"

namespace custos::policy {

inline constexpr std::string_view kPendingRequestPrefix = "custos-request-v1\n";
// Limits a parser enforces (hostile input).
inline constexpr std::size_t kMaxPendingRequestBytes = 256 * 1024;
inline constexpr std::size_t kMaxPendingRequestFields = 4096;

struct PendingRequestText {
  std::string id;                                           // IsValidApprovalId()
  std::vector<std::pair<std::string, std::string>> fields;  // unescaped values

  // The first value of `name`, if present.
  std::optional<std::string> Get(std::string_view name) const;
  // Every value of `name`, in order.
  std::vector<std::string> GetAll(std::string_view name) const;

  friend bool operator==(const PendingRequestText&, const PendingRequestText&) = default;
};

// std::nullopt for an invalid id or field name, or more than the limits.
std::optional<std::string> EncodePendingRequest(const PendingRequestText& request);

// Strict: accepts exactly what EncodePendingRequest() produces, nothing else;
// the error is one line ("line 3: field name \"Key\" is not [a-z0-9-]").
std::variant<PendingRequestText, std::string> ParsePendingRequest(std::string_view bytes);

// SHA-256 of the bytes (the "request digest" of approval statements).
Sha256Digest RequestDigest(std::string_view canonical_bytes);

// A new request id: "rq-" and 32 lowercase hex digits from 128 CSPRNG bits
// (RAND_bytes). std::nullopt only if the CSPRNG fails.
std::optional<std::string> NewRequestId();

}  // namespace custos::policy
