// The audit log verifier behind `custos-audit verify` (docs/audit.md,
// "Verifying"). It needs only the log, the audit public key and, to detect
// truncation, a pinned checkpoint; to check quorum approval evidence, the
// officers' public keys from the policy.
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <functional>
#include <istream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "custos/policy/approval.h"
#include "custos/service/audit_format.h"

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

// Officers' registered public keys by officer id, gathered from one or more
// policy files: an officer may have had different keys in different policy
// versions, and a signature is valid when any of them verifies it.
using OfficerKeyring = std::map<std::string, std::vector<policy::OfficerPublicKey>, std::less<>>;

// One executed quorum request: a "request" record with a quorum_request, an
// op other than submit_approval, get_request and list_requests, and outcome
// OK (the record custosd writes after executing the approved operation, with
// the votes it counted).
struct ExecutedRequest {
  std::uint64_t seq = 0;
  std::string quorum_request;            // "rq-…"
  std::string op;                        // "sign", "create_key", "propose_policy", ...
  std::string key;                       // as recorded; may be ""
  std::vector<std::string> approved_by;  // officers of "approve" entries, in record order
  std::vector<std::string> denied_by;    // officers of "deny" entries
  std::size_t signatures = 0;            // approval entries in the record
  std::size_t valid_signatures = 0;      // of those, verified with a keyring key

  // "rq-… sign release-demo@1: approved by alice, bob (2 valid signatures)";
  // when `checked` is false "... (signatures not checked)".
  std::string Summary(bool checked) const;
};

struct ApprovalReport {
  bool checked = false;             // a keyring was given: signatures were verified
  std::uint64_t records = 0;        // records carrying approval entries
  std::uint64_t entries = 0;        // approval entries in them
  std::uint64_t valid = 0;          // entries whose signature verified (checked only)
  std::uint64_t refused_votes = 0;  // entries of refused submit_approval records
  std::vector<ExecutedRequest> executed;
  // One line each: "sequence 41: approval by bob for rq-…: <why>".
  std::vector<std::string> problems;
  bool ok() const { return problems.empty(); }
};

// Checks the approval evidence of quorum requests record by record
// (docs/audit.md, "Approval evidence"). For every approval entry of a record
// with a quorum_request it rebuilds the statement the officer signed
// (policy::CanonicalStatement with request id = quorum_request and the
// entry's digest, decision, officer and time) and, with a keyring, verifies
// the signature with the officer's keys. A problem is: a malformed entry,
// approvals without a quorum_request, an officer in no keyring, a signature
// no key of that officer verifies, or approvals of one request naming
// different request digests. Entries of refused submit_approval records
// (outcome other than OK) are the evidence of a refused vote, not of an
// approval: they are counted in refused_votes and never a problem.
// Without a keyring only the form is checked.
class ApprovalEvidenceChecker {
 public:
  // `keyring` may be null (signatures not checked); it must outlive *this.
  explicit ApprovalEvidenceChecker(const OfficerKeyring* keyring);

  // Feed records in log order (any kind; records without approvals and
  // checkpoints only matter for "executed").
  void Add(const ParsedLine& record);
  const ApprovalReport& report() const { return report_; }

 private:
  const OfficerKeyring* keyring_;
  ApprovalReport report_;
  std::map<std::string, Hash, std::less<>> digests_;  // quorum_request -> digest
};

// Reads every well-formed record of `in` and feeds it to a checker. Lines
// that do not parse are skipped (VerifyLog reports them).
ApprovalReport CheckApprovalEvidence(std::istream& in, const OfficerKeyring* keyring);

}  // namespace custos::service::audit
