// The SSH half of SigningCore (requests 60-62, docs/codesigning.md "SSH"):
// OpenSSH certificates signed by ssh-ca keys and SSHSIG file signatures made
// with code-signing keys, both inside the HSM (Token::Sign over
// ssh::SigningInput; ssh/ verifies every signature before it is used).
//
// Permissions:
//   ssh_sign_certificate  Policy::CheckSshCertificate (rule
//                         "ssh-profile:<name>:<check>"); the key must have
//                         usage ssh-ca (rule "key-usage").
//   sign_sshsig           the same check as sign (key rules, SIGN, the key's
//                         signing algorithm); usage code-signing.
//   list_ssh_certificates admin READ_CERTIFICATES, or one's own (requester =
//                         the caller).
// Quorum: neither kind of request is queued for officers. A key covered by a
// SIGN quorum rule (e.g. release-*) is refused for SSHSIG, and an ssh profile
// covered by a CERT_ISSUE rule ("ssh:<name>") is refused, each naming the
// quorum rule: quorum is never bypassed.
#include <openssl/rand.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core_internal.h"
#include "custos/policy/quorum.h"
#include "custos/service/core.h"
#include "custos/service/key_name.h"
#include "ssh/ssh.h"

namespace custos::service {

namespace v1 = custos::v1;
using namespace core_internal;

namespace {

// Bounds on request fields (beyond what ssh/ checks).
constexpr std::size_t kMaxPrincipalBytes = 256;
constexpr std::size_t kMaxKeyIdBytes = 256;
constexpr std::size_t kMaxOptionBytes = 4096;
constexpr std::size_t kMaxExtensions = 16;
constexpr std::size_t kMaxFileNameBytes = 256;
// Certificates are valid from a minute before they are signed, for clocks
// slightly behind custosd's.
constexpr std::int64_t kBackdateSeconds = 60;

// The algorithm an SSH signature with a key of `type` uses in the HSM
// (ssh::SignatureAlgorithm: RSA keys sign rsa-sha2-512).
pkcs11::SignAlgorithm SshAlgorithm(pkcs11::KeyType type) {
  switch (type) {
    case pkcs11::KeyType::kEcP256:
      return pkcs11::SignAlgorithm::kEcdsaP256Sha256;
    case pkcs11::KeyType::kEcP384:
      return pkcs11::SignAlgorithm::kEcdsaP384Sha384;
    case pkcs11::KeyType::kEd25519:
      return pkcs11::SignAlgorithm::kEd25519;
    case pkcs11::KeyType::kRsa2048:
    case pkcs11::KeyType::kRsa3072:
    case pkcs11::KeyType::kRsa4096:
      break;
  }
  return pkcs11::SignAlgorithm::kRsaPkcs1Sha512;
}

// A refusal from ssh/: its rule in policy_rule, "rule: message".
void SetSshError(v1::Status* s, const ssh::Error& e, v1::StatusCode code = v1::INVALID_ARGUMENT) {
  SetStatus(s, code, e.ToString());
  s->set_policy_rule(e.rule);
}

bool Deny(v1::Status* s, const policy::Decision& d) {
  if (d.allowed) return false;
  SetStatus(s, v1::PERMISSION_DENIED, "permission denied: " + d.reason);
  s->set_policy_rule(d.rule);
  return true;
}

// A Signer that signs inside the HSM. A token error is kept in `*token_error`
// (for UNAVAILABLE vs INTERNAL) and reported to ssh/ as "ssh-signer".
ssh::Signer HsmSigner(pkcs11::Token& token, const pkcs11::KeyRef& ref, ssh::KeyType type,
                      pkcs11::SignAlgorithm alg, std::optional<pkcs11::Error>* token_error) {
  return [&token, &ref, type, alg, token_error](ssh::ByteSpan data) -> ssh::Result<ssh::Bytes> {
    const ssh::Bytes input = ssh::SigningInput(type, data);
    auto sig = token.Sign(ref, alg, input);
    if (!sig) {
      *token_error = sig.error();
      return ssh::Error{"ssh-signer", "the HSM did not sign"};
    }
    return ssh::SshSignatureFromStandard(type, *sig);
  };
}

void FillSshInfo(const KeyStore::SshCertificateRecord& rec, v1::SshCertificateInfo* info) {
  info->set_key(rec.ca_key);
  info->set_serial(rec.serial);
  info->set_key_id(rec.key_id);
  info->set_cert_type(rec.cert_type);
  for (const auto& p : rec.principals) info->add_principals(p);
  info->set_valid_after(rec.valid_after);
  info->set_valid_before(rec.valid_before);
  info->set_requester(rec.requester);
  info->set_profile(rec.profile);
  info->set_subject_fingerprint(rec.subject_fingerprint);
  info->set_issued_at(rec.issued_at);
}

}  // namespace

void SigningCore::HandleSsh(std::string_view principal, const v1::Request& request,
                            v1::Response& resp) {
  v1::Status* status = resp.mutable_status();
  switch (request.op_case()) {
    case v1::Request::kSshSignCertificate: {
      const v1::SshSignCertificateRequest& req = request.ssh_sign_certificate();
      // Field bounds first: nothing below handles unbounded input.
      if (req.public_key().size() > ssh::kMaxKeyLineLength) {
        SetStatus(status, v1::INVALID_ARGUMENT,
                  "public_key is " + std::to_string(req.public_key().size()) +
                      " bytes; the limit is " + std::to_string(ssh::kMaxKeyLineLength));
        return;
      }
      if (static_cast<std::size_t>(req.principals_size()) > ssh::kMaxPrincipals) {
        SetStatus(status, v1::INVALID_ARGUMENT,
                  std::to_string(req.principals_size()) + " principals; the limit is " +
                      std::to_string(ssh::kMaxPrincipals));
        return;
      }
      for (const auto& p : req.principals()) {
        if (p.empty() || p.size() > kMaxPrincipalBytes) {
          SetStatus(status, v1::INVALID_ARGUMENT,
                    "a principal must be 1.." + std::to_string(kMaxPrincipalBytes) + " bytes");
          return;
        }
      }
      if (req.key_id().size() > kMaxKeyIdBytes || req.force_command().size() > kMaxOptionBytes ||
          req.source_address().size() > kMaxOptionBytes ||
          static_cast<std::size_t>(req.extensions_size()) > kMaxExtensions) {
        SetStatus(status, v1::INVALID_ARGUMENT,
                  "key_id is limited to 256 bytes, force_command and source_address to 4096, "
                  "extensions to 16");
        return;
      }
      if (req.validity_seconds() > kMaxCryptoPeriodSeconds) {
        SetStatus(status, v1::INVALID_ARGUMENT, "validity_seconds is longer than 100 years");
        return;
      }
      policy::SshCertRequest pr;
      if (req.cert_type() == "user" || req.cert_type().empty()) {
        pr.kind = policy::SshCertKind::kUser;
      } else if (req.cert_type() == "host") {
        pr.kind = policy::SshCertKind::kHost;
      } else {
        SetStatus(status, v1::INVALID_ARGUMENT,
                  "cert_type " + Quote(req.cert_type()) + " is not user or host");
        return;
      }
      auto ref = ParseKeyReference(req.key());
      if (!ref) {
        SetStatus(status, v1::INVALID_ARGUMENT, ref.error());
        return;
      }
      std::shared_ptr<const policy::Policy> pol;
      auto key = Find(ref->name, &pol);
      pr.principal = std::string(principal);
      pr.key_name = ref->name;
      pr.profile = req.profile();
      pr.principals.assign(req.principals().begin(), req.principals().end());
      pr.validity = std::chrono::seconds(static_cast<std::int64_t>(req.validity_seconds()));
      pr.force_command = !req.force_command().empty();
      pr.source_address = !req.source_address().empty();
      if (req.extensions_size() > 0) {
        pr.extensions.emplace(req.extensions().begin(), req.extensions().end());
      }
      policy::SshCertGrant grant;
      if (Deny(status, pol->CheckSshCertificate(pr, &grant))) return;
      {
        policy::QuorumQuery q;
        q.operation = policy::QuorumOperation::kCertIssue;
        q.profile = "ssh:" + grant.profile;
        std::unique_lock<std::mutex> quorum_lock(quorum_mu_, std::defer_lock);
        std::vector<policy::QuorumRequirement> reqs;
        if (!QuorumCheck(*pol, q, quorum_lock, &reqs, status)) return;
        if (!reqs.empty()) {
          SetStatus(status, v1::FAILED_PRECONDITION,
                    "ssh profile " + grant.profile + " is covered by quorum rule " +
                        reqs.front().rule + " (CERT_ISSUE \"ssh:" + grant.profile +
                        "\"); custosd does not queue SSH certificates for officers' approval, so "
                        "it refuses them rather than sign without the quorum");
          status->set_policy_rule(reqs.front().rule);
          return;
        }
      }
      if (!key) {
        SetStatus(status, v1::NOT_FOUND, "no key named " + Quote(ref->name));
        return;
      }
      if (key->usage != "ssh-ca") {
        SetStatus(status, v1::FAILED_PRECONDITION,
                  "key " + key->name + " has usage " + key->usage +
                      "; OpenSSH certificates are signed only by keys of usage ssh-ca");
        status->set_policy_rule("key-usage");
        return;
      }
      const std::uint32_t version = ref->version ? *ref->version : key->active_version;
      if (version != 0 && key->versions.count(version) == 0) {
        SetStatus(status, v1::NOT_FOUND,
                  "key " + key->name + " has no version " + std::to_string(version));
        return;
      }
      if (auto refusal = SignRefusal(key->name, key->states, version, Now())) {
        SetStatus(status, v1::FAILED_PRECONDITION, std::move(*refusal));
        return;
      }
      const CachedVersion& cv = key->versions.at(version);
      auto ca_pub = ssh::PublicKey::FromSpki(cv.ref.spki_der);
      if (!ca_pub.ok()) {
        SetSshError(status, ca_pub.error(), v1::FAILED_PRECONDITION);
        return;
      }
      auto subject = ssh::ParseAuthorizedKey(req.public_key());
      if (!subject.ok()) {
        SetSshError(status, subject.error());
        return;
      }
      if (subject->key == *ca_pub) {
        SetStatus(status, v1::INVALID_ARGUMENT,
                  "ssh-cert-subject: the public key is the CA key " + key->name +
                      " itself; a CA does not certify its own key");
        status->set_policy_rule("ssh-cert-subject");
        return;
      }
      // A fresh random serial, unused by this CA key (any version).
      std::uint64_t serial = 0;
      for (int attempt = 0; attempt < 8 && serial == 0; ++attempt) {
        std::uint8_t bytes[8];
        if (RAND_bytes(bytes, sizeof bytes) != 1) break;
        std::uint64_t candidate = 0;
        for (std::uint8_t b : bytes) candidate = (candidate << 8) | b;
        if (candidate == 0) continue;
        auto used = store_->SshSerialExists(key->name, candidate);
        if (!used) {
          SetStatus(status, v1::INTERNAL, used.error());
          return;
        }
        if (!*used) serial = candidate;
      }
      if (serial == 0) {
        SetStatus(status, v1::UNAVAILABLE, "could not draw an unused certificate serial; retry");
        return;
      }
      const std::int64_t now = Now();
      ssh::CertificateSpec spec;
      spec.type =
          pr.kind == policy::SshCertKind::kHost ? ssh::CertType::kHost : ssh::CertType::kUser;
      spec.serial = serial;
      spec.key_id = req.key_id().empty() ? std::string(principal) + ":" + std::to_string(serial)
                                         : req.key_id();
      spec.principals = pr.principals;
      spec.valid_after =
          static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - kBackdateSeconds));
      spec.valid_before = static_cast<std::uint64_t>(now + grant.validity.count());
      if (!req.force_command().empty()) spec.force_command = req.force_command();
      if (!req.source_address().empty()) spec.source_address = req.source_address();
      spec.extensions = grant.extensions;
      std::optional<pkcs11::Error> token_error;
      auto cert = ssh::SignCertificate(
          spec, subject->key, *ca_pub,
          HsmSigner(*token_, cv.ref, ca_pub->type(), SshAlgorithm(key->type), &token_error));
      if (!cert.ok()) {
        if (token_error) {
          FromTokenError(*token_error, "signing the SSH certificate failed", status);
        } else if (cert.error().rule == "ssh-cert-signature" || cert.error().rule == "ssh-signer") {
          SetSshError(status, cert.error(), v1::INTERNAL);
        } else {
          SetSshError(status, cert.error());
        }
        return;
      }
      KeyStore::SshCertificateRecord rec;
      rec.ca_key = VersionKey(key->name, version);
      rec.serial = serial;
      rec.key_id = spec.key_id;
      rec.cert_type = std::string(policy::SshCertKindName(pr.kind));
      rec.principals = spec.principals;
      rec.valid_after = static_cast<std::int64_t>(spec.valid_after);
      rec.valid_before = static_cast<std::int64_t>(spec.valid_before);
      rec.requester = std::string(principal);
      rec.profile = grant.profile;
      rec.subject_fingerprint = subject->key.Fingerprint();
      rec.certificate = cert->ToLine(subject->comment);
      rec.issued_at = now;
      // In the inventory before anyone sees the certificate.
      auto stored = store_->InsertSshCertificate(rec);
      if (!stored) {
        SetStatus(status, v1::INTERNAL, stored.error());
        return;
      }
      if (!*stored) {
        SetStatus(status, v1::UNAVAILABLE,
                  "certificate serial " + std::to_string(serial) + " was taken meanwhile; retry");
        return;
      }
      status->set_code(v1::OK);
      auto* out = resp.mutable_ssh_sign_certificate();
      FillSshInfo(rec, out);
      out->set_certificate(rec.certificate);
      for (const auto& e : spec.extensions) out->add_extensions(e);
      if (spec.force_command) out->set_force_command(*spec.force_command);
      if (spec.source_address) out->set_source_address(*spec.source_address);
      return;
    }

    case v1::Request::kSignSshsig: {
      const v1::SignSshsigRequest& req = request.sign_sshsig();
      if (req.sha512_digest().size() != ssh::kSha512Size) {
        SetStatus(status, v1::INVALID_ARGUMENT,
                  "sha512_digest is " + std::to_string(req.sha512_digest().size()) +
                      " bytes; SSHSIG needs the 64-byte SHA-512 of the file");
        status->set_policy_rule("sshsig-digest");
        return;
      }
      if (req.file_name().size() > kMaxFileNameBytes) {
        SetStatus(
            status, v1::INVALID_ARGUMENT,
            "file_name is " + std::to_string(req.file_name().size()) + " bytes; the limit is 256");
        return;
      }
      const std::span<const std::uint8_t> digest = Bytes(req.sha512_digest());
      // The namespace before any key lookup: a bad one is the caller's error.
      auto signed_data = ssh::SshsigSignedData(req.namespace_(), digest);
      if (!signed_data.ok()) {
        SetSshError(status, signed_data.error());
        return;
      }
      // The same check as sign, with the algorithm SSH signs with for this
      // key's type (an unknown key gets Resolve's own refusal).
      auto ref = ParseKeyReference(req.key());
      if (!ref) {
        SetStatus(status, v1::INVALID_ARGUMENT, ref.error());
        return;
      }
      const auto found = Find(ref->name);
      const pkcs11::SignAlgorithm alg =
          SshAlgorithm(found ? found->type : pkcs11::KeyType::kEcP256);
      Resolved r;
      if (!Resolve(principal, policy::Operation::kSign, req.key(), pkcs11::SignAlgorithmName(alg),
                   &r, status)) {
        return;
      }
      if (!found || r.key->type != found->type) {
        SetStatus(status, v1::UNAVAILABLE, "key " + r.key->name + " changed meanwhile; retry");
        return;
      }
      if (r.key->usage != "code-signing") {
        SetStatus(status, v1::FAILED_PRECONDITION,
                  "key " + r.key->name + " has usage " + r.key->usage +
                      "; SSHSIG signatures are made only with keys of usage code-signing");
        status->set_policy_rule("key-usage");
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
                    "signing with key " + r.key->name + " needs officers' approval (quorum rule " +
                        reqs.front().rule +
                        "); SSHSIG requests are not queued for approval, so custosd refuses "
                        "them: sign with `custos sign` (raw or CMS), which waits for the quorum");
          status->set_policy_rule(reqs.front().rule);
          return;
        }
      }
      auto pub = ssh::PublicKey::FromSpki(r.version->ref.spki_der);
      if (!pub.ok()) {
        SetSshError(status, pub.error(), v1::FAILED_PRECONDITION);
        return;
      }
      std::optional<pkcs11::Error> token_error;
      auto armored = ssh::SignSshsig(
          *pub, req.namespace_(), digest,
          HsmSigner(*token_, r.version->ref, pub->type(), r.algorithm, &token_error));
      if (!armored.ok()) {
        if (token_error) {
          FromTokenError(*token_error, "SSHSIG signing failed", status);
        } else {
          SetSshError(status, armored.error(), v1::INTERNAL);
        }
        return;
      }
      status->set_code(v1::OK);
      auto* out = resp.mutable_sign_sshsig();
      out->set_armored(*armored);
      out->set_key(r.key->name);
      out->set_key_version(r.version->record.version);
      out->set_ssh_public_key(pub->ToLine("custos:" + r.key->name));
      return;
    }

    case v1::Request::kListSshCertificates: {
      const v1::ListSshCertificatesRequest& req = request.list_ssh_certificates();
      const auto pol = CurrentPolicy();
      std::string requester = req.requester();
      const policy::Decision admin =
          pol->CheckAdmin(principal, policy::AdminOperation::kReadCertificates);
      if (!admin.allowed) {
        // Without READ_CERTIFICATES: one's own certificates only.
        if (requester.empty()) requester = std::string(principal);
        if (requester != principal) {
          Deny(status, admin);
          return;
        }
      }
      if (req.key().size() > 128 || req.requester().size() > 1024) {
        SetStatus(status, v1::INVALID_ARGUMENT, "key or requester too long");
        return;
      }
      auto list = store_->ListSshCertificates(req.key(), requester);
      if (!list) {
        SetStatus(status, v1::INTERNAL, list.error());
        return;
      }
      status->set_code(v1::OK);
      auto* out = resp.mutable_list_ssh_certificates();
      for (const auto& rec : *list) FillSshInfo(rec, out->add_certificates());
      return;
    }

    default:
      SetStatus(status, v1::INVALID_ARGUMENT, "not an SSH request");
      return;
  }
}

}  // namespace custos::service
