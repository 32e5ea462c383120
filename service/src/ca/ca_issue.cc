// Issuance: profiles, CA objects, the to-be-signed certificate, and the
// lint-then-sign pipeline shared by leaf, intermediate and root creation.
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <set>

#include "ca_internal.h"

namespace custos::service::ca {

namespace {

using internal::Fail;
using internal::UniqueExt;
using internal::UniqueName;
using internal::UniquePkey;
using internal::UniqueX509;
using std::chrono::days;
using std::chrono::seconds;

constexpr int kMaxSerialAttempts = 8;

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

Time FloorToSeconds(Time t) { return std::chrono::floor<seconds>(t); }

// --- IP ranges ---------------------------------------------------------------

struct Cidr {
  int family = 0;
  unsigned char addr[16] = {0};
  int prefix = 0;
};

std::optional<Cidr> ParseCidr(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const std::string addr(text.substr(0, slash));
  const std::string bits(text.substr(slash + 1));
  if (bits.empty() || bits.size() > 3 ||
      !std::all_of(bits.begin(), bits.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return std::nullopt;
  }
  Cidr cidr;
  cidr.prefix = std::stoi(bits);
  if (inet_pton(AF_INET, addr.c_str(), cidr.addr) == 1) {
    cidr.family = AF_INET;
    if (cidr.prefix > 32) return std::nullopt;
  } else if (inet_pton(AF_INET6, addr.c_str(), cidr.addr) == 1) {
    cidr.family = AF_INET6;
    if (cidr.prefix > 128) return std::nullopt;
  } else {
    return std::nullopt;
  }
  return cidr;
}

bool InRange(const std::string& ip, const Cidr& cidr) {
  unsigned char buf[16];
  if (inet_pton(cidr.family, ip.c_str(), buf) != 1) return false;
  const int full = cidr.prefix / 8;
  if (std::memcmp(buf, cidr.addr, static_cast<size_t>(full)) != 0) return false;
  const int rest = cidr.prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (buf[full] & mask) == (cidr.addr[full] & mask);
}

// --- SAN rules ---------------------------------------------------------------

std::string NormalSuffix(const std::string& suffix) {
  std::string s = Lower(suffix);
  return s.empty() || s.front() == '.' ? s : "." + s;
}

bool DnsAdmitted(const std::string& name, const SanRules& rules) {
  // A wildcard stands for any one label: test it as if that label were "x".
  const std::string probe = name.rfind("*.", 0) == 0 ? "x" + name.substr(1) : name;
  for (const std::string& exact : rules.dns_exact) {
    if (Lower(exact) == name) return true;
  }
  for (const std::string& raw : rules.dns_suffixes) {
    const std::string suffix = NormalSuffix(raw);
    if (probe.size() > suffix.size() &&
        probe.compare(probe.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return true;
    }
  }
  return false;
}

bool HasDotSegmentOrEncodedSeparator(std::string_view uri) {
  const std::string lower = Lower(uri);
  if (lower.find("%2e") != std::string::npos || lower.find("%2f") != std::string::npos ||
      lower.find("%5c") != std::string::npos) {
    return true;
  }
  size_t start = lower.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  const size_t end = lower.find_first_of("?#", start);
  const std::string path =
      lower.substr(start, end == std::string::npos ? std::string::npos : end - start);
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string::npos) next = path.size();
    const std::string segment = path.substr(pos, next - pos);
    if (segment == "." || segment == "..") return true;
    pos = next + 1;
  }
  return false;
}

Status CheckSans(const std::vector<San>& sans, const SanRules& rules, const std::string& profile) {
  const int count = static_cast<int>(sans.size());
  if (count < rules.min_count) {
    return Fail("san-missing", "profile " + profile + " needs at least " +
                                   std::to_string(rules.min_count) +
                                   " SAN(s); add them to the CSR or pass --san");
  }
  if (count > rules.max_count) {
    return Fail("san-count", std::to_string(count) + " SANs requested; profile " + profile +
                                 " allows at most " + std::to_string(rules.max_count));
  }
  const int uris = static_cast<int>(std::count_if(
      sans.begin(), sans.end(), [](const San& s) { return s.type == San::Type::kUri; }));
  if (rules.max_uri_count >= 0 && uris > rules.max_uri_count) {
    return Fail("san-uri-count", std::to_string(uris) + " URI SANs requested; profile " + profile +
                                     " allows at most " + std::to_string(rules.max_uri_count));
  }
  std::set<std::pair<int, std::string>> seen;
  for (const San& san : sans) {
    if (!seen.insert({static_cast<int>(san.type), san.value}).second) {
      return Fail("san-duplicate", "SAN " + SanToString(san) + " is requested twice");
    }
    switch (san.type) {
      case San::Type::kDns: {
        if (!internal::IsValidDnsName(san.value, true)) {
          return Fail("san-syntax", "\"" + san.value + "\" is not a valid DNS name");
        }
        if (san.value.rfind("*.", 0) == 0 && !rules.allow_wildcards) {
          return Fail("san-wildcard",
                      "profile " + profile + " does not allow wildcard names (" + san.value + ")");
        }
        if (!DnsAdmitted(san.value, rules)) {
          return Fail("san-dns-suffix",
                      "DNS name " + san.value + " is outside what profile " + profile + " allows");
        }
        break;
      }
      case San::Type::kIp: {
        bool ok = false;
        for (const std::string& range : rules.ip_ranges) {
          std::optional<Cidr> cidr = ParseCidr(range);
          if (cidr && InRange(san.value, *cidr)) ok = true;
        }
        if (!ok) {
          return Fail("san-ip-range", "IP address " + san.value + " is outside what profile " +
                                          profile + " allows");
        }
        break;
      }
      case San::Type::kUri: {
        if (!internal::IsValidUri(san.value)) {
          return Fail("san-syntax", "\"" + san.value + "\" is not an absolute URI");
        }
        bool ok = false;
        for (const std::string& prefix : rules.uri_prefixes) {
          if (san.value.size() > prefix.size() &&
              san.value.compare(0, prefix.size(), prefix) == 0) {
            ok = true;
          }
        }
        if (!ok || HasDotSegmentOrEncodedSeparator(san.value) ||
            (san.value.rfind("spiffe:", 0) == 0 &&
             san.value.find_first_of("?#%") != std::string::npos)) {
          return Fail("san-uri-prefix",
                      "URI " + san.value + " is outside what profile " + profile + " allows");
        }
        break;
      }
      case San::Type::kEmail: {
        if (!internal::IsValidEmail(san.value)) {
          return Fail("san-syntax", "\"" + san.value + "\" is not an e-mail address");
        }
        const std::string domain = Lower(san.value.substr(san.value.find('@') + 1));
        bool ok = false;
        for (const std::string& d : rules.email_domains) {
          if (Lower(d) == domain) ok = true;
        }
        if (!ok) {
          return Fail("san-email-domain", "e-mail address " + san.value +
                                              " is outside what profile " + profile + " allows");
        }
        break;
      }
    }
  }
  return {};
}

// --- Subject -----------------------------------------------------------------

bool CnMatchesSan(const std::string& cn, const std::vector<San>& sans) {
  for (const San& san : sans) {
    if (san.type == San::Type::kDns ? Lower(cn) == san.value : cn == san.value) return true;
  }
  return false;
}

Result<std::vector<NameAttribute>> BuildSubject(const Csr& csr, const Profile& profile,
                                                const std::vector<San>& sans) {
  const SubjectRules& rules = profile.subject;
  if (rules.mode == SubjectMode::kEmpty) return std::vector<NameAttribute>{};
  std::vector<NameAttribute> subject = rules.fixed_rdns;
  for (const NameAttribute& a : csr.subject()) {
    const bool fixed_type = std::any_of(rules.fixed_rdns.begin(), rules.fixed_rdns.end(),
                                        [&](const NameAttribute& f) { return f.type == a.type; });
    if (fixed_type) {
      const bool same =
          std::find(rules.fixed_rdns.begin(), rules.fixed_rdns.end(), a) != rules.fixed_rdns.end();
      if (!same) {
        return Fail("subject-fixed-mismatch", "profile " + profile.name + " fixes the subject " +
                                                  a.type + "; the CSR asks for another value");
      }
      continue;
    }
    if (std::find(rules.allowed_from_csr.begin(), rules.allowed_from_csr.end(), a.type) ==
        rules.allowed_from_csr.end()) {
      return Fail("subject-attribute",
                  "profile " + profile.name + " does not allow subject attribute " + a.type);
    }
    subject.push_back(a);
  }
  int cns = 0;
  for (const NameAttribute& a : subject) {
    if (a.type != "CN") continue;
    if (++cns > 1) return Fail("subject-multiple-cn", "the subject may have at most one CN");
    // For leaves the CN, if any, must be one of the SANs (a CA's CN names the CA).
    if (!profile.is_ca && !CnMatchesSan(a.value, sans)) {
      return Fail("cn-not-in-sans", "the subject CN \"" + a.value + "\" is not one of the SANs");
    }
  }
  return subject;
}

// --- Validity ----------------------------------------------------------------

struct Validity {
  Time not_before;
  Time not_after;
};

// RFC 5280 validity is inclusive, so a period of d seconds ends at
// notBefore + d - 1 s.
Result<Validity> ComputeValidity(const Profile& profile, const CertificateAuthority& ca,
                                 const IssueRequest& request, Time now) {
  if (now >= ca.not_after()) {
    return Fail("ca-expired", "the issuing CA's certificate has expired");
  }
  if (ca.not_before() > now) {
    return Fail("ca-not-yet-valid", "the issuing CA's certificate is not valid yet");
  }
  Validity v;
  // Backdated one minute for clock skew, never before the CA itself.
  v.not_before = std::max(now - seconds(60), ca.not_before());
  seconds period = profile.default_validity;
  if (request.validity) {
    period = *request.validity;
    if (period <= seconds(0))
      return Fail("validity-invalid", "the requested validity is not positive");
    if (period > profile.max_validity) {
      return Fail("validity-cap", "requested validity of " + std::to_string(period.count()) +
                                      " s exceeds profile " + profile.name + "'s maximum of " +
                                      std::to_string(profile.max_validity.count()) + " s");
    }
  }
  if (profile.public_tls) {
    const seconds cap = CabForumMaxValidity(v.not_before);
    if (period > cap) {
      if (request.validity) {
        return Fail("validity-cab-forum",
                    "requested validity exceeds the CA/Browser Forum maximum of " +
                        std::to_string(cap.count() / 86400) + " days for this issuance date");
      }
      period = cap;  // the profile's default, capped by the schedule
    }
  }
  v.not_after = v.not_before + period - seconds(1);
  v.not_after = std::min(v.not_after, ca.not_after());
  if (v.not_after <= v.not_before) {
    return Fail("ca-expired", "the issuing CA's certificate expires too soon to issue under it");
  }
  return v;
}

// --- Extensions ---------------------------------------------------------------

bool AddExt(X509* x, int nid, void* value, bool critical) {
  return X509_add1_ext_i2d(x, nid, value, critical ? 1 : 0, X509V3_ADD_DEFAULT) == 1;
}

internal::UniqueGeneralNames ToGeneralNames(const std::vector<San>& sans) {
  internal::UniqueGeneralNames names(sk_GENERAL_NAME_new_null());
  if (names == nullptr) return nullptr;
  for (const San& san : sans) {
    internal::UniqueGeneralName gn = internal::ToGeneralName(san);
    if (gn == nullptr || sk_GENERAL_NAME_push(names.get(), gn.get()) <= 0) return nullptr;
    gn.release();
  }
  return names;
}

internal::UniqueGeneralNames UriNames(const std::vector<std::string>& urls) {
  std::vector<San> sans;
  for (const std::string& url : urls) sans.push_back({San::Type::kUri, url});
  return ToGeneralNames(sans);
}

bool AddCrlDistributionPoints(X509* x, const std::vector<std::string>& urls) {
  if (urls.empty()) return true;
  CRL_DIST_POINTS* points = sk_DIST_POINT_new_null();
  DIST_POINT* dp = DIST_POINT_new();
  DIST_POINT_NAME* dpn = DIST_POINT_NAME_new();
  internal::UniqueGeneralNames names = UriNames(urls);
  bool ok = points != nullptr && dp != nullptr && dpn != nullptr && names != nullptr;
  if (ok) {
    dpn->type = 0;  // fullName
    dpn->name.fullname = names.release();
    dp->distpoint = dpn;
    dpn = nullptr;
    ok = sk_DIST_POINT_push(points, dp) > 0;
    if (ok) dp = nullptr;
  }
  ok = ok && AddExt(x, NID_crl_distribution_points, points, false);
  DIST_POINT_NAME_free(dpn);
  DIST_POINT_free(dp);
  sk_DIST_POINT_pop_free(points, DIST_POINT_free);
  return ok;
}

bool AddAuthorityInfoAccess(X509* x, const std::vector<std::string>& ocsp,
                            const std::vector<std::string>& ca_issuers) {
  if (ocsp.empty() && ca_issuers.empty()) return true;
  AUTHORITY_INFO_ACCESS* aia = sk_ACCESS_DESCRIPTION_new_null();
  bool ok = aia != nullptr;
  auto add = [&](int method, const std::string& url) {
    if (!ok) return;
    ACCESS_DESCRIPTION* ad = ACCESS_DESCRIPTION_new();
    internal::UniqueGeneralName gn = internal::ToGeneralName({San::Type::kUri, url});
    if (ad == nullptr || gn == nullptr) {
      ACCESS_DESCRIPTION_free(ad);
      ok = false;
      return;
    }
    ASN1_OBJECT_free(ad->method);
    ad->method = OBJ_nid2obj(method);
    GENERAL_NAME_free(ad->location);
    ad->location = gn.release();
    if (sk_ACCESS_DESCRIPTION_push(aia, ad) <= 0) {
      ACCESS_DESCRIPTION_free(ad);
      ok = false;
    }
  };
  for (const std::string& url : ocsp) add(NID_ad_OCSP, url);
  for (const std::string& url : ca_issuers) add(NID_ad_ca_issuers, url);
  ok = ok && AddExt(x, NID_info_access, aia, false);
  sk_ACCESS_DESCRIPTION_pop_free(aia, ACCESS_DESCRIPTION_free);
  return ok;
}

// --- The to-be-signed certificate ---------------------------------------------

struct TbsSpec {
  std::vector<NameAttribute> subject;
  EVP_PKEY* subject_key = nullptr;  // public key to certify
  std::vector<San> sans;
  internal::UniqueAsn1Int serial;
  Validity validity;
  std::uint16_t key_usage = 0;
  std::vector<std::string> ext_key_usages;
  bool is_ca = false;
  int path_len = -1;
  std::vector<std::string> crl_urls;
  std::vector<std::string> ocsp_urls;
  std::vector<std::string> ca_issuers_urls;
  std::vector<CsrExtension> copied;
};

Result<internal::UniqueAsn1Int> NewSerial(const IssueHooks& hooks) {
  for (int attempt = 0; attempt < kMaxSerialAttempts; ++attempt) {
    // 20 octets from the CSPRNG; the first is forced into 0x40..0x7f so the
    // INTEGER is positive, minimal and exactly 20 octets (158 random bits).
    Bytes serial(20);
    if (RAND_bytes(serial.data(), static_cast<int>(serial.size())) != 1) {
      return Fail("serial-unique", "the random number generator failed");
    }
    serial[0] = static_cast<std::uint8_t>((serial[0] & 0x3f) | 0x40);
    if (hooks.serial_is_unused && !hooks.serial_is_unused(serial)) continue;
    internal::UniqueBn bn(BN_bin2bn(serial.data(), static_cast<int>(serial.size()), nullptr));
    internal::UniqueAsn1Int out(bn ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr);
    if (out == nullptr) return Fail("serial-unique", "encoding the serial number failed");
    return out;
  }
  return Fail("serial-unique", "could not find an unused serial number");
}

// Builds the TBS certificate with its signature algorithm field set for
// `signing_key`. `issuer` null: self-signed (issuer name and AKI from itself).
Result<UniqueX509> BuildTbs(TbsSpec& spec, const X509* issuer, const Bytes& issuer_key_id,
                            EVP_PKEY* signing_key) {
  Result<UniqueName> subject = internal::BuildName(spec.subject);
  if (!subject.ok()) return subject.error();
  UniqueX509 x(X509_new());
  auto failed = [](const char* what) {
    return Fail("build-failed", std::string("building the certificate failed at ") + what + ": " +
                                    internal::OpenSslErrors());
  };
  if (x == nullptr || X509_set_version(x.get(), X509_VERSION_3) != 1) return failed("version");
  if (X509_set_serialNumber(x.get(), spec.serial.get()) != 1) return failed("serial");
  if (X509_set_subject_name(x.get(), subject->get()) != 1) return failed("subject");
  // The issuer name is the CA's subject, byte for byte.
  const X509_NAME* issuer_name = issuer != nullptr ? X509_get_subject_name(issuer) : subject->get();
  if (X509_set_issuer_name(x.get(), issuer_name) != 1) return failed("issuer");
  internal::UniqueAsn1Time nb = internal::ToAsn1Time(spec.validity.not_before);
  internal::UniqueAsn1Time na = internal::ToAsn1Time(spec.validity.not_after);
  if (nb == nullptr || na == nullptr || X509_set1_notBefore(x.get(), nb.get()) != 1 ||
      X509_set1_notAfter(x.get(), na.get()) != 1) {
    return failed("validity");
  }
  if (X509_set_pubkey(x.get(), spec.subject_key) != 1) return failed("public key");

  // basicConstraints, critical (RFC 5280 §4.2.1.9 requires it for CAs).
  UniqueExt bc = internal::MakeBasicConstraints(spec.is_ca, spec.path_len);
  if (bc == nullptr || X509_add_ext(x.get(), bc.get(), -1) != 1) return failed("basicConstraints");
  if (spec.key_usage != 0) {
    UniqueExt ku = internal::MakeKeyUsage(spec.key_usage);
    if (ku == nullptr || X509_add_ext(x.get(), ku.get(), -1) != 1) return failed("keyUsage");
  }
  if (!spec.ext_key_usages.empty()) {
    EXTENDED_KEY_USAGE* eku = sk_ASN1_OBJECT_new_null();
    bool ok = eku != nullptr;
    for (const std::string& oid : spec.ext_key_usages) {
      internal::UniqueObject obj = internal::ParseOid(oid);
      if (!ok || obj == nullptr || sk_ASN1_OBJECT_push(eku, obj.get()) <= 0) {
        ok = false;
        break;
      }
      obj.release();
    }
    ok = ok && AddExt(x.get(), NID_ext_key_usage, eku, false);
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    if (!ok) return failed("extendedKeyUsage");
  }
  const Bytes ski = internal::KeyIdentifier(X509_get_X509_PUBKEY(x.get()));
  internal::UniqueOctets ski_octets(ASN1_OCTET_STRING_new());
  if (ski.empty() || ski_octets == nullptr ||
      ASN1_OCTET_STRING_set(ski_octets.get(), ski.data(), static_cast<int>(ski.size())) != 1 ||
      !AddExt(x.get(), NID_subject_key_identifier, ski_octets.get(), false)) {
    return failed("subjectKeyIdentifier");
  }
  const Bytes& aki = issuer != nullptr ? issuer_key_id : ski;
  AUTHORITY_KEYID* akid = AUTHORITY_KEYID_new();
  bool aki_ok = akid != nullptr && (akid->keyid = ASN1_OCTET_STRING_new()) != nullptr &&
                ASN1_OCTET_STRING_set(akid->keyid, aki.data(), static_cast<int>(aki.size())) == 1 &&
                AddExt(x.get(), NID_authority_key_identifier, akid, false);
  AUTHORITY_KEYID_free(akid);
  if (!aki_ok) return failed("authorityKeyIdentifier");
  if (!spec.sans.empty()) {
    internal::UniqueGeneralNames names = ToGeneralNames(spec.sans);
    // RFC 5280 §4.2.1.6: critical when the subject is empty.
    if (names == nullptr ||
        !AddExt(x.get(), NID_subject_alt_name, names.get(), spec.subject.empty())) {
      return failed("subjectAltName");
    }
  }
  if (!AddCrlDistributionPoints(x.get(), spec.crl_urls)) return failed("cRLDistributionPoints");
  if (!AddAuthorityInfoAccess(x.get(), spec.ocsp_urls, spec.ca_issuers_urls)) {
    return failed("authorityInfoAccess");
  }
  for (const CsrExtension& copy : spec.copied) {
    internal::UniqueObject obj = internal::ParseOid(copy.oid);
    internal::UniqueOctets value(ASN1_OCTET_STRING_new());
    if (obj == nullptr || value == nullptr ||
        ASN1_OCTET_STRING_set(value.get(), copy.value.data(),
                              static_cast<int>(copy.value.size())) != 1) {
      return failed("copied extension");
    }
    UniqueExt ext(
        X509_EXTENSION_create_by_OBJ(nullptr, obj.get(), copy.critical ? 1 : 0, value.get()));
    if (ext == nullptr || X509_add_ext(x.get(), ext.get(), -1) != 1)
      return failed("copied extension");
  }

  // The signature algorithm inside the TBS, set now so that the linted bytes
  // are the signed bytes; SignTbs checks that it fits the signing key.
  const std::optional<internal::SigningAlgorithm> alg = internal::SigningAlgorithmFor(signing_key);
  if (!alg) return Fail("sign-failed", "the CA key type cannot sign certificates");
  auto* tbs_alg = const_cast<X509_ALGOR*>(X509_get0_tbs_sigalg(x.get()));
  if (X509_ALGOR_set0(tbs_alg, OBJ_nid2obj(alg->signature_nid),
                      alg->null_parameters ? V_ASN1_NULL : V_ASN1_UNDEF, nullptr) != 1) {
    return failed("signature algorithm");
  }
  return x;
}

std::vector<San> SansOf(const X509* x) {
  std::vector<San> out;
  internal::UniqueGeneralNames names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    if (auto san = internal::FromGeneralName(sk_GENERAL_NAME_value(names.get(), i))) {
      out.push_back(*san);
    }
  }
  return out;
}

Bytes SerialOf(const X509* x) {
  const ASN1_INTEGER* serial = X509_get0_serialNumber(x);
  return Bytes(ASN1_STRING_get0_data(serial),
               ASN1_STRING_get0_data(serial) + ASN1_STRING_length(serial));
}

// "ec-p256", "ec-p384", "rsa-3072", "ed25519", or OpenSSL's short name.
std::string KeyAlgorithmText(EVP_PKEY* key) {
  if (key == nullptr) return "unknown";
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
      return "rsa-" + std::to_string(EVP_PKEY_get_bits(key));
    case EVP_PKEY_ED25519:
      return "ed25519";
    case EVP_PKEY_EC: {
      char group[64] = {0};
      size_t len = 0;
      if (EVP_PKEY_get_group_name(key, group, sizeof(group), &len) == 1) {
        const std::string name(group);
        if (name == "prime256v1" || name == "P-256") return "ec-p256";
        if (name == "secp384r1" || name == "P-384") return "ec-p384";
        return "ec-" + name;
      }
      return "ec";
    }
    default:
      break;
  }
  const char* sn = OBJ_nid2sn(EVP_PKEY_get_base_id(key));
  return sn != nullptr ? sn : "unknown";
}

// What a TBS certifies (the TBS bytes are passed in, already encoded).
Result<PreparedCertificate> Describe(X509* x, Bytes tbs) {
  PreparedCertificate out;
  out.tbs_der = std::move(tbs);
  out.serial = SerialOf(x);
  out.subject = NameToString(X509_get_subject_name(x));
  out.issuer = NameToString(X509_get_issuer_name(x));
  out.sans = SansOf(x);
  const std::optional<Time> nb = internal::FromAsn1Time(X509_get0_notBefore(x));
  const std::optional<Time> na = internal::FromAsn1Time(X509_get0_notAfter(x));
  if (!nb || !na) return Fail("tbs-invalid", "the certificate's validity does not decode");
  out.not_before = *nb;
  out.not_after = *na;
  out.key_algorithm = KeyAlgorithmText(X509_get0_pubkey(x));
  out.spki_der = internal::CanonicalSpki(X509_get0_pubkey(x));
  if (const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(x)) {
    out.subject_key_id.assign(ASN1_STRING_get0_data(ski),
                              ASN1_STRING_get0_data(ski) + ASN1_STRING_length(ski));
  }
  ERR_clear_error();
  int crit = 0;
  BASIC_CONSTRAINTS* bc =
      static_cast<BASIC_CONSTRAINTS*>(X509_get_ext_d2i(x, NID_basic_constraints, &crit, nullptr));
  if (bc != nullptr) {
    out.is_ca = bc->ca != 0;
    out.path_len = bc->pathlen != nullptr ? static_cast<int>(ASN1_INTEGER_get(bc->pathlen)) : -1;
    BASIC_CONSTRAINTS_free(bc);
  }
  EXTENDED_KEY_USAGE* eku =
      static_cast<EXTENDED_KEY_USAGE*>(X509_get_ext_d2i(x, NID_ext_key_usage, &crit, nullptr));
  for (int i = 0; eku != nullptr && i < sk_ASN1_OBJECT_num(eku); ++i) {
    out.ext_key_usages.push_back(internal::OidText(sk_ASN1_OBJECT_value(eku, i)));
  }
  sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
  return out;
}

// Lints and encodes the TBS: the bytes officers may approve and signing signs.
Result<PreparedCertificate> LintAndEncode(X509* x, const X509* issuer, const LintOptions& lint) {
  Status findings = internal::Lint(x, issuer != nullptr ? issuer : x, lint);
  if (!findings.ok()) return findings.error();
  Bytes tbs = internal::ToDer(x, i2d_re_X509_tbs);
  if (tbs.empty()) return Fail("build-failed", "encoding the TBS certificate failed");
  return Describe(x, std::move(tbs));
}

IssuedCertificate FromSigned(X509* x) {
  IssuedCertificate out;
  out.der = internal::ToDer(x, i2d_X509);
  out.serial = SerialOf(x);
  out.subject = NameToString(X509_get_subject_name(x));
  out.sans = SansOf(x);
  out.not_before = internal::FromAsn1Time(X509_get0_notBefore(x)).value_or(Time{});
  out.not_after = internal::FromAsn1Time(X509_get0_notAfter(x)).value_or(Time{});
  return out;
}

// The pathLenConstraint of a CA certificate; nullopt when it has none.
std::optional<long> PathLenOf(const X509* ca) {
  int crit = 0;
  BASIC_CONSTRAINTS* bc =
      static_cast<BASIC_CONSTRAINTS*>(X509_get_ext_d2i(ca, NID_basic_constraints, &crit, nullptr));
  if (bc == nullptr) return std::nullopt;
  std::optional<long> out;
  if (bc->pathlen != nullptr) out = ASN1_INTEGER_get(bc->pathlen);
  BASIC_CONSTRAINTS_free(bc);
  return out;
}

Status CheckChildPathLen(const CertificateAuthority& parent, int child_path_len) {
  const std::optional<long> parent_len = PathLenOf(parent.cert());
  if (!parent_len) return {};
  if (*parent_len <= 0) {
    return Fail("ca-path-len", "the parent CA's path length constraint (0) forbids sub-CAs");
  }
  if (child_path_len < 0 || child_path_len >= *parent_len) {
    return Fail("ca-path-len", "the sub-CA's path length must be below the parent's (" +
                                   std::to_string(*parent_len) + ")");
  }
  return {};
}

UniquePkey DecodeKey(const Bytes& spki) {
  const unsigned char* p = spki.data();
  UniquePkey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
  if (key == nullptr) return nullptr;
  // Certify EC keys in uncompressed form (RFC 5480 §2.2: MUST support).
  const Bytes canonical = internal::CanonicalSpki(key.get());
  p = canonical.data();
  return UniquePkey(d2i_PUBKEY(nullptr, &p, static_cast<long>(canonical.size())));
}

const std::set<int>& ProfileBuiltExtensions() {
  static const std::set<int> kBuilt = {
      NID_basic_constraints,       NID_key_usage,
      NID_ext_key_usage,           NID_subject_alt_name,
      NID_subject_key_identifier,  NID_authority_key_identifier,
      NID_crl_distribution_points, NID_info_access,
  };
  return kBuilt;
}

}  // namespace

namespace internal {

UniqueExt MakeBasicConstraints(bool ca, int path_len) {
  BASIC_CONSTRAINTS* bc = BASIC_CONSTRAINTS_new();
  if (bc == nullptr) return nullptr;
  bc->ca = ca ? 0xff : 0;
  if (ca && path_len >= 0) {
    bc->pathlen = ASN1_INTEGER_new();
    if (bc->pathlen == nullptr || ASN1_INTEGER_set(bc->pathlen, path_len) != 1) {
      BASIC_CONSTRAINTS_free(bc);
      return nullptr;
    }
  }
  UniqueExt ext(X509V3_EXT_i2d(NID_basic_constraints, 1, bc));
  BASIC_CONSTRAINTS_free(bc);
  return ext;
}

UniqueExt MakeKeyUsage(std::uint16_t bits) {
  UniqueBitString bs(ASN1_BIT_STRING_new());
  if (bs == nullptr) return nullptr;
  for (int n = 0; n <= 8; ++n) {
    if ((bits & (1u << n)) != 0 && ASN1_BIT_STRING_set_bit(bs.get(), n, 1) != 1) return nullptr;
  }
  return UniqueExt(X509V3_EXT_i2d(NID_key_usage, 1, bs.get()));
}

}  // namespace internal

std::chrono::seconds CabForumMaxValidity(Time not_before) {
  using std::chrono::March;
  using std::chrono::year;
  const auto day = [](int y) { return std::chrono::sys_days{year{y} / March / 15}; };
  if (not_before < day(2026)) return days(398);
  if (not_before < day(2027)) return days(200);
  if (not_before < day(2029)) return days(100);
  return days(47);
}

Status ValidateProfile(const Profile& p) {
  auto bad = [&](const std::string& why) {
    return Fail("profile-invalid",
                "profile " + (p.name.empty() ? "(unnamed)" : p.name) + ": " + why);
  };
  if (p.name.empty()) return bad("has no name");
  if (p.key_algorithms.empty()) return bad("allows no key algorithm");
  if (p.rsa_min_bits < 2048) return bad("rsa_min_bits must be at least 2048");
  if (p.max_validity <= seconds(0)) return bad("max_validity must be positive");
  if (p.default_validity <= seconds(0) || p.default_validity > p.max_validity) {
    return bad("default_validity must be positive and at most max_validity");
  }
  if (p.key_usage == 0 || p.key_usage >= (1u << 9)) return bad("key_usage must name valid bits");
  if (p.is_ca) {
    if ((p.key_usage & kKeyCertSign) == 0) return bad("a CA profile needs keyCertSign");
    if (p.path_len < -1) return bad("path_len must be -1 or >= 0");
  } else {
    if ((p.key_usage & (kKeyCertSign | kCrlSign)) != 0) {
      return bad("a leaf profile may not have keyCertSign or cRLSign");
    }
    if (p.path_len != -1) return bad("path_len applies to CA profiles only");
    if (p.ext_key_usages.empty()) return bad("a leaf profile needs extended key usages");
  }
  for (const std::string& oid : p.ext_key_usages) {
    if (internal::ParseOid(oid) == nullptr) return bad("EKU \"" + oid + "\" is not a dotted OID");
    if (oid == "2.5.29.37.0") return bad("anyExtendedKeyUsage is not allowed");
  }
  for (const std::string& type : p.subject.allowed_from_csr) {
    if (OBJ_sn2nid(type.c_str()) == NID_undef) return bad("unknown subject attribute " + type);
  }
  if (!p.subject.fixed_rdns.empty()) {
    Result<UniqueName> fixed = internal::BuildName(p.subject.fixed_rdns);
    if (!fixed.ok()) return bad(fixed.error().message);
  }
  const SanRules& s = p.sans;
  if (s.min_count < 0 || s.max_count < s.min_count || s.max_count > 1000) {
    return bad("SAN counts must satisfy 0 <= min_count <= max_count <= 1000");
  }
  if (p.subject.mode == SubjectMode::kEmpty && s.min_count < 1) {
    return bad("an empty-subject profile needs min_count >= 1");
  }
  for (const std::string& suffix : s.dns_suffixes) {
    const std::string n = NormalSuffix(suffix);
    if (n.size() < 2 || !internal::IsValidDnsName(n.substr(1), false)) {
      return bad("DNS suffix \"" + suffix + "\" is not a domain name");
    }
  }
  for (const std::string& name : s.dns_exact) {
    if (!internal::IsValidDnsName(Lower(name), s.allow_wildcards)) {
      return bad("DNS name \"" + name + "\" is not valid");
    }
  }
  for (const std::string& range : s.ip_ranges) {
    if (!ParseCidr(range)) return bad("IP range \"" + range + "\" is not CIDR notation");
  }
  for (const std::string& prefix : s.uri_prefixes) {
    if (!internal::IsValidUri(prefix)) return bad("URI prefix \"" + prefix + "\" is not a URI");
  }
  for (const std::string& domain : s.email_domains) {
    if (!internal::IsValidDnsName(Lower(domain), false)) {
      return bad("e-mail domain \"" + domain + "\" is not valid");
    }
  }
  for (const auto* urls : {&p.crl_urls, &p.ocsp_urls, &p.ca_issuers_urls}) {
    for (const std::string& url : *urls) {
      if (!internal::IsValidUri(url)) return bad("URL \"" + url + "\" is not an absolute URI");
    }
  }
  for (const std::string& oid : p.csr_extension_allowlist) {
    internal::UniqueObject obj = internal::ParseOid(oid);
    if (obj == nullptr) return bad("allow-listed extension \"" + oid + "\" is not a dotted OID");
    if (ProfileBuiltExtensions().count(OBJ_obj2nid(obj.get())) != 0) {
      return bad("extension " + oid + " is built by the profile and cannot be copied from CSRs");
    }
  }
  return {};
}

Result<CertificateAuthority> CertificateAuthority::Create(std::span<const std::uint8_t> cert_der,
                                                          EVP_PKEY* key) {
  const unsigned char* p = cert_der.data();
  UniqueX509 cert(d2i_X509(nullptr, &p, static_cast<long>(cert_der.size())));
  if (cert == nullptr || p != cert_der.data() + cert_der.size()) {
    internal::OpenSslErrors();
    return Fail("ca-invalid", "the CA certificate does not parse as DER");
  }
  if (key == nullptr) return Fail("ca-invalid", "no CA key");
  int crit = 0;
  BASIC_CONSTRAINTS* bc = static_cast<BASIC_CONSTRAINTS*>(
      X509_get_ext_d2i(cert.get(), NID_basic_constraints, &crit, nullptr));
  const bool is_ca = bc != nullptr && bc->ca != 0;
  BASIC_CONSTRAINTS_free(bc);
  if (!is_ca) return Fail("ca-invalid", "the certificate is not a CA certificate (CA:TRUE)");
  const uint32_t ku = X509_get_key_usage(cert.get());
  if (ku != UINT32_MAX && (ku & KU_KEY_CERT_SIGN) == 0) {
    return Fail("ca-invalid", "the CA certificate's key usage lacks keyCertSign");
  }
  EVP_PKEY* pub = X509_get0_pubkey(cert.get());
  if (pub == nullptr || EVP_PKEY_eq(pub, key) != 1) {
    internal::OpenSslErrors();
    return Fail("ca-invalid", "the CA key is not the key of the CA certificate");
  }
  if (!internal::SigningAlgorithmFor(key)) {
    return Fail("ca-invalid", "the CA key type cannot sign (RSA, P-256, P-384, Ed25519 only)");
  }
  CertificateAuthority ca;
  const std::optional<Time> nb = internal::FromAsn1Time(X509_get0_notBefore(cert.get()));
  const std::optional<Time> na = internal::FromAsn1Time(X509_get0_notAfter(cert.get()));
  if (!nb || !na) return Fail("ca-invalid", "the CA certificate's validity does not decode");
  ca.not_before_ = *nb;
  ca.not_after_ = *na;
  const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(cert.get());
  ca.key_id_ = ski != nullptr ? Bytes(ASN1_STRING_get0_data(ski),
                                      ASN1_STRING_get0_data(ski) + ASN1_STRING_length(ski))
                              : internal::KeyIdentifier(X509_get_X509_PUBKEY(cert.get()));
  if (ca.key_id_.empty()) return Fail("ca-invalid", "the CA key identifier cannot be computed");
  ca.cert_der_.assign(cert_der.begin(), cert_der.end());
  ca.cert_ = std::shared_ptr<X509>(cert.release(), X509_free);
  EVP_PKEY_up_ref(key);
  ca.key_ = std::shared_ptr<EVP_PKEY>(key, EVP_PKEY_free);
  return ca;
}

Result<PreparedCertificate> PrepareIssue(const CertificateAuthority& ca, const Profile& profile,
                                         const Csr& csr, const IssueRequest& request,
                                         const IssueHooks& hooks) {
  Status valid = ValidateProfile(profile);
  if (!valid.ok()) return valid.error();
  const Time now = FloorToSeconds(hooks.now.value_or(Clock::now()));
  if (now >= ca.not_after()) return Fail("ca-expired", "the issuing CA's certificate has expired");

  Status key_ok = CheckSubjectKey(csr.spki_der(), profile, hooks.keys);
  if (!key_ok.ok()) return key_ok.error();
  UniquePkey subject_key = DecodeKey(csr.spki_der());
  if (subject_key == nullptr) return Fail("key-decode", "the subject public key does not decode");
  if (EVP_PKEY_eq(subject_key.get(), X509_get0_pubkey(ca.cert())) == 1) {
    return Fail("key-held-by-custos", "the CSR carries the issuing CA's own public key");
  }
  ERR_clear_error();
  if (profile.is_ca) {
    Status path = CheckChildPathLen(ca, profile.path_len);
    if (!path.ok()) return path.error();
  }

  const std::vector<San>& sans = request.sans.empty() ? csr.sans() : request.sans;
  Status san_ok = CheckSans(sans, profile.sans, profile.name);
  if (!san_ok.ok()) return san_ok.error();
  Result<std::vector<NameAttribute>> subject = BuildSubject(csr, profile, sans);
  if (!subject.ok()) return subject.error();

  std::vector<std::string> ekus = profile.ext_key_usages;
  if (!request.ext_key_usages.empty()) {
    for (const std::string& eku : request.ext_key_usages) {
      if (std::find(ekus.begin(), ekus.end(), eku) == ekus.end()) {
        return Fail("eku-not-allowed",
                    "profile " + profile.name + " does not allow extended key usage " + eku);
      }
    }
    ekus = request.ext_key_usages;
  }

  Result<Validity> validity = ComputeValidity(profile, ca, request, now);
  if (!validity.ok()) return validity.error();
  Result<internal::UniqueAsn1Int> serial = NewSerial(hooks);
  if (!serial.ok()) return serial.error();

  TbsSpec spec;
  spec.subject = std::move(subject).value();
  spec.subject_key = subject_key.get();
  spec.sans = sans;
  spec.serial = std::move(serial).value();
  spec.validity = *validity;
  spec.key_usage = profile.key_usage;
  spec.ext_key_usages = ekus;
  spec.is_ca = profile.is_ca;
  spec.path_len = profile.is_ca ? profile.path_len : -1;
  spec.crl_urls = profile.crl_urls;
  spec.ocsp_urls = profile.ocsp_urls;
  spec.ca_issuers_urls = profile.ca_issuers_urls;
  std::vector<std::string> dropped;
  for (const CsrExtension& ext : csr.extensions()) {
    if (ext.oid == "2.5.29.17") continue;  // SANs were checked above and are rebuilt
    if (std::find(profile.csr_extension_allowlist.begin(), profile.csr_extension_allowlist.end(),
                  ext.oid) != profile.csr_extension_allowlist.end()) {
      spec.copied.push_back(ext);
    } else {
      dropped.push_back(ext.oid);
    }
  }

  Result<UniqueX509> tbs = BuildTbs(spec, ca.cert(), ca.key_id(), ca.key());
  if (!tbs.ok()) return tbs.error();
  Result<PreparedCertificate> prepared =
      LintAndEncode(tbs->get(), ca.cert(), LintOptions{profile.sans.allow_wildcards});
  if (!prepared.ok()) return prepared.error();
  prepared->dropped_csr_extensions = std::move(dropped);
  return prepared;
}

Result<IssuedCertificate> SignPrepared(const CertificateAuthority& ca,
                                       std::span<const std::uint8_t> tbs_der,
                                       const LintOptions& lint) {
  Result<UniqueX509> signed_cert =
      internal::SignTbs(tbs_der, ca.cert(), ca.key(), X509_get0_pubkey(ca.cert()), lint);
  if (!signed_cert.ok()) return signed_cert.error();
  return FromSigned(signed_cert->get());
}

Result<PreparedCertificate> DescribeTbs(std::span<const std::uint8_t> tbs_der) {
  UniqueX509 x = internal::ParseTbs(tbs_der);
  if (x == nullptr)
    return Fail("tbs-invalid", "the to-be-signed certificate does not parse as DER");
  return Describe(x.get(), Bytes(tbs_der.begin(), tbs_der.end()));
}

Result<PreparedCertificate> DescribeCertificate(std::span<const std::uint8_t> cert_der) {
  const unsigned char* p = cert_der.data();
  UniqueX509 x(d2i_X509(nullptr, &p, static_cast<long>(cert_der.size())));
  if (x == nullptr || p != cert_der.data() + cert_der.size()) {
    ERR_clear_error();
    return Fail("cert-invalid", "the certificate does not parse as DER");
  }
  Bytes tbs = internal::ToDer(x.get(), i2d_re_X509_tbs);
  return Describe(x.get(), std::move(tbs));
}

Result<IssuedCertificate> Issue(const CertificateAuthority& ca, const Profile& profile,
                                const Csr& csr, const IssueRequest& request,
                                const IssueHooks& hooks) {
  Result<PreparedCertificate> prepared = PrepareIssue(ca, profile, csr, request, hooks);
  if (!prepared.ok()) return prepared.error();
  Result<IssuedCertificate> issued =
      SignPrepared(ca, prepared->tbs_der, LintOptions{profile.sans.allow_wildcards});
  if (!issued.ok()) return issued.error();
  issued->dropped_csr_extensions = std::move(prepared->dropped_csr_extensions);
  return issued;
}

Result<PreparedCertificate> PrepareRoot(const RootRequest& request, EVP_PKEY* key) {
  if (key == nullptr) return Fail("ca-invalid", "no root key");
  Result<std::vector<NameAttribute>> dn = ParseDn(request.subject_dn);
  if (!dn.ok()) return dn.error();
  if (request.validity <= seconds(0)) {
    return Fail("validity-invalid", "the root's validity must be positive");
  }
  if (request.path_len < -1) return Fail("ca-path-len", "path length must be -1 or >= 0");
  const Time now = FloorToSeconds(request.now.value_or(Clock::now()));
  UniquePkey pub = DecodeKey(internal::ToDer(key, i2d_PUBKEY));
  if (pub == nullptr) return Fail("key-decode", "the root key's public half does not encode");

  IssueHooks no_hooks;
  Result<internal::UniqueAsn1Int> serial = NewSerial(no_hooks);
  if (!serial.ok()) return serial.error();
  TbsSpec spec;
  spec.subject = std::move(dn).value();
  spec.subject_key = pub.get();
  spec.serial = std::move(serial).value();
  spec.validity.not_before = now - seconds(60);
  spec.validity.not_after = spec.validity.not_before + request.validity - seconds(1);
  spec.key_usage = kKeyCertSign | kCrlSign;
  spec.is_ca = true;
  spec.path_len = request.path_len;
  Result<UniqueX509> tbs = BuildTbs(spec, nullptr, {}, key);
  if (!tbs.ok()) return tbs.error();
  return LintAndEncode(tbs->get(), nullptr, LintOptions{});
}

Result<IssuedCertificate> SignPreparedRoot(std::span<const std::uint8_t> tbs_der, EVP_PKEY* key) {
  if (key == nullptr) return Fail("ca-invalid", "no root key");
  UniqueX509 x = internal::ParseTbs(tbs_der);
  if (x == nullptr)
    return Fail("tbs-invalid", "the to-be-signed certificate does not parse as DER");
  EVP_PKEY* pub = X509_get0_pubkey(x.get());
  if (pub == nullptr || EVP_PKEY_eq(pub, key) != 1) {
    ERR_clear_error();
    return Fail("ca-invalid", "the root certificate does not certify the root key");
  }
  Result<UniqueX509> signed_cert = internal::SignTbs(tbs_der, nullptr, key, pub, LintOptions{});
  if (!signed_cert.ok()) return signed_cert.error();
  return FromSigned(signed_cert->get());
}

Result<IssuedCertificate> CreateRoot(const RootRequest& request, EVP_PKEY* key) {
  Result<PreparedCertificate> prepared = PrepareRoot(request, key);
  if (!prepared.ok()) return prepared.error();
  return SignPreparedRoot(prepared->tbs_der, key);
}

Result<PreparedCertificate> PrepareIntermediate(const CertificateAuthority& parent,
                                                const IntermediateRequest& request,
                                                const IssueHooks& hooks) {
  Result<std::vector<NameAttribute>> dn = ParseDn(request.subject_dn);
  if (!dn.ok()) return dn.error();
  if (request.validity <= seconds(0)) {
    return Fail("validity-invalid", "the intermediate's validity must be positive");
  }
  if (request.path_len < -1) return Fail("ca-path-len", "path length must be -1 or >= 0");
  Status path = CheckChildPathLen(parent, request.path_len);
  if (!path.ok()) return path.error();
  // The key is Custos's own, so no "held by Custos" check; the rest apply.
  Profile key_rules;
  key_rules.name = "intermediate";
  key_rules.key_algorithms = {KeyAlgorithm::kEcP256, KeyAlgorithm::kEcP384, KeyAlgorithm::kRsa};
  Status key_ok = CheckSubjectKey(request.spki_der, key_rules, KeyCheckHooks{});
  if (!key_ok.ok()) return key_ok.error();
  UniquePkey subject_key = DecodeKey(request.spki_der);
  if (subject_key == nullptr) return Fail("key-decode", "the intermediate key does not decode");
  if (EVP_PKEY_eq(subject_key.get(), X509_get0_pubkey(parent.cert())) == 1) {
    return Fail("key-held-by-custos", "an intermediate cannot reuse its parent's key");
  }
  ERR_clear_error();

  const Time now = FloorToSeconds(hooks.now.value_or(Clock::now()));
  Profile validity_rules = key_rules;
  validity_rules.max_validity = request.validity;
  validity_rules.default_validity = request.validity;
  Result<Validity> validity = ComputeValidity(validity_rules, parent, IssueRequest{}, now);
  if (!validity.ok()) return validity.error();
  Result<internal::UniqueAsn1Int> serial = NewSerial(hooks);
  if (!serial.ok()) return serial.error();

  TbsSpec spec;
  spec.subject = std::move(dn).value();
  spec.subject_key = subject_key.get();
  spec.serial = std::move(serial).value();
  spec.validity = *validity;
  spec.key_usage = kKeyCertSign | kCrlSign;
  spec.is_ca = true;
  spec.path_len = request.path_len;
  spec.crl_urls = request.crl_urls;
  spec.ocsp_urls = request.ocsp_urls;
  spec.ca_issuers_urls = request.ca_issuers_urls;
  for (const auto* urls : {&spec.crl_urls, &spec.ocsp_urls, &spec.ca_issuers_urls}) {
    for (const std::string& url : *urls) {
      if (!internal::IsValidUri(url)) {
        return Fail("profile-invalid", "URL \"" + url + "\" is not an absolute URI");
      }
    }
  }
  Result<UniqueX509> tbs = BuildTbs(spec, parent.cert(), parent.key_id(), parent.key());
  if (!tbs.ok()) return tbs.error();
  return LintAndEncode(tbs->get(), parent.cert(), LintOptions{});
}

Result<IssuedCertificate> CreateIntermediate(const CertificateAuthority& parent,
                                             const IntermediateRequest& request,
                                             const IssueHooks& hooks) {
  Result<PreparedCertificate> prepared = PrepareIntermediate(parent, request, hooks);
  if (!prepared.ok()) return prepared.error();
  return SignPrepared(parent, prepared->tbs_der, LintOptions{});
}

}  // namespace custos::service::ca
