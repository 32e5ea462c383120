// Distinguished names (RFC 4514 strings, encoding and decoding) and subject
// alternative names (syntax, canonical forms, GENERAL_NAME conversion).
#include <arpa/inet.h>
#include <openssl/asn1.h>
#include <openssl/objects.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>

#include "ca_internal.h"

namespace custos::service::ca {

namespace {

using internal::Fail;

// Attribute types accepted in DN strings, with their NIDs.
struct DnType {
  const char* name;
  int nid;
};
constexpr std::array<DnType, 8> kDnTypes = {{
    {"CN", NID_commonName},
    {"O", NID_organizationName},
    {"OU", NID_organizationalUnitName},
    {"C", NID_countryName},
    {"L", NID_localityName},
    {"ST", NID_stateOrProvinceName},
    {"DC", NID_domainComponent},
    {"serialNumber", NID_serialNumber},
}};

bool IsEscapable(char c) { return std::strchr(",+=\\\"<>; #", c) != nullptr && c != '\0'; }

}  // namespace

Result<std::vector<NameAttribute>> ParseDn(std::string_view text) {
  if (text.empty()) return Fail("subject-dn", "the distinguished name is empty");
  if (text.size() > 1024) return Fail("subject-dn", "the distinguished name is too long");
  std::vector<NameAttribute> rdns;
  size_t i = 0;
  while (true) {
    const size_t eq = text.find('=', i);
    if (eq == std::string_view::npos) {
      return Fail("subject-dn", "expected TYPE=value at offset " + std::to_string(i));
    }
    const std::string type(text.substr(i, eq - i));
    const auto known = std::find_if(kDnTypes.begin(), kDnTypes.end(),
                                    [&](const DnType& t) { return type == t.name; });
    if (known == kDnTypes.end()) {
      return Fail("subject-dn", "unknown attribute type \"" + type +
                                    "\" (use CN, O, OU, C, L, ST, DC, serialNumber)");
    }
    std::string value;
    bool escaped_last = false;
    i = eq + 1;
    for (; i < text.size() && text[i] != ','; ++i) {
      const char c = text[i];
      escaped_last = false;
      if (c == '\\') {
        if (i + 1 >= text.size() || !IsEscapable(text[i + 1])) {
          return Fail("subject-dn", "bad escape in the value of " + type);
        }
        value += text[++i];
        escaped_last = true;
        continue;
      }
      if (c == '+') {
        return Fail("subject-dn", "multi-valued RDNs are not supported (escape '+' as '\\+')");
      }
      if (c == '=' || c == '"' || c == ';' || c == '<' || c == '>' ||
          static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return Fail("subject-dn", "unescaped special character in the value of " + type);
      }
      value += c;
    }
    if (value.empty()) return Fail("subject-dn", "empty value for " + type);
    if ((value.front() == ' ' && text[eq + 1] != '\\') || (value.back() == ' ' && !escaped_last)) {
      return Fail("subject-dn", "leading or trailing space in the value of " + type);
    }
    if (type == "C" && (value.size() != 2 || !std::isupper(static_cast<unsigned char>(value[0])) ||
                        !std::isupper(static_cast<unsigned char>(value[1])))) {
      return Fail("subject-dn", "C must be a two-letter country code such as US");
    }
    rdns.push_back({type, value});
    if (i >= text.size()) break;
    ++i;  // the comma
    if (i < text.size() && text[i] == ' ') ++i;
    if (i >= text.size()) return Fail("subject-dn", "trailing comma");
  }
  std::reverse(rdns.begin(), rdns.end());
  return rdns;
}

std::string NameToString(const X509_NAME* name) {
  internal::UniqueBio bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || name == nullptr) return "";
  if (X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
    return "";
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : "";
}

namespace internal {

Result<UniqueName> BuildName(const std::vector<NameAttribute>& attributes) {
  UniqueName name(X509_NAME_new());
  if (name == nullptr) return Fail("subject-attribute-invalid", "out of memory");
  for (const NameAttribute& a : attributes) {
    int nid = OBJ_sn2nid(a.type.c_str());
    if (nid == NID_undef) {
      UniqueObject obj = ParseOid(a.type);
      if (obj != nullptr) nid = OBJ_obj2nid(obj.get());
    }
    if (nid == NID_undef) {
      return Fail("subject-attribute-invalid", "unknown subject attribute type " + a.type);
    }
    // -1, 0: append as a new single-valued RDN. The string type comes from
    // OpenSSL's table for the NID (PrintableString for C, IA5String for DC
    // and emailAddress, UTF8String otherwise) with its upper length bounds.
    if (X509_NAME_add_entry_by_NID(name.get(), nid, MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(a.value.data()),
                                   static_cast<int>(a.value.size()), -1, 0) != 1) {
      OpenSslErrors();
      return Fail("subject-attribute-invalid",
                  "subject attribute " + a.type + " has a value that cannot be encoded");
    }
  }
  return name;
}

Result<std::vector<NameAttribute>> DecodeName(const X509_NAME* name) {
  std::vector<NameAttribute> out;
  const int count = X509_NAME_entry_count(name);
  int last_set = -1;
  for (int i = 0; i < count; ++i) {
    const X509_NAME_ENTRY* entry = X509_NAME_get_entry(name, i);
    const int set = X509_NAME_ENTRY_set(entry);
    if (set == last_set) {
      return Fail("subject-multivalued-rdn", "the subject has a multi-valued RDN");
    }
    last_set = set;
    const ASN1_OBJECT* obj = X509_NAME_ENTRY_get_object(entry);
    const int nid = OBJ_obj2nid(obj);
    std::string type = nid != NID_undef ? OBJ_nid2sn(nid) : OidText(obj);
    unsigned char* utf8 = nullptr;
    const int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry));
    if (len < 0) {
      OpenSslErrors();
      return Fail("subject-attribute-invalid", "subject attribute " + type + " does not decode");
    }
    std::string value(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
    OPENSSL_free(utf8);
    if (value.find('\0') != std::string::npos) {
      return Fail("subject-attribute-invalid", "subject attribute " + type + " contains NUL");
    }
    out.push_back({std::move(type), std::move(value)});
  }
  return out;
}

bool IsValidDnsName(std::string_view name, bool allow_wildcard) {
  if (name.empty() || name.size() > 253) return false;
  size_t labels = 0;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string_view::npos) end = name.size();
    const std::string_view label = name.substr(start, end - start);
    if (label.empty() || label.size() > 63) return false;
    if (label == "*") {
      if (!allow_wildcard || labels != 0) return false;
    } else {
      if (label.front() == '-' || label.back() == '-') return false;
      for (char c : label) {
        const bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (!ok) return false;
      }
    }
    ++labels;
    start = end + 1;
    if (end == name.size()) break;
  }
  // A wildcard needs at least two labels after it ("*.example.test").
  if (name.substr(0, 2) == "*.") return labels >= 3;
  return labels >= 2;
}

bool IsValidUri(std::string_view uri) {
  if (uri.empty() || uri.size() > 2048) return false;
  for (char c : uri) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;
  }
  const size_t colon = uri.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 >= uri.size()) return false;
  if (!std::isalpha(static_cast<unsigned char>(uri[0]))) return false;
  for (size_t i = 1; i < colon; ++i) {
    const char c = uri[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

bool IsValidEmail(std::string_view email) {
  const size_t at = email.find('@');
  if (at == std::string_view::npos || at == 0 ||
      email.find('@', at + 1) != std::string_view::npos) {
    return false;
  }
  for (char c : email.substr(0, at)) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '(' || c == ')' || c == ',' || c == ';' || c == ':' ||
        c == '<' || c == '>' || c == '[' || c == ']' || c == '\\' || c == '"') {
      return false;
    }
  }
  return IsValidDnsName(email.substr(at + 1), false);
}

UniqueGeneralName ToGeneralName(const San& san) {
  UniqueGeneralName gn(GENERAL_NAME_new());
  if (gn == nullptr) return nullptr;
  if (san.type == San::Type::kIp) {
    ASN1_OCTET_STRING* ip = a2i_IPADDRESS(san.value.c_str());
    if (ip == nullptr) return nullptr;
    GENERAL_NAME_set0_value(gn.get(), GEN_IPADD, ip);
    return gn;
  }
  ASN1_IA5STRING* s = ASN1_IA5STRING_new();
  if (s == nullptr ||
      ASN1_STRING_set(s, san.value.data(), static_cast<int>(san.value.size())) != 1) {
    ASN1_IA5STRING_free(s);
    return nullptr;
  }
  const int type = san.type == San::Type::kDns   ? GEN_DNS
                   : san.type == San::Type::kUri ? GEN_URI
                                                 : GEN_EMAIL;
  GENERAL_NAME_set0_value(gn.get(), type, s);
  return gn;
}

std::optional<San> FromGeneralName(const GENERAL_NAME* name) {
  int type = 0;
  void* value = GENERAL_NAME_get0_value(name, &type);
  // Only these four types hold an ASN1_STRING; the others (otherName,
  // directoryName, ...) hold other structures and are not ours to read.
  if (value == nullptr ||
      (type != GEN_DNS && type != GEN_URI && type != GEN_EMAIL && type != GEN_IPADD)) {
    return std::nullopt;
  }
  const auto* str = static_cast<const ASN1_STRING*>(value);
  const std::string raw(reinterpret_cast<const char*>(ASN1_STRING_get0_data(str)),
                        static_cast<size_t>(ASN1_STRING_length(str)));
  switch (type) {
    case GEN_DNS: {
      std::string lower = raw;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      return San{San::Type::kDns, lower};
    }
    case GEN_URI:
      return San{San::Type::kUri, raw};
    case GEN_EMAIL:
      return San{San::Type::kEmail, raw};
    case GEN_IPADD: {
      char text[INET6_ADDRSTRLEN] = {0};
      if (raw.size() == 4) {
        if (inet_ntop(AF_INET, raw.data(), text, sizeof(text)) == nullptr) return std::nullopt;
      } else if (raw.size() == 16) {
        if (inet_ntop(AF_INET6, raw.data(), text, sizeof(text)) == nullptr) return std::nullopt;
      } else {
        return std::nullopt;
      }
      return San{San::Type::kIp, text};
    }
    default:
      return std::nullopt;
  }
}

}  // namespace internal

Result<San> ParseSan(std::string_view text) {
  const size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    return Fail("san-syntax", "a SAN is written dns:NAME, ip:ADDRESS, uri:URI or email:ADDRESS");
  }
  const std::string_view kind = text.substr(0, colon);
  const std::string value(text.substr(colon + 1));
  if (kind == "dns") {
    std::string lower = value;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (!internal::IsValidDnsName(lower, true)) {
      return Fail("san-syntax", "\"" + value + "\" is not a valid DNS name");
    }
    return San{San::Type::kDns, lower};
  }
  if (kind == "ip") {
    unsigned char buf[16];
    char canonical[INET6_ADDRSTRLEN] = {0};
    if (inet_pton(AF_INET, value.c_str(), buf) == 1) {
      inet_ntop(AF_INET, buf, canonical, sizeof(canonical));
    } else if (inet_pton(AF_INET6, value.c_str(), buf) == 1) {
      inet_ntop(AF_INET6, buf, canonical, sizeof(canonical));
    } else {
      return Fail("san-syntax", "\"" + value + "\" is not an IPv4 or IPv6 address");
    }
    return San{San::Type::kIp, canonical};
  }
  if (kind == "uri") {
    if (!internal::IsValidUri(value)) {
      return Fail("san-syntax", "\"" + value + "\" is not an absolute URI");
    }
    return San{San::Type::kUri, value};
  }
  if (kind == "email") {
    if (!internal::IsValidEmail(value)) {
      return Fail("san-syntax", "\"" + value + "\" is not an e-mail address");
    }
    return San{San::Type::kEmail, value};
  }
  return Fail("san-syntax",
              "unknown SAN type \"" + std::string(kind) + "\" (use dns:, ip:, uri: or email:)");
}

std::string SanToString(const San& san) {
  switch (san.type) {
    case San::Type::kDns:
      return "dns:" + san.value;
    case San::Type::kIp:
      return "ip:" + san.value;
    case San::Type::kUri:
      return "uri:" + san.value;
    case San::Type::kEmail:
      return "email:" + san.value;
  }
  return san.value;
}

}  // namespace custos::service::ca
