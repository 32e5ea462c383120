// The security officer's signing key, for quorum approvals (brief §5,
// docs/quorum.md). The key lives on the officer's machine: a PEM file
// (passphrase-protected allowed) or a PKCS#11 token such as a smart card,
// reached through libp11. The daemon never sees it; it only verifies what
// this signs against the officer's registered public key.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "custos/client/result.h"

namespace custos::client {

// A passphrase or PIN, held only as long as needed. Its bytes are wiped when
// it is destroyed or moved from; it cannot be copied. Reveal() is the only way
// to read it (so a grep finds every use).
class SecretText {
 public:
  SecretText() = default;
  // Takes the text and wipes `text`.
  explicit SecretText(std::string&& text);
  SecretText(SecretText&& other) noexcept;
  SecretText& operator=(SecretText&& other) noexcept;
  SecretText(const SecretText&) = delete;
  SecretText& operator=(const SecretText&) = delete;
  ~SecretText();

  bool empty() const { return bytes_.size() <= 1; }
  std::size_t size() const { return bytes_.empty() ? 0 : bytes_.size() - 1; }
  // NUL-terminated; valid until this object changes.
  const char* Reveal() const { return bytes_.empty() ? "" : bytes_.data(); }

 private:
  void Wipe();
  std::vector<char> bytes_;  // text and a terminating NUL, or empty
};

// Asks for a secret, e.g. by prompting on the terminal with echo off.
// `prompt` says what is asked for ("Passphrase for /home/alice/officer.pem").
// Returning std::nullopt cancels the operation (ErrorCode::kCancelled).
using SecretSource = std::function<std::optional<SecretText>(std::string_view prompt)>;

// Reads a PIN or passphrase file: its first line, without the line end
// ("\n" or "\r\n"). The file must be a regular file that group and others
// can neither read nor write (mode 0600 or 0400), else kInvalidConfig with a
// message naming the file, its mode and the fix. `what` names the secret in
// messages ("officer-pin-file"). An empty first line is an error too.
Result<SecretText> ReadSecretFile(const std::string& path, std::string_view what);

// Signs approval statements with an officer key. Not thread-safe: one console,
// one officer. Move-only; the destructor releases the key, logs out of the
// token and unloads the PKCS#11 module.
//
// Signature schemes (the ones policy::OfficerPublicKey verifies):
//   ECDSA P-256: SHA-256, DER-encoded ECDSA-Sig-Value;
//   Ed25519:     pure Ed25519 (PEM files only: libp11 0.4.12 has no EdDSA);
//   RSA >= 2048: RSASSA-PSS, SHA-256, MGF1-SHA-256, salt length 32.
class OfficerSigner final {
 public:
  // Loads a private key from a PEM file ("PRIVATE KEY", "ENCRYPTED PRIVATE
  // KEY", or a traditional EC/RSA block). `passphrase` is called only if the
  // file is encrypted; it may be empty otherwise. Errors (kInvalidConfig):
  // unreadable file, wrong passphrase, unsupported key type or size.
  static Result<OfficerSigner> FromPemFile(const std::string& path, const SecretSource& passphrase);

  // Loads a private key from a PKCS#11 token through libp11. `uri` is an RFC
  // 7512 URI naming the token (token= and/or serial=) and the key (object=
  // and/or id=), e.g. "pkcs11:token=officer;object=alice". "type=private" is
  // allowed; "pin-value" is refused (PINs do not belong in URIs); a
  // "module-path" query attribute is used when `module_path` is empty. `pin`
  // is called once if the token requires login. Errors: kInvalidConfig for a
  // bad URI, a module that does not load, no or several matching tokens or
  // keys, a wrong PIN (the token's retry counter counts it), an unsupported
  // key; kCancelled when `pin` returns std::nullopt.
  static Result<OfficerSigner> FromPkcs11Uri(std::string_view uri, const SecretSource& pin,
                                             const std::string& module_path);

  // Signs `statement`, which must be a canonical approval statement (it must
  // start with "custos-approval-v1\n"; anything else is refused with
  // kInvalidConfig so that this key signs nothing but approvals). The
  // signature is verified with PublicKeySpki() before it is returned, so a key
  // whose public half does not match is reported here, not by the daemon.
  Result<std::string> Sign(std::string_view statement) const;

  // The DER SubjectPublicKeyInfo: what the policy registers for the officer.
  const std::string& PublicKeySpki() const;
  // The same as a PEM "PUBLIC KEY" block.
  std::string PublicKeyPem() const;
  // "ecdsa-p256" | "ed25519" | "rsa-<bits>".
  const std::string& algorithm() const;

  OfficerSigner(OfficerSigner&&) noexcept;
  OfficerSigner& operator=(OfficerSigner&&) noexcept;
  ~OfficerSigner();

 private:
  struct Impl;
  explicit OfficerSigner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace custos::client
