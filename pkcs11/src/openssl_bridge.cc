// RSA_METHOD and EC_KEY_METHOD are deprecated in OpenSSL 3.0 but remain the
// documented way to plug an external private key into the legacy key types,
// which OpenSSL 3.0 routes to the key's own method ("foreign" keys) for
// EVP_DigestSign, X509_sign and CMS_sign. Only this file uses them.
#define OPENSSL_SUPPRESS_DEPRECATED

#include "openssl_bridge.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <climits>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace custos::pkcs11 {
namespace {

// Reason codes in our own OpenSSL error library.
enum BridgeReason : int {
  kReasonSignerFailed = 100,
  kReasonUnsupported = 101,
  kReasonBadSignerOutput = 102,
};

// What the ex_data slot holds. A shared_ptr so that OpenSSL's copies of a key
// (EC_KEY_dup, which copies ex_data through the dup callback) share one signer.
using SignerRef = std::shared_ptr<const RawSigner>;

struct Bridge {
  RSA_METHOD* rsa_method = nullptr;
  EC_KEY_METHOD* ec_method = nullptr;
  int rsa_index = -1;
  int ec_index = -1;
  int err_lib = 0;
};

thread_local std::optional<Error> t_last_error;

// Keeps the signer's failure for TakeLastSignerError and puts its message on
// the OpenSSL error queue.
void RecordFailure(const Bridge& bridge, int reason, Error error) {
  ERR_raise_data(bridge.err_lib, reason, "%s", error.message().c_str());
  t_last_error = std::move(error);
}

void FreeSigner(void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*idx*/, long /*argl*/,
                void* /*argp*/) {
  delete static_cast<SignerRef*>(ptr);
}

int DupSigner(CRYPTO_EX_DATA* /*to*/, const CRYPTO_EX_DATA* /*from*/, void** from_d, int /*idx*/,
              long /*argl*/, void* /*argp*/) {
  if (*from_d == nullptr) return 1;
  SignerRef* copy = new (std::nothrow) SignerRef(*static_cast<SignerRef*>(*from_d));
  *from_d = copy;
  return copy != nullptr ? 1 : 0;
}

const Bridge* GetBridge();

// Calls the signer with exceptions contained: nothing may unwind through
// OpenSSL's C frames.
Result<std::vector<std::uint8_t>> CallSigner(const SignerRef* signer, RawMechanism mechanism,
                                             std::span<const std::uint8_t> input) {
  if (signer == nullptr || *signer == nullptr || !**signer) {
    return Error(ErrorKind::kInternal, "key has no HSM signer attached");
  }
  try {
    return (**signer)(mechanism, input);
  } catch (const std::exception& e) {
    return Error(ErrorKind::kInternal, std::string("HSM signer threw: ") + e.what());
  } catch (...) {
    return Error(ErrorKind::kInternal, "HSM signer threw an unknown exception");
  }
}

// RSA_METHOD priv_enc: the only private RSA operation OpenSSL's signing paths
// use once rsa_sign is unset. RSA_sign() hands us the DigestInfo with
// RSA_PKCS1_PADDING; the PSS path pads itself and hands us a modulus-length
// block with RSA_NO_PADDING. Returns the signature length, or -1.
int RsaPrivEnc(int flen, const unsigned char* from, unsigned char* to, RSA* rsa, int padding) {
  const Bridge* bridge = GetBridge();
  const int size = RSA_size(rsa);
  RawMechanism mechanism;
  if (padding == RSA_PKCS1_PADDING) {
    mechanism = RawMechanism::kRsaPkcs1;
    // RFC 8017 9.2: the encoded message needs at least 11 bytes of padding.
    if (flen < 0 || flen > size - 11) {
      RecordFailure(*bridge, kReasonUnsupported,
                    Error(ErrorKind::kInvalidArgument, "input too long for PKCS#1 v1.5 signature"));
      return -1;
    }
  } else if (padding == RSA_NO_PADDING) {
    mechanism = RawMechanism::kRsaX509;
    if (flen != size) {
      RecordFailure(*bridge, kReasonUnsupported,
                    Error(ErrorKind::kInvalidArgument, "raw RSA input must be modulus length"));
      return -1;
    }
  } else {
    RecordFailure(*bridge, kReasonUnsupported,
                  Error(ErrorKind::kInvalidArgument,
                        "RSA padding mode " + std::to_string(padding) +
                            " is not supported for HSM keys (PKCS#1 v1.5 and PSS only)"));
    return -1;
  }

  const auto* signer = static_cast<const SignerRef*>(RSA_get_ex_data(rsa, bridge->rsa_index));
  Result<std::vector<std::uint8_t>> sig =
      CallSigner(signer, mechanism, {from, static_cast<std::size_t>(flen)});
  if (!sig.ok()) {
    RecordFailure(*bridge, kReasonSignerFailed, sig.error());
    return -1;
  }
  // PKCS#11 returns modulus-length output; a shorter value only lacks leading
  // zero bytes, so left-pad it. Anything longer is not a signature.
  if (sig->empty() || sig->size() > static_cast<std::size_t>(size)) {
    RecordFailure(*bridge, kReasonBadSignerOutput,
                  Error(ErrorKind::kInternal, "HSM returned a " + std::to_string(sig->size()) +
                                                  "-byte RSA signature for a " +
                                                  std::to_string(size) + "-byte modulus"));
    return -1;
  }
  const std::size_t pad = static_cast<std::size_t>(size) - sig->size();
  std::memset(to, 0, pad);
  std::memcpy(to + pad, sig->data(), sig->size());
  return size;
}

int RsaRefuse(int /*flen*/, const unsigned char* /*from*/, unsigned char* /*to*/, RSA* /*rsa*/,
              int /*padding*/) {
  const Bridge* bridge = GetBridge();
  RecordFailure(*bridge, kReasonUnsupported,
                Error(ErrorKind::kInvalidArgument, "HSM-backed RSA keys only sign"));
  return -1;
}

// EC_KEY_METHOD sign_sig: ECDSA over `dgst` in the HSM. OpenSSL's default
// `sign` wraps this and DER-encodes the result.
ECDSA_SIG* EcSignSig(const unsigned char* dgst, int dgst_len, const BIGNUM* in_kinv,
                     const BIGNUM* in_r, EC_KEY* ec) {
  const Bridge* bridge = GetBridge();
  if (in_kinv != nullptr || in_r != nullptr) {
    RecordFailure(*bridge, kReasonUnsupported,
                  Error(ErrorKind::kInvalidArgument,
                        "precomputed ECDSA nonces cannot be used with an HSM key"));
    return nullptr;
  }
  if (dgst_len <= 0) {
    RecordFailure(*bridge, kReasonUnsupported,
                  Error(ErrorKind::kInvalidArgument, "empty digest for ECDSA"));
    return nullptr;
  }
  const EC_GROUP* group = EC_KEY_get0_group(ec);
  const std::size_t half = (static_cast<std::size_t>(EC_GROUP_order_bits(group)) + 7) / 8;

  const auto* signer = static_cast<const SignerRef*>(EC_KEY_get_ex_data(ec, bridge->ec_index));
  Result<std::vector<std::uint8_t>> sig =
      CallSigner(signer, RawMechanism::kEcdsa, {dgst, static_cast<std::size_t>(dgst_len)});
  if (!sig.ok()) {
    RecordFailure(*bridge, kReasonSignerFailed, sig.error());
    return nullptr;
  }
  // PKCS#11 2.40 section 2.3.1: the signature is r || s, each of the length
  // of the group order in bytes.
  if (sig->size() != 2 * half) {
    RecordFailure(*bridge, kReasonBadSignerOutput,
                  Error(ErrorKind::kInternal, "HSM returned a " + std::to_string(sig->size()) +
                                                  "-byte ECDSA signature, expected " +
                                                  std::to_string(2 * half)));
    return nullptr;
  }
  const int ihalf = static_cast<int>(half);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> r(BN_bin2bn(sig->data(), ihalf, nullptr), BN_free);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> s(BN_bin2bn(sig->data() + half, ihalf, nullptr),
                                                BN_free);
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> out(ECDSA_SIG_new(), ECDSA_SIG_free);
  if (r == nullptr || s == nullptr || out == nullptr ||
      ECDSA_SIG_set0(out.get(), r.get(), s.get()) != 1) {
    RecordFailure(*bridge, kReasonBadSignerOutput,
                  Error(ErrorKind::kInternal, "out of memory building ECDSA signature"));
    return nullptr;
  }
  r.release();  // owned by `out` now
  s.release();
  return out.release();
}

int EcRefuseComputeKey(unsigned char** /*psec*/, size_t* /*pseclen*/, const EC_POINT* /*pub*/,
                       const EC_KEY* /*ecdh*/) {
  const Bridge* bridge = GetBridge();
  RecordFailure(*bridge, kReasonUnsupported,
                Error(ErrorKind::kInvalidArgument, "HSM-backed EC keys only sign"));
  return 0;
}

Bridge* CreateBridge() {
  auto bridge = std::make_unique<Bridge>();

  // Our own error library, so the queue reads "Custos HSM bridge: HSM signing
  // failed: CKR_DEVICE_REMOVED ..." instead of "lib(128)".
  bridge->err_lib = ERR_get_next_error_library();
  static ERR_STRING_DATA strings[] = {
      {0, "Custos HSM bridge"},
      {ERR_PACK(0, 0, kReasonSignerFailed), "HSM signing failed"},
      {ERR_PACK(0, 0, kReasonUnsupported), "operation not supported for HSM key"},
      {ERR_PACK(0, 0, kReasonBadSignerOutput), "HSM returned a malformed signature"},
      {0, nullptr},
  };
  strings[0].error = ERR_PACK(bridge->err_lib, 0, 0);
  ERR_load_strings(bridge->err_lib, strings);

  bridge->rsa_index = RSA_get_ex_new_index(0, nullptr, nullptr, DupSigner, FreeSigner);
  bridge->ec_index = EC_KEY_get_ex_new_index(0, nullptr, nullptr, DupSigner, FreeSigner);
  if (bridge->rsa_index < 0 || bridge->ec_index < 0) return nullptr;

  bridge->rsa_method = RSA_meth_dup(RSA_get_default_method());
  if (bridge->rsa_method == nullptr ||
      RSA_meth_set1_name(bridge->rsa_method, "Custos HSM bridge") != 1 ||
      RSA_meth_set_priv_enc(bridge->rsa_method, RsaPrivEnc) != 1 ||
      RSA_meth_set_priv_dec(bridge->rsa_method, RsaRefuse) != 1 ||
      // With rsa_sign unset, RSA_sign() builds the DigestInfo and calls
      // priv_enc; with rsa_verify unset, verification uses the public key.
      RSA_meth_set_sign(bridge->rsa_method, nullptr) != 1 ||
      RSA_meth_set_verify(bridge->rsa_method, nullptr) != 1) {
    return nullptr;
  }

  bridge->ec_method = EC_KEY_METHOD_new(EC_KEY_get_default_method());
  if (bridge->ec_method == nullptr) return nullptr;
  int (*default_sign)(int, const unsigned char*, int, unsigned char*, unsigned int*, const BIGNUM*,
                      const BIGNUM*, EC_KEY*) = nullptr;
  EC_KEY_METHOD_get_sign(bridge->ec_method, &default_sign, nullptr, nullptr);
  // sign_setup unset: ECDSA_sign_setup() fails with "operation not supported".
  EC_KEY_METHOD_set_sign(bridge->ec_method, default_sign, nullptr, EcSignSig);
  EC_KEY_METHOD_set_compute_key(bridge->ec_method, EcRefuseComputeKey);
  EC_KEY_METHOD_set_keygen(bridge->ec_method, nullptr);
  return bridge.release();
}

// The process-wide methods, created once and never freed: keys made here may
// live until exit, and their methods must outlive them.
const Bridge* GetBridge() {
  static std::once_flag once;
  static const Bridge* bridge = nullptr;
  std::call_once(once, [] { bridge = CreateBridge(); });
  return bridge;
}

using UniqueRsa = std::unique_ptr<RSA, decltype(&RSA_free)>;
using UniqueEcKey = std::unique_ptr<EC_KEY, decltype(&EC_KEY_free)>;
using UniqueBignum = std::unique_ptr<BIGNUM, decltype(&BN_free)>;

Result<UniqueEvpPkey> WrapRsa(const Bridge& bridge, const EVP_PKEY& parsed, SignerRef signer) {
  const RSA* pub = EVP_PKEY_get0_RSA(&parsed);
  if (pub == nullptr) return Error(ErrorKind::kInvalidArgument, "SPKI holds no RSA key");
  const BIGNUM* n = nullptr;
  const BIGNUM* e = nullptr;
  RSA_get0_key(pub, &n, &e, nullptr);
  UniqueBignum n_copy(BN_dup(n), BN_free);
  UniqueBignum e_copy(BN_dup(e), BN_free);
  UniqueRsa rsa(RSA_new(), RSA_free);
  if (n_copy == nullptr || e_copy == nullptr || rsa == nullptr) {
    return Error(ErrorKind::kInternal, "out of memory building RSA key");
  }
  // The method must be in place before EVP_PKEY_assign, which is where
  // OpenSSL decides that the key is "foreign" and keeps it on the legacy path.
  if (RSA_set_method(rsa.get(), bridge.rsa_method) != 1 ||
      RSA_set0_key(rsa.get(), n_copy.get(), e_copy.get(), nullptr) != 1) {
    return Error(ErrorKind::kInternal, "cannot set up HSM-backed RSA key");
  }
  n_copy.release();  // owned by rsa now
  e_copy.release();
  auto* holder = new SignerRef(std::move(signer));
  if (RSA_set_ex_data(rsa.get(), bridge.rsa_index, holder) != 1) {
    delete holder;
    return Error(ErrorKind::kInternal, "cannot attach signer to RSA key");
  }
  UniqueEvpPkey pkey(EVP_PKEY_new(), EVP_PKEY_free);
  if (pkey == nullptr || EVP_PKEY_assign_RSA(pkey.get(), rsa.get()) != 1) {
    return Error(ErrorKind::kInternal, "cannot wrap RSA key in EVP_PKEY");
  }
  rsa.release();  // owned by pkey now
  return pkey;
}

Result<UniqueEvpPkey> WrapEc(const Bridge& bridge, const EVP_PKEY& parsed, SignerRef signer) {
  const EC_KEY* pub = EVP_PKEY_get0_EC_KEY(&parsed);
  if (pub == nullptr) return Error(ErrorKind::kInvalidArgument, "SPKI holds no EC key");
  const EC_GROUP* parsed_group = EC_KEY_get0_group(pub);
  const int nid = parsed_group != nullptr ? EC_GROUP_get_curve_name(parsed_group) : NID_undef;
  if (nid == NID_undef || (EC_GROUP_get_asn1_flag(parsed_group) & OPENSSL_EC_NAMED_CURVE) == 0) {
    return Error(ErrorKind::kInvalidArgument, "EC key must use a named curve");
  }
  UniqueEcKey ec(EC_KEY_new_by_curve_name(nid), EC_KEY_free);
  if (ec == nullptr) return Error(ErrorKind::kInternal, "cannot build EC key for curve");
  if (EC_KEY_set_method(ec.get(), bridge.ec_method) != 1 ||
      EC_KEY_set_public_key(ec.get(), EC_KEY_get0_public_key(pub)) != 1) {
    return Error(ErrorKind::kInternal, "cannot set up HSM-backed EC key");
  }
  auto* holder = new SignerRef(std::move(signer));
  if (EC_KEY_set_ex_data(ec.get(), bridge.ec_index, holder) != 1) {
    delete holder;
    return Error(ErrorKind::kInternal, "cannot attach signer to EC key");
  }
  UniqueEvpPkey pkey(EVP_PKEY_new(), EVP_PKEY_free);
  if (pkey == nullptr || EVP_PKEY_assign_EC_KEY(pkey.get(), ec.get()) != 1) {
    return Error(ErrorKind::kInternal, "cannot wrap EC key in EVP_PKEY");
  }
  ec.release();  // owned by pkey now
  return pkey;
}

}  // namespace

Result<UniqueEvpPkey> MakeHsmBackedKey(std::span<const std::uint8_t> spki_der, RawSigner signer) {
  if (!signer) return Error(ErrorKind::kInvalidArgument, "no signer given for HSM-backed key");
  if (spki_der.empty() || spki_der.size() > static_cast<std::size_t>(LONG_MAX)) {
    return Error(ErrorKind::kInvalidArgument, "public key (SPKI) is empty or too large");
  }
  const Bridge* bridge = GetBridge();
  if (bridge == nullptr) {
    return Error(ErrorKind::kInternal,
                 "cannot initialise OpenSSL key methods: " + DrainOpenSslErrors());
  }

  const unsigned char* p = spki_der.data();
  UniqueEvpPkey parsed(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki_der.size())), EVP_PKEY_free);
  if (parsed == nullptr || p != spki_der.data() + spki_der.size()) {
    ERR_clear_error();
    return Error(ErrorKind::kInvalidArgument, "public key is not a valid DER SubjectPublicKeyInfo");
  }

  auto ref = std::make_shared<const RawSigner>(std::move(signer));
  switch (EVP_PKEY_get_base_id(parsed.get())) {
    case EVP_PKEY_RSA:
      return WrapRsa(*bridge, *parsed, std::move(ref));
    case EVP_PKEY_EC:
      return WrapEc(*bridge, *parsed, std::move(ref));
    case EVP_PKEY_ED25519:
      return Error(ErrorKind::kInvalidArgument,
                   "Ed25519 keys cannot be used with OpenSSL builders; sign raw instead");
    default: {
      const char* name = OBJ_nid2sn(EVP_PKEY_get_base_id(parsed.get()));
      return Error(ErrorKind::kInvalidArgument,
                   std::string("unsupported key type for OpenSSL builders: ") +
                       (name != nullptr ? name : "unknown"));
    }
  }
}

std::optional<Error> TakeLastSignerError() { return std::exchange(t_last_error, std::nullopt); }

std::string DrainOpenSslErrors() {
  std::string out;
  const char* data = nullptr;
  int flags = 0;
  unsigned long code;
  while ((code = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
    if ((flags & ERR_TXT_STRING) != 0 && data != nullptr && *data != '\0') {
      out += " (";
      out += data;
      out += ")";
    }
  }
  return out;
}

}  // namespace custos::pkcs11
