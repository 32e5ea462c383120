#include "certificate_view.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <limits>
#include <memory>

#include "view.h"

namespace custos::officer {
namespace {

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Bio = std::unique_ptr<BIO, BioDeleter>;

// Frees what X509V3_EXT_d2i returned, with the extension method's own free.
struct ExtDeleter {
  const X509V3_EXT_METHOD* method;
  void operator()(void* p) const {
    if (p == nullptr) return;
    if (method != nullptr && method->it != nullptr) {
      ASN1_item_free(static_cast<ASN1_VALUE*>(p), ASN1_ITEM_ptr(method->it));
    } else if (method != nullptr && method->ext_free != nullptr) {
      method->ext_free(p);
    }
  }
};
using ExtValue = std::unique_ptr<void, ExtDeleter>;

constexpr char kHex[] = "0123456789abcdef";

std::string Hex(const unsigned char* data, std::size_t len) {
  std::string out;
  out.reserve(2 * len);
  for (std::size_t i = 0; i < len; ++i) {
    out.push_back(kHex[data[i] >> 4]);
    out.push_back(kHex[data[i] & 0xf]);
  }
  return out;
}

// DER length octets for `n`.
std::string DerLength(std::size_t n) {
  if (n < 0x80) return std::string(1, static_cast<char>(n));
  std::string bytes;
  while (n > 0) {
    bytes.insert(bytes.begin(), static_cast<char>(n & 0xff));
    n >>= 8;
  }
  return std::string(1, static_cast<char>(0x80 | bytes.size())) + bytes;
}

// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
// around a TBSCertificate, so that OpenSSL's X509 accessors read it. The
// outer algorithm and the empty signature are placeholders: nothing here
// verifies or signs.
std::string WrapTbs(std::string_view tbs) {
  static constexpr unsigned char kPlaceholder[] = {
      0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,  // ecdsa-with-SHA256
      0x03, 0x01, 0x00};                                                       // BIT STRING {}
  std::string body(tbs);
  body.append(reinterpret_cast<const char*>(kPlaceholder), sizeof kPlaceholder);
  return "\x30" + DerLength(body.size()) + body;
}

X509Ptr ParseExactly(std::string_view der) {
  if (der.empty() || der.size() > static_cast<std::size_t>(std::numeric_limits<long>::max())) {
    return nullptr;
  }
  const auto* start = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* p = start;
  X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (x && p != start + der.size()) x.reset();
  ERR_clear_error();
  return x;
}

std::string NameText(const X509_NAME* name) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || name == nullptr) return "";
  // As the CA back-end writes subjects (service/src/ca: NameToString).
  if (X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
    ERR_clear_error();
    return "";
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 ? std::string(data, static_cast<std::size_t>(len)) : "";
}

std::string SerialText(const ASN1_INTEGER* serial) {
  const unsigned char* data = ASN1_STRING_get0_data(serial);
  const int len = ASN1_STRING_length(serial);
  if (data == nullptr || len <= 0) return "00";
  std::string out = ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER ? "-" : "";
  // Content octets: a leading zero octet keeps a set high bit positive.
  if ((data[0] & 0x80) != 0) out += "00";
  return out + Hex(data, static_cast<std::size_t>(len));
}

std::optional<std::chrono::sys_seconds> TimeOf(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }
  const std::chrono::year_month_day ymd{std::chrono::year(tm.tm_year + 1900),
                                        std::chrono::month(static_cast<unsigned>(tm.tm_mon + 1)),
                                        std::chrono::day(static_cast<unsigned>(tm.tm_mday))};
  if (!ymd.ok()) return std::nullopt;
  return std::chrono::sys_days(ymd) + std::chrono::hours(tm.tm_hour) +
         std::chrono::minutes(tm.tm_min) + std::chrono::seconds(tm.tm_sec);
}

std::string KeyAlgorithmText(EVP_PKEY* key) {
  if (key == nullptr) return "(unreadable public key)";
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
      return "RSA " + std::to_string(EVP_PKEY_get_bits(key));
    case EVP_PKEY_ED25519:
      return "Ed25519";
    case EVP_PKEY_ED448:
      return "Ed448";
    case EVP_PKEY_EC: {
      char group[64] = {};
      std::size_t len = 0;
      if (EVP_PKEY_get_group_name(key, group, sizeof group, &len) != 1) {
        ERR_clear_error();
        return "EC (unknown curve)";
      }
      const std::string g(group, len);
      if (g == "prime256v1" || g == "P-256") return "EC P-256";
      if (g == "secp384r1" || g == "P-384") return "EC P-384";
      if (g == "secp521r1" || g == "P-521") return "EC P-521";
      return "EC " + g;
    }
    default: {
      const char* name = EVP_PKEY_get0_type_name(key);
      return name != nullptr ? name : "(unknown key type)";
    }
  }
}

std::string ObjectText(const ASN1_OBJECT* obj) {
  const int nid = OBJ_obj2nid(obj);
  if (nid != NID_undef) return OBJ_nid2ln(nid);
  char buf[128];
  const int n = OBJ_obj2txt(buf, sizeof buf, obj, 1);
  return n > 0
             ? std::string(buf, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof buf - 1))
             : "(unreadable OID)";
}

std::string EkuText(const ASN1_OBJECT* obj) {
  switch (OBJ_obj2nid(obj)) {
    case NID_server_auth:
      return "serverAuth";
    case NID_client_auth:
      return "clientAuth";
    case NID_code_sign:
      return "codeSigning";
    case NID_email_protect:
      return "emailProtection";
    case NID_time_stamp:
      return "timeStamping";
    case NID_OCSP_sign:
      return "OCSPSigning";
    case NID_anyExtendedKeyUsage:
      return "anyExtendedKeyUsage";
    default: {
      char buf[128];
      const int n = OBJ_obj2txt(buf, sizeof buf, obj, 1);
      return n > 0 && static_cast<std::size_t>(n) < sizeof buf ? buf : "(unreadable OID)";
    }
  }
}

std::string Ia5(const ASN1_IA5STRING* s) {
  if (s == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<std::size_t>(ASN1_STRING_length(s)));
}

std::string GeneralNameText(const GENERAL_NAME* name) {
  switch (name->type) {
    case GEN_DNS:
      return "dns:" + Ia5(name->d.dNSName);
    case GEN_URI:
      return "uri:" + Ia5(name->d.uniformResourceIdentifier);
    case GEN_EMAIL:
      return "email:" + Ia5(name->d.rfc822Name);
    case GEN_IPADD: {
      const ASN1_OCTET_STRING* ip = name->d.iPAddress;
      const int len = ASN1_STRING_length(ip);
      char buf[INET6_ADDRSTRLEN] = {};
      const int family = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
      if (family == 0 || inet_ntop(family, ASN1_STRING_get0_data(ip), buf, sizeof buf) == nullptr) {
        return "ip:(" + std::to_string(len) + " bytes)";
      }
      return std::string("ip:") + buf;
    }
    case GEN_DIRNAME:
      return "other:directoryName " + NameText(name->d.directoryName);
    case GEN_OTHERNAME:
      return "other:otherName";
    case GEN_RID:
      return "other:registeredID";
    default:
      return "other:" + std::to_string(name->type);
  }
}

std::string Joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// OpenSSL's own text for an extension, on one line.
std::string GenericText(X509_EXTENSION* ext) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio) return "";
  if (X509V3_EXT_print(bio.get(), ext, 0, 0) != 1) {
    ERR_clear_error();
    const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(ext);
    return "(" + std::to_string(ASN1_STRING_length(data)) + " bytes: " +
           Hex(ASN1_STRING_get0_data(data), static_cast<std::size_t>(ASN1_STRING_length(data))) +
           ")";
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  std::string text(data, static_cast<std::size_t>(std::max(len, 0L)));
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == '\n' || c == '\r') {
      if (!out.empty()) space = true;
      continue;
    }
    if (space) {
      out += "; ";
      space = false;
    }
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += c;
  }
  return out;
}

// Decodes one extension into view->extensions (and view->sans); an error
// for a known extension that does not decode.
std::optional<std::string> AddExtension(X509_EXTENSION* ext, CertificateView* view) {
  const int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
  const bool critical = X509_EXTENSION_get_critical(ext) == 1;
  const std::string crit = critical ? " (critical)" : "";
  static constexpr int kKnown[] = {NID_basic_constraints,       NID_key_usage,
                                   NID_ext_key_usage,           NID_subject_alt_name,
                                   NID_subject_key_identifier,  NID_authority_key_identifier,
                                   NID_crl_distribution_points, NID_info_access};
  if (std::find(std::begin(kKnown), std::end(kKnown), nid) == std::end(kKnown)) {
    view->extensions.emplace_back("Extension " + ObjectText(X509_EXTENSION_get_object(ext)),
                                  GenericText(ext) + crit);
    return std::nullopt;
  }
  const X509V3_EXT_METHOD* method = X509V3_EXT_get(ext);
  ExtValue value(X509V3_EXT_d2i(ext), ExtDeleter{method});
  ERR_clear_error();
  if (!value || method == nullptr) {
    return "its " + std::string(OBJ_nid2ln(nid)) + " extension does not decode";
  }
  switch (nid) {
    case NID_basic_constraints: {
      const auto* bc = static_cast<BASIC_CONSTRAINTS*>(value.get());
      std::string text = bc->ca ? "CA:TRUE" : "CA:FALSE";
      if (bc->pathlen != nullptr) {
        text += ", pathlen " + std::to_string(ASN1_INTEGER_get(bc->pathlen));
      } else if (bc->ca) {
        text += ", no path length limit";
      }
      view->extensions.emplace_back("Basic constraints", text + crit);
      break;
    }
    case NID_key_usage: {
      static constexpr const char* kBits[] = {
          "digitalSignature", "nonRepudiation", "keyEncipherment",
          "dataEncipherment", "keyAgreement",   "keyCertSign",
          "cRLSign",          "encipherOnly",   "decipherOnly"};
      const auto* bits = static_cast<ASN1_BIT_STRING*>(value.get());
      std::vector<std::string> names;
      for (int i = 0; i < 9; ++i) {
        if (ASN1_BIT_STRING_get_bit(bits, i) == 1) names.emplace_back(kBits[i]);
      }
      view->extensions.emplace_back("Key usage", (names.empty() ? "(none)" : Joined(names)) + crit);
      break;
    }
    case NID_ext_key_usage: {
      const auto* eku = static_cast<EXTENDED_KEY_USAGE*>(value.get());
      std::vector<std::string> names;
      for (int i = 0; i < sk_ASN1_OBJECT_num(eku); ++i) {
        names.push_back(EkuText(sk_ASN1_OBJECT_value(eku, i)));
      }
      view->extensions.emplace_back("Extended key usage",
                                    (names.empty() ? "(none)" : Joined(names)) + crit);
      break;
    }
    case NID_subject_alt_name: {
      const auto* names = static_cast<GENERAL_NAMES*>(value.get());
      for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
        view->sans.push_back(GeneralNameText(sk_GENERAL_NAME_value(names, i)));
      }
      // The names themselves are listed under "SANs".
      if (critical) view->extensions.emplace_back("Subject alt names", "critical");
      break;
    }
    case NID_subject_key_identifier: {
      const auto* ski = static_cast<ASN1_OCTET_STRING*>(value.get());
      view->extensions.emplace_back(
          "Subject key id",
          Hex(ASN1_STRING_get0_data(ski), static_cast<std::size_t>(ASN1_STRING_length(ski))) +
              crit);
      break;
    }
    case NID_authority_key_identifier: {
      const auto* aki = static_cast<AUTHORITY_KEYID*>(value.get());
      std::string text = aki->keyid != nullptr
                             ? Hex(ASN1_STRING_get0_data(aki->keyid),
                                   static_cast<std::size_t>(ASN1_STRING_length(aki->keyid)))
                             : "(no key id)";
      if (aki->issuer != nullptr || aki->serial != nullptr) text += " (with issuer and serial)";
      view->extensions.emplace_back("Authority key id", text + crit);
      break;
    }
    case NID_crl_distribution_points: {
      const auto* points = static_cast<CRL_DIST_POINTS*>(value.get());
      std::vector<std::string> urls;
      for (int i = 0; i < sk_DIST_POINT_num(points); ++i) {
        const DIST_POINT* dp = sk_DIST_POINT_value(points, i);
        if (dp->distpoint == nullptr || dp->distpoint->type != 0) {
          urls.emplace_back("(not a full name)");
          continue;
        }
        const GENERAL_NAMES* full = dp->distpoint->name.fullname;
        for (int j = 0; j < sk_GENERAL_NAME_num(full); ++j) {
          urls.push_back(GeneralNameText(sk_GENERAL_NAME_value(full, j)));
        }
      }
      view->extensions.emplace_back("CRL distribution", Joined(urls) + crit);
      break;
    }
    case NID_info_access: {
      const auto* aia = static_cast<AUTHORITY_INFO_ACCESS*>(value.get());
      std::vector<std::string> items;
      for (int i = 0; i < sk_ACCESS_DESCRIPTION_num(aia); ++i) {
        const ACCESS_DESCRIPTION* ad = sk_ACCESS_DESCRIPTION_value(aia, i);
        const int method_nid = OBJ_obj2nid(ad->method);
        const std::string kind = method_nid == NID_ad_OCSP         ? "OCSP"
                                 : method_nid == NID_ad_ca_issuers ? "caIssuers"
                                                                   : ObjectText(ad->method);
        items.push_back(kind + " " + GeneralNameText(ad->location));
      }
      view->extensions.emplace_back("Authority info", Joined(items) + crit);
      break;
    }
    default:
      break;
  }
  return std::nullopt;
}

std::string NormalisedSerial(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == ':' || c == ' ') continue;
    out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  if (out.rfind("0x", 0) == 0) out.erase(0, 2);
  const std::size_t first = out.find_first_not_of('0');
  return first == std::string::npos ? "0" : out.substr(first);
}

// "YYYY-MM-DDTHH:MM:SSZ" or seconds since the epoch.
std::optional<std::chrono::sys_seconds> RequestTime(const std::string& text) {
  if (auto t = ParseUtc(text)) return t;
  if (text.empty() || text.size() > 18 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  return std::chrono::sys_seconds(std::chrono::seconds(std::stoll(text)));
}

std::string ValidityLength(std::chrono::sys_seconds from, std::chrono::sys_seconds to) {
  // RFC 5280 validity is inclusive of both ends.
  const long long s = (to - from).count() + 1;
  if (s <= 0) return "ends before it begins";
  const long long days = s / 86400, hours = (s % 86400) / 3600;
  if (days > 0 && s % 86400 == 0) return std::to_string(days) + " d";
  if (days > 0) return std::to_string(days) + " d " + std::to_string(hours) + " h";
  return std::to_string(s / 3600) + " h " + std::to_string((s % 3600) / 60) + " min";
}

}  // namespace

bool IsCertificateOperation(std::string_view operation) {
  return operation == "issue-certificate" || operation == "create-ca" ||
         operation == "revoke-certificate";
}

std::variant<CertificateView, std::string> ParseCertificatePayload(std::string_view der) {
  CertificateView view;
  X509Ptr x = ParseExactly(der);
  if (x) {
    view.to_be_signed = false;
  } else {
    x = ParseExactly(WrapTbs(der));
  }
  if (!x) return std::string("it is neither a DER TBSCertificate nor a DER certificate");
  view.serial = SerialText(X509_get0_serialNumber(x.get()));
  view.subject = NameText(X509_get_subject_name(x.get()));
  view.issuer = NameText(X509_get_issuer_name(x.get()));
  auto not_before = TimeOf(X509_get0_notBefore(x.get()));
  auto not_after = TimeOf(X509_get0_notAfter(x.get()));
  if (!not_before || !not_after) return std::string("its validity times do not parse");
  view.not_before = *not_before;
  view.not_after = *not_after;
  EVP_PKEY* key = X509_get0_pubkey(x.get());
  ERR_clear_error();
  view.key_algorithm = KeyAlgorithmText(key);
  unsigned char* spki = nullptr;
  const int spki_len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x.get()), &spki);
  if (spki_len > 0) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(spki, static_cast<std::size_t>(spki_len), md, &md_len, EVP_sha256(), nullptr) ==
        1) {
      view.key_sha256 = Hex(md, md_len);
    }
    OPENSSL_free(spki);
  }
  ERR_clear_error();
  const X509_ALGOR* alg = X509_get0_tbs_sigalg(x.get());
  const ASN1_OBJECT* alg_oid = nullptr;
  X509_ALGOR_get0(&alg_oid, nullptr, nullptr, alg);
  view.signature_algorithm = alg_oid != nullptr ? ObjectText(alg_oid) : "(none)";
  for (int i = 0; i < X509_get_ext_count(x.get()); ++i) {
    if (auto error = AddExtension(X509_get_ext(x.get(), i), &view)) return *error;
  }
  return view;
}

std::vector<std::pair<std::string, std::string>> CertificateLines(const CertificateView& view) {
  std::vector<std::pair<std::string, std::string>> lines = {
      {"Subject", view.subject.empty() ? "(empty)" : view.subject},
      {"Issuer", view.issuer.empty() ? "(empty)" : view.issuer},
      {"Serial", view.serial},
      {"SANs", view.sans.empty() ? "(none)" : Joined(view.sans)},
      {"Not before", FormatUtc(view.not_before)},
      {"Not after",
       FormatUtc(view.not_after) + " (" + ValidityLength(view.not_before, view.not_after) + ")"},
      {"Public key",
       view.key_algorithm + (view.key_sha256.empty() ? "" : ", SPKI SHA-256 " + view.key_sha256)},
      {"Signature algorithm", view.signature_algorithm},
  };
  if (view.subject == view.issuer && !view.subject.empty()) lines[1].second += " (self-signed)";
  lines.insert(lines.end(), view.extensions.begin(), view.extensions.end());
  return lines;
}

std::optional<std::string> CompareWithRequest(const CertificateView& view,
                                              const policy::PendingRequestText& text) {
  auto differs = [](std::string_view field, const std::string& request,
                    const std::string& certificate) {
    return "its " + std::string(field) + " says " + TerminalSafe(request) +
           " but the certificate in its payload has " + TerminalSafe(certificate);
  };
  if (auto serial = text.Get("serial")) {
    if (NormalisedSerial(*serial) != NormalisedSerial(view.serial)) {
      return differs("serial", *serial, view.serial);
    }
  }
  if (auto subject = text.Get("subject")) {
    if (*subject != view.subject) return differs("subject", *subject, view.subject);
  }
  if (text.Get("san")) {
    std::vector<std::string> want = text.GetAll("san"), have = view.sans;
    std::sort(want.begin(), want.end());
    std::sort(have.begin(), have.end());
    if (want != have) return differs("san list", Joined(want), Joined(have));
  }
  for (const auto& [field, value] :
       {std::pair{"not-before", view.not_before}, std::pair{"not-after", view.not_after}}) {
    if (auto t = text.Get(field)) {
      const auto parsed = RequestTime(*t);
      if (!parsed) return "its " + std::string(field) + " '" + TerminalSafe(*t) + "' is not a time";
      if (*parsed != value) return differs(field, *t, FormatUtc(value));
    }
  }
  return std::nullopt;
}

}  // namespace custos::officer
