// The CA back-end half of SigningCore (requests 50-59, docs/ca.md).
//
// Permissions: create_ca, ca_csr, import_ca_cert need admin MANAGE_CA;
// list_cas, get_ca, list_certificates, get_certificate need
// READ_CERTIFICATES; revoke_certificate needs REVOKE_CERTIFICATE; get_crl any
// authenticated principal; issue_certificate a principal bound to one of the
// profile's roles (Policy::CheckProfile, rule "profile:<name>").
//
// Quorum: issuance under a profile a CERT_ISSUE rule covers (always for
// is_ca profiles), create_ca (profile "ca:root" / "ca:intermediate") and the
// revocation of a CA's certificate (profile "ca:revoke") become pending
// requests. The TBS certificate is built and linted when the request is made;
// it is the request's payload (its SHA-256 in the canonical text) and
// execution signs exactly those bytes.
//
// CRLs: re-signed (new number, stored before it is served) when a CA has
// none, after a revocation, and when nextUpdate is within the policy's
// crl_resign_before (SweepCrls, run by the sweeper).
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <mutex>

#include "core_internal.h"
#include "custos/policy/pending_request.h"
#include "custos/service/ca.h"
#include "custos/service/core.h"
#include "custos/service/key_name.h"

namespace custos::service {

namespace v1 = custos::v1;
using namespace core_internal;

namespace {

constexpr std::string_view kReasonNames[] = {"unspecified",
                                             "keyCompromise",
                                             "cACompromise",
                                             "affiliationChanged",
                                             "superseded",
                                             "cessationOfOperation",
                                             "certificateHold",
                                             "",
                                             "",
                                             "privilegeWithdrawn",
                                             "aACompromise"};

std::optional<ca::RevocationReason> ParseReason(std::string_view name) {
  for (std::size_t i = 0; i < std::size(kReasonNames); ++i) {
    if (!kReasonNames[i].empty() && kReasonNames[i] == name) {
      return static_cast<ca::RevocationReason>(i);
    }
  }
  return std::nullopt;
}

std::int64_t ToUnix(ca::Time t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

ca::Time FromUnix(std::int64_t s) { return ca::Time(std::chrono::seconds(s)); }

// Lowercase hex of content octets; "" when `text` is not hex.
std::string NormalSerial(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == ':') continue;
    const char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!std::isxdigit(static_cast<unsigned char>(l))) return "";
    out.push_back(l);
  }
  if (out.size() > 64 || out.size() % 2 != 0) return "";
  return out;
}

// A refusal of the CA core: its rule in policy_rule, "rule: message".
void SetCaError(v1::Status* s, const ca::Error& e) {
  v1::StatusCode code = v1::INVALID_ARGUMENT;
  if (e.rule.rfind("ca-", 0) == 0) code = v1::FAILED_PRECONDITION;
  if (e.rule.rfind("sign-", 0) == 0 || e.rule == "build-failed") code = v1::INTERNAL;
  SetStatus(s, code, e.ToString());
  s->set_policy_rule(e.rule);
}

bool Deny(v1::Status* s, const policy::Decision& d) {
  if (d.allowed) return false;
  SetStatus(s, v1::PERMISSION_DENIED, "permission denied: " + d.reason);
  s->set_policy_rule(d.rule);
  return true;
}

}  // namespace

// Shared with cms_core.cc (declared in core_internal.h).
namespace core_internal {

ca::Profile ToCaProfile(const policy::CertProfile& p) {
  ca::Profile out;
  out.name = p.name;
  for (const auto& a : p.key_algorithms) {
    if (a == "rsa") out.key_algorithms.push_back(ca::KeyAlgorithm::kRsa);
    if (a == "ec-p256") out.key_algorithms.push_back(ca::KeyAlgorithm::kEcP256);
    if (a == "ec-p384") out.key_algorithms.push_back(ca::KeyAlgorithm::kEcP384);
    if (a == "ed25519") out.key_algorithms.push_back(ca::KeyAlgorithm::kEd25519);
  }
  out.rsa_min_bits = p.rsa_min_bits;
  out.max_validity = p.max_validity;
  out.default_validity = p.default_validity;
  out.key_usage = p.key_usage_bits;
  out.ext_key_usages = p.ext_key_usages;
  out.is_ca = p.is_ca;
  out.path_len = p.path_len;
  out.sans.dns_suffixes = p.san.dns_suffixes;
  out.sans.dns_exact = p.san.dns_exact;
  out.sans.allow_wildcards = p.san.allow_wildcards;
  out.sans.ip_ranges = p.san.ip_ranges;
  out.sans.uri_prefixes = p.san.uri_prefixes;
  out.sans.email_domains = p.san.email_domains;
  out.sans.min_count = p.san.min_count;
  out.sans.max_count = p.san.max_count;
  out.sans.max_uri_count = p.san.max_uri_count;
  out.subject.mode = p.subject.mode == policy::CertSubjectMode::kEmpty ? ca::SubjectMode::kEmpty
                                                                       : ca::SubjectMode::kFromCsr;
  out.subject.allowed_from_csr = p.subject.allowed_from_csr;
  for (const auto& f : p.subject.fixed) out.subject.fixed_rdns.push_back({f.type, f.value});
  out.crl_urls = p.crl_urls;
  out.ocsp_urls = p.ocsp_urls;
  out.ca_issuers_urls = p.ca_issuers_urls;
  out.csr_extension_allowlist = p.csr_extension_allowlist;
  out.public_tls = p.public_tls;
  return out;
}

}  // namespace core_internal

namespace {

void FillCaInfo(const CaRecord& rec, v1::CaInfo* info) {
  info->set_name(rec.name);
  info->set_key(VersionKey(rec.key, rec.key_version));
  info->set_subject(rec.subject);
  info->set_parent(rec.parent);
  info->set_state(rec.state);
  info->set_path_len(-1);
  if (!rec.cert_der.empty()) {
    info->set_cert_der(rec.cert_der.data(), rec.cert_der.size());
    auto d = ca::DescribeCertificate(rec.cert_der);
    if (d.ok()) {
      info->set_subject(d->subject);
      info->set_serial(Hex(d->serial));
      info->set_not_before(ToUnix(d->not_before));
      info->set_not_after(ToUnix(d->not_after));
      info->set_path_len(d->path_len);
      info->set_key_id(Hex(d->subject_key_id));
    }
  }
  for (const auto& c : rec.chain) info->add_chain_der(c.data(), c.size());
}

}  // namespace

namespace core_internal {

CertificateRecord ToRecord(const std::string& ca_name, const std::string& profile,
                           const ca::IssuedCertificate& cert, std::string_view requester,
                           std::int64_t now) {
  CertificateRecord r;
  r.ca = ca_name;
  r.serial = Hex(cert.serial);
  r.profile = profile;
  r.subject = cert.subject;
  for (const auto& san : cert.sans) r.sans.push_back(ca::SanToString(san));
  r.requester = std::string(requester);
  r.not_before = ToUnix(cert.not_before);
  r.not_after = ToUnix(cert.not_after);
  r.der = cert.der;
  r.issued_at = now;
  return r;
}

}  // namespace core_internal

namespace {

void FillCertInfo(const CertificateRecord& rec, const CaRecord* issuer, std::int64_t now,
                  v1::CertificateInfo* info) {
  info->set_serial(rec.serial);
  info->set_ca(rec.ca);
  info->set_profile(rec.profile);
  info->set_subject(rec.subject);
  for (const auto& s : rec.sans) info->add_sans(s);
  info->set_requester(rec.requester);
  info->set_not_before(rec.not_before);
  info->set_not_after(rec.not_after);
  info->set_state(rec.state == "valid" && rec.not_after < now ? "expired" : rec.state);
  info->set_revocation_reason(rec.reason);
  info->set_revoked_at(rec.revoked_at);
  info->set_renews(rec.renews);
  info->set_renewed_by(rec.renewed_by);
  info->set_issued_at(rec.issued_at);
  if (!rec.der.empty()) info->set_cert_der(rec.der.data(), rec.der.size());
  if (issuer != nullptr && !rec.der.empty()) {
    if (!issuer->cert_der.empty() && issuer->cert_der != rec.der) {
      info->add_chain_der(issuer->cert_der.data(), issuer->cert_der.size());
    }
    for (const auto& c : issuer->chain) info->add_chain_der(c.data(), c.size());
  }
}

// The canonical fields officers see for a certificate to be signed.
void TbsFields(const ca::PreparedCertificate& p, const std::string& profile,
               const std::string& ca_name, std::vector<std::pair<std::string, std::string>>* f) {
  f->emplace_back("profile", profile);
  f->emplace_back("ca", ca_name);
  f->emplace_back("subject", p.subject);
  for (const auto& san : p.sans) f->emplace_back("san", ca::SanToString(san));
  f->emplace_back("not-before", FormatUtcSeconds(ToUnix(p.not_before)));
  f->emplace_back("not-after", FormatUtcSeconds(ToUnix(p.not_after)));
  f->emplace_back("key-algorithm", p.key_algorithm);
  if (p.is_ca) {
    f->emplace_back(
        "basic-constraints",
        "CA:TRUE" + (p.path_len >= 0 ? ", pathlen:" + std::to_string(p.path_len) : std::string()));
  }
  f->emplace_back("serial", Hex(p.serial));
  f->emplace_back("payload-sha256", Sha256Hex(p.tbs_der));
}

std::string AsString(const std::vector<std::uint8_t>& v) { return std::string(v.begin(), v.end()); }
std::vector<std::uint8_t> AsBytes(const std::string& s) { return {s.begin(), s.end()}; }

std::size_t CrlEntryCount(const std::vector<std::uint8_t>& der) {
  const unsigned char* p = der.data();
  X509_CRL* crl = d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size()));
  if (crl == nullptr) return static_cast<std::size_t>(-1);
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl);
  const std::size_t n =
      revoked != nullptr ? static_cast<std::size_t>(sk_X509_REVOKED_num(revoked)) : 0;
  X509_CRL_free(crl);
  return n;
}

}  // namespace

bool SigningCore::LoadCa(std::string_view name, bool need_active, LoadedCa* out,
                         v1::Status* status) const {
  auto got = store_->GetCa(name);
  if (!got) {
    SetStatus(status, v1::INTERNAL, got.error());
    return false;
  }
  if (!got->has_value()) {
    SetStatus(status, v1::NOT_FOUND,
              "no CA named " + Quote(name) + "; `custos ca list` shows them");
    return false;
  }
  out->rec = std::move(**got);
  const CaRecord& rec = out->rec;
  if (rec.state == "pending-certificate" || rec.cert_der.empty()) {
    SetStatus(status, v1::FAILED_PRECONDITION,
              "CA " + rec.name +
                  " has no certificate yet: import the one its external CA issued "
                  "(`custos ca import-cert " +
                  rec.name + " CERT`)");
    return false;
  }
  if (need_active && rec.state != "active") {
    SetStatus(status, v1::FAILED_PRECONDITION,
              "CA " + rec.name + " is " + rec.state + "; it issues nothing more");
    return false;
  }
  out->key = Find(rec.key);
  if (!out->key) {
    SetStatus(status, v1::FAILED_PRECONDITION,
              "CA " + rec.name + ": its key " + rec.key + " is not in the key store");
    return false;
  }
  auto it = out->key->versions.find(rec.key_version);
  if (it == out->key->versions.end()) {
    SetStatus(status, v1::FAILED_PRECONDITION,
              "CA " + rec.name + ": its key has no version " + std::to_string(rec.key_version));
    return false;
  }
  if (auto refusal = SignRefusal(rec.key, out->key->states, rec.key_version, Now())) {
    SetStatus(status, v1::FAILED_PRECONDITION, "CA " + rec.name + ": " + *refusal);
    return false;
  }
  auto pkey = token_->OpenSslKey(it->second.ref);
  if (!pkey) {
    FromTokenError(pkey.error(), "CA " + rec.name + ": opening its key", status);
    return false;
  }
  auto made = ca::CertificateAuthority::Create(rec.cert_der, pkey->get());
  if (!made.ok()) {
    SetStatus(status, v1::INTERNAL, "CA " + rec.name + ": " + made.error().ToString());
    return false;
  }
  out->ca.emplace(std::move(made).value());
  return true;
}

void SigningCore::HandleCa(std::string_view principal, const v1::Request& request,
                           v1::Response& resp) {
  switch (request.op_case()) {
    case v1::Request::kCreateCa:
      HandleCreateCa(principal, request, resp);
      break;
    case v1::Request::kListCas:
      HandleListCas(principal, resp);
      break;
    case v1::Request::kGetCa:
      HandleGetCa(principal, request.get_ca(), resp);
      break;
    case v1::Request::kCaCsr:
      HandleCaCsr(principal, request.ca_csr(), resp);
      break;
    case v1::Request::kImportCaCert:
      HandleImportCaCert(principal, request.import_ca_cert(), resp);
      break;
    case v1::Request::kIssueCertificate:
      HandleIssueCertificate(principal, request, resp);
      break;
    case v1::Request::kListCertificates:
      HandleListCertificates(principal, request.list_certificates(), resp);
      break;
    case v1::Request::kGetCertificate:
      HandleGetCertificate(principal, request.get_certificate(), resp);
      break;
    case v1::Request::kRevokeCertificate:
      HandleRevokeCertificate(principal, request, resp);
      break;
    case v1::Request::kGetCrl:
      HandleGetCrl(principal, request.get_crl(), resp);
      break;
    default:
      SetStatus(resp.mutable_status(), v1::INVALID_ARGUMENT, "not a CA request");
      break;
  }
}

// --- CAs ---

void SigningCore::HandleCreateCa(std::string_view principal, const v1::Request& request,
                                 v1::Response& resp) {
  const v1::CreateCaRequest& req = request.create_ca();
  v1::Status* status = resp.mutable_status();
  const auto pol = CurrentPolicy();
  if (Deny(status, pol->CheckAdmin(principal, policy::AdminOperation::kManageCa))) return;
  if (!IsValidKeyName(req.name())) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "CA name " + Quote(req.name()) +
                  " is invalid: use 1-64 of a-z 0-9 . _ - starting with a letter or digit");
    return;
  }
  if (req.validity_seconds() == 0 || req.validity_seconds() > kMaxCryptoPeriodSeconds) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "validity_seconds must be between 1 second and 100 years (e.g. --validity 10y)");
    return;
  }
  const int path_len = req.has_path_len() ? req.path_len() : -1;
  if (path_len < -1) {
    SetStatus(status, v1::INVALID_ARGUMENT, "path length must be -1 (none) or at least 0");
    return;
  }
  if (auto dn = ca::ParseDn(req.subject()); !dn.ok()) {
    SetCaError(status, dn.error());
    return;
  }
  auto ref = ParseKeyReference(req.key());
  if (!ref) {
    SetStatus(status, v1::INVALID_ARGUMENT, ref.error());
    return;
  }
  auto key = Find(ref->name);
  if (!key || key->usage != "ca") {
    SetStatus(status, key ? v1::FAILED_PRECONDITION : v1::NOT_FOUND,
              key ? "key " + key->name + " has usage " + key->usage +
                        "; a CA needs a key of usage ca (`custos keys create NAME --usage ca`)"
                  : "no key named " + Quote(ref->name));
    return;
  }
  if (key->type == pkcs11::KeyType::kEd25519) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "key " + key->name + " is ed25519; CA keys are RSA or EC (ec-p256, ec-p384)");
    return;
  }
  const std::uint32_t version = ref->version ? *ref->version : key->active_version;
  auto vit = key->versions.find(version);
  if (vit == key->versions.end()) {
    SetStatus(status, v1::NOT_FOUND,
              "key " + key->name + " has no version " + std::to_string(version));
    return;
  }
  if (auto refusal = SignRefusal(key->name, key->states, version, Now())) {
    SetStatus(status, v1::FAILED_PRECONDITION, std::move(*refusal));
    return;
  }
  {
    auto existing = store_->GetCa(req.name());
    if (!existing) {
      SetStatus(status, v1::INTERNAL, existing.error());
      return;
    }
    if (existing->has_value()) {
      SetStatus(status, v1::ALREADY_EXISTS, "a CA named " + req.name() + " already exists");
      return;
    }
  }
  const bool root = req.parent().empty();
  policy::QuorumQuery q;
  q.operation = policy::QuorumOperation::kCertIssue;
  q.profile = root ? "ca:root" : "ca:intermediate";
  q.key_name = key->name;
  q.key_usage = key->usage;
  std::unique_lock<std::mutex> quorum_lock(quorum_mu_, std::defer_lock);
  std::vector<policy::QuorumRequirement> reqs;
  if (!QuorumCheck(*pol, q, quorum_lock, &reqs, status)) return;
  if (!reqs.empty() && AnswerIdempotent(principal, request, resp)) return;

  ca::Result<ca::PreparedCertificate> prepared = ca::Error{};
  LoadedCa parent;
  std::optional<pkcs11::UniqueEvpPkey> own_key;
  if (root) {
    auto pkey = token_->OpenSslKey(vit->second.ref);
    if (!pkey) {
      FromTokenError(pkey.error(), "opening key " + key->name, status);
      return;
    }
    own_key.emplace(std::move(pkey.value()));
    ca::RootRequest rr;
    rr.subject_dn = req.subject();
    rr.validity = std::chrono::seconds(req.validity_seconds());
    rr.path_len = path_len;
    prepared = ca::PrepareRoot(rr, own_key->get());
  } else {
    if (!LoadCa(req.parent(), true, &parent, status)) return;
    ca::IntermediateRequest ir;
    ir.subject_dn = req.subject();
    ir.spki_der = vit->second.ref.spki_der;
    ir.validity = std::chrono::seconds(req.validity_seconds());
    ir.path_len = path_len;
    ca::IssueHooks hooks;
    hooks.serial_is_unused = [&](std::span<const std::uint8_t> serial) {
      auto used = store_->SerialExists(parent.rec.name, Hex(serial));
      return used.ok() && !used.value();
    };
    prepared = ca::PrepareIntermediate(*parent.ca, ir, hooks);
  }
  if (!prepared.ok()) {
    SetCaError(status, prepared.error());
    return;
  }
  const std::string issuer_name = root ? req.name() : parent.rec.name;
  if (!reqs.empty()) {
    QueueSpec spec;
    spec.operation = "create-ca";
    spec.key = VersionKey(key->name, version);
    spec.fields.emplace_back("name", req.name());
    spec.fields.emplace_back("key", spec.key);
    TbsFields(*prepared, q.profile, issuer_name, &spec.fields);
    spec.summary = "create-ca " + req.name() +
                   (root ? " root " : " under " + parent.rec.name + " ") + prepared->subject;
    spec.payload = AsString(prepared->tbs_der);
    Enqueue(principal, request, pol->version(), std::move(reqs), std::move(spec), {}, resp);
    return;
  }
  ca::Result<ca::IssuedCertificate> issued =
      root ? ca::SignPreparedRoot(prepared->tbs_der, own_key->get())
           : ca::SignPrepared(*parent.ca, prepared->tbs_der, {});
  if (!issued.ok()) {
    SetCaError(status, issued.error());
    return;
  }
  const std::int64_t now = Now();
  CaRecord rec;
  rec.name = req.name();
  rec.key = key->name;
  rec.key_version = version;
  rec.parent = root ? "" : parent.rec.name;
  rec.subject = issued->subject;
  rec.cert_der = issued->der;
  if (!root) {
    rec.chain.push_back(parent.rec.cert_der);
    for (const auto& c : parent.rec.chain) rec.chain.push_back(c);
  }
  rec.created_at = now;
  const CertificateRecord cert = ToRecord(issuer_name, q.profile, *issued, principal, now);
  auto inserted = store_->InsertCa(rec);
  if (!inserted || *inserted != KeyStore::InsertResult::kInserted) {
    SetStatus(status, inserted ? v1::ALREADY_EXISTS : v1::INTERNAL,
              inserted ? "a CA named " + rec.name + " already exists" : inserted.error());
    return;
  }
  if (auto r = store_->InsertCertificate(cert); !r) {
    SetStatus(status, v1::INTERNAL, "CA created but its certificate not recorded: " + r.error());
    return;
  }
  LogLine(logger_, LogLevel::kInfo, "ca_created")
      .Str("ca", rec.name)
      .Str("key", VersionKey(rec.key, rec.key_version))
      .Str("parent", rec.parent)
      .Str("serial", cert.serial);
  status->set_code(v1::OK);
  FillCaInfo(rec, resp.mutable_create_ca());
}

void SigningCore::HandleCaCsr(std::string_view principal, const v1::CaCsrRequest& req,
                              v1::Response& resp) {
  v1::Status* status = resp.mutable_status();
  const auto pol = CurrentPolicy();
  if (Deny(status, pol->CheckAdmin(principal, policy::AdminOperation::kManageCa))) return;
  if (!IsValidKeyName(req.name())) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "CA name " + Quote(req.name()) +
                  " is invalid: use 1-64 of a-z 0-9 . _ - starting with a letter or digit");
    return;
  }
  auto ref = ParseKeyReference(req.key());
  if (!ref) {
    SetStatus(status, v1::INVALID_ARGUMENT, ref.error());
    return;
  }
  auto key = Find(ref->name);
  if (!key || key->usage != "ca" || key->type == pkcs11::KeyType::kEd25519) {
    SetStatus(status, key ? v1::FAILED_PRECONDITION : v1::NOT_FOUND,
              key ? "key " + key->name + " is not an RSA or EC key of usage ca"
                  : "no key named " + Quote(ref->name));
    return;
  }
  const std::uint32_t version = ref->version ? *ref->version : key->active_version;
  auto vit = key->versions.find(version);
  if (vit == key->versions.end()) {
    SetStatus(status, v1::NOT_FOUND,
              "key " + key->name + " has no version " + std::to_string(version));
    return;
  }
  if (auto refusal = SignRefusal(key->name, key->states, version, Now())) {
    SetStatus(status, v1::FAILED_PRECONDITION, std::move(*refusal));
    return;
  }
  auto pkey = token_->OpenSslKey(vit->second.ref);
  if (!pkey) {
    FromTokenError(pkey.error(), "opening key " + key->name, status);
    return;
  }
  auto csr = ca::GenerateCsr(req.subject(), pkey->get(), /*ca_request=*/true);
  if (!csr.ok()) {
    SetCaError(status, csr.error());
    return;
  }
  CaRecord rec;
  rec.name = req.name();
  rec.key = key->name;
  rec.key_version = version;
  rec.parent = "external";
  rec.subject = req.subject();
  rec.state = "pending-certificate";
  rec.created_at = Now();
  auto inserted = store_->InsertCa(rec);
  if (!inserted) {
    SetStatus(status, v1::INTERNAL, inserted.error());
    return;
  }
  if (*inserted != KeyStore::InsertResult::kInserted) {
    SetStatus(status, v1::ALREADY_EXISTS, "a CA named " + rec.name + " already exists");
    return;
  }
  status->set_code(v1::OK);
  resp.mutable_ca_csr()->set_name(rec.name);
  resp.mutable_ca_csr()->set_csr_der(csr->data(), csr->size());
}

void SigningCore::HandleImportCaCert(std::string_view principal, const v1::ImportCaCertRequest& req,
                                     v1::Response& resp) {
  v1::Status* status = resp.mutable_status();
  const auto pol = CurrentPolicy();
  if (Deny(status, pol->CheckAdmin(principal, policy::AdminOperation::kManageCa))) return;
  auto got = store_->GetCa(req.name());
  if (!got) {
    SetStatus(status, v1::INTERNAL, got.error());
    return;
  }
  if (!got->has_value()) {
    SetStatus(status, v1::NOT_FOUND, "no CA named " + Quote(req.name()));
    return;
  }
  CaRecord rec = std::move(**got);
  if (rec.state != "pending-certificate") {
    SetStatus(status, v1::FAILED_PRECONDITION,
              "CA " + rec.name + " is " + rec.state +
                  "; only a CA made with `custos ca csr` takes an imported certificate");
    return;
  }
  auto key = Find(rec.key);
  auto vit = key ? key->versions.find(rec.key_version) : decltype(key->versions.end()){};
  if (!key || vit == key->versions.end()) {
    SetStatus(status, v1::FAILED_PRECONDITION, "CA " + rec.name + ": its key is gone");
    return;
  }
  auto pkey = token_->OpenSslKey(vit->second.ref);
  if (!pkey) {
    FromTokenError(pkey.error(), "opening key " + key->name, status);
    return;
  }
  const std::vector<std::uint8_t> cert = AsBytes(req.cert_der());
  auto made = ca::CertificateAuthority::Create(cert, pkey->get());
  if (!made.ok()) {
    SetCaError(status, made.error());
    return;
  }
  std::vector<std::vector<std::uint8_t>> chain;
  for (const auto& c : req.chain_der()) {
    auto d = ca::DescribeCertificate(AsBytes(c));
    if (!d.ok()) {
      SetStatus(
          status, v1::INVALID_ARGUMENT,
          "chain certificate " + std::to_string(chain.size() + 1) + ": " + d.error().ToString());
      return;
    }
    chain.push_back(AsBytes(c));
  }
  if (!chain.empty()) {
    // The certificate must be signed by the first chain certificate.
    const unsigned char* p = cert.data();
    X509* leaf = d2i_X509(nullptr, &p, static_cast<long>(cert.size()));
    p = chain[0].data();
    X509* issuer = d2i_X509(nullptr, &p, static_cast<long>(chain[0].size()));
    const bool ok =
        leaf != nullptr && issuer != nullptr && X509_verify(leaf, X509_get0_pubkey(issuer)) == 1;
    X509_free(leaf);
    X509_free(issuer);
    if (!ok) {
      SetStatus(status, v1::INVALID_ARGUMENT,
                "the certificate is not signed by the first certificate of the chain; pass the "
                "issuing CA's certificate first");
      return;
    }
  }
  rec.cert_der = cert;
  rec.chain = std::move(chain);
  rec.subject = ca::NameToString(X509_get_subject_name(made->cert()));
  rec.state = "active";
  if (auto r = store_->UpdateCa(rec); !r) {
    SetStatus(status, v1::INTERNAL, r.error());
    return;
  }
  status->set_code(v1::OK);
  FillCaInfo(rec, resp.mutable_import_ca_cert());
}

void SigningCore::HandleListCas(std::string_view principal, v1::Response& resp) {
  v1::Status* status = resp.mutable_status();
  if (Deny(status,
           CurrentPolicy()->CheckAdmin(principal, policy::AdminOperation::kReadCertificates))) {
    return;
  }
  auto all = store_->ListCas();
  if (!all) {
    SetStatus(status, v1::INTERNAL, all.error());
    return;
  }
  auto* out = resp.mutable_list_cas();
  for (const auto& rec : all.value()) FillCaInfo(rec, out->add_cas());
  status->set_code(v1::OK);
}

void SigningCore::HandleGetCa(std::string_view principal, const v1::GetCaRequest& req,
                              v1::Response& resp) {
  v1::Status* status = resp.mutable_status();
  if (Deny(status,
           CurrentPolicy()->CheckAdmin(principal, policy::AdminOperation::kReadCertificates))) {
    return;
  }
  auto got = store_->GetCa(req.name());
  if (!got) {
    SetStatus(status, v1::INTERNAL, got.error());
    return;
  }
  if (!got->has_value()) {
    SetStatus(status, v1::NOT_FOUND,
              "no CA named " + Quote(req.name()) + "; `custos ca list` shows them");
    return;
  }
  FillCaInfo(**got, resp.mutable_get_ca());
  status->set_code(v1::OK);
}

// --- Certificates ---

void SigningCore::HandleIssueCertificate(std::string_view principal, const v1::Request& request,
                                         v1::Response& resp) {
  const v1::IssueCertificateRequest& req = request.issue_certificate();
  v1::Status* status = resp.mutable_status();
  const auto pol = CurrentPolicy();
  if (Deny(status, pol->CheckProfile(principal, req.profile()))) return;
  const policy::CertProfile* cp = pol->FindProfile(req.profile());
  if (cp == nullptr) {
    SetStatus(status, v1::PERMISSION_DENIED,
              "permission denied: no profile " + Quote(req.profile()));
    status->set_policy_rule("default-deny");
    return;
  }
  const ca::Profile profile = ToCaProfile(*cp);
  auto csr =
      ca::Csr::Parse({reinterpret_cast<const std::uint8_t*>(req.csr().data()), req.csr().size()});
  if (!csr.ok()) {
    SetCaError(status, csr.error());
    return;
  }
  ca::IssueRequest ir;
  for (const auto& text : req.sans()) {
    auto san = ca::ParseSan(text);
    if (!san.ok()) {
      SetCaError(status, san.error());
      return;
    }
    ir.sans.push_back(*san);
  }
  if (req.validity_seconds() != 0) {
    if (req.validity_seconds() > kMaxCryptoPeriodSeconds) {
      SetStatus(status, v1::INVALID_ARGUMENT, "validity_seconds is longer than 100 years");
      return;
    }
    ir.validity = std::chrono::seconds(req.validity_seconds());
  }
  std::string renews;
  if (!req.renews().empty()) {
    renews = NormalSerial(req.renews());
    auto old = renews.empty() ? Result<std::optional<CertificateRecord>>(std::nullopt)
                              : store_->GetCertificate(cp->ca, renews);
    if (!old) {
      SetStatus(status, v1::INTERNAL, old.error());
      return;
    }
    if (!old->has_value() || (*old)->requester != principal || (*old)->profile != cp->name) {
      SetStatus(status, v1::FAILED_PRECONDITION,
                "renews " + Quote(req.renews()) + ": no certificate of CA " + cp->ca +
                    " with that serial was issued to you under profile " + cp->name);
      return;
    }
    if ((*old)->state != "valid") {
      SetStatus(status, v1::FAILED_PRECONDITION,
                "renews " + renews + ": that certificate is " + (*old)->state +
                    "; only a valid certificate is renewed");
      return;
    }
    if (!(*old)->renewed_by.empty()) {
      SetStatus(
          status, v1::FAILED_PRECONDITION,
          "renews " + renews + ": that certificate was already renewed by " + (*old)->renewed_by);
      return;
    }
  }
  policy::QuorumQuery q;
  q.operation = policy::QuorumOperation::kCertIssue;
  q.profile = cp->name;
  std::unique_lock<std::mutex> quorum_lock(quorum_mu_, std::defer_lock);
  std::vector<policy::QuorumRequirement> reqs;
  if (!QuorumCheck(*pol, q, quorum_lock, &reqs, status)) return;
  if (cp->is_ca && reqs.empty()) {
    SetStatus(status, v1::FAILED_PRECONDITION,
              "profile " + cp->name +
                  " issues CA certificates, which need quorum, but no CERT_ISSUE rule covers it");
    return;
  }
  if (!reqs.empty() && AnswerIdempotent(principal, request, resp)) return;
  LoadedCa ca;
  if (!LoadCa(cp->ca, true, &ca, status)) return;
  ca::IssueHooks hooks;
  std::set<std::string> held;
  {
    std::shared_lock lock(mu_);
    for (const auto& [name, k] : keys_) {
      for (const auto& [n, v] : k->versions) held.insert(v.spki_sha256);
    }
  }
  hooks.keys.key_is_custos_held = [&](std::span<const std::uint8_t> spki) {
    return held.count(Sha256Hex(spki)) != 0;
  };
  hooks.serial_is_unused = [&](std::span<const std::uint8_t> serial) {
    auto used = store_->SerialExists(ca.rec.name, Hex(serial));
    return used.ok() && !used.value();
  };
  auto prepared = ca::PrepareIssue(*ca.ca, profile, *csr, ir, hooks);
  if (!prepared.ok()) {
    SetCaError(status, prepared.error());
    return;
  }
  if (!prepared->dropped_csr_extensions.empty()) {
    std::string dropped;
    for (const auto& oid : prepared->dropped_csr_extensions) {
      dropped += (dropped.empty() ? "" : ",") + oid;
    }
    LogLine(logger_, LogLevel::kInfo, "csr_extensions_dropped")
        .Str("profile", cp->name)
        .Str("requester", principal)
        .Str("serial", Hex(prepared->serial))
        .Str("extensions", dropped);
  }
  if (!reqs.empty()) {
    QueueSpec spec;
    spec.operation = "issue-certificate";
    spec.key = "profile:" + cp->name;
    TbsFields(*prepared, cp->name, ca.rec.name, &spec.fields);
    if (!renews.empty()) spec.fields.emplace_back("renews", renews);
    spec.summary =
        "issue-certificate " + cp->name + " " +
        (prepared->subject.empty() ? (prepared->sans.empty() ? std::string("(empty)")
                                                             : ca::SanToString(prepared->sans[0]))
                                   : prepared->subject);
    spec.payload = AsString(prepared->tbs_der);
    Enqueue(principal, request, pol->version(), std::move(reqs), std::move(spec), {}, resp);
    return;
  }
  auto issued =
      ca::SignPrepared(*ca.ca, prepared->tbs_der, ca::LintOptions{profile.sans.allow_wildcards});
  if (!issued.ok()) {
    SetCaError(status, issued.error());
    return;
  }
  CertificateRecord rec = ToRecord(ca.rec.name, cp->name, *issued, principal, Now());
  rec.renews = renews;
  auto inserted = store_->InsertCertificate(rec);
  if (!inserted || *inserted != KeyStore::InsertResult::kInserted) {
    SetStatus(status, v1::INTERNAL,
              "certificate signed but not recorded: " +
                  (inserted ? "serial " + rec.serial + " is taken" : inserted.error()) +
                  "; it is not returned");
    return;
  }
  LogLine(logger_, LogLevel::kInfo, "certificate_issued")
      .Str("ca", rec.ca)
      .Str("serial", rec.serial)
      .Str("profile", rec.profile)
      .Str("requester", rec.requester)
      .Str("subject", rec.subject);
  status->set_code(v1::OK);
  FillCertInfo(rec, &ca.rec, Now(), resp.mutable_issue_certificate());
}

void SigningCore::HandleListCertificates(std::string_view principal,
                                         const v1::ListCertificatesRequest& req,
                                         v1::Response& resp) {
  v1::Status* status = resp.mutable_status();
  if (Deny(status,
           CurrentPolicy()->CheckAdmin(principal, policy::AdminOperation::kReadCertificates))) {
    return;
  }
  const std::int64_t now = Now();
  CertificateQuery q;
  q.ca = req.ca();
  q.requester = req.requester();
  q.profile = req.profile();
  q.with_der = false;
  if (req.expiring_within_seconds() != 0) {
    q.not_after_from = now;
    q.not_after_to = now + static_cast<std::int64_t>(std::min<std::uint64_t>(
                               req.expiring_within_seconds(), kMaxCryptoPeriodSeconds));
  }
  auto found = store_->ListCertificates(q);
  if (!found) {
    SetStatus(status, v1::INTERNAL, found.error());
    return;
  }
  auto* out = resp.mutable_list_certificates();
  for (const auto& rec : found.value()) {
    if (req.expiring_within_seconds() != 0 && rec.state != "valid") continue;
    FillCertInfo(rec, nullptr, now, out->add_certificates());
  }
  status->set_code(v1::OK);
}

void SigningCore::HandleGetCertificate(std::string_view principal,
                                       const v1::GetCertificateRequest& req, v1::Response& resp) {
  v1::Status* status = resp.mutable_status();
  if (Deny(status,
           CurrentPolicy()->CheckAdmin(principal, policy::AdminOperation::kReadCertificates))) {
    return;
  }
  const std::string serial = NormalSerial(req.serial());
  if (serial.empty()) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "serial " + Quote(req.serial()) + " is not hex (e.g. 4f3a...)");
    return;
  }
  CertificateQuery q;
  q.ca = req.ca();
  q.serial = serial;
  auto found = store_->ListCertificates(q);
  if (!found) {
    SetStatus(status, v1::INTERNAL, found.error());
    return;
  }
  if (found->empty()) {
    SetStatus(status, v1::NOT_FOUND, "no certificate with serial " + serial);
    return;
  }
  if (found->size() > 1) {
    SetStatus(status, v1::FAILED_PRECONDITION,
              "two CAs issued serial " + serial + ": name the CA (--ca)");
    return;
  }
  const CertificateRecord& rec = found->front();
  auto issuer = store_->GetCa(rec.ca);
  const CaRecord* ca_rec = issuer && issuer->has_value() ? &**issuer : nullptr;
  FillCertInfo(rec, ca_rec, Now(), resp.mutable_get_certificate());
  status->set_code(v1::OK);
}

void SigningCore::HandleRevokeCertificate(std::string_view principal, const v1::Request& request,
                                          v1::Response& resp) {
  const v1::RevokeCertificateRequest& req = request.revoke_certificate();
  v1::Status* status = resp.mutable_status();
  const auto pol = CurrentPolicy();
  if (Deny(status, pol->CheckAdmin(principal, policy::AdminOperation::kRevokeCertificate))) return;
  const std::string reason_name = req.reason().empty() ? "unspecified" : req.reason();
  if (!ParseReason(reason_name)) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "unknown revocation reason " + Quote(req.reason()) +
                  ": use unspecified, keyCompromise, cACompromise, affiliationChanged, "
                  "superseded, cessationOfOperation, certificateHold, privilegeWithdrawn or "
                  "aACompromise");
    return;
  }
  const std::string serial = NormalSerial(req.serial());
  if (serial.empty()) {
    SetStatus(status, v1::INVALID_ARGUMENT, "serial " + Quote(req.serial()) + " is not hex");
    return;
  }
  CertificateQuery cq;
  cq.ca = req.ca();
  cq.serial = serial;
  auto found = store_->ListCertificates(cq);
  if (!found) {
    SetStatus(status, v1::INTERNAL, found.error());
    return;
  }
  if (found->empty()) {
    SetStatus(status, v1::NOT_FOUND, "no certificate with serial " + serial);
    return;
  }
  if (found->size() > 1) {
    SetStatus(status, v1::FAILED_PRECONDITION,
              "two CAs issued serial " + serial + ": name the CA (--ca)");
    return;
  }
  const CertificateRecord cert = found->front();
  if (cert.state != "valid") {
    SetStatus(status, v1::FAILED_PRECONDITION,
              "certificate " + serial + " is already " + cert.state +
                  (cert.reason.empty() ? "" : " (" + cert.reason + ")"));
    return;
  }
  if (cert.profile == "ca:root") {
    SetStatus(status, v1::FAILED_PRECONDITION,
              "certificate " + serial +
                  " is a self-signed root; no CRL can revoke it: remove it from trust stores");
    return;
  }
  // Is it some CA's certificate?
  std::string revokes_ca;
  {
    auto cas = store_->ListCas();
    if (!cas) {
      SetStatus(status, v1::INTERNAL, cas.error());
      return;
    }
    for (const auto& c : cas.value()) {
      if (c.parent == cert.ca && c.cert_der == cert.der) revokes_ca = c.name;
    }
  }
  std::unique_lock<std::mutex> quorum_lock(quorum_mu_, std::defer_lock);
  std::vector<policy::QuorumRequirement> reqs;
  if (!revokes_ca.empty()) {
    policy::QuorumQuery q;
    q.operation = policy::QuorumOperation::kCertIssue;
    q.profile = "ca:revoke";
    if (!QuorumCheck(*pol, q, quorum_lock, &reqs, status)) return;
  }
  if (!reqs.empty()) {
    if (AnswerIdempotent(principal, request, resp)) return;
    QueueSpec spec;
    spec.operation = "revoke-certificate";
    spec.key = "serial:" + serial;
    spec.fields.emplace_back("ca", cert.ca);
    spec.fields.emplace_back("serial", serial);
    spec.fields.emplace_back("subject", cert.subject);
    spec.fields.emplace_back("revokes-ca", revokes_ca);
    spec.fields.emplace_back("reason", reason_name);
    // The certificate itself, so an officer's console shows (and checks
    // against the fields above) exactly which CA certificate is revoked.
    spec.fields.emplace_back("payload-sha256", Sha256Hex(cert.der));
    spec.payload = AsString(cert.der);
    spec.summary = "revoke-certificate " + serial + " (CA " + revokes_ca + ") " + reason_name;
    Enqueue(principal, request, pol->version(), std::move(reqs), std::move(spec), {}, resp);
    return;
  }
  CertificateRevocation r{cert.ca, serial, reason_name, Now(), revokes_ca};
  auto done = store_->RevokeCertificate(r);
  if (!done) {
    SetStatus(status, v1::INTERNAL, done.error());
    return;
  }
  if (!*done) {
    SetStatus(status, v1::FAILED_PRECONDITION, "certificate " + serial + " is no longer valid");
    return;
  }
  LogLine(logger_, LogLevel::kInfo, "certificate_revoked")
      .Str("ca", cert.ca)
      .Str("serial", serial)
      .Str("reason", reason_name)
      .Str("by", principal);
  std::string error;
  if (!RefreshCrl(cert.ca, true, &error)) {
    LogLine(logger_, LogLevel::kWarn, "crl_resign_failed")
        .Str("ca", cert.ca)
        .Str("error", error + " (retried by the sweeper)");
  }
  auto after = store_->GetCertificate(cert.ca, serial);
  status->set_code(v1::OK);
  if (after && after->has_value()) {
    FillCertInfo(**after, nullptr, Now(), resp.mutable_revoke_certificate());
  }
}

// --- CRLs ---

bool SigningCore::RefreshCrl(const std::string& ca_name, bool force, std::string* error) {
  std::lock_guard<std::mutex> lock(crl_mu_);
  auto current = store_->GetCrl(ca_name);
  if (!current) {
    *error = current.error();
    return false;
  }
  CertificateQuery q;
  q.ca = ca_name;
  q.with_der = false;
  auto certs = store_->ListCertificates(q);
  if (!certs) {
    *error = certs.error();
    return false;
  }
  ca::CrlRequest cr;
  for (const auto& c : certs.value()) {
    if (c.state != "revoked") continue;
    ca::RevokedCertificate r;
    for (std::size_t i = 0; i + 1 < c.serial.size(); i += 2) {
      r.serial.push_back(static_cast<std::uint8_t>(std::stoi(c.serial.substr(i, 2), nullptr, 16)));
    }
    r.revoked_at = FromUnix(c.revoked_at);
    r.reason = ParseReason(c.reason).value_or(ca::RevocationReason::kUnspecified);
    cr.revoked.push_back(std::move(r));
  }
  const auto& settings = CurrentPolicy()->ca_settings();
  const std::int64_t now = Now();
  if (!force && current->has_value()) {
    const CrlRecord& have = **current;
    const bool due = now + settings.crl_resign_before.count() >= have.next_update;
    const bool stale = CrlEntryCount(have.der) != cr.revoked.size();
    if (!due && !stale) return true;
  }
  LoadedCa ca;
  v1::Status status;
  if (!LoadCa(ca_name, false, &ca, &status)) {
    *error = status.message();
    return false;
  }
  if (current->has_value()) cr.previous_crl_number = (*current)->number;
  cr.crl_number = current->has_value() ? (*current)->number + 1 : 1;
  cr.this_update = FromUnix(now);
  cr.next_update = FromUnix(now + settings.crl_validity.count());
  auto der = ca::BuildCrl(*ca.ca, cr);
  if (!der.ok()) {
    *error = der.error().ToString();
    return false;
  }
  CrlRecord rec{ca_name, cr.crl_number, std::move(der).value(), now,
                now + settings.crl_validity.count()};
  auto stored = store_->PutCrl(rec);
  if (!stored || !*stored) {
    *error = stored ? "a CRL with a higher number is already stored" : stored.error();
    return false;
  }
  LogLine(logger_, LogLevel::kInfo, "crl_signed")
      .Str("ca", ca_name)
      .Unsigned("number", rec.number)
      .Unsigned("entries", cr.revoked.size());
  return true;
}

void SigningCore::SweepCrls() {
  auto cas = store_->ListCas();
  if (!cas) return;
  for (const auto& c : cas.value()) {
    if (c.state != "active") continue;
    std::string error;
    if (!RefreshCrl(c.name, false, &error)) {
      LogLine(logger_, LogLevel::kWarn, "crl_resign_failed").Str("ca", c.name).Str("error", error);
    }
  }
}

void SigningCore::HandleGetCrl(std::string_view /*principal*/, const v1::GetCrlRequest& req,
                               v1::Response& resp) {
  v1::Status* status = resp.mutable_status();
  auto got = store_->GetCa(req.ca());
  if (!got) {
    SetStatus(status, v1::INTERNAL, got.error());
    return;
  }
  if (!got->has_value()) {
    SetStatus(status, v1::NOT_FOUND,
              "no CA named " + Quote(req.ca()) + "; `custos ca list` shows them");
    return;
  }
  std::string error;
  const bool refreshed = RefreshCrl(req.ca(), false, &error);
  auto crl = store_->GetCrl(req.ca());
  if (!crl || !crl->has_value()) {
    SetStatus(status, v1::UNAVAILABLE,
              "CA " + req.ca() + " has no CRL yet: " + (refreshed ? "not stored" : error));
    status->set_retryable(true);
    return;
  }
  if (!refreshed) {
    LogLine(logger_, LogLevel::kWarn, "crl_resign_failed").Str("ca", req.ca()).Str("error", error);
  }
  const CrlRecord& c = **crl;
  auto* out = resp.mutable_get_crl();
  out->set_ca(c.ca);
  out->set_crl_der(c.der.data(), c.der.size());
  out->set_number(c.number);
  out->set_this_update(c.this_update);
  out->set_next_update(c.next_update);
  status->set_code(v1::OK);
}

// --- Quorum execution ---

void SigningCore::RunCaOperation(const PendingRecord& rec, const v1::Request& request,
                                 Outcome* out) {
  v1::Status* status = out->result.mutable_status();
  auto fail = [&](std::string reason) {
    out->ok = false;
    out->reason = std::move(reason);
  };
  const std::int64_t now = Now();
  const std::vector<std::uint8_t> tbs = AsBytes(rec.payload);
  if (rec.operation == "issue-certificate") {
    const auto pol = CurrentPolicy();
    const policy::CertProfile* cp = pol->FindProfile(request.issue_certificate().profile());
    if (cp == nullptr) return fail("profile " + request.issue_certificate().profile() + " is gone");
    LoadedCa ca;
    v1::Status refused;
    if (!LoadCa(cp->ca, true, &ca, &refused)) return fail(refused.message());
    auto issued = ca::SignPrepared(*ca.ca, tbs, ca::LintOptions{cp->san.allow_wildcards});
    if (!issued.ok()) return fail(issued.error().ToString());
    CertificateRecord cert = ToRecord(ca.rec.name, cp->name, *issued, rec.requester, now);
    cert.renews = NormalSerial(request.issue_certificate().renews());
    status->set_code(v1::OK);
    FillCertInfo(cert, &ca.rec, now, out->result.mutable_issue_certificate());
    out->certificate = std::move(cert);
    out->ok = true;
    return;
  }
  if (rec.operation == "create-ca") {
    const v1::CreateCaRequest& req = request.create_ca();
    auto ref = ParseKeyReference(rec.key);
    if (!ref || !ref->version) return fail("the request names no key version");
    auto key = Find(ref->name);
    auto vit = key ? key->versions.find(*ref->version) : decltype(key->versions.end()){};
    if (!key || vit == key->versions.end()) return fail("key " + rec.key + " no longer exists");
    if (auto refusal = SignRefusal(key->name, key->states, *ref->version, now)) {
      return fail(std::move(*refusal));
    }
    auto existing = store_->GetCa(req.name());
    if (!existing) return fail(existing.error());
    if (existing->has_value()) {
      // Executed before a restart: the CA is there; answer with it.
      status->set_code(v1::OK);
      FillCaInfo(**existing, out->result.mutable_create_ca());
      out->ok = true;
      return;
    }
    CaRecord ca_rec;
    ca_rec.name = req.name();
    ca_rec.key = key->name;
    ca_rec.key_version = *ref->version;
    ca_rec.created_at = now;
    ca::Result<ca::IssuedCertificate> issued = ca::Error{};
    std::string issuer_name = req.name();
    if (req.parent().empty()) {
      auto pkey = token_->OpenSslKey(vit->second.ref);
      if (!pkey) return fail("opening key " + rec.key + ": " + pkey.error().message());
      issued = ca::SignPreparedRoot(tbs, pkey->get());
    } else {
      LoadedCa parent;
      v1::Status refused;
      if (!LoadCa(req.parent(), true, &parent, &refused)) return fail(refused.message());
      auto d = ca::DescribeTbs(tbs);
      if (!d.ok()) return fail(d.error().ToString());
      if (d->spki_der.empty() || Sha256Hex(d->spki_der) != vit->second.spki_sha256) {
        return fail("the prepared certificate does not certify key " + rec.key);
      }
      issued = ca::SignPrepared(*parent.ca, tbs, {});
      ca_rec.parent = parent.rec.name;
      ca_rec.chain.push_back(parent.rec.cert_der);
      for (const auto& c : parent.rec.chain) ca_rec.chain.push_back(c);
      issuer_name = parent.rec.name;
    }
    if (!issued.ok()) return fail(issued.error().ToString());
    ca_rec.subject = issued->subject;
    ca_rec.cert_der = issued->der;
    status->set_code(v1::OK);
    FillCaInfo(ca_rec, out->result.mutable_create_ca());
    out->certificate = ToRecord(issuer_name, req.parent().empty() ? "ca:root" : "ca:intermediate",
                                *issued, rec.requester, now);
    out->ca_record = std::move(ca_rec);
    out->ok = true;
    return;
  }
  // revoke-certificate
  const v1::RevokeCertificateRequest& req = request.revoke_certificate();
  const std::string serial = NormalSerial(req.serial());
  CertificateQuery cq;
  cq.ca = req.ca();
  cq.serial = serial;
  auto found = store_->ListCertificates(cq);
  if (!found) return fail(found.error());
  if (found->size() != 1) return fail("certificate " + serial + " is not unambiguous any more");
  CertificateRecord cert = found->front();
  const std::string reason_name = req.reason().empty() ? "unspecified" : req.reason();
  if (cert.state == "revoked") {
    // Revoked before a restart: answer with it.
    status->set_code(v1::OK);
    FillCertInfo(cert, nullptr, now, out->result.mutable_revoke_certificate());
    out->refresh_crl = cert.ca;
    out->ok = true;
    return;
  }
  std::string revokes_ca;
  if (auto cas = store_->ListCas(); cas) {
    for (const auto& c : cas.value()) {
      if (c.parent == cert.ca && c.cert_der == cert.der) revokes_ca = c.name;
    }
  }
  out->revocation = CertificateRevocation{cert.ca, serial, reason_name, now, revokes_ca};
  cert.state = "revoked";
  cert.reason = reason_name;
  cert.revoked_at = now;
  status->set_code(v1::OK);
  FillCertInfo(cert, nullptr, now, out->result.mutable_revoke_certificate());
  out->refresh_crl = cert.ca;
  out->ok = true;
}

}  // namespace custos::service
