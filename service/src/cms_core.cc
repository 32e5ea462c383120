// CMS detached signatures and the certificates attached to signing keys
// (requests 65-67, docs/codesigning.md).
//
// certify_key: the principal must be bound to one of the profile's roles
// (Policy::CheckProfile, rule "profile:<name>") and allowed to READ the key
// (the starter policy's admins; the CSR's self-signature is custosd's own
// proof of possession, not a signature over anything a requester chose).
// The key must be an active RSA or EC key of usage code-signing
// (CA keys get their certificates from `custos ca create-*`; other usages
// have no use for an X.509 certificate here). custosd makes the CSR with the
// key on the token and issues it under the profile through the CA core
// (PrepareIssue: every profile check and the linter; SignPrepared in the
// HSM). The "key-held-by-custos" refusal exempts exactly this key version.
// The inventory row and the attachment are written in one transaction.
//
// attach_key_cert: admin MANAGE_CA (attaching says "this key is that
// subject", as importing a CA certificate does). The certificate must parse
// strictly, be valid now, certify exactly the key version's public key and,
// if it has a key usage extension, allow digitalSignature; each chain
// certificate must have signed the one before it.
//
// sign_cms: policy SIGN on the key like `sign` (algorithm ecdsa-p256-sha256,
// ecdsa-p384-sha384 or rsa-pkcs1-sha256/384/512 after the digest
// algorithm), then a SignedData (RFC 5652) with eContentType id-data and no
// eContent, one SignerInfo identified by issuer and serial, signed
// attributes contentType, messageDigest (the client's digest) and
// signingTime, signed in the HSM through OpenSSL's CMS builders, the signer
// certificate and (unless no_chain) its chain. Before the DER is returned it
// is parsed again and the SignerInfo's signature verified with the
// certificate's public key.
//
// Quorum: a CMS signature with a key that a SIGN quorum rule covers, and a
// certificate under a profile that a CERT_ISSUE rule covers, are refused
// (FAILED_PRECONDITION naming the rule): neither is ever made without the
// officers, and neither goes through the pending-request flow yet.
#include <openssl/asn1.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core_internal.h"
#include "custos/service/ca.h"
#include "custos/service/core.h"
#include "custos/service/key_name.h"

namespace custos::service {

namespace v1 = custos::v1;
using namespace core_internal;
using policy::Operation;

namespace {

// One certificate, and a whole chain, that a request may carry.
constexpr std::size_t kMaxCertificateBytes = 64 * 1024;
constexpr int kMaxChainLength = 8;

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
struct CmsFree {
  void operator()(CMS_ContentInfo* c) const { CMS_ContentInfo_free(c); }
};
using CmsPtr = std::unique_ptr<CMS_ContentInfo, CmsFree>;
struct Asn1TimeFree {
  void operator()(ASN1_TIME* t) const { ASN1_TIME_free(t); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

std::vector<std::uint8_t> AsBytes(const std::string& s) { return {s.begin(), s.end()}; }

// Parses exactly one DER certificate: no trailing bytes, bounded size. Fills
// `error` (a sentence ending, to follow the certificate's name) otherwise.
X509Ptr ParseCertificate(std::span<const std::uint8_t> der, std::string* error) {
  if (der.empty()) {
    *error = "is empty";
    return nullptr;
  }
  if (der.size() > kMaxCertificateBytes) {
    *error = "is " + std::to_string(der.size()) + " bytes; the limit is " +
             std::to_string(kMaxCertificateBytes);
    return nullptr;
  }
  const unsigned char* p = der.data();
  X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!x) {
    *error = "is not a DER X.509 certificate";
    return nullptr;
  }
  if (p != der.data() + der.size()) {
    *error = "has " + std::to_string(der.data() + der.size() - p) + " bytes after the certificate";
    return nullptr;
  }
  unsigned char* again = nullptr;
  const int n = i2d_X509(x.get(), &again);
  const bool same = n == static_cast<int>(der.size()) && std::equal(der.begin(), der.end(), again);
  OPENSSL_free(again);
  if (!same) {
    *error = "is not canonical DER (it does not re-encode to the same bytes)";
    return nullptr;
  }
  return x;
}

// The public key of a DER SubjectPublicKeyInfo.
PkeyPtr PublicKeyOf(const std::vector<std::uint8_t>& spki_der) {
  const unsigned char* p = spki_der.data();
  return PkeyPtr(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki_der.size())));
}

std::string SerialHex(const X509* cert) {
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  return Hex({serial->data, static_cast<std::size_t>(serial->length)});
}

std::int64_t NotAfter(const X509* cert) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&tm));
}

void FillKeyCertInfo(const KeyStore::KeyCertificate& kc, const X509* cert,
                     v1::KeyCertificateInfo* info) {
  info->set_key(VersionKey(kc.key, kc.version));
  info->set_cert_der(kc.cert_der.data(), kc.cert_der.size());
  for (const auto& c : kc.chain) info->add_chain_der(c.data(), c.size());
  info->set_source(kc.source);
  info->set_serial(SerialHex(cert));
  info->set_subject(ca::NameToString(X509_get_subject_name(cert)));
  info->set_not_after(NotAfter(cert));
}

// The signature algorithm (policy name) a CMS signature with a key of `type`
// uses for content hashed with `digest`; nullopt when the two do not fit.
std::optional<pkcs11::SignAlgorithm> CmsAlgorithm(pkcs11::KeyType type, std::string_view digest) {
  using pkcs11::KeyType;
  using pkcs11::SignAlgorithm;
  switch (type) {
    case KeyType::kEcP256:
      if (digest == "sha256") return SignAlgorithm::kEcdsaP256Sha256;
      return std::nullopt;
    case KeyType::kEcP384:
      if (digest == "sha384") return SignAlgorithm::kEcdsaP384Sha384;
      return std::nullopt;
    case KeyType::kRsa2048:
    case KeyType::kRsa3072:
    case KeyType::kRsa4096:
      if (digest == "sha256") return SignAlgorithm::kRsaPkcs1Sha256;
      if (digest == "sha384") return SignAlgorithm::kRsaPkcs1Sha384;
      if (digest == "sha512") return SignAlgorithm::kRsaPkcs1Sha512;
      return std::nullopt;
    case KeyType::kEd25519:
      return SignAlgorithm::kEd25519;
  }
  return std::nullopt;
}

// A key type's own signature algorithm (as ca::GenerateCsr signs: SHA-256,
// SHA-384 for P-384, pure Ed25519).
pkcs11::SignAlgorithm NativeAlgorithm(pkcs11::KeyType type) {
  switch (type) {
    case pkcs11::KeyType::kEcP384:
      return pkcs11::SignAlgorithm::kEcdsaP384Sha384;
    case pkcs11::KeyType::kEcP256:
      return pkcs11::SignAlgorithm::kEcdsaP256Sha256;
    case pkcs11::KeyType::kEd25519:
      return pkcs11::SignAlgorithm::kEd25519;
    default:
      return pkcs11::SignAlgorithm::kRsaPkcs1Sha256;
  }
}

const EVP_MD* DigestNamed(std::string_view name) {
  if (name == "sha256") return EVP_sha256();
  if (name == "sha384") return EVP_sha384();
  if (name == "sha512") return EVP_sha512();
  return nullptr;
}

bool SetCaRefusal(v1::Status* s, const ca::Error& e) {
  v1::StatusCode code = v1::INVALID_ARGUMENT;
  if (e.rule.rfind("ca-", 0) == 0) code = v1::FAILED_PRECONDITION;
  if (e.rule.rfind("sign-", 0) == 0 || e.rule == "build-failed") code = v1::INTERNAL;
  SetStatus(s, code, e.ToString());
  s->set_policy_rule(e.rule);
  return false;
}

std::string QuorumRuleText(const std::vector<policy::QuorumRequirement>& reqs) {
  std::string out;
  for (const auto& r : reqs) {
    out += (out.empty() ? "" : ", ") + r.rule + " (" + std::to_string(r.threshold) +
           " approvals from " + r.group + ")";
  }
  return out;
}

// Builds the detached SignedData and signs its attributes with `pkey`.
// Returns the DER, or fills `error`.
std::optional<std::vector<std::uint8_t>> BuildCms(X509* signer, EVP_PKEY* pkey, const EVP_MD* md,
                                                  std::span<const std::uint8_t> digest,
                                                  std::int64_t signing_time,
                                                  const std::vector<X509Ptr>& chain,
                                                  std::string* error) {
  const unsigned flags = CMS_PARTIAL | CMS_DETACHED | CMS_BINARY | CMS_NOSMIMECAP;
  CmsPtr cms(CMS_sign(nullptr, nullptr, nullptr, nullptr, flags));
  if (!cms) {
    *error = "CMS_sign could not start a SignedData";
    return std::nullopt;
  }
  CMS_SignerInfo* si = CMS_add1_signer(cms.get(), signer, pkey, md, flags);
  if (si == nullptr) {
    *error = "CMS_add1_signer refused the signer certificate and key";
    return std::nullopt;
  }
  // RFC 5652 §11: contentType and messageDigest are required signed
  // attributes whenever signed attributes are present; signingTime (§11.3)
  // is UTCTime until 2049.
  std::unique_ptr<ASN1_TIME, Asn1TimeFree> when(
      ASN1_TIME_set(nullptr, static_cast<time_t>(signing_time)));
  if (!when ||
      CMS_signed_add1_attr_by_NID(si, NID_pkcs9_contentType, V_ASN1_OBJECT,
                                  OBJ_nid2obj(NID_pkcs7_data), -1) != 1 ||
      CMS_signed_add1_attr_by_NID(si, NID_pkcs9_messageDigest, V_ASN1_OCTET_STRING, digest.data(),
                                  static_cast<int>(digest.size())) != 1 ||
      CMS_signed_add1_attr_by_NID(si, NID_pkcs9_signingTime, when->type, when.get(), -1) != 1) {
    *error = "adding the signed attributes failed";
    return std::nullopt;
  }
  if (CMS_SignerInfo_sign(si) != 1) {
    *error = "signing the signed attributes in the HSM failed";
    return std::nullopt;
  }
  for (const auto& c : chain) {
    if (CMS_add1_cert(cms.get(), c.get()) != 1) {
      *error = "adding a chain certificate failed";
      return std::nullopt;
    }
  }
  unsigned char* der = nullptr;
  const int n = i2d_CMS_ContentInfo(cms.get(), &der);
  if (n <= 0) {
    *error = "encoding the SignedData failed";
    return std::nullopt;
  }
  std::vector<std::uint8_t> out(der, der + n);
  OPENSSL_free(der);
  return out;
}

// Parses `der` again and checks what custosd promises of it: one SignerInfo
// for `signer`, messageDigest equal to `digest`, a signature that the
// certificate's public key verifies, no eContent.
bool CheckCms(const std::vector<std::uint8_t>& der, X509* signer,
              std::span<const std::uint8_t> digest, std::string* error) {
  const unsigned char* p = der.data();
  CmsPtr cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(der.size())));
  if (!cms || p != der.data() + der.size()) {
    *error = "the SignedData does not parse back";
    return false;
  }
  if (CMS_is_detached(cms.get()) != 1) {
    *error = "the SignedData is not detached";
    return false;
  }
  STACK_OF(CMS_SignerInfo)* infos = CMS_get0_SignerInfos(cms.get());
  if (infos == nullptr || sk_CMS_SignerInfo_num(infos) != 1) {
    *error = "the SignedData does not hold exactly one SignerInfo";
    return false;
  }
  CMS_SignerInfo* si = sk_CMS_SignerInfo_value(infos, 0);
  if (CMS_SignerInfo_cert_cmp(si, signer) != 0) {
    *error = "the SignerInfo does not name the signer certificate";
    return false;
  }
  const ASN1_OCTET_STRING* md = static_cast<const ASN1_OCTET_STRING*>(CMS_signed_get0_data_by_OBJ(
      si, OBJ_nid2obj(NID_pkcs9_messageDigest), -3, V_ASN1_OCTET_STRING));
  if (md == nullptr || static_cast<std::size_t>(ASN1_STRING_length(md)) != digest.size() ||
      !std::equal(digest.begin(), digest.end(), ASN1_STRING_get0_data(md))) {
    *error = "the messageDigest attribute is not the request's digest";
    return false;
  }
  CMS_SignerInfo_set1_signer_cert(si, signer);
  if (CMS_SignerInfo_verify(si) != 1) {
    *error = "the signature over the signed attributes does not verify with the certificate";
    return false;
  }
  return true;
}

}  // namespace

void SigningCore::HandleCms(std::string_view principal, const v1::Request& request,
                            v1::Response& resp) {
  switch (request.op_case()) {
    case v1::Request::kSignCms:
      HandleSignCms(principal, request, resp);
      break;
    case v1::Request::kCertifyKey:
      HandleCertifyKey(principal, request, resp);
      break;
    case v1::Request::kAttachKeyCert:
      HandleAttachKeyCert(principal, request, resp);
      break;
    default:
      SetStatus(resp.mutable_status(), v1::INVALID_ARGUMENT, "not a CMS request");
      break;
  }
}

// --- sign_cms ---

void SigningCore::HandleSignCms(std::string_view principal, const v1::Request& request,
                                v1::Response& resp) {
  const v1::SignCmsRequest& req = request.sign_cms();
  v1::Status* status = resp.mutable_status();
  const std::string digest_name =
      req.digest_algorithm().empty() ? "sha256" : req.digest_algorithm();
  const EVP_MD* md = DigestNamed(digest_name);
  if (md == nullptr) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "unknown digest algorithm " + Quote(req.digest_algorithm()) +
                  ": use sha256, sha384 or sha512");
    return;
  }
  // The policy judges the signature algorithm, which follows from the key's
  // type: find it first (a missing key is judged as P-256, so the answer
  // is the same whether or not it exists).
  pkcs11::SignAlgorithm alg = pkcs11::SignAlgorithm::kEcdsaP256Sha256;
  if (auto ref = ParseKeyReference(req.key()); ref) {
    if (auto key = Find(ref->name))
      alg = CmsAlgorithm(key->type, digest_name).value_or(NativeAlgorithm(key->type));
  }
  Resolved r;
  if (!Resolve(principal, Operation::kSign, req.key(), pkcs11::SignAlgorithmName(alg), &r,
               status)) {
    // A refusal names the algorithm, which would tell a principal refused
    // everywhere the key's type: answer as for a missing key instead.
    if (status->code() == v1::PERMISSION_DENIED && alg != pkcs11::SignAlgorithm::kEcdsaP256Sha256) {
      Resolved ignored;
      v1::Status neutral;
      if (!Resolve(principal, Operation::kSign, req.key(),
                   pkcs11::SignAlgorithmName(pkcs11::SignAlgorithm::kEcdsaP256Sha256), &ignored,
                   &neutral) &&
          neutral.code() == v1::PERMISSION_DENIED) {
        *status = std::move(neutral);
      }
    }
    return;
  }
  if (r.key->type == pkcs11::KeyType::kEd25519) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "key " + r.key->name +
                  " is ed25519: custosd makes CMS signatures with RSA and EC keys only; sign "
                  "with --format sshsig or a raw signature, or use an RSA or EC key");
    return;
  }
  if (!CmsAlgorithm(r.key->type, digest_name)) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "key " + r.key->name + " is " + std::string(pkcs11::KeyTypeName(r.key->type)) +
                  "; its CMS signatures use " +
                  std::string(pkcs11::SignAlgorithmName(NativeAlgorithm(r.key->type))) +
                  ", so hash with " +
                  std::string(pkcs11::HashName(pkcs11::HashOf(NativeAlgorithm(r.key->type)))) +
                  ", not " + digest_name);
    return;
  }
  const std::size_t want = static_cast<std::size_t>(EVP_MD_get_size(md));
  if (req.digest().size() != want) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "digest is " + std::to_string(req.digest().size()) + " bytes; a " + digest_name +
                  " digest is " + std::to_string(want) + " bytes");
    return;
  }
  if (req.file_name().size() > 256) {
    SetStatus(
        status, v1::INVALID_ARGUMENT,
        "file_name is " + std::to_string(req.file_name().size()) + " bytes; the limit is 256");
    return;
  }
  {
    policy::QuorumQuery q;
    q.operation = policy::QuorumOperation::kSign;
    q.key_name = r.key->name;
    q.key_usage = r.key->usage;
    std::unique_lock<std::mutex> quorum_lock(quorum_mu_, std::defer_lock);
    std::vector<policy::QuorumRequirement> reqs;
    if (!QuorumCheck(*r.policy, q, quorum_lock, &reqs, status)) return;
    if (!reqs.empty()) {
      SetStatus(status, v1::FAILED_PRECONDITION,
                "signing with " + r.key->name + " needs quorum approval (rule " +
                    QuorumRuleText(reqs) +
                    "), and custosd does not hold CMS signatures for approval: make a raw "
                    "signature with `custos sign --key " +
                    r.key->name + " --in FILE` (officers approve it) instead");
      status->set_policy_rule(reqs.front().rule);
      return;
    }
  }
  const std::uint32_t version = r.version->record.version;
  auto attached = store_->GetKeyCertificate(r.key->name, version);
  if (!attached) {
    SetStatus(status, v1::INTERNAL, attached.error());
    return;
  }
  if (!attached->has_value()) {
    SetStatus(status, v1::FAILED_PRECONDITION,
              "key " + VersionKey(r.key->name, version) +
                  " has no certificate, which a CMS signature needs: run `custos keys certify " +
                  r.key->name + " --profile code-signing` (a Custos CA issues one) or `custos " +
                  "keys attach-cert " + r.key->name + " CERT` (one issued elsewhere)");
    return;
  }
  const KeyStore::KeyCertificate& kc = **attached;
  std::string error;
  X509Ptr cert = ParseCertificate(kc.cert_der, &error);
  if (!cert) {
    SetStatus(status, v1::INTERNAL,
              "the stored certificate of " + VersionKey(kc.key, version) + " " + error);
    return;
  }
  // A signature under a certificate that is no longer valid would only be
  // refused by every verifier: say so now.
  {
    time_t now_t = static_cast<time_t>(Now());
    if (X509_cmp_time(X509_get0_notAfter(cert.get()), &now_t) < 0) {
      SetStatus(status, v1::FAILED_PRECONDITION,
                "the certificate of " + VersionKey(kc.key, version) + " expired on " +
                    FormatUtcSeconds(NotAfter(cert.get())) + ": run `custos keys certify " +
                    kc.key + " --profile code-signing` (or attach a new one)");
      return;
    }
  }
  if (kc.source == "custos") {
    CertificateQuery q;
    q.serial = SerialHex(cert.get());
    auto rows = store_->ListCertificates(q);
    if (!rows) {
      SetStatus(status, v1::INTERNAL, rows.error());
      return;
    }
    for (const auto& row : rows.value()) {
      if (row.der == kc.cert_der && row.state != "valid") {
        SetStatus(status, v1::FAILED_PRECONDITION,
                  "the certificate of " + VersionKey(kc.key, version) + " (serial " + row.serial +
                      ") is " + row.state + (row.reason.empty() ? "" : " (" + row.reason + ")") +
                      ": certify the key again before signing with it");
        return;
      }
    }
  }
  std::vector<X509Ptr> chain;
  if (!req.no_chain()) {
    for (const auto& der : kc.chain) {
      X509Ptr c = ParseCertificate(der, &error);
      if (!c) {
        SetStatus(status, v1::INTERNAL,
                  "a stored chain certificate of " + VersionKey(kc.key, version) + " " + error);
        return;
      }
      chain.push_back(std::move(c));
    }
  }
  auto pkey = token_->OpenSslKey(r.version->ref);
  if (!pkey) {
    FromTokenError(pkey.error(), "opening key " + r.key->name, status);
    return;
  }
  const auto digest = Bytes(req.digest());
  auto der = BuildCms(cert.get(), pkey->get(), md, digest, Now(), chain, &error);
  if (!der) {
    SetStatus(status, v1::INTERNAL, "building the CMS signature: " + error);
    return;
  }
  if (!CheckCms(*der, cert.get(), digest, &error)) {
    SetStatus(status, v1::INTERNAL, "the CMS signature failed its check: " + error);
    return;
  }
  status->set_code(v1::OK);
  auto* out = resp.mutable_sign_cms();
  out->set_cms_der(der->data(), der->size());
  out->set_key(r.key->name);
  out->set_key_version(version);
}

// --- certify_key ---

void SigningCore::HandleCertifyKey(std::string_view principal, const v1::Request& request,
                                   v1::Response& resp) {
  const v1::CertifyKeyRequest& req = request.certify_key();
  v1::Status* status = resp.mutable_status();
  const auto pol = CurrentPolicy();
  {
    const policy::Decision d = pol->CheckProfile(principal, req.profile());
    if (!d.allowed) {
      SetStatus(status, v1::PERMISSION_DENIED, "permission denied: " + d.reason);
      status->set_policy_rule(d.rule);
      return;
    }
  }
  const policy::CertProfile* cp = pol->FindProfile(req.profile());
  if (cp == nullptr) {
    SetStatus(status, v1::PERMISSION_DENIED,
              "permission denied: no profile " + Quote(req.profile()));
    status->set_policy_rule("default-deny");
    return;
  }
  if (cp->is_ca) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "profile " + cp->name +
                  " issues CA certificates; a CA's key is certified by `custos ca "
                  "create-intermediate`");
    return;
  }
  // The principal must be allowed to read the key: certifying it publishes
  // which subject it signs for, but signs nothing a requester chose (the
  // CSR's self-signature is custosd's own proof of possession).
  Resolved r;
  if (!Resolve(principal, Operation::kRead, req.key(), "", &r, status)) return;
  if (r.key->usage != "code-signing") {
    SetStatus(status, v1::FAILED_PRECONDITION,
              "key " + r.key->name + " has usage " + r.key->usage +
                  "; keys certify certifies code-signing keys (a CA key gets its certificate "
                  "from `custos ca create-*`)");
    return;
  }
  if (r.key->type == pkcs11::KeyType::kEd25519) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "key " + r.key->name +
                  " is ed25519: custosd makes CMS signatures with RSA and EC keys only, so it "
                  "certifies only those");
    return;
  }
  const std::uint32_t version = r.version->record.version;
  if (auto refusal = SignRefusal(r.key->name, r.key->states, version, Now())) {
    SetStatus(status, v1::FAILED_PRECONDITION, std::move(*refusal));
    return;
  }
  std::string subject = req.subject();
  if (subject.empty()) {
    const auto& allowed = cp->subject.allowed_from_csr;
    for (const char* type : {"CN", "OU"}) {
      if (subject.empty() && std::find(allowed.begin(), allowed.end(), type) != allowed.end()) {
        subject = std::string(type) + "=" + r.key->name;
      }
    }
    if (subject.empty()) {
      SetStatus(status, v1::INVALID_ARGUMENT,
                "profile " + cp->name +
                    " takes neither CN nor OU from the request: name the subject (--subject DN)");
      return;
    }
  }
  ca::IssueRequest ir;
  for (const auto& text : req.sans()) {
    auto san = ca::ParseSan(text);
    if (!san.ok()) {
      SetCaRefusal(status, san.error());
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
  {
    policy::QuorumQuery q;
    q.operation = policy::QuorumOperation::kCertIssue;
    q.profile = cp->name;
    std::unique_lock<std::mutex> quorum_lock(quorum_mu_, std::defer_lock);
    std::vector<policy::QuorumRequirement> reqs;
    if (!QuorumCheck(*pol, q, quorum_lock, &reqs, status)) return;
    if (!reqs.empty()) {
      SetStatus(status, v1::FAILED_PRECONDITION,
                "profile " + cp->name + " needs quorum approval (rule " + QuorumRuleText(reqs) +
                    "), and keys certify does not hold issuance for approval: certify the key "
                    "under a profile without a CERT_ISSUE quorum rule");
      status->set_policy_rule(reqs.front().rule);
      return;
    }
  }
  auto pkey = token_->OpenSslKey(r.version->ref);
  if (!pkey) {
    FromTokenError(pkey.error(), "opening key " + r.key->name, status);
    return;
  }
  auto csr_der = ca::GenerateCsr(subject, pkey->get(), /*ca_request=*/false);
  if (!csr_der.ok()) {
    SetCaRefusal(status, csr_der.error());
    return;
  }
  auto csr = ca::Csr::Parse(*csr_der);
  if (!csr.ok()) {
    SetCaRefusal(status, csr.error());
    return;
  }
  LoadedCa ca;
  if (!LoadCa(cp->ca, true, &ca, status)) return;
  // Custos-held keys are refused as subjects, except this very version.
  std::set<std::string> held;
  {
    std::shared_lock lock(mu_);
    for (const auto& [name, k] : keys_) {
      for (const auto& [n, v] : k->versions) held.insert(v.spki_sha256);
    }
  }
  held.erase(r.version->spki_sha256);
  ca::IssueHooks hooks;
  hooks.keys.key_is_custos_held = [&](std::span<const std::uint8_t> spki) {
    return held.count(Sha256Hex(spki)) != 0;
  };
  hooks.serial_is_unused = [&](std::span<const std::uint8_t> serial) {
    auto used = store_->SerialExists(ca.rec.name, Hex(serial));
    return used.ok() && !used.value();
  };
  const ca::Profile profile = ToCaProfile(*cp);
  auto prepared = ca::PrepareIssue(*ca.ca, profile, *csr, ir, hooks);
  if (!prepared.ok()) {
    SetCaRefusal(status, prepared.error());
    return;
  }
  if (Sha256Hex(prepared->spki_der) != r.version->spki_sha256) {
    SetStatus(status, v1::INTERNAL,
              "the prepared certificate does not certify " + VersionKey(r.key->name, version));
    return;
  }
  auto issued =
      ca::SignPrepared(*ca.ca, prepared->tbs_der, ca::LintOptions{profile.sans.allow_wildcards});
  if (!issued.ok()) {
    SetCaRefusal(status, issued.error());
    return;
  }
  const std::int64_t now = Now();
  const CertificateRecord rec = ToRecord(ca.rec.name, cp->name, *issued, principal, now);
  KeyStore::KeyCertificate kc;
  kc.key = r.key->name;
  kc.version = version;
  kc.cert_der = issued->der;
  kc.chain.push_back(ca.rec.cert_der);
  for (const auto& c : ca.rec.chain) kc.chain.push_back(c);
  kc.source = "custos";
  kc.attached_at = now;
  std::string error;
  X509Ptr cert = ParseCertificate(kc.cert_der, &error);
  if (!cert) {
    SetStatus(status, v1::INTERNAL, "the issued certificate " + error);
    return;
  }
  if (auto stored = store_->PutKeyCertificate(kc, &rec); !stored) {
    SetStatus(status, v1::INTERNAL,
              "certificate signed but not recorded: " + stored.error() + "; it is not returned");
    return;
  }
  LogLine(logger_, LogLevel::kInfo, "key_certified")
      .Str("key", VersionKey(kc.key, version))
      .Str("ca", rec.ca)
      .Str("serial", rec.serial)
      .Str("profile", rec.profile)
      .Str("requester", rec.requester)
      .Str("subject", rec.subject);
  status->set_code(v1::OK);
  FillKeyCertInfo(kc, cert.get(), resp.mutable_certify_key());
}

// --- attach_key_cert ---

void SigningCore::HandleAttachKeyCert(std::string_view principal, const v1::Request& request,
                                      v1::Response& resp) {
  const v1::AttachKeyCertRequest& req = request.attach_key_cert();
  v1::Status* status = resp.mutable_status();
  const auto pol = CurrentPolicy();
  {
    const policy::Decision d = pol->CheckAdmin(principal, policy::AdminOperation::kManageCa);
    if (!d.allowed) {
      SetStatus(status, v1::PERMISSION_DENIED, "permission denied: " + d.reason);
      status->set_policy_rule(d.rule);
      return;
    }
  }
  auto ref = ParseKeyReference(req.key());
  if (!ref) {
    SetStatus(status, v1::INVALID_ARGUMENT, ref.error());
    return;
  }
  auto key = Find(ref->name);
  if (!key) {
    SetStatus(status, v1::NOT_FOUND, "no key named " + Quote(ref->name));
    return;
  }
  if (key->usage != "code-signing") {
    SetStatus(status, v1::FAILED_PRECONDITION,
              "key " + key->name + " has usage " + key->usage +
                  "; certificates are attached to code-signing keys (a CA key takes its "
                  "certificate through `custos ca import-cert`)");
    return;
  }
  if (key->type == pkcs11::KeyType::kEd25519) {
    SetStatus(
        status, v1::INVALID_ARGUMENT,
        "key " + key->name + " is ed25519: custosd makes CMS signatures with RSA and EC keys only");
    return;
  }
  const std::uint32_t version =
      ref->version ? *ref->version
                   : (key->active_version != 0 ? key->active_version : CurrentVersion(key->states));
  auto vit = key->versions.find(version);
  if (vit == key->versions.end()) {
    SetStatus(status, v1::NOT_FOUND,
              "key " + key->name + " has no version " + std::to_string(version));
    return;
  }
  if (req.chain_der_size() > kMaxChainLength) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "the chain has " + std::to_string(req.chain_der_size()) +
                  " certificates; the limit is " + std::to_string(kMaxChainLength));
    return;
  }
  std::string error;
  const std::vector<std::uint8_t> cert_der = AsBytes(req.cert_der());
  X509Ptr cert = ParseCertificate(cert_der, &error);
  if (!cert) {
    SetStatus(status, v1::INVALID_ARGUMENT, "the certificate " + error);
    return;
  }
  // RFC 5280 §4.1.2.7: the certificate binds a subject to exactly this key.
  PkeyPtr own = PublicKeyOf(vit->second.ref.spki_der);
  EVP_PKEY* certified = X509_get0_pubkey(cert.get());
  if (!own || certified == nullptr || EVP_PKEY_eq(own.get(), certified) != 1) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "the certificate's public key is not the public key of " +
                  VersionKey(key->name, version) + " (`custos keys pubkey " + key->name +
                  "` shows it): it was issued for another key");
    return;
  }
  const std::int64_t now = Now();
  time_t now_t = static_cast<time_t>(now);
  if (X509_cmp_time(X509_get0_notBefore(cert.get()), &now_t) > 0 ||
      X509_cmp_time(X509_get0_notAfter(cert.get()), &now_t) < 0) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "the certificate is not valid now (notBefore/notAfter); attach a current one");
    return;
  }
  // RFC 5280 §4.2.1.3: with a key usage extension, signing CMS needs
  // digitalSignature (or nonRepudiation).
  const std::uint32_t ku = X509_get_key_usage(cert.get());
  if (ku != UINT32_MAX && (ku & (KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION)) == 0) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "the certificate's key usage allows neither digitalSignature nor nonRepudiation, "
              "so it cannot sign CMS");
    return;
  }
  KeyStore::KeyCertificate kc;
  kc.key = key->name;
  kc.version = version;
  kc.cert_der = cert_der;
  kc.source = "imported";
  kc.attached_at = now;
  const X509* below = cert.get();
  std::vector<X509Ptr> chain;
  for (int i = 0; i < req.chain_der_size(); ++i) {
    const std::string label = "chain certificate " + std::to_string(i + 1);
    X509Ptr c = ParseCertificate(AsBytes(req.chain_der(i)), &error);
    if (!c) {
      SetStatus(status, v1::INVALID_ARGUMENT, label + " " + error);
      return;
    }
    EVP_PKEY* issuer_key = X509_get0_pubkey(c.get());
    if (issuer_key == nullptr || X509_verify(const_cast<X509*>(below), issuer_key) != 1) {
      SetStatus(
          status, v1::INVALID_ARGUMENT,
          label + " did not sign " +
              (i == 0 ? std::string("the certificate") : "chain certificate " + std::to_string(i)) +
              ": give the chain nearest first (the issuing CA, then its issuer, ...)");
      return;
    }
    kc.chain.push_back(AsBytes(req.chain_der(i)));
    chain.push_back(std::move(c));
    below = chain.back().get();
  }
  if (auto stored = store_->PutKeyCertificate(kc, nullptr); !stored) {
    SetStatus(status, v1::INTERNAL, stored.error());
    return;
  }
  LogLine(logger_, LogLevel::kInfo, "key_certificate_attached")
      .Str("key", VersionKey(kc.key, version))
      .Str("serial", SerialHex(cert.get()))
      .Str("subject", ca::NameToString(X509_get_subject_name(cert.get())))
      .Str("by", principal);
  status->set_code(v1::OK);
  FillKeyCertInfo(kc, cert.get(), resp.mutable_attach_key_cert());
}

}  // namespace custos::service
