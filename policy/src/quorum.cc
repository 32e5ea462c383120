// QuorumPolicy (quorum rules, officers, vote checks and counting) and
// DiffPolicies over the parsed policy (policy_impl.h).
#include "custos/policy/quorum.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>

#include "policy_impl.h"

namespace custos::policy {
namespace {

namespace pb = ::custos::policy::v1;
using Impl = internal::CompiledPolicy;

bool InGroup(const Officer& officer, std::string_view group) {
  return std::find(officer.groups.begin(), officer.groups.end(), group) != officer.groups.end();
}

bool IsPrincipalOf(const Officer& officer, std::string_view principal) {
  if (principal.empty()) return false;
  return std::any_of(officer.principals.begin(), officer.principals.end(),
                     [&](const std::string& p) { return GlobMatch(p, principal); });
}

bool AnyGlob(const std::vector<std::string>& patterns, std::string_view text) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return GlobMatch(p, text); });
}

bool Covers(const Impl::QuorumRule& rule, const QuorumQuery& query) {
  if (rule.operation != query.operation) return false;
  switch (rule.operation) {
    case QuorumOperation::kKeyCreate:
    case QuorumOperation::kKeyDestroy:
    case QuorumOperation::kKeyStateChange:
    case QuorumOperation::kSign:
      if (!AnyGlob(rule.keys, query.key_name)) return false;
      return rule.any_usage || std::find(rule.usages.begin(), rule.usages.end(), query.key_usage) !=
                                   rule.usages.end();
    case QuorumOperation::kCertIssue:
      return AnyGlob(rule.profiles, query.profile);
    case QuorumOperation::kPolicyChange:
    case QuorumOperation::kOfficerChange:
      return true;
  }
  return false;
}

QuorumRequirement RequirementOf(const Impl::QuorumRule& rule) {
  return QuorumRequirement{rule.name, rule.group, rule.threshold, rule.deny_rejects, rule.expiry};
}

// An officer as compared by ForPolicyChange and DiffPolicies: order of groups
// and principals does not matter, the key is compared by its SPKI.
struct OfficerView {
  std::string name;
  std::vector<std::string> groups;
  std::vector<std::string> principals;
  std::string spki;
  friend bool operator==(const OfficerView&, const OfficerView&) = default;
};

std::map<std::string, OfficerView> OfficerViews(const Impl& impl) {
  std::map<std::string, OfficerView> out;
  for (const Officer& o : impl.officers) {
    OfficerView v{o.name, o.groups, o.principals, o.public_key.spki_der()};
    std::sort(v.groups.begin(), v.groups.end());
    std::sort(v.principals.begin(), v.principals.end());
    out.emplace(o.id, std::move(v));
  }
  return out;
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

// Policy strings in diff lines may come from a hostile proposal: keep each
// line one line of printable text.
std::string Printable(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '\\') {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

// One named item of a policy (a role, an officer, a rule...) as ordered
// attribute/value pairs, for DiffPolicies.
struct Item {
  std::vector<std::pair<std::string, std::string>> attrs;
  std::string summary;  // shown when the item is added
};
using Items = std::vector<std::pair<std::string, Item>>;  // file order, unique keys

std::string List(const google::protobuf::RepeatedPtrField<std::string>& values) {
  std::string out = "[";
  for (int i = 0; i < values.size(); ++i) {
    if (i > 0) out += ", ";
    out += values[i];
  }
  return out + "]";
}

template <typename Enum, typename NameFn>
std::string EnumList(const google::protobuf::RepeatedField<int>& values, NameFn name) {
  std::string out = "[";
  for (int i = 0; i < values.size(); ++i) {
    if (i > 0) out += ", ";
    out += name(static_cast<Enum>(values[i]));
  }
  return out + "]";
}

void AddItem(Items& items, std::string key, Item item) {
  // Keys are unique in a valid policy except binding principals; number those.
  std::string unique = key;
  for (int n = 2;
       std::any_of(items.begin(), items.end(), [&](const auto& e) { return e.first == unique; });
       ++n) {
    unique = key + " #" + std::to_string(n);
  }
  items.emplace_back(std::move(unique), std::move(item));
}

struct Kinds {
  Items roles, bindings, key_rules, officers, quorum_rules, admin_rules, settings, profiles,
      ca_settings, ssh_profiles;
};

std::string Seconds(std::chrono::seconds s) { return std::to_string(s.count()) + "s"; }

// A profile as attribute/value pairs, from its compiled form (so "30d" and
// "720h" compare equal and defaults are explicit).
Item DescribeProfile(const CertProfile& p) {
  const CertSanRules& san = p.san;
  std::string fixed;
  for (const auto& a : p.subject.fixed)
    fixed += (fixed.empty() ? "" : ", ") + a.type + "=" + a.value;
  return Item{{{"ca", p.ca},
               {"roles", "[" + Join(p.roles) + "]"},
               {"key_algorithms", "[" + Join(p.key_algorithms) + "]"},
               {"rsa_min_bits", std::to_string(p.rsa_min_bits)},
               {"max_validity", Seconds(p.max_validity)},
               {"default_validity", Seconds(p.default_validity)},
               {"key_usage", "[" + Join(p.key_usage) + "]"},
               {"ext_key_usage", "[" + Join(p.ext_key_usages) + "]"},
               {"is_ca", p.is_ca ? "true" : "false"},
               {"path_len", std::to_string(p.path_len)},
               {"san.dns_suffix", "[" + Join(san.dns_suffixes) + "]"},
               {"san.dns_exact", "[" + Join(san.dns_exact) + "]"},
               {"san.allow_wildcards", san.allow_wildcards ? "true" : "false"},
               {"san.ip_range", "[" + Join(san.ip_ranges) + "]"},
               {"san.uri_prefix", "[" + Join(san.uri_prefixes) + "]"},
               {"san.email_domain", "[" + Join(san.email_domains) + "]"},
               {"san.min_count", std::to_string(san.min_count)},
               {"san.max_count", std::to_string(san.max_count)},
               {"san.max_uri_count", std::to_string(san.max_uri_count)},
               {"subject.mode", p.subject.mode == CertSubjectMode::kEmpty ? "EMPTY" : "FROM_CSR"},
               {"subject.allowed_from_csr", "[" + Join(p.subject.allowed_from_csr) + "]"},
               {"subject.fixed", "[" + fixed + "]"},
               {"crl_url", "[" + Join(p.crl_urls) + "]"},
               {"ocsp_url", "[" + Join(p.ocsp_urls) + "]"},
               {"ca_issuers_url", "[" + Join(p.ca_issuers_urls) + "]"},
               {"csr_extension_allowlist", "[" + Join(p.csr_extension_allowlist) + "]"},
               {"public_tls", p.public_tls ? "true" : "false"}},
              "ca: " + p.ca + ", roles: [" + Join(p.roles) + "]" + (p.is_ca ? ", CA" : "")};
}

// An ssh profile as attribute/value pairs, from its compiled form.
Item DescribeSshProfile(const SshProfile& p) {
  std::string types = p.user ? "USER" : "";
  if (p.host) types += types.empty() ? "HOST" : ", HOST";
  return Item{{{"keys", "[" + Join(p.keys) + "]"},
               {"roles", "[" + Join(p.roles) + "]"},
               {"cert_types", "[" + types + "]"},
               {"principals", "[" + Join(p.principals) + "]"},
               {"max_principals", std::to_string(p.max_principals)},
               {"max_validity", Seconds(p.max_validity)},
               {"default_validity", Seconds(p.default_validity)},
               {"allowed_extensions", "[" + Join(p.allowed_extensions) + "]"},
               {"default_extensions", "[" + Join(p.default_extensions) + "]"},
               {"allow_force_command", p.allow_force_command ? "true" : "false"},
               {"allow_source_address", p.allow_source_address ? "true" : "false"}},
              "keys: [" + Join(p.keys) + "], roles: [" + Join(p.roles) + "], " + types};
}

Kinds Describe(const Impl& impl) {
  const pb::PolicyFile& f = impl.file;
  Kinds k;
  for (const auto& r : f.role()) {
    AddItem(k.roles, r.name(), Item{{{"description", r.description()}}, ""});
  }
  for (const auto& b : f.binding()) {
    AddItem(k.bindings, b.principal(),
            Item{{{"roles", List(b.roles())}}, "roles: " + List(b.roles())});
  }
  for (const auto& r : f.key_rule()) {
    const std::string ops = EnumList<pb::Operation>(
        r.operations(), [](pb::Operation op) { return pb::Operation_Name(op); });
    AddItem(
        k.key_rules, r.name(),
        Item{{{"roles", List(r.roles())},
              {"operations", ops},
              {"keys", List(r.keys())},
              {"usages", List(r.usages())},
              {"algorithms", List(r.algorithms())}},
             "roles: " + List(r.roles()) + ", operations: " + ops + ", keys: " + List(r.keys())});
  }
  for (const Officer& o : impl.officers) {
    std::vector<std::string> groups = o.groups, principals = o.principals;
    std::sort(groups.begin(), groups.end());
    std::sort(principals.begin(), principals.end());
    AddItem(k.officers, o.id,
            Item{{{"name", o.name},
                  {"groups", "[" + Join(groups) + "]"},
                  {"principals", "[" + Join(principals) + "]"},
                  {"public_key", o.public_key.algorithm() + " " + o.public_key.Fingerprint()}},
                 "groups: " + Join(groups)});
  }
  for (const auto& r : impl.quorum_rules) {
    std::string usages = r.any_usage ? "*" : "";
    for (const auto& u : r.usages) usages += (usages.empty() ? "" : ", ") + u;
    Item item{{{"operation", std::string(QuorumOperationName(r.operation))},
               {"keys", "[" + Join(r.keys) + "]"},
               {"usages", "[" + usages + "]"},
               {"profiles", "[" + Join(r.profiles) + "]"},
               {"group", r.group},
               {"threshold", std::to_string(r.threshold)},
               {"deny_rejects", r.deny_rejects ? "true" : "false"},
               {"expiry_seconds", std::to_string(r.expiry.count())}},
              std::string(QuorumOperationName(r.operation)) + ", " + std::to_string(r.threshold) +
                  " of group " + r.group};
    AddItem(k.quorum_rules, r.name, std::move(item));
  }
  for (const auto& r : f.admin_rule()) {
    const std::string ops = EnumList<pb::AdminOperation>(
        r.operations(), [](pb::AdminOperation op) { return pb::AdminOperation_Name(op); });
    AddItem(k.admin_rules, r.name(),
            Item{{{"roles", List(r.roles())}, {"operations", ops}},
                 "roles: " + List(r.roles()) + ", operations: " + ops});
  }
  AddItem(k.settings, "",
          Item{{{"default_expiry_seconds", std::to_string(impl.default_expiry.count())},
                {"max_statement_skew_seconds", std::to_string(impl.max_statement_skew.count())}},
               ""});
  for (const CertProfile& p : impl.profiles) AddItem(k.profiles, p.name, DescribeProfile(p));
  for (const SshProfile& p : impl.ssh_profiles) {
    AddItem(k.ssh_profiles, p.name, DescribeSshProfile(p));
  }
  AddItem(k.ca_settings, "",
          Item{{{"crl_validity", Seconds(impl.ca_settings.crl_validity)},
                {"crl_resign_before", Seconds(impl.ca_settings.crl_resign_before)}},
               ""});
  return k;
}

void DiffItems(std::string_view kind, const Items& before, const Items& after,
               std::vector<std::string>& out) {
  auto find = [](const Items& items, const std::string& key) -> const Item* {
    for (const auto& [k, item] : items) {
      if (k == key) return &item;
    }
    return nullptr;
  };
  auto head = [&](char sign, const std::string& key) {
    std::string line(1, sign);
    line += ' ';
    line += kind;
    if (!key.empty()) line += ' ' + Printable(key);
    return line;
  };
  for (const auto& [key, item] : before) {
    if (find(after, key) == nullptr) out.push_back(head('-', key));
  }
  for (const auto& [key, item] : after) {
    const Item* old = find(before, key);
    if (old == nullptr) {
      std::string line = head('+', key);
      if (!item.summary.empty()) line += " (" + Printable(item.summary) + ")";
      out.push_back(std::move(line));
      continue;
    }
    for (std::size_t i = 0; i < item.attrs.size() && i < old->attrs.size(); ++i) {
      if (item.attrs[i].second == old->attrs[i].second) continue;
      out.push_back(head('~', key) + ": " + item.attrs[i].first + " " +
                    Printable(old->attrs[i].second) + " -> " + Printable(item.attrs[i].second));
    }
  }
}

}  // namespace

std::string_view QuorumOperationName(QuorumOperation op) {
  switch (op) {
    case QuorumOperation::kKeyCreate:
      return "KEY_CREATE";
    case QuorumOperation::kKeyDestroy:
      return "KEY_DESTROY";
    case QuorumOperation::kKeyStateChange:
      return "KEY_STATE_CHANGE";
    case QuorumOperation::kPolicyChange:
      return "POLICY_CHANGE";
    case QuorumOperation::kOfficerChange:
      return "OFFICER_CHANGE";
    case QuorumOperation::kCertIssue:
      return "CERT_ISSUE";
    case QuorumOperation::kSign:
      return "SIGN";
  }
  return "UNKNOWN";
}

std::string_view VoteErrorCodeName(VoteErrorCode code) {
  switch (code) {
    case VoteErrorCode::kMalformedStatement:
      return "MALFORMED_STATEMENT";
    case VoteErrorCode::kUnknownOfficer:
      return "UNKNOWN_OFFICER";
    case VoteErrorCode::kBadSignature:
      return "BAD_SIGNATURE";
    case VoteErrorCode::kTimeSkew:
      return "TIME_SKEW";
    case VoteErrorCode::kWrongRequest:
      return "WRONG_REQUEST";
    case VoteErrorCode::kNotInGroup:
      return "NOT_IN_GROUP";
    case VoteErrorCode::kOfficerIsRequester:
      return "OFFICER_IS_REQUESTER";
  }
  return "UNKNOWN";
}

std::vector<QuorumRequirement> QuorumPolicy::QuorumFor(const QuorumQuery& query) const {
  std::vector<QuorumRequirement> out;
  for (const auto& rule : policy_.impl().quorum_rules) {
    if (Covers(rule, query)) out.push_back(RequirementOf(rule));
  }
  return out;
}

std::vector<QuorumRequirement> QuorumPolicy::ForPolicyChange(const Policy& current,
                                                             const Policy& proposed) {
  const bool officers_differ = OfficerViews(current.impl()) != OfficerViews(proposed.impl());
  std::vector<QuorumRequirement> out;
  for (const auto& rule : current.impl().quorum_rules) {
    if (rule.operation == QuorumOperation::kPolicyChange ||
        (officers_differ && rule.operation == QuorumOperation::kOfficerChange)) {
      out.push_back(RequirementOf(rule));
    }
  }
  return out;
}

std::chrono::seconds QuorumPolicy::max_statement_skew() const {
  return policy_.impl().max_statement_skew;
}

const std::vector<Officer>& QuorumPolicy::officers() const { return policy_.impl().officers; }

const Officer* QuorumPolicy::FindOfficer(std::string_view id) const {
  for (const Officer& officer : policy_.impl().officers) {
    if (officer.id == id) return &officer;
  }
  return nullptr;
}

std::vector<std::string> QuorumPolicy::OfficersOfPrincipal(std::string_view principal) const {
  std::vector<std::string> out;
  for (const Officer& officer : policy_.impl().officers) {
    if (IsPrincipalOf(officer, principal)) out.push_back(officer.id);
  }
  return out;
}

std::variant<VerifiedVote, VoteError> QuorumPolicy::CheckVote(
    std::string_view statement, std::string_view signature, const VoteContext& ctx,
    std::chrono::system_clock::time_point now, std::chrono::seconds max_skew) const {
  auto parsed = ParseStatement(statement);
  if (const auto* e = std::get_if<ApprovalError>(&parsed)) {
    return VoteError{VoteErrorCode::kMalformedStatement,
                     "vote on request " + ctx.request_id + ": " + e->message};
  }
  const ApprovalStatement& s = std::get<ApprovalStatement>(parsed);
  const Officer* officer = FindOfficer(s.officer_id);
  if (officer == nullptr) {
    return VoteError{VoteErrorCode::kUnknownOfficer,
                     "officer " + s.officer_id + " is not an officer of policy version " +
                         std::to_string(policy_.version()) + "; vote on request " + ctx.request_id +
                         " refused"};
  }
  auto verified = VerifyApproval(statement, signature, officer->public_key, now, max_skew);
  if (const auto* e = std::get_if<ApprovalError>(&verified)) {
    const VoteErrorCode code = e->code == ApprovalErrorCode::kTimeSkew ? VoteErrorCode::kTimeSkew
                               : e->code == ApprovalErrorCode::kMalformedStatement
                                   ? VoteErrorCode::kMalformedStatement
                                   : VoteErrorCode::kBadSignature;
    return VoteError{code, "officer " + officer->id + "'s vote on request " + ctx.request_id +
                               " refused: " + e->message};
  }
  if (auto e = CheckApprovalFor(s, ctx.request_id, ctx.request_digest)) {
    return VoteError{VoteErrorCode::kWrongRequest,
                     "officer " + officer->id + "'s vote refused: " + e->message};
  }
  if (std::none_of(ctx.requirements.begin(), ctx.requirements.end(),
                   [&](const QuorumRequirement& r) { return InGroup(*officer, r.group); })) {
    std::string message = "officer " + officer->id + " is not in ";
    if (ctx.requirements.size() == 1) {
      message +=
          "group " + ctx.requirements[0].group + " required by rule " + ctx.requirements[0].rule;
    } else {
      message += "any group required by request " + ctx.request_id + " (";
      for (std::size_t i = 0; i < ctx.requirements.size(); ++i) {
        if (i > 0) message += ", ";
        message += "group " + ctx.requirements[i].group + " of rule " + ctx.requirements[i].rule;
      }
      message += ")";
    }
    if (ctx.requirements.size() == 1) message += " for request " + ctx.request_id;
    return VoteError{VoteErrorCode::kNotInGroup, std::move(message)};
  }
  if (IsPrincipalOf(*officer, ctx.requester)) {
    return VoteError{VoteErrorCode::kOfficerIsRequester,
                     "officer " + officer->id + " made request " + ctx.request_id + " (as " +
                         Printable(ctx.requester) +
                         ") and cannot vote on it; another officer must"};
  }
  return VerifiedVote{s, officer->name};
}

Tally QuorumPolicy::Count(const std::vector<QuorumRequirement>& requirements,
                          std::string_view requester,
                          const std::vector<ApprovalStatement>& votes) const {
  Tally tally;
  tally.approved_by.resize(requirements.size());
  bool all_met = true;
  for (std::size_t r = 0; r < requirements.size(); ++r) {
    const QuorumRequirement& req = requirements[r];
    std::vector<std::string> seen;  // officers whose first vote was taken
    for (const ApprovalStatement& vote : votes) {
      const Officer* officer = FindOfficer(vote.officer_id);
      if (officer == nullptr || !InGroup(*officer, req.group) ||
          IsPrincipalOf(*officer, requester)) {
        continue;
      }
      if (std::find(seen.begin(), seen.end(), officer->id) != seen.end()) continue;
      seen.push_back(officer->id);
      if (vote.decision == ApprovalDecision::kApprove) {
        tally.approved_by[r].push_back(officer->id);
      } else if (req.deny_rejects && !tally.rejected) {
        tally.rejected = true;
        tally.rejected_by = officer->id;
      }
    }
    if (tally.approved_by[r].size() < req.threshold) all_met = false;
  }
  tally.approved = all_met && !tally.rejected;
  return tally;
}

std::vector<std::string> DiffPolicies(const Policy& current, const Policy& proposed) {
  const Kinds a = Describe(current.impl());
  const Kinds b = Describe(proposed.impl());
  std::vector<std::string> out;
  DiffItems("role", a.roles, b.roles, out);
  DiffItems("binding", a.bindings, b.bindings, out);
  DiffItems("key_rule", a.key_rules, b.key_rules, out);
  DiffItems("officer", a.officers, b.officers, out);
  DiffItems("quorum_rule", a.quorum_rules, b.quorum_rules, out);
  DiffItems("quorum_settings", a.settings, b.settings, out);
  DiffItems("admin_rule", a.admin_rules, b.admin_rules, out);
  DiffItems("profile", a.profiles, b.profiles, out);
  DiffItems("ca_settings", a.ca_settings, b.ca_settings, out);
  DiffItems("ssh_profile", a.ssh_profiles, b.ssh_profiles, out);
  if (!out.empty() && current.version() != proposed.version()) {
    out.insert(out.begin(), "version: " + std::to_string(current.version()) + " -> " +
                                std::to_string(proposed.version()));
  }
  return out;
}

}  // namespace custos::policy
