// The canonical encoding of pending requests (pending_request.h).
#include "custos/policy/pending_request.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>

namespace custos::policy {
namespace {

constexpr std::string_view kIdField = "id: ";
constexpr std::size_t kMaxFieldNameLength = 64;
constexpr char kUpperHex[] = "0123456789ABCDEF";

bool IsValidFieldName(std::string_view name) {
  return !name.empty() && name.size() <= kMaxFieldNameLength && name != "id" &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
         });
}

// The bytes written as %XX.
bool NeedsEscape(unsigned char u) { return u < 0x20 || u == 0x7f || u == '%'; }

int UpperHexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // lowercase is not canonical
}

std::string LineError(std::size_t line, std::string message) {
  return "line " + std::to_string(line) + ": " + message;
}

// A field name for messages: it failed validation, so show it escaped.
std::string Shown(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 80)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') {
      out += "\\x";
      out += "0123456789abcdef"[u >> 4];
      out += "0123456789abcdef"[u & 0xf];
    } else {
      out += c;
    }
  }
  if (s.size() > 80) out += "...";
  return out + "\"";
}

}  // namespace

std::optional<std::string> PendingRequestText::Get(std::string_view name) const {
  for (const auto& [n, v] : fields) {
    if (n == name) return v;
  }
  return std::nullopt;
}

std::vector<std::string> PendingRequestText::GetAll(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [n, v] : fields) {
    if (n == name) out.push_back(v);
  }
  return out;
}

std::optional<std::string> EncodePendingRequest(const PendingRequestText& request) {
  if (!IsValidApprovalId(request.id) || request.fields.size() > kMaxPendingRequestFields) {
    return std::nullopt;
  }
  std::string out;
  out.append(kPendingRequestPrefix);
  out.append(kIdField).append(request.id).push_back('\n');
  for (const auto& [name, value] : request.fields) {
    if (!IsValidFieldName(name)) return std::nullopt;
    // Checked before appending so that the output never grows far past the limit.
    if (out.size() + name.size() + 3 + value.size() > kMaxPendingRequestBytes) return std::nullopt;
    out.append(name).append(": ");
    for (char c : value) {
      const auto u = static_cast<unsigned char>(c);
      if (NeedsEscape(u)) {
        out += '%';
        out += kUpperHex[u >> 4];
        out += kUpperHex[u & 0xf];
      } else {
        out += c;
      }
    }
    out += '\n';
    if (out.size() > kMaxPendingRequestBytes) return std::nullopt;
  }
  return out;
}

std::variant<PendingRequestText, std::string> ParsePendingRequest(std::string_view bytes) {
  if (bytes.size() > kMaxPendingRequestBytes) {
    return "request is " + std::to_string(bytes.size()) + " bytes; the limit is " +
           std::to_string(kMaxPendingRequestBytes);
  }
  if (bytes.substr(0, kPendingRequestPrefix.size()) != kPendingRequestPrefix) {
    return LineError(1, "does not start with \"custos-request-v1\" and a newline");
  }
  std::string_view rest = bytes.substr(kPendingRequestPrefix.size());
  PendingRequestText out;
  std::size_t line = 1;
  bool first = true;
  while (!rest.empty()) {
    ++line;
    const std::size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) {
      return LineError(line, "not terminated by a newline (every line ends with one \\n)");
    }
    const std::string_view text = rest.substr(0, nl);
    rest.remove_prefix(nl + 1);
    const std::size_t colon = text.find(": ");
    if (colon == std::string_view::npos) {
      if (text.find('\r') != std::string_view::npos) {
        return LineError(line, "contains a carriage return (lines end with \\n only)");
      }
      return LineError(line, "is not \"name: value\"");
    }
    const std::string_view name = text.substr(0, colon);
    const std::string_view raw = text.substr(colon + 2);
    if (first) {
      if (name != "id") return LineError(line, "expected \"id: <request id>\"");
      if (!IsValidApprovalId(raw)) {
        return LineError(line,
                         "request id must be 1-128 characters of [a-z0-9._-] starting with "
                         "[a-z0-9]");
      }
      out.id = std::string(raw);
      first = false;
      continue;
    }
    if (!IsValidFieldName(name)) {
      return LineError(line, "field name " + Shown(name) +
                                 (name == "id" ? " may appear only once, on line 2"
                                               : " is not 1-64 characters of [a-z0-9-]"));
    }
    if (out.fields.size() == kMaxPendingRequestFields) {
      return LineError(line, "more than " + std::to_string(kMaxPendingRequestFields) + " fields");
    }
    std::string value;
    value.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
      const auto u = static_cast<unsigned char>(raw[i]);
      if (u == '\r') {
        return LineError(line, "field \"" + std::string(name) +
                                   "\" contains a carriage return (lines end with \\n only)");
      }
      if (u < 0x20 || u == 0x7f) {
        return LineError(line,
                         "field \"" + std::string(name) + "\" contains an unescaped control byte");
      }
      if (u != '%') {
        value += raw[i];
        continue;
      }
      if (i + 2 >= raw.size()) {
        return LineError(line, "field \"" + std::string(name) + "\" has a truncated %XX escape");
      }
      const int h = UpperHexValue(raw[i + 1]);
      const int l = UpperHexValue(raw[i + 2]);
      if (h < 0 || l < 0) {
        return LineError(line, "field \"" + std::string(name) +
                                   "\" has an escape that is not % and two uppercase hex digits");
      }
      const auto decoded = static_cast<unsigned char>(h << 4 | l);
      if (!NeedsEscape(decoded)) {
        return LineError(line, "field \"" + std::string(name) + "\" escapes byte %" +
                                   std::string(raw.substr(i + 1, 2)) +
                                   ", which must be written as is");
      }
      value += static_cast<char>(decoded);
      i += 2;
    }
    out.fields.emplace_back(std::string(name), std::move(value));
  }
  if (first) return LineError(2, "missing \"id: <request id>\"");
  return out;
}

Sha256Digest RequestDigest(std::string_view canonical_bytes) {
  Sha256Digest d{};
  unsigned int len = 0;
  EVP_Digest(canonical_bytes.data(), canonical_bytes.size(), d.data(), &len, EVP_sha256(), nullptr);
  return d;
}

std::optional<std::string> NewRequestId() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return std::nullopt;
  std::string id = "rq-";
  for (unsigned char b : bytes) {
    id += "0123456789abcdef"[b >> 4];
    id += "0123456789abcdef"[b & 0xf];
  }
  return id;
}

}  // namespace custos::policy
