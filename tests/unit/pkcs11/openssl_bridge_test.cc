// Tests for the OpenSSL bridge (pkcs11/src/openssl_bridge.h): OpenSSL's own
// builders sign through a RawSigner, and the results verify with OpenSSL and
// with the `openssl verify` command.
//
// The RawSigner here is backed by an in-memory OpenSSL key doing exactly the
// raw operations a PKCS#11 token does (CKM_RSA_PKCS, CKM_RSA_X_509,
// CKM_ECDSA), so the bridge is tested on its own.
#include "openssl_bridge.h"

#include <stdlib.h>

#include <gtest/gtest.h>

#include "custos/pkcs11/algorithms.h"
#include "custos/pkcs11/secret.h"
#include "custos/pkcs11/token.h"

#include <openssl/cms.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <ostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace custos::pkcs11 {
namespace {

using Bytes = std::vector<std::uint8_t>;
using UniqueX509 = std::unique_ptr<X509, decltype(&X509_free)>;
using UniqueMdCtx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;
using UniquePkeyCtx = std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)>;

// A temporary directory removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "custos-bridge-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Runs a shell command; returns its exit status and combined output.
std::pair<int, std::string> Run(const std::string& command) {
  std::string out;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::array<char, 512> buf;
  while (std::fgets(buf.data(), buf.size(), pipe) != nullptr) out += buf.data();
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

UniqueEvpPkey GenerateKey(const char* type, const char* param) {
  EVP_PKEY* key = nullptr;
  if (std::string(type) == "RSA") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(std::atoi(param)));
  } else if (std::string(type) == "EC") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", param);
  } else {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, type);
  }
  return UniqueEvpPkey(key, EVP_PKEY_free);
}

Bytes SpkiOf(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(key, &der);
  Bytes out(der, der + (len > 0 ? len : 0));
  OPENSSL_free(der);
  return out;
}

// What the fake token saw, to prove which mechanism OpenSSL used.
struct CallLog {
  std::mutex mu;
  std::vector<std::pair<RawMechanism, std::size_t>> calls;
};

// A RawSigner doing with `key` what a PKCS#11 token does for CKM_RSA_PKCS,
// CKM_RSA_X_509 and CKM_ECDSA.
RawSigner InMemorySigner(EVP_PKEY* key, std::shared_ptr<CallLog> log = nullptr) {
  EVP_PKEY_up_ref(key);
  std::shared_ptr<EVP_PKEY> held(key, EVP_PKEY_free);
  return [held, log](RawMechanism mechanism, std::span<const std::uint8_t> input) -> Result<Bytes> {
    if (log != nullptr) {
      std::lock_guard<std::mutex> lock(log->mu);
      log->calls.emplace_back(mechanism, input.size());
    }
    UniquePkeyCtx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, held.get(), nullptr), EVP_PKEY_CTX_free);
    if (ctx == nullptr || EVP_PKEY_sign_init(ctx.get()) != 1) {
      return Error(ErrorKind::kInternal, "sign init failed");
    }
    if (mechanism != RawMechanism::kEcdsa) {
      const int padding = mechanism == RawMechanism::kRsaPkcs1 ? RSA_PKCS1_PADDING : RSA_NO_PADDING;
      if (EVP_PKEY_CTX_set_rsa_padding(ctx.get(), padding) != 1) {
        return Error(ErrorKind::kInternal, "set padding failed");
      }
    }
    size_t len = 0;
    if (EVP_PKEY_sign(ctx.get(), nullptr, &len, input.data(), input.size()) != 1) {
      return Error(ErrorKind::kInternal, "size query failed");
    }
    Bytes sig(len);
    if (EVP_PKEY_sign(ctx.get(), sig.data(), &len, input.data(), input.size()) != 1) {
      return Error(ErrorKind::kInternal, "sign failed");
    }
    sig.resize(len);
    if (mechanism != RawMechanism::kEcdsa) return sig;
    // DER ECDSA-Sig-Value -> r || s, as CKM_ECDSA returns it.
    const unsigned char* p = sig.data();
    std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> der(
        d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())), ECDSA_SIG_free);
    const int half = (EVP_PKEY_get_bits(held.get()) + 7) / 8;
    Bytes raw(2 * static_cast<std::size_t>(half));
    if (der == nullptr || BN_bn2binpad(ECDSA_SIG_get0_r(der.get()), raw.data(), half) != half ||
        BN_bn2binpad(ECDSA_SIG_get0_s(der.get()), raw.data() + half, half) != half) {
      return Error(ErrorKind::kInternal, "ECDSA conversion failed");
    }
    return raw;
  };
}

// A self-signed CA certificate for `pkey`, signed by X509_sign(.., md).
UniqueX509 MakeCert(EVP_PKEY* pkey, const std::string& cn) {
  UniqueX509 cert(X509_new(), X509_free);
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 4242);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_set_pubkey(cert.get(), pkey);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE"},
                            std::pair{NID_key_usage, "critical,keyCertSign,digitalSignature"},
                            std::pair{NID_subject_key_identifier, "hash"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  return cert;
}

void WritePem(const UniqueX509& cert, const std::filesystem::path& path) {
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(PEM_write_X509(f, cert.get()), 1);
  std::fclose(f);
}

// `openssl verify` on a self-signed certificate, trusting itself.
void ExpectOpensslVerifies(const UniqueX509& cert, const TempDir& dir) {
  const auto path = dir.path() / "cert.pem";
  WritePem(cert, path);
  auto [status, out] =
      Run("openssl verify -x509_strict -CAfile " + path.string() + " " + path.string());
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find(": OK"), std::string::npos) << out;
}

struct KeyCase {
  const char* name;
  const char* type;
  const char* param;
  RawMechanism expected;
};

void PrintTo(const KeyCase& c, std::ostream* os) { *os << c.name; }

class BridgeSignTest : public ::testing::TestWithParam<KeyCase> {};

TEST_P(BridgeSignTest, X509SignVerifiesInProcessAndWithOpensslCli) {
  const KeyCase& c = GetParam();
  UniqueEvpPkey real = GenerateKey(c.type, c.param);
  ASSERT_NE(real, nullptr);
  auto log = std::make_shared<CallLog>();
  Result<UniqueEvpPkey> hsm = MakeHsmBackedKey(SpkiOf(real.get()), InMemorySigner(real.get(), log));
  ASSERT_TRUE(hsm.ok()) << hsm.error().message();

  UniqueX509 cert = MakeCert(hsm->get(), std::string("bridge ") + c.name);
  ASSERT_GT(X509_sign(cert.get(), hsm->get(), EVP_sha256()), 0) << DrainOpenSslErrors();
  EXPECT_EQ(X509_verify(cert.get(), real.get()), 1);
  EXPECT_EQ(X509_verify(cert.get(), hsm->get()), 1);
  ASSERT_EQ(log->calls.size(), 1u);
  EXPECT_EQ(log->calls[0].first, c.expected);

  TempDir dir;
  ExpectOpensslVerifies(cert, dir);
}

INSTANTIATE_TEST_SUITE_P(Keys, BridgeSignTest,
                         ::testing::Values(KeyCase{"rsa2048", "RSA", "2048",
                                                   RawMechanism::kRsaPkcs1},
                                           KeyCase{"p256", "EC", "P-256", RawMechanism::kEcdsa},
                                           KeyCase{"p384", "EC", "P-384", RawMechanism::kEcdsa}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(BridgeTest, RsaPssDigestSignVerifies) {
  UniqueEvpPkey real = GenerateKey("RSA", "2048");
  auto log = std::make_shared<CallLog>();
  Result<UniqueEvpPkey> hsm = MakeHsmBackedKey(SpkiOf(real.get()), InMemorySigner(real.get(), log));
  ASSERT_TRUE(hsm.ok()) << hsm.error().message();

  const std::string message = "release-1.2.3.tar.gz contents";
  UniqueMdCtx md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY_CTX* pctx = nullptr;
  ASSERT_EQ(EVP_DigestSignInit(md.get(), &pctx, EVP_sha384(), nullptr, hsm->get()), 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 1);
  size_t len = 0;
  const auto* msg = reinterpret_cast<const unsigned char*>(message.data());
  ASSERT_EQ(EVP_DigestSign(md.get(), nullptr, &len, msg, message.size()), 1);
  Bytes sig(len);
  ASSERT_EQ(EVP_DigestSign(md.get(), sig.data(), &len, msg, message.size()), 1)
      << DrainOpenSslErrors();
  sig.resize(len);
  ASSERT_EQ(log->calls.size(), 1u);
  EXPECT_EQ(log->calls[0].first, RawMechanism::kRsaX509);
  EXPECT_EQ(log->calls[0].second, 256u);

  UniqueMdCtx vmd(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY_CTX* vctx = nullptr;
  ASSERT_EQ(EVP_DigestVerifyInit(vmd.get(), &vctx, EVP_sha384(), nullptr, real.get()), 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_rsa_padding(vctx, RSA_PKCS1_PSS_PADDING), 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_rsa_pss_saltlen(vctx, RSA_PSS_SALTLEN_DIGEST), 1);
  EXPECT_EQ(EVP_DigestVerify(vmd.get(), sig.data(), sig.size(), msg, message.size()), 1);
}

TEST(BridgeTest, RsaPssCertificateVerifiesWithOpensslCli) {
  UniqueEvpPkey real = GenerateKey("RSA", "2048");
  Result<UniqueEvpPkey> hsm = MakeHsmBackedKey(SpkiOf(real.get()), InMemorySigner(real.get()));
  ASSERT_TRUE(hsm.ok()) << hsm.error().message();
  UniqueX509 cert = MakeCert(hsm->get(), "bridge rsa-pss");
  UniqueMdCtx md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY_CTX* pctx = nullptr;
  ASSERT_EQ(EVP_DigestSignInit(md.get(), &pctx, EVP_sha256(), nullptr, hsm->get()), 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 1);
  ASSERT_GT(X509_sign_ctx(cert.get(), md.get()), 0) << DrainOpenSslErrors();
  EXPECT_EQ(OBJ_obj2nid(X509_get0_tbs_sigalg(cert.get())->algorithm), NID_rsassaPss);
  EXPECT_EQ(X509_verify(cert.get(), real.get()), 1);
  TempDir dir;
  ExpectOpensslVerifies(cert, dir);
}

TEST(BridgeTest, CmsDetachedSignatureVerifies) {
  for (auto [type, param] : {std::pair{"RSA", "2048"}, std::pair{"EC", "P-256"}}) {
    SCOPED_TRACE(param);
    UniqueEvpPkey real = GenerateKey(type, param);
    Result<UniqueEvpPkey> hsm = MakeHsmBackedKey(SpkiOf(real.get()), InMemorySigner(real.get()));
    ASSERT_TRUE(hsm.ok()) << hsm.error().message();
    UniqueX509 cert = MakeCert(hsm->get(), "bridge cms");
    ASSERT_GT(X509_sign(cert.get(), hsm->get(), EVP_sha256()), 0);

    const std::string content = "artifact bytes";
    std::unique_ptr<BIO, decltype(&BIO_free)> in(
        BIO_new_mem_buf(content.data(), static_cast<int>(content.size())), BIO_free);
    std::unique_ptr<CMS_ContentInfo, decltype(&CMS_ContentInfo_free)> cms(
        CMS_sign(cert.get(), hsm->get(), nullptr, in.get(), CMS_BINARY | CMS_DETACHED),
        CMS_ContentInfo_free);
    ASSERT_NE(cms, nullptr) << DrainOpenSslErrors();

    std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(),
                                                                  X509_STORE_free);
    X509_STORE_add_cert(store.get(), cert.get());
    std::unique_ptr<BIO, decltype(&BIO_free)> data(
        BIO_new_mem_buf(content.data(), static_cast<int>(content.size())), BIO_free);
    EXPECT_EQ(CMS_verify(cms.get(), nullptr, store.get(), data.get(), nullptr,
                         CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY),
              1)
        << DrainOpenSslErrors();
  }
}

TEST(BridgeTest, FailingSignerMakesX509SignFailWithItsMessage) {
  for (auto [type, param] : {std::pair{"RSA", "2048"}, std::pair{"EC", "P-256"}}) {
    SCOPED_TRACE(param);
    UniqueEvpPkey real = GenerateKey(type, param);
    RawSigner failing = [](RawMechanism, std::span<const std::uint8_t>) -> Result<Bytes> {
      return Error(ErrorKind::kUnavailable, "C_Sign: CKR_DEVICE_REMOVED", 0x32);
    };
    Result<UniqueEvpPkey> hsm = MakeHsmBackedKey(SpkiOf(real.get()), failing);
    ASSERT_TRUE(hsm.ok()) << hsm.error().message();
    UniqueX509 cert = MakeCert(hsm->get(), "bridge failing");
    ERR_clear_error();
    EXPECT_LE(X509_sign(cert.get(), hsm->get(), EVP_sha256()), 0);
    const std::string errors = DrainOpenSslErrors();
    EXPECT_NE(errors.find("CKR_DEVICE_REMOVED"), std::string::npos) << errors;
    EXPECT_NE(errors.find("HSM signing failed"), std::string::npos) << errors;
    std::optional<Error> last = TakeLastSignerError();
    ASSERT_TRUE(last.has_value());
    EXPECT_EQ(last->kind(), ErrorKind::kUnavailable);
    EXPECT_EQ(last->ckr(), 0x32u);
    EXPECT_FALSE(TakeLastSignerError().has_value());
  }
}

TEST(BridgeTest, MalformedSignerOutputFailsCleanly) {
  struct Case {
    const char* name;
    const char* type;
    const char* param;
    RawSigner signer;
  };
  auto sized = [](std::size_t n) {
    return
        [n](RawMechanism, std::span<const std::uint8_t>) -> Result<Bytes> { return Bytes(n, 1); };
  };
  auto throwing = [](RawMechanism, std::span<const std::uint8_t>) -> Result<Bytes> {
    throw std::runtime_error("boom");
  };
  const Case cases[] = {
      {"rsa too long", "RSA", "2048", sized(257)}, {"rsa empty", "RSA", "2048", sized(0)},
      {"ec odd", "EC", "P-256", sized(63)},        {"ec too long", "EC", "P-256", sized(96)},
      {"rsa throws", "RSA", "2048", throwing},     {"ec throws", "EC", "P-384", throwing},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    UniqueEvpPkey real = GenerateKey(c.type, c.param);
    Result<UniqueEvpPkey> hsm = MakeHsmBackedKey(SpkiOf(real.get()), c.signer);
    ASSERT_TRUE(hsm.ok()) << hsm.error().message();
    UniqueX509 cert = MakeCert(hsm->get(), "bridge malformed");
    EXPECT_LE(X509_sign(cert.get(), hsm->get(), EVP_sha256()), 0);
    EXPECT_FALSE(DrainOpenSslErrors().empty());
    EXPECT_TRUE(TakeLastSignerError().has_value());
  }
}

TEST(BridgeTest, ShortRsaSignatureIsLeftPadded) {
  // A token may return an RSA signature without its leading zero bytes; the
  // bridge restores the modulus length. Find a message whose signature
  // starts with a zero byte, then strip it in the signer.
  UniqueEvpPkey real = GenerateKey("RSA", "2048");
  RawSigner inner = InMemorySigner(real.get());
  std::atomic<int> stripped{0};
  RawSigner stripping = [&](RawMechanism m, std::span<const std::uint8_t> in) -> Result<Bytes> {
    Result<Bytes> sig = inner(m, in);
    if (sig.ok() && !sig->empty() && (*sig)[0] == 0) {
      sig->erase(sig->begin());
      ++stripped;
    }
    return sig;
  };
  Result<UniqueEvpPkey> hsm = MakeHsmBackedKey(SpkiOf(real.get()), stripping);
  ASSERT_TRUE(hsm.ok());
  for (int serial = 0; serial < 2000 && stripped == 0; ++serial) {
    UniqueX509 cert = MakeCert(hsm->get(), "pad " + std::to_string(serial));
    ASSERT_GT(X509_sign(cert.get(), hsm->get(), EVP_sha256()), 0);
    ASSERT_EQ(X509_verify(cert.get(), real.get()), 1);
  }
  EXPECT_GT(stripped.load(), 0);
}

TEST(BridgeTest, RefusesUnsupportedAndMalformedKeys) {
  RawSigner unused = [](RawMechanism, std::span<const std::uint8_t>) -> Result<Bytes> {
    return Bytes{};
  };
  UniqueEvpPkey ed = GenerateKey("ED25519", nullptr);
  Result<UniqueEvpPkey> r = MakeHsmBackedKey(SpkiOf(ed.get()), unused);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(r.error().message().find("Ed25519"), std::string::npos);

  const Bytes garbage = {0x30, 0x03, 0x02, 0x01, 0x01};
  r = MakeHsmBackedKey(garbage, unused);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), ErrorKind::kInvalidArgument);

  UniqueEvpPkey ec = GenerateKey("EC", "P-256");
  Bytes trailing = SpkiOf(ec.get());
  trailing.push_back(0);
  r = MakeHsmBackedKey(trailing, unused);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), ErrorKind::kInvalidArgument);

  r = MakeHsmBackedKey(SpkiOf(ec.get()), RawSigner());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), ErrorKind::kInvalidArgument);

  r = MakeHsmBackedKey({}, unused);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ERR_peek_error(), 0u);  // nothing left behind on the queue
}

TEST(BridgeTest, DecryptionAndEcdhAreRefused) {
  UniqueEvpPkey real_rsa = GenerateKey("RSA", "2048");
  Result<UniqueEvpPkey> rsa =
      MakeHsmBackedKey(SpkiOf(real_rsa.get()), InMemorySigner(real_rsa.get()));
  ASSERT_TRUE(rsa.ok());
  UniquePkeyCtx dctx(EVP_PKEY_CTX_new(rsa->get(), nullptr), EVP_PKEY_CTX_free);
  ASSERT_EQ(EVP_PKEY_decrypt_init(dctx.get()), 1);
  unsigned char out[256];
  size_t out_len = sizeof(out);
  const unsigned char in[256] = {0, 2, 1};
  EXPECT_LE(EVP_PKEY_decrypt(dctx.get(), out, &out_len, in, sizeof(in)), 0);
  TakeLastSignerError();
  ERR_clear_error();

  UniqueEvpPkey real_ec = GenerateKey("EC", "P-256");
  UniqueEvpPkey peer = GenerateKey("EC", "P-256");
  Result<UniqueEvpPkey> ec = MakeHsmBackedKey(SpkiOf(real_ec.get()), InMemorySigner(real_ec.get()));
  ASSERT_TRUE(ec.ok());
  UniquePkeyCtx xctx(EVP_PKEY_CTX_new(ec->get(), nullptr), EVP_PKEY_CTX_free);
  ASSERT_EQ(EVP_PKEY_derive_init(xctx.get()), 1);
  ASSERT_EQ(EVP_PKEY_derive_set_peer(xctx.get(), peer.get()), 1);
  size_t secret_len = sizeof(out);
  EXPECT_LE(EVP_PKEY_derive(xctx.get(), out, &secret_len), 0);
  TakeLastSignerError();
  ERR_clear_error();
}

TEST(BridgeTest, SharedKeySignsFromManyThreads) {
  for (auto [type, param] : {std::pair{"RSA", "2048"}, std::pair{"EC", "P-256"}}) {
    SCOPED_TRACE(param);
    UniqueEvpPkey real = GenerateKey(type, param);
    Result<UniqueEvpPkey> hsm = MakeHsmBackedKey(SpkiOf(real.get()), InMemorySigner(real.get()));
    ASSERT_TRUE(hsm.ok());
    std::atomic<int> good{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 10; ++i) {
          UniqueX509 cert = MakeCert(hsm->get(), "thread " + std::to_string(t));
          if (X509_sign(cert.get(), hsm->get(), EVP_sha256()) > 0 &&
              X509_verify(cert.get(), real.get()) == 1) {
            ++good;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(good.load(), 40);
  }
}

TEST(BridgeTest, CopiedEcKeyKeepsItsSigner) {
  // EC_KEY_dup copies the method and (through our dup callback) the signer;
  // the copy must sign, and freeing both must not double-free.
  UniqueEvpPkey real = GenerateKey("EC", "P-384");
  Result<UniqueEvpPkey> hsm = MakeHsmBackedKey(SpkiOf(real.get()), InMemorySigner(real.get()));
  ASSERT_TRUE(hsm.ok());
  UniqueEvpPkey copy(EVP_PKEY_dup(hsm->get()), EVP_PKEY_free);
  ASSERT_NE(copy, nullptr) << DrainOpenSslErrors();
  hsm->reset();
  UniqueX509 cert = MakeCert(copy.get(), "bridge copy");
  ASSERT_GT(X509_sign(cert.get(), copy.get(), EVP_sha256()), 0) << DrainOpenSslErrors();
  EXPECT_EQ(X509_verify(cert.get(), real.get()), 1);
}

TEST(BridgeTest, CopiedRsaKeyIsRefusedOrSigns) {
  // OpenSSL 3.0 refuses to EVP_PKEY_dup an RSA key with a foreign method; if
  // a later version copies it, the copy must still sign through the HSM
  // rather than attempt a private-key operation it does not have.
  UniqueEvpPkey real = GenerateKey("RSA", "2048");
  Result<UniqueEvpPkey> hsm = MakeHsmBackedKey(SpkiOf(real.get()), InMemorySigner(real.get()));
  ASSERT_TRUE(hsm.ok());
  UniqueEvpPkey copy(EVP_PKEY_dup(hsm->get()), EVP_PKEY_free);
  ERR_clear_error();
  if (copy == nullptr) return;
  UniqueX509 cert = MakeCert(copy.get(), "bridge rsa copy");
  if (X509_sign(cert.get(), copy.get(), EVP_sha256()) > 0) {
    EXPECT_EQ(X509_verify(cert.get(), real.get()), 1);
  }
  ERR_clear_error();
}

// --- The bridge on a real SoftHSM key, through Token::OpenSslKey -------------

class TokenBridgeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const auto conf = dir_->path() / "softhsm2.conf";
    std::filesystem::create_directory(dir_->path() / "tokens");
    std::ofstream(conf) << "directories.tokendir = " << (dir_->path() / "tokens").string()
                        << "\nobjectstore.backend = file\nlog.level = ERROR\n";
    setenv("SOFTHSM2_CONF", conf.c_str(), 1);
    setenv("CUSTOS_FAULTP11_TARGET", CUSTOS_SOFTHSM2_MODULE, 1);
    setenv("CUSTOS_FAULTP11_CONTROL", Control().c_str(), 1);
    std::ofstream(Control()) << "";
    Status init =
        InitToken(CUSTOS_SOFTHSM2_MODULE, "bridge", SecretBytes("1234"), SecretBytes(kUserPin));
    ASSERT_TRUE(init.ok()) << init.error().message();
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static std::filesystem::path Control() { return dir_->path() / "faultp11.control"; }

  static std::unique_ptr<Token> OpenToken(const std::string& module) {
    TokenConfig config;
    config.module_path = module;
    config.token = "bridge";
    config.pin = SecretBytes(kUserPin);
    Result<std::unique_ptr<Token>> token = Token::Open(std::move(config));
    EXPECT_TRUE(token.ok()) << token.error().message();
    return token.ok() ? std::move(token).value() : nullptr;
  }

  static UniqueEvpPkey PublicKey(const KeyRef& key) {
    const unsigned char* p = key.spki_der.data();
    return UniqueEvpPkey(d2i_PUBKEY(nullptr, &p, static_cast<long>(key.spki_der.size())),
                         EVP_PKEY_free);
  }

  static constexpr char kUserPin[] = "5678";  // throwaway token in a temp dir
  static TempDir* dir_;
};

TempDir* TokenBridgeTest::dir_ = nullptr;

TEST_F(TokenBridgeTest, HsmKeysSignCertificatesThatOpensslVerifies) {
  std::unique_ptr<Token> token = OpenToken(CUSTOS_SOFTHSM2_MODULE);
  ASSERT_NE(token, nullptr);
  for (KeyType type : {KeyType::kRsa2048, KeyType::kEcP256, KeyType::kEcP384}) {
    const std::string label = "bridge-test/" + std::string(KeyTypeName(type)) + "@1";
    SCOPED_TRACE(label);
    Result<KeyRef> key = token->GenerateKeyPair(type, label);
    ASSERT_TRUE(key.ok()) << key.error().message();
    Result<UniqueEvpPkey> pkey = token->OpenSslKey(*key);
    ASSERT_TRUE(pkey.ok()) << pkey.error().message();

    UniqueX509 cert = MakeCert(pkey->get(), "HSM " + label);
    ASSERT_GT(X509_sign(cert.get(), pkey->get(), EVP_sha256()), 0) << DrainOpenSslErrors();
    UniqueEvpPkey pub = PublicKey(*key);
    ASSERT_NE(pub, nullptr);
    EXPECT_EQ(X509_verify(cert.get(), pub.get()), 1);
    ExpectOpensslVerifies(cert, *dir_);

    if (type == KeyType::kRsa2048) {  // RSA-PSS goes through CKM_RSA_X_509
      UniqueX509 pss = MakeCert(pkey->get(), "HSM PSS " + label);
      UniqueMdCtx md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
      EVP_PKEY_CTX* pctx = nullptr;
      ASSERT_EQ(EVP_DigestSignInit(md.get(), &pctx, EVP_sha256(), nullptr, pkey->get()), 1);
      ASSERT_EQ(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
      ASSERT_EQ(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 1);
      ASSERT_GT(X509_sign_ctx(pss.get(), md.get()), 0) << DrainOpenSslErrors();
      EXPECT_EQ(X509_verify(pss.get(), pub.get()), 1);
      ExpectOpensslVerifies(pss, *dir_);
    }
    EXPECT_TRUE(token->DestroyKey(*key).ok());
  }
}

TEST_F(TokenBridgeTest, HsmFaultMakesX509SignFailWithTheCkrName) {
  std::unique_ptr<Token> token = OpenToken(CUSTOS_FAULTP11_MODULE);
  ASSERT_NE(token, nullptr);
  Result<KeyRef> key = token->GenerateKeyPair(KeyType::kEcP256, "bridge-test/fault@1");
  ASSERT_TRUE(key.ok()) << key.error().message();
  Result<UniqueEvpPkey> pkey = token->OpenSslKey(*key);
  ASSERT_TRUE(pkey.ok()) << pkey.error().message();

  std::ofstream(Control(), std::ios::trunc) << "fail C_Sign CKR_DEVICE_ERROR\n";
  UniqueX509 cert = MakeCert(pkey->get(), "HSM fault");
  ERR_clear_error();
  EXPECT_LE(X509_sign(cert.get(), pkey->get(), EVP_sha256()), 0);
  const std::string errors = DrainOpenSslErrors();
  EXPECT_NE(errors.find("CKR_DEVICE_ERROR"), std::string::npos) << errors;
  std::optional<Error> last = TakeLastSignerError();
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->ckr(), 0x30u) << last->message();

  // The fault clears; the same EVP_PKEY signs again.
  std::ofstream(Control(), std::ios::trunc) << "# healthy\n";
  ASSERT_GT(X509_sign(cert.get(), pkey->get(), EVP_sha256()), 0) << DrainOpenSslErrors();
  UniqueEvpPkey pub = PublicKey(*key);
  EXPECT_EQ(X509_verify(cert.get(), pub.get()), 1);
  EXPECT_TRUE(token->DestroyKey(*key).ok());
}

}  // namespace
}  // namespace custos::pkcs11
