#include "request_info.h"

#include <openssl/evp.h>

#include "custos/service/audit_format.h"

namespace custos::service::request_info {

namespace v1 = custos::v1;

std::string_view OpName(const v1::Request& r) {
  switch (r.op_case()) {
    case v1::Request::kPing:
      return "ping";
    case v1::Request::kSign:
      return "sign";
    case v1::Request::kSignBatch:
      return "sign_batch";
    case v1::Request::kCreateKey:
      return "create_key";
    case v1::Request::kListKeys:
      return "list_keys";
    case v1::Request::kGetKey:
      return "get_key";
    case v1::Request::kGetPublicKey:
      return "get_public_key";
    case v1::Request::kRotateKey:
      return "rotate_key";
    case v1::Request::kDisableKey:
      return "disable_key";
    case v1::Request::kEnableKey:
      return "enable_key";
    case v1::Request::kDestroyKey:
      return "destroy_key";
    case v1::Request::kMarkCompromised:
      return "mark_compromised";
    case v1::Request::kAuditCheckpoint:
      return "audit_checkpoint";
    case v1::Request::kListRequests:
      return "list_requests";
    case v1::Request::kGetRequest:
      return "get_request";
    case v1::Request::kSubmitApproval:
      return "submit_approval";
    case v1::Request::kProposePolicy:
      return "propose_policy";
    case v1::Request::kGetPolicy:
      return "get_policy";
    case v1::Request::kCreateCa:
      return "create_ca";
    case v1::Request::kListCas:
      return "list_cas";
    case v1::Request::kGetCa:
      return "get_ca";
    case v1::Request::kCaCsr:
      return "ca_csr";
    case v1::Request::kImportCaCert:
      return "import_ca_cert";
    case v1::Request::kIssueCertificate:
      return "issue_certificate";
    case v1::Request::kListCertificates:
      return "list_certificates";
    case v1::Request::kGetCertificate:
      return "get_certificate";
    case v1::Request::kRevokeCertificate:
      return "revoke_certificate";
    case v1::Request::kGetCrl:
      return "get_crl";
    case v1::Request::kSshSignCertificate:
      return "ssh_sign_certificate";
    case v1::Request::kSignSshsig:
      return "sign_sshsig";
    case v1::Request::kListSshCertificates:
      return "list_ssh_certificates";
    case v1::Request::kSignCms:
      return "sign_cms";
    case v1::Request::kCertifyKey:
      return "certify_key";
    case v1::Request::kAttachKeyCert:
      return "attach_key_cert";
    case v1::Request::OP_NOT_SET:
      break;
  }
  return "unknown";
}

std::string_view StatementRequestId(std::string_view statement) {
  // The second line of a canonical statement (policy/approval.h); the core
  // parses it strictly, this only names the request in logs and records.
  constexpr std::string_view kLine = "custos-approval-v1\nrequest-id: ";
  if (statement.substr(0, kLine.size()) != kLine) return "";
  statement.remove_prefix(kLine.size());
  const auto end = statement.find('\n');
  if (end == std::string_view::npos || end > 128) return "";
  return statement.substr(0, end);
}

std::string_view KeyOf(const v1::Request& r) {
  switch (r.op_case()) {
    case v1::Request::kSign:
      return r.sign().key();
    case v1::Request::kSignBatch:
      return r.sign_batch().key();
    case v1::Request::kCreateKey:
      return r.create_key().name();
    case v1::Request::kGetKey:
      return r.get_key().key();
    case v1::Request::kGetPublicKey:
      return r.get_public_key().key();
    case v1::Request::kRotateKey:
      return r.rotate_key().name();
    case v1::Request::kDisableKey:
      return r.disable_key().key();
    case v1::Request::kEnableKey:
      return r.enable_key().key();
    case v1::Request::kDestroyKey:
      return r.destroy_key().key();
    case v1::Request::kMarkCompromised:
      return r.mark_compromised().key();
    case v1::Request::kGetRequest:
      return r.get_request().id();
    case v1::Request::kSubmitApproval:
      return StatementRequestId(r.submit_approval().statement());
    case v1::Request::kProposePolicy:
    case v1::Request::kGetPolicy:
      return "policy";
    case v1::Request::kSshSignCertificate:
      return r.ssh_sign_certificate().key();
    case v1::Request::kSignSshsig:
      return r.sign_sshsig().key();
    case v1::Request::kSignCms:
      return r.sign_cms().key();
    case v1::Request::kCertifyKey:
      return r.certify_key().key();
    case v1::Request::kAttachKeyCert:
      return r.attach_key_cert().key();
    default:
      return "";
  }
}

std::string CaKeyOf(const v1::Request& r) {
  switch (r.op_case()) {
    case v1::Request::kCreateCa:
      return "ca:" + r.create_ca().name();
    case v1::Request::kGetCa:
      return "ca:" + r.get_ca().name();
    case v1::Request::kCaCsr:
      return "ca:" + r.ca_csr().name();
    case v1::Request::kImportCaCert:
      return "ca:" + r.import_ca_cert().name();
    case v1::Request::kIssueCertificate:
      return "profile:" + r.issue_certificate().profile();
    case v1::Request::kGetCertificate:
      return "serial:" + r.get_certificate().serial();
    case v1::Request::kRevokeCertificate:
      return "serial:" + r.revoke_certificate().serial();
    case v1::Request::kGetCrl:
      return "crl:" + r.get_crl().ca();
    default:
      return "";
  }
}

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) return "";
  return audit::Hex({md, len});
}

std::string OpSha256(const v1::Request& r) {
  const auto* oneof = r.GetDescriptor()->FindOneofByName("op");
  const auto* refl = r.GetReflection();
  const auto* field = oneof ? refl->GetOneofFieldDescriptor(r, oneof) : nullptr;
  if (field == nullptr) return "";
  return Sha256Hex(refl->GetMessage(r, field).SerializeAsString());
}

std::string ResultKey(const v1::Response& r) {
  if (r.has_certify_key() || r.has_attach_key_cert()) {
    const v1::KeyCertificateInfo& c = r.has_certify_key() ? r.certify_key() : r.attach_key_cert();
    return c.key() + (c.serial().empty() ? "" : " serial:" + c.serial());
  }
  if (r.has_ssh_sign_certificate() && r.ssh_sign_certificate().serial() != 0) {
    // The CA key ("name@version") and the certificate's serial and key id.
    const v1::SshCertificateInfo& c = r.ssh_sign_certificate();
    return c.key() + " ssh-serial:" + std::to_string(c.serial()) + " key-id:" + c.key_id();
  }
  if (r.has_issue_certificate() && !r.issue_certificate().serial().empty()) {
    return "profile:" + r.issue_certificate().profile() +
           " serial:" + r.issue_certificate().serial();
  }
  const auto* oneof = r.GetDescriptor()->FindOneofByName("result");
  const auto* refl = r.GetReflection();
  const auto* field = oneof ? refl->GetOneofFieldDescriptor(r, oneof) : nullptr;
  if (field == nullptr) return "";
  const auto& msg = refl->GetMessage(r, field);
  const auto* key = msg.GetDescriptor()->FindFieldByName("key");
  const auto* version = msg.GetDescriptor()->FindFieldByName("key_version");
  if (key == nullptr || version == nullptr ||
      key->type() != google::protobuf::FieldDescriptor::TYPE_STRING ||
      version->type() != google::protobuf::FieldDescriptor::TYPE_UINT32) {
    return "";
  }
  const std::string name = msg.GetReflection()->GetString(msg, key);
  const std::uint32_t v = msg.GetReflection()->GetUInt32(msg, version);
  if (name.empty() || v == 0) return "";
  return name + "@" + std::to_string(v);
}

bool NeedsIntent(std::string_view op) {
  static constexpr std::string_view kNoIntent[] = {"ping",
                                                   "sign",
                                                   "sign_batch",
                                                   "list_keys",
                                                   "get_key",
                                                   "get_public_key",
                                                   "audit_checkpoint",
                                                   "list_requests",
                                                   "get_request",
                                                   "get_policy",
                                                   "list_cas",
                                                   "get_ca",
                                                   "list_certificates",
                                                   "get_certificate",
                                                   "get_crl",
                                                   "unknown"};
  for (auto o : kNoIntent) {
    if (o == op) return false;
  }
  return true;
}

}  // namespace custos::service::request_info
