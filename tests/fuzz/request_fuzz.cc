// Fuzz target: a Request body from a peer, parsed and every field touched the
// way the service reads it, then re-encoded and framed again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "custos/client/framing.h"
#include "custos/v1/custos.pb.h"
#include "google/protobuf/stubs/logging.h"

namespace {

// Protobuf logs each string field with invalid UTF-8; the noise hides findings.
const bool kQuietProtobuf = [] {
  google::protobuf::SetLogHandler(nullptr);
  return true;
}();

std::size_t sink = 0;  // keeps the reads from being optimised away

void Touch(std::string_view s) {
  sink += s.size() + (s.empty() ? 0 : static_cast<unsigned char>(s[0]));
}

void Check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  custos::v1::Request request;
  if (!custos::client::ParseRequest(body, &request)) return 0;

  sink += request.id() + request.deadline_ms();
  Touch(request.trace_id());
  Touch(request.idempotency_key());
  Touch(request.note());
  switch (request.op_case()) {
    case custos::v1::Request::kPing:
      break;
    case custos::v1::Request::kSign:
      Touch(request.sign().key());
      Touch(request.sign().algorithm());
      Touch(request.sign().digest());
      Touch(request.sign().message());
      Touch(request.sign().file_name());
      break;
    case custos::v1::Request::kSignBatch:
      Touch(request.sign_batch().key());
      Touch(request.sign_batch().algorithm());
      for (const auto& item : request.sign_batch().items()) {
        Touch(item.ref());
        Touch(item.digest());
        Touch(item.message());
      }
      break;
    case custos::v1::Request::kCreateKey:
      Touch(request.create_key().name());
      Touch(request.create_key().key_type());
      Touch(request.create_key().usage());
      break;
    case custos::v1::Request::kListKeys:
      break;
    case custos::v1::Request::kGetKey:
      Touch(request.get_key().key());
      break;
    case custos::v1::Request::kGetPublicKey:
      Touch(request.get_public_key().key());
      break;
    case custos::v1::Request::kRotateKey:
      Touch(request.rotate_key().name());
      break;
    case custos::v1::Request::kDisableKey:
      Touch(request.disable_key().key());
      break;
    case custos::v1::Request::kEnableKey:
      Touch(request.enable_key().key());
      break;
    case custos::v1::Request::kDestroyKey:
      Touch(request.destroy_key().key());
      break;
    case custos::v1::Request::kMarkCompromised:
      Touch(request.mark_compromised().key());
      break;
    case custos::v1::Request::kAuditCheckpoint:
      break;
    case custos::v1::Request::kListRequests:
      Touch(request.list_requests().state());
      break;
    case custos::v1::Request::kGetRequest:
      Touch(request.get_request().id());
      break;
    case custos::v1::Request::kSubmitApproval:
      Touch(request.submit_approval().statement());
      Touch(request.submit_approval().signature());
      Touch(request.submit_approval().reason());
      break;
    case custos::v1::Request::kProposePolicy:
      Touch(request.propose_policy().text());
      break;
    case custos::v1::Request::kGetPolicy:
      break;
    case custos::v1::Request::kCreateCa:
      Touch(request.create_ca().name());
      Touch(request.create_ca().key());
      Touch(request.create_ca().subject());
      Touch(request.create_ca().parent());
      sink += request.create_ca().validity_seconds() +
              static_cast<std::size_t>(request.create_ca().path_len());
      break;
    case custos::v1::Request::kListCas:
      break;
    case custos::v1::Request::kSshSignCertificate: {
      const auto& r = request.ssh_sign_certificate();
      Touch(r.key());
      Touch(r.public_key());
      Touch(r.cert_type());
      for (const auto& p : r.principals()) Touch(p);
      sink += r.validity_seconds();
      Touch(r.key_id());
      Touch(r.force_command());
      Touch(r.source_address());
      for (const auto& e : r.extensions()) Touch(e);
      Touch(r.profile());
      break;
    }
    case custos::v1::Request::kSignSshsig:
      Touch(request.sign_sshsig().key());
      Touch(request.sign_sshsig().namespace_());
      Touch(request.sign_sshsig().sha512_digest());
      Touch(request.sign_sshsig().file_name());
      break;
    case custos::v1::Request::kListSshCertificates:
      Touch(request.list_ssh_certificates().key());
      Touch(request.list_ssh_certificates().requester());
      break;
    case custos::v1::Request::kSignCms:
      Touch(request.sign_cms().key());
      Touch(request.sign_cms().digest_algorithm());
      Touch(request.sign_cms().digest());
      Touch(request.sign_cms().file_name());
      break;
    case custos::v1::Request::kCertifyKey:
      Touch(request.certify_key().key());
      Touch(request.certify_key().profile());
      Touch(request.certify_key().subject());
      for (const auto& san : request.certify_key().sans()) Touch(san);
      break;
    case custos::v1::Request::kAttachKeyCert:
      Touch(request.attach_key_cert().key());
      Touch(request.attach_key_cert().cert_der());
      for (const auto& c : request.attach_key_cert().chain_der()) Touch(c);
      break;
    case custos::v1::Request::kGetCa:
      Touch(request.get_ca().name());
      break;
    case custos::v1::Request::kCaCsr:
      Touch(request.ca_csr().name());
      Touch(request.ca_csr().key());
      Touch(request.ca_csr().subject());
      break;
    case custos::v1::Request::kImportCaCert:
      Touch(request.import_ca_cert().name());
      Touch(request.import_ca_cert().cert_der());
      for (const auto& c : request.import_ca_cert().chain_der()) Touch(c);
      break;
    case custos::v1::Request::kIssueCertificate:
      Touch(request.issue_certificate().profile());
      Touch(request.issue_certificate().csr());
      Touch(request.issue_certificate().renews());
      for (const auto& s : request.issue_certificate().sans()) Touch(s);
      break;
    case custos::v1::Request::kListCertificates:
      Touch(request.list_certificates().ca());
      Touch(request.list_certificates().requester());
      Touch(request.list_certificates().profile());
      break;
    case custos::v1::Request::kGetCertificate:
      Touch(request.get_certificate().serial());
      Touch(request.get_certificate().ca());
      break;
    case custos::v1::Request::kRevokeCertificate:
      Touch(request.revoke_certificate().serial());
      Touch(request.revoke_certificate().ca());
      Touch(request.revoke_certificate().reason());
      break;
    case custos::v1::Request::kGetCrl:
      Touch(request.get_crl().ca());
      break;
    case custos::v1::Request::OP_NOT_SET:
      break;
  }

  // What parses must re-encode, frame, decode and parse to the same message.
  const std::string frame = custos::client::EncodeFrame(request);
  if (frame.size() == custos::client::kFrameHeaderSize) return 0;  // empty message
  custos::client::FrameDecoder decoder(frame.size());
  Check(decoder.Feed(frame) == frame.size());
  auto again = decoder.Next();
  Check(again.has_value());
  custos::v1::Request reparsed;
  Check(custos::client::ParseRequest(*again, &reparsed));
  Check(reparsed.SerializeAsString() == request.SerializeAsString());
  return 0;
}
