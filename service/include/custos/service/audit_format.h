// The audit log's on-disk format: one JSON object per line, hash-chained.
// docs/audit.md defines it byte by byte; this header is the one
// implementation of that definition, shared by custosd (which writes the log)
// and custos-audit (which verifies and exports it).
//
// A line is the record's canonical body C with the hash spliced in before the
// closing brace:
//   C    = {"seq":N,"prev":"<64 hex>",...,"approvals":[]}
//   line = C without its last byte + ,"hash":"<64 hex>"} + "\n"
//   hash = SHA-256(prev as 32 raw bytes || C)
// The first record has seq 1 and prev = 32 zero bytes.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "custos/service/result.h"

namespace custos::service::audit {

using Hash = std::array<std::uint8_t, 32>;
inline constexpr Hash kZeroHash{};

// What a record says about one request (kind "request" or "intent") or about
// the log itself (kind "event").
struct RequestFields {
  std::string kind = "request";
  std::string principal;
  std::string peer;
  std::uint64_t request_id = 0;
  std::string trace_id;
  std::string op;         // oneof field name of the request ("sign"), "" if none
  std::string key;        // "name@version", "name", a profile, or ""
  std::string op_sha256;  // lowercase hex, or "" when there was no operation
  std::string outcome;    // status code name ("OK", "PERMISSION_DENIED", ...)
  std::string error;      // status message when not OK
  // Quorum (docs/audit.md, docs/quorum.md): the pending request this record
  // is about ("rq-…"), emitted just before "approvals" only when non-empty.
  std::string quorum_request;
  // Approvals this record carries, one string per vote:
  //   "<officer> <approve|deny> <statement time> sha256:<request digest hex> <signature hex>"
  // enough to rebuild the signed statement (with quorum_request) and verify it.
  std::vector<std::string> approvals;
};

// One entry of RequestFields::approvals, taken apart. Its text form is five
// fields separated by one space (docs/audit.md, "Approvals"):
//   <officer> <approve|deny> <YYYY-MM-DDTHH:MM:SSZ> sha256:<64 hex> <signature hex>
struct ApprovalEntry {
  std::string officer;   // the statement's officer id
  std::string decision;  // "approve" | "deny"
  std::string time;      // the statement's time, as signed
  Hash request_digest{};
  std::vector<std::uint8_t> signature;
};
std::string FormatApproval(const ApprovalEntry& entry);
// Checks the shape only (five fields, decision, "sha256:" + 64 lowercase hex,
// non-empty lowercase hex signature); the statement and signature are checked
// by audit_verify.h. std::nullopt when the shape is wrong.
std::optional<ApprovalEntry> ParseApproval(std::string_view text);

// A checkpoint: the daemon's signature over (covers, covers_hash, time).
struct CheckpointFields {
  std::uint64_t covers = 0;
  Hash covers_hash{};
  std::string key;        // "audit@1"
  std::string algorithm;  // "ecdsa-p256-sha256"
  std::vector<std::uint8_t> signature;
};

// Canonical bodies (C above).
std::string RequestBody(std::uint64_t seq, const Hash& prev, std::string_view time,
                        const RequestFields& f);
std::string CheckpointBody(std::uint64_t seq, const Hash& prev, std::string_view time,
                           const CheckpointFields& f);

// SHA-256(prev || body).
Hash ChainHash(const Hash& prev, std::string_view body);
// body + hash -> the line, with its trailing "\n".
std::string SealLine(std::string_view body, const Hash& hash);

// The bytes a checkpoint signature covers:
//   "custos-audit-checkpoint-v1\n" covers "\n" hex(covers_hash) "\n" time "\n"
std::string CheckpointStatement(std::uint64_t covers, const Hash& covers_hash,
                                std::string_view time);

// Current UTC time as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (microseconds).
std::string UtcMicros();

std::string Hex(std::span<const std::uint8_t> bytes);
std::optional<Hash> ParseHash(std::string_view hex);
std::optional<std::vector<std::uint8_t>> ParseHex(std::string_view hex);

// A JSON value of the subset the log uses.
struct JsonValue {
  enum class Type { kString, kNumber, kArray } type = Type::kString;
  std::string text;                // string contents (unescaped) or number digits
  std::vector<std::string> array;  // arrays hold strings only
};

// One line taken apart (without its "\n"). `body` is C, `hash` the stored
// hash; fields keep their order of appearance.
struct ParsedLine {
  std::string body;
  Hash hash{};
  std::vector<std::pair<std::string, JsonValue>> fields;

  const JsonValue* Get(std::string_view name) const;
  std::optional<std::uint64_t> Number(std::string_view name) const;
  std::optional<std::string> String(std::string_view name) const;
};

// Splits the hash off, parses the flat JSON object and checks that it has
// "seq" (number), "prev" (hash), "time" and "kind" (strings). The Error says
// what is wrong with the line.
Result<ParsedLine> ParseLine(std::string_view line);

}  // namespace custos::service::audit
