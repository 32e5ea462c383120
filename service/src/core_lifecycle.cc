// The key lifecycle half of SigningCore: rotation, state changes (disable,
// enable, mark-compromised, destroy) and reconciliation with the token. See
// docs/operations.md "Key lifecycle"; the state machine is key_lifecycle.h.
#include <ctime>
#include <mutex>

#include "core_internal.h"
#include "custos/service/core.h"
#include "custos/service/key_name.h"

namespace custos::service {

namespace v1 = custos::v1;
using policy::Operation;
using namespace core_internal;

SigningCore::ReconcileReport SigningCore::Reconcile() const {
  ReconcileReport report;
  auto listed = token_->ListPrivateKeys();
  if (!listed) {
    report.error = "cannot list the token's keys: " + listed.error().message();
    return report;
  }
  report.ok = true;
  // Token objects by label and id; `matched` marks those a version names.
  std::map<std::pair<std::string, std::string>, bool> matched;
  for (const auto& t : listed.value()) matched.emplace(std::make_pair(t.label, Hex(t.id)), false);
  std::vector<std::shared_ptr<const CachedKey>> all;
  {
    std::shared_lock lock(mu_);
    for (const auto& [name, key] : keys_) all.push_back(key);
  }
  for (const auto& key : all) {
    for (const auto& [n, v] : key->versions) {
      auto it = matched.find(std::make_pair(v.ref.label, Hex(v.ref.id)));
      const bool present = it != matched.end();
      if (present) it->second = true;
      std::string check;
      if (v.record.state == KeyState::kDestroyed) {
        check = present ? "present-after-destroy" : "absent";
      } else if (!present) {
        check = "missing";
      } else {
        auto found = token_->FindKey(v.ref.label, v.ref.id);
        if (!found) {
          check = "public-key-unreadable";
        } else {
          check = found->spki_der == v.ref.spki_der ? "present" : "public-key-differs";
        }
      }
      if (check != "present" && check != "absent") ++report.problems;
      report.versions.emplace(VersionKey(key->name, n), std::move(check));
    }
  }
  for (const auto& t : listed.value()) {
    auto it = matched.find(std::make_pair(t.label, Hex(t.id)));
    if (it == matched.end() || it->second) continue;
    it->second = true;  // report duplicates of one label and id once
    v1::TokenObjectInfo info;
    info.set_label(t.label);
    info.set_token_id(Hex(t.id));
    if (t.type) info.set_key_type(std::string(pkcs11::KeyTypeName(*t.type)));
    info.set_reason(t.label.rfind("custos:", 0) == 0 ? "custos label not in the key store"
                                                     : "foreign object");
    report.unknown.push_back(std::move(info));
    ++report.problems;
  }
  return report;
}

void SigningCore::LogReconcile(const ReconcileReport& report) const {
  if (!report.ok) {
    LogLine(logger_, LogLevel::kWarn, "reconcile_failed").Str("error", report.error);
    return;
  }
  for (const auto& [key, check] : report.versions) {
    if (check == "present" || check == "absent") continue;
    LogLine(logger_, LogLevel::kWarn, "reconcile_version")
        .Str("key", key)
        .Str("token_check", check)
        .Str("message", check == "missing" ? "the token has no objects for this key version; "
                                             "signing with it will fail"
                        : check == "present-after-destroy"
                            ? "the key version is destroyed but its objects are on the token"
                            : "the token's public key differs from the stored one or cannot be "
                              "read; signing with this version will be refused");
  }
  for (const auto& obj : report.unknown) {
    LogLine(logger_, LogLevel::kWarn, "reconcile_unknown_object")
        .Str("token_label", obj.label())
        .Str("token_id", obj.token_id())
        .Str("key_type", obj.key_type())
        .Str("reason", obj.reason());
  }
  LogLine(logger_, report.problems == 0 ? LogLevel::kInfo : LogLevel::kWarn, "reconcile")
      .Unsigned("versions", report.versions.size())
      .Unsigned("unknown_objects", report.unknown.size())
      .Unsigned("problems", report.problems)
      .Str("message", "compared the key store with the token; nothing was changed");
}

std::size_t SigningCore::key_count() const {
  std::shared_lock lock(mu_);
  return keys_.size();
}

bool SigningCore::Commit(std::shared_ptr<CachedKey> key, v1::Status* status) {
  key->Refresh();
  if (auto saved = store_->UpdateKey(key->ToRecord()); !saved) {
    SetStatus(status, v1::INTERNAL, "key change not recorded: " + saved.error());
    return false;
  }
  std::unique_lock lock(mu_);
  keys_[key->name] = std::move(key);
  return true;
}

void SigningCore::HandleRotateKey(std::string_view principal, const v1::Request& request,
                                  v1::Response& resp) {
  const v1::RotateKeyRequest& req = request.rotate_key();
  v1::Status* status = resp.mutable_status();
  if (!IsValidKeyName(req.name())) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "key name " + Quote(req.name()) +
                  " is invalid: rotate takes a key name (no @version): 1-64 of a-z 0-9 . _ - "
                  "starting with a letter or digit");
    return;
  }
  if (req.crypto_period_seconds() > kMaxCryptoPeriodSeconds) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "crypto-period of " + std::to_string(req.crypto_period_seconds()) +
                  " seconds is longer than the limit of 100 years");
    return;
  }
  std::shared_ptr<const policy::Policy> pol;
  auto found = Find(req.name(), &pol);
  if (!Authorize(principal, *pol, Operation::kRotate, req.name(), found.get(),
                 found ? pkcs11::KeyTypeName(found->type) : "", status)) {
    return;
  }
  // A new version is a key creation for quorum rules.
  std::unique_lock<std::mutex> quorum_lock(quorum_mu_, std::defer_lock);
  std::vector<policy::QuorumRequirement> reqs;
  {
    policy::QuorumQuery q;
    q.operation = policy::QuorumOperation::kKeyCreate;
    q.key_name = found->name;
    q.key_usage = found->usage;
    if (!QuorumCheck(*pol, q, quorum_lock, &reqs, status)) return;
    if (!reqs.empty() && AnswerIdempotent(principal, request, resp)) return;
  }
  const bool queued = !reqs.empty();
  std::lock_guard<std::mutex> serial(lifecycle_mu_);
  auto current = Find(req.name());
  if (!current) {
    SetStatus(status, v1::NOT_FOUND, "no key named " + Quote(req.name()));
    return;
  }
  const std::uint32_t version =
      current->versions.empty() ? 1 : current->versions.rbegin()->first + 1;
  const std::string label = TokenLabel(current->name, version);
  auto ref = token_->GenerateKeyPair(current->type, label);
  if (!ref) {
    FromTokenError(ref.error(), "key generation failed", status);
    return;
  }
  const std::int64_t now = Now();
  auto updated = std::make_shared<CachedKey>(*current);
  std::uint32_t previous = 0;
  if (!queued) {
    for (auto& [n, v] : updated->versions) {
      if (v.record.state != KeyState::kActive) continue;
      v.record.state = KeyState::kDeactivated;
      v.record.state_changed_at = now;
      previous = n;
    }
  }
  CachedVersion cv;
  cv.record.version = version;
  cv.record.state = queued ? KeyState::kPreActivation : KeyState::kActive;
  cv.record.created_at = now;
  cv.record.state_changed_at = now;
  if (req.crypto_period_seconds() != 0) {
    cv.record.expires_at = now + static_cast<std::int64_t>(req.crypto_period_seconds());
  }
  cv.record.token_label = label;
  cv.record.token_id = ref->id;
  cv.record.spki_der = ref->spki_der;
  cv.ref = ref.value();
  cv.spki_sha256 = Sha256Hex(cv.ref.spki_der);
  updated->versions.emplace(version, std::move(cv));
  bool committed = false;
  if (queued) {
    updated->Refresh();
    const KeyRecord rec = updated->ToRecord();
    QueueSpec spec;
    spec.operation = "rotate-key";
    spec.key = VersionKey(current->name, version);
    spec.fields.emplace_back("key", spec.key);
    spec.fields.emplace_back("key-type", rec.key_type);
    spec.fields.emplace_back("usage", rec.usage);
    spec.summary = "rotate-key " + spec.key + " " + rec.key_type + " " + rec.usage;
    StoreChange change;
    change.update_key = &rec;
    committed =
        Enqueue(principal, request, pol->version(), std::move(reqs), std::move(spec), change, resp);
    if (committed) {
      std::unique_lock lock(mu_);
      keys_[updated->name] = updated;
    }
  } else {
    committed = Commit(updated, status);
  }
  if (!committed) {
    // Do not leave an orphan on the token that no metadata names.
    if (auto destroyed = token_->DestroyKey(ref.value()); !destroyed) {
      LogLine(logger_, LogLevel::kWarn, "orphan_key_on_token")
          .Str("token_label", label)
          .Str("error", destroyed.error().message());
    }
    return;
  }
  if (queued) return;  // answered PENDING_APPROVAL by Enqueue
  LogLine(logger_, LogLevel::kInfo, "key_rotated")
      .Str("key", VersionKey(req.name(), version))
      .Str("deactivated", previous != 0 ? VersionKey(req.name(), previous) : "")
      .Str("principal", principal);
  status->set_code(v1::OK);
  FillKeyInfo(*Find(req.name()), resp.mutable_rotate_key());
}

bool SigningCore::PrepareKeyAction(KeyAction action, const CachedKey& current,
                                   std::uint32_t version, std::int64_t now, bool idempotent,
                                   std::shared_ptr<CachedKey>* updated, v1::Status* status) {
  auto it = current.versions.find(version);
  if (it == current.versions.end()) {
    SetStatus(status, v1::NOT_FOUND,
              "key " + current.name + " has no version " + std::to_string(version));
    return false;
  }
  const KeyState before = it->second.record.state;
  if (idempotent) {
    const bool done = (action == KeyAction::kDisable && before == KeyState::kDeactivated) ||
                      (action == KeyAction::kEnable && before == KeyState::kActive) ||
                      (action == KeyAction::kMarkCompromised && before == KeyState::kCompromised) ||
                      (action == KeyAction::kDestroy && before == KeyState::kDestroyed);
    if (done) {
      *updated = std::make_shared<CachedKey>(current);
      return true;
    }
  }
  auto next = NextState(action, current.name, current.states, version, now);
  if (!next) {
    SetStatus(status, v1::FAILED_PRECONDITION, next.error());
    return false;
  }
  if (action == KeyAction::kDestroy) {
    auto destroyed = token_->DestroyKey(it->second.ref);
    if (!destroyed) {
      if (destroyed.error().kind() != pkcs11::ErrorKind::kNotFound) {
        FromTokenError(destroyed.error(), "destroying the token objects failed", status);
        return false;
      }
      LogLine(logger_, LogLevel::kWarn, "destroy_objects_already_gone")
          .Str("key", VersionKey(current.name, version))
          .Str("token_label", it->second.ref.label);
    }
  }
  *updated = std::make_shared<CachedKey>(current);
  auto& record = (*updated)->versions.at(version).record;
  record.state = *next;
  record.state_changed_at = now;
  (*updated)->Refresh();
  return true;
}

void SigningCore::HandleKeyAction(std::string_view principal, KeyAction action,
                                  const v1::Request& request, v1::Response& resp) {
  const v1::KeyVersionRequest& req = action == KeyAction::kDisable   ? request.disable_key()
                                     : action == KeyAction::kEnable  ? request.enable_key()
                                     : action == KeyAction::kDestroy ? request.destroy_key()
                                                                     : request.mark_compromised();
  v1::Status* status = resp.mutable_status();
  auto ref = ParseKeyReference(req.key());
  if (!ref) {
    SetStatus(status, v1::INVALID_ARGUMENT, ref.error());
    return;
  }
  std::shared_ptr<const policy::Policy> pol;
  auto found = Find(ref->name, &pol);
  if (!Authorize(principal, *pol, OperationOf(action), ref->name, found.get(), "", status)) return;
  // Quorum: destroy is KEY_DESTROY; enabling a pre-activation version is a
  // key creation (so quorum cannot be bypassed by enabling); the rest are
  // KEY_STATE_CHANGE.
  std::unique_lock<std::mutex> quorum_lock(quorum_mu_, std::defer_lock);
  std::vector<policy::QuorumRequirement> reqs;
  {
    const std::uint32_t target = ref->version.value_or(CurrentVersion(found->states));
    auto v = found->versions.find(target);
    policy::QuorumQuery q;
    q.operation = action == KeyAction::kDestroy ? policy::QuorumOperation::kKeyDestroy
                  : action == KeyAction::kEnable && v != found->versions.end() &&
                          v->second.record.state == KeyState::kPreActivation
                      ? policy::QuorumOperation::kKeyCreate
                      : policy::QuorumOperation::kKeyStateChange;
    q.key_name = found->name;
    q.key_usage = found->usage;
    if (!QuorumCheck(*pol, q, quorum_lock, &reqs, status)) return;
    if (!reqs.empty() && AnswerIdempotent(principal, request, resp)) return;
  }
  std::lock_guard<std::mutex> serial(lifecycle_mu_);
  auto current = Find(ref->name);
  if (!current) {
    SetStatus(status, v1::NOT_FOUND, "no key named " + Quote(ref->name));
    return;
  }
  const std::uint32_t version = ref->version.value_or(CurrentVersion(current->states));
  auto it = current->versions.find(version);
  if (it == current->versions.end()) {
    SetStatus(status, v1::NOT_FOUND,
              "key " + current->name + " has no version " + std::to_string(version));
    return;
  }
  const std::int64_t now = Now();
  if (!reqs.empty()) {
    // Nothing changes now; the state machine must allow the change today.
    if (auto next = NextState(action, current->name, current->states, version, now); !next) {
      SetStatus(status, v1::FAILED_PRECONDITION, next.error());
      return;
    }
    QueueSpec spec;
    spec.operation =
        std::string(KeyActionName(action)) + (action == KeyAction::kMarkCompromised ? "" : "-key");
    spec.key = VersionKey(current->name, version);
    spec.fields.emplace_back("key", spec.key);
    spec.fields.emplace_back("key-type", std::string(pkcs11::KeyTypeName(current->type)));
    spec.fields.emplace_back("usage", current->usage);
    spec.summary = spec.operation + " " + spec.key + " (" +
                   std::string(KeyStateName(it->second.record.state)) + ")";
    Enqueue(principal, request, pol->version(), std::move(reqs), std::move(spec), {}, resp);
    return;
  }
  const KeyState before = it->second.record.state;
  std::shared_ptr<CachedKey> updated;
  if (!PrepareKeyAction(action, *current, version, now, /*idempotent=*/false, &updated, status)) {
    return;
  }
  const KeyState after = updated->versions.at(version).record.state;
  if (!Commit(updated, status)) return;
  LogLine(logger_, LogLevel::kInfo, "key_state_changed")
      .Str("key", VersionKey(current->name, version))
      .Str("action", KeyActionName(action))
      .Str("from", KeyStateName(before))
      .Str("to", KeyStateName(after))
      .Str("principal", principal);
  status->set_code(v1::OK);
  v1::KeyInfo* info = nullptr;
  switch (action) {
    case KeyAction::kDisable:
      info = resp.mutable_disable_key();
      break;
    case KeyAction::kEnable:
      info = resp.mutable_enable_key();
      break;
    case KeyAction::kMarkCompromised:
      info = resp.mutable_mark_compromised();
      break;
    case KeyAction::kDestroy:
      info = resp.mutable_destroy_key();
      break;
  }
  FillKeyInfo(*Find(current->name), info);
}

}  // namespace custos::service
