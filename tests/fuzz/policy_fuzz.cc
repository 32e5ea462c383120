// Fuzz target: Policy::Parse on arbitrary text. A parsed policy is then
// exercised through Check, CheckAdmin, RolesOf, the certificate profiles
// (profiles, FindProfile, CheckProfile, ca_settings, with the invariants
// validation promises), the SSH profiles (CheckSshCertificate) and the quorum
// queries (QuorumFor, OfficersOfPrincipal, ForPolicyChange, DiffPolicies
// against itself), and the input's halves through GlobMatch,
// SshPrincipalMatch and ParsePolicyDuration, so that every
// entry point of policy/ sees hostile bytes. Dictionary: tests/fuzz/policy.dict.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "custos/policy/policy.h"
#include "custos/policy/profile.h"
#include "custos/policy/quorum.h"
#include "custos/policy/ssh_profile.h"

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
      for (auto op :
           {AdminOperation::kReadPolicy, AdminOperation::kProposePolicy, AdminOperation::kManageCa,
            AdminOperation::kRevokeCertificate, AdminOperation::kReadCertificates}) {
        const Decision d = policy.CheckAdmin(principal, op);
        if (d.rule.empty() || d.reason.empty()) __builtin_trap();
      }
    }
    const QuorumPolicy quorum(policy);
    // Profiles: what validation promises holds, and CheckProfile names the
    // profile it judged.
    for (const CertProfile& profile : policy.profiles()) {
      if (policy.FindProfile(profile.name) == nullptr) __builtin_trap();
      if (profile.ca.empty() || profile.roles.empty() || profile.key_algorithms.empty()) {
        __builtin_trap();
      }
      if (profile.default_validity.count() <= 0 ||
          profile.default_validity > profile.max_validity || profile.rsa_min_bits < 2048) {
        __builtin_trap();
      }
      if (profile.san.min_count < 0 || profile.san.max_count < profile.san.min_count) {
        __builtin_trap();
      }
      if (!profile.is_ca && (profile.ext_key_usages.empty() || profile.path_len != -1)) {
        __builtin_trap();
      }
      // A sub-CA profile always needs quorum.
      if (profile.is_ca &&
          quorum.QuorumFor(QuorumQuery{QuorumOperation::kCertIssue, "", "", profile.name})
              .empty()) {
        __builtin_trap();
      }
      for (const auto* principal : {"spiffe://dev.custos.test/issuer", ""}) {
        const Decision d = policy.CheckProfile(principal, profile.name);
        if (d.rule != "profile:" + profile.name || d.reason.empty()) __builtin_trap();
      }
    }
    {
      const Decision d = policy.CheckProfile("x", text.substr(0, size / 2));
      if (d.rule.empty() || d.reason.empty()) __builtin_trap();
    }
    const CaSettings& ca = policy.ca_settings();
    if (ca.crl_resign_before.count() <= 0 || ca.crl_resign_before >= ca.crl_validity) {
      __builtin_trap();
    }
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
    // SSH profiles: what validation promises, and every decision names a rule
    // (an allowed one "ssh-profile:<name>", within the profile's bounds).
    for (const SshProfile& p : policy.ssh_profiles()) {
      if (p.name.empty() || p.keys.empty() || p.roles.empty() || !(p.user || p.host) ||
          p.principals.empty() || p.max_principals > kSshMaxPrincipalsBound ||
          p.default_validity.count() <= 0 || p.default_validity > p.max_validity) {
        __builtin_trap();
      }
      for (const auto* principal : {"spiffe://dev.custos.test/issuer", "x"}) {
        SshCertRequest r;
        r.principal = principal;
        r.key_name = "ssh-ca";
        r.profile = p.name;
        r.kind = p.user ? SshCertKind::kUser : SshCertKind::kHost;
        r.principals = {"alice", "web.dev.custos.test"};
        SshCertGrant grant;
        const Decision d = policy.CheckSshCertificate(r, &grant);
        if (d.rule.empty() || d.reason.empty()) __builtin_trap();
        if (d.allowed && (d.rule != "ssh-profile:" + p.name || grant.validity > p.max_validity)) {
          __builtin_trap();
        }
        for (const auto& pattern : p.principals) (void)SshPrincipalMatch(pattern, principal);
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
  (void)SshPrincipalMatch(text.substr(0, half), text.substr(half));
  std::chrono::seconds duration{0};
  if (ParsePolicyDuration(text.substr(half), &duration) &&
      (duration.count() < 0 || duration.count() > 100LL * 365 * 86400)) {
    __builtin_trap();
  }
  return 0;
}
