// Fuzz target: Policy::Parse on arbitrary text. A parsed policy is then
// exercised through Check, CheckAdmin, RolesOf and the quorum queries
// (QuorumFor, OfficersOfPrincipal, ForPolicyChange, DiffPolicies against
// itself), and the input's halves through GlobMatch, so that every entry
// point of policy/ sees hostile bytes. Dictionary: tests/fuzz/policy.dict.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "custos/policy/policy.h"
#include "custos/policy/quorum.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace custos::policy;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  auto result = Policy::Parse(text);
  if (const auto* error = std::get_if<ParseError>(&result)) {
    // Positions are 1-based or absent; a message always says something.
    if (error->line < 0 || error->column < 0 || error->message.empty()) __builtin_trap();
    (void)error->ToString("fuzz.txtpb");
  } else {
    const Policy& policy = std::get<Policy>(result);
    for (const auto* principal : {"spiffe://dev.custos.test/builder", "x", "*"}) {
      (void)policy.RolesOf(principal);
      for (auto op : {Operation::kSign, Operation::kCreate, Operation::kRead}) {
        const Decision d = policy.Check(
            KeyRequest{principal, op, "release-1", "code-signing", "ecdsa-p256-sha256"});
        if (d.rule.empty() || d.reason.empty()) __builtin_trap();
      }
      for (auto op : {AdminOperation::kReadPolicy, AdminOperation::kProposePolicy}) {
        const Decision d = policy.CheckAdmin(principal, op);
        if (d.rule.empty() || d.reason.empty()) __builtin_trap();
      }
    }
    const QuorumPolicy quorum(policy);
    for (auto op :
         {QuorumOperation::kKeyCreate, QuorumOperation::kKeyDestroy,
          QuorumOperation::kKeyStateChange, QuorumOperation::kPolicyChange,
          QuorumOperation::kOfficerChange, QuorumOperation::kCertIssue, QuorumOperation::kSign}) {
      for (const auto& r : quorum.QuorumFor(QuorumQuery{op, "release-1", "ca", "tls-server"})) {
        if (r.rule.empty() || r.group.empty() || r.threshold == 0) __builtin_trap();
      }
    }
    for (const Officer& officer : quorum.officers()) {
      if (quorum.FindOfficer(officer.id) != &officer) __builtin_trap();
      for (const auto& principal : officer.principals) {
        (void)quorum.OfficersOfPrincipal(principal);
      }
    }
    // A policy compared with itself: no change, and a change needs only the
    // POLICY_CHANGE rules.
    if (!DiffPolicies(policy, policy).empty()) __builtin_trap();
    for (const auto& r : QuorumPolicy::ForPolicyChange(policy, policy)) {
      if (r.rule.empty()) __builtin_trap();
    }
  }

  const std::size_t half = size / 2;
  (void)GlobMatch(text.substr(0, half), text.substr(half));
  return 0;
}
