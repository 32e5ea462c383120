// SSH certificate profiles as the policy states them (policy.proto
// SshProfile; docs/policy.md "SSH certificate profiles"), and the check of
// one certificate request against them. Plain values, validated by
// Policy::Parse. Nothing here knows the SSH wire format: the service builds
// and signs the certificate after Policy::CheckSshCertificate allowed it.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace custos::policy {

// The extensions OpenSSH defines for user certificates (PROTOCOL.certkeys).
inline constexpr std::string_view kSshExtensionNames[] = {
    "no-touch-required",
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
};

// The default of SshProfile.max_principals, and its upper bound.
inline constexpr std::size_t kSshDefaultMaxPrincipals = 16;
inline constexpr std::size_t kSshMaxPrincipalsBound = 256;

enum class SshCertKind { kUser, kHost };
std::string_view SshCertKindName(SshCertKind kind);  // "user", "host"

struct SshProfile {
  std::string name;
  std::vector<std::string> keys;        // CA key name globs
  std::vector<std::string> roles;       // role names
  bool user = false;                    // may sign user certificates
  bool host = false;                    // may sign host certificates
  std::vector<std::string> principals;  // globs
  std::size_t max_principals = kSshDefaultMaxPrincipals;
  std::chrono::seconds max_validity{0};         // > 0
  std::chrono::seconds default_validity{0};     // 0 < default <= max
  std::vector<std::string> allowed_extensions;  // from kSshExtensionNames
  std::vector<std::string> default_extensions;  // subset of allowed_extensions
  bool allow_force_command = false;
  bool allow_source_address = false;
};

// One certificate a principal asks an ssh-ca key to sign.
struct SshCertRequest {
  std::string principal;  // the TLS principal asking
  std::string key_name;   // the CA key, without "@version"
  // Empty: the first profile (file order) that names the key and the kind and
  // admits the principal's roles.
  std::string profile;
  SshCertKind kind = SshCertKind::kUser;
  std::vector<std::string> principals;  // certificate principals
  std::chrono::seconds validity{0};     // 0: the profile's default
  bool force_command = false;           // a force-command is asked for
  bool source_address = false;          // a source-address is asked for
  // Unset: the profile's default extensions (user) or none (host).
  std::optional<std::vector<std::string>> extensions;
};

// What an allowed request gets.
struct SshCertGrant {
  std::string profile;
  std::chrono::seconds validity{0};
  std::vector<std::string> extensions;  // user certificates only
};

// Matches an SSH principal against a profile pattern: '*' any run, '?' one
// character, "[a-z0-9]" one character of a class ("[!...]" negated);
// everything else literally. Iterative, no recursion. A malformed class never
// matches (Policy::Parse refuses such patterns).
bool SshPrincipalMatch(std::string_view pattern, std::string_view text);
// True when every '[' in `pattern` opens a non-empty class closed by ']'
// whose ranges go upwards.
bool SshPrincipalPatternIsWellFormed(std::string_view pattern);

}  // namespace custos::policy
