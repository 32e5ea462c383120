// The HSM layer's public API. Everything custosd does with a private key goes
// through Token; no caller above pkcs11/ sees a CK_ type or a session handle.
//
// Thread safety: Token is safe to use from many threads at once. Signing takes
// a session from an internal pool; faults that invalidate sessions or the login
// (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN,
// CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, ...) make the pool reopen
// sessions, log in again and look keys up again; the call that saw the fault
// is retried once and otherwise fails with ErrorKind::kUnavailable. (Also
// healed: CKR_KEY_HANDLE_INVALID / CKR_OBJECT_HANDLE_INVALID, a handle cached
// before a logout; CKR_GENERAL_ERROR, which SoftHSM returns when the login
// vanishes mid-call.) Healing closes the pool's sessions (after in-flight
// calls return, at most session_wait), finds the token again by label/serial
// (re-initialising the module if that is needed to see it), logs in again,
// and looks keys up again, refusing a key whose public key differs from
// KeyRef::spki_der. One thread heals at a time; attempts are at least 200 ms
// apart; a PIN the token refused is never retried. No lock is held while a
// call is inside the module.
#pragma once

#include <openssl/evp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "custos/pkcs11/algorithms.h"
#include "custos/pkcs11/result.h"
#include "custos/pkcs11/secret.h"

namespace custos::pkcs11 {

struct TokenConfig {
  // Path of the PKCS#11 module (.so), e.g. /usr/lib/softhsm/libsofthsm2.so.
  std::string module_path;
  // Which token: a label, a serial number, or an RFC 7512 URI such as
  // "pkcs11:token=custos-dev" or "pkcs11:serial=1a2b3c".
  std::string token;
  // User PIN. Wiped when the Token is destroyed.
  SecretBytes pin;
  // Upper bound on open sessions (signing concurrency).
  std::size_t max_sessions = 8;
  // How long a caller waits for a free session before kTimeout.
  std::chrono::milliseconds session_wait{5000};
};

// One key pair on the token, as identified by the caller's metadata. The SPKI
// is what the key must be: a key found again after a re-login whose public
// key differs is refused, never used.
struct KeyRef {
  std::string label;             // CKA_LABEL, e.g. "custos/release-2024@1"
  std::vector<std::uint8_t> id;  // CKA_ID, random bytes chosen at generation
  KeyType type = KeyType::kEcP256;
  std::vector<std::uint8_t> spki_der;  // DER SubjectPublicKeyInfo
};

// A private key object found on the token (for inventory and reconciliation).
struct TokenKey {
  std::string label;
  std::vector<std::uint8_t> id;
  std::optional<KeyType> type;  // nullopt for key types we do not handle
  bool sensitive = false;
  bool extractable = true;
};

struct TokenInfo {
  std::string label;
  std::string serial;
  std::string manufacturer;
  std::string model;
  unsigned long slot_id = 0;
};

using UniqueEvpPkey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

class Token {
 public:
  virtual ~Token() = default;

  // Loads the module, finds the token, logs in as user. Refuses if the token
  // cannot be found or the PIN is wrong (CKR_PIN_INCORRECT in the message).
  static Result<std::unique_ptr<Token>> Open(TokenConfig config);

  virtual TokenInfo Info() const = 0;

  // Generates a key pair inside the token with CKA_TOKEN, CKA_PRIVATE,
  // CKA_SENSITIVE true and CKA_EXTRACTABLE false, a random 16-byte CKA_ID and
  // the given CKA_LABEL on both halves; then reads back CKA_ALWAYS_SENSITIVE
  // and CKA_NEVER_EXTRACTABLE and destroys and refuses a key lacking either.
  virtual Result<KeyRef> GenerateKeyPair(KeyType type, std::string_view label) = 0;

  // Signs `input` with the key: a digest of the algorithm's hash length, or
  // for Ed25519 the message itself. For RSA PKCS#1 v1.5 the DigestInfo is
  // built here; PSS uses MGF1 with the same hash and salt = hash length.
  // Returns the signature in the form standard verifiers expect: DER
  // ECDSA-Sig-Value for ECDSA, raw for RSA and Ed25519.
  // `key.spki_der` is required: the key is used only if the token's public
  // key for that label and id equals it (kPermission otherwise). The private
  // key handle is cached, so steady-state signing does no object search.
  // Errors: kInvalidArgument (wrong input length, algorithm/key mismatch),
  // kNotFound, kPermission, kTimeout (no free session within session_wait),
  // kUnavailable (HSM fault that healing did not clear).
  virtual Result<std::vector<std::uint8_t>> Sign(const KeyRef& key, SignAlgorithm algorithm,
                                                 std::span<const std::uint8_t> input) = 0;

  // Lists every private key object on the token.
  virtual Result<std::vector<TokenKey>> ListPrivateKeys() = 0;

  // Finds the key pair with this label and id and returns its KeyRef,
  // with the SPKI read from the public key object.
  virtual Result<KeyRef> FindKey(std::string_view label, std::span<const std::uint8_t> id) = 0;

  // Destroys both halves of the key pair.
  virtual Status DestroyKey(const KeyRef& key) = 0;

  // An EVP_PKEY whose private operations are performed by this token (RSA and
  // EC keys only), for OpenSSL's builders: X509_sign, X509_CRL_sign, CMS_sign.
  // The Token must outlive the returned key.
  virtual Result<UniqueEvpPkey> OpenSslKey(const KeyRef& key) = 0;
};

// Initialises a token in the first free slot (C_InitToken, then C_InitPIN).
// For development and tests with SoftHSM; production tokens are initialised
// with the vendor's tools.
Status InitToken(const std::string& module_path, std::string_view label, const SecretBytes& so_pin,
                 const SecretBytes& user_pin);

}  // namespace custos::pkcs11
