// Officer keys from PEM files (OpenSSL) and PKCS#11 tokens (libp11).
#include "custos/client/officer_signer.h"

#include <libp11.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <cstring>
#include <map>
#include <utility>

namespace custos::client {
namespace {

// Must equal policy::kApprovalStatementPrefix (docs/quorum.md); repeated here
// because client/ does not depend on policy/.
constexpr std::string_view kStatementPrefix = "custos-approval-v1\n";
constexpr std::size_t kMaxStatementSize = 1024;

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;
struct BioDeleter {
  void operator()(BIO* p) const { BIO_free(p); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

Error Invalid(std::string message) { return Error(ErrorCode::kInvalidConfig, std::move(message)); }

// The first queued OpenSSL/libp11 error as text; clears the queue.
std::string OpenSslErrorText() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no detail";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

enum class Scheme { kEcdsaP256, kEd25519, kRsaPss };

struct KeyInfo {
  Scheme scheme;
  std::string algorithm;
};

// Classifies a (provider-backed) public key; the same acceptance rules as
// policy::OfficerPublicKey.
Result<KeyInfo> Classify(EVP_PKEY* pub) {
  if (EVP_PKEY_is_a(pub, "ED25519")) return KeyInfo{Scheme::kEd25519, "ed25519"};
  if (EVP_PKEY_is_a(pub, "EC")) {
    char group[64] = {};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(pub, "group", group, sizeof group, &len) != 1 ||
        std::string_view(group, len) != "prime256v1") {
      ERR_clear_error();
      return Invalid("officer EC keys must be on P-256 (prime256v1), not \"" +
                     std::string(group, len) + "\"");
    }
    return KeyInfo{Scheme::kEcdsaP256, "ecdsa-p256"};
  }
  if (EVP_PKEY_is_a(pub, "RSA")) {
    const int bits = EVP_PKEY_get_bits(pub);
    if (bits < 2048 || bits > 16384) {
      return Invalid("officer RSA key has " + std::to_string(bits) + " bits (need 2048-16384)");
    }
    return KeyInfo{Scheme::kRsaPss, "rsa-" + std::to_string(bits)};
  }
  return Invalid(std::string("officer key type ") + EVP_PKEY_get0_type_name(pub) +
                 " is not supported (use ECDSA P-256, Ed25519 or RSA >= 2048)");
}

Result<std::string> SpkiOf(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(key, &der);
  if (len <= 0) return Invalid("cannot encode the officer public key: " + OpenSslErrorText());
  std::string out(reinterpret_cast<const char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  return out;
}

Result<PkeyPtr> PubFromSpki(const std::string& spki) {
  const auto* p = reinterpret_cast<const unsigned char*>(spki.data());
  PkeyPtr pub(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
  if (!pub) return Invalid("cannot decode the officer public key: " + OpenSslErrorText());
  return pub;
}

// Sets the RSA-PSS parameters of docs/quorum.md on a sign or verify context.
bool SetPss(EVP_PKEY_CTX* pctx) {
  return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) == 1;
}

// --- libp11 -------------------------------------------------------------------

// The loaded module and its slot list; the destructor logs out, releases the
// slots (closing their sessions) and unloads the module (C_Finalize).
class P11Session final {
 public:
  P11Session() = default;
  P11Session(const P11Session&) = delete;
  P11Session& operator=(const P11Session&) = delete;
  ~P11Session() {
    if (logged_in_ != nullptr) PKCS11_logout(logged_in_);
    if (slots_ != nullptr) PKCS11_release_all_slots(ctx_, slots_, nslots_);
    if (loaded_) PKCS11_CTX_unload(ctx_);
    if (ctx_ != nullptr) PKCS11_CTX_free(ctx_);
    ERR_clear_error();
  }

  Status Load(const std::string& module_path) {
    ctx_ = PKCS11_CTX_new();
    if (ctx_ == nullptr) return Invalid("libp11: out of memory");
    if (PKCS11_CTX_load(ctx_, module_path.c_str()) != 0) {
      return Invalid("cannot load PKCS#11 module " + module_path + ": " + OpenSslErrorText());
    }
    loaded_ = true;
    if (PKCS11_enumerate_slots(ctx_, &slots_, &nslots_) != 0) {
      slots_ = nullptr;
      return Invalid("cannot list the slots of PKCS#11 module " + module_path + ": " +
                     OpenSslErrorText());
    }
    return {};
  }

  PKCS11_SLOT* slots() const { return slots_; }
  unsigned int nslots() const { return nslots_; }
  void MarkLoggedIn(PKCS11_SLOT* slot) { logged_in_ = slot; }

 private:
  PKCS11_CTX* ctx_ = nullptr;
  bool loaded_ = false;
  PKCS11_SLOT* slots_ = nullptr;
  unsigned int nslots_ = 0;
  PKCS11_SLOT* logged_in_ = nullptr;
};

// The parts of an RFC 7512 URI that select a token and a key.
struct P11Uri {
  std::map<std::string, std::string> path;  // token, serial, manufacturer, model, object, id, type
  std::string module_path;
};

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> PercentDecode(std::string_view in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) {
      return Invalid("PKCS#11 URI: truncated percent escape");
    }
    const int hi = HexDigit(in[i + 1]);
    const int lo = HexDigit(in[i + 2]);
    if (hi < 0 || lo < 0) return Invalid("PKCS#11 URI: bad percent escape");
    out.push_back(static_cast<char>(hi << 4 | lo));
    i += 2;
  }
  return out;
}

Result<P11Uri> ParseP11Uri(std::string_view uri) {
  constexpr std::string_view kScheme = "pkcs11:";
  if (uri.substr(0, kScheme.size()) != kScheme) {
    return Invalid("officer key URI must start with \"pkcs11:\"");
  }
  uri.remove_prefix(kScheme.size());
  std::string_view query;
  if (const std::size_t q = uri.find('?'); q != std::string_view::npos) {
    query = uri.substr(q + 1);
    uri = uri.substr(0, q);
  }
  P11Uri out;
  auto each = [](std::string_view list, char sep, auto&& fn) -> Status {
    while (!list.empty()) {
      const std::size_t end = list.find(sep);
      const std::string_view item = list.substr(0, end);
      list = end == std::string_view::npos ? std::string_view() : list.substr(end + 1);
      if (item.empty()) continue;
      const std::size_t eq = item.find('=');
      if (eq == std::string_view::npos) {
        return Invalid("PKCS#11 URI: attribute \"" + std::string(item) + "\" has no value");
      }
      auto value = PercentDecode(item.substr(eq + 1));
      if (!value.ok()) return value.error();
      Status s = fn(std::string(item.substr(0, eq)), std::move(*value));
      if (!s.ok()) return s;
    }
    return {};
  };
  Status s = each(uri, ';', [&](std::string name, std::string value) -> Status {
    static const char* const kKnown[] = {"token",  "serial", "manufacturer", "model",
                                         "object", "id",     "type"};
    bool known = false;
    for (const char* k : kKnown) known = known || name == k;
    if (!known) {
      return Invalid("PKCS#11 URI: attribute \"" + name +
                     "\" is not supported (use token, serial, manufacturer, model, object, id, "
                     "type)");
    }
    if (!out.path.emplace(name, std::move(value)).second) {
      return Invalid("PKCS#11 URI: attribute \"" + name + "\" given twice");
    }
    return {};
  });
  if (!s.ok()) return s.error();
  s = each(query, '&', [&](std::string name, std::string value) -> Status {
    if (name == "pin-value" || name == "pin-source") {
      return Invalid("PKCS#11 URI: " + name + " is refused; the PIN is asked for when needed");
    }
    if (name != "module-path") {
      return Invalid("PKCS#11 URI: query attribute \"" + name + "\" is not supported");
    }
    out.module_path = std::move(value);
    return {};
  });
  if (!s.ok()) return s.error();
  if (auto t = out.path.find("type"); t != out.path.end() && t->second != "private") {
    return Invalid("PKCS#11 URI: type must be \"private\" for an officer key");
  }
  if (!out.path.count("object") && !out.path.count("id")) {
    return Invalid("PKCS#11 URI must name the key with object= (label) or id=");
  }
  return out;
}

std::string TrimRight(const char* s) {
  std::string out = s == nullptr ? "" : s;
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

bool TokenMatches(const PKCS11_TOKEN& token, const P11Uri& uri) {
  const std::pair<const char*, const char*> fields[] = {
      {"token", token.label},
      {"serial", token.serialnr},
      {"manufacturer", token.manufacturer},
      {"model", token.model},
  };
  for (const auto& [name, value] : fields) {
    auto it = uri.path.find(name);
    if (it != uri.path.end() && TrimRight(value) != it->second) return false;
  }
  return true;
}

bool KeyMatches(const PKCS11_KEY& key, const P11Uri& uri) {
  if (auto it = uri.path.find("object"); it != uri.path.end()) {
    if (key.label == nullptr || it->second != key.label) return false;
  }
  if (auto it = uri.path.find("id"); it != uri.path.end()) {
    if (key.id_len != it->second.size() ||
        std::memcmp(key.id, it->second.data(), key.id_len) != 0) {
      return false;
    }
  }
  return true;
}

std::string Describe(const P11Uri& uri) {
  std::string out;
  for (const auto& [name, value] : uri.path) {
    if (name == "id") continue;  // bytes; the label is what people read
    out += (out.empty() ? "" : ", ") + name + " \"" + value + "\"";
  }
  if (uri.path.count("id")) out += std::string(out.empty() ? "" : ", ") + "the given id";
  return out;
}

// PEM passphrase callback state: asks the SecretSource at most once.
struct PassphraseAsk {
  const SecretSource* source;
  std::string prompt;
  bool asked = false;
  bool cancelled = false;
  bool too_long = false;
};

int PassphraseCallback(char* buf, int size, int /*rwflag*/, void* u) {
  auto* ask = static_cast<PassphraseAsk*>(u);
  if (ask->asked || ask->source == nullptr || !*ask->source) return -1;
  ask->asked = true;
  std::optional<SecretText> secret = (*ask->source)(ask->prompt);
  if (!secret) {
    ask->cancelled = true;
    return -1;
  }
  if (secret->size() > static_cast<std::size_t>(size)) {
    ask->too_long = true;
    return -1;
  }
  std::memcpy(buf, secret->Reveal(), secret->size());
  return static_cast<int>(secret->size());
}

}  // namespace

// --- SecretText ---------------------------------------------------------------

SecretText::SecretText(std::string&& text) {
  bytes_.reserve(text.size() + 1);
  bytes_.assign(text.begin(), text.end());
  bytes_.push_back('\0');
  OPENSSL_cleanse(text.data(), text.size());
  text.clear();
}

SecretText::SecretText(SecretText&& other) noexcept : bytes_(std::move(other.bytes_)) {
  other.bytes_.clear();
}

SecretText& SecretText::operator=(SecretText&& other) noexcept {
  if (this != &other) {
    Wipe();
    bytes_ = std::move(other.bytes_);
    other.bytes_.clear();
  }
  return *this;
}

SecretText::~SecretText() { Wipe(); }

void SecretText::Wipe() {
  if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
  bytes_.clear();
}

// --- OfficerSigner ------------------------------------------------------------

struct OfficerSigner::Impl {
  // Declaration order matters: members are destroyed in reverse, so the
  // private key goes before the token session it signs through.
  std::unique_ptr<P11Session> p11;  // null for PEM keys
  PkeyPtr key;                      // the private key (libp11-backed for tokens)
  PkeyPtr pub;                      // provider-backed public key, for self-checks
  Scheme scheme = Scheme::kEcdsaP256;
  std::string algorithm;
  std::string spki;
  std::string source;  // "file /path" or "token \"officer\"", for messages
};

OfficerSigner::OfficerSigner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OfficerSigner::OfficerSigner(OfficerSigner&&) noexcept = default;
OfficerSigner& OfficerSigner::operator=(OfficerSigner&&) noexcept = default;
OfficerSigner::~OfficerSigner() = default;

const std::string& OfficerSigner::PublicKeySpki() const { return impl_->spki; }
const std::string& OfficerSigner::algorithm() const { return impl_->algorithm; }

std::string OfficerSigner::PublicKeyPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), impl_->pub.get()) != 1) return {};
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

Result<OfficerSigner> OfficerSigner::FromPemFile(const std::string& path,
                                                 const SecretSource& passphrase) {
  ERR_clear_error();
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) return Invalid("cannot open officer key file " + path + ": " + OpenSslErrorText());
  PassphraseAsk ask{&passphrase, "Passphrase for officer key " + path};
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, PassphraseCallback, &ask));
  if (!key) {
    const std::string detail = OpenSslErrorText();
    if (ask.cancelled) return Error(ErrorCode::kCancelled, "passphrase entry cancelled");
    if (ask.too_long) return Invalid("passphrase for " + path + " is too long");
    if (ask.asked)
      return Invalid("cannot decrypt officer key file " + path + " (wrong passphrase?)");
    return Invalid("no usable private key in " + path + " (" + detail + ")");
  }
  auto impl = std::make_unique<Impl>();
  auto spki = SpkiOf(key.get());
  if (!spki.ok()) return spki.error();
  auto pub = PubFromSpki(*spki);
  if (!pub.ok()) return pub.error();
  auto info = Classify(pub->get());
  if (!info.ok()) return Invalid(path + ": " + info.error().message());
  impl->key = std::move(key);
  impl->pub = std::move(*pub);
  impl->spki = std::move(*spki);
  impl->scheme = info->scheme;
  impl->algorithm = info->algorithm;
  impl->source = "file " + path;
  return OfficerSigner(std::move(impl));
}

Result<OfficerSigner> OfficerSigner::FromPkcs11Uri(std::string_view uri_text,
                                                   const SecretSource& pin,
                                                   const std::string& module_path) {
  ERR_clear_error();
  auto uri = ParseP11Uri(uri_text);
  if (!uri.ok()) return uri.error();
  const std::string module = module_path.empty() ? uri->module_path : module_path;
  if (module.empty()) {
    return Invalid("no PKCS#11 module for the officer key (give a module path or module-path=)");
  }
  auto impl = std::make_unique<Impl>();
  impl->p11 = std::make_unique<P11Session>();
  Status loaded = impl->p11->Load(module);
  if (!loaded.ok()) return loaded.error();

  PKCS11_SLOT* slot = nullptr;
  for (unsigned int i = 0; i < impl->p11->nslots(); ++i) {
    PKCS11_SLOT* s = &impl->p11->slots()[i];
    if (s->token == nullptr || !s->token->initialized || !TokenMatches(*s->token, *uri)) continue;
    if (slot != nullptr) {
      return Invalid("several tokens match the officer key URI; add serial= to choose one");
    }
    slot = s;
  }
  if (slot == nullptr) {
    return Invalid("no token matching " + Describe(*uri) + " in PKCS#11 module " + module);
  }
  const std::string token_label = TrimRight(slot->token->label);
  impl->source = "token \"" + token_label + "\"";

  if (slot->token->loginRequired) {
    if (!pin) return Invalid("token \"" + token_label + "\" needs a PIN and none can be asked");
    std::optional<SecretText> secret = pin("PIN for token \"" + token_label + "\"");
    if (!secret) return Error(ErrorCode::kCancelled, "PIN entry cancelled");
    if (PKCS11_login(slot, 0, secret->Reveal()) != 0) {
      return Invalid("login to token \"" + token_label +
                     "\" failed (wrong PIN, or PIN locked?): " + OpenSslErrorText());
    }
    impl->p11->MarkLoggedIn(slot);
  }

  PKCS11_KEY* keys = nullptr;
  unsigned int nkeys = 0;
  if (PKCS11_enumerate_keys(slot->token, &keys, &nkeys) != 0) {
    return Invalid("cannot list private keys on " + impl->source + ": " + OpenSslErrorText());
  }
  PKCS11_KEY* found = nullptr;
  for (unsigned int i = 0; i < nkeys; ++i) {
    if (!KeyMatches(keys[i], *uri)) continue;
    if (found != nullptr) {
      return Invalid("several private keys on " + impl->source + " match " + Describe(*uri) +
                     "; add id= to choose one");
    }
    found = &keys[i];
  }
  if (found == nullptr) {
    return Invalid("no private key matching " + Describe(*uri) + " on " + impl->source);
  }
  impl->key.reset(PKCS11_get_private_key(found));
  if (!impl->key) {
    return Invalid(
        "libp11 cannot use the private key on " + impl->source +
        " (unsupported type? libp11 0.4.12 handles RSA and EC only): " + OpenSslErrorText());
  }

  // The public half as libp11 derives it for the private key (from the
  // token's matching public key object or CKA_EC_POINT). Not taken from
  // PKCS11_get_public_key(): in libp11 0.4.12 that keeps the slot alive past
  // PKCS11_release_all_slots (a leak, with a copy of the PIN in it). Sign()
  // checks every signature against this key, so a mismatch cannot go unseen.
  ERR_clear_error();
  auto spki = SpkiOf(impl->key.get());
  if (!spki.ok()) {
    return Invalid("cannot read the public key of the officer key on " + impl->source);
  }
  auto pub = PubFromSpki(*spki);
  if (!pub.ok()) return pub.error();
  auto info = Classify(pub->get());
  if (!info.ok()) return Invalid(impl->source + ": " + info.error().message());
  impl->pub = std::move(*pub);
  impl->spki = std::move(*spki);
  impl->scheme = info->scheme;
  impl->algorithm = info->algorithm;
  return OfficerSigner(std::move(impl));
}

Result<std::string> OfficerSigner::Sign(std::string_view statement) const {
  if (statement.substr(0, kStatementPrefix.size()) != kStatementPrefix ||
      statement.size() > kMaxStatementSize) {
    return Invalid("refusing to sign: not a custos approval statement");
  }
  ERR_clear_error();
  const auto* msg = reinterpret_cast<const unsigned char*>(statement.data());
  const EVP_MD* md = impl_->scheme == Scheme::kEd25519 ? nullptr : EVP_sha256();

  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (!ctx || EVP_DigestSignInit(ctx.get(), &pctx, md, nullptr, impl_->key.get()) != 1 ||
      (impl_->scheme == Scheme::kRsaPss && !SetPss(pctx))) {
    return Invalid("cannot start signing with the officer key on " + impl_->source + ": " +
                   OpenSslErrorText());
  }
  std::size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, msg, statement.size()) != 1) {
    return Invalid("signing with the officer key on " + impl_->source +
                   " failed: " + OpenSslErrorText());
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, msg,
                     statement.size()) != 1) {
    return Invalid("signing with the officer key on " + impl_->source +
                   " failed: " + OpenSslErrorText());
  }
  sig.resize(len);

  // Self-check with the public key the daemon will use.
  MdCtxPtr vctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* vpctx = nullptr;
  const bool verified =
      vctx && EVP_DigestVerifyInit(vctx.get(), &vpctx, md, nullptr, impl_->pub.get()) == 1 &&
      (impl_->scheme != Scheme::kRsaPss || SetPss(vpctx)) &&
      EVP_DigestVerify(vctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       msg, statement.size()) == 1;
  ERR_clear_error();
  if (!verified) {
    return Invalid("the signature made on " + impl_->source +
                   " does not verify under its public key; the key pair is inconsistent");
  }
  return sig;
}

}  // namespace custos::client
