#include "der.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

namespace custos::pkcs11::internal {
namespace {

constexpr std::uint8_t kP256Oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
constexpr std::uint8_t kP384Oid[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
constexpr std::uint8_t kEd25519Oid[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
constexpr std::uint8_t kEd25519Name[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
                                         'd',  's',  '2', '5', '5', '1', '9'};

// RFC 8017 section 9.2, note 1.
constexpr std::uint8_t kSha256Prefix[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x01, 0x05, 0x00, 0x04, 0x20};
constexpr std::uint8_t kSha384Prefix[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x02, 0x05, 0x00, 0x04, 0x30};
constexpr std::uint8_t kSha512Prefix[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x03, 0x05, 0x00, 0x04, 0x40};

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct CtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct BldFree {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct SigFree {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

bool Equals(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// Strips a DER OCTET STRING header when `in` is exactly one OCTET STRING.
std::optional<std::span<const std::uint8_t>> UnwrapOctetString(std::span<const std::uint8_t> in) {
  if (in.size() < 2 || in[0] != 0x04) return std::nullopt;
  std::size_t len = 0;
  std::size_t header = 0;
  if (in[1] < 0x80) {
    len = in[1];
    header = 2;
  } else if (in[1] == 0x81 && in.size() >= 3) {
    len = in[2];
    header = 3;
  } else if (in[1] == 0x82 && in.size() >= 4) {
    len = (static_cast<std::size_t>(in[2]) << 8) | in[3];
    header = 4;
  } else {
    return std::nullopt;
  }
  if (header + len != in.size()) return std::nullopt;
  return in.subspan(header);
}

Result<std::vector<std::uint8_t>> ToSpki(EVP_PKEY* pkey) {
  int len = i2d_PUBKEY(pkey, nullptr);
  if (len <= 0) return Error(ErrorKind::kInternal, "cannot encode the public key as SPKI");
  std::vector<std::uint8_t> out(static_cast<std::size_t>(len));
  unsigned char* p = out.data();
  if (i2d_PUBKEY(pkey, &p) != len) {
    return Error(ErrorKind::kInternal, "cannot encode the public key as SPKI");
  }
  return out;
}

Result<std::vector<std::uint8_t>> FromData(const char* type, OSSL_PARAM* params) {
  std::unique_ptr<EVP_PKEY_CTX, CtxFree> ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    return Error(ErrorKind::kInternal,
                 std::string("the token returned an invalid ") + type + " public key");
  }
  Pkey pkey(raw);
  return ToSpki(pkey.get());
}

}  // namespace

std::span<const std::uint8_t> EcParamsFor(KeyType type) {
  switch (type) {
    case KeyType::kEcP256:
      return kP256Oid;
    case KeyType::kEcP384:
      return kP384Oid;
    case KeyType::kEd25519:
      return kEd25519Oid;
    default:
      return {};
  }
}

std::optional<KeyType> KeyTypeFromEcParams(std::span<const std::uint8_t> params) {
  if (Equals(params, kP256Oid)) return KeyType::kEcP256;
  if (Equals(params, kP384Oid)) return KeyType::kEcP384;
  if (Equals(params, kEd25519Oid) || Equals(params, kEd25519Name)) return KeyType::kEd25519;
  return std::nullopt;
}

std::optional<KeyType> RsaKeyTypeFromBits(std::size_t bits) {
  switch (bits) {
    case 2048:
      return KeyType::kRsa2048;
    case 3072:
      return KeyType::kRsa3072;
    case 4096:
      return KeyType::kRsa4096;
    default:
      return std::nullopt;
  }
}

Result<std::vector<std::uint8_t>> SpkiFromEcPoint(KeyType type,
                                                  std::span<const std::uint8_t> ec_point) {
  if (type == KeyType::kEd25519) {
    std::span<const std::uint8_t> point = ec_point;
    if (point.size() != 32) {
      auto inner = UnwrapOctetString(point);
      if (!inner || inner->size() != 32) {
        return Error(ErrorKind::kInternal, "the token returned a malformed Ed25519 CKA_EC_POINT");
      }
      point = *inner;
    }
    Pkey pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, point.data(), point.size()));
    if (!pkey) return Error(ErrorKind::kInternal, "the token returned an invalid Ed25519 key");
    return ToSpki(pkey.get());
  }
  const char* group = nullptr;
  std::size_t field = 0;
  if (type == KeyType::kEcP256) {
    group = "prime256v1";
    field = 32;
  } else if (type == KeyType::kEcP384) {
    group = "secp384r1";
    field = 48;
  } else {
    return Error(ErrorKind::kInvalidArgument, "not an EC key type");
  }
  // PKCS#11 2.40 says CKA_EC_POINT is "DER-encoding of ANSI X9.62 ECPoint
  // value Q" (an OCTET STRING); some modules return the bare point. An
  // uncompressed bare point has exactly 1 + 2 * field bytes.
  std::span<const std::uint8_t> point = ec_point;
  if (point.size() != 1 + 2 * field) {
    auto inner = UnwrapOctetString(point);
    if (!inner) return Error(ErrorKind::kInternal, "the token returned a malformed CKA_EC_POINT");
    point = *inner;
  }
  std::unique_ptr<OSSL_PARAM_BLD, BldFree> bld(OSSL_PARAM_BLD_new());
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return Error(ErrorKind::kInternal, "out of memory building an EC public key");
  }
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) return Error(ErrorKind::kInternal, "out of memory building an EC public key");
  return FromData("EC", params.get());
}

Result<std::vector<std::uint8_t>> SpkiFromRsa(std::span<const std::uint8_t> modulus,
                                              std::span<const std::uint8_t> exponent) {
  if (modulus.empty() || exponent.empty() || modulus.size() > 2048 || exponent.size() > 64) {
    return Error(ErrorKind::kInternal, "the token returned a malformed RSA public key");
  }
  std::unique_ptr<BIGNUM, BnFree> n(
      BN_bin2bn(modulus.data(), static_cast<int>(modulus.size()), nullptr));
  std::unique_ptr<BIGNUM, BnFree> e(
      BN_bin2bn(exponent.data(), static_cast<int>(exponent.size()), nullptr));
  std::unique_ptr<OSSL_PARAM_BLD, BldFree> bld(OSSL_PARAM_BLD_new());
  if (!n || !e || !bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1) {
    return Error(ErrorKind::kInternal, "out of memory building an RSA public key");
  }
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) return Error(ErrorKind::kInternal, "out of memory building an RSA public key");
  return FromData("RSA", params.get());
}

std::optional<KeyType> KeyTypeOfSpki(std::span<const std::uint8_t> spki_der) {
  const unsigned char* p = spki_der.data();
  Pkey pkey(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki_der.size())));
  if (!pkey || p != spki_der.data() + spki_der.size()) return std::nullopt;
  switch (EVP_PKEY_get_base_id(pkey.get())) {
    case EVP_PKEY_ED25519:
      return KeyType::kEd25519;
    case EVP_PKEY_RSA:
      return RsaKeyTypeFromBits(static_cast<std::size_t>(EVP_PKEY_get_bits(pkey.get())));
    case EVP_PKEY_EC: {
      char group[64] = {};
      std::size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(pkey.get(), OSSL_PKEY_PARAM_GROUP_NAME, group,
                                         sizeof(group), &len) != 1) {
        return std::nullopt;
      }
      std::string name(group, len);
      if (name == "prime256v1" || name == "P-256") return KeyType::kEcP256;
      if (name == "secp384r1" || name == "P-384") return KeyType::kEcP384;
      return std::nullopt;
    }
    default:
      return std::nullopt;
  }
}

Result<std::vector<std::uint8_t>> EcdsaRawToDer(std::span<const std::uint8_t> raw) {
  if (raw.empty() || raw.size() % 2 != 0 || raw.size() > 2 * 66) {
    return Error(ErrorKind::kInternal, "the token returned a malformed ECDSA signature");
  }
  const int half = static_cast<int>(raw.size() / 2);
  std::unique_ptr<ECDSA_SIG, SigFree> sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(raw.data(), half, nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + half, half, nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return Error(ErrorKind::kInternal, "out of memory encoding an ECDSA signature");
  }
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return Error(ErrorKind::kInternal, "cannot encode an ECDSA signature");
  std::vector<std::uint8_t> out(static_cast<std::size_t>(len));
  unsigned char* p = out.data();
  if (i2d_ECDSA_SIG(sig.get(), &p) != len) {
    return Error(ErrorKind::kInternal, "cannot encode an ECDSA signature");
  }
  return out;
}

std::span<const std::uint8_t> DigestInfoPrefix(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha256:
      return kSha256Prefix;
    case HashAlgorithm::kSha384:
      return kSha384Prefix;
    case HashAlgorithm::kSha512:
      return kSha512Prefix;
    case HashAlgorithm::kNone:
      return {};
  }
  return {};
}

std::size_t SignatureSize(KeyType type) {
  switch (type) {
    case KeyType::kEcP256:
      return 64;
    case KeyType::kEcP384:
      return 96;
    case KeyType::kRsa2048:
      return 256;
    case KeyType::kRsa3072:
      return 384;
    case KeyType::kRsa4096:
      return 512;
    case KeyType::kEd25519:
      return 64;
  }
  return 512;
}

}  // namespace custos::pkcs11::internal
