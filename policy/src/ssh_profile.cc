// SSH certificate profiles on a parsed Policy: the principal pattern matcher
// and Policy::CheckSshCertificate (docs/policy.md, "SSH certificate profiles").
#include "custos/policy/ssh_profile.h"

#include <algorithm>
#include <cstddef>
#include <string>

#include "custos/policy/policy.h"
#include "policy_impl.h"

namespace custos::policy {

namespace {

// One pattern element at pattern[p]: matches `c`? Sets *next to the index
// after the element. False (and *next = npos) for a malformed class.
bool ElementMatches(std::string_view pattern, std::size_t p, char c, std::size_t* next) {
  if (pattern[p] == '?') {
    *next = p + 1;
    return true;
  }
  if (pattern[p] != '[') {
    *next = p + 1;
    return pattern[p] == c;
  }
  std::size_t i = p + 1;
  bool negate = false;
  if (i < pattern.size() && pattern[i] == '!') {
    negate = true;
    ++i;
  }
  bool matched = false;
  bool empty = true;
  while (i < pattern.size() && pattern[i] != ']') {
    char lo = pattern[i];
    char hi = lo;
    if (i + 2 < pattern.size() && pattern[i + 1] == '-' && pattern[i + 2] != ']') {
      hi = pattern[i + 2];
      i += 3;
    } else {
      i += 1;
    }
    if (hi < lo) {
      *next = std::string_view::npos;
      return false;
    }
    if (c >= lo && c <= hi) matched = true;
    empty = false;
  }
  if (i >= pattern.size() || empty) {
    *next = std::string_view::npos;
    return false;
  }
  *next = i + 1;
  return matched != negate;
}

// Bytes outside printable ASCII, '"' and '\\' escaped, in quotes.
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

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

std::string Duration(std::chrono::seconds s) {
  // Hours below a week (as people write "48h"), days above.
  const auto n = s.count();
  if (n % 86400 == 0 && n >= 7 * 86400) return std::to_string(n / 86400) + "d";
  if (n % 3600 == 0) return std::to_string(n / 3600) + "h";
  if (n % 60 == 0) return std::to_string(n / 60) + "m";
  return std::to_string(n) + "s";
}

bool Contains(const std::vector<std::string>& list, std::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

}  // namespace

std::string_view SshCertKindName(SshCertKind kind) {
  return kind == SshCertKind::kHost ? "host" : "user";
}

bool SshPrincipalMatch(std::string_view pattern, std::string_view text) {
  // GlobMatch's greedy algorithm with one backtrack point, with classes as
  // one-character elements.
  constexpr std::size_t kNone = std::string_view::npos;
  std::size_t p = 0;
  std::size_t t = 0;
  std::size_t star = kNone;
  std::size_t mark = 0;
  while (t < text.size()) {
    std::size_t next = kNone;
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && ElementMatches(pattern, p, text[t], &next)) {
      p = next;
      ++t;
    } else if (p < pattern.size() && next == kNone) {
      return false;  // malformed class
    } else if (star != kNone) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool SshPrincipalPatternIsWellFormed(std::string_view pattern) {
  for (std::size_t p = 0; p < pattern.size();) {
    std::size_t next = 0;
    ElementMatches(pattern, p, 'a', &next);
    if (next == std::string_view::npos) return false;
    p = next;
  }
  return true;
}

const std::vector<SshProfile>& Policy::ssh_profiles() const { return impl_->ssh_profiles; }

Decision Policy::CheckSshCertificate(const SshCertRequest& request, SshCertGrant* grant) const {
  const Impl& impl = *impl_;
  const bool host = request.kind == SshCertKind::kHost;
  const std::string kind(SshCertKindName(request.kind));
  const internal::RoleSet roles = impl.RolesFor(request.principal);
  auto admits = [&](std::size_t i) {
    return std::any_of(impl.ssh_profile_roles[i].begin(), impl.ssh_profile_roles[i].end(),
                       [&](std::uint32_t r) { return roles.Has(r); });
  };
  auto names_key = [&](const SshProfile& p) {
    return std::any_of(p.keys.begin(), p.keys.end(),
                       [&](const std::string& g) { return GlobMatch(g, request.key_name); });
  };

  // Which profile: the named one, else the first that names the key and the
  // kind and admits the principal (else the first naming key and kind, to
  // say why it refuses).
  std::size_t index = impl.ssh_profiles.size();
  if (!request.profile.empty()) {
    for (std::size_t i = 0; i < impl.ssh_profiles.size(); ++i) {
      if (impl.ssh_profiles[i].name == request.profile) index = i;
    }
    if (index == impl.ssh_profiles.size()) {
      std::string reason = "no ssh_profile named " + Quoted(request.profile);
      std::vector<std::string> names;
      for (const auto& p : impl.ssh_profiles) names.push_back(p.name);
      reason += names.empty() ? " (the policy has no ssh profiles)"
                              : " (ssh profiles: " + Join(names) + ")";
      return Decision{false, std::string(kDefaultDenyRule), std::move(reason)};
    }
  } else {
    std::size_t fallback = impl.ssh_profiles.size();
    for (std::size_t i = 0; i < impl.ssh_profiles.size(); ++i) {
      const SshProfile& p = impl.ssh_profiles[i];
      if (!names_key(p) || (host ? !p.host : !p.user)) continue;
      if (fallback == impl.ssh_profiles.size()) fallback = i;
      if (admits(i)) {
        index = i;
        break;
      }
    }
    if (index == impl.ssh_profiles.size()) index = fallback;
    if (index == impl.ssh_profiles.size()) {
      return Decision{false, std::string(kDefaultDenyRule),
                      "no ssh_profile lets key " + Quoted(request.key_name) + " sign " + kind +
                          " certificates"};
    }
  }
  const SshProfile& profile = impl.ssh_profiles[index];
  const std::string rule = "ssh-profile:" + profile.name + ":";
  const std::string what = "ssh profile " + Quoted(profile.name);
  auto refuse = [&](std::string_view check, std::string reason) {
    return Decision{false, rule + std::string(check), std::move(reason)};
  };

  if (request.principal.empty() || !admits(index)) {
    std::vector<std::string> have;
    for (std::uint32_t i = 0; i < impl.roles.size(); ++i) {
      if (roles.Has(i)) have.push_back(impl.roles[i]);
    }
    return refuse("roles", "principal " + Quoted(request.principal) +
                               " (roles: " + (have.empty() ? std::string("none") : Join(have)) +
                               ") may not sign under " + what + "; it allows roles " +
                               Join(profile.roles) + " only");
  }
  if (!names_key(profile)) {
    return refuse("key", what + " does not let key " + Quoted(request.key_name) +
                             " sign (keys: " + Join(profile.keys) + ")");
  }
  if (host ? !profile.host : !profile.user) {
    return refuse("cert_types", what + " does not sign " + kind + " certificates");
  }
  if (request.principals.empty()) {
    return refuse("principals", "a certificate needs at least one principal");
  }
  if (request.principals.size() > profile.max_principals) {
    return refuse("max_principals", std::to_string(request.principals.size()) + " principals; " +
                                        what + " allows at most " +
                                        std::to_string(profile.max_principals));
  }
  for (const std::string& name : request.principals) {
    const bool ok = std::any_of(profile.principals.begin(), profile.principals.end(),
                                [&](const std::string& g) { return SshPrincipalMatch(g, name); });
    if (!ok) {
      return refuse("principals", "principal " + Quoted(name) + " is not allowed by " + what +
                                      " (allowed: " + Join(profile.principals) + ")");
    }
  }
  const std::chrono::seconds validity =
      request.validity.count() == 0 ? profile.default_validity : request.validity;
  if (validity.count() < 0 || validity > profile.max_validity) {
    return refuse("max_validity", "validity " + Duration(validity) + " is longer than " + what +
                                      " allows (max_validity " + Duration(profile.max_validity) +
                                      ")");
  }
  std::vector<std::string> extensions;
  if (host) {
    if (request.extensions && !request.extensions->empty()) {
      return refuse("extensions", "host certificates carry no extensions");
    }
    if (request.force_command || request.source_address) {
      return refuse(request.force_command ? "force_command" : "source_address",
                    "host certificates carry no critical options (force-command, "
                    "source-address)");
    }
  } else {
    extensions = request.extensions ? *request.extensions : profile.default_extensions;
    for (const std::string& e : extensions) {
      if (!Contains(profile.allowed_extensions, e)) {
        return refuse("extensions",
                      "extension " + Quoted(e) + " is not allowed by " + what + " (allowed: " +
                          (profile.allowed_extensions.empty() ? std::string("none")
                                                              : Join(profile.allowed_extensions)) +
                          ")");
      }
    }
    if (request.force_command && !profile.allow_force_command) {
      return refuse("force_command", what + " does not allow a force-command");
    }
    if (request.source_address && !profile.allow_source_address) {
      return refuse("source_address", what + " does not allow a source-address");
    }
  }
  if (grant != nullptr) {
    grant->profile = profile.name;
    grant->validity = validity;
    grant->extensions = std::move(extensions);
  }
  return Decision{
      true, "ssh-profile:" + profile.name,
      "allowed by " + what + " for a " + kind + " certificate of " + Duration(validity)};
}

}  // namespace custos::policy
