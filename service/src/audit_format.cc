#include "custos/service/audit_format.h"

#include <openssl/evp.h>

#include <chrono>
#include <cstdio>
#include <ctime>

namespace custos::service::audit {

namespace {

constexpr std::string_view kHashKey = ",\"hash\":\"";
// ,"hash":" + 64 hex + " + }
constexpr std::size_t kHashSuffix = kHashKey.size() + 64 + 2;

// Canonical string: '"' and '\' escaped with a backslash; every byte below
// 0x20 or above 0x7E as \u00XX (lowercase hex). The result is pure ASCII.
void AppendString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c < 0x20 || c > 0x7E) {
      out += "\\u00";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
}

void Key(std::string& out, std::string_view key) {
  if (out.size() > 1) out.push_back(',');
  out.push_back('"');
  out += key;
  out += "\":";
}

void Str(std::string& out, std::string_view key, std::string_view value) {
  Key(out, key);
  AppendString(out, value);
}

void Num(std::string& out, std::string_view key, std::uint64_t value) {
  Key(out, key);
  out += std::to_string(value);
}

void Head(std::string& out, std::uint64_t seq, const Hash& prev, std::string_view time,
          std::string_view kind) {
  out = "{";
  Num(out, "seq", seq);
  Str(out, "prev", Hex(prev));
  Str(out, "time", time);
  Str(out, "kind", kind);
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // uppercase is not canonical
}

// A small parser for the flat objects the log holds.
class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  Result<std::vector<std::pair<std::string, JsonValue>>> Object() {
    std::vector<std::pair<std::string, JsonValue>> fields;
    if (!Eat('{')) return Fail("does not start with '{'");
    if (Eat('}')) return Done(std::move(fields));
    while (true) {
      std::string key;
      if (!String(&key)) return Fail(error_.empty() ? "expected a field name" : error_);
      if (!Eat(':')) return Fail("expected ':' after \"" + key + "\"");
      JsonValue v;
      if (Peek() == '"') {
        if (!String(&v.text)) return Fail(error_);
      } else if (Peek() == '[') {
        v.type = JsonValue::Type::kArray;
        ++i_;
        if (!Eat(']')) {
          while (true) {
            std::string item;
            if (!String(&item)) return Fail("arrays hold strings only");
            v.array.push_back(std::move(item));
            if (Eat(']')) break;
            if (!Eat(',')) return Fail("expected ',' or ']' in array");
          }
        }
      } else if (Peek() >= '0' && Peek() <= '9') {
        v.type = JsonValue::Type::kNumber;
        while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') v.text.push_back(s_[i_++]);
        if (v.text.size() > 1 && v.text[0] == '0') return Fail("number with a leading zero");
        if (v.text.size() > 19) return Fail("number too large");
      } else {
        return Fail("unexpected value for \"" + key + "\"");
      }
      for (const auto& [k, unused] : fields) {
        if (k == key) return Fail("field \"" + key + "\" appears twice");
      }
      fields.emplace_back(std::move(key), std::move(v));
      if (Eat('}')) return Done(std::move(fields));
      if (!Eat(',')) return Fail("expected ',' or '}'");
    }
  }

 private:
  Result<std::vector<std::pair<std::string, JsonValue>>> Done(
      std::vector<std::pair<std::string, JsonValue>> fields) {
    if (i_ != s_.size()) return Fail("trailing bytes after the object");
    return fields;
  }
  Error Fail(std::string why) { return Error{why + " at byte " + std::to_string(i_)}; }
  char Peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  bool Eat(char c) {
    if (Peek() != c) return false;
    ++i_;
    return true;
  }
  bool String(std::string* out) {
    if (!Eat('"')) return false;
    while (i_ < s_.size()) {
      const char c = s_[i_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) {
        error_ = "control byte in a string";
        return false;
      }
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (i_ >= s_.size()) break;
      const char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'u': {
          if (i_ + 4 > s_.size()) {
            error_ = "short \\u escape";
            return false;
          }
          int value = 0;
          for (int k = 0; k < 4; ++k) {
            char h = s_[i_++];
            if (h >= 'A' && h <= 'F') h = static_cast<char>(h - 'A' + 'a');
            const int d = HexDigit(h);
            if (d < 0) {
              error_ = "bad \\u escape";
              return false;
            }
            value = value * 16 + d;
          }
          if (value > 0xFF) {
            error_ = "\\u escape above \\u00ff (strings are byte strings)";
            return false;
          }
          out->push_back(static_cast<char>(value));
          break;
        }
        default:
          error_ = "bad escape";
          return false;
      }
    }
    error_ = "unterminated string";
    return false;
  }

  std::string_view s_;
  std::size_t i_ = 0;
  std::string error_;
};

}  // namespace

std::string Hex(std::span<const std::uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (auto b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xF]);
  }
  return out;
}

std::optional<std::vector<std::uint8_t>> ParseHex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  std::vector<std::uint8_t> out(hex.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = HexDigit(hex[2 * i]);
    const int lo = HexDigit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return out;
}

std::optional<Hash> ParseHash(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  auto bytes = ParseHex(hex);
  if (!bytes) return std::nullopt;
  Hash h{};
  std::copy(bytes->begin(), bytes->end(), h.begin());
  return h;
}

std::string UtcMicros() {
  const auto now = std::chrono::system_clock::now();
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(us % 1000000));
  return buf;
}

std::string RequestBody(std::uint64_t seq, const Hash& prev, std::string_view time,
                        const RequestFields& f) {
  std::string out;
  out.reserve(512);
  Head(out, seq, prev, time, f.kind);
  Str(out, "principal", f.principal);
  Str(out, "peer", f.peer);
  Num(out, "request_id", f.request_id);
  Str(out, "trace_id", f.trace_id);
  Str(out, "op", f.op);
  Str(out, "key", f.key);
  Str(out, "op_sha256", f.op_sha256);
  Str(out, "outcome", f.outcome);
  Str(out, "error", f.error);
  // Absent when empty, so records without a quorum request keep the bytes
  // they had before the field existed.
  if (!f.quorum_request.empty()) Str(out, "quorum_request", f.quorum_request);
  Key(out, "approvals");
  out.push_back('[');
  for (std::size_t i = 0; i < f.approvals.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendString(out, f.approvals[i]);
  }
  out += "]}";
  return out;
}

std::string CheckpointBody(std::uint64_t seq, const Hash& prev, std::string_view time,
                           const CheckpointFields& f) {
  std::string out;
  Head(out, seq, prev, time, "checkpoint");
  Num(out, "covers", f.covers);
  Str(out, "covers_hash", Hex(f.covers_hash));
  Str(out, "key", f.key);
  Str(out, "algorithm", f.algorithm);
  Str(out, "signature", Hex(f.signature));
  out.push_back('}');
  return out;
}

Hash ChainHash(const Hash& prev, std::string_view body) {
  Hash out{};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned int len = 0;
  const bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
                  EVP_DigestUpdate(ctx, prev.data(), prev.size()) == 1 &&
                  EVP_DigestUpdate(ctx, body.data(), body.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, out.data(), &len) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) std::abort();  // SHA-256 does not fail short of memory corruption
  return out;
}

std::string SealLine(std::string_view body, const Hash& hash) {
  std::string line(body.substr(0, body.size() - 1));
  line += kHashKey;
  line += Hex(hash);
  line += "\"}\n";
  return line;
}

std::string CheckpointStatement(std::uint64_t covers, const Hash& covers_hash,
                                std::string_view time) {
  std::string s = "custos-audit-checkpoint-v1\n";
  s += std::to_string(covers);
  s += '\n';
  s += Hex(covers_hash);
  s += '\n';
  s += time;
  s += '\n';
  return s;
}

std::string FormatApproval(const ApprovalEntry& entry) {
  return entry.officer + " " + entry.decision + " " + entry.time +
         " sha256:" + Hex(entry.request_digest) + " " + Hex(entry.signature);
}

std::optional<ApprovalEntry> ParseApproval(std::string_view text) {
  std::vector<std::string_view> parts;
  std::size_t at = 0;
  while (parts.size() < 6) {
    const std::size_t sp = text.find(' ', at);
    parts.push_back(text.substr(at, sp == std::string_view::npos ? text.npos : sp - at));
    if (sp == std::string_view::npos) break;
    at = sp + 1;
  }
  if (parts.size() != 5) return std::nullopt;
  for (std::string_view p : parts) {
    if (p.empty()) return std::nullopt;
  }
  if (parts[1] != "approve" && parts[1] != "deny") return std::nullopt;
  constexpr std::string_view kSha = "sha256:";
  if (parts[3].substr(0, kSha.size()) != kSha) return std::nullopt;
  auto digest = ParseHash(parts[3].substr(kSha.size()));
  auto signature = ParseHex(parts[4]);
  if (!digest || !signature) return std::nullopt;
  ApprovalEntry out;
  out.officer = std::string(parts[0]);
  out.decision = std::string(parts[1]);
  out.time = std::string(parts[2]);
  out.request_digest = *digest;
  out.signature = std::move(*signature);
  return out;
}

const JsonValue* ParsedLine::Get(std::string_view name) const {
  for (const auto& [k, v] : fields) {
    if (k == name) return &v;
  }
  return nullptr;
}

std::optional<std::uint64_t> ParsedLine::Number(std::string_view name) const {
  const JsonValue* v = Get(name);
  if (!v || v->type != JsonValue::Type::kNumber) return std::nullopt;
  std::uint64_t n = 0;
  for (char c : v->text) {
    const std::uint64_t d = static_cast<std::uint64_t>(c - '0');
    if (n > (UINT64_MAX - d) / 10) return std::nullopt;
    n = n * 10 + d;
  }
  return n;
}

std::optional<std::string> ParsedLine::String(std::string_view name) const {
  const JsonValue* v = Get(name);
  if (!v || v->type != JsonValue::Type::kString) return std::nullopt;
  return v->text;
}

Result<ParsedLine> ParseLine(std::string_view line) {
  if (line.size() < kHashSuffix + 2 || line.back() != '}') {
    return Error{"not a sealed record (too short or no closing brace)"};
  }
  const std::size_t at = line.size() - kHashSuffix;
  if (line.substr(at, kHashKey.size()) != kHashKey || line[line.size() - 2] != '"') {
    return Error{"record does not end with its \"hash\" field"};
  }
  auto hash = ParseHash(line.substr(at + kHashKey.size(), 64));
  if (!hash) return Error{"\"hash\" is not 64 lowercase hex digits"};
  ParsedLine out;
  out.body = std::string(line.substr(0, at)) + "}";
  out.hash = *hash;
  auto fields = Parser(out.body).Object();
  if (!fields) return Error{"malformed JSON: " + fields.error()};
  out.fields = std::move(fields.value());
  if (!out.Number("seq")) return Error{"no numeric \"seq\""};
  auto prev = out.String("prev");
  if (!prev || !ParseHash(*prev)) return Error{"no \"prev\" of 64 lowercase hex digits"};
  if (!out.String("time")) return Error{"no \"time\""};
  if (!out.String("kind")) return Error{"no \"kind\""};
  if (out.fields.size() < 4 || out.fields[0].first != "seq" || out.fields[1].first != "prev") {
    return Error{"fields out of canonical order"};
  }
  return out;
}

}  // namespace custos::service::audit
