#include "dev_ca.h"

#include <openssl/evp.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <future>
#include <stdexcept>
#include <utility>

#include "custos/service/audit_log.h"
#include "custos/service/ca_bootstrap.h"
#include "custos/service/log.h"
#include "custos/v1/custos.pb.h"

namespace custos::init {
namespace {

constexpr char kRequester[] = "custos-init";

std::string Hex(const std::vector<std::uint8_t>& bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::uint8_t b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

std::string Sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 failed");
  }
  return Hex(std::vector<std::uint8_t>(md, md + len));
}

// One audit record per CA, written as custosd writes the record of a
// create_ca request (docs/audit.md), by principal "custos-init".
void AuditCaCreation(service::AuditLog& log, const v1::CreateCaRequest& op,
                     const service::BootstrappedCa& made) {
  service::audit::RequestFields fields;
  fields.principal = kRequester;
  fields.peer = "local";
  fields.op = "create_ca";
  fields.key = "ca:" + op.name();
  fields.op_sha256 = Sha256Hex(op.SerializeAsString());
  fields.outcome = "OK";
  std::promise<std::string> done;
  log.Append(fields, [&done](const service::Result<void>& r) {
    done.set_value(r ? std::string() : r.error());
  });
  const std::string error = done.get_future().get();
  if (!error.empty()) {
    throw std::runtime_error("cannot write the audit record of CA " + made.name + " (serial " +
                             made.serial + "): " + error);
  }
}

}  // namespace

DevCaHierarchy MakeDevCaHierarchy(pkcs11::Token& token, service::KeyStore& store,
                                  const std::string& audit_log_path) {
  // The audit log first: nothing is made that is not recorded.
  std::FILE* devnull = std::fopen("/dev/null", "w");
  if (devnull == nullptr) throw std::runtime_error("cannot open /dev/null");
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> devnull_closer(devnull, std::fclose);
  service::Logger quiet(service::LogLevel::kWarn, devnull);
  service::AuditOptions options;
  options.path = audit_log_path;
  auto log = service::AuditLog::Open(options, std::nullopt, quiet);
  if (!log) throw std::runtime_error("cannot open the audit log: " + log.error());

  // dev-root: P-384, self-signed, 10 years; dev-intermediate: P-256, under
  // dev-root, pathLenConstraint 0, 5 years.
  service::CaBootstrapSpec spec;
  spec.intermediate_crl_urls = {"http://ca.dev.custos.test/dev-root.crl"};
  auto made = service::BootstrapCaHierarchy(token, store, spec);
  if (!made) throw std::runtime_error("cannot make the dev CA hierarchy: " + made.error());

  // The audit records read as those of the create_ca requests that would
  // have made the same CAs.
  v1::CreateCaRequest root_op;
  root_op.set_name(spec.root_name);
  root_op.set_key(spec.root_name);
  root_op.set_subject(spec.root_subject);
  root_op.set_validity_seconds(static_cast<std::uint64_t>(spec.root_validity.count()));
  AuditCaCreation(**log, root_op, made->root);
  v1::CreateCaRequest inter_op;
  inter_op.set_name(spec.intermediate_name);
  inter_op.set_key(spec.intermediate_name);
  inter_op.set_subject(spec.intermediate_subject);
  inter_op.set_validity_seconds(static_cast<std::uint64_t>(spec.intermediate_validity.count()));
  inter_op.set_parent(spec.root_name);
  inter_op.set_path_len(spec.intermediate_path_len);
  inter_op.set_has_path_len(true);
  AuditCaCreation(**log, inter_op, made->intermediate);
  (*log)->Close();

  return DevCaHierarchy{made->root.cert_der, made->intermediate.cert_der};
}

}  // namespace custos::init
