// Public-key blobs, authorized_keys lines, signing and verification.
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <cstring>
#include <memory>

#include "ssh_internal.h"

namespace custos::service::ssh {

using internal::AsBytes;
using internal::Fail;
using internal::OpenSslErrors;
using internal::UniqueBn;
using internal::UniqueEcdsaSig;
using internal::UniqueMdCtx;
using internal::UniqueParamBld;
using internal::UniqueParams;
using internal::UniquePkey;
using internal::UniquePkeyCtx;

namespace {

constexpr std::size_t kEd25519KeySize = 32;
constexpr int kMinRsaBits = 2048;
constexpr int kMaxRsaBits = 8192;

struct EcCurve {
  KeyType type;
  std::string_view ssh_name;   // "nistp256"
  std::string_view ossl_name;  // "prime256v1"
  std::size_t coordinate_size;
};

constexpr EcCurve kCurves[] = {
    {KeyType::kEcdsaP256, "nistp256", "prime256v1", 32},
    {KeyType::kEcdsaP384, "nistp384", "secp384r1", 48},
};

const EcCurve* CurveFor(KeyType type) {
  for (const EcCurve& c : kCurves) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

std::optional<KeyType> KeyTypeFromName(std::string_view name) {
  for (KeyType t : {KeyType::kEd25519, KeyType::kEcdsaP256, KeyType::kEcdsaP384, KeyType::kRsa}) {
    if (KeyTypeName(t) == name) return t;
  }
  return std::nullopt;
}

const EVP_MD* DigestFor(KeyType type) {
  switch (type) {
    case KeyType::kEd25519:
      return nullptr;
    case KeyType::kEcdsaP256:
      return EVP_sha256();
    case KeyType::kEcdsaP384:
      return EVP_sha384();
    case KeyType::kRsa:
      return EVP_sha512();
  }
  return nullptr;
}

std::size_t BitLength(ByteSpan magnitude) {
  if (magnitude.empty()) return 0;
  std::size_t bits = (magnitude.size() - 1) * 8;
  for (std::uint8_t top = magnitude[0]; top != 0; top >>= 1) ++bits;
  return bits;
}

Bytes BnBytes(const BIGNUM* bn) {
  Bytes out(BN_num_bytes(bn));
  BN_bn2bin(bn, out.data());
  return out;
}

Bytes PaddedBn(const BIGNUM* bn, std::size_t size) {
  Bytes out(size);
  if (BN_bn2binpad(bn, out.data(), static_cast<int>(size)) < 0) return {};
  return out;
}

bool IsSpaceOrTab(char c) { return c == ' ' || c == '\t'; }

}  // namespace

std::string_view KeyTypeName(KeyType type) {
  switch (type) {
    case KeyType::kEd25519:
      return "ssh-ed25519";
    case KeyType::kEcdsaP256:
      return "ecdsa-sha2-nistp256";
    case KeyType::kEcdsaP384:
      return "ecdsa-sha2-nistp384";
    case KeyType::kRsa:
      return "ssh-rsa";
  }
  return "";
}

std::string_view CertTypeName(KeyType type) {
  switch (type) {
    case KeyType::kEd25519:
      return "ssh-ed25519-cert-v01@openssh.com";
    case KeyType::kEcdsaP256:
      return "ecdsa-sha2-nistp256-cert-v01@openssh.com";
    case KeyType::kEcdsaP384:
      return "ecdsa-sha2-nistp384-cert-v01@openssh.com";
    case KeyType::kRsa:
      return "ssh-rsa-cert-v01@openssh.com";
  }
  return "";
}

std::string_view SignatureAlgorithm(KeyType type) {
  return type == KeyType::kRsa ? std::string_view("rsa-sha2-512") : KeyTypeName(type);
}

// ---------------------------------------------------------------------------
// PublicKey

ByteSpan PublicKey::fields() const {
  return ByteSpan(blob_).subspan(4 + KeyTypeName(type_).size());
}

std::string PublicKey::ToLine(std::string_view comment) const {
  std::string line(KeyTypeName(type_));
  line += ' ';
  line += Base64Encode(blob_);
  if (!comment.empty()) {
    line += ' ';
    line += comment;
  }
  return line;
}

std::string PublicKey::Fingerprint() const {
  std::string b64 = Base64Encode(internal::Sha256(blob_));
  while (!b64.empty() && b64.back() == '=') b64.pop_back();
  return "SHA256:" + b64;
}

Result<Bytes> PublicKey::ToSpki() const {
  auto pkey = internal::ToEvp(*this);
  if (!pkey) return pkey.error();
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(pkey->get(), &der);
  if (len <= 0 || der == nullptr) {
    return Fail("ssh-key-format", "cannot encode the public key as SPKI: " + OpenSslErrors());
  }
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

Result<PublicKey> PublicKey::FromSpki(ByteSpan der) {
  const unsigned char* p = der.data();
  UniquePkey pkey(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (pkey == nullptr || p != der.data() + der.size()) {
    ERR_clear_error();
    return Fail("ssh-key-format", "the public key is not a well-formed DER SubjectPublicKeyInfo");
  }
  Writer w;
  switch (EVP_PKEY_get_base_id(pkey.get())) {
    case EVP_PKEY_ED25519: {
      std::uint8_t raw[kEd25519KeySize];
      std::size_t len = sizeof(raw);
      if (EVP_PKEY_get_raw_public_key(pkey.get(), raw, &len) != 1 || len != sizeof(raw)) {
        ERR_clear_error();
        return Fail("ssh-key-format", "cannot read the Ed25519 public key");
      }
      w.String(KeyTypeName(KeyType::kEd25519));
      w.String(ByteSpan(raw, len));
      return PublicKey(KeyType::kEd25519, std::move(w).bytes());
    }
    case EVP_PKEY_EC: {
      char group[64] = {};
      std::size_t group_len = 0;
      if (EVP_PKEY_get_utf8_string_param(pkey.get(), OSSL_PKEY_PARAM_GROUP_NAME, group,
                                         sizeof(group), &group_len) != 1) {
        ERR_clear_error();
        return Fail("ssh-key-type", "the EC key has no named curve; use P-256 or P-384");
      }
      const EcCurve* curve = nullptr;
      for (const EcCurve& c : kCurves) {
        if (c.ossl_name == std::string_view(group, group_len)) curve = &c;
      }
      if (curve == nullptr) {
        return Fail("ssh-key-type", "EC curve " + std::string(group, group_len) +
                                        " is not supported; use P-256 or P-384");
      }
      BIGNUM* x = nullptr;
      BIGNUM* y = nullptr;
      const bool got = EVP_PKEY_get_bn_param(pkey.get(), OSSL_PKEY_PARAM_EC_PUB_X, &x) == 1 &&
                       EVP_PKEY_get_bn_param(pkey.get(), OSSL_PKEY_PARAM_EC_PUB_Y, &y) == 1;
      UniqueBn ux(x), uy(y);
      if (!got) {
        ERR_clear_error();
        return Fail("ssh-key-format", "cannot read the EC public point");
      }
      Bytes point{0x04};
      const Bytes bx = PaddedBn(x, curve->coordinate_size);
      const Bytes by = PaddedBn(y, curve->coordinate_size);
      if (bx.empty() || by.empty()) return Fail("ssh-key-format", "EC point coordinate too large");
      point.insert(point.end(), bx.begin(), bx.end());
      point.insert(point.end(), by.begin(), by.end());
      w.String(KeyTypeName(curve->type));
      w.String(curve->ssh_name);
      w.String(point);
      return PublicKey(curve->type, std::move(w).bytes());
    }
    case EVP_PKEY_RSA: {
      BIGNUM* n = nullptr;
      BIGNUM* e = nullptr;
      const bool got = EVP_PKEY_get_bn_param(pkey.get(), OSSL_PKEY_PARAM_RSA_N, &n) == 1 &&
                       EVP_PKEY_get_bn_param(pkey.get(), OSSL_PKEY_PARAM_RSA_E, &e) == 1;
      UniqueBn un(n), ue(e);
      if (!got) {
        ERR_clear_error();
        return Fail("ssh-key-format", "cannot read the RSA public key");
      }
      const int bits = BN_num_bits(n);
      if (bits < kMinRsaBits || bits > kMaxRsaBits) {
        return Fail("ssh-key-size", "RSA key of " + std::to_string(bits) +
                                        " bits; SSH keys must have 2048 to 8192 bits");
      }
      w.String(KeyTypeName(KeyType::kRsa));
      w.Mpint(BnBytes(e));
      w.Mpint(BnBytes(n));
      // Re-parse so that FromSpki and FromBlob apply the same rules (e odd...).
      return FromBlob(w.bytes());
    }
    default:
      return Fail("ssh-key-type",
                  "key type is not usable for SSH; use Ed25519, P-256, P-384 or RSA");
  }
}

Result<PublicKey> PublicKey::FromEvp(const EVP_PKEY* key) {
  if (key == nullptr) return Fail("ssh-key-format", "no public key");
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(const_cast<EVP_PKEY*>(key), &der);
  if (len <= 0 || der == nullptr) {
    return Fail("ssh-key-format", "cannot export the public key: " + OpenSslErrors());
  }
  Bytes spki(der, der + len);
  OPENSSL_free(der);
  return FromSpki(spki);
}

Result<PublicKey> PublicKey::FromBlob(ByteSpan blob) {
  Reader r(blob);
  std::string name;
  if (!r.String(&name)) return Fail("ssh-key-format", "the key blob is truncated");
  const std::optional<KeyType> type = KeyTypeFromName(name);
  if (!type) {
    return Fail("ssh-key-type",
                "key type is not supported; use ssh-ed25519, ecdsa-sha2-nistp256, "
                "ecdsa-sha2-nistp384 or ssh-rsa");
  }
  switch (*type) {
    case KeyType::kEd25519: {
      ByteSpan pk;
      if (!r.String(&pk) || pk.size() != kEd25519KeySize) {
        return Fail("ssh-key-format", "the Ed25519 key must be 32 bytes");
      }
      break;
    }
    case KeyType::kEcdsaP256:
    case KeyType::kEcdsaP384: {
      const EcCurve* curve = CurveFor(*type);
      std::string curve_name;
      ByteSpan point;
      if (!r.String(&curve_name) || curve_name != curve->ssh_name) {
        return Fail("ssh-key-format", "the ECDSA key's curve does not match its type");
      }
      if (!r.String(&point) || point.size() != 1 + 2 * curve->coordinate_size || point[0] != 4) {
        return Fail("ssh-key-format", "the ECDSA key must be an uncompressed point");
      }
      break;
    }
    case KeyType::kRsa: {
      ByteSpan e, n;
      if (!r.Mpint(&e) || !r.Mpint(&n)) {
        return Fail("ssh-key-format", "the RSA key's exponent or modulus is malformed");
      }
      if (e.empty() || e.size() > 8 || (e.back() & 1) == 0 || BitLength(e) < 2) {
        return Fail("ssh-key-format", "the RSA public exponent must be odd and at least 3");
      }
      const std::size_t bits = BitLength(n);
      if (bits < kMinRsaBits || bits > kMaxRsaBits || (n.back() & 1) == 0) {
        return Fail("ssh-key-size", "RSA key of " + std::to_string(bits) +
                                        " bits; SSH keys must have 2048 to 8192 bits");
      }
      break;
    }
  }
  if (!r.empty()) return Fail("ssh-key-format", "the key blob has trailing bytes");
  PublicKey key(*type, Bytes(blob.begin(), blob.end()));
  if (*type == KeyType::kEcdsaP256 || *type == KeyType::kEcdsaP384) {
    // Loading through OpenSSL checks the point lies on the curve.
    auto pkey = internal::ToEvp(key);
    if (!pkey) return Fail("ssh-key-format", "the ECDSA point is not on the curve");
  }
  return key;
}

// ---------------------------------------------------------------------------
// authorized_keys

Result<AuthorizedKey> ParseAuthorizedKey(std::string_view line) {
  if (line.size() > kMaxKeyLineLength) {
    return Fail("ssh-key-line", "the public key line is longer than 8192 bytes");
  }
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  for (char c : line) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) {
      return Fail("ssh-key-line",
                  "the public key line contains control characters or several lines");
    }
  }
  while (!line.empty() && IsSpaceOrTab(line.front())) line.remove_prefix(1);
  while (!line.empty() && IsSpaceOrTab(line.back())) line.remove_suffix(1);
  if (line.empty() || line.front() == '#') {
    return Fail("ssh-key-line",
                "no public key on the line; expected \"ssh-ed25519 AAAA... comment\"");
  }
  auto next_word = [&line]() {
    std::size_t end = 0;
    while (end < line.size() && !IsSpaceOrTab(line[end])) ++end;
    std::string_view word = line.substr(0, end);
    line.remove_prefix(end);
    while (!line.empty() && IsSpaceOrTab(line.front())) line.remove_prefix(1);
    return word;
  };
  const std::string_view type_word = next_word();
  const std::optional<KeyType> type = KeyTypeFromName(type_word);
  if (!type) {
    if (type_word.find("-cert-v01@openssh.com") != std::string_view::npos) {
      return Fail("ssh-key-type", "certificates are not accepted here; give the plain public key");
    }
    if (type_word.find_first_of("=,\"") != std::string_view::npos) {
      return Fail("ssh-key-line", "authorized_keys options are not accepted; give only the key");
    }
    return Fail("ssh-key-type",
                "key type is not supported; use ssh-ed25519, ecdsa-sha2-nistp256, "
                "ecdsa-sha2-nistp384 or ssh-rsa");
  }
  const std::string_view b64 = next_word();
  if (b64.empty()) return Fail("ssh-key-line", "the key data is missing after the type");
  const std::optional<Bytes> blob = Base64Decode(b64);
  if (!blob) return Fail("ssh-key-line", "the key data is not valid base64");
  auto key = PublicKey::FromBlob(*blob);
  if (!key) return key.error();
  if (key->type() != *type) {
    return Fail("ssh-key-line", "the key type word does not match the key data");
  }
  return AuthorizedKey{std::move(key).value(), std::string(line)};
}

// ---------------------------------------------------------------------------
// Signatures

Result<Bytes> EcdsaSignatureFromDer(ByteSpan der) {
  const unsigned char* p = der.data();
  UniqueEcdsaSig sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (sig == nullptr || p != der.data() + der.size()) {
    ERR_clear_error();
    return Fail("ssh-signature-format", "the ECDSA signature is not DER");
  }
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  if (BN_is_negative(r) || BN_is_negative(s) || BN_is_zero(r) || BN_is_zero(s)) {
    return Fail("ssh-signature-format", "the ECDSA signature has a zero or negative value");
  }
  Writer w;
  w.Mpint(BnBytes(r));
  w.Mpint(BnBytes(s));
  return std::move(w).bytes();
}

Bytes SigningInput(KeyType type, ByteSpan data) {
  const EVP_MD* md = DigestFor(type);
  if (md == nullptr) return Bytes(data.begin(), data.end());
  Bytes out(EVP_MD_get_size(md));
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1) {
    // Only fails when out of memory; an empty input makes the signer refuse.
    ERR_clear_error();
    return {};
  }
  out.resize(len);
  return out;
}

Result<Bytes> SshSignatureFromStandard(KeyType type, ByteSpan signature) {
  switch (type) {
    case KeyType::kEcdsaP256:
    case KeyType::kEcdsaP384:
      return EcdsaSignatureFromDer(signature);
    case KeyType::kEd25519:
      if (signature.size() != 64) {
        return Fail("ssh-signature-format", "the Ed25519 signature must be 64 bytes");
      }
      break;
    case KeyType::kRsa:
      if (signature.empty()) return Fail("ssh-signature-format", "the RSA signature is empty");
      break;
  }
  return Bytes(signature.begin(), signature.end());
}

Result<Signer> EvpSigner(EVP_PKEY* key) {
  auto pub = PublicKey::FromEvp(key);
  if (!pub) return pub.error();
  if (EVP_PKEY_up_ref(key) != 1) return Fail("ssh-signer", "cannot reference the signing key");
  std::shared_ptr<EVP_PKEY> held(key, EVP_PKEY_free);
  const KeyType type = pub->type();
  Signer signer = [held, type](ByteSpan data) -> Result<Bytes> {
    UniqueMdCtx ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;
    if (ctx == nullptr ||
        EVP_DigestSignInit(ctx.get(), &pctx, DigestFor(type), nullptr, held.get()) != 1) {
      return Fail("ssh-signer", "cannot start signing: " + OpenSslErrors());
    }
    if (type == KeyType::kRsa && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) {
      return Fail("ssh-signer", "cannot select PKCS#1 v1.5 padding: " + OpenSslErrors());
    }
    std::size_t len = 0;
    if (EVP_DigestSign(ctx.get(), nullptr, &len, data.data(), data.size()) != 1) {
      return Fail("ssh-signer", "signing failed: " + OpenSslErrors());
    }
    Bytes sig(len);
    if (EVP_DigestSign(ctx.get(), sig.data(), &len, data.data(), data.size()) != 1) {
      return Fail("ssh-signer", "signing failed: " + OpenSslErrors());
    }
    sig.resize(len);
    if (type == KeyType::kEcdsaP256 || type == KeyType::kEcdsaP384) {
      return EcdsaSignatureFromDer(sig);
    }
    return sig;
  };
  return signer;
}

Result<bool> VerifySignatureBlob(const PublicKey& key, ByteSpan data, ByteSpan signature_blob) {
  Reader r(signature_blob);
  std::string alg;
  ByteSpan sig;
  if (!r.String(&alg) || !r.String(&sig) || !r.empty()) {
    return Fail("ssh-signature-format", "the signature blob is malformed");
  }
  const EVP_MD* md = DigestFor(key.type());
  if (alg != SignatureAlgorithm(key.type())) {
    if (key.type() == KeyType::kRsa && alg == "rsa-sha2-256") {
      md = EVP_sha256();
    } else {
      return Fail("ssh-signature-format", "signature algorithm " + alg +
                                              " does not match the key type " +
                                              std::string(KeyTypeName(key.type())));
    }
  }
  Bytes der_sig;
  ByteSpan to_check = sig;
  if (key.type() == KeyType::kEcdsaP256 || key.type() == KeyType::kEcdsaP384) {
    Reader sr(sig);
    ByteSpan rr, ss;
    const std::size_t max = CurveFor(key.type())->coordinate_size;
    if (!sr.Mpint(&rr) || !sr.Mpint(&ss) || !sr.empty() || rr.empty() || ss.empty() ||
        rr.size() > max || ss.size() > max) {
      return Fail("ssh-signature-format", "the ECDSA signature is malformed");
    }
    UniqueEcdsaSig es(ECDSA_SIG_new());
    BIGNUM* bn_r = BN_bin2bn(rr.data(), static_cast<int>(rr.size()), nullptr);
    BIGNUM* bn_s = BN_bin2bn(ss.data(), static_cast<int>(ss.size()), nullptr);
    if (es == nullptr || bn_r == nullptr || bn_s == nullptr ||
        ECDSA_SIG_set0(es.get(), bn_r, bn_s) != 1) {
      BN_free(bn_r);
      BN_free(bn_s);
      return Fail("ssh-signature-format", "cannot decode the ECDSA signature");
    }
    unsigned char* der = nullptr;
    const int len = i2d_ECDSA_SIG(es.get(), &der);
    if (len <= 0 || der == nullptr) return Fail("ssh-signature-format", "cannot encode ECDSA");
    der_sig.assign(der, der + len);
    OPENSSL_free(der);
    to_check = der_sig;
  } else if (key.type() == KeyType::kEd25519 && sig.size() != 64) {
    return Fail("ssh-signature-format", "the Ed25519 signature must be 64 bytes");
  }
  auto pkey = internal::ToEvp(key);
  if (!pkey) return pkey.error();
  UniqueMdCtx ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (ctx == nullptr || EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, pkey->get()) != 1) {
    return Fail("ssh-verify", "cannot start verification: " + OpenSslErrors());
  }
  if (key.type() == KeyType::kRsa && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) {
    return Fail("ssh-verify", "cannot select PKCS#1 v1.5 padding: " + OpenSslErrors());
  }
  const int rc =
      EVP_DigestVerify(ctx.get(), to_check.data(), to_check.size(), data.data(), data.size());
  ERR_clear_error();
  return rc == 1;
}

namespace internal {

Bytes Sha256(ByteSpan data) {
  Bytes out(SHA256_DIGEST_LENGTH);
  SHA256(data.data(), data.size(), out.data());
  return out;
}

Result<UniquePkey> ToEvp(const PublicKey& key) {
  Reader r(key.fields());
  if (key.type() == KeyType::kEd25519) {
    ByteSpan pk;
    if (!r.String(&pk)) return Fail("ssh-key-format", "the Ed25519 key is truncated");
    UniquePkey p(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, pk.data(), pk.size()));
    if (p == nullptr)
      return Fail("ssh-key-format", "cannot load the Ed25519 key: " + OpenSslErrors());
    return p;
  }
  UniqueParamBld bld(OSSL_PARAM_BLD_new());
  if (bld == nullptr) return Fail("ssh-key-format", "out of memory");
  UniqueBn n, e;
  const char* algorithm = "RSA";
  if (key.type() == KeyType::kRsa) {
    ByteSpan be, bn;
    if (!r.Mpint(&be) || !r.Mpint(&bn)) return Fail("ssh-key-format", "the RSA key is malformed");
    e.reset(BN_bin2bn(be.data(), static_cast<int>(be.size()), nullptr));
    n.reset(BN_bin2bn(bn.data(), static_cast<int>(bn.size()), nullptr));
    if (e == nullptr || n == nullptr ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1) {
      return Fail("ssh-key-format", "cannot load the RSA key: " + OpenSslErrors());
    }
  } else {
    algorithm = "EC";
    const EcCurve* curve = CurveFor(key.type());
    std::string curve_name;
    ByteSpan point;
    if (!r.String(&curve_name) || !r.String(&point)) {
      return Fail("ssh-key-format", "the ECDSA key is malformed");
    }
    if (OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME,
                                        curve->ossl_name.data(), 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                         point.size()) != 1) {
      return Fail("ssh-key-format", "cannot load the ECDSA key: " + OpenSslErrors());
    }
  }
  UniqueParams params(OSSL_PARAM_BLD_to_param(bld.get()));
  UniquePkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, algorithm, nullptr));
  EVP_PKEY* raw = nullptr;
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    EVP_PKEY_free(raw);
    ERR_clear_error();
    return Fail("ssh-key-format", std::string("cannot load the ") + algorithm + " public key");
  }
  UniquePkey p(raw);
  if (key.type() != KeyType::kRsa) {
    UniquePkeyCtx check(EVP_PKEY_CTX_new_from_pkey(nullptr, p.get(), nullptr));
    if (check == nullptr || EVP_PKEY_public_check(check.get()) != 1) {
      ERR_clear_error();
      return Fail("ssh-key-format", "the ECDSA point is not a valid public key");
    }
  }
  return p;
}

}  // namespace internal

}  // namespace custos::service::ssh
