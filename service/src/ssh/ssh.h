// OpenSSH formats for Custos: the SSH wire encoding (RFC 4251 §5), public-key
// blobs and authorized_keys lines (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709),
// OpenSSH certificates (PROTOCOL.certkeys) and SSHSIG file signatures
// (PROTOCOL.sshsig).
//
// Pure code: no sockets, no files, no policy. Wire formats are assembled by
// hand; OpenSSL is used only to read SPKI keys, hash and verify. Signing is a
// caller-supplied Signer, so a CA key inside the HSM signs without this code
// ever seeing it. Every signature a Signer returns is verified against the
// signing public key before it is used (a faulty HSM or a wrong key handle
// yields an error, never a bad certificate).
//
// Errors are values: `rule` is a stable name (for wire statuses, audit records
// and docs), `message` one line an operator can act on. Nothing secret is ever
// put into an Error.
//
// Thread safety: all functions are reentrant. A Signer from EvpSigner may be
// called from several threads if the EVP_PKEY may (pkcs11 keys may).
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace custos::service::ssh {

using Bytes = std::vector<std::uint8_t>;
using ByteSpan = std::span<const std::uint8_t>;

// ---------------------------------------------------------------------------
// Errors

struct Error {
  std::string rule;     // e.g. "ssh-key-format", "ssh-cert-principals"
  std::string message;  // one line, no secrets
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

// ---------------------------------------------------------------------------
// Wire encoding (RFC 4251 §5)

// Appends SSH wire values to a byte buffer.
class Writer {
 public:
  void U8(std::uint8_t v) { out_.push_back(v); }
  void U32(std::uint32_t v);
  void U64(std::uint64_t v);
  // Raw bytes, no length prefix.
  void Raw(ByteSpan data) { out_.insert(out_.end(), data.begin(), data.end()); }
  // uint32 length, then the bytes. Precondition: data.size() < 2^32.
  void String(ByteSpan data);
  void String(std::string_view data);
  // `magnitude` is an unsigned big-endian integer (leading zeros allowed);
  // written as a non-negative mpint in minimal two's complement form.
  void Mpint(ByteSpan magnitude);

  const Bytes& bytes() const& { return out_; }
  Bytes&& bytes() && { return std::move(out_); }

 private:
  Bytes out_;
};

// Reads SSH wire values from a buffer it does not own. Every getter returns
// false (and leaves the output untouched) when the input is too short; no
// getter reads past the end.
class Reader {
 public:
  explicit Reader(ByteSpan in) : in_(in) {}
  bool U8(std::uint8_t* v);
  bool U32(std::uint32_t* v);
  bool U64(std::uint64_t* v);
  bool Raw(std::size_t n, ByteSpan* out);
  // A length-prefixed string; `out` points into the input.
  bool String(ByteSpan* out);
  bool String(std::string* out);
  // A non-negative mpint in minimal form (RFC 4251: no needless leading zero
  // byte, no negative values). `magnitude` is unsigned big-endian, no
  // leading zeros (empty for zero).
  bool Mpint(ByteSpan* magnitude);
  bool empty() const { return in_.empty(); }
  std::size_t remaining() const { return in_.size(); }

 private:
  ByteSpan in_;
};

// Standard base64 with padding, no line breaks.
std::string Base64Encode(ByteSpan data);
// Strict: the standard alphabet, padding required, no whitespace, no bits
// set after the last byte. nullopt on any violation.
std::optional<Bytes> Base64Decode(std::string_view text);

// ---------------------------------------------------------------------------
// Public keys

enum class KeyType {
  kEd25519,    // "ssh-ed25519"
  kEcdsaP256,  // "ecdsa-sha2-nistp256"
  kEcdsaP384,  // "ecdsa-sha2-nistp384"
  kRsa,        // "ssh-rsa" (signs as rsa-sha2-512)
};

// "ssh-ed25519", "ecdsa-sha2-nistp256", ...
std::string_view KeyTypeName(KeyType type);
// The certificate type name: "ssh-ed25519-cert-v01@openssh.com", ...
std::string_view CertTypeName(KeyType type);
// The signature algorithm Custos signs with: "ssh-ed25519",
// "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "rsa-sha2-512".
std::string_view SignatureAlgorithm(KeyType type);

// A validated public key. Only the factories below create one, so `blob` is
// always a well-formed key of `type`.
class PublicKey {
 public:
  KeyType type() const { return type_; }
  // The public-key blob: string(type name) followed by the key fields.
  const Bytes& blob() const { return blob_; }
  // The key fields after the type name (what a certificate embeds).
  ByteSpan fields() const;
  // "ssh-ed25519 AAAA...", plus " comment" when the comment is not empty.
  std::string ToLine(std::string_view comment = {}) const;
  // "SHA256:..." as ssh-keygen -l prints it.
  std::string Fingerprint() const;
  // The key as an OpenSSL public key / DER SubjectPublicKeyInfo.
  Result<Bytes> ToSpki() const;
  bool operator==(const PublicKey& other) const { return blob_ == other.blob_; }

  // From a DER SubjectPublicKeyInfo (Ed25519, EC P-256/P-384, RSA 2048..8192).
  static Result<PublicKey> FromSpki(ByteSpan der);
  // From a public key held by OpenSSL (e.g. an HSM-backed EVP_PKEY).
  static Result<PublicKey> FromEvp(const EVP_PKEY* key);
  // From a wire blob; strict: known type, canonical fields, no trailing bytes,
  // EC point on the curve, RSA sizes bounded.
  static Result<PublicKey> FromBlob(ByteSpan blob);

 private:
  PublicKey(KeyType type, Bytes blob) : type_(type), blob_(std::move(blob)) {}
  KeyType type_;
  Bytes blob_;
};

struct AuthorizedKey {
  PublicKey key;
  std::string comment;  // printable ASCII/UTF-8, may be empty
};

// Longest authorized_keys line accepted (OpenSSH itself caps at 8 KiB for
// keys; RSA-8192 lines are ~1.4 KiB).
inline constexpr std::size_t kMaxKeyLineLength = 8192;

// Parses "type base64 [comment]" strictly: one line, no key options, no
// certificates, the type word must match the blob's type. Leading and
// trailing spaces and a final newline are tolerated; control characters are
// not.
Result<AuthorizedKey> ParseAuthorizedKey(std::string_view line);

// ---------------------------------------------------------------------------
// Signing

// Signs `data` with the CA or signing key and returns the raw signature in
// SSH format for the key type (the contents of the signature blob's second
// string): Ed25519: the 64 signature bytes; ECDSA: mpint r || mpint s (see
// EcdsaSignatureFromDer); RSA: the PKCS#1 v1.5 signature with SHA-512.
using Signer = std::function<Result<Bytes>(ByteSpan data)>;

// Converts a DER ECDSA-Sig-Value (what OpenSSL returns) into mpint r || mpint s.
Result<Bytes> EcdsaSignatureFromDer(ByteSpan der);

// For signers that take a digest rather than the message (such as
// pkcs11::Token::Sign): what the key must sign for `data` — SHA-256 (P-256),
// SHA-384 (P-384) or SHA-512 (RSA, PKCS#1 v1.5) of `data`, or `data` itself
// for Ed25519.
Bytes SigningInput(KeyType type, ByteSpan data);

// Converts a signature in the form standard verifiers expect (DER
// ECDSA-Sig-Value for ECDSA, raw bytes for RSA and Ed25519) into what a Signer
// returns. So an HSM-backed Signer is:
//   [&](ByteSpan d) { auto s = token.Sign(ref, alg, SigningInput(t, d));
//                     ...; return SshSignatureFromStandard(t, *s); }
Result<Bytes> SshSignatureFromStandard(KeyType type, ByteSpan signature);

// A Signer that signs with `key` (software or HSM-backed) the way
// SignatureAlgorithm(type) prescribes. Takes a reference on `key`.
Result<Signer> EvpSigner(EVP_PKEY* key);

// Checks a signature blob (string algorithm, string signature) over `data`
// with `key`. Accepts exactly SignatureAlgorithm(key.type()) and, for RSA,
// also rsa-sha2-256.
Result<bool> VerifySignatureBlob(const PublicKey& key, ByteSpan data, ByteSpan signature_blob);

// ---------------------------------------------------------------------------
// OpenSSH certificates (PROTOCOL.certkeys)

enum class CertType : std::uint32_t { kUser = 1, kHost = 2 };

// Extensions OpenSSH knows for user certificates. Others are refused.
inline constexpr std::string_view kKnownExtensions[] = {
    "no-touch-required",
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
};

inline constexpr std::size_t kMaxPrincipals = 256;

struct CertificateSpec {
  CertType type = CertType::kUser;
  std::uint64_t serial = 0;
  std::string key_id;                   // printable, <= 256 bytes, may be empty
  std::vector<std::string> principals;  // at least one; printable, no commas
  std::uint64_t valid_after = 0;        // seconds since the epoch
  std::uint64_t valid_before = 0;       // exclusive of 0; > valid_after
  // Critical options (user certificates only).
  std::optional<std::string> force_command;
  std::optional<std::string> source_address;  // "10.0.0.0/8,192.168.1.1"
  // Extension names from kKnownExtensions (user certificates only); encoded
  // sorted and deduplicated.
  std::vector<std::string> extensions;
  // Empty: 32 fresh random bytes. Tests may fix it (exactly 32 bytes).
  Bytes nonce;
};

struct Certificate {
  KeyType subject_type;
  Bytes blob;  // the full certificate, signature included
  // "ssh-ed25519-cert-v01@openssh.com AAAA... [comment]"
  std::string ToLine(std::string_view comment = {}) const;
};

// Validates `spec`, builds the to-be-signed certificate for `subject` with
// `ca` as the signature key, signs it through `sign`, verifies the signature
// with `ca`, and returns the certificate. The CA key may not be the subject.
Result<Certificate> SignCertificate(const CertificateSpec& spec, const PublicKey& subject,
                                    const PublicKey& ca, const Signer& sign);

// The to-be-signed part alone (everything before the signature string), for
// callers that sign elsewhere. Same validation as SignCertificate.
Result<Bytes> CertificateToBeSigned(const CertificateSpec& spec, const PublicKey& subject,
                                    const PublicKey& ca);

// ---------------------------------------------------------------------------
// SSHSIG (PROTOCOL.sshsig)

inline constexpr std::size_t kSha512Size = 64;

// The blob the key signs: "SSHSIG", string namespace, string reserved (""),
// string "sha512", string digest. `digest` is the SHA-512 of the message,
// computed by the client. Namespace: 1..64 bytes of [A-Za-z0-9@._-].
Result<Bytes> SshsigSignedData(std::string_view ns, ByteSpan sha512_digest);

// Signs through `sign` (and verifies), then returns the armored signature
// "-----BEGIN SSH SIGNATURE-----\n" + base64 wrapped at 70 columns +
// "-----END SSH SIGNATURE-----\n", as ssh-keygen -Y sign writes it.
Result<std::string> SignSshsig(const PublicKey& key, std::string_view ns, ByteSpan sha512_digest,
                               const Signer& sign);

// Armors an already made signature blob (string alg, string sig).
Result<std::string> ArmorSshsig(const PublicKey& key, std::string_view ns, ByteSpan signature_blob);

}  // namespace custos::service::ssh
