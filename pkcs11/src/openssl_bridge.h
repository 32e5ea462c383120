// The bridge between OpenSSL's builders (X509_sign, X509_CRL_sign, CMS_sign,
// EVP_DigestSign) and a private key that lives in the HSM. Internal to
// pkcs11/: Token::OpenSslKey is its only caller.
//
// How it works: the returned EVP_PKEY is a legacy RSA or EC key holding only
// the public half, with an RSA_METHOD / EC_KEY_METHOD whose private operation
// calls the RawSigner. OpenSSL does the hashing, the DigestInfo, the PSS
// encoding and the DER of the signature; the signer only does the raw
// private-key step:
//   RSA PKCS#1 v1.5  -> RawMechanism::kRsaPkcs1 with the DigestInfo
//   RSA-PSS          -> RawMechanism::kRsaX509 with the PSS-encoded block
//   ECDSA            -> RawMechanism::kEcdsa with the digest, expects r||s
// Decryption and ECDH are refused.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "custos/pkcs11/result.h"
#include "custos/pkcs11/token.h"
#include "raw_mechanism.h"

namespace custos::pkcs11 {

// Performs one raw private-key operation in the HSM. Must return the raw
// result: modulus-length bytes for RSA, r||s (each half the length of the
// group order) for ECDSA. May be called from any thread that uses the key, and
// from several at once if the caller shares the EVP_PKEY between threads.
using RawSigner =
    std::function<Result<std::vector<std::uint8_t>>(RawMechanism, std::span<const std::uint8_t>)>;

// An EVP_PKEY with the public key from `spki_der` (DER SubjectPublicKeyInfo of
// an rsaEncryption key or an EC key on a named curve) whose private
// operations call `signer`. The key (and every copy OpenSSL makes of it) owns
// a copy of `signer`; whatever the signer refers to must outlive the key.
//
// Fails with kInvalidArgument for a malformed SPKI or an unsupported key type
// (Ed25519, RSA-PSS-restricted keys, explicit curve parameters).
//
// When the signer fails, the OpenSSL operation fails (X509_sign returns 0,
// EVP_DigestSign returns <= 0); the signer's message is on the OpenSSL error
// queue and the Error itself is kept for TakeLastSignerError().
Result<UniqueEvpPkey> MakeHsmBackedKey(std::span<const std::uint8_t> spki_der, RawSigner signer);

// The last error a RawSigner returned on this thread (or a bridge error such
// as a wrong-length signature), cleared by this call. Lets a caller of
// X509_sign report the CKR name and retryability instead of "X509_sign
// failed". nullopt if no signer failed on this thread since the last call.
std::optional<Error> TakeLastSignerError();

// Drains this thread's OpenSSL error queue into one line ("a; b; c"), or
// returns "" if it was empty.
std::string DrainOpenSslErrors();

}  // namespace custos::pkcs11
