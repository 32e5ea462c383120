#include "custos/service/key_name.h"

namespace custos::service {

namespace {

bool LeadChar(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool TailChar(char c) { return LeadChar(c) || c == '.' || c == '_' || c == '-'; }

// Renders untrusted text for an error message: printable ASCII only, bounded.
std::string Quote(std::string_view text) {
  std::string out = "\"";
  for (std::size_t i = 0; i < text.size() && i < 80; ++i) {
    const char c = text[i];
    out.push_back(c >= 0x20 && c < 0x7F ? c : '?');
  }
  if (text.size() > 80) out += "...";
  out.push_back('"');
  return out;
}

}  // namespace

bool IsValidKeyName(std::string_view name) {
  if (name.empty() || name.size() > 64 || !LeadChar(name.front())) return false;
  for (char c : name.substr(1)) {
    if (!TailChar(c)) return false;
  }
  return true;
}

Result<KeyReference> ParseKeyReference(std::string_view text) {
  if (text.empty()) return Error{"no key named: give \"name\" or \"name@version\""};
  const auto at = text.find('@');
  const std::string_view name = text.substr(0, at);
  if (!IsValidKeyName(name)) {
    return Error{"key name " + Quote(name) +
                 " is invalid: use 1-64 of a-z 0-9 . _ - starting with a letter or digit"};
  }
  KeyReference ref{std::string(name), std::nullopt};
  if (at == std::string_view::npos) return ref;
  const std::string_view digits = text.substr(at + 1);
  bool ok = !digits.empty() && digits.size() <= 10 && digits.front() != '0';
  std::uint64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') {
      ok = false;
      break;
    }
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (!ok || v == 0 || v > 0xFFFFFFFFull) {
    return Error{"key version in " + Quote(text) + " is invalid: use name@N with N >= 1"};
  }
  ref.version = static_cast<std::uint32_t>(v);
  return ref;
}

std::string TokenLabel(std::string_view name, std::uint32_t version) {
  return "custos:" + std::string(name) + "@" + std::to_string(version);
}

}  // namespace custos::service
