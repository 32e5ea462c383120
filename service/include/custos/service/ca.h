// The certificate authority core: pure X.509 logic for issuance under
// profiles, CA hierarchy creation, CSRs and CRLs. No sockets, no files, no
// policy lookups: the service maps policy onto a Profile, finds the CA key on
// the token (pkcs11::Token::OpenSslKey) and calls these functions.
//
// Everything is built with OpenSSL's builders and signed with an EVP_PKEY, so
// an HSM-backed key signs inside the HSM. Issuance follows "lint, then sign
// exactly what was linted": the to-be-signed certificate is built, linted,
// encoded; after signing, the result is re-parsed, its signature verified
// with the CA public key, and its TBS bytes compared with the linted ones.
//
// Every refusal is an Error whose `rule` is a stable name (for the wire
// status, the audit record and docs/ca.md) and whose `message` is one line an
// operator can act on. Nothing secret ever goes into an Error.
//
// Thread safety: free functions are reentrant. A CertificateAuthority is
// immutable after Create and may be used from several threads at once if its
// signing key may (pkcs11 keys may).
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace custos::service::ca {

using Bytes = std::vector<std::uint8_t>;
using Clock = std::chrono::system_clock;
using Time = Clock::time_point;

// ---------------------------------------------------------------------------
// Errors

struct Error {
  std::string rule;     // e.g. "san-dns-suffix", "csr-signature", "lint-ku-vs-bc"
  std::string message;  // one line, no secrets
  // "rule: message", for logs and wire statuses.
  std::string ToString() const { return rule + ": " + message; }
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

// ---------------------------------------------------------------------------
// Names

// One attribute of a distinguished name. `type` is the OpenSSL short name
// ("CN", "O", "OU", "C", "L", "ST", "DC", "serialNumber", "emailAddress") or
// the dotted OID for attributes without one; `value` is UTF-8.
struct NameAttribute {
  std::string type;
  std::string value;
  bool operator==(const NameAttribute&) const = default;
};

// Parses an RFC 4514 string such as "CN=Custos Root,O=Example,C=US" strictly:
// attribute types CN, O, OU, C, L, ST, DC, serialNumber; values non-empty,
// escapes only "\," "\+" "\=" "\\" "\"" "\<" "\>" "\;" and "\ " (no hex
// escapes), no multi-valued RDNs, C exactly two letters A-Z, no duplicate
// separators, optional single spaces after commas. As in RFC 4514 the
// rightmost RDN is the first (most significant) in the encoded name, so the
// result is in encoding order: {C, O, CN} for the example. Rule "subject-dn".
Result<std::vector<NameAttribute>> ParseDn(std::string_view text);

// The RFC 2253/4514 one-line form of a DER-encoded Name ("CN=a,O=b,C=US").
std::string NameToString(const X509_NAME* name);

// ---------------------------------------------------------------------------
// Subject alternative names

struct San {
  enum class Type { kDns, kIp, kUri, kEmail };
  Type type = Type::kDns;
  // kDns: lower-case name; kIp: canonical text ("10.0.0.1", "2001:db8::1");
  // kUri: the URI as given; kEmail: "local@domain".
  std::string value;
  bool operator==(const San&) const = default;
};

// "dns:NAME", "ip:ADDR", "uri:URI", "email:ADDR" (the --san syntax).
// Rule "san-syntax".
Result<San> ParseSan(std::string_view text);
// The same form back ("dns:www.example.test").
std::string SanToString(const San& san);

// ---------------------------------------------------------------------------
// Profiles

enum class KeyAlgorithm { kEcP256, kEcP384, kRsa, kEd25519 };
std::string_view KeyAlgorithmName(KeyAlgorithm algorithm);  // "ec-p256", "rsa", ...

// Key usage bits, numbered as in RFC 5280 §4.2.1.3 (bit n = 1 << n).
enum KeyUsage : std::uint16_t {
  kDigitalSignature = 1 << 0,
  kNonRepudiation = 1 << 1,
  kKeyEncipherment = 1 << 2,
  kDataEncipherment = 1 << 3,
  kKeyAgreement = 1 << 4,
  kKeyCertSign = 1 << 5,
  kCrlSign = 1 << 6,
  kEncipherOnly = 1 << 7,
  kDecipherOnly = 1 << 8,
};

// Extended key usage OIDs (RFC 5280 §4.2.1.12).
inline constexpr char kEkuServerAuth[] = "1.3.6.1.5.5.7.3.1";
inline constexpr char kEkuClientAuth[] = "1.3.6.1.5.5.7.3.2";
inline constexpr char kEkuCodeSigning[] = "1.3.6.1.5.5.7.3.3";
inline constexpr char kEkuEmailProtection[] = "1.3.6.1.5.5.7.3.4";
inline constexpr char kEkuTimeStamping[] = "1.3.6.1.5.5.7.3.8";
inline constexpr char kEkuOcspSigning[] = "1.3.6.1.5.5.7.3.9";

struct SanRules {
  // DNS names strictly under one of these suffixes (".dev.custos.test"
  // admits "a.dev.custos.test" and "b.a.dev.custos.test", not
  // "dev.custos.test"), or equal to one of `dns_exact`.
  std::vector<std::string> dns_suffixes;
  std::vector<std::string> dns_exact;
  // A leading "*." label is admitted only if this is true and the rest of
  // the name is admitted.
  bool allow_wildcards = false;
  // CIDR ranges ("10.0.0.0/8", "fd00::/8") for IP SANs.
  std::vector<std::string> ip_ranges;
  // Byte-wise prefixes for URI SANs ("spiffe://dev.custos.test/").
  std::vector<std::string> uri_prefixes;
  // Domains (exact, case-insensitive) for e-mail SANs ("custos.test").
  std::vector<std::string> email_domains;
  int min_count = 1;       // at least this many SANs in total
  int max_count = 10;      // at most this many SANs in total
  int max_uri_count = -1;  // at most this many URI SANs; -1: no own limit
};

enum class SubjectMode {
  kFromCsr,  // fixed_rdns, then the CSR's attributes whose type is allowed
  kEmpty,    // empty subject; the SAN extension is then critical
};

struct SubjectRules {
  SubjectMode mode = SubjectMode::kFromCsr;
  // Attribute types ("CN", "O", ...) the CSR may supply. Any other attribute
  // in the CSR subject refuses issuance (rule "subject-attribute").
  std::vector<std::string> allowed_from_csr = {"CN"};
  // Attributes the profile sets, first in the subject, in this order. A CSR
  // attribute of a fixed type must carry the same value.
  std::vector<NameAttribute> fixed_rdns;
};

struct Profile {
  std::string name;
  std::vector<KeyAlgorithm> key_algorithms;
  int rsa_min_bits = 2048;  // never below 2048
  std::chrono::seconds max_validity{0};
  std::chrono::seconds default_validity{0};
  std::uint16_t key_usage = 0;              // KeyUsage bits
  std::vector<std::string> ext_key_usages;  // dotted OIDs; required for leaves
  bool is_ca = false;
  int path_len = -1;  // CA only; -1: no pathLenConstraint
  SanRules sans;
  SubjectRules subject;
  std::vector<std::string> crl_urls;         // CRL distribution points
  std::vector<std::string> ocsp_urls;        // AIA id-ad-ocsp
  std::vector<std::string> ca_issuers_urls;  // AIA id-ad-caIssuers
  // CSR extensions copied into the certificate (value and criticality as in
  // the CSR) when their dotted OID is listed here. Extensions the profile
  // builds itself (BC, KU, EKU, SAN, SKI, AKI, CRL DP, AIA) may not be listed.
  std::vector<std::string> csr_extension_allowlist;
  // Public-TLS style: validity capped by the CA/Browser Forum schedule
  // (398 days; 200 from 2026-03-15; 100 from 2027-03-15; 47 from
  // 2029-03-15), judged by notBefore.
  bool public_tls = false;
};

// Checks a profile for internal consistency (rule "profile-invalid"): a name,
// at least one key algorithm, rsa_min_bits >= 2048, 0 < default <= max
// validity, KU consistent with is_ca, EKUs for leaves, parseable OIDs, CIDRs
// and URLs, an allow-list that does not name profile-built extensions.
Status ValidateProfile(const Profile& profile);

// The CA/Browser Forum maximum validity period for a certificate whose
// notBefore is `not_before` (inclusive period: notAfter - notBefore + 1 s).
std::chrono::seconds CabForumMaxValidity(Time not_before);

// ---------------------------------------------------------------------------
// CSRs

struct CsrExtension {
  std::string oid;  // dotted
  bool critical = false;
  Bytes value;  // the extnValue contents (DER of the extension's value)
};

// A certificate signing request whose DER is strict, whose self-signature
// verified, and whose requested extensions were decoded. Only Csr::Parse
// makes one.
class Csr {
 public:
  // Accepts DER or one PEM "CERTIFICATE REQUEST" block (decoded, then held to
  // the same DER rules). Rules: "csr-pem", "csr-der" (malformed or not
  // canonical DER), "csr-trailing-bytes", "csr-version", "csr-public-key",
  // "csr-signature", "csr-attributes", "csr-duplicate-extension",
  // "csr-san" (an undecodable SAN or a name type other than DNS, IP, URI,
  // e-mail), "subject-multivalued-rdn".
  static Result<Csr> Parse(std::span<const std::uint8_t> input);

  const Bytes& der() const { return der_; }
  const Bytes& spki_der() const { return spki_der_; }
  const std::vector<NameAttribute>& subject() const { return subject_; }
  const std::vector<San>& sans() const { return sans_; }
  const std::vector<CsrExtension>& extensions() const { return extensions_; }

 private:
  Csr() = default;
  Bytes der_;
  Bytes spki_der_;
  std::vector<NameAttribute> subject_;
  std::vector<San> sans_;
  std::vector<CsrExtension> extensions_;
};

// A CSR for `key` (for example an HSM-held key that an external CA is to
// certify), subject from ParseDn(subject_dn), signed with `key` (SHA-256,
// SHA-384 for P-384, pure for Ed25519). With `ca_request` the CSR asks for
// basicConstraints CA:TRUE and keyCertSign/cRLSign. Returns the DER, which
// has been re-parsed with Csr::Parse (so its signature verified).
Result<Bytes> GenerateCsr(std::string_view subject_dn, EVP_PKEY* key, bool ca_request);

// ---------------------------------------------------------------------------
// Subject key checks

struct KeyCheckHooks {
  // True if this SubjectPublicKeyInfo (DER) is a key Custos itself holds;
  // such keys are refused (rule "key-held-by-custos"). May be empty.
  std::function<bool(std::span<const std::uint8_t> spki_der)> key_is_custos_held;
};

// Checks a subject public key against the profile. Rules: "key-decode",
// "key-algorithm" (not in the allow-list), "rsa-min-bits",
// "rsa-modulus-size" (not a multiple of 8), "rsa-exponent" (not 65537),
// "rsa-small-factor", "rsa-roca" (ROCA fingerprint, CVE-2017-15361),
// "rsa-fermat" (p and q close enough for Fermat's method), "ec-point",
// "key-held-by-custos".
Status CheckSubjectKey(std::span<const std::uint8_t> spki_der, const Profile& profile,
                       const KeyCheckHooks& hooks);

// The two RSA weaknesses on their own, on a DER SubjectPublicKeyInfo or a
// modulus, for tests and diagnostics.
bool HasRocaFingerprint(std::span<const std::uint8_t> modulus_be);
// Tries `iterations` steps of Fermat's method from ceil(sqrt(n)).
bool FermatFactors(std::span<const std::uint8_t> modulus_be, int iterations);

// ---------------------------------------------------------------------------
// Certificate authorities

// A CA certificate with its private key. The key is typically HSM-backed
// (pkcs11::Token::OpenSslKey); the Token must outlive this object.
class CertificateAuthority {
 public:
  // Refuses (rule "ca-invalid") a certificate that does not parse, is not a
  // CA (basicConstraints CA:TRUE), lacks keyCertSign in a key usage
  // extension, or whose public key is not the public half of `key`. Takes a
  // reference on `key`.
  static Result<CertificateAuthority> Create(std::span<const std::uint8_t> cert_der, EVP_PKEY* key);

  const Bytes& cert_der() const { return cert_der_; }
  const X509* cert() const { return cert_.get(); }
  EVP_PKEY* key() const { return key_.get(); }
  Time not_before() const { return not_before_; }
  Time not_after() const { return not_after_; }
  // The CA's subject key identifier (its SKI extension, else RFC 5280 §4.2.1.2
  // method 1 over its key).
  const Bytes& key_id() const { return key_id_; }

 private:
  CertificateAuthority() = default;
  Bytes cert_der_;
  std::shared_ptr<X509> cert_;
  std::shared_ptr<EVP_PKEY> key_;
  Time not_before_;
  Time not_after_;
  Bytes key_id_;
};

struct IssueRequest {
  // The SANs to certify; empty: those the CSR requests. Each must be
  // admitted by the profile.
  std::vector<San> sans;
  // Requested validity; nullopt: the profile's default. Over the profile's
  // maximum or the CA/B Forum cap: refused. Always capped by the CA's
  // notAfter.
  std::optional<std::chrono::seconds> validity;
  // A subset of the profile's EKUs; empty: all of them ("eku-not-allowed").
  std::vector<std::string> ext_key_usages;
};

struct IssueHooks {
  KeyCheckHooks keys;
  // True if no certificate of this CA has this serial yet. May be empty.
  std::function<bool(std::span<const std::uint8_t> serial)> serial_is_unused;
  // The issuance time; nullopt: the system clock. For tests.
  std::optional<Time> now;
};

struct IssuedCertificate {
  Bytes der;
  Bytes serial;         // big-endian content octets of the serial INTEGER
  std::string subject;  // NameToString of the issued subject; "" if empty
  std::vector<San> sans;
  Time not_before;
  Time not_after;
  // Dotted OIDs of CSR extensions that were not copied (not allow-listed).
  std::vector<std::string> dropped_csr_extensions;
};

struct LintOptions;  // below, with the linter

// A to-be-signed certificate, built and linted but not signed. Issuance under
// quorum keeps `tbs_der` as the request's payload: officers approve it and
// execution signs exactly these bytes (SignPrepared).
struct PreparedCertificate {
  Bytes tbs_der;        // DER TBSCertificate (its signature field names the CA key's algorithm)
  Bytes serial;         // big-endian content octets of the serial INTEGER
  std::string subject;  // NameToString of the subject; "" if empty
  std::string issuer;   // NameToString of the issuer
  std::vector<San> sans;
  Time not_before;
  Time not_after;
  std::string key_algorithm;  // subject key: "ec-p256", "ec-p384", "rsa-2048", "ed25519"
  std::vector<std::string> ext_key_usages;  // dotted OIDs
  bool is_ca = false;
  int path_len = -1;     // CA only; -1: none
  Bytes spki_der;        // the subject public key, canonical (EC points uncompressed)
  Bytes subject_key_id;  // the SKI extension's value; empty if none
  // Dotted OIDs of CSR extensions that were not copied (PrepareIssue only).
  std::vector<std::string> dropped_csr_extensions;
};

// Issue() up to and including the linter: every check, a fresh serial, the
// TBS built, linted and encoded. Nothing is signed.
Result<PreparedCertificate> PrepareIssue(const CertificateAuthority& ca, const Profile& profile,
                                         const Csr& csr, const IssueRequest& request,
                                         const IssueHooks& hooks);

// Signs exactly `tbs_der` (from PrepareIssue or PrepareIntermediate under
// this CA): parses it ("tbs-invalid"), checks that its signature algorithm
// fits the CA key ("sign-failed"), lints it again against the CA's
// certificate ("lint-*", e.g. "lint-issuer-matches-ca" for a TBS prepared
// under another CA), signs the bytes, re-parses and verifies the result
// ("sign-verify") and compares its TBS with `tbs_der` ("sign-tbs-mismatch").
// `dropped_csr_extensions` of the result is empty.
Result<IssuedCertificate> SignPrepared(const CertificateAuthority& ca,
                                       std::span<const std::uint8_t> tbs_der,
                                       const LintOptions& lint);

// What a TBS certifies, read back from its bytes (officers' consoles, the
// service at execution). "tbs-invalid" if it does not parse as DER.
Result<PreparedCertificate> DescribeTbs(std::span<const std::uint8_t> tbs_der);
// The same for a signed certificate (DER); "cert-invalid" if it does not parse.
Result<PreparedCertificate> DescribeCertificate(std::span<const std::uint8_t> cert_der);

// Issues a certificate for `csr` under `profile`: PrepareIssue, then
// SignPrepared. Checks, in order: the
// profile (ValidateProfile), the CA's validity ("ca-expired",
// "ca-not-yet-valid"), the subject
// key (CheckSubjectKey; also refuses the CA's own key), the subject
// ("subject-attribute", "subject-fixed-mismatch", "subject-multiple-cn",
// "subject-attribute-invalid", "cn-not-in-sans"), the SANs ("san-missing",
// "san-count", "san-uri-count", "san-duplicate", "san-wildcard",
// "san-dns-suffix", "san-ip-range", "san-uri-prefix", "san-email-domain",
// "san-syntax"), the EKUs ("eku-not-allowed"), the validity
// ("validity-invalid", "validity-cap", "validity-cab-forum"), the serial
// ("serial-unique"), then the linter ("lint-*"), and signing ("sign-failed",
// "sign-verify", "sign-tbs-mismatch").
Result<IssuedCertificate> Issue(const CertificateAuthority& ca, const Profile& profile,
                                const Csr& csr, const IssueRequest& request,
                                const IssueHooks& hooks);

struct RootRequest {
  std::string subject_dn;  // ParseDn syntax
  std::chrono::seconds validity{0};
  int path_len = -1;  // -1: no pathLenConstraint
  std::optional<Time> now;
};

// A self-signed root certificate for `key` (RSA or EC, typically on the
// token): CA:TRUE (critical), keyCertSign|cRLSign (critical), SKI, AKI = SKI.
// Linted, signed, re-parsed and verified like any issuance. PrepareRoot
// then SignPreparedRoot.
Result<IssuedCertificate> CreateRoot(const RootRequest& request, EVP_PKEY* key);
// The root's TBS, linted; `key` (the root key) only names the algorithm.
Result<PreparedCertificate> PrepareRoot(const RootRequest& request, EVP_PKEY* key);
// Signs exactly `tbs_der` with the root key it certifies ("ca-invalid" if
// the TBS's public key is not `key`'s), as SignPrepared.
Result<IssuedCertificate> SignPreparedRoot(std::span<const std::uint8_t> tbs_der, EVP_PKEY* key);

struct IntermediateRequest {
  std::string subject_dn;
  Bytes spki_der;  // the intermediate's (Custos-held) public key
  std::chrono::seconds validity{0};
  int path_len = -1;
  std::vector<std::string> crl_urls;
  std::vector<std::string> ocsp_urls;
  std::vector<std::string> ca_issuers_urls;
};

// An intermediate CA certificate signed by `parent`, for a key Custos holds
// (so no "key-held-by-custos" check; the other key checks apply). Validity is
// capped by the parent's notAfter; a parent with a pathLenConstraint of 0
// refuses ("ca-path-len").
Result<IssuedCertificate> CreateIntermediate(const CertificateAuthority& parent,
                                             const IntermediateRequest& request,
                                             const IssueHooks& hooks);
// CreateIntermediate up to the linter; sign with SignPrepared(parent, ...).
Result<PreparedCertificate> PrepareIntermediate(const CertificateAuthority& parent,
                                                const IntermediateRequest& request,
                                                const IssueHooks& hooks);

// ---------------------------------------------------------------------------
// Linter

struct LintOptions {
  bool allow_wildcards = false;
};

// Lints a certificate (DER) issued by `issuer_cert_der` (the same bytes for a
// self-signed certificate). Returns the first finding: "lint-version",
// "lint-serial", "lint-issuer-matches-ca", "lint-aki-matches-ca",
// "lint-key-identifiers", "lint-validity-order", "lint-validity-encoding",
// "lint-ku-vs-bc", "lint-eku-present", "lint-san-encoding",
// "lint-empty-subject-san-critical", "lint-extension-criticality",
// "lint-duplicate-extension". Issuance runs the same linter on the
// to-be-signed certificate.
Status LintCertificate(std::span<const std::uint8_t> cert_der,
                       std::span<const std::uint8_t> issuer_cert_der, const LintOptions& options);

// ---------------------------------------------------------------------------
// CRLs

// RFC 5280 §5.3.1 CRLReason. 7 is unused; removeFromCRL (8) belongs to delta
// CRLs, which Custos does not make.
enum class RevocationReason {
  kUnspecified = 0,
  kKeyCompromise = 1,
  kCaCompromise = 2,
  kAffiliationChanged = 3,
  kSuperseded = 4,
  kCessationOfOperation = 5,
  kCertificateHold = 6,
  kPrivilegeWithdrawn = 9,
  kAaCompromise = 10,
};

struct RevokedCertificate {
  Bytes serial;  // big-endian content octets, as IssuedCertificate::serial
  Time revoked_at;
  RevocationReason reason = RevocationReason::kUnspecified;
};

struct CrlRequest {
  std::uint64_t crl_number = 0;
  // The number of the last CRL this CA issued, if any; crl_number must be
  // greater ("crl-number").
  std::optional<std::uint64_t> previous_crl_number;
  Time this_update;
  Time next_update;                         // after this_update ("crl-next-update")
  std::vector<RevokedCertificate> revoked;  // no duplicates ("crl-duplicate-serial")
};

// A v2 CRL signed by the CA: CRL number, AKI, one entry per revoked serial
// with its revocation date and (unless unspecified) its reasonCode. The CA
// must be allowed to sign CRLs ("crl-ca-no-crlsign"). Re-parsed and verified
// with the CA's public key before it is returned.
Result<Bytes> BuildCrl(const CertificateAuthority& ca, const CrlRequest& request);

}  // namespace custos::service::ca
