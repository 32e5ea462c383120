// Certificate profile queries on a parsed Policy, and policy durations.
#include "custos/policy/profile.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "custos/policy/policy.h"
#include "policy_impl.h"

namespace custos::policy {

bool ParsePolicyDuration(std::string_view text, std::chrono::seconds* out) {
  if (text.size() < 2 || out == nullptr) return false;
  std::int64_t unit = 0;
  switch (text.back()) {
    case 's':
      unit = 1;
      break;
    case 'm':
      unit = 60;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'd':
      unit = 86400;
      break;
    case 'y':
      unit = 365 * 86400;
      break;
    default:
      return false;
  }
  const std::string_view digits = text.substr(0, text.size() - 1);
  if (digits.size() > 1 && digits[0] == '0') return false;
  constexpr std::int64_t kMaxSeconds = 100LL * 365 * 86400;
  std::int64_t n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
    if (n > kMaxSeconds) return false;  // also bounds n * unit below
  }
  if (n * unit > kMaxSeconds) return false;
  *out = std::chrono::seconds(n * unit);
  return true;
}

std::vector<CertProfile> Policy::profiles() const { return impl_->profiles; }

const CertProfile* Policy::FindProfile(std::string_view name) const {
  for (const CertProfile& profile : impl_->profiles) {
    if (profile.name == name) return &profile;
  }
  return nullptr;
}

const CaSettings& Policy::ca_settings() const { return impl_->ca_settings; }

namespace {

// Bytes outside printable ASCII, '"' and '\\' escaped, in quotes: request
// fields end up in logs and must not be able to forge lines.
std::string Quoted(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u >= 0x7f) {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  return out + '"';
}

}  // namespace

Decision Policy::CheckProfile(std::string_view principal, std::string_view profile_name) const {
  const Impl& impl = *impl_;
  const auto it = std::find_if(impl.profiles.begin(), impl.profiles.end(),
                               [&](const CertProfile& p) { return p.name == profile_name; });
  if (it == impl.profiles.end()) {
    std::string reason = "no certificate profile named " + Quoted(profile_name);
    if (impl.profiles.empty()) {
      reason += " (the policy has no profiles)";
    } else {
      reason += " (profiles: ";
      for (std::size_t i = 0; i < impl.profiles.size(); ++i) {
        if (i > 0) reason += ", ";
        reason += impl.profiles[i].name;
      }
      reason += ")";
    }
    return Decision{false, std::string(kDefaultDenyRule), std::move(reason)};
  }
  const CertProfile& profile = *it;
  const std::string rule = "profile:" + profile.name;
  if (principal.empty()) {
    return Decision{false, rule,
                    "request has no principal (the client certificate has no URI SAN, DNS SAN "
                    "or CN)"};
  }
  const auto& role_ids = impl.profile_roles[static_cast<std::size_t>(it - impl.profiles.begin())];
  const internal::RoleSet roles = impl.RolesFor(principal);
  for (std::uint32_t role : role_ids) {
    if (!roles.Has(role)) continue;
    return Decision{
        true, rule,
        "allowed by profile " + Quoted(profile.name) + " for role " + Quoted(impl.roles[role])};
  }
  std::string reason = "principal " + Quoted(principal) + " (roles: ";
  bool any_role = false;
  for (std::uint32_t i = 0; i < impl.roles.size(); ++i) {
    if (!roles.Has(i)) continue;
    if (any_role) reason += ", ";
    reason += impl.roles[i];
    any_role = true;
  }
  if (!any_role) reason += "none";
  reason += ") may not issue under profile " + Quoted(profile.name) + "; it allows roles ";
  for (std::size_t i = 0; i < profile.roles.size(); ++i) {
    if (i > 0) reason += ", ";
    reason += profile.roles[i];
  }
  reason += " only";
  return Decision{false, rule, std::move(reason)};
}

}  // namespace custos::policy
