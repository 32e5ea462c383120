#include "custos/service/core.h"

#include <openssl/evp.h>

#include <array>
#include <ctime>
#include <mutex>

#include "core_internal.h"
#include "custos/service/key_name.h"
#include "ssh/ssh.h"

namespace custos::service {

namespace v1 = custos::v1;
using policy::Operation;

namespace core_internal {

constexpr std::array<std::string_view, 5> kUsages = {"code-signing", "ca", "ssh-ca", "timestamping",
                                                     "audit"};

bool IsKnownUsage(std::string_view usage) {
  for (auto u : kUsages) {
    if (u == usage) return true;
  }
  return false;
}

std::string Hex(std::span<const std::uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (auto b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xF]);
  }
  return out;
}

std::string Sha256Hex(std::span<const std::uint8_t> bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr) != 1) return "";
  return Hex({md, len});
}

// Untrusted text in a message: printable ASCII, bounded.
std::string Quote(std::string_view text) {
  std::string out = "\"";
  for (std::size_t i = 0; i < text.size() && i < 80; ++i) {
    const char c = text[i];
    out.push_back(c >= 0x20 && c < 0x7F ? c : '?');
  }
  if (text.size() > 80) out += "...";
  out.push_back('"');
  return out;
}

void SetStatus(v1::Status* s, v1::StatusCode code, std::string message) {
  s->set_code(code);
  s->set_message(std::move(message));
}

void FromTokenError(const pkcs11::Error& e, std::string_view what, v1::Status* s) {
  const bool retry = e.retryable();
  s->set_code(retry ? v1::UNAVAILABLE : v1::INTERNAL);
  s->set_retryable(retry);
  s->set_ckr(e.ckr_name());
  s->set_message(std::string(what) + ": " + e.message() +
                 (retry ? " (the HSM may recover; retry later)" : ""));
}

std::string AllAlgorithmNames() {
  std::string out;
  for (auto a : {pkcs11::SignAlgorithm::kEcdsaP256Sha256, pkcs11::SignAlgorithm::kEcdsaP384Sha384,
                 pkcs11::SignAlgorithm::kRsaPkcs1Sha256, pkcs11::SignAlgorithm::kRsaPkcs1Sha384,
                 pkcs11::SignAlgorithm::kRsaPkcs1Sha512, pkcs11::SignAlgorithm::kRsaPssSha256,
                 pkcs11::SignAlgorithm::kRsaPssSha384, pkcs11::SignAlgorithm::kRsaPssSha512,
                 pkcs11::SignAlgorithm::kEd25519}) {
    if (!out.empty()) out += ", ";
    out += pkcs11::SignAlgorithmName(a);
  }
  return out;
}

std::string AlgorithmsOf(pkcs11::KeyType type) {
  std::string out;
  for (auto a : pkcs11::AlgorithmsFor(type)) {
    if (!out.empty()) out += ", ";
    out += pkcs11::SignAlgorithmName(a);
  }
  return out;
}

std::string_view HashDisplayName(pkcs11::HashAlgorithm h) {
  switch (h) {
    case pkcs11::HashAlgorithm::kSha256:
      return "SHA-256";
    case pkcs11::HashAlgorithm::kSha384:
      return "SHA-384";
    case pkcs11::HashAlgorithm::kSha512:
      return "SHA-512";
    case pkcs11::HashAlgorithm::kNone:
      break;
  }
  return "";
}

std::span<const std::uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::int64_t Now() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::span<const std::string_view> Usages() { return kUsages; }

std::string VersionKey(std::string_view name, std::uint32_t version) {
  return std::string(name) + "@" + std::to_string(version);
}

Operation OperationOf(KeyAction action) {
  switch (action) {
    case KeyAction::kDisable:
      return Operation::kDisable;
    case KeyAction::kEnable:
      return Operation::kEnable;
    case KeyAction::kMarkCompromised:
      return Operation::kMarkCompromised;
    case KeyAction::kDestroy:
      return Operation::kDestroy;
  }
  return Operation::kDestroy;
}

bool CheckInput(pkcs11::SignAlgorithm alg, const std::string& digest, const std::string& message,
                std::size_t max_message, std::span<const std::uint8_t>* input, std::string* error) {
  const auto name = pkcs11::SignAlgorithmName(alg);
  const auto hash = pkcs11::HashOf(alg);
  if (hash == pkcs11::HashAlgorithm::kNone) {
    if (!digest.empty()) {
      *error = std::string(name) + " signs the message itself: send message, not digest";
      return false;
    }
    if (message.empty()) {
      *error = std::string(name) + " needs a non-empty message";
      return false;
    }
    if (message.size() > max_message) {
      *error = "message is " + std::to_string(message.size()) + " bytes; the limit for " +
               std::string(name) + " is " + std::to_string(max_message) + " bytes";
      return false;
    }
    *input = Bytes(message);
    return true;
  }
  const std::size_t want = pkcs11::DigestLength(hash);
  if (!message.empty()) {
    *error = std::string(name) + " signs a digest: send the " + std::string(HashDisplayName(hash)) +
             " digest of the data, not the message";
    return false;
  }
  if (digest.size() != want) {
    *error = "digest is " + std::to_string(digest.size()) + " bytes; " + std::string(name) +
             " needs a " + std::to_string(want) + "-byte " + std::string(HashDisplayName(hash)) +
             " digest";
    return false;
  }
  *input = Bytes(digest);
  return true;
}

}  // namespace core_internal

using namespace core_internal;

SigningCore::SigningCore(std::unique_ptr<pkcs11::Token> token, policy::Policy policy,
                         std::unique_ptr<KeyStore> store, CoreLimits limits, Logger& logger)
    : token_(std::move(token)),
      store_(std::move(store)),
      limits_(std::move(limits)),
      logger_(logger),
      policy_(std::make_shared<const policy::Policy>(std::move(policy))) {}

SigningCore::~SigningCore() {
  {
    std::lock_guard<std::mutex> lock(sweeper_mu_);
    stopping_ = true;
  }
  sweeper_cv_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
}

Result<std::unique_ptr<SigningCore>> SigningCore::Create(std::unique_ptr<pkcs11::Token> token,
                                                         policy::Policy policy,
                                                         std::string policy_text,
                                                         std::unique_ptr<KeyStore> store,
                                                         CoreLimits limits, Logger& logger) {
  if (!token || !store) return Error{"signing core needs a token and a key store"};
  auto records = store->LoadAll();
  if (!records) return Error{records.error()};
  auto active = store->ActivePolicy();
  if (!active) return Error{active.error()};
  // The policy in force: the store's active one, or the file (docs/quorum.md).
  std::vector<audit::RequestFields> startup_records;
  const std::string file_sha = Sha256Hex(Bytes(policy_text));
  auto import = [&](std::string_view request_id) -> Result<void> {
    PolicyRecord rec;
    rec.version = policy.version();
    rec.text = policy_text;
    rec.sha256 = file_sha;
    rec.activated_at = Now();
    rec.request_id = std::string(request_id);
    rec.proposed_by = "policy file";
    rec.active = true;
    if (auto r = store->ActivatePolicy(rec); !r) return r;
    audit::RequestFields f;
    f.kind = "request";
    f.principal = "custosd";
    f.op = "policy_import";
    f.key = "policy@" + std::to_string(rec.version);
    f.op_sha256 = file_sha;
    f.outcome = "OK";
    f.quorum_request = rec.request_id;
    startup_records.push_back(std::move(f));
    LogLine(logger, LogLevel::kInfo, "policy_imported")
        .Unsigned("version", rec.version)
        .Str("request_id", rec.request_id)
        .Str("sha256", file_sha);
    return {};
  };
  if (!active->has_value()) {
    if (auto r = import("bootstrap"); !r) return Error{r.error()};
  } else if ((*active)->sha256 != file_sha) {
    const PolicyRecord& stored = **active;
    auto parsed = policy::Policy::Parse(stored.text);
    if (auto* e = std::get_if<policy::ParseError>(&parsed)) {
      return Error{"state store: active policy version " + std::to_string(stored.version) +
                   " does not parse: " + e->ToString("stored policy")};
    }
    auto& stored_policy = std::get<policy::Policy>(parsed);
    policy::QuorumQuery q;
    q.operation = policy::QuorumOperation::kPolicyChange;
    const bool initialised = !policy::QuorumPolicy(stored_policy).QuorumFor(q).empty();
    if (initialised) {
      LogLine(logger, LogLevel::kWarn, "policy_file_ignored")
          .Unsigned("file_version", policy.version())
          .Unsigned("active_version", stored.version)
          .Str("message",
               "the policy file differs from the active policy, which changes only through "
               "quorum: use `custos policy propose FILE`");
      policy = std::move(stored_policy);
    } else if (policy.version() > stored.version) {
      if (auto r = import("file"); !r) return Error{r.error()};
    } else {
      return Error{"policy file version " + std::to_string(policy.version()) +
                   " differs from the active policy version " + std::to_string(stored.version) +
                   " in the state store but is not newer: raise its version to replace it"};
    }
  }
  std::unique_ptr<SigningCore> core(new SigningCore(std::move(token), std::move(policy),
                                                    std::move(store), std::move(limits), logger));
  core->startup_records_ = std::move(startup_records);
  for (auto& rec : records.value()) {
    auto type = pkcs11::ParseKeyType(rec.key_type);
    if (!type) {
      return Error{"state store: key " + rec.name + " has unknown key type \"" + rec.key_type +
                   "\""};
    }
    auto key = std::make_shared<CachedKey>();
    key->name = rec.name;
    key->type = *type;
    key->usage = rec.usage;
    key->created_at = rec.created_at;
    for (auto& v : rec.versions) {
      CachedVersion cv;
      cv.ref.label = v.token_label;
      cv.ref.id = v.token_id;
      cv.ref.type = *type;
      cv.ref.spki_der = v.spki_der;
      cv.spki_sha256 = Sha256Hex(v.spki_der);
      cv.record = std::move(v);
      key->versions.emplace(cv.record.version, std::move(cv));
    }
    key->Refresh();
    core->keys_.emplace(rec.name, std::move(key));
  }
  core->LogReconcile(core->Reconcile());
  return core;
}

Result<std::vector<std::uint8_t>> SigningCore::SignAuditDigest(std::string_view name,
                                                               std::span<const std::uint8_t> digest,
                                                               std::string* key_version) {
  auto key = Find(name);
  if (!key) return Error{"no audit key named " + std::string(name)};
  if (key->usage != "audit" || key->type != pkcs11::KeyType::kEcP256) {
    return Error{"key " + std::string(name) + " is not an ec-p256 key of usage audit"};
  }
  auto it = key->versions.find(key->active_version);
  if (it == key->versions.end() || it->second.record.state != KeyState::kActive) {
    return Error{"audit key " + std::string(name) + " has no active version"};
  }
  auto sig = token_->Sign(it->second.ref, pkcs11::SignAlgorithm::kEcdsaP256Sha256, digest);
  if (!sig)
    return Error{"signing a checkpoint with " + std::string(name) + ": " + sig.error().message()};
  *key_version = key->name + "@" + std::to_string(it->first);
  return std::move(sig.value());
}

std::shared_ptr<const SigningCore::CachedKey> SigningCore::Find(std::string_view name) const {
  std::shared_lock lock(mu_);
  auto it = keys_.find(name);
  return it == keys_.end() ? nullptr : it->second;
}

std::shared_ptr<const SigningCore::CachedKey> SigningCore::Find(
    std::string_view name, std::shared_ptr<const policy::Policy>* policy) const {
  std::shared_lock lock(mu_);
  *policy = policy_;
  auto it = keys_.find(name);
  return it == keys_.end() ? nullptr : it->second;
}

std::shared_ptr<const policy::Policy> SigningCore::CurrentPolicy() const {
  std::shared_lock lock(mu_);
  return policy_;
}

std::uint64_t SigningCore::policy_version() const { return CurrentPolicy()->version(); }

bool SigningCore::Authorize(std::string_view principal, const policy::Policy& pol, Operation op,
                            std::string_view name, const CachedKey* key, std::string_view algorithm,
                            v1::Status* status) const {
  policy::KeyRequest req;
  req.principal = std::string(principal);
  req.operation = op;
  req.key_name = std::string(name);
  req.algorithm = std::string(algorithm);
  policy::Decision on_key;
  if (key) {
    req.key_usage = key->usage;
    on_key = pol.Check(req);
    if (on_key.allowed) return true;
  }
  // Refused, or no such key. A principal refused this operation on this name
  // under every usage gets the same answer whether or not the key exists.
  // Rotating a missing key has no key type to check: any type counts.
  std::vector<std::string> algorithms{std::string(algorithm)};
  if (!key && op == Operation::kRotate && algorithm.empty()) {
    algorithms.clear();
    for (auto t :
         {pkcs11::KeyType::kEcP256, pkcs11::KeyType::kEcP384, pkcs11::KeyType::kRsa2048,
          pkcs11::KeyType::kRsa3072, pkcs11::KeyType::kRsa4096, pkcs11::KeyType::kEd25519}) {
      algorithms.emplace_back(pkcs11::KeyTypeName(t));
    }
  }
  policy::Decision first;
  bool allowed_somehow = false;
  for (std::size_t i = 0; i < kUsages.size() && !allowed_somehow; ++i) {
    req.key_usage = std::string(kUsages[i]);
    for (std::size_t j = 0; j < algorithms.size() && !allowed_somehow; ++j) {
      req.algorithm = algorithms[j];
      auto d = pol.Check(req);
      allowed_somehow = d.allowed;
      if (i == 0 && j == 0) first = std::move(d);
    }
  }
  if (allowed_somehow && !key) {
    SetStatus(status, v1::NOT_FOUND, "no key named " + Quote(name));
    return false;
  }
  const policy::Decision& refusal = allowed_somehow ? on_key : first;
  SetStatus(status, v1::PERMISSION_DENIED, "permission denied: " + refusal.reason);
  status->set_policy_rule(refusal.rule);
  return false;
}

bool SigningCore::Resolve(std::string_view principal, Operation op, std::string_view key_text,
                          std::string_view algorithm_text, Resolved* out,
                          v1::Status* status) const {
  auto ref = ParseKeyReference(key_text);
  if (!ref) {
    SetStatus(status, v1::INVALID_ARGUMENT, ref.error());
    return false;
  }
  std::optional<pkcs11::SignAlgorithm> alg;
  if (op == Operation::kSign) {
    alg = pkcs11::ParseSignAlgorithm(algorithm_text);
    if (!alg) {
      SetStatus(status, v1::INVALID_ARGUMENT,
                algorithm_text.empty() ? "no algorithm named: use one of " + AllAlgorithmNames()
                                       : "unknown algorithm " + Quote(algorithm_text) +
                                             ": use one of " + AllAlgorithmNames());
      return false;
    }
    out->algorithm = *alg;
  }
  out->key = Find(ref->name, &out->policy);
  if (!Authorize(principal, *out->policy, op, ref->name, out->key.get(), alg ? algorithm_text : "",
                 status)) {
    return false;
  }
  const CachedKey& key = *out->key;
  // Unnamed: signing uses the active version (0 if none), everything else the
  // current one (the active version, else the highest).
  const std::uint32_t version =
      ref->version ? *ref->version
                   : (op == Operation::kSign ? key.active_version : CurrentVersion(key.states));
  if (version != 0 || op != Operation::kSign) {
    auto it = key.versions.find(version);
    if (it == key.versions.end()) {
      SetStatus(status, v1::NOT_FOUND,
                "key " + key.name + " has no version " + std::to_string(version));
      return false;
    }
    out->version = &it->second;
  }
  if (op == Operation::kSign) {
    if (auto refusal = SignRefusal(key.name, key.states, version, Now())) {
      SetStatus(status, v1::FAILED_PRECONDITION, std::move(*refusal));
      return false;
    }
    if (!pkcs11::AlgorithmFitsKey(*alg, key.type)) {
      SetStatus(status, v1::INVALID_ARGUMENT,
                "algorithm " + std::string(pkcs11::SignAlgorithmName(*alg)) + " does not fit key " +
                    key.name + " (" + std::string(pkcs11::KeyTypeName(key.type)) + "); use " +
                    AlgorithmsOf(key.type));
      return false;
    }
  }
  return true;
}

v1::Response SigningCore::Handle(std::string_view principal, std::string_view /*peer*/,
                                 const v1::Request& request) {
  v1::Response resp;
  resp.set_id(request.id());
  if (principal.empty() && request.op_case() != v1::Request::kPing) {
    SetStatus(resp.mutable_status(), v1::UNAUTHENTICATED,
              "the client certificate names no principal (no URI SAN, DNS SAN or CN)");
    return resp;
  }
  switch (request.op_case()) {
    case v1::Request::kPing:
      resp.mutable_ping();
      break;
    case v1::Request::kSign:
      HandleSign(principal, request, resp);
      break;
    case v1::Request::kSignBatch:
      HandleSignBatch(principal, request, resp);
      break;
    case v1::Request::kCreateKey:
      HandleCreateKey(principal, request, resp);
      break;
    case v1::Request::kListKeys:
      HandleListKeys(principal, request.list_keys(), resp);
      break;
    case v1::Request::kGetKey:
      HandleGetKey(principal, request.get_key(), resp);
      break;
    case v1::Request::kGetPublicKey:
      HandleGetPublicKey(principal, request.get_public_key(), resp);
      break;
    case v1::Request::kAuditCheckpoint:
      // Answered by the network side from the audit log (server.cc).
      SetStatus(resp.mutable_status(), v1::FAILED_PRECONDITION,
                "this custosd keeps no audit log, so it has no checkpoint");
      break;
    case v1::Request::kRotateKey:
      HandleRotateKey(principal, request, resp);
      break;
    case v1::Request::kDisableKey:
      HandleKeyAction(principal, KeyAction::kDisable, request, resp);
      break;
    case v1::Request::kEnableKey:
      HandleKeyAction(principal, KeyAction::kEnable, request, resp);
      break;
    case v1::Request::kDestroyKey:
      HandleKeyAction(principal, KeyAction::kDestroy, request, resp);
      break;
    case v1::Request::kMarkCompromised:
      HandleKeyAction(principal, KeyAction::kMarkCompromised, request, resp);
      break;
    case v1::Request::kListRequests:
      HandleListRequests(principal, request.list_requests(), resp);
      break;
    case v1::Request::kGetRequest:
      HandleGetRequest(principal, request.get_request(), resp);
      break;
    case v1::Request::kSubmitApproval:
      HandleSubmitApproval(principal, request.submit_approval(), resp);
      break;
    case v1::Request::kProposePolicy:
      HandleProposePolicy(principal, request, resp);
      break;
    case v1::Request::kGetPolicy:
      HandleGetPolicy(principal, resp);
      break;
    case v1::Request::kCreateCa:
    case v1::Request::kListCas:
    case v1::Request::kGetCa:
    case v1::Request::kCaCsr:
    case v1::Request::kImportCaCert:
    case v1::Request::kIssueCertificate:
    case v1::Request::kListCertificates:
    case v1::Request::kGetCertificate:
    case v1::Request::kRevokeCertificate:
    case v1::Request::kGetCrl:
      HandleCa(principal, request, resp);
      break;
    case v1::Request::kSshSignCertificate:
    case v1::Request::kSignSshsig:
    case v1::Request::kListSshCertificates:
      HandleSsh(principal, request, resp);
      break;
    case v1::Request::kSignCms:
    case v1::Request::kCertifyKey:
    case v1::Request::kAttachKeyCert:
      HandleCms(principal, request, resp);
      break;
    case v1::Request::OP_NOT_SET:
      SetStatus(resp.mutable_status(), v1::INVALID_ARGUMENT,
                "request names no operation this server knows (protocol custos/1)");
      break;
  }
  if (!resp.has_status()) resp.mutable_status()->set_code(v1::OK);
  return resp;
}

void SigningCore::HandleSign(std::string_view principal, const v1::Request& request,
                             v1::Response& resp) {
  const v1::SignRequest& req = request.sign();
  Resolved r;
  v1::Status* status = resp.mutable_status();
  if (!Resolve(principal, Operation::kSign, req.key(), req.algorithm(), &r, status)) return;
  std::span<const std::uint8_t> input;
  std::string error;
  if (!CheckInput(r.algorithm, req.digest(), req.message(), limits_.max_message_bytes, &input,
                  &error)) {
    SetStatus(status, v1::INVALID_ARGUMENT, std::move(error));
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
      if (req.file_name().size() > 256) {
        SetStatus(
            status, v1::INVALID_ARGUMENT,
            "file_name is " + std::to_string(req.file_name().size()) + " bytes; the limit is 256");
        return;
      }
      if (AnswerIdempotent(principal, request, resp)) return;
      const std::string alg(pkcs11::SignAlgorithmName(r.algorithm));
      QueueSpec spec;
      spec.operation = "sign";
      spec.key = VersionKey(r.key->name, r.version->record.version);
      spec.fields.emplace_back("key", spec.key);
      spec.fields.emplace_back("key-type", std::string(pkcs11::KeyTypeName(r.key->type)));
      spec.fields.emplace_back("usage", r.key->usage);
      spec.fields.emplace_back("algorithm", alg);
      if (req.message().empty()) {
        spec.fields.emplace_back("digest", Hex(input));
      } else {
        spec.fields.emplace_back("message-sha256", Sha256Hex(input));
      }
      if (!req.file_name().empty()) spec.fields.emplace_back("file", req.file_name());
      spec.summary =
          "sign " + spec.key + " " + alg + (req.file_name().empty() ? "" : " " + req.file_name());
      Enqueue(principal, request, r.policy->version(), std::move(reqs), std::move(spec), {}, resp);
      return;
    }
  }
  auto sig = token_->Sign(r.version->ref, r.algorithm, input);
  if (!sig) {
    FromTokenError(sig.error(), "signing failed", status);
    return;
  }
  status->set_code(v1::OK);
  auto* out = resp.mutable_sign();
  out->set_signature(sig->data(), sig->size());
  out->set_key(r.key->name);
  out->set_key_version(r.version->record.version);
  out->set_algorithm(std::string(pkcs11::SignAlgorithmName(r.algorithm)));
}

void SigningCore::HandleSignBatch(std::string_view principal, const v1::Request& request,
                                  v1::Response& resp) {
  const v1::SignBatchRequest& req = request.sign_batch();
  v1::Status* status = resp.mutable_status();
  if (req.items_size() == 0) {
    SetStatus(status, v1::INVALID_ARGUMENT, "sign_batch has no items");
    return;
  }
  if (static_cast<std::size_t>(req.items_size()) > limits_.max_batch_items) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "sign_batch has " + std::to_string(req.items_size()) + " items; the limit is " +
                  std::to_string(limits_.max_batch_items));
    return;
  }
  Resolved r;
  if (!Resolve(principal, Operation::kSign, req.key(), req.algorithm(), &r, status)) return;
  {
    policy::QuorumQuery q;
    q.operation = policy::QuorumOperation::kSign;
    q.key_name = r.key->name;
    q.key_usage = r.key->usage;
    std::unique_lock<std::mutex> quorum_lock(quorum_mu_, std::defer_lock);
    std::vector<policy::QuorumRequirement> reqs;
    if (!QuorumCheck(*r.policy, q, quorum_lock, &reqs, status)) return;
    if (!reqs.empty()) {
      // Under quorum every item must be signable: officers approve all of them.
      const std::string alg(pkcs11::SignAlgorithmName(r.algorithm));
      QueueSpec spec;
      spec.operation = "sign-batch";
      spec.key = VersionKey(r.key->name, r.version->record.version);
      spec.fields.emplace_back("key", spec.key);
      spec.fields.emplace_back("key-type", std::string(pkcs11::KeyTypeName(r.key->type)));
      spec.fields.emplace_back("usage", r.key->usage);
      spec.fields.emplace_back("algorithm", alg);
      for (const auto& item : req.items()) {
        std::span<const std::uint8_t> input;
        std::string error;
        if (!CheckInput(r.algorithm, item.digest(), item.message(), limits_.max_message_bytes,
                        &input, &error)) {
          SetStatus(status, v1::INVALID_ARGUMENT, "item " + Quote(item.ref()) + ": " + error);
          return;
        }
        spec.fields.emplace_back(
            "item", item.ref() + " " + (item.message().empty() ? Hex(input) : Sha256Hex(input)));
      }
      spec.summary = "sign-batch " + spec.key + " " + alg + " (" +
                     std::to_string(req.items_size()) + " items)";
      if (AnswerIdempotent(principal, request, resp)) return;
      Enqueue(principal, request, r.policy->version(), std::move(reqs), std::move(spec), {}, resp);
      return;
    }
  }
  status->set_code(v1::OK);
  auto* out = resp.mutable_sign_batch();
  out->set_key(r.key->name);
  out->set_key_version(r.version->record.version);
  out->set_algorithm(std::string(pkcs11::SignAlgorithmName(r.algorithm)));
  for (const auto& item : req.items()) {
    auto* result = out->add_results();
    result->set_ref(item.ref());
    std::span<const std::uint8_t> input;
    std::string error;
    if (!CheckInput(r.algorithm, item.digest(), item.message(), limits_.max_message_bytes, &input,
                    &error)) {
      SetStatus(result->mutable_status(), v1::INVALID_ARGUMENT, std::move(error));
      continue;
    }
    auto sig = token_->Sign(r.version->ref, r.algorithm, input);
    if (!sig) {
      FromTokenError(sig.error(), "signing failed", result->mutable_status());
      continue;
    }
    result->mutable_status()->set_code(v1::OK);
    result->set_signature(sig->data(), sig->size());
  }
}

void SigningCore::HandleCreateKey(std::string_view principal, const v1::Request& request,
                                  v1::Response& resp) {
  const v1::CreateKeyRequest& req = request.create_key();
  v1::Status* status = resp.mutable_status();
  if (!IsValidKeyName(req.name())) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "key name " + Quote(req.name()) +
                  " is invalid: use 1-64 of a-z 0-9 . _ - starting with a letter or digit");
    return;
  }
  auto type = pkcs11::ParseKeyType(req.key_type());
  if (!type) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "unknown key type " + Quote(req.key_type()) +
                  ": use one of ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519");
    return;
  }
  if (!IsKnownUsage(req.usage())) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "unknown key usage " + Quote(req.usage()) +
                  ": use one of code-signing, ca, ssh-ca, timestamping, audit");
    return;
  }
  if (req.crypto_period_seconds() > kMaxCryptoPeriodSeconds) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "crypto-period of " + std::to_string(req.crypto_period_seconds()) +
                  " seconds is longer than the limit of 100 years");
    return;
  }
  const auto pol = CurrentPolicy();
  {
    policy::KeyRequest pr;
    pr.principal = std::string(principal);
    pr.operation = Operation::kCreate;
    pr.key_name = req.name();
    pr.key_usage = req.usage();
    pr.algorithm = std::string(pkcs11::KeyTypeName(*type));
    auto d = pol->Check(pr);
    if (!d.allowed) {
      SetStatus(status, v1::PERMISSION_DENIED, "permission denied: " + d.reason);
      status->set_policy_rule(d.rule);
      return;
    }
  }
  std::unique_lock<std::mutex> quorum_lock(quorum_mu_, std::defer_lock);
  std::vector<policy::QuorumRequirement> reqs;
  {
    policy::QuorumQuery q;
    q.operation = policy::QuorumOperation::kKeyCreate;
    q.key_name = req.name();
    q.key_usage = req.usage();
    if (!QuorumCheck(*pol, q, quorum_lock, &reqs, status)) return;
    if (!reqs.empty() && AnswerIdempotent(principal, request, resp)) return;
  }
  {
    std::unique_lock lock(mu_);
    if (keys_.count(req.name()) || creating_.count(req.name())) {
      SetStatus(status, v1::ALREADY_EXISTS, "key " + req.name() + " already exists");
      return;
    }
    creating_.insert(req.name());
  }
  // Whatever happens below, the name is no longer being created afterwards.
  struct Unreserve {
    SigningCore* core;
    const std::string& name;
    ~Unreserve() {
      std::unique_lock lock(core->mu_);
      core->creating_.erase(name);
    }
  } unreserve{this, req.name()};

  const std::uint32_t version = 1;
  const std::string label = TokenLabel(req.name(), version);
  auto ref = token_->GenerateKeyPair(*type, label);
  if (!ref) {
    FromTokenError(ref.error(), "key generation failed", status);
    return;
  }
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  const bool queued = !reqs.empty();
  KeyRecord rec;
  rec.name = req.name();
  rec.key_type = std::string(pkcs11::KeyTypeName(*type));
  rec.usage = req.usage();
  rec.active_version = queued ? 0 : version;
  rec.created_at = now;
  KeyVersionRecord vr;
  vr.version = version;
  vr.state = queued ? KeyState::kPreActivation : KeyState::kActive;
  vr.created_at = now;
  vr.state_changed_at = now;
  if (req.crypto_period_seconds() != 0) {
    vr.expires_at = now + static_cast<std::int64_t>(req.crypto_period_seconds());
  }
  vr.token_label = label;
  vr.token_id = ref->id;
  vr.spki_der = ref->spki_der;
  rec.versions.push_back(vr);
  Result<KeyStore::InsertResult> inserted = KeyStore::InsertResult::kInserted;
  if (queued) {
    QueueSpec spec;
    spec.operation = "create-key";
    spec.key = VersionKey(req.name(), version);
    spec.fields.emplace_back("key", spec.key);
    spec.fields.emplace_back("key-type", rec.key_type);
    spec.fields.emplace_back("usage", rec.usage);
    spec.summary = "create-key " + spec.key + " " + rec.key_type + " " + rec.usage;
    StoreChange change;
    change.insert_key = &rec;
    if (!Enqueue(principal, request, pol->version(), std::move(reqs), std::move(spec), change,
                 resp)) {
      inserted = Error{status->message()};
      if (status->code() == v1::ALREADY_EXISTS) inserted = KeyStore::InsertResult::kAlreadyExists;
    }
  } else {
    inserted = store_->InsertKey(rec);
  }
  if (!inserted || *inserted != KeyStore::InsertResult::kInserted) {
    // Do not leave an orphan on the token that no metadata names.
    auto destroyed = token_->DestroyKey(ref.value());
    if (!destroyed) {
      LogLine(logger_, LogLevel::kWarn, "orphan_key_on_token")
          .Str("token_label", label)
          .Str("error", destroyed.error().message());
    }
    if (inserted) {
      SetStatus(status, v1::ALREADY_EXISTS, "key " + req.name() + " already exists");
    } else if (!queued) {
      SetStatus(status, v1::INTERNAL, "key generated but not recorded: " + inserted.error());
    }
    return;
  }
  auto key = std::make_shared<CachedKey>();
  key->name = rec.name;
  key->type = *type;
  key->usage = rec.usage;
  key->created_at = now;
  CachedVersion cv;
  cv.record = std::move(vr);
  cv.ref = std::move(ref.value());
  cv.spki_sha256 = Sha256Hex(cv.ref.spki_der);
  key->versions.emplace(version, std::move(cv));
  key->Refresh();
  {
    std::unique_lock lock(mu_);
    keys_.emplace(rec.name, key);
  }
  if (queued) return;  // answered PENDING_APPROVAL by Enqueue
  status->set_code(v1::OK);
  FillKeyInfo(*key, resp.mutable_create_key());
}

void SigningCore::HandleListKeys(std::string_view principal, const v1::ListKeysRequest& req,
                                 v1::Response& resp) {
  auto* out = resp.mutable_list_keys();
  ReconcileReport report;
  if (req.check()) {
    report = Reconcile();
    out->set_checked(true);
    if (!report.ok) out->set_check_error(report.error);
  }
  std::vector<std::shared_ptr<const CachedKey>> all;
  {
    std::shared_lock lock(mu_);
    all.reserve(keys_.size());
    for (const auto& [name, key] : keys_) all.push_back(key);
  }
  const auto pol = CurrentPolicy();
  policy::KeyRequest pr;
  pr.principal = std::string(principal);
  pr.operation = Operation::kRead;
  for (const auto& key : all) {
    pr.key_name = key->name;
    pr.key_usage = key->usage;
    if (pol->Check(pr).allowed) FillKeyInfo(*key, out->add_keys(), req.check() ? &report : nullptr);
  }
  // A token object is shown to a principal that may read a key of that name
  // (custos:NAME@N labels) or every key name (foreign objects too).
  auto may_read = [&](std::string_view name) {
    pr.key_name = std::string(name);
    for (auto usage : kUsages) {
      pr.key_usage = std::string(usage);
      if (pol->Check(pr).allowed) return true;
    }
    return false;
  };
  const bool reads_all = !report.unknown.empty() && may_read("*");
  for (const auto& obj : report.unknown) {
    bool visible = reads_all;
    if (!visible && obj.label().rfind("custos:", 0) == 0) {
      const std::string_view rest = std::string_view(obj.label()).substr(7);
      const std::string_view name = rest.substr(0, rest.find('@'));
      visible = IsValidKeyName(name) && may_read(name);
    }
    if (visible) *out->add_unknown_token_objects() = obj;
  }
  resp.mutable_status()->set_code(v1::OK);
}

void SigningCore::HandleGetKey(std::string_view principal, const v1::GetKeyRequest& req,
                               v1::Response& resp) {
  Resolved r;
  if (!Resolve(principal, Operation::kRead, req.key(), "", &r, resp.mutable_status())) return;
  resp.mutable_status()->set_code(v1::OK);
  FillKeyInfo(*r.key, resp.mutable_get_key());
  policy::QuorumQuery q;
  q.operation = policy::QuorumOperation::kSign;
  q.key_name = r.key->name;
  q.key_usage = r.key->usage;
  for (const auto& requirement : policy::QuorumPolicy(*r.policy).QuorumFor(q)) {
    resp.mutable_get_key()->add_sign_quorum_rules(requirement.rule);
  }
}

void SigningCore::HandleGetPublicKey(std::string_view principal, const v1::GetPublicKeyRequest& req,
                                     v1::Response& resp) {
  Resolved r;
  if (!Resolve(principal, Operation::kRead, req.key(), "", &r, resp.mutable_status())) return;
  resp.mutable_status()->set_code(v1::OK);
  auto* out = resp.mutable_get_public_key();
  out->set_key(r.key->name);
  out->set_key_version(r.version->record.version);
  out->set_key_type(std::string(pkcs11::KeyTypeName(r.key->type)));
  out->set_spki_der(r.version->ref.spki_der.data(), r.version->ref.spki_der.size());
  // The OpenSSH line, commented "custos:NAME" so that `custos -Y sign` finds
  // the key from a pubkey file (ssh_commands.cc); empty for keys SSH cannot
  // express.
  if (auto ssh_key = ssh::PublicKey::FromSpki(r.version->ref.spki_der); ssh_key.ok()) {
    out->set_ssh_public_key(ssh_key->ToLine("custos:" + r.key->name));
  }
  // The certificate attached to this version (cms_core.cc), if any.
  auto cert = store_->GetKeyCertificate(r.key->name, r.version->record.version);
  if (!cert) {
    SetStatus(resp.mutable_status(), v1::INTERNAL, cert.error());
    resp.clear_get_public_key();
    return;
  }
  if (cert->has_value()) {
    out->set_cert_der((*cert)->cert_der.data(), (*cert)->cert_der.size());
    for (const auto& c : (*cert)->chain) out->add_chain_der(c.data(), c.size());
  }
}

void SigningCore::FillKeyInfo(const CachedKey& key, v1::KeyInfo* info,
                              const ReconcileReport* check) {
  const std::int64_t now = Now();
  info->set_name(key.name);
  info->set_key_type(std::string(pkcs11::KeyTypeName(key.type)));
  info->set_usage(key.usage);
  info->set_active_version(key.active_version);
  for (const auto& [n, v] : key.versions) {
    auto* vi = info->add_versions();
    vi->set_version(n);
    vi->set_state(std::string(KeyStateName(v.record.state)));
    vi->set_created_at(v.record.created_at);
    vi->set_token_label(v.ref.label);
    vi->set_token_id(Hex(v.ref.id));
    vi->set_public_key_sha256(v.spki_sha256);
    vi->set_expires_at(v.record.expires_at);
    vi->set_expired(v.record.expires_at != 0 && now >= v.record.expires_at);
    vi->set_state_changed_at(v.record.state_changed_at);
    if (check != nullptr && check->ok) {
      auto c = check->versions.find(VersionKey(key.name, n));
      // A version created after the check started has not been compared.
      vi->set_token_check(c != check->versions.end() ? c->second : "not-checked");
    }
  }
  for (auto a : pkcs11::AlgorithmsFor(key.type)) {
    info->add_algorithms(std::string(pkcs11::SignAlgorithmName(a)));
  }
}

}  // namespace custos::service
