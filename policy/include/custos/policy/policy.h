// Custos policy: who may do what with which keys. Pure logic: no sockets, no
// HSM, no files. A Policy that exists is valid (validating factory).
//
// Default deny: a request is allowed only when some key rule bound to one of
// the principal's roles allows the operation on that key, its usage and the
// algorithm. Every decision names the rule that decided it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "custos/policy/profile.h"
#include "custos/policy/ssh_profile.h"

namespace custos::policy {

struct ParseError {
  int line = 0;    // 1-based; 0 when the error is not tied to a position
  int column = 0;  // 1-based
  std::string message;
  // "policy.txtpb:12:5: unknown field \"rolez\"" style.
  std::string ToString(std::string_view file_name = "policy") const;
};

enum class Operation {
  kSign,    // sign or sign-batch with a key
  kCreate,  // create (generate) a key
  kRead,    // list keys, show a key, fetch its public key
  // Key lifecycle; "algorithm" is the key type for kRotate, empty otherwise.
  kRotate,           // make version n+1 active
  kDisable,          // active -> deactivated
  kEnable,           // pre-activation / deactivated -> active
  kDestroy,          // destroy a version's token objects
  kMarkCompromised,  // mark a version compromised
};
std::string_view OperationName(Operation op);

// What is being asked, with everything already parsed and authenticated.
struct KeyRequest {
  std::string principal;  // from the client certificate
  Operation operation = Operation::kRead;
  std::string key_name;   // without "@version"
  std::string key_usage;  // "code-signing", "ca", ...
  // For kSign: the signing algorithm ("ecdsa-p256-sha256"); for kCreate and
  // kRotate: the key type ("ec-p256"); empty for the other operations.
  std::string algorithm;
};

// The rule name a refusal carries when no rule allowed the request. No key
// rule may take this name.
inline constexpr std::string_view kDefaultDenyRule = "default-deny";

// Operations on the policy itself (policy.proto AdminRule).
enum class AdminOperation {
  kReadPolicy,         // `custos policy show`
  kProposePolicy,      // `custos policy propose`
  kManageCa,           // create a root or intermediate CA, make a CA CSR, import a CA cert
  kRevokeCertificate,  // revoke an issued certificate
  kReadCertificates,   // list/show certificates, list/show CAs and their chains
};
std::string_view AdminOperationName(AdminOperation op);  // "READ_POLICY", "MANAGE_CA", ...

struct Decision {
  bool allowed = false;
  // The rule that allowed, or that refused; "default-deny" when none matched.
  std::string rule;
  // One line for the operator: why.
  std::string reason;
};

class Policy {
 public:
  // Parses Protobuf text format (schema: policy/proto/custos/policy/v1/policy.proto)
  // and validates references (bindings name existing roles, patterns are
  // well-formed, algorithm and usage names are known). Unknown fields are
  // errors. Returns the first error found, with its 1-based line and byte
  // column when it can be tied to a position. The rules: docs/policy.md.
  static std::variant<Policy, ParseError> Parse(std::string_view text);

  // Default deny. Thread-safe (const, no shared mutable state); allocates only
  // for the returned strings unless the policy has more than 256 roles.
  Decision Check(const KeyRequest& request) const;
  // Default deny for operations on the policy itself: allowed when an
  // admin_rule bound to one of the principal's roles lists `op`.
  Decision CheckAdmin(std::string_view principal, AdminOperation op) const;
  // Default deny for issuing a certificate under a profile: allowed when the
  // profile exists and the principal is bound to one of its roles. The
  // decision's rule is "profile:<name>" (or "default-deny" when no profile has
  // that name). Quorum is a separate question (QuorumPolicy::QuorumFor with
  // kCertIssue and the profile name).
  Decision CheckProfile(std::string_view principal, std::string_view profile_name) const;
  // The certificate profiles, in file order.
  std::vector<CertProfile> profiles() const;
  // The profile named `name`, or nullptr. Valid as long as this Policy.
  const CertProfile* FindProfile(std::string_view name) const;
  // The CA back-end settings (defaults when the file has no ca_settings).
  const CaSettings& ca_settings() const;
  // Default deny for an OpenSSH certificate signed by an ssh-ca key: allowed
  // when a profile names the key and the kind, the principal is bound to one
  // of its roles, and the request stays within it (principals, their count,
  // validity, extensions, critical options). On refusal the rule is
  // "ssh-profile:<name>:<check>" (check: roles, key, cert_types, principals,
  // max_principals, max_validity, extensions, force_command, source_address),
  // or "default-deny" when no profile applies. On success fills `grant`
  // (validity and extensions with the defaults applied).
  Decision CheckSshCertificate(const SshCertRequest& request, SshCertGrant* grant) const;
  // The SSH certificate profiles, in file order.
  const std::vector<SshProfile>& ssh_profiles() const;
  // The roles bound to a principal, for logs and `custos policy show`.
  std::vector<std::string> RolesOf(std::string_view principal) const;
  // The policy's own version number (from the file).
  std::uint64_t version() const;

  // The parsed file, for quorum.h (QuorumPolicy) and DiffPolicies. Opaque
  // outside policy/.
  struct Impl;
  const Impl& impl() const { return *impl_; }

  Policy(Policy&&) noexcept;
  Policy& operator=(Policy&&) noexcept;
  ~Policy();

 private:
  explicit Policy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Glob match for principal and key-name patterns: '*' matches any run of
// characters (also empty), '?' one character; everything else literally.
// Compares bytes (principals and key names are ASCII). Iterative, O(|pattern|
// * |text|) in the worst case, no recursion: safe on hostile input.
bool GlobMatch(std::string_view pattern, std::string_view text);

// The principal of brief §4: the first URI SAN, else the first DNS SAN, else
// the subject CN; empty if none of them is present.
std::string PrincipalFromIdentity(const std::vector<std::string>& uri_sans,
                                  const std::vector<std::string>& dns_sans,
                                  std::string_view common_name);

}  // namespace custos::policy
