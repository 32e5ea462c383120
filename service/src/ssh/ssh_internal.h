// Helpers shared by the files of service/src/ssh/: RAII owners for OpenSSL
// objects and error construction. Internal.
#pragma once

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <memory>
#include <string>

#include "ssh.h"

namespace custos::service::ssh::internal {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};

using UniquePkey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using UniquePkeyCtx = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;
using UniqueMdCtx = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX, EVP_MD_CTX_free>>;
using UniqueBn = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using UniqueEcdsaSig = std::unique_ptr<ECDSA_SIG, Deleter<ECDSA_SIG, ECDSA_SIG_free>>;
using UniqueParamBld =
    std::unique_ptr<OSSL_PARAM_BLD, Deleter<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free>>;
using UniqueParams = std::unique_ptr<OSSL_PARAM, Deleter<OSSL_PARAM, OSSL_PARAM_free>>;

inline Error Fail(std::string rule, std::string message) {
  return Error{std::move(rule), std::move(message)};
}

// Drains the thread's OpenSSL error queue into "a; b" ("" when empty).
std::string OpenSslErrors();

// The public key as an EVP_PKEY (for verification and SPKI output).
Result<UniquePkey> ToEvp(const PublicKey& key);

// SHA-256 / SHA-512 of data.
Bytes Sha256(ByteSpan data);

inline ByteSpan AsBytes(std::string_view s) {
  return ByteSpan(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

}  // namespace custos::service::ssh::internal
