// Canonical approval statements and their verification (docs/quorum.md).
#include "custos/policy/approval.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace custos::policy {
namespace {

using std::chrono::days;
using std::chrono::sys_days;
using std::chrono::sys_seconds;

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

constexpr std::size_t kMaxStatementSize = 1024;
constexpr int kMinRsaBits = 2048;
constexpr int kMaxRsaBits = 16384;

constexpr std::string_view kRequestIdField = "request-id: ";
constexpr std::string_view kDigestField = "request-digest: sha256:";
constexpr std::string_view kDecisionField = "decision: ";
constexpr std::string_view kOfficerField = "officer: ";
constexpr std::string_view kTimeField = "time: ";

ApprovalError Malformed(std::string message) {
  return {ApprovalErrorCode::kMalformedStatement, "malformed approval statement: " + message};
}

// Years 1970..9999 keep the time field at exactly 20 bytes and non-negative.
bool TimeInRange(sys_seconds t) {
  const std::chrono::year_month_day ymd{std::chrono::floor<days>(t)};
  return ymd.ok() && ymd.year() >= std::chrono::year{1970} && ymd.year() <= std::chrono::year{9999};
}

std::string FormatTime(sys_seconds t) {
  const sys_days day = std::chrono::floor<days>(t);
  const std::chrono::year_month_day ymd{day};
  const std::chrono::hh_mm_ss hms{t - day};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()));
  return buf;
}

// Reads exactly `n` ASCII digits at text[pos..].
bool Digits(std::string_view text, std::size_t pos, std::size_t n, int* out) {
  if (pos + n > text.size()) return false;
  int v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    v = v * 10 + (text[i] - '0');
  }
  *out = v;
  return true;
}

// "YYYY-MM-DDTHH:MM:SSZ", a real calendar date, hours < 24, minutes and
// seconds < 60 (no leap second: 60 would not survive re-encoding).
std::optional<sys_seconds> ParseTime(std::string_view s) {
  if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':' || s[19] != 'Z') {
    return std::nullopt;
  }
  int y, mo, d, h, mi, se;
  if (!Digits(s, 0, 4, &y) || !Digits(s, 5, 2, &mo) || !Digits(s, 8, 2, &d) ||
      !Digits(s, 11, 2, &h) || !Digits(s, 14, 2, &mi) || !Digits(s, 17, 2, &se)) {
    return std::nullopt;
  }
  const std::chrono::year_month_day ymd{std::chrono::year{y},
                                        std::chrono::month{static_cast<unsigned>(mo)},
                                        std::chrono::day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || y < 1970 || h > 23 || mi > 59 || se > 59) return std::nullopt;
  return sys_days{ymd} + std::chrono::hours{h} + std::chrono::minutes{mi} +
         std::chrono::seconds{se};
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // uppercase is not canonical
}

// A cursor over the statement that consumes one "<field><value>\n" line.
class LineReader {
 public:
  explicit LineReader(std::string_view text) : rest_(text) {}

  // Consumes `field` and the value up to the next '\n'; the value must not
  // contain '\r' (reported precisely because CRLF is a likely mistake).
  std::variant<std::string_view, ApprovalError> Field(std::string_view field) {
    const std::string_view name = field.substr(0, field.find(':'));
    if (rest_.substr(0, field.size()) != field) {
      return Malformed("expected line \"" + std::string(field) + "...\" (field \"" +
                       std::string(name) + "\" missing, misspelt or out of order)");
    }
    rest_.remove_prefix(field.size());
    const std::size_t nl = rest_.find('\n');
    if (nl == std::string_view::npos) {
      return Malformed("field \"" + std::string(name) + "\" is not terminated by a newline");
    }
    std::string_view value = rest_.substr(0, nl);
    if (value.find('\r') != std::string_view::npos) {
      return Malformed("field \"" + std::string(name) + "\" contains a carriage return");
    }
    rest_.remove_prefix(nl + 1);
    return value;
  }
  bool AtEnd() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

std::string OpenSslErrorText() {
  // Only for messages; the queue is cleared so it cannot leak into other calls.
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no detail";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

}  // namespace

std::string_view ApprovalDecisionName(ApprovalDecision decision) {
  return decision == ApprovalDecision::kApprove ? "approve" : "deny";
}

std::string_view ApprovalErrorCodeName(ApprovalErrorCode code) {
  switch (code) {
    case ApprovalErrorCode::kMalformedStatement:
      return "MALFORMED_STATEMENT";
    case ApprovalErrorCode::kUnsupportedKey:
      return "UNSUPPORTED_KEY";
    case ApprovalErrorCode::kBadSignature:
      return "BAD_SIGNATURE";
    case ApprovalErrorCode::kTimeSkew:
      return "TIME_SKEW";
    case ApprovalErrorCode::kWrongRequest:
      return "WRONG_REQUEST";
    case ApprovalErrorCode::kWrongOfficer:
      return "WRONG_OFFICER";
  }
  return "UNKNOWN";
}

bool IsValidApprovalId(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdLength) return false;
  for (std::size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) return false;
  }
  return true;
}

std::string DigestToString(const Sha256Digest& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (std::uint8_t b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

std::optional<std::string> CanonicalStatement(const ApprovalStatement& s) {
  if (!IsValidApprovalId(s.request_id) || !IsValidApprovalId(s.officer_id) ||
      !TimeInRange(s.time)) {
    return std::nullopt;
  }
  std::string out;
  out.reserve(256);
  out.append(kApprovalStatementPrefix);
  out.append(kRequestIdField).append(s.request_id).push_back('\n');
  out.append("request-digest: ").append(DigestToString(s.request_digest)).push_back('\n');
  out.append(kDecisionField).append(ApprovalDecisionName(s.decision)).push_back('\n');
  out.append(kOfficerField).append(s.officer_id).push_back('\n');
  out.append(kTimeField).append(FormatTime(s.time)).push_back('\n');
  return out;
}

std::variant<ApprovalStatement, ApprovalError> ParseStatement(std::string_view bytes) {
  if (bytes.size() > kMaxStatementSize) {
    return Malformed("longer than " + std::to_string(kMaxStatementSize) + " bytes");
  }
  if (bytes.substr(0, kApprovalStatementPrefix.size()) != kApprovalStatementPrefix) {
    return Malformed("does not start with \"custos-approval-v1\" and a newline");
  }
  LineReader reader(bytes.substr(kApprovalStatementPrefix.size()));
  ApprovalStatement s;

  auto id = reader.Field(kRequestIdField);
  if (auto* e = std::get_if<ApprovalError>(&id)) return *e;
  if (!IsValidApprovalId(std::get<std::string_view>(id))) {
    return Malformed("request-id must be 1-128 characters of [a-z0-9._-] starting with [a-z0-9]");
  }
  s.request_id = std::string(std::get<std::string_view>(id));

  auto digest = reader.Field(kDigestField);
  if (auto* e = std::get_if<ApprovalError>(&digest)) return *e;
  const std::string_view hex = std::get<std::string_view>(digest);
  if (hex.size() != 64) return Malformed("request-digest must be sha256: and 64 hex digits");
  for (std::size_t i = 0; i < 32; ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return Malformed("request-digest must be lowercase hex digits [0-9a-f]");
    }
    s.request_digest[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }

  auto decision = reader.Field(kDecisionField);
  if (auto* e = std::get_if<ApprovalError>(&decision)) return *e;
  if (std::get<std::string_view>(decision) == "approve") {
    s.decision = ApprovalDecision::kApprove;
  } else if (std::get<std::string_view>(decision) == "deny") {
    s.decision = ApprovalDecision::kDeny;
  } else {
    return Malformed("decision must be \"approve\" or \"deny\"");
  }

  auto officer = reader.Field(kOfficerField);
  if (auto* e = std::get_if<ApprovalError>(&officer)) return *e;
  if (!IsValidApprovalId(std::get<std::string_view>(officer))) {
    return Malformed("officer must be 1-128 characters of [a-z0-9._-] starting with [a-z0-9]");
  }
  s.officer_id = std::string(std::get<std::string_view>(officer));

  auto time = reader.Field(kTimeField);
  if (auto* e = std::get_if<ApprovalError>(&time)) return *e;
  const auto t = ParseTime(std::get<std::string_view>(time));
  if (!t) return Malformed("time must be a UTC time YYYY-MM-DDTHH:MM:SSZ (1970-9999)");
  s.time = *t;

  if (!reader.AtEnd()) return Malformed("bytes after the final newline of the time field");

  // The grammar above is meant to admit only canonical encodings; re-encoding
  // makes "the bytes signed are the bytes we would produce" a checked fact.
  const std::optional<std::string> again = CanonicalStatement(s);
  if (!again || *again != bytes) return Malformed("not in canonical form");
  return s;
}

// --- OfficerPublicKey ---------------------------------------------------------

struct OfficerPublicKey::Impl {
  enum class Scheme { kEcdsaP256, kEd25519, kRsaPss };
  PkeyPtr pkey;
  Scheme scheme;
  std::string algorithm;
  std::string spki_der;
};

OfficerPublicKey::OfficerPublicKey(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

std::variant<OfficerPublicKey, ApprovalError> OfficerPublicKey::Parse(std::string_view key) {
  auto unsupported = [](std::string message) {
    return ApprovalError{ApprovalErrorCode::kUnsupportedKey, "officer key: " + message};
  };
  if (key.empty()) return unsupported("empty");
  if (key.size() > 64 * 1024) return unsupported("larger than 64 KiB");
  PkeyPtr pkey;
  if (key.find("-----BEGIN") != std::string_view::npos) {
    BioPtr bio(BIO_new_mem_buf(key.data(), static_cast<int>(key.size())));
    if (!bio) return unsupported("out of memory");
    pkey.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    if (!pkey) {
      return unsupported("not a PEM \"PUBLIC KEY\" block (" + OpenSslErrorText() + ")");
    }
  } else {
    const auto* p = reinterpret_cast<const unsigned char*>(key.data());
    pkey.reset(d2i_PUBKEY(nullptr, &p, static_cast<long>(key.size())));
    if (!pkey) return unsupported("not a DER SubjectPublicKeyInfo (" + OpenSslErrorText() + ")");
    if (p != reinterpret_cast<const unsigned char*>(key.data()) + key.size()) {
      return unsupported("trailing bytes after the DER SubjectPublicKeyInfo");
    }
  }

  auto impl = std::make_shared<Impl>();
  if (EVP_PKEY_is_a(pkey.get(), "ED25519")) {
    impl->scheme = Impl::Scheme::kEd25519;
    impl->algorithm = "ed25519";
  } else if (EVP_PKEY_is_a(pkey.get(), "EC")) {
    char group[64] = {};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(pkey.get(), "group", group, sizeof group, &len) != 1 ||
        std::string_view(group, len) != "prime256v1") {
      ERR_clear_error();
      return unsupported("EC keys must be on P-256 (prime256v1), not \"" + std::string(group, len) +
                         "\"");
    }
    impl->scheme = Impl::Scheme::kEcdsaP256;
    impl->algorithm = "ecdsa-p256";
  } else if (EVP_PKEY_is_a(pkey.get(), "RSA")) {
    const int bits = EVP_PKEY_get_bits(pkey.get());
    if (bits < kMinRsaBits || bits > kMaxRsaBits) {
      return unsupported("RSA modulus of " + std::to_string(bits) + " bits (need 2048-16384)");
    }
    impl->scheme = Impl::Scheme::kRsaPss;
    impl->algorithm = "rsa-" + std::to_string(bits);
  } else {
    return unsupported(std::string("key type ") + EVP_PKEY_get0_type_name(pkey.get()) +
                       " (use ECDSA P-256, Ed25519 or RSA >= 2048)");
  }
  unsigned char* der = nullptr;
  const int der_len = i2d_PUBKEY(pkey.get(), &der);
  if (der_len <= 0) return unsupported("cannot encode as SubjectPublicKeyInfo");
  impl->spki_der.assign(reinterpret_cast<const char*>(der), static_cast<std::size_t>(der_len));
  OPENSSL_free(der);
  impl->pkey = std::move(pkey);
  return OfficerPublicKey(std::move(impl));
}

const std::string& OfficerPublicKey::algorithm() const { return impl_->algorithm; }
const std::string& OfficerPublicKey::spki_der() const { return impl_->spki_der; }

std::string OfficerPublicKey::Fingerprint() const {
  Sha256Digest d{};
  unsigned int len = 0;
  EVP_Digest(impl_->spki_der.data(), impl_->spki_der.size(), d.data(), &len, EVP_sha256(), nullptr);
  return DigestToString(d);
}

bool OfficerPublicKey::Verify(std::string_view message, std::string_view signature) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return false;
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  const EVP_MD* md = impl_->scheme == Impl::Scheme::kEd25519 ? nullptr : EVP_sha256();
  bool ok = EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, impl_->pkey.get()) == 1;
  if (ok && impl_->scheme == Impl::Scheme::kRsaPss) {
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) == 1;
  }
  ok = ok &&
       EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                        signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                        message.size()) == 1;
  ERR_clear_error();
  return ok;
}

// --- Verification -------------------------------------------------------------

std::variant<ApprovalStatement, ApprovalError> VerifyApproval(
    std::string_view statement_bytes, std::string_view signature,
    const OfficerPublicKey& officer_key, std::chrono::system_clock::time_point now,
    std::chrono::seconds max_skew) {
  auto parsed = ParseStatement(statement_bytes);
  if (auto* e = std::get_if<ApprovalError>(&parsed)) return *e;
  ApprovalStatement& s = std::get<ApprovalStatement>(parsed);
  if (!officer_key.Verify(statement_bytes, signature)) {
    return ApprovalError{ApprovalErrorCode::kBadSignature,
                         "signature over the statement does not verify under officer \"" +
                             s.officer_id + "\"'s registered " + officer_key.algorithm() + " key"};
  }
  const auto now_s = std::chrono::floor<std::chrono::seconds>(now);
  const auto skew = s.time > now_s ? s.time - now_s : now_s - s.time;
  if (skew > max_skew) {
    return ApprovalError{
        ApprovalErrorCode::kTimeSkew,
        "statement time " + FormatTime(s.time) + " is " + std::to_string(skew.count()) + " s " +
            (s.time > now_s ? "ahead of" : "behind") + " the server's clock (max " +
            std::to_string(max_skew.count()) + " s); check the officer's clock"};
  }
  return std::move(s);
}

std::variant<ApprovalStatement, ApprovalError> VerifyApproval(
    std::string_view statement_bytes, std::string_view signature,
    std::string_view officer_public_key, std::chrono::system_clock::time_point now,
    std::chrono::seconds max_skew) {
  auto key = OfficerPublicKey::Parse(officer_public_key);
  if (auto* e = std::get_if<ApprovalError>(&key)) return *e;
  return VerifyApproval(statement_bytes, signature, std::get<OfficerPublicKey>(key), now, max_skew);
}

std::optional<ApprovalError> CheckApprovalFor(const ApprovalStatement& statement,
                                              std::string_view request_id,
                                              const Sha256Digest& request_digest,
                                              std::string_view officer_id) {
  if (statement.request_id != request_id) {
    return ApprovalError{ApprovalErrorCode::kWrongRequest, "statement is for request \"" +
                                                               statement.request_id + "\", not \"" +
                                                               std::string(request_id) + "\""};
  }
  if (statement.request_digest != request_digest) {
    return ApprovalError{ApprovalErrorCode::kWrongRequest,
                         "statement digest " + DigestToString(statement.request_digest) +
                             " does not match request \"" + std::string(request_id) +
                             "\" (digest " + DigestToString(request_digest) +
                             "); the request content differs from what the officer saw"};
  }
  if (!officer_id.empty() && statement.officer_id != officer_id) {
    return ApprovalError{ApprovalErrorCode::kWrongOfficer,
                         "statement is signed as officer \"" + statement.officer_id +
                             "\", expected \"" + std::string(officer_id) + "\""};
  }
  return std::nullopt;
}

}  // namespace custos::policy
