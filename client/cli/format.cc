// Durations, times, and the CA back-end's certificates, CSRs and CRLs as text,
// PEM and JSON (cli.h, "Formats"). Pure: no network, no files.
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <ctime>
#include <limits>

#include "cli.h"

namespace custos::cli {
namespace {

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Bio = std::unique_ptr<BIO, BioDeleter>;
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
struct CrlDeleter {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
using Crl = std::unique_ptr<X509_CRL, CrlDeleter>;
struct ReqDeleter {
  void operator()(X509_REQ* r) const { X509_REQ_free(r); }
};
using Req = std::unique_ptr<X509_REQ, ReqDeleter>;

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// Parses `der` completely with `d2i`; nullptr when it is not exactly one
// object of that type.
template <typename T, typename Ptr>
Ptr ParseDer(std::string_view der, T* (*d2i)(T**, const unsigned char**, long)) {
  if (der.empty() || der.size() > static_cast<std::size_t>(std::numeric_limits<long>::max())) {
    return nullptr;
  }
  const unsigned char* p = Bytes(der);
  Ptr out(d2i(nullptr, &p, static_cast<long>(der.size())));
  if (out && p != Bytes(der) + der.size()) out.reset();
  ERR_clear_error();
  return out;
}

// DER starts with a SEQUENCE tag; anything else is read as PEM, which may
// have text around its blocks (as `openssl x509 -text` writes it).
bool IsPem(std::string_view bytes) { return bytes.empty() || bytes[0] != '\x30'; }

std::string MemData(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : "";
}

std::string Pem(std::string_view der, const char* label) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio(bio.get(), label, "", Bytes(der), static_cast<long>(der.size())) <= 0) {
    ERR_clear_error();
    return "";
  }
  return MemData(bio.get());
}

std::string Row(std::string_view label, std::string_view value) {
  std::string out(label);
  out += ':';
  if (out.size() < 16) out.append(16 - out.size(), ' ');
  out.append(value);
  out += '\n';
  return out;
}

std::string Joined(const google::protobuf::RepeatedPtrField<std::string>& items,
                   const char* separator) {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += separator;
    out += s;
  }
  return out;
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

std::string TimeOrDash(std::int64_t t) { return t != 0 ? FormatUtc(t) : "-"; }

std::string Column(const std::string& value, std::size_t width) {
  std::string out = value;
  if (out.size() < width) out.append(width - out.size(), ' ');
  return out + " ";
}

constexpr const char* kRevocationReasons[] = {
    "unspecified",        "keyCompromise",      "cACompromise",
    "affiliationChanged", "superseded",         "cessationOfOperation",
    "certificateHold",    "privilegeWithdrawn", "aACompromise"};

}  // namespace

// --- Durations and times ---

std::optional<Failure> ParseDuration(std::string_view text, std::string_view option,
                                     std::uint64_t* seconds) {
  auto bad = [&] {
    return Failure{kExitUsage, "--" + std::string(option) + " '" + std::string(text) +
                                   "' is not a duration: a positive number with a unit s, m, h, "
                                   "d or y (e.g. 365d, 12h, 30s; y is 365 days)"};
  };
  if (text.size() < 2) return bad();
  std::uint64_t unit = 0;
  switch (text.back()) {
    case 's':
      unit = 1;
      break;
    case 'm':
      unit = 60;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'd':
      unit = 86400;
      break;
    case 'y':
      unit = 365 * 86400;
      break;
    default:
      return bad();
  }
  std::uint64_t n = 0;
  for (char c : text.substr(0, text.size() - 1)) {
    if (c < '0' || c > '9') return bad();
    // Also keeps n * unit below 2^63, so the result fits an int64 time offset.
    if (n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / 10 / unit) {
      return bad();
    }
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (n == 0) return bad();
  *seconds = n * unit;
  return std::nullopt;
}

std::string FormatUtc(std::int64_t seconds) {
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(seconds);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// --- Certificates, CSRs, CRLs ---

std::optional<std::string> CsrToDer(std::string_view bytes, std::string* der) {
  Req req;
  if (IsPem(bytes)) {
    Bio bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
    if (bio) req.reset(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
    ERR_clear_error();
    if (!req) {
      return std::string("is not a PKCS#10 certificate request (PEM or DER)");
    }
  } else {
    req = ParseDer<X509_REQ, Req>(bytes, d2i_X509_REQ);
    if (!req) return std::string("is not a PKCS#10 certificate request (PEM or DER)");
  }
  unsigned char* out = nullptr;
  const int n = i2d_X509_REQ(req.get(), &out);
  if (n <= 0) {
    ERR_clear_error();
    return std::string("holds a certificate request that cannot be encoded again");
  }
  der->assign(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
  OPENSSL_free(out);
  return std::nullopt;
}

std::optional<std::string> CertificatesToDer(std::string_view bytes,
                                             std::vector<std::string>* ders) {
  ders->clear();
  if (!IsPem(bytes)) {
    if (!ParseDer<X509, X509Ptr>(bytes, d2i_X509)) {
      return std::string("is not an X.509 certificate (PEM, or one DER certificate)");
    }
    ders->emplace_back(bytes);
    return std::nullopt;
  }
  Bio bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
  if (!bio) return std::string("cannot be read: out of memory");
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &len) != 1) break;
    const std::string label = name;
    const std::string der(reinterpret_cast<char*>(data), static_cast<std::size_t>(len));
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    if (label != "CERTIFICATE" && label != "TRUSTED CERTIFICATE" && label != "X509 CERTIFICATE") {
      continue;  // keys, CRLs and the like in a bundle are not certificates
    }
    if (!ParseDer<X509, X509Ptr>(der, d2i_X509)) {
      ERR_clear_error();
      return "holds a PEM block " + std::to_string(ders->size() + 1) +
             " that is not an X.509 certificate";
    }
    ders->push_back(der);
  }
  ERR_clear_error();
  if (ders->empty()) return std::string("is not an X.509 certificate (PEM or DER)");
  return std::nullopt;
}

std::string CertificatePem(std::string_view der) {
  if (!ParseDer<X509, X509Ptr>(der, d2i_X509)) return "";
  return Pem(der, "CERTIFICATE");
}

std::string CsrPem(std::string_view der) {
  if (!ParseDer<X509_REQ, Req>(der, d2i_X509_REQ)) return "";
  return Pem(der, "CERTIFICATE REQUEST");
}

std::string CrlPem(std::string_view der) {
  if (!ParseDer<X509_CRL, Crl>(der, d2i_X509_CRL)) return "";
  return Pem(der, "X509 CRL");
}

int CrlEntryCount(std::string_view der) {
  Crl crl = ParseDer<X509_CRL, Crl>(der, d2i_X509_CRL);
  if (!crl) return -1;
  const STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
  return revoked == nullptr ? 0 : sk_X509_REVOKED_num(revoked);
}

bool IsRevocationReason(std::string_view reason) {
  for (const char* r : kRevocationReasons) {
    if (reason == r) return true;
  }
  return false;
}

std::string RevocationReasonNames() {
  std::string out;
  for (const char* r : kRevocationReasons) out += (out.empty() ? "" : ", ") + std::string(r);
  return out;
}

std::optional<std::string> CheckSanSyntax(std::string_view san) {
  for (std::string_view prefix : {"dns:", "ip:", "uri:", "email:"}) {
    if (san.size() > prefix.size() && san.substr(0, prefix.size()) == prefix) return std::nullopt;
  }
  return "--san '" + std::string(san) +
         "' needs a type: dns:NAME, ip:ADDRESS, uri:URI or email:ADDRESS";
}

// --- JSON ---

std::string CertificateJson(const v1::CertificateInfo& c) {
  std::vector<std::string> sans;
  for (const auto& s : c.sans()) sans.push_back(JsonString(s));
  JsonObject o;
  o.Add("serial", c.serial())
      .Add("ca", c.ca())
      .Add("profile", c.profile())
      .Add("subject", c.subject())
      .AddRaw("sans", JsonArray(sans))
      .Add("requester", c.requester())
      .Add("state", c.state())
      .Add("not_before", c.not_before())
      .Add("not_before_utc", FormatUtc(c.not_before()))
      .Add("not_after", c.not_after())
      .Add("not_after_utc", FormatUtc(c.not_after()))
      .Add("issued_at", c.issued_at())
      .Add("issued_utc", c.issued_at() != 0 ? FormatUtc(c.issued_at()) : "");
  if (c.state() == "revoked" || !c.revocation_reason().empty()) {
    o.Add("revocation_reason", c.revocation_reason())
        .Add("revoked_at", c.revoked_at())
        .Add("revoked_utc", c.revoked_at() != 0 ? FormatUtc(c.revoked_at()) : "");
  }
  o.Add("renews", c.renews()).Add("renewed_by", c.renewed_by());
  if (!c.cert_der().empty()) o.Add("cert_pem", CertificatePem(c.cert_der()));
  if (c.chain_der_size() > 0) {
    std::vector<std::string> chain;
    for (const auto& der : c.chain_der()) chain.push_back(JsonString(CertificatePem(der)));
    o.AddRaw("chain_pem", JsonArray(chain));
  }
  return o.str();
}

std::string CaJson(const v1::CaInfo& ca) {
  JsonObject o;
  o.Add("name", ca.name())
      .Add("key", ca.key())
      .Add("subject", ca.subject())
      .Add("serial", ca.serial())
      .Add("state", ca.state())
      .Add("parent", ca.parent())
      .Add("path_len", static_cast<std::int64_t>(ca.path_len()))
      .Add("not_before", ca.not_before())
      .Add("not_before_utc", ca.not_before() != 0 ? FormatUtc(ca.not_before()) : "")
      .Add("not_after", ca.not_after())
      .Add("not_after_utc", ca.not_after() != 0 ? FormatUtc(ca.not_after()) : "")
      .Add("key_id", ca.key_id());
  if (!ca.cert_der().empty()) o.Add("cert_pem", CertificatePem(ca.cert_der()));
  std::vector<std::string> chain;
  for (const auto& der : ca.chain_der()) chain.push_back(JsonString(CertificatePem(der)));
  o.AddRaw("chain_pem", JsonArray(chain));
  return o.str();
}

std::string CrlJson(const v1::CrlInfo& crl) {
  return JsonObject()
      .Add("ca", crl.ca())
      .Add("number", static_cast<std::int64_t>(crl.number()))
      .Add("this_update", crl.this_update())
      .Add("this_update_utc", FormatUtc(crl.this_update()))
      .Add("next_update", crl.next_update())
      .Add("next_update_utc", FormatUtc(crl.next_update()))
      .Add("revoked_count", static_cast<std::int64_t>(CrlEntryCount(crl.crl_der())))
      .str();
}

// --- Text ---

std::string CertificateStateText(const v1::CertificateInfo& c) {
  if (c.state() != "revoked") return c.state();
  std::string text = "revoked";
  if (!c.revocation_reason().empty()) text += " (" + c.revocation_reason() + ")";
  if (c.revoked_at() != 0) text += " at " + FormatUtc(c.revoked_at());
  return text;
}

std::string CertificateText(const v1::CertificateInfo& c) {
  std::string out;
  out += Row("serial", c.serial());
  out += Row("ca", c.ca());
  out += Row("profile", c.profile());
  out += Row("subject", c.subject().empty() ? "(empty)" : c.subject());
  out += Row("sans", OrDash(Joined(c.sans(), ", ")));
  out += Row("requester", c.requester());
  out += Row("state", CertificateStateText(c));
  out += Row("not before", FormatUtc(c.not_before()));
  out += Row("not after", FormatUtc(c.not_after()));
  out += Row("issued", TimeOrDash(c.issued_at()));
  if (!c.renews().empty()) out += Row("renews", c.renews());
  if (!c.renewed_by().empty()) out += Row("renewed by", c.renewed_by());
  return out;
}

std::string CaText(const v1::CaInfo& ca) {
  std::string parent = ca.parent();
  if (parent.empty()) parent = "(root, self-signed)";
  if (parent == "external") parent = "external (certificate imported from a CA outside Custos)";
  std::string out;
  out += Row("name", ca.name());
  out += Row("key", ca.key());
  out += Row("state", ca.state());
  out += Row("subject", OrDash(ca.subject()));
  out += Row("serial", OrDash(ca.serial()));
  out += Row("parent", parent);
  out += Row("path length", ca.path_len() < 0 ? "unlimited" : std::to_string(ca.path_len()));
  out += Row("not before", TimeOrDash(ca.not_before()));
  out += Row("not after", TimeOrDash(ca.not_after()));
  out += Row("key id", OrDash(ca.key_id()));
  out += Row("chain", std::to_string(ca.chain_der_size()) + " certificate(s) above it");
  return out;
}

std::string CertificateListHeader() {
  return Column("SERIAL", 40) + Column("CA", 20) + Column("PROFILE", 16) + Column("STATE", 8) +
         Column("NOT_AFTER", 20) + Column("REQUESTER", 40) + "SUBJECT / SANS\n";
}

std::string CertificateListLine(const v1::CertificateInfo& c) {
  std::string names = c.subject();
  const std::string sans = Joined(c.sans(), ",");
  if (!sans.empty()) names += (names.empty() ? "" : " ") + std::string("[") + sans + "]";
  return Column(c.serial(), 40) + Column(c.ca(), 20) + Column(c.profile(), 16) +
         Column(c.state(), 8) + Column(FormatUtc(c.not_after()), 20) + Column(c.requester(), 40) +
         OrDash(names) + "\n";
}

std::string CaListHeader() {
  return Column("NAME", 20) + Column("STATE", 19) + Column("KEY", 24) + Column("PARENT", 20) +
         Column("PATHLEN", 7) + Column("NOT_AFTER", 20) + "SUBJECT\n";
}

std::string CaListLine(const v1::CaInfo& ca) {
  const std::string parent = ca.parent().empty() ? "(root)" : ca.parent();
  return Column(ca.name(), 20) + Column(ca.state(), 19) + Column(ca.key(), 24) +
         Column(parent, 20) + Column(ca.path_len() < 0 ? "-" : std::to_string(ca.path_len()), 7) +
         Column(TimeOrDash(ca.not_after()), 20) + OrDash(ca.subject()) + "\n";
}

}  // namespace custos::cli
