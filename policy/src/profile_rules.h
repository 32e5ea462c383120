// Syntax checks and name tables for certificate profiles (policy.proto
// Profile), shared by the policy compiler and the profile queries. Internal
// to policy/. These mirror what the service's CA core accepts, so that a
// profile the policy admits is one the CA core can use.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace custos::policy::internal {

// The subject key algorithm names a profile may list.
bool IsProfileKeyAlgorithm(std::string_view name);
// "rsa, ec-p256, ec-p384, ed25519".
std::string ProfileKeyAlgorithmNames();

// The RFC 5280 key usage bit for a name ("digitalSignature"), if known.
std::optional<std::uint16_t> KeyUsageBit(std::string_view name);
std::string KeyUsageNames();

// The dotted OID of an extended key usage name ("serverAuth"), or the OID
// itself when `name` is a well-formed dotted OID; nullopt otherwise.
std::optional<std::string> ExtKeyUsageOid(std::string_view name);
std::string ExtKeyUsageNames();

// A dotted OID: at least two arcs, decimal without leading zeros, first arc
// 0..2, second arc < 40 under arcs 0 and 1, each arc < 2^63.
bool IsDottedOid(std::string_view text);

// True if the dotted OID names an extension the CA core builds itself
// (basicConstraints, keyUsage, extKeyUsage, subjectAltName, subject and
// authority key identifiers, CRL distribution points, authority info access).
bool IsProfileBuiltExtension(std::string_view oid);

// "10.0.0.0/8", "fd00::/8": address (inet_pton) and prefix within its width.
bool IsCidr(std::string_view text);

// LDH labels of 1..63 characters, at least two labels, at most 253 bytes; a
// leading "*" label only with `allow_wildcard` (then at least three labels).
bool IsDnsName(std::string_view name, bool allow_wildcard);

// An absolute URI: scheme ALPHA *(ALPHA / DIGIT / "+" / "-" / ".") ":" and a
// non-empty rest of printable ASCII without spaces, at most 2048 bytes.
bool IsAbsoluteUri(std::string_view uri);
// IsAbsoluteUri with scheme http, https or ldap and "//" after the colon.
bool IsDistributionUrl(std::string_view url);

// Subject attribute types: CN, O, OU, C, L, ST, DC, serialNumber.
bool IsSubjectAttributeType(std::string_view type);
std::string SubjectAttributeTypes();
// Empty when `value` is acceptable for `type`; otherwise why not.
std::string CheckSubjectAttributeValue(std::string_view type, std::string_view value);

}  // namespace custos::policy::internal
