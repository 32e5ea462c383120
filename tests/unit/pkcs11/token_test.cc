// Token against a real SoftHSM token (one per test, made with InitToken):
// generation of every key type, read-back of the protection attributes,
// signing with every algorithm verified by OpenSSL, refusals, and healing
// after the module's sessions or login are pulled from under the pool.
#include "custos/pkcs11/token.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>
#include <sys/wait.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <latch>
#include <sstream>
#include <thread>

#include "softhsm_token.h"
#include "token_internal.h"

namespace custos::pkcs11 {
namespace {

using testing::SoftHsmToken;
using Bytes = std::vector<std::uint8_t>;

Bytes Random(std::size_t n) {
  Bytes out(n);
  if (n > 0) {
    EXPECT_EQ(RAND_bytes(out.data(), static_cast<int>(n)), 1);
  }
  return out;
}

const EVP_MD* Md(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha256:
      return EVP_sha256();
    case HashAlgorithm::kSha384:
      return EVP_sha384();
    case HashAlgorithm::kSha512:
      return EVP_sha512();
    case HashAlgorithm::kNone:
      return nullptr;
  }
  return nullptr;
}

// Verifies with OpenSSL alone, from the SPKI.
bool Verify(const Bytes& spki, SignAlgorithm algorithm, const Bytes& input, const Bytes& sig) {
  const unsigned char* p = spki.data();
  UniqueEvpPkey pkey(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())), EVP_PKEY_free);
  if (!pkey) return false;
  if (algorithm == SignAlgorithm::kEd25519) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    return EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) == 1 &&
           EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), input.data(), input.size()) == 1;
  }
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new(pkey.get(), nullptr), EVP_PKEY_CTX_free);
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1) return false;
  const HashAlgorithm hash = HashOf(algorithm);
  if (EVP_PKEY_CTX_set_signature_md(ctx.get(), Md(hash)) != 1) return false;
  switch (algorithm) {
    case SignAlgorithm::kRsaPkcs1Sha256:
    case SignAlgorithm::kRsaPkcs1Sha384:
    case SignAlgorithm::kRsaPkcs1Sha512:
      if (EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1) return false;
      break;
    case SignAlgorithm::kRsaPssSha256:
    case SignAlgorithm::kRsaPssSha384:
    case SignAlgorithm::kRsaPssSha512:
      if (EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) != 1 ||
          EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), Md(hash)) != 1 ||
          EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), static_cast<int>(DigestLength(hash))) != 1) {
        return false;
      }
      break;
    default:
      break;
  }
  return EVP_PKEY_verify(ctx.get(), sig.data(), sig.size(), input.data(), input.size()) == 1;
}

Bytes InputFor(SignAlgorithm algorithm) {
  std::size_t n = DigestLength(HashOf(algorithm));
  return Random(n == 0 ? 100 : n);
}

std::unique_ptr<Token> OpenOrDie(TokenConfig config) {
  auto token = Token::Open(std::move(config));
  if (!token.ok()) {
    ADD_FAILURE() << token.error().message();
    return nullptr;
  }
  return std::move(token).value();
}

// The same module, reached through a second dlopen handle: what another
// library in the process (or a misbehaving HSM) could do to our sessions.
class SecondHandle {
 public:
  SecondHandle() {
    handle_ = ::dlopen(testing::kModule, RTLD_NOW | RTLD_NOLOAD);
    if (handle_ == nullptr) throw std::runtime_error("module not loaded");
    auto get = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle_, "C_GetFunctionList"));
    if (get == nullptr || get(&fn_) != CKR_OK) throw std::runtime_error("no function list");
  }
  ~SecondHandle() { ::dlclose(handle_); }
  CK_FUNCTION_LIST* fn() { return fn_; }
  void Logout(CK_SLOT_ID slot) {
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    ASSERT_EQ(fn_->C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &s), CKR_OK);
    ASSERT_EQ(fn_->C_Logout(s), CKR_OK);
    fn_->C_CloseSession(s);
  }

 private:
  void* handle_ = nullptr;
  CK_FUNCTION_LIST* fn_ = nullptr;
};

class TokenTest : public ::testing::Test {
 protected:
  SoftHsmToken hsm_;
};

TEST_F(TokenTest, WrongPinIsRefusedWithCkrName) {
  auto token = Token::Open(hsm_.Config("not-the-pin"));
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.error().kind(), ErrorKind::kPermission);
  EXPECT_EQ(token.error().ckr_name(), "CKR_PIN_INCORRECT");
  EXPECT_NE(token.error().message().find("CKR_PIN_INCORRECT"), std::string::npos);
  EXPECT_EQ(token.error().message().find("not-the-pin"), std::string::npos);
}

TEST_F(TokenTest, FindsTokenByLabelSerialAndUri) {
  std::string serial;
  {
    auto token = OpenOrDie(hsm_.Config());
    ASSERT_TRUE(token);
    TokenInfo info = token->Info();
    EXPECT_EQ(info.label, hsm_.label());
    EXPECT_FALSE(info.serial.empty());
    serial = info.serial;
  }
  for (std::string name : {serial, "pkcs11:token=" + hsm_.label(), "pkcs11:serial=" + serial,
                           "pkcs11:token=custos%2dtest;serial=" + serial + ";object=x"}) {
    TokenConfig config = hsm_.Config();
    config.token = name;
    auto token = Token::Open(std::move(config));
    EXPECT_TRUE(token.ok()) << name << ": " << token.error().message();
  }
  TokenConfig missing = hsm_.Config();
  missing.token = "no-such-token";
  auto token = Token::Open(std::move(missing));
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.error().kind(), ErrorKind::kNotFound);
  TokenConfig with_pin = hsm_.Config();
  with_pin.token = "pkcs11:token=custos-test?pin-value=" + std::string(testing::kUserPin);
  token = Token::Open(std::move(with_pin));
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.error().kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(token.error().message().find(testing::kUserPin), std::string::npos);
}

TEST_F(TokenTest, GeneratesEveryFastKeyTypeAndSignsEveryAlgorithm) {
  auto token = OpenOrDie(hsm_.Config());
  ASSERT_TRUE(token);
  for (KeyType type : {KeyType::kEcP256, KeyType::kEcP384, KeyType::kRsa2048, KeyType::kRsa3072,
                       KeyType::kEd25519}) {
    const std::string label = "custos/" + std::string(KeyTypeName(type)) + "@1";
    auto key = token->GenerateKeyPair(type, label);
    ASSERT_TRUE(key.ok()) << KeyTypeName(type) << ": " << key.error().message();
    EXPECT_EQ(key->label, label);
    EXPECT_EQ(key->id.size(), 16u);
    EXPECT_EQ(key->type, type);
    for (SignAlgorithm algorithm : AlgorithmsFor(type)) {
      Bytes input = InputFor(algorithm);
      auto sig = token->Sign(*key, algorithm, input);
      ASSERT_TRUE(sig.ok()) << SignAlgorithmName(algorithm) << ": " << sig.error().message();
      EXPECT_TRUE(Verify(key->spki_der, algorithm, input, *sig)) << SignAlgorithmName(algorithm);
      // A different input must not verify (the verifier is really checking).
      Bytes other = InputFor(algorithm);
      EXPECT_FALSE(Verify(key->spki_der, algorithm, other, *sig)) << SignAlgorithmName(algorithm);
    }
    // FindKey returns the same public key.
    auto found = token->FindKey(label, key->id);
    ASSERT_TRUE(found.ok()) << found.error().message();
    EXPECT_EQ(found->spki_der, key->spki_der);
    EXPECT_EQ(found->type, type);
  }
  auto keys = token->ListPrivateKeys();
  ASSERT_TRUE(keys.ok()) << keys.error().message();
  ASSERT_EQ(keys->size(), 5u);
  for (const TokenKey& key : *keys) {
    EXPECT_TRUE(key.sensitive) << key.label;
    EXPECT_FALSE(key.extractable) << key.label;
    ASSERT_TRUE(key.type.has_value()) << key.label;
    EXPECT_EQ(key.label, "custos/" + std::string(KeyTypeName(*key.type)) + "@1");
  }
}

TEST_F(TokenTest, EmptyEd25519MessageSigns) {
  auto token = OpenOrDie(hsm_.Config());
  ASSERT_TRUE(token);
  auto key = token->GenerateKeyPair(KeyType::kEd25519, "ed");
  ASSERT_TRUE(key.ok()) << key.error().message();
  auto sig = token->Sign(*key, SignAlgorithm::kEd25519, {});
  ASSERT_TRUE(sig.ok()) << sig.error().message();
  EXPECT_TRUE(Verify(key->spki_der, SignAlgorithm::kEd25519, {}, *sig));
}

TEST_F(TokenTest, Rsa4096SignsAndABusyPoolTimesOut) {
  TokenConfig config = hsm_.Config();
  config.max_sessions = 1;
  config.session_wait = std::chrono::milliseconds(50);
  auto token = OpenOrDie(std::move(config));
  ASSERT_TRUE(token);
  auto ec = token->GenerateKeyPair(KeyType::kEcP256, "ec");
  ASSERT_TRUE(ec.ok()) << ec.error().message();
  // RSA-4096 generation in SoftHSM takes far longer than 50 ms and holds the
  // only session, so a concurrent Sign must give up with kTimeout.
  std::atomic<bool> started{false};
  Result<KeyRef> rsa = Error(ErrorKind::kInternal, "not run");
  std::thread generator([&] {
    started = true;
    rsa = token->GenerateKeyPair(KeyType::kRsa4096, "rsa4096");
  });
  while (!started) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto busy = token->Sign(*ec, SignAlgorithm::kEcdsaP256Sha256, Random(32));
  generator.join();
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.error().kind(), ErrorKind::kTimeout) << busy.error().message();
  EXPECT_TRUE(busy.error().retryable());

  ASSERT_TRUE(rsa.ok()) << rsa.error().message();
  EXPECT_EQ(rsa->type, KeyType::kRsa4096);
  for (SignAlgorithm algorithm : {SignAlgorithm::kRsaPkcs1Sha384, SignAlgorithm::kRsaPssSha512}) {
    Bytes input = InputFor(algorithm);
    auto sig = token->Sign(*rsa, algorithm, input);
    ASSERT_TRUE(sig.ok()) << sig.error().message();
    EXPECT_EQ(sig->size(), 512u);
    EXPECT_TRUE(Verify(rsa->spki_der, algorithm, input, *sig));
  }
}

TEST_F(TokenTest, WrongDigestLengthAndWrongAlgorithmAreRefused) {
  auto token = OpenOrDie(hsm_.Config());
  ASSERT_TRUE(token);
  auto key = token->GenerateKeyPair(KeyType::kEcP256, "ec");
  ASSERT_TRUE(key.ok()) << key.error().message();
  auto sig = token->Sign(*key, SignAlgorithm::kEcdsaP256Sha256, Random(31));
  ASSERT_FALSE(sig.ok());
  EXPECT_EQ(sig.error().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(sig.error().message().find("expected a 32-byte sha256 digest, got 31 bytes"),
            std::string::npos)
      << sig.error().message();
  sig = token->Sign(*key, SignAlgorithm::kRsaPssSha256, Random(32));
  ASSERT_FALSE(sig.ok());
  EXPECT_EQ(sig.error().kind(), ErrorKind::kInvalidArgument);
  KeyRef lying = *key;
  lying.type = KeyType::kEcP384;  // metadata says P-384, token holds P-256
  sig = token->Sign(lying, SignAlgorithm::kEcdsaP384Sha384, Random(48));
  EXPECT_FALSE(sig.ok());
}

TEST_F(TokenTest, ProtectionAttributesShowInPkcs11Tool) {
  auto token = OpenOrDie(hsm_.Config());
  ASSERT_TRUE(token);
  ASSERT_TRUE(token->GenerateKeyPair(KeyType::kEcP256, "tool-ec").ok());
  ASSERT_TRUE(token->GenerateKeyPair(KeyType::kRsa2048, "tool-rsa").ok());
  // A test PIN on the command line of a test tool; never done by Custos.
  std::string command = std::string("pkcs11-tool --module ") + testing::kModule +
                        " --token-label " + hsm_.label() + " --login --pin " + testing::kUserPin +
                        " --list-objects --type privkey 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  std::array<char, 512> buf;
  while (std::fgets(buf.data(), buf.size(), pipe) != nullptr) out += buf.data();
  int status = ::pclose(pipe);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  std::istringstream lines(out);
  std::string line;
  int access_lines = 0;
  while (std::getline(lines, line)) {
    std::size_t at = line.find("Access:");
    if (at == std::string::npos) continue;
    ++access_lines;
    std::vector<std::string> flags;
    std::istringstream items(line.substr(at + 7));
    std::string item;
    while (std::getline(items, item, ',')) {
      item.erase(0, item.find_first_not_of(' '));
      item.erase(item.find_last_not_of(" \r") + 1);
      flags.push_back(item);
    }
    auto has = [&](const char* f) {
      return std::find(flags.begin(), flags.end(), f) != flags.end();
    };
    EXPECT_TRUE(has("sensitive")) << line;
    EXPECT_TRUE(has("always sensitive")) << line;
    EXPECT_TRUE(has("never extractable")) << line;
    EXPECT_FALSE(has("extractable")) << line;
  }
  EXPECT_EQ(access_lines, 2) << out;
}

TEST_F(TokenTest, Ed25519KeyDoesNotHideRsaAndEcKeys) {
  auto token = OpenOrDie(hsm_.Config());
  ASSERT_TRUE(token);
  auto ed = token->GenerateKeyPair(KeyType::kEd25519, "ed");
  auto rsa = token->GenerateKeyPair(KeyType::kRsa2048, "rsa");
  auto ec = token->GenerateKeyPair(KeyType::kEcP384, "ec");
  ASSERT_TRUE(ed.ok() && rsa.ok() && ec.ok());
  token.reset();
  // A fresh Token (empty cache) lists and finds everything.
  token = OpenOrDie(hsm_.Config());
  ASSERT_TRUE(token);
  auto keys = token->ListPrivateKeys();
  ASSERT_TRUE(keys.ok()) << keys.error().message();
  ASSERT_EQ(keys->size(), 3u);
  for (const auto* ref : {&*rsa, &*ec}) {
    auto found = token->FindKey(ref->label, ref->id);
    ASSERT_TRUE(found.ok()) << found.error().message();
    SignAlgorithm algorithm = AlgorithmsFor(ref->type).front();
    Bytes input = InputFor(algorithm);
    auto sig = token->Sign(*found, algorithm, input);
    ASSERT_TRUE(sig.ok()) << sig.error().message();
    EXPECT_TRUE(Verify(ref->spki_der, algorithm, input, *sig));
  }
}

TEST_F(TokenTest, KeyHandlesAreCachedNotSearched) {
  auto token = OpenOrDie(hsm_.Config());
  ASSERT_TRUE(token);
  auto key = token->GenerateKeyPair(KeyType::kEcP256, "cached");
  ASSERT_TRUE(key.ok());
  const std::uint64_t before = StatsForTesting(*token).object_searches;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(token->Sign(*key, SignAlgorithm::kEcdsaP256Sha256, Random(32)).ok());
  }
  EXPECT_EQ(StatsForTesting(*token).object_searches, before);
}

TEST_F(TokenTest, KeyRefWithAnotherPublicKeyIsRefused) {
  auto token = OpenOrDie(hsm_.Config());
  ASSERT_TRUE(token);
  auto a = token->GenerateKeyPair(KeyType::kEcP256, "a");
  auto b = token->GenerateKeyPair(KeyType::kEcP256, "b");
  ASSERT_TRUE(a.ok() && b.ok());
  KeyRef stale = *a;
  stale.spki_der = b->spki_der;
  // Cached handle: refused.
  auto sig = token->Sign(stale, SignAlgorithm::kEcdsaP256Sha256, Random(32));
  ASSERT_FALSE(sig.ok());
  EXPECT_EQ(sig.error().kind(), ErrorKind::kPermission) << sig.error().message();
  // Fresh Token, key looked up on the token: refused too.
  token.reset();
  token = OpenOrDie(hsm_.Config());
  ASSERT_TRUE(token);
  sig = token->Sign(stale, SignAlgorithm::kEcdsaP256Sha256, Random(32));
  ASSERT_FALSE(sig.ok());
  EXPECT_EQ(sig.error().kind(), ErrorKind::kPermission) << sig.error().message();
  // The real KeyRef still works.
  EXPECT_TRUE(token->Sign(*a, SignAlgorithm::kEcdsaP256Sha256, Random(32)).ok());
  // A KeyRef with no public key is refused outright.
  KeyRef blank = *a;
  blank.spki_der.clear();
  EXPECT_EQ(token->Sign(blank, SignAlgorithm::kEcdsaP256Sha256, Random(32)).error().kind(),
            ErrorKind::kInvalidArgument);
}

TEST_F(TokenTest, HealsAfterSessionsAreClosedUnderneath) {
  auto token = OpenOrDie(hsm_.Config());
  ASSERT_TRUE(token);
  auto key = token->GenerateKeyPair(KeyType::kEcP256, "heal");
  ASSERT_TRUE(key.ok());
  ASSERT_TRUE(token->Sign(*key, SignAlgorithm::kEcdsaP256Sha256, Random(32)).ok());
  const TokenStats before = StatsForTesting(*token);

  SecondHandle other;
  ASSERT_EQ(other.fn()->C_CloseAllSessions(token->Info().slot_id), CKR_OK);

  Bytes digest = Random(32);
  auto sig = token->Sign(*key, SignAlgorithm::kEcdsaP256Sha256, digest);
  ASSERT_TRUE(sig.ok()) << sig.error().message();
  EXPECT_TRUE(Verify(key->spki_der, SignAlgorithm::kEcdsaP256Sha256, digest, *sig));
  const TokenStats after = StatsForTesting(*token);
  EXPECT_EQ(after.heals, before.heals + 1);
  EXPECT_GT(after.generation, before.generation);
  // The key was looked up again (and its public key checked) after healing.
  EXPECT_GT(after.object_searches, before.object_searches);
}

TEST_F(TokenTest, HealsAfterLogoutUnderneath) {
  auto token = OpenOrDie(hsm_.Config());
  ASSERT_TRUE(token);
  auto key = token->GenerateKeyPair(KeyType::kRsa2048, "heal-rsa");
  ASSERT_TRUE(key.ok());
  ASSERT_TRUE(token->Sign(*key, SignAlgorithm::kRsaPssSha256, Random(32)).ok());
  const TokenStats before = StatsForTesting(*token);

  SecondHandle other;
  other.Logout(token->Info().slot_id);

  Bytes digest = Random(32);
  auto sig = token->Sign(*key, SignAlgorithm::kRsaPkcs1Sha256, digest);
  ASSERT_TRUE(sig.ok()) << sig.error().message();
  EXPECT_TRUE(Verify(key->spki_der, SignAlgorithm::kRsaPkcs1Sha256, digest, *sig));
  EXPECT_EQ(StatsForTesting(*token).heals, before.heals + 1);
  auto keys = token->ListPrivateKeys();
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->size(), 1u);
}

TEST_F(TokenTest, HealsAfterModuleIsFinalizedUnderneath) {
  auto token = OpenOrDie(hsm_.Config());
  ASSERT_TRUE(token);
  auto key = token->GenerateKeyPair(KeyType::kEd25519, "heal-ed");
  ASSERT_TRUE(key.ok());
  const TokenStats before = StatsForTesting(*token);
  // Everything (sessions, login, object handles) is gone, and the module
  // answers CKR_CRYPTOKI_NOT_INITIALIZED until it is initialised again.
  SecondHandle other;
  ASSERT_EQ(other.fn()->C_Finalize(nullptr), CKR_OK);

  Bytes message = Random(64);
  auto sig = token->Sign(*key, SignAlgorithm::kEd25519, message);
  ASSERT_TRUE(sig.ok()) << sig.error().message();
  EXPECT_TRUE(Verify(key->spki_der, SignAlgorithm::kEd25519, message, *sig));
  EXPECT_EQ(StatsForTesting(*token).heals, before.heals + 1);
}

TEST_F(TokenTest, RemovedTokenIsUnavailableRateLimitedAndComesBack) {
  auto token = OpenOrDie(hsm_.Config());
  ASSERT_TRUE(token);
  auto key = token->GenerateKeyPair(KeyType::kEcP384, "comes-back");
  ASSERT_TRUE(key.ok());
  const TokenStats before = StatsForTesting(*token);
  // "Unplug" the token: the module forgets everything and the token's
  // files are gone when it looks again.
  SecondHandle other;
  ASSERT_EQ(other.fn()->C_Finalize(nullptr), CKR_OK);
  std::filesystem::rename(hsm_.dir() / "tokens", hsm_.dir() / "unplugged");
  std::filesystem::create_directory(hsm_.dir() / "tokens");

  auto sig = token->Sign(*key, SignAlgorithm::kEcdsaP384Sha384, Random(48));
  ASSERT_FALSE(sig.ok());
  EXPECT_EQ(sig.error().kind(), ErrorKind::kUnavailable) << sig.error().message();
  EXPECT_TRUE(sig.error().retryable());
  EXPECT_EQ(StatsForTesting(*token).heals, before.heals + 1);
  // Straight away again: no new heal attempt (at most one per 200 ms).
  sig = token->Sign(*key, SignAlgorithm::kEcdsaP384Sha384, Random(48));
  ASSERT_FALSE(sig.ok());
  EXPECT_EQ(sig.error().kind(), ErrorKind::kUnavailable);
  EXPECT_EQ(StatsForTesting(*token).heals, before.heals + 1);

  // Plug it back in: the next call after the interval heals and signs.
  std::filesystem::remove(hsm_.dir() / "tokens");
  std::filesystem::rename(hsm_.dir() / "unplugged", hsm_.dir() / "tokens");
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  Bytes digest = Random(48);
  sig = token->Sign(*key, SignAlgorithm::kEcdsaP384Sha384, digest);
  ASSERT_TRUE(sig.ok()) << sig.error().message();
  EXPECT_TRUE(Verify(key->spki_der, SignAlgorithm::kEcdsaP384Sha384, digest, *sig));
}

TEST_F(TokenTest, ConcurrentSignersHealOnceWithoutStampede) {
  TokenConfig config = hsm_.Config();
  config.max_sessions = 3;
  auto token = OpenOrDie(std::move(config));
  ASSERT_TRUE(token);
  auto key = token->GenerateKeyPair(KeyType::kEcP256, "busy");
  ASSERT_TRUE(key.ok());
  constexpr int kThreads = 4;
  std::atomic<int> failures{0};
  std::latch warmed_up(kThreads + 1);
  std::latch sessions_closed(1);
  auto sign = [&] {
    Bytes digest = Random(32);
    auto sig = token->Sign(*key, SignAlgorithm::kEcdsaP256Sha256, digest);
    if (!sig.ok()) {
      ADD_FAILURE() << sig.error().message();
      ++failures;
    } else if (!Verify(key->spki_der, SignAlgorithm::kEcdsaP256Sha256, digest, *sig)) {
      ++failures;
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) sign();  // fills the pool with sessions
      warmed_up.count_down();
      sessions_closed.wait();
      for (int i = 0; i < 30; ++i) sign();  // all start on dead sessions
    });
  }
  warmed_up.arrive_and_wait();
  const TokenStats before = StatsForTesting(*token);
  // Close every session while no call is in flight (SoftHSM does not survive
  // C_CloseAllSessions racing a C_Sign), then let all threads hit the
  // dead sessions at once: one heals, the others wait and retry.
  SecondHandle other;
  ASSERT_EQ(other.fn()->C_CloseAllSessions(token->Info().slot_id), CKR_OK);
  sessions_closed.count_down();
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(StatsForTesting(*token).heals, before.heals + 1);
}

TEST_F(TokenTest, DestroyKeyRemovesBothHalves) {
  auto token = OpenOrDie(hsm_.Config());
  ASSERT_TRUE(token);
  auto keep = token->GenerateKeyPair(KeyType::kEcP256, "keep");
  auto gone = token->GenerateKeyPair(KeyType::kEd25519, "gone");
  ASSERT_TRUE(keep.ok() && gone.ok());
  ASSERT_TRUE(token->Sign(*gone, SignAlgorithm::kEd25519, Random(10)).ok());
  KeyRef impostor = *gone;
  impostor.spki_der = keep->spki_der;
  EXPECT_EQ(token->DestroyKey(impostor).error().kind(), ErrorKind::kPermission);
  Status destroyed = token->DestroyKey(*gone);
  ASSERT_TRUE(destroyed.ok()) << destroyed.error().message();
  EXPECT_EQ(token->FindKey(gone->label, gone->id).error().kind(), ErrorKind::kNotFound);
  auto sig = token->Sign(*gone, SignAlgorithm::kEd25519, Random(10));
  ASSERT_FALSE(sig.ok());
  EXPECT_EQ(sig.error().kind(), ErrorKind::kNotFound);
  EXPECT_EQ(token->DestroyKey(*gone).error().kind(), ErrorKind::kNotFound);
  auto keys = token->ListPrivateKeys();
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ(keys->front().label, "keep");
}

TEST_F(TokenTest, RawSignerAndOpenSslKey) {
  auto token = OpenOrDie(hsm_.Config());
  ASSERT_TRUE(token);
  auto ec = token->GenerateKeyPair(KeyType::kEcP384, "raw-ec");
  auto rsa = token->GenerateKeyPair(KeyType::kRsa2048, "raw-rsa");
  auto ed = token->GenerateKeyPair(KeyType::kEd25519, "raw-ed");
  ASSERT_TRUE(ec.ok() && rsa.ok() && ed.ok());

  auto raw = SignRaw(*token, *ec, RawMechanism::kEcdsa, Random(48));
  ASSERT_TRUE(raw.ok()) << raw.error().message();
  EXPECT_EQ(raw->size(), 96u);
  Bytes block(256, 0x01);
  block[0] = 0x00;  // below the modulus
  raw = SignRaw(*token, *rsa, RawMechanism::kRsaX509, block);
  ASSERT_TRUE(raw.ok()) << raw.error().message();
  EXPECT_EQ(raw->size(), 256u);
  EXPECT_FALSE(SignRaw(*token, *ed, RawMechanism::kEcdsa, Random(32)).ok());

  EXPECT_EQ(token->OpenSslKey(*ed).error().kind(), ErrorKind::kInvalidArgument);
  for (const KeyRef* key : {&*ec, &*rsa}) {
    auto pkey = token->OpenSslKey(*key);
    ASSERT_TRUE(pkey.ok()) << pkey.error().message();
    const EVP_MD* md = key == &*ec ? EVP_sha384() : EVP_sha256();
    Bytes message = Random(200);
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    ASSERT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, pkey->get()), 1);
    std::size_t len = 0;
    ASSERT_EQ(EVP_DigestSign(ctx.get(), nullptr, &len, message.data(), message.size()), 1);
    Bytes sig(len);
    ASSERT_EQ(EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size()), 1);
    sig.resize(len);
    // Verify with OpenSSL alone against the SPKI.
    const unsigned char* p = key->spki_der.data();
    UniqueEvpPkey pub(d2i_PUBKEY(nullptr, &p, static_cast<long>(key->spki_der.size())),
                      EVP_PKEY_free);
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> vctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    ASSERT_EQ(EVP_DigestVerifyInit(vctx.get(), nullptr, md, nullptr, pub.get()), 1);
    EXPECT_EQ(EVP_DigestVerify(vctx.get(), sig.data(), sig.size(), message.data(), message.size()),
              1);
  }
}

}  // namespace
}  // namespace custos::pkcs11
