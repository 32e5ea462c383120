// Certificate profiles and CA settings as the policy states them
// (policy.proto Profile, CaSettings; docs/policy.md "Certificate profiles").
// Plain values, already validated by Policy::Parse: the service maps a
// CertProfile onto its CA core's profile. Nothing here touches OpenSSL.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace custos::policy {

// Key usage bits, numbered as in RFC 5280 §4.2.1.3 (bit n = 1 << n).
enum CertKeyUsageBit : std::uint16_t {
  kKuDigitalSignature = 1 << 0,
  kKuNonRepudiation = 1 << 1,
  kKuKeyEncipherment = 1 << 2,
  kKuDataEncipherment = 1 << 3,
  kKuKeyAgreement = 1 << 4,
  kKuKeyCertSign = 1 << 5,
  kKuCrlSign = 1 << 6,
  kKuEncipherOnly = 1 << 7,
  kKuDecipherOnly = 1 << 8,
};

struct CertSanRules {
  std::vector<std::string> dns_suffixes;  // ".dev.custos.test": strictly under it
  std::vector<std::string> dns_exact;     // lower case
  bool allow_wildcards = false;
  std::vector<std::string> ip_ranges;      // CIDRs, as written (they parse)
  std::vector<std::string> uri_prefixes;   // byte-wise prefixes
  std::vector<std::string> email_domains;  // lower case
  int min_count = 1;
  int max_count = 10;
  int max_uri_count = -1;  // -1: no own limit
};

enum class CertSubjectMode {
  kFromCsr,  // `fixed`, then the CSR's attributes whose type is allowed
  kEmpty,    // empty subject; the SAN extension is critical
};

struct CertSubjectAttribute {
  std::string type;  // CN, O, OU, C, L, ST, DC, serialNumber
  std::string value;
};

struct CertSubjectRules {
  CertSubjectMode mode = CertSubjectMode::kFromCsr;
  std::vector<std::string> allowed_from_csr = {"CN"};  // empty for kEmpty
  std::vector<CertSubjectAttribute> fixed;             // empty for kEmpty
};

struct CertProfile {
  std::string name;
  std::string ca;  // the issuing CA's name
  std::vector<std::string> roles;
  // "rsa", "ec-p256", "ec-p384", "ed25519"; no duplicates.
  std::vector<std::string> key_algorithms;
  int rsa_min_bits = 2048;                   // 2048..16384
  std::chrono::seconds max_validity{0};      // > 0
  std::chrono::seconds default_validity{0};  // 0 < default <= max
  // RFC 5280 names as written ("digitalSignature") and the same as bits.
  std::vector<std::string> key_usage;
  std::uint16_t key_usage_bits = 0;
  // Dotted OIDs: names ("serverAuth") resolved, in the order written.
  std::vector<std::string> ext_key_usages;
  bool is_ca = false;
  int path_len = -1;  // is_ca only; -1: no pathLenConstraint
  CertSanRules san;
  CertSubjectRules subject;
  std::vector<std::string> crl_urls;
  std::vector<std::string> ocsp_urls;
  std::vector<std::string> ca_issuers_urls;
  std::vector<std::string> csr_extension_allowlist;  // dotted OIDs
  bool public_tls = false;
};

// The policy's ca_settings (defaults when absent).
struct CaSettings {
  std::chrono::seconds crl_validity{7 * 86400};
  std::chrono::seconds crl_resign_before{86400};  // < crl_validity
};

// Parses a policy duration: "<n>s", "<n>m", "<n>h", "<n>d" or "<n>y" (365
// days), n a decimal number without sign or leading zeros (except "0"), at
// most 100 years. Returns false (leaving *out alone) otherwise.
bool ParsePolicyDuration(std::string_view text, std::chrono::seconds* out);

}  // namespace custos::policy
