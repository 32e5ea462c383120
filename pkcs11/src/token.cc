// Token: the session pool, the key-handle cache, healing, key generation and
// signing. The C boundary itself (size queries, CKR mapping) is in module.cc.
#include "custos/pkcs11/token.h"

#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "der.h"
#include "module.h"
#include "openssl_bridge.h"
#include "token_internal.h"
#include "uri.h"

namespace custos::pkcs11 {
namespace {

using internal::CkError;
using internal::IsHealable;
using internal::Module;
using internal::TokenSelector;
using Clock = std::chrono::steady_clock;

// At most one heal attempt per interval, so a removed device does not spin.
constexpr std::chrono::milliseconds kHealInterval{200};
constexpr std::size_t kKeyIdSize = 16;
constexpr std::size_t kMaxLabelSize = 256;

std::string Hex(std::span<const std::uint8_t> bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  char buf[3];
  for (std::uint8_t b : bytes) {
    std::snprintf(buf, sizeof(buf), "%02x", b);
    out += buf;
  }
  return out;
}

std::string CacheKey(std::string_view label, std::span<const std::uint8_t> id) {
  std::string key(label);
  key.push_back('\0');
  key.append(id.begin(), id.end());
  return key;
}

std::string KeyName(std::string_view label) { return "key '" + std::string(label) + "'"; }

// Prefixes an error's message with what was being done.
Error Context(std::string_view what, const Error& error) {
  return Error(error.kind(), std::string(what) + ": " + error.message(), error.ckr());
}

CK_MECHANISM_TYPE HashMechanism(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha384:
      return CKM_SHA384;
    case HashAlgorithm::kSha512:
      return CKM_SHA512;
    default:
      return CKM_SHA256;
  }
}

CK_RSA_PKCS_MGF_TYPE Mgf1(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha384:
      return CKG_MGF1_SHA384;
    case HashAlgorithm::kSha512:
      return CKG_MGF1_SHA512;
    default:
      return CKG_MGF1_SHA256;
  }
}

bool IsRsa(KeyType type) {
  return type == KeyType::kRsa2048 || type == KeyType::kRsa3072 || type == KeyType::kRsa4096;
}

std::size_t RsaBits(KeyType type) {
  switch (type) {
    case KeyType::kRsa3072:
      return 3072;
    case KeyType::kRsa4096:
      return 4096;
    default:
      return 2048;
  }
}

bool IsPinError(CK_RV rv) {
  return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED ||
         rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE;
}

// Bit length of a big-endian unsigned integer.
std::size_t BitLength(std::span<const std::uint8_t> bytes) {
  std::size_t i = 0;
  while (i < bytes.size() && bytes[i] == 0) ++i;
  if (i == bytes.size()) return 0;
  std::size_t bits = (bytes.size() - i - 1) * 8;
  for (std::uint8_t top = bytes[i]; top != 0; top >>= 1) ++bits;
  return bits;
}

// Destroys freshly generated objects unless Release()d: a key pair that
// fails any check after C_GenerateKeyPair does not stay on the token.
class GeneratedObjects final {
 public:
  GeneratedObjects(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE pub,
                   CK_OBJECT_HANDLE priv)
      : fn_(fn), session_(session), pub_(pub), priv_(priv) {}
  ~GeneratedObjects() {
    if (!armed_) return;
    fn_->C_DestroyObject(session_, priv_);
    fn_->C_DestroyObject(session_, pub_);
  }
  GeneratedObjects(const GeneratedObjects&) = delete;
  GeneratedObjects& operator=(const GeneratedObjects&) = delete;
  void Release() { armed_ = false; }

 private:
  CK_FUNCTION_LIST* fn_;
  CK_SESSION_HANDLE session_;
  CK_OBJECT_HANDLE pub_;
  CK_OBJECT_HANDLE priv_;
  bool armed_ = true;
};

class TokenImpl final : public Token {
 public:
  TokenImpl(TokenConfig config, std::shared_ptr<Module> module, TokenSelector selector)
      : config_(std::move(config)),
        module_(std::move(module)),
        fn_(module_->fn()),
        selector_(std::move(selector)) {}

  ~TokenImpl() override {
    std::vector<CK_SESSION_HANDLE> idle;
    CK_SESSION_HANDLE anchor;
    {
      std::lock_guard<std::mutex> lock(mu_);
      idle.swap(idle_);
      anchor = std::exchange(anchor_, CK_INVALID_HANDLE);
    }
    for (CK_SESSION_HANDLE session : idle) fn_->C_CloseSession(session);
    if (anchor != CK_INVALID_HANDLE) {
      fn_->C_Logout(anchor);
      fn_->C_CloseSession(anchor);
    }
  }

  // Finds the slot, opens the anchor session and logs in. Called by Open and
  // by the healer (never by two threads at once). With allow_reinit, a
  // failed attempt is followed by C_Finalize + C_Initialize and a second one.
  Status Connect(bool allow_reinit);

  TokenInfo Info() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return info_;
  }

  Result<KeyRef> GenerateKeyPair(KeyType type, std::string_view label) override;
  Result<std::vector<std::uint8_t>> Sign(const KeyRef& key, SignAlgorithm algorithm,
                                         std::span<const std::uint8_t> input) override;
  Result<std::vector<TokenKey>> ListPrivateKeys() override;
  Result<KeyRef> FindKey(std::string_view label, std::span<const std::uint8_t> id) override;
  Status DestroyKey(const KeyRef& key) override;
  Result<UniqueEvpPkey> OpenSslKey(const KeyRef& key) override;

  Result<std::vector<std::uint8_t>> SignRaw(const KeyRef& key, RawMechanism mechanism,
                                            std::span<const std::uint8_t> input);
  TokenStats Stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return TokenStats{searches_.load(), heals_, generation_, slot_};
  }

 private:
  // A pooled session, returned to the pool (or closed, if Discard()ed) when
  // destroyed. Sessions of an older generation were closed by a heal and are
  // simply forgotten.
  class Lease final {
   public:
    Lease(TokenImpl* owner, CK_SESSION_HANDLE session, std::uint64_t generation)
        : owner_(owner), session_(session), generation_(generation) {}
    Lease(Lease&& other) noexcept
        : owner_(std::exchange(other.owner_, nullptr)),
          session_(other.session_),
          generation_(other.generation_),
          discard_(other.discard_) {}
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    ~Lease() {
      if (owner_ != nullptr) owner_->Release(session_, generation_, discard_);
    }
    CK_SESSION_HANDLE session() const { return session_; }
    std::uint64_t generation() const { return generation_; }
    // The session is in an unknown state: close it instead of pooling it.
    void Discard() { discard_ = true; }

   private:
    TokenImpl* owner_;
    CK_SESSION_HANDLE session_;
    std::uint64_t generation_;
    bool discard_ = false;
  };

  struct CachedKey {
    CK_OBJECT_HANDLE handle;
    std::vector<std::uint8_t> spki;
    std::uint64_t generation;
  };

  Status ConnectOnce();
  Result<Lease> Acquire();
  void Release(CK_SESSION_HANDLE session, std::uint64_t generation, bool discard);
  Status Heal(std::uint64_t observed_generation);
  std::uint64_t Generation() const {
    std::lock_guard<std::mutex> lock(mu_);
    return generation_;
  }

  // Runs fn(Lease&) -> Result<T> with a pooled session. On a healable CKR
  // the pool heals and fn runs once more; a second failure is kUnavailable.
  // Every error is prefixed with `what`.
  template <typename T, typename Fn>
  Result<T> WithSession(std::string_view what, Fn&& fn) {
    for (int attempt = 0;; ++attempt) {
      std::uint64_t generation = Generation();
      Result<T> result = [&]() -> Result<T> {
        Result<Lease> lease = Acquire();
        if (!lease.ok()) return lease.error();
        generation = lease->generation();
        Result<T> r = fn(*lease);
        if (!r.ok() && IsHealable(r.error().ckr())) lease->Discard();
        return r;
      }();
      if (result.ok()) return result;
      if (!IsHealable(result.error().ckr())) return Context(what, result.error());
      if (attempt > 0) {
        return Error(ErrorKind::kUnavailable,
                     std::string(what) + ": " + result.error().message() +
                         " (still failing after the session pool recovered)",
                     result.error().ckr());
      }
      Status healed = Heal(generation);
      if (!healed.ok()) {
        return Error(ErrorKind::kUnavailable, std::string(what) + ": " + healed.error().message(),
                     healed.error().ckr() != CKR_OK ? healed.error().ckr() : result.error().ckr());
      }
    }
  }

  // The private key handle for `key`, from the cache or (after checking the
  // token's public key against key.spki_der) from the token.
  Result<CK_OBJECT_HANDLE> PrivateKeyHandle(Lease& lease, const KeyRef& key);
  void CacheKeyHandle(std::uint64_t generation, const KeyRef& key, CK_OBJECT_HANDLE handle);
  // Finds the one object of this class with this label and id.
  Result<std::vector<CK_OBJECT_HANDLE>> FindByLabelId(CK_SESSION_HANDLE session,
                                                      CK_OBJECT_CLASS object_class,
                                                      std::string_view label,
                                                      std::span<const std::uint8_t> id);
  Result<CK_OBJECT_HANDLE> FindUnique(CK_SESSION_HANDLE session, CK_OBJECT_CLASS object_class,
                                      std::string_view label, std::span<const std::uint8_t> id);
  // KeyRef of the pair with this label and id; *priv gets the private handle.
  Result<KeyRef> ReadKeyPair(CK_SESSION_HANDLE session, std::string_view label,
                             std::span<const std::uint8_t> id, CK_OBJECT_HANDLE* priv);
  // SPKI and key type of a public key object.
  Result<std::pair<KeyType, std::vector<std::uint8_t>>> ReadPublicKey(CK_SESSION_HANDLE session,
                                                                      CK_OBJECT_HANDLE pub);
  Result<std::vector<std::uint8_t>> SignWithMechanism(std::string_view what, const KeyRef& key,
                                                      CK_MECHANISM& mechanism,
                                                      std::span<const std::uint8_t> data);

  const TokenConfig config_;
  const std::shared_ptr<Module> module_;
  CK_FUNCTION_LIST* const fn_;
  const TokenSelector selector_;
  std::atomic<std::uint64_t> searches_{0};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Everything below is guarded by mu_.
  CK_SLOT_ID slot_ = 0;
  TokenInfo info_;
  // Keeps the login alive: PKCS#11 drops it when the last session closes.
  CK_SESSION_HANDLE anchor_ = CK_INVALID_HANDLE;
  std::uint64_t generation_ = 0;
  std::vector<CK_SESSION_HANDLE> idle_;
  std::size_t open_ = 0;    // sessions of this generation, idle or leased
  std::size_t leased_ = 0;  // leases of any generation not yet returned
  bool healing_ = false;
  bool healthy_ = true;
  bool pin_rejected_ = false;  // never retry a PIN the token refused
  std::optional<Clock::time_point> last_heal_;
  std::optional<Error> last_heal_error_;
  std::uint64_t heals_ = 0;
  std::map<std::string, CachedKey> cache_;
};

Status TokenImpl::ConnectOnce() {
  Result<std::vector<CK_SLOT_ID>> slots = internal::GetSlotList(fn_, true);
  if (!slots.ok()) return slots.error();
  std::vector<std::pair<CK_SLOT_ID, TokenInfo>> matches;
  for (CK_SLOT_ID slot : *slots) {
    CK_TOKEN_INFO ti{};
    if (fn_->C_GetTokenInfo(slot, &ti) != CKR_OK) continue;
    if ((ti.flags & CKF_TOKEN_INITIALIZED) == 0) continue;
    TokenInfo info;
    info.label = internal::TrimPadded(ti.label, sizeof(ti.label));
    info.serial = internal::TrimPadded(ti.serialNumber, sizeof(ti.serialNumber));
    info.manufacturer = internal::TrimPadded(ti.manufacturerID, sizeof(ti.manufacturerID));
    info.model = internal::TrimPadded(ti.model, sizeof(ti.model));
    info.slot_id = slot;
    if (selector_.Matches(slot, info.label, info.serial, info.manufacturer, info.model)) {
      matches.emplace_back(slot, std::move(info));
    }
  }
  if (matches.empty()) {
    return Error(ErrorKind::kNotFound,
                 "no initialised token matches '" + config_.token + "' in PKCS#11 module " +
                     config_.module_path,
                 CKR_TOKEN_NOT_PRESENT);
  }
  if (matches.size() > 1) {
    return Error(ErrorKind::kInvalidArgument, std::to_string(matches.size()) + " tokens match '" +
                                                  config_.token +
                                                  "'; name one by serial (pkcs11:serial=...)");
  }
  auto& [slot, info] = matches.front();
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  CK_RV rv =
      fn_->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session);
  if (rv != CKR_OK) return CkError(rv, "C_OpenSession on token '" + info.label + "'");
  rv = internal::Login(fn_, session, CKU_USER, config_.pin.data(), config_.pin.size());
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
    fn_->C_CloseSession(session);
    return CkError(rv, "C_Login as user to token '" + info.label + "'");
  }
  std::lock_guard<std::mutex> lock(mu_);
  slot_ = slot;
  info_ = std::move(info);
  anchor_ = session;
  return {};
}

Status TokenImpl::Connect(bool allow_reinit) {
  Status first = ConnectOnce();
  if (first.ok() || !allow_reinit || IsPinError(first.error().ckr())) return first;
  // The module may need re-initialising to see the token again (SoftHSM
  // scans its token directory only in C_Initialize). PKCS#11 forbids
  // C_Finalize while other threads are inside the module: wait for stale
  // leases to come back, and never pull the module from under another user.
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, config_.session_wait, [this] { return leased_ == 0; })) return first;
  }
  if (!Module::SoleUser(module_)) return first;
  Status reinit = module_->Reinitialize();
  if (!reinit.ok()) return reinit;
  return ConnectOnce();
}

Result<TokenImpl::Lease> TokenImpl::Acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  const Clock::time_point deadline = Clock::now() + config_.session_wait;
  for (;;) {
    if (!healing_) {
      if (!healthy_) {
        std::uint64_t generation = generation_;
        lock.unlock();
        Status healed = Heal(generation);
        lock.lock();
        if (!healed.ok()) return healed.error();
        continue;
      }
      if (!idle_.empty()) {
        CK_SESSION_HANDLE session = idle_.back();
        idle_.pop_back();
        ++leased_;
        return Lease(this, session, generation_);
      }
      if (open_ < config_.max_sessions) {
        ++open_;
        ++leased_;
        const std::uint64_t generation = generation_;
        const CK_SLOT_ID slot = slot_;
        lock.unlock();
        CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
        CK_RV rv = fn_->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                                      &session);
        if (rv == CKR_OK) return Lease(this, session, generation);
        lock.lock();
        --leased_;
        if (generation == generation_) --open_;
        cv_.notify_all();
        return CkError(rv, "C_OpenSession");
      }
    }
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      return Error(ErrorKind::kTimeout,
                   "no free HSM session within " + std::to_string(config_.session_wait.count()) +
                       " ms (max_sessions " + std::to_string(config_.max_sessions) +
                       "); the HSM is overloaded or not answering");
    }
  }
}

void TokenImpl::Release(CK_SESSION_HANDLE session, std::uint64_t generation, bool discard) {
  bool close = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --leased_;
    if (generation == generation_) {
      if (discard) {
        --open_;
        close = true;
      } else {
        idle_.push_back(session);
      }
    }
    cv_.notify_all();
  }
  if (close) fn_->C_CloseSession(session);
}

Status TokenImpl::Heal(std::uint64_t observed_generation) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !healing_; });
  if (generation_ != observed_generation && healthy_) return {};  // healed meanwhile
  if (pin_rejected_ && last_heal_error_) return *last_heal_error_;
  Clock::duration wait{0};
  if (last_heal_) {
    Clock::duration since = Clock::now() - *last_heal_;
    if (since < kHealInterval) {
      if (!healthy_ && last_heal_error_) {
        return Error(
            ErrorKind::kUnavailable,
            "HSM unavailable; last recovery attempt failed: " + last_heal_error_->message(),
            last_heal_error_->ckr());
      }
      wait = kHealInterval - since;
    }
  }
  healing_ = true;
  ++generation_;
  idle_.clear();
  open_ = 0;
  cache_.clear();
  anchor_ = CK_INVALID_HANDLE;
  const CK_SLOT_ID slot = slot_;
  // Let calls still running on old sessions return before closing them:
  // modules are not required to survive C_CloseAllSessions racing a C_Sign
  // on the same session (SoftHSM 2.6.1 crashes). New leases wait for
  // healing_ to clear, so the count only goes down. A stalled module is not
  // waited for beyond session_wait.
  cv_.wait_for(lock, config_.session_wait, [this] { return leased_ == 0; });
  lock.unlock();

  if (wait.count() > 0) std::this_thread::sleep_for(wait);
  // Every session of ours on the slot is suspect, the anchor included.
  fn_->C_CloseAllSessions(slot);
  Status connected = Connect(/*allow_reinit=*/true);

  lock.lock();
  healing_ = false;
  healthy_ = connected.ok();
  last_heal_ = Clock::now();
  ++heals_;
  if (!connected.ok()) {
    last_heal_error_ = connected.error();
    if (IsPinError(connected.error().ckr())) pin_rejected_ = true;
  } else {
    last_heal_error_.reset();
  }
  cv_.notify_all();
  if (!connected.ok()) {
    return Error(ErrorKind::kUnavailable,
                 "HSM unavailable; recovery failed: " + connected.error().message(),
                 connected.error().ckr());
  }
  return {};
}

Result<std::vector<CK_OBJECT_HANDLE>> TokenImpl::FindByLabelId(CK_SESSION_HANDLE session,
                                                               CK_OBJECT_CLASS object_class,
                                                               std::string_view label,
                                                               std::span<const std::uint8_t> id) {
  CK_ATTRIBUTE templ[] = {
      {CKA_CLASS, &object_class, sizeof(object_class)},
      {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
      {CKA_ID, const_cast<std::uint8_t*>(id.data()), id.size()},
  };
  ++searches_;
  return internal::FindObjects(fn_, session, templ);
}

Result<CK_OBJECT_HANDLE> TokenImpl::FindUnique(CK_SESSION_HANDLE session,
                                               CK_OBJECT_CLASS object_class, std::string_view label,
                                               std::span<const std::uint8_t> id) {
  const char* kind = object_class == CKO_PRIVATE_KEY ? "private" : "public";
  Result<std::vector<CK_OBJECT_HANDLE>> found = FindByLabelId(session, object_class, label, id);
  if (!found.ok()) return found.error();
  if (found->empty()) {
    return Error(ErrorKind::kNotFound, std::string("no ") + kind + " key with label '" +
                                           std::string(label) + "' and id " + Hex(id) +
                                           " on the token");
  }
  if (found->size() > 1) {
    return Error(ErrorKind::kInternal, std::to_string(found->size()) + " " + kind +
                                           " keys share label '" + std::string(label) +
                                           "' and id " + Hex(id) + "; refusing to guess");
  }
  return found->front();
}

Result<std::pair<KeyType, std::vector<std::uint8_t>>> TokenImpl::ReadPublicKey(
    CK_SESSION_HANDLE session, CK_OBJECT_HANDLE pub) {
  Result<CK_ULONG> key_type = internal::GetUlongAttribute(fn_, session, pub, CKA_KEY_TYPE);
  if (!key_type.ok()) return key_type.error();
  if (*key_type == CKK_EC || *key_type == CKK_EC_EDWARDS) {
    auto params = internal::GetAttribute(fn_, session, pub, CKA_EC_PARAMS);
    if (!params.ok()) return params.error();
    std::optional<KeyType> type = internal::KeyTypeFromEcParams(*params);
    if (!type || (*type == KeyType::kEd25519) != (*key_type == CKK_EC_EDWARDS)) {
      return Error(ErrorKind::kInvalidArgument, "the key's curve is not one Custos supports");
    }
    auto point = internal::GetAttribute(fn_, session, pub, CKA_EC_POINT);
    if (!point.ok()) return point.error();
    auto spki = internal::SpkiFromEcPoint(*type, *point);
    if (!spki.ok()) return spki.error();
    return std::make_pair(*type, std::move(*spki));
  }
  if (*key_type == CKK_RSA) {
    auto modulus = internal::GetAttribute(fn_, session, pub, CKA_MODULUS);
    if (!modulus.ok()) return modulus.error();
    auto exponent = internal::GetAttribute(fn_, session, pub, CKA_PUBLIC_EXPONENT);
    if (!exponent.ok()) return exponent.error();
    std::optional<KeyType> type = internal::RsaKeyTypeFromBits(BitLength(*modulus));
    if (!type) {
      return Error(
          ErrorKind::kInvalidArgument,
          "RSA key of " + std::to_string(BitLength(*modulus)) + " bits is not one Custos supports");
    }
    auto spki = internal::SpkiFromRsa(*modulus, *exponent);
    if (!spki.ok()) return spki.error();
    return std::make_pair(*type, std::move(*spki));
  }
  return Error(ErrorKind::kInvalidArgument, "the key's type is not one Custos supports");
}

Result<KeyRef> TokenImpl::ReadKeyPair(CK_SESSION_HANDLE session, std::string_view label,
                                      std::span<const std::uint8_t> id, CK_OBJECT_HANDLE* priv) {
  Result<CK_OBJECT_HANDLE> private_key = FindUnique(session, CKO_PRIVATE_KEY, label, id);
  if (!private_key.ok()) return private_key.error();
  Result<CK_OBJECT_HANDLE> public_key = FindUnique(session, CKO_PUBLIC_KEY, label, id);
  if (!public_key.ok()) return public_key.error();
  auto pub = ReadPublicKey(session, *public_key);
  if (!pub.ok()) return pub.error();
  KeyRef ref;
  ref.label = std::string(label);
  ref.id.assign(id.begin(), id.end());
  ref.type = pub->first;
  ref.spki_der = std::move(pub->second);
  *priv = *private_key;
  return ref;
}

void TokenImpl::CacheKeyHandle(std::uint64_t generation, const KeyRef& key,
                               CK_OBJECT_HANDLE handle) {
  std::lock_guard<std::mutex> lock(mu_);
  // A handle found with a session from before a heal may be meaningless now.
  if (generation != generation_) return;
  cache_[CacheKey(key.label, key.id)] = CachedKey{handle, key.spki_der, generation};
}

Result<CK_OBJECT_HANDLE> TokenImpl::PrivateKeyHandle(Lease& lease, const KeyRef& key) {
  const std::string cache_key = CacheKey(key.label, key.id);
  auto mismatch = [&] {
    return Error(ErrorKind::kPermission, KeyName(key.label) +
                                             " on the token does not have the recorded public key; "
                                             "refusing to use it");
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(cache_key);
    if (it != cache_.end() && it->second.generation == lease.generation()) {
      if (it->second.spki != key.spki_der) return mismatch();
      return it->second.handle;
    }
  }
  CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE;
  Result<KeyRef> found = ReadKeyPair(lease.session(), key.label, key.id, &priv);
  if (!found.ok()) return found.error();
  if (found->spki_der != key.spki_der) return mismatch();
  CacheKeyHandle(lease.generation(), *found, priv);
  return priv;
}

Result<KeyRef> TokenImpl::GenerateKeyPair(KeyType type, std::string_view label) {
  if (label.empty() || label.size() > kMaxLabelSize) {
    return Error(ErrorKind::kInvalidArgument, "key label must be 1 to 256 bytes");
  }
  const std::string what = "generate " + std::string(KeyTypeName(type)) + " " + KeyName(label);
  return WithSession<KeyRef>(what, [&](Lease& lease) -> Result<KeyRef> {
    std::uint8_t id[kKeyIdSize];
    if (RAND_bytes(id, sizeof(id)) != 1) {
      return Error(ErrorKind::kInternal, "RAND_bytes failed to make a key id");
    }
    CK_BBOOL yes = CK_TRUE;
    CK_BBOOL no = CK_FALSE;
    CK_ULONG modulus_bits = RsaBits(type);
    CK_BYTE exponent[] = {0x01, 0x00, 0x01};  // 65537
    char* label_ptr = const_cast<char*>(label.data());
    std::vector<CK_ATTRIBUTE> pub = {
        {CKA_TOKEN, &yes, sizeof(yes)},       {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_ENCRYPT, &no, sizeof(no)},       {CKA_WRAP, &no, sizeof(no)},
        {CKA_LABEL, label_ptr, label.size()}, {CKA_ID, id, sizeof(id)},
    };
    std::vector<CK_ATTRIBUTE> priv = {
        {CKA_TOKEN, &yes, sizeof(yes)},       {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},   {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_SIGN, &yes, sizeof(yes)},        {CKA_DECRYPT, &no, sizeof(no)},
        {CKA_UNWRAP, &no, sizeof(no)},        {CKA_DERIVE, &no, sizeof(no)},
        {CKA_LABEL, label_ptr, label.size()}, {CKA_ID, id, sizeof(id)},
    };
    CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    std::span<const std::uint8_t> ec_params;
    if (IsRsa(type)) {
      mechanism.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
      pub.push_back({CKA_MODULUS_BITS, &modulus_bits, sizeof(modulus_bits)});
      pub.push_back({CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent)});
    } else {
      if (type == KeyType::kEd25519) mechanism.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
      ec_params = internal::EcParamsFor(type);
      pub.push_back({CKA_EC_PARAMS, const_cast<std::uint8_t*>(ec_params.data()), ec_params.size()});
    }
    CK_OBJECT_HANDLE pub_handle = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE priv_handle = CK_INVALID_HANDLE;
    CK_RV rv = fn_->C_GenerateKeyPair(lease.session(), &mechanism, pub.data(), pub.size(),
                                      priv.data(), priv.size(), &pub_handle, &priv_handle);
    if (rv != CKR_OK) return CkError(rv, "C_GenerateKeyPair");
    GeneratedObjects objects(fn_, lease.session(), pub_handle, priv_handle);

    // PKCS#11 2.40 4.9: CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE are
    // set by the token and say whether the key was ever exposed.
    struct Expected {
      CK_ATTRIBUTE_TYPE type;
      const char* name;
      bool want;
    };
    constexpr Expected kExpected[] = {
        {CKA_TOKEN, "CKA_TOKEN", true},
        {CKA_PRIVATE, "CKA_PRIVATE", true},
        {CKA_SENSITIVE, "CKA_SENSITIVE", true},
        {CKA_EXTRACTABLE, "CKA_EXTRACTABLE", false},
        {CKA_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE", true},
        {CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE", true},
    };
    for (const Expected& e : kExpected) {
      Result<bool> value = internal::GetBoolAttribute(fn_, lease.session(), priv_handle, e.type);
      if (!value.ok()) return value.error();
      if (*value != e.want) {
        return Error(ErrorKind::kPermission,
                     std::string("the token generated a private key with ") + e.name + " = " +
                         (*value ? "true" : "false") + "; destroyed it");
      }
    }
    auto public_key = ReadPublicKey(lease.session(), pub_handle);
    if (!public_key.ok()) return public_key.error();
    if (public_key->first != type) {
      return Error(ErrorKind::kInternal, "the token generated a key of another type; destroyed it");
    }
    objects.Release();
    KeyRef ref;
    ref.label = std::string(label);
    ref.id.assign(id, id + sizeof(id));
    ref.type = type;
    ref.spki_der = std::move(public_key->second);
    CacheKeyHandle(lease.generation(), ref, priv_handle);
    return ref;
  });
}

Result<std::vector<std::uint8_t>> TokenImpl::SignWithMechanism(std::string_view what,
                                                               const KeyRef& key,
                                                               CK_MECHANISM& mechanism,
                                                               std::span<const std::uint8_t> data) {
  if (key.spki_der.empty()) {
    return Error(ErrorKind::kInvalidArgument,
                 std::string(what) + ": the KeyRef has no public key; look it up with FindKey");
  }
  const std::size_t size_hint = internal::SignatureSize(key.type);
  return WithSession<std::vector<std::uint8_t>>(
      what, [&](Lease& lease) -> Result<std::vector<std::uint8_t>> {
        Result<CK_OBJECT_HANDLE> handle = PrivateKeyHandle(lease, key);
        if (!handle.ok()) return handle.error();
        bool operation_left_active = false;
        auto signature = internal::SignOnce(fn_, lease.session(), *handle, mechanism, data,
                                            size_hint, &operation_left_active);
        if (operation_left_active) lease.Discard();
        return signature;
      });
}

Result<std::vector<std::uint8_t>> TokenImpl::Sign(const KeyRef& key, SignAlgorithm algorithm,
                                                  std::span<const std::uint8_t> input) {
  const std::string what =
      "sign with " + KeyName(key.label) + " (" + std::string(SignAlgorithmName(algorithm)) + ")";
  if (!AlgorithmFitsKey(algorithm, key.type)) {
    return Error(ErrorKind::kInvalidArgument, what + ": algorithm does not fit a " +
                                                  std::string(KeyTypeName(key.type)) + " key");
  }
  const HashAlgorithm hash = HashOf(algorithm);
  const std::size_t digest_length = DigestLength(hash);
  if (digest_length != 0 && input.size() != digest_length) {
    return Error(ErrorKind::kInvalidArgument, what + ": expected a " +
                                                  std::to_string(digest_length) + "-byte " +
                                                  std::string(HashName(hash)) + " digest, got " +
                                                  std::to_string(input.size()) + " bytes");
  }
  switch (algorithm) {
    case SignAlgorithm::kEcdsaP256Sha256:
    case SignAlgorithm::kEcdsaP384Sha384: {
      CK_MECHANISM mechanism{CKM_ECDSA, nullptr, 0};
      auto raw = SignWithMechanism(what, key, mechanism, input);
      if (!raw.ok()) return raw.error();
      if (raw->size() != internal::SignatureSize(key.type)) {
        return Error(ErrorKind::kInternal, what + ": the token returned a " +
                                               std::to_string(raw->size()) +
                                               "-byte ECDSA signature");
      }
      return internal::EcdsaRawToDer(*raw);
    }
    case SignAlgorithm::kRsaPkcs1Sha256:
    case SignAlgorithm::kRsaPkcs1Sha384:
    case SignAlgorithm::kRsaPkcs1Sha512: {
      std::span<const std::uint8_t> prefix = internal::DigestInfoPrefix(hash);
      std::vector<std::uint8_t> digest_info(prefix.begin(), prefix.end());
      digest_info.insert(digest_info.end(), input.begin(), input.end());
      CK_MECHANISM mechanism{CKM_RSA_PKCS, nullptr, 0};
      return SignWithMechanism(what, key, mechanism, digest_info);
    }
    case SignAlgorithm::kRsaPssSha256:
    case SignAlgorithm::kRsaPssSha384:
    case SignAlgorithm::kRsaPssSha512: {
      CK_RSA_PKCS_PSS_PARAMS params{HashMechanism(hash), Mgf1(hash), digest_length};
      CK_MECHANISM mechanism{CKM_RSA_PKCS_PSS, &params, sizeof(params)};
      return SignWithMechanism(what, key, mechanism, input);
    }
    case SignAlgorithm::kEd25519: {
      CK_MECHANISM mechanism{CKM_EDDSA, nullptr, 0};
      return SignWithMechanism(what, key, mechanism, input);
    }
  }
  return Error(ErrorKind::kInvalidArgument, what + ": unknown algorithm");
}

Result<std::vector<std::uint8_t>> TokenImpl::SignRaw(const KeyRef& key, RawMechanism raw,
                                                     std::span<const std::uint8_t> input) {
  const std::string what = "raw sign with " + KeyName(key.label);
  CK_MECHANISM mechanism{CKM_ECDSA, nullptr, 0};
  bool fits = false;
  switch (raw) {
    case RawMechanism::kRsaPkcs1:
      mechanism.mechanism = CKM_RSA_PKCS;
      fits = IsRsa(key.type);
      break;
    case RawMechanism::kRsaX509:
      mechanism.mechanism = CKM_RSA_X_509;
      fits = IsRsa(key.type);
      break;
    case RawMechanism::kEcdsa:
      fits = key.type == KeyType::kEcP256 || key.type == KeyType::kEcP384;
      break;
  }
  if (!fits) {
    return Error(ErrorKind::kInvalidArgument, what + ": mechanism does not fit a " +
                                                  std::string(KeyTypeName(key.type)) + " key");
  }
  return SignWithMechanism(what, key, mechanism, input);
}

Result<std::vector<TokenKey>> TokenImpl::ListPrivateKeys() {
  return WithSession<std::vector<TokenKey>>(
      "list private keys", [&](Lease& lease) -> Result<std::vector<TokenKey>> {
        CK_OBJECT_CLASS object_class = CKO_PRIVATE_KEY;
        CK_ATTRIBUTE templ[] = {{CKA_CLASS, &object_class, sizeof(object_class)}};
        ++searches_;
        auto handles = internal::FindObjects(fn_, lease.session(), templ);
        if (!handles.ok()) return handles.error();
        std::vector<TokenKey> keys;
        const CK_SESSION_HANDLE s = lease.session();
        // Attributes a module may lack yield defaults; session-level faults
        // abort the listing so that the pool heals.
        for (CK_OBJECT_HANDLE handle : *handles) {
          TokenKey key;
          auto label = internal::GetAttribute(fn_, s, handle, CKA_LABEL);
          if (!label.ok() && IsHealable(label.error().ckr())) return label.error();
          if (label.ok()) key.label.assign(label->begin(), label->end());
          auto id = internal::GetAttribute(fn_, s, handle, CKA_ID);
          if (!id.ok() && IsHealable(id.error().ckr())) return id.error();
          if (id.ok()) key.id = std::move(*id);
          auto sensitive = internal::GetBoolAttribute(fn_, s, handle, CKA_SENSITIVE);
          if (!sensitive.ok() && IsHealable(sensitive.error().ckr())) return sensitive.error();
          key.sensitive = sensitive.ok() && *sensitive;
          auto extractable = internal::GetBoolAttribute(fn_, s, handle, CKA_EXTRACTABLE);
          if (!extractable.ok() && IsHealable(extractable.error().ckr())) {
            return extractable.error();
          }
          key.extractable = !extractable.ok() || *extractable;
          auto key_type = internal::GetUlongAttribute(fn_, s, handle, CKA_KEY_TYPE);
          if (!key_type.ok() && IsHealable(key_type.error().ckr())) return key_type.error();
          if (key_type.ok() && (*key_type == CKK_EC || *key_type == CKK_EC_EDWARDS)) {
            auto params = internal::GetAttribute(fn_, s, handle, CKA_EC_PARAMS);
            if (!params.ok() && IsHealable(params.error().ckr())) return params.error();
            if (params.ok()) key.type = internal::KeyTypeFromEcParams(*params);
            if (key.type && (*key.type == KeyType::kEd25519) != (*key_type == CKK_EC_EDWARDS)) {
              key.type.reset();
            }
          } else if (key_type.ok() && *key_type == CKK_RSA) {
            auto modulus = internal::GetAttribute(fn_, s, handle, CKA_MODULUS);
            if (!modulus.ok() && IsHealable(modulus.error().ckr())) return modulus.error();
            if (modulus.ok()) key.type = internal::RsaKeyTypeFromBits(BitLength(*modulus));
          }
          keys.push_back(std::move(key));
        }
        return keys;
      });
}

Result<KeyRef> TokenImpl::FindKey(std::string_view label, std::span<const std::uint8_t> id) {
  return WithSession<KeyRef>("find " + KeyName(label), [&](Lease& lease) -> Result<KeyRef> {
    CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE;
    Result<KeyRef> ref = ReadKeyPair(lease.session(), label, id, &priv);
    if (!ref.ok()) return ref.error();
    CacheKeyHandle(lease.generation(), *ref, priv);
    return ref;
  });
}

Status TokenImpl::DestroyKey(const KeyRef& key) {
  Result<bool> done =
      WithSession<bool>("destroy " + KeyName(key.label), [&](Lease& lease) -> Result<bool> {
        auto privs = FindByLabelId(lease.session(), CKO_PRIVATE_KEY, key.label, key.id);
        if (!privs.ok()) return privs.error();
        auto pubs = FindByLabelId(lease.session(), CKO_PUBLIC_KEY, key.label, key.id);
        if (!pubs.ok()) return pubs.error();
        if (privs->empty() && pubs->empty()) {
          return Error(ErrorKind::kNotFound, "no key with label '" + key.label + "' and id " +
                                                 Hex(key.id) + " on the token");
        }
        if (privs->size() > 1 || pubs->size() > 1) {
          return Error(ErrorKind::kInternal, "several objects share label '" + key.label +
                                                 "' and id " + Hex(key.id) +
                                                 "; refusing to guess which to destroy");
        }
        // Never destroy a different key that happens to carry the label and id.
        if (!pubs->empty() && !key.spki_der.empty()) {
          auto pub = ReadPublicKey(lease.session(), pubs->front());
          if (!pub.ok()) return pub.error();
          if (pub->second != key.spki_der) {
            return Error(ErrorKind::kPermission,
                         "the key on the token does not have the recorded public key; "
                         "refusing to destroy it");
          }
        }
        {
          std::lock_guard<std::mutex> lock(mu_);
          cache_.erase(CacheKey(key.label, key.id));
        }
        for (CK_OBJECT_HANDLE handle : *privs) {
          CK_RV rv = fn_->C_DestroyObject(lease.session(), handle);
          if (rv != CKR_OK) return CkError(rv, "C_DestroyObject (private key)");
        }
        for (CK_OBJECT_HANDLE handle : *pubs) {
          CK_RV rv = fn_->C_DestroyObject(lease.session(), handle);
          if (rv != CKR_OK) return CkError(rv, "C_DestroyObject (public key)");
        }
        return true;
      });
  if (!done.ok()) return done.error();
  return {};
}

Result<UniqueEvpPkey> TokenImpl::OpenSslKey(const KeyRef& key) {
  const std::string what = "OpenSSL key for " + KeyName(key.label);
  if (!(IsRsa(key.type) || key.type == KeyType::kEcP256 || key.type == KeyType::kEcP384)) {
    return Error(ErrorKind::kInvalidArgument,
                 what + ": only RSA and EC keys can back an OpenSSL EVP_PKEY");
  }
  if (key.spki_der.empty()) {
    return Error(ErrorKind::kInvalidArgument,
                 what + ": the KeyRef has no public key; look it up with FindKey");
  }
  // Check now that the key exists and is the recorded one, so a bad KeyRef
  // fails here rather than inside X509_sign.
  Result<bool> present = WithSession<bool>(what, [&](Lease& lease) -> Result<bool> {
    Result<CK_OBJECT_HANDLE> handle = PrivateKeyHandle(lease, key);
    if (!handle.ok()) return handle.error();
    return true;
  });
  if (!present.ok()) return present.error();
  Result<UniqueEvpPkey> pkey = MakeHsmBackedKey(
      key.spki_der, [this, key](RawMechanism mechanism, std::span<const std::uint8_t> input) {
        return SignRaw(key, mechanism, input);
      });
  if (!pkey.ok()) return Context(what, pkey.error());
  return pkey;
}

}  // namespace

Result<std::unique_ptr<Token>> Token::Open(TokenConfig config) {
  if (config.pin.empty()) {
    return Error(ErrorKind::kInvalidArgument, "no user PIN given for token '" + config.token + "'");
  }
  if (config.max_sessions == 0) {
    return Error(ErrorKind::kInvalidArgument, "max_sessions must be at least 1");
  }
  Result<TokenSelector> selector = internal::ParseTokenSelector(config.token);
  if (!selector.ok()) return selector.error();
  Result<std::shared_ptr<Module>> module = Module::Load(config.module_path);
  if (!module.ok()) return module.error();
  auto token =
      std::make_unique<TokenImpl>(std::move(config), std::move(*module), std::move(*selector));
  Status connected = token->Connect(/*allow_reinit=*/false);
  if (!connected.ok()) return connected.error();
  return std::unique_ptr<Token>(std::move(token));
}

Result<std::vector<std::uint8_t>> SignRaw(Token& token, const KeyRef& key, RawMechanism mechanism,
                                          std::span<const std::uint8_t> input) {
  auto* impl = dynamic_cast<TokenImpl*>(&token);
  if (impl == nullptr) {
    return Error(ErrorKind::kInvalidArgument, "SignRaw needs a Token made by Token::Open");
  }
  return impl->SignRaw(key, mechanism, input);
}

TokenStats StatsForTesting(const Token& token) {
  const auto* impl = dynamic_cast<const TokenImpl*>(&token);
  return impl == nullptr ? TokenStats{} : impl->Stats();
}

}  // namespace custos::pkcs11
