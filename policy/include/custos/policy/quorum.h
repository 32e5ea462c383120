// Quorum (M-of-N dual control, brief §5, docs/quorum.md): which operations
// need officers' approval, who the officers are, and whether a vote counts.
// Pure logic over a parsed Policy: no files, sockets, clocks or HSM (the
// caller passes "now"). Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "custos/policy/approval.h"
#include "custos/policy/policy.h"

namespace custos::policy {

// The kinds of operation a quorum rule can cover (policy.proto QuorumOperation).
enum class QuorumOperation {
  kKeyCreate,       // create a key, rotate it (a new version), enable a pre-activation version
  kKeyDestroy,      // destroy a key version
  kKeyStateChange,  // disable, enable (deactivated -> active), mark compromised
  kPolicyChange,    // any change of the policy
  kOfficerChange,   // a policy change that adds, removes or changes an officer
  kCertIssue,       // issue a certificate under a profile (CA back-end)
  kSign,            // sign with a key
};
std::string_view QuorumOperationName(QuorumOperation op);  // "KEY_CREATE", ...

// What is being asked, for QuorumFor().
struct QuorumQuery {
  QuorumOperation operation = QuorumOperation::kSign;
  std::string key_name;   // without "@version"; empty for policy changes
  std::string key_usage;  // "code-signing", "ca", ...; empty for policy changes
  std::string profile;    // kCertIssue only
};

// One quorum rule that applies: `threshold` approvals from officers in `group`.
struct QuorumRequirement {
  std::string rule;
  std::string group;
  std::uint32_t threshold = 1;
  // One denial from an eligible officer rejects the request.
  bool deny_rejects = true;
  // How long the request may wait for approvals.
  std::chrono::seconds expiry{86400};

  friend bool operator==(const QuorumRequirement&, const QuorumRequirement&) = default;
};

struct Officer {
  std::string id;    // [a-z0-9][a-z0-9._-]*, as in approval statements
  std::string name;  // display name
  std::vector<std::string> groups;
  // TLS principals (globs) that are this officer: used to list the requests
  // the officer may vote on and to refuse an officer approving a request the
  // officer made.
  std::vector<std::string> principals;
  OfficerPublicKey public_key;
};

// Why a vote does not count. Codes appear in messages and audit records.
enum class VoteErrorCode {
  kMalformedStatement,  // not a canonical statement
  kUnknownOfficer,      // no officer with that id in the policy
  kBadSignature,        // does not verify under the officer's registered key
  kTimeSkew,            // statement time too far from now
  kWrongRequest,        // statement names another request id or digest
  kNotInGroup,          // officer in none of the request's quorum groups
  kOfficerIsRequester,  // the officer made the request
};
std::string_view VoteErrorCodeName(VoteErrorCode code);  // "UNKNOWN_OFFICER", ...

struct VoteError {
  VoteErrorCode code;
  std::string message;  // one line an operator can act on
};

// A vote that passed CheckVote().
struct VerifiedVote {
  ApprovalStatement statement;
  std::string officer_name;
};

// The pending request a vote is for, as stored by the service.
struct VoteContext {
  std::string request_id;
  Sha256Digest request_digest{};
  std::string requester;  // principal
  std::vector<QuorumRequirement> requirements;
};

// The result of counting verified votes against a request's requirements.
struct Tally {
  // Per requirement (same order): the officers whose approvals count, in
  // vote order. An officer counts once per requirement however often it voted.
  std::vector<std::vector<std::string>> approved_by;
  bool approved = false;    // every requirement has its threshold
  bool rejected = false;    // a counted denial under a deny_rejects requirement
  std::string rejected_by;  // officer id of that denial
};

// Extra policy queries for quorum. Implemented in quorum.cc over Policy's
// parsed contents.
class QuorumPolicy {
 public:
  explicit QuorumPolicy(const Policy& policy) : policy_(policy) {}

  // Every quorum rule that covers the query, in policy order (empty: no
  // quorum needed).
  std::vector<QuorumRequirement> QuorumFor(const QuorumQuery& query) const;

  // The requirements of a change from `current` to `proposed` policy:
  // kPolicyChange rules always, plus kOfficerChange rules when the officer set
  // differs (ids, names, groups, principals or keys). Judged by `current`.
  static std::vector<QuorumRequirement> ForPolicyChange(const Policy& current,
                                                        const Policy& proposed);

  // How far an approval statement's time may be from the daemon's clock
  // (policy quorum_settings.max_statement_skew_seconds, default 300 s).
  std::chrono::seconds max_statement_skew() const;

  const std::vector<Officer>& officers() const;
  const Officer* FindOfficer(std::string_view id) const;
  // Ids of officers one of whose principal patterns matches `principal`.
  std::vector<std::string> OfficersOfPrincipal(std::string_view principal) const;

  // Verifies one submitted vote: the statement parses strictly, names an
  // officer of this policy, its signature verifies under that officer's key,
  // its time is within `max_skew` of `now`, it names ctx.request_id and
  // ctx.request_digest, the officer is in the group of at least one of
  // ctx.requirements, and the officer is not the requester (none of the
  // officer's principal patterns matches ctx.requester). Checks in that
  // order; the first failure is returned.
  std::variant<VerifiedVote, VoteError> CheckVote(std::string_view statement,
                                                  std::string_view signature,
                                                  const VoteContext& ctx,
                                                  std::chrono::system_clock::time_point now,
                                                  std::chrono::seconds max_skew) const;

  // Counts `votes` (already verified, in arrival order) for `requirements`,
  // re-checking each officer against this policy: an officer no longer
  // enrolled, no longer in the group, or matching `requester` does not count.
  // Used at vote time and again at execution.
  Tally Count(const std::vector<QuorumRequirement>& requirements, std::string_view requester,
              const std::vector<ApprovalStatement>& votes) const;

 private:
  const Policy& policy_;
};

// A human-readable list of what changes from `current` to `proposed`, one
// line per change, e.g. "version: 3 -> 4", "+ officer dave (groups: officers)",
// "- key_rule builders-sign-code", "~ quorum_rule release-signing: threshold 2 -> 3".
// Empty when the policies are equivalent apart from the version.
std::vector<std::string> DiffPolicies(const Policy& current, const Policy& proposed);

}  // namespace custos::policy
