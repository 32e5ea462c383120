// Syntax checks and name tables for certificate profiles.
#include "profile_rules.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>

namespace custos::policy::internal {
namespace {

constexpr std::array<std::string_view, 4> kKeyAlgorithms = {"rsa", "ec-p256", "ec-p384", "ed25519"};

constexpr std::array<std::string_view, 9> kKeyUsages = {
    "digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyAgreement",
    "keyCertSign",      "cRLSign",        "encipherOnly",    "decipherOnly"};

struct NamedOid {
  std::string_view name;
  std::string_view oid;
};
constexpr std::array<NamedOid, 6> kExtKeyUsages = {{
    {"serverAuth", "1.3.6.1.5.5.7.3.1"},
    {"clientAuth", "1.3.6.1.5.5.7.3.2"},
    {"codeSigning", "1.3.6.1.5.5.7.3.3"},
    {"emailProtection", "1.3.6.1.5.5.7.3.4"},
    {"timeStamping", "1.3.6.1.5.5.7.3.8"},
    {"OCSPSigning", "1.3.6.1.5.5.7.3.9"},
}};

constexpr std::array<std::string_view, 8> kBuiltExtensions = {
    "2.5.29.19",          // basicConstraints
    "2.5.29.15",          // keyUsage
    "2.5.29.37",          // extKeyUsage
    "2.5.29.17",          // subjectAltName
    "2.5.29.14",          // subjectKeyIdentifier
    "2.5.29.35",          // authorityKeyIdentifier
    "2.5.29.31",          // cRLDistributionPoints
    "1.3.6.1.5.5.7.1.1",  // authorityInfoAccess
};

constexpr std::array<std::string_view, 8> kSubjectTypes = {"CN", "O",  "OU", "C",
                                                           "L",  "ST", "DC", "serialNumber"};

template <std::size_t N>
std::string Join(const std::array<std::string_view, N>& names) {
  std::string out;
  for (auto name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

}  // namespace

bool IsProfileKeyAlgorithm(std::string_view name) {
  return std::find(kKeyAlgorithms.begin(), kKeyAlgorithms.end(), name) != kKeyAlgorithms.end();
}
std::string ProfileKeyAlgorithmNames() { return Join(kKeyAlgorithms); }

std::optional<std::uint16_t> KeyUsageBit(std::string_view name) {
  for (std::size_t i = 0; i < kKeyUsages.size(); ++i) {
    if (kKeyUsages[i] == name) return static_cast<std::uint16_t>(1u << i);
  }
  return std::nullopt;
}
std::string KeyUsageNames() { return Join(kKeyUsages); }

std::optional<std::string> ExtKeyUsageOid(std::string_view name) {
  for (const NamedOid& eku : kExtKeyUsages) {
    if (eku.name == name) return std::string(eku.oid);
  }
  if (IsDottedOid(name)) return std::string(name);
  return std::nullopt;
}

std::string ExtKeyUsageNames() {
  std::string out;
  for (const NamedOid& eku : kExtKeyUsages) {
    if (!out.empty()) out += ", ";
    out += eku.name;
  }
  return out;
}

bool IsDottedOid(std::string_view text) {
  if (text.empty() || text.size() > 256) return false;
  int arcs = 0;
  std::uint64_t first = 0;
  std::size_t i = 0;
  while (true) {
    const std::size_t start = i;
    std::uint64_t value = 0;
    while (i < text.size() && IsDigit(text[i])) {
      if (value > (UINT64_MAX >> 1) / 10) return false;  // keeps every arc below 2^63
      value = value * 10 + static_cast<std::uint64_t>(text[i] - '0');
      ++i;
    }
    const std::size_t len = i - start;
    if (len == 0) return false;
    if (len > 1 && text[start] == '0') return false;
    if (arcs == 0) {
      if (value > 2) return false;
      first = value;
    } else if (arcs == 1 && first < 2 && value >= 40) {
      return false;
    }
    ++arcs;
    if (i == text.size()) break;
    if (text[i] != '.') return false;
    ++i;
  }
  return arcs >= 2;
}

bool IsProfileBuiltExtension(std::string_view oid) {
  return std::find(kBuiltExtensions.begin(), kBuiltExtensions.end(), oid) != kBuiltExtensions.end();
}

bool IsCidr(std::string_view text) {
  const std::size_t slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0) return false;
  const std::string_view bits = text.substr(slash + 1);
  if (bits.empty() || bits.size() > 3 || !std::all_of(bits.begin(), bits.end(), IsDigit)) {
    return false;
  }
  if (bits.size() > 1 && bits[0] == '0') return false;
  const int prefix = std::stoi(std::string(bits));
  const std::string addr(text.substr(0, slash));
  unsigned char buf[16];
  if (inet_pton(AF_INET, addr.c_str(), buf) == 1) return prefix <= 32;
  if (inet_pton(AF_INET6, addr.c_str(), buf) == 1) return prefix <= 128;
  return false;
}

bool IsDnsName(std::string_view name, bool allow_wildcard) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t labels = 0;
  std::size_t start = 0;
  while (true) {
    std::size_t end = name.find('.', start);
    if (end == std::string_view::npos) end = name.size();
    const std::string_view label = name.substr(start, end - start);
    if (label.empty() || label.size() > 63) return false;
    if (label == "*") {
      if (!allow_wildcard || labels != 0) return false;
    } else {
      if (label.front() == '-' || label.back() == '-') return false;
      if (!std::all_of(label.begin(), label.end(),
                       [](char c) { return IsAlpha(c) || IsDigit(c) || c == '-'; })) {
        return false;
      }
    }
    ++labels;
    if (end == name.size()) break;
    start = end + 1;
  }
  return name.substr(0, 2) == "*." ? labels >= 3 : labels >= 2;
}

bool IsAbsoluteUri(std::string_view uri) {
  if (uri.empty() || uri.size() > 2048) return false;
  for (char c : uri) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;
  }
  const std::size_t colon = uri.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 >= uri.size()) return false;
  if (!IsAlpha(uri[0])) return false;
  return std::all_of(uri.begin() + 1, uri.begin() + static_cast<std::ptrdiff_t>(colon), [](char c) {
    return IsAlpha(c) || IsDigit(c) || c == '+' || c == '-' || c == '.';
  });
}

bool IsDistributionUrl(std::string_view url) {
  if (!IsAbsoluteUri(url)) return false;
  for (std::string_view scheme : {"http://", "https://", "ldap://"}) {
    if (url.size() > scheme.size() && url.substr(0, scheme.size()) == scheme) return true;
  }
  return false;
}

bool IsSubjectAttributeType(std::string_view type) {
  return std::find(kSubjectTypes.begin(), kSubjectTypes.end(), type) != kSubjectTypes.end();
}
std::string SubjectAttributeTypes() { return Join(kSubjectTypes); }

std::string CheckSubjectAttributeValue(std::string_view type, std::string_view value) {
  if (value.empty()) return "is empty";
  if (std::any_of(value.begin(), value.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
      })) {
    return "contains a control character";
  }
  if (type == "C") {
    if (value.size() != 2 ||
        !std::all_of(value.begin(), value.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
      return "must be two upper-case letters (ISO 3166)";
    }
    return "";
  }
  if (type == "DC") {
    if (value.size() > 63 || !std::all_of(value.begin(), value.end(), [](char c) {
          return IsAlpha(c) || IsDigit(c) || c == '-';
        })) {
      return "must be one DNS label (letters, digits, '-'; at most 63)";
    }
    return "";
  }
  if (type == "serialNumber") {
    // PrintableString.
    if (value.size() > 64 || !std::all_of(value.begin(), value.end(), [](char c) {
          return IsAlpha(c) || IsDigit(c) ||
                 std::string_view(" '()+,-./:=?").find(c) != std::string_view::npos;
        })) {
      return "must be at most 64 PrintableString characters";
    }
    return "";
  }
  const std::size_t limit = (type == "L" || type == "ST") ? 128 : 64;
  if (value.size() > limit) return "is longer than " + std::to_string(limit) + " bytes";
  return "";
}

}  // namespace custos::policy::internal
