#include "uri.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <set>
#include <utility>

namespace custos::pkcs11::internal {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> PercentDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) {
      return Error(ErrorKind::kInvalidArgument, "PKCS#11 URI has a truncated %-escape");
    }
    int hi = HexValue(in[i + 1]);
    int lo = HexValue(in[i + 2]);
    if (hi < 0 || lo < 0) {
      return Error(ErrorKind::kInvalidArgument, "PKCS#11 URI has a malformed %-escape");
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

}  // namespace

bool TokenSelector::Matches(unsigned long slot, std::string_view token_label,
                            std::string_view token_serial, std::string_view token_manufacturer,
                            std::string_view token_model) const {
  if (label_or_serial && *label_or_serial != token_label && *label_or_serial != token_serial) {
    return false;
  }
  if (label && *label != token_label) return false;
  if (serial && *serial != token_serial) return false;
  if (manufacturer && *manufacturer != token_manufacturer) return false;
  if (model && *model != token_model) return false;
  if (slot_id && *slot_id != slot) return false;
  return true;
}

Result<TokenSelector> ParseTokenSelector(std::string_view text) {
  TokenSelector selector;
  constexpr std::string_view kScheme = "pkcs11:";
  if (text.size() < kScheme.size() ||
      !std::equal(kScheme.begin(), kScheme.end(), text.begin(), [](char a, char b) {
        return a == std::tolower(static_cast<unsigned char>(b));
      })) {
    if (text.empty())
      return Error(ErrorKind::kInvalidArgument, "no token named (label, serial or pkcs11: URI)");
    selector.label_or_serial = std::string(text);
    return selector;
  }
  std::string_view rest = text.substr(kScheme.size());
  std::string_view path = rest;
  std::string_view query;
  if (std::size_t q = rest.find('?'); q != std::string_view::npos) {
    path = rest.substr(0, q);
    query = rest.substr(q + 1);
  }
  std::set<std::string> seen;
  auto handle = [&](std::string_view attr, char separator) -> Status {
    if (attr.empty()) return {};
    std::size_t eq = attr.find('=');
    if (eq == std::string_view::npos) {
      return Error(ErrorKind::kInvalidArgument,
                   "PKCS#11 URI attribute '" + std::string(attr) + "' has no '='");
    }
    std::string name(attr.substr(0, eq));
    if (name == "pin-value" || name == "pin-source") {
      return Error(ErrorKind::kInvalidArgument,
                   "PKCS#11 URI must not carry a PIN (" + name +
                       "); give the PIN through a PIN file or environment variable");
    }
    if (!seen.insert(name).second) {
      return Error(ErrorKind::kInvalidArgument, "PKCS#11 URI repeats the attribute '" + name + "'");
    }
    Result<std::string> value = PercentDecode(attr.substr(eq + 1));
    if (!value.ok()) return value.error();
    if (separator == ';') {
      if (name == "token") {
        selector.label = std::move(*value);
      } else if (name == "serial") {
        selector.serial = std::move(*value);
      } else if (name == "manufacturer") {
        selector.manufacturer = std::move(*value);
      } else if (name == "model") {
        selector.model = std::move(*value);
      } else if (name == "slot-id") {
        const std::string& digits = *value;
        if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) {
          return Error(ErrorKind::kInvalidArgument,
                       "PKCS#11 URI slot-id '" + digits + "' is not a decimal number");
        }
        errno = 0;
        unsigned long long id = std::strtoull(digits.c_str(), nullptr, 10);
        if (errno == ERANGE || !std::in_range<unsigned long>(id)) {
          return Error(ErrorKind::kInvalidArgument, "PKCS#11 URI slot-id is out of range");
        }
        selector.slot_id = static_cast<unsigned long>(id);
      }
      // Other path attributes (object, id, type, library-*, slot-*) do not
      // select a token and are ignored (RFC 7512 section 2.3).
    }
    return {};
  };
  for (auto [part, separator] : {std::pair{path, ';'}, std::pair{query, '&'}}) {
    while (!part.empty()) {
      std::size_t end = part.find(separator);
      Status s = handle(part.substr(0, end), separator);
      if (!s.ok()) return s.error();
      if (end == std::string_view::npos) break;
      part = part.substr(end + 1);
    }
  }
  return selector;
}

}  // namespace custos::pkcs11::internal
