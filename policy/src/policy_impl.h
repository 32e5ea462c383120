// The parsed and validated policy (Policy::Impl), shared by policy.cc and
// quorum.cc. Internal to policy/.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "custos/policy/policy.h"
#include "custos/policy/profile.h"
#include "custos/policy/quorum.h"
#include "custos/policy/ssh_profile.h"
#include "custos/policy/v1/policy.pb.h"

namespace custos::policy {
namespace internal {

// A set of role indices. Inline for up to 256 roles, so that Check does not
// allocate for any policy a person is likely to write.
class RoleSet {
 public:
  explicit RoleSet(std::size_t role_count) {
    const std::size_t words = (role_count + 63) / 64;
    if (words > inline_.size()) heap_.assign(words, 0);
  }
  void Add(std::uint32_t role) { words()[role / 64] |= std::uint64_t{1} << (role % 64); }
  bool Has(std::uint32_t role) const {
    return (words()[role / 64] >> (role % 64)) & std::uint64_t{1};
  }

 private:
  std::uint64_t* words() { return heap_.empty() ? inline_.data() : heap_.data(); }
  const std::uint64_t* words() const { return heap_.empty() ? inline_.data() : heap_.data(); }

  std::array<std::uint64_t, 4> inline_{};
  std::vector<std::uint64_t> heap_;
};

// The validated policy in the form Check walks: role names resolved to ids.
struct CompiledPolicy {
  struct Binding {
    std::string principal;  // glob
    std::vector<std::uint32_t> roles;
  };
  struct Rule {
    std::string name;
    std::vector<std::uint32_t> roles;
    unsigned operations = 0;        // OperationBit()s
    std::vector<std::string> keys;  // globs
    bool any_usage = false;
    std::vector<std::string> usages;
    bool any_algorithm = false;
    std::vector<std::string> algorithms;
  };
  struct QuorumRule {
    std::string name;
    QuorumOperation operation = QuorumOperation::kSign;
    std::vector<std::string> keys;  // globs (key kinds and kSign)
    bool any_usage = false;
    std::vector<std::string> usages;
    std::vector<std::string> profiles;  // globs (kCertIssue)
    std::string group;
    std::uint32_t threshold = 1;
    bool deny_rejects = true;
    std::chrono::seconds expiry{0};  // effective (the default applied)
  };
  struct AdminRule {
    std::string name;
    std::vector<std::uint32_t> roles;
    unsigned operations = 0;  // 1 << AdminOperation
  };

  std::uint64_t version = 0;
  std::vector<std::string> roles;  // declaration order; index = role id
  std::vector<Binding> bindings;
  std::vector<Rule> rules;  // file order: the first allowing rule decides

  std::vector<Officer> officers;  // file order
  std::vector<QuorumRule> quorum_rules;
  std::chrono::seconds default_expiry{86400};
  std::chrono::seconds max_statement_skew{300};
  std::vector<AdminRule> admin_rules;

  std::vector<CertProfile> profiles;                      // file order
  std::vector<std::vector<std::uint32_t>> profile_roles;  // per profile: role ids
  CaSettings ca_settings;

  std::vector<SshProfile> ssh_profiles;                       // file order
  std::vector<std::vector<std::uint32_t>> ssh_profile_roles;  // per ssh profile: role ids

  // The file as parsed, for DiffPolicies.
  ::custos::policy::v1::PolicyFile file;

  RoleSet RolesFor(std::string_view principal) const {
    RoleSet set(roles.size());
    for (const auto& binding : bindings) {
      if (!GlobMatch(binding.principal, principal)) continue;
      for (auto role : binding.roles) set.Add(role);
    }
    return set;
  }
};

}  // namespace internal

struct Policy::Impl : internal::CompiledPolicy {};

}  // namespace custos::policy
