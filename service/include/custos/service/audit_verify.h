// The audit log verifier behind `custos-audit verify` (docs/audit.md,
// "Verifying"). It needs only the log, the audit public key and, to detect
// truncation, a pinned checkpoint.
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <istream>
#include <optional>
#include <string>

namespace custos::service::audit {

struct VerifyReport {
  bool ok = false;
  std::uint64_t lines = 0;  // lines read
  std::uint64_t last_sequence = 0;
  std::uint64_t checkpoints = 0;      // checkpoints whose signature verified
  std::uint64_t last_checkpoint = 0;  // its own sequence number
  std::uint64_t last_checkpoint_covers = 0;
  std::uint64_t unsigned_tail = 0;  // records after the last checkpoint
  // The first problem: line number (1-based) and the sequence number the
  // verifier expected there; `problem` is one line for a person.
  std::uint64_t bad_line = 0;
  std::uint64_t bad_sequence = 0;
  std::string problem;
};

// Reads the log from `in` and checks, line by line: the form, consecutive
// sequence numbers from 1, each "prev" against the hash of the record
// before, each record's own hash, and for each checkpoint its covers_hash
// against the chain and its signature against `key` (ECDSA P-256 with
// SHA-256). With `pinned` (a checkpoint line from `custos audit checkpoint`),
// the log must reach the pinned checkpoint's sequence and hold exactly that
// record there. A log without any verified checkpoint is not accepted.
// Stops at the first problem.
VerifyReport VerifyLog(std::istream& in, EVP_PKEY* key, const std::optional<std::string>& pinned);

}  // namespace custos::service::audit
