// The quorum half of SigningCore (docs/quorum.md): pending requests, officers'
// votes, execution exactly once, expiry, invalidation, and the versioned
// policy. Every function here that reads or writes pending requests runs with
// quorum_mu_ held, so votes on one request, executions and policy changes are
// serialised; quorum operations are rare, signing never comes here.
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <set>

#include "core_internal.h"
#include "custos/policy/approval.h"
#include "custos/policy/pending_request.h"
#include "custos/policy/quorum.h"
#include "custos/service/core.h"
#include "custos/service/key_name.h"
#include "custos/service/threads.h"
#include "request_info.h"

namespace custos::service {

namespace v1 = custos::v1;
using namespace core_internal;

namespace {

constexpr std::size_t kMaxNoteBytes = 1024;
constexpr std::size_t kMaxReasonBytes = 1024;

constexpr std::string_view kStates[] = {"pending", "approved", "executing",   "executed",
                                        "denied",  "expired",  "invalidated", "failed"};

bool IsState(std::string_view s) {
  return std::find(std::begin(kStates), std::end(kStates), s) != std::end(kStates);
}

// "2 approvals from group officers (rule release-signing)".
std::string Needs(const std::vector<policy::QuorumRequirement>& reqs) {
  std::string out;
  for (const auto& r : reqs) {
    if (!out.empty()) out += " and ";
    out += std::to_string(r.threshold) + (r.threshold == 1 ? " approval" : " approvals") +
           " from group " + r.group + " (rule " + r.rule + ")";
  }
  return out;
}

std::string PendingMessage(const PendingRecord& rec) {
  return "request " + rec.id + " needs " + Needs(rec.requirements) + "; follow it with `custos " +
         "request wait " + rec.id + "`";
}

// One approvals entry of an audit record (audit_format.h).
std::string ApprovalEntry(const VoteRecord& v, const std::string& digest) {
  return v.officer + " " + v.decision + " " + v.time + " " + digest + " " + Hex(Bytes(v.signature));
}

std::string StateMessage(const PendingRecord& rec) {
  std::string out = "request " + rec.id + " is " + rec.state;
  if (!rec.state_reason.empty()) out += " (" + rec.state_reason + ")";
  return out;
}

}  // namespace

std::int64_t SigningCore::QuorumNow() const { return limits_.clock ? limits_.clock() : Now(); }

void SigningCore::SetAuditSink(AuditSink* sink) {
  std::lock_guard<std::mutex> lock(quorum_mu_);
  audit_sink_ = sink;
}

bool SigningCore::QuorumCheck(const policy::Policy& pol, const policy::QuorumQuery& query,
                              std::unique_lock<std::mutex>& quorum_lock,
                              std::vector<policy::QuorumRequirement>* requirements,
                              v1::Status* status) {
  *requirements = policy::QuorumPolicy(pol).QuorumFor(query);
  if (requirements->empty()) return true;
  quorum_lock.lock();
  if (CurrentPolicy().get() != &pol) {
    SetStatus(status, v1::UNAVAILABLE,
              "the policy changed while this request was checked; send it again");
    status->set_retryable(true);
    return false;
  }
  return true;
}

policy::Tally SigningCore::CountVotes(const PendingRecord& rec,
                                      const std::vector<VoteRecord>& votes,
                                      const policy::Policy& pol) const {
  std::vector<policy::ApprovalStatement> statements;
  for (const auto& v : votes) {
    auto parsed = policy::ParseStatement(v.statement);
    if (auto* s = std::get_if<policy::ApprovalStatement>(&parsed)) statements.push_back(*s);
  }
  return policy::QuorumPolicy(pol).Count(rec.requirements, rec.requester, statements);
}

bool SigningCore::MayRead(std::string_view principal, const PendingRecord& rec,
                          const policy::Policy& pol) const {
  if (rec.requester == principal) return true;
  const policy::QuorumPolicy qp(pol);
  for (const auto& id : qp.OfficersOfPrincipal(principal)) {
    const policy::Officer* officer = qp.FindOfficer(id);
    if (officer == nullptr) continue;
    for (const auto& g : officer->groups) {
      for (const auto& r : rec.requirements) {
        if (r.group == g) return true;
      }
    }
  }
  return false;
}

void SigningCore::FillInfo(const PendingRecord& rec, const std::vector<VoteRecord>& votes,
                           std::string_view principal, bool full,
                           v1::PendingRequestInfo* info) const {
  info->set_id(rec.id);
  info->set_state(rec.state);
  info->set_state_reason(rec.state_reason);
  info->set_operation(rec.operation);
  info->set_requester(rec.requester);
  info->set_summary(rec.summary);
  info->set_canonical(rec.canonical);
  info->set_digest(rec.digest);
  if (full) info->set_payload(rec.payload);
  info->set_created_at(rec.created_at);
  info->set_expires_at(rec.expires_at);
  info->set_policy_version(rec.policy_version);
  info->set_key(rec.key);
  const auto tally = CountVotes(rec, votes, *CurrentPolicy());
  for (std::size_t i = 0; i < rec.requirements.size(); ++i) {
    const auto& r = rec.requirements[i];
    auto* q = info->add_quorum();
    q->set_rule(r.rule);
    q->set_group(r.group);
    q->set_threshold(r.threshold);
    if (i < tally.approved_by.size()) {
      for (const auto& o : tally.approved_by[i]) q->add_approved_by(o);
    }
  }
  for (const auto& v : votes) {
    auto* out = info->add_votes();
    out->set_officer(v.officer);
    out->set_decision(v.decision);
    out->set_time(v.time);
    out->set_reason(v.reason);
    if (full) {
      out->set_statement(v.statement);
      out->set_signature(v.signature);
    }
  }
  if (full && rec.requester == principal && rec.state == "executed" && !rec.result.empty()) {
    info->mutable_result()->ParseFromString(rec.result);
  }
}

bool SigningCore::AnswerIdempotent(std::string_view principal, const v1::Request& request,
                                   v1::Response& resp) {
  if (request.idempotency_key().empty()) return false;
  auto found = store_->FindByIdempotencyKey(principal, request.idempotency_key(),
                                            request_info::OpSha256(request));
  if (!found) {
    SetStatus(resp.mutable_status(), v1::INTERNAL,
              "cannot look up the idempotency key: " + found.error());
    return true;
  }
  if (!found->has_value()) return false;
  const PendingRecord& rec = **found;
  auto votes = store_->Votes(rec.id);
  const std::vector<VoteRecord> no_votes;
  if (rec.state == "executed") {
    // The first result, as the first answer would have carried it.
    v1::Response stored;
    if (!rec.result.empty() && stored.ParseFromString(rec.result) &&
        stored.result_case() != v1::Response::RESULT_NOT_SET) {
      const auto id = resp.id();
      resp = std::move(stored);
      resp.set_id(id);
      return true;
    }
    SetStatus(resp.mutable_status(), v1::OK, "request " + rec.id + " was executed");
  } else if (rec.state == "pending" || rec.state == "approved" || rec.state == "executing") {
    SetStatus(resp.mutable_status(), v1::PENDING_APPROVAL, PendingMessage(rec));
  } else {
    SetStatus(resp.mutable_status(), v1::FAILED_PRECONDITION,
              StateMessage(rec) + "; make a new request");
  }
  FillInfo(rec, votes ? votes.value() : no_votes, principal, true, resp.mutable_pending());
  return true;
}

bool SigningCore::Enqueue(std::string_view principal, const v1::Request& request,
                          std::uint64_t policy_version,
                          std::vector<policy::QuorumRequirement> requirements, QueueSpec spec,
                          const StoreChange& change, v1::Response& resp) {
  v1::Status* status = resp.mutable_status();
  if (request.note().size() > kMaxNoteBytes) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "note is " + std::to_string(request.note().size()) + " bytes; the limit is " +
                  std::to_string(kMaxNoteBytes));
    return false;
  }
  auto id = policy::NewRequestId();
  if (!id) {
    SetStatus(status, v1::INTERNAL, "the random number generator failed; no request was made");
    return false;
  }
  const std::int64_t now = QuorumNow();
  std::int64_t expiry = 0;
  for (const auto& r : requirements) {
    const std::int64_t e = r.expiry.count();
    if (e > 0 && (expiry == 0 || e < expiry)) expiry = e;
  }
  if (expiry == 0) expiry = 86400;
  PendingRecord rec;
  rec.id = *id;
  rec.requester = std::string(principal);
  rec.operation = spec.operation;
  rec.key = spec.key;
  rec.payload = std::move(spec.payload);
  rec.summary = std::move(spec.summary);
  rec.created_at = now;
  rec.expires_at = now + expiry;
  rec.policy_version = policy_version;
  rec.requirements = std::move(requirements);
  rec.request = request.SerializeAsString();
  rec.idempotency_key = request.idempotency_key();
  rec.op_sha256 = request_info::OpSha256(request);

  policy::PendingRequestText text;
  text.id = rec.id;
  text.fields.emplace_back("operation", rec.operation);
  text.fields.emplace_back("requester", rec.requester);
  text.fields.emplace_back("created", FormatUtcSeconds(rec.created_at));
  text.fields.emplace_back("expires", FormatUtcSeconds(rec.expires_at));
  text.fields.emplace_back("policy-version", std::to_string(policy_version));
  for (const auto& r : rec.requirements) {
    text.fields.emplace_back("quorum",
                             r.rule + ": " + std::to_string(r.threshold) + " of group " + r.group);
  }
  for (auto& f : spec.fields) text.fields.push_back(std::move(f));
  if (!request.note().empty()) text.fields.emplace_back("note", request.note());
  auto canonical = policy::EncodePendingRequest(text);
  if (!canonical) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "the request is too large to show to officers; make it smaller");
    return false;
  }
  rec.canonical = std::move(*canonical);
  rec.digest = policy::DigestToString(policy::RequestDigest(rec.canonical));

  auto inserted = store_->InsertPending(rec, change);
  if (!inserted) {
    SetStatus(status, v1::INTERNAL, "request not recorded: " + inserted.error());
    return false;
  }
  if (*inserted != KeyStore::InsertResult::kInserted) {
    SetStatus(status, v1::ALREADY_EXISTS,
              "key " + (change.insert_key ? change.insert_key->name : rec.key) + " already exists");
    return false;
  }
  LogLine(logger_, LogLevel::kInfo, "quorum_request_created")
      .Str("quorum_request", rec.id)
      .Str("operation", rec.operation)
      .Str("key", rec.key)
      .Str("requester", rec.requester)
      .Str("digest", rec.digest)
      .Str("needs", Needs(rec.requirements));
  SetStatus(status, v1::PENDING_APPROVAL, PendingMessage(rec));
  FillInfo(rec, {}, principal, true, resp.mutable_pending());
  return true;
}

audit::RequestFields SigningCore::RecordOf(const PendingRecord& rec, std::string_view kind) const {
  audit::RequestFields f;
  f.kind = std::string(kind);
  f.principal = rec.requester;
  v1::Request request;
  request.ParseFromString(rec.request);
  f.op = rec.operation == "policy-change" ? "propose_policy"
                                          : std::string(request_info::OpName(request));
  f.key = rec.key;
  f.op_sha256 = rec.op_sha256;
  f.quorum_request = rec.id;
  if (kind != "intent") {
    v1::Response result;
    if (rec.state == "executed" && result.ParseFromString(rec.result)) {
      f.outcome = v1::StatusCode_Name(result.status().code());
      if (result.status().code() != v1::OK) f.error = result.status().message();
    } else {
      f.outcome = v1::StatusCode_Name(v1::FAILED_PRECONDITION);
      f.error = StateMessage(rec);
    }
  }
  auto votes = store_->Votes(rec.id);
  if (votes) {
    const auto tally = CountVotes(rec, votes.value(), *CurrentPolicy());
    std::set<std::string> counted;
    for (const auto& per_rule : tally.approved_by) counted.insert(per_rule.begin(), per_rule.end());
    if (!tally.rejected_by.empty()) counted.insert(tally.rejected_by);
    for (const auto& v : votes.value()) {
      if (counted.count(v.officer)) f.approvals.push_back(ApprovalEntry(v, rec.digest));
    }
  }
  return f;
}

void SigningCore::Abandon(const PendingRecord& rec, std::vector<std::string> from,
                          const std::string& state, const std::string& reason) {
  std::unique_lock<std::mutex> serial(lifecycle_mu_);
  std::shared_ptr<CachedKey> updated;
  std::optional<KeyRecord> key_record;
  StoreChange change;
  if (rec.operation == "create-key" || rec.operation == "rotate-key") {
    // Destroy the pre-activation version made for the request: no orphan key
    // material stays on the token.
    auto ref = ParseKeyReference(rec.key);
    auto current = ref ? Find(ref->name) : nullptr;
    if (current && ref->version) {
      auto it = current->versions.find(*ref->version);
      if (it != current->versions.end() && it->second.record.state == KeyState::kPreActivation) {
        auto destroyed = token_->DestroyKey(it->second.ref);
        if (destroyed || destroyed.error().kind() == pkcs11::ErrorKind::kNotFound) {
          updated = std::make_shared<CachedKey>(*current);
          auto& record = updated->versions.at(*ref->version).record;
          record.state = KeyState::kDestroyed;
          record.state_changed_at = Now();
          updated->Refresh();
          key_record = updated->ToRecord();
          change.update_key = &*key_record;
        } else {
          LogLine(logger_, LogLevel::kWarn, "quorum_cleanup_failed")
              .Str("quorum_request", rec.id)
              .Str("key", rec.key)
              .Str("error", destroyed.error().message());
        }
      }
    }
  }
  PendingUpdate u;
  u.id = rec.id;
  u.from_states = std::move(from);
  u.to_state = state;
  u.reason = reason;
  u.audit_done = true;
  auto done = store_->UpdatePending(u, change);
  if (!done) {
    LogLine(logger_, LogLevel::kWarn, "quorum_store_error")
        .Str("quorum_request", rec.id)
        .Str("error", done.error());
    return;
  }
  if (!*done) return;
  if (updated) {
    std::unique_lock lock(mu_);
    keys_[updated->name] = updated;
  }
  serial.unlock();
  LogLine(logger_, LogLevel::kInfo, "quorum_request_" + state)
      .Str("quorum_request", rec.id)
      .Str("operation", rec.operation)
      .Str("key", rec.key)
      .Str("reason", reason);
  if (audit_sink_ != nullptr) {
    PendingRecord after = rec;
    after.state = state;
    after.state_reason = reason;
    if (auto r = audit_sink_->RecordDurably(RecordOf(after, "request")); !r) {
      LogLine(logger_, LogLevel::kWarn, "quorum_audit_failed")
          .Str("quorum_request", rec.id)
          .Str("error", r.error());
    }
  }
}

SigningCore::Outcome SigningCore::RunOperation(const PendingRecord& rec) {
  Outcome out;
  v1::Request request;
  if (!request.ParseFromString(rec.request)) {
    out.reason = "the stored operation cannot be read";
    return out;
  }
  const std::int64_t now = Now();
  out.result.set_id(request.id());
  v1::Status* status = out.result.mutable_status();
  auto fail = [&](std::string reason) {
    out.ok = false;
    out.reason = std::move(reason);
    return std::move(out);
  };

  if (rec.operation == "policy-change") {
    auto parsed = policy::Policy::Parse(rec.payload);
    if (auto* e = std::get_if<policy::ParseError>(&parsed)) {
      return fail("the proposed policy no longer parses: " + e->ToString("proposed policy"));
    }
    auto next = std::make_shared<const policy::Policy>(std::move(std::get<policy::Policy>(parsed)));
    PolicyRecord p;
    p.version = next->version();
    p.text = rec.payload;
    p.sha256 = Sha256Hex(Bytes(rec.payload));
    p.activated_at = now;
    p.request_id = rec.id;
    p.proposed_by = rec.requester;
    auto votes = store_->Votes(rec.id);
    if (!votes) return fail(votes.error());
    const auto tally = CountVotes(rec, votes.value(), *CurrentPolicy());
    std::set<std::string> seen;
    for (const auto& per_rule : tally.approved_by) {
      for (const auto& o : per_rule) {
        if (seen.insert(o).second) p.approved_by.push_back(o);
      }
    }
    p.active = true;
    status->set_code(v1::OK);
    auto* info = out.result.mutable_policy();
    info->set_version(p.version);
    info->set_sha256(p.sha256);
    info->set_activated_at(p.activated_at);
    info->set_request_id(p.request_id);
    info->set_proposed_by(p.proposed_by);
    for (const auto& a : p.approved_by) info->add_approved_by(a);
    out.policy_record = std::move(p);
    out.policy = std::move(next);
    out.ok = true;
    return out;
  }

  if (rec.operation == "issue-certificate" || rec.operation == "create-ca" ||
      rec.operation == "revoke-certificate") {
    RunCaOperation(rec, request, &out);
    return out;
  }

  auto ref = ParseKeyReference(rec.key);
  if (!ref || !ref->version) return fail("the request names no key version");
  auto current = Find(ref->name);
  if (!current) return fail("key " + ref->name + " no longer exists");
  const std::uint32_t version = *ref->version;
  auto it = current->versions.find(version);
  if (it == current->versions.end()) return fail("key " + rec.key + " no longer exists");

  if (rec.operation == "sign" || rec.operation == "sign-batch") {
    if (auto refusal = SignRefusal(current->name, current->states, version, now)) {
      return fail(std::move(*refusal));
    }
    const bool batch = rec.operation == "sign-batch";
    const std::string& alg_text =
        batch ? request.sign_batch().algorithm() : request.sign().algorithm();
    auto alg = pkcs11::ParseSignAlgorithm(alg_text);
    if (!alg || !pkcs11::AlgorithmFitsKey(*alg, current->type)) {
      return fail("algorithm " + alg_text + " does not fit key " + rec.key);
    }
    if (!batch) {
      const auto& req = request.sign();
      std::span<const std::uint8_t> input;
      std::string error;
      if (!CheckInput(*alg, req.digest(), req.message(), limits_.max_message_bytes, &input,
                      &error)) {
        return fail(std::move(error));
      }
      auto sig = token_->Sign(it->second.ref, *alg, input);
      if (!sig) return fail("signing failed: " + sig.error().message());
      status->set_code(v1::OK);
      auto* s = out.result.mutable_sign();
      s->set_signature(sig->data(), sig->size());
      s->set_key(current->name);
      s->set_key_version(version);
      s->set_algorithm(std::string(pkcs11::SignAlgorithmName(*alg)));
    } else {
      const auto& req = request.sign_batch();
      status->set_code(v1::OK);
      auto* b = out.result.mutable_sign_batch();
      b->set_key(current->name);
      b->set_key_version(version);
      b->set_algorithm(std::string(pkcs11::SignAlgorithmName(*alg)));
      for (const auto& item : req.items()) {
        auto* r = b->add_results();
        r->set_ref(item.ref());
        std::span<const std::uint8_t> input;
        std::string error;
        if (!CheckInput(*alg, item.digest(), item.message(), limits_.max_message_bytes, &input,
                        &error)) {
          SetStatus(r->mutable_status(), v1::INVALID_ARGUMENT, std::move(error));
          continue;
        }
        auto sig = token_->Sign(it->second.ref, *alg, input);
        if (!sig) {
          FromTokenError(sig.error(), "signing failed", r->mutable_status());
          continue;
        }
        r->mutable_status()->set_code(v1::OK);
        r->set_signature(sig->data(), sig->size());
      }
    }
    out.ok = true;
    return out;
  }

  std::shared_ptr<CachedKey> updated;
  v1::KeyInfo* info = nullptr;
  if (rec.operation == "create-key" || rec.operation == "rotate-key") {
    // Activate the new version; the one active before becomes deactivated.
    // Already active: done before a restart, nothing to do.
    const KeyState state = it->second.record.state;
    if (state != KeyState::kPreActivation && state != KeyState::kActive) {
      return fail("key " + rec.key + " is " + std::string(KeyStateName(state)));
    }
    updated = std::make_shared<CachedKey>(*current);
    if (state == KeyState::kPreActivation) {
      for (auto& [n, v] : updated->versions) {
        if (v.record.state == KeyState::kActive) {
          v.record.state = KeyState::kDeactivated;
          v.record.state_changed_at = now;
        }
      }
      auto& record = updated->versions.at(version).record;
      record.state = KeyState::kActive;
      record.state_changed_at = now;
    }
    updated->Refresh();
    info = rec.operation == "create-key" ? out.result.mutable_create_key()
                                         : out.result.mutable_rotate_key();
  } else {
    KeyAction action;
    if (rec.operation == "enable-key") {
      action = KeyAction::kEnable;
      info = out.result.mutable_enable_key();
    } else if (rec.operation == "disable-key") {
      action = KeyAction::kDisable;
      info = out.result.mutable_disable_key();
    } else if (rec.operation == "destroy-key") {
      action = KeyAction::kDestroy;
      info = out.result.mutable_destroy_key();
    } else if (rec.operation == "mark-compromised") {
      action = KeyAction::kMarkCompromised;
      info = out.result.mutable_mark_compromised();
    } else {
      return fail("unknown operation " + rec.operation);
    }
    v1::Status refused;
    if (!PrepareKeyAction(action, *current, version, now, /*idempotent=*/true, &updated,
                          &refused)) {
      return fail(refused.message());
    }
  }
  status->set_code(v1::OK);
  FillKeyInfo(*updated, info);
  out.key_record = updated->ToRecord();
  out.key = std::move(updated);
  out.ok = true;
  return out;
}

void SigningCore::AuditOutcome(const PendingRecord& rec) {
  if (audit_sink_ != nullptr) {
    if (auto r = audit_sink_->RecordDurably(RecordOf(rec, "request")); !r) {
      LogLine(logger_, LogLevel::kWarn, "quorum_audit_failed")
          .Str("quorum_request", rec.id)
          .Str("error", r.error() + " (written again by the sweeper or at the next start)");
      return;
    }
  }
  PendingUpdate u;
  u.id = rec.id;
  u.from_states = {rec.state};
  u.to_state = rec.state;
  u.reason = rec.state_reason;
  u.audit_done = true;
  if (auto r = store_->UpdatePending(u); !r) {
    LogLine(logger_, LogLevel::kWarn, "quorum_store_error")
        .Str("quorum_request", rec.id)
        .Str("error", r.error());
  }
}

void SigningCore::Execute(const std::string& id) {
  auto got = store_->GetPending(id);
  if (!got || !got->has_value()) return;
  PendingRecord rec = std::move(**got);
  const auto pol = CurrentPolicy();
  if (rec.state == "approved") {
    if (rec.policy_version != pol->version()) {
      Abandon(rec, {"approved"}, "invalidated",
              "policy changed from v" + std::to_string(rec.policy_version) + " to v" +
                  std::to_string(pol->version()) + " while it waited");
      return;
    }
    auto votes = store_->Votes(id);
    if (!votes) return;
    // Again at execution: every approver still enrolled and in the group.
    if (!CountVotes(rec, votes.value(), *pol).approved) {
      PendingUpdate u;
      u.id = id;
      u.from_states = {"approved"};
      u.to_state = "pending";
      u.reason = "approvals no longer meet the quorum of policy v" + std::to_string(pol->version());
      (void)store_->UpdatePending(u);
      return;
    }
    if (audit_sink_ != nullptr) {
      if (auto r = audit_sink_->RecordDurably(RecordOf(rec, "intent")); !r) {
        LogLine(logger_, LogLevel::kWarn, "quorum_execution_waits")
            .Str("quorum_request", id)
            .Str("error", "audit log: " + r.error() + "; it runs once the log is writable");
        return;
      }
    }
    PendingUpdate u;
    u.id = id;
    u.from_states = {"approved"};
    u.to_state = "executing";
    auto moved = store_->UpdatePending(u);
    if (!moved || !*moved) return;
    rec.state = "executing";
  }
  if (rec.state != "executing") return;

  std::unique_lock<std::mutex> serial(lifecycle_mu_);
  Outcome out = RunOperation(rec);
  if (!out.ok) {
    serial.unlock();
    Abandon(rec, {"executing"}, "failed", out.reason);
    return;
  }
  const std::string result = out.result.SerializeAsString();
  PendingUpdate u;
  u.id = id;
  u.from_states = {"executing"};
  u.to_state = "executed";
  u.result = &result;
  StoreChange change;
  if (out.key_record) change.update_key = &*out.key_record;
  if (out.policy_record) change.activate_policy = &*out.policy_record;
  if (out.ca_record) change.put_ca = &*out.ca_record;
  if (out.certificate) change.insert_certificate = &*out.certificate;
  if (out.revocation) change.revoke = &*out.revocation;
  auto done = store_->UpdatePending(u, change);
  if (!done || !*done) {
    LogLine(logger_, LogLevel::kWarn, "quorum_store_error")
        .Str("quorum_request", id)
        .Str("error", done ? "request changed state meanwhile" : done.error());
    return;
  }
  {
    std::unique_lock lock(mu_);
    if (out.key) keys_[out.key->name] = out.key;
    if (out.policy) policy_ = out.policy;
  }
  serial.unlock();
  LogLine(logger_, LogLevel::kInfo, "quorum_request_executed")
      .Str("quorum_request", id)
      .Str("operation", rec.operation)
      .Str("key", rec.key)
      .Str("requester", rec.requester);
  if (out.policy) {
    LogLine(logger_, LogLevel::kInfo, "policy_activated")
        .Unsigned("version", out.policy->version())
        .Str("quorum_request", id);
    InvalidateOthers(out.policy->version(), id);
  }
  if (!out.refresh_crl.empty()) {
    std::string error;
    if (!RefreshCrl(out.refresh_crl, true, &error)) {
      LogLine(logger_, LogLevel::kWarn, "crl_resign_failed")
          .Str("ca", out.refresh_crl)
          .Str("error", error + " (retried by the sweeper)");
    }
  }
  rec.state = "executed";
  rec.state_reason.clear();
  rec.result = result;
  AuditOutcome(rec);
}

void SigningCore::InvalidateOthers(std::uint64_t new_version, const std::string& except_id) {
  auto waiting = store_->ListPending({"pending", "approved"});
  if (!waiting) return;
  for (const auto& rec : waiting.value()) {
    if (rec.id == except_id || rec.policy_version == new_version) continue;
    Abandon(rec, {"pending", "approved"}, "invalidated",
            "policy changed from v" + std::to_string(rec.policy_version) + " to v" +
                std::to_string(new_version) + " while it waited");
  }
}

void SigningCore::ExpireOverdue() {
  auto waiting = store_->ListPending({"pending"});
  if (!waiting) return;
  const std::int64_t now = QuorumNow();
  for (const auto& rec : waiting.value()) {
    if (now <= rec.expires_at) continue;
    Abandon(rec, {"pending"}, "expired",
            "expired at " + FormatUtcSeconds(rec.expires_at) + " before it had its approvals");
  }
}

void SigningCore::SweepQuorum() {
  std::lock_guard<std::mutex> lock(quorum_mu_);
  ExpireOverdue();
  auto stuck = store_->ListPending({"approved", "executing"});
  if (stuck) {
    for (const auto& rec : stuck.value()) Execute(rec.id);
  }
  auto finished = store_->ListPending({"executed"});
  if (finished) {
    for (const auto& rec : finished.value()) {
      if (!rec.audit_done) AuditOutcome(rec);
    }
  }
}

Result<void> SigningCore::ResumeQuorum() {
  {
    std::lock_guard<std::mutex> lock(quorum_mu_);
    for (const auto& record : startup_records_) {
      if (audit_sink_ == nullptr) break;
      if (auto r = audit_sink_->RecordDurably(record); !r) {
        return Error{"cannot record the policy import in the audit log: " + r.error()};
      }
    }
    startup_records_.clear();
    InvalidateOthers(CurrentPolicy()->version(), "");
  }
  SweepQuorum();
  SweepCrls();
  if (limits_.quorum_sweep_interval.count() > 0 && !sweeper_.joinable()) {
    sweeper_ = std::thread([this] { SweeperLoop(); });
  }
  return {};
}

void SigningCore::SweeperLoop() {
  NameCurrentThread("custosd-sweeper");
  std::unique_lock<std::mutex> lock(sweeper_mu_);
  while (!stopping_) {
    sweeper_cv_.wait_for(lock, limits_.quorum_sweep_interval, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    SweepQuorum();
    SweepCrls();
    lock.lock();
  }
}

// --- Handlers ---

void SigningCore::HandleListRequests(std::string_view principal, const v1::ListRequestsRequest& req,
                                     v1::Response& resp) {
  std::vector<std::string> states;
  if (req.state().empty()) {
    states = {"pending"};
  } else if (req.state() != "all") {
    if (!IsState(req.state())) {
      SetStatus(resp.mutable_status(), v1::INVALID_ARGUMENT,
                "unknown request state " + Quote(req.state()) +
                    ": use all, pending, approved, executing, executed, denied, expired, "
                    "invalidated or failed");
      return;
    }
    states = {req.state()};
  }
  std::lock_guard<std::mutex> lock(quorum_mu_);
  ExpireOverdue();
  auto listed = store_->ListPending(states);
  if (!listed) {
    SetStatus(resp.mutable_status(), v1::INTERNAL, listed.error());
    return;
  }
  const auto pol = CurrentPolicy();
  auto* out = resp.mutable_list_requests();
  for (const auto& rec : listed.value()) {
    if (!MayRead(principal, rec, *pol)) continue;
    auto votes = store_->Votes(rec.id);
    FillInfo(rec, votes ? votes.value() : std::vector<VoteRecord>{}, principal, false,
             out->add_requests());
  }
  resp.mutable_status()->set_code(v1::OK);
}

void SigningCore::HandleGetRequest(std::string_view principal, const v1::GetRequestRequest& req,
                                   v1::Response& resp) {
  v1::Status* status = resp.mutable_status();
  if (!policy::IsValidApprovalId(req.id())) {
    SetStatus(
        status, v1::INVALID_ARGUMENT,
        "request id " + Quote(req.id()) + " is malformed: it looks like rq- and 32 hex digits");
    return;
  }
  std::lock_guard<std::mutex> lock(quorum_mu_);
  auto got = store_->GetPending(req.id());
  if (!got) {
    SetStatus(status, v1::INTERNAL, got.error());
    return;
  }
  const auto pol = CurrentPolicy();
  if (!got->has_value() || !MayRead(principal, **got, *pol)) {
    SetStatus(status, v1::NOT_FOUND,
              "no request " + req.id() + " that you may see; `custos request list` shows yours");
    return;
  }
  if ((*got)->state == "pending" && QuorumNow() > (*got)->expires_at) {
    ExpireOverdue();
    got = store_->GetPending(req.id());
    if (!got || !got->has_value()) {
      SetStatus(status, v1::INTERNAL, "request " + req.id() + " vanished");
      return;
    }
  }
  auto votes = store_->Votes(req.id());
  FillInfo(**got, votes ? votes.value() : std::vector<VoteRecord>{}, principal, true,
           resp.mutable_pending());
  status->set_code(v1::OK);
}

void SigningCore::HandleSubmitApproval(std::string_view principal,
                                       const v1::SubmitApprovalRequest& req, v1::Response& resp) {
  v1::Status* status = resp.mutable_status();
  auto parsed = policy::ParseStatement(req.statement());
  if (auto* e = std::get_if<policy::ApprovalError>(&parsed)) {
    SetStatus(status, v1::PERMISSION_DENIED,
              "approval refused: " + std::string(policy::ApprovalErrorCodeName(e->code)) + ": " +
                  e->message + "; sign the statement custos-officer builds");
    return;
  }
  const auto& stmt = std::get<policy::ApprovalStatement>(parsed);
  if (req.reason().size() > kMaxReasonBytes) {
    SetStatus(status, v1::INVALID_ARGUMENT,
              "reason is " + std::to_string(req.reason().size()) + " bytes; the limit is " +
                  std::to_string(kMaxReasonBytes));
    return;
  }
  std::lock_guard<std::mutex> lock(quorum_mu_);
  auto got = store_->GetPending(stmt.request_id);
  if (!got) {
    SetStatus(status, v1::INTERNAL, got.error());
    return;
  }
  if (!got->has_value()) {
    SetStatus(status, v1::NOT_FOUND, "no request " + stmt.request_id);
    return;
  }
  PendingRecord rec = std::move(**got);
  auto votes = store_->Votes(rec.id);
  if (!votes) {
    SetStatus(status, v1::INTERNAL, votes.error());
    return;
  }
  const VoteRecord* existing = nullptr;
  for (const auto& v : votes.value()) {
    if (v.officer == stmt.officer_id) existing = &v;
  }
  auto answer = [&](const std::string& id) {
    auto now_rec = store_->GetPending(id);
    auto now_votes = store_->Votes(id);
    if (!now_rec || !now_rec->has_value() || !now_votes) {
      SetStatus(status, v1::INTERNAL, "request " + id + " cannot be read back");
      return;
    }
    status->set_code(v1::OK);
    status->set_message(StateMessage(**now_rec));
    FillInfo(**now_rec, now_votes.value(), principal, true, resp.mutable_pending());
  };
  // The same vote again (a retry): the request as it is now.
  if (existing != nullptr && existing->statement == req.statement() &&
      existing->signature == req.signature()) {
    answer(rec.id);
    return;
  }
  if (rec.state != "pending") {
    SetStatus(status, v1::FAILED_PRECONDITION, StateMessage(rec) + "; it takes no more votes");
    return;
  }
  const std::int64_t now = QuorumNow();
  if (now > rec.expires_at) {
    Abandon(rec, {"pending"}, "expired",
            "expired at " + FormatUtcSeconds(rec.expires_at) + " before it had its approvals");
    SetStatus(status, v1::FAILED_PRECONDITION,
              "request " + rec.id + " expired at " + FormatUtcSeconds(rec.expires_at) +
                  "; it takes no more votes (the requester may ask again)");
    return;
  }
  const auto pol = CurrentPolicy();
  if (rec.policy_version != pol->version()) {
    const std::string why = "policy changed from v" + std::to_string(rec.policy_version) + " to v" +
                            std::to_string(pol->version()) + " while it waited";
    Abandon(rec, {"pending"}, "invalidated", why);
    SetStatus(status, v1::FAILED_PRECONDITION,
              "request " + rec.id + " is invalidated (" + why + "); it takes no more votes");
    return;
  }
  const policy::QuorumPolicy qp(*pol);
  policy::VoteContext ctx;
  ctx.request_id = rec.id;
  ctx.request_digest = policy::RequestDigest(rec.canonical);
  ctx.requester = rec.requester;
  ctx.requirements = rec.requirements;
  auto checked = qp.CheckVote(req.statement(), req.signature(), ctx,
                              std::chrono::system_clock::time_point(std::chrono::seconds(now)),
                              qp.max_statement_skew());
  if (auto* e = std::get_if<policy::VoteError>(&checked)) {
    SetStatus(status, v1::PERMISSION_DENIED,
              "approval refused for " + rec.id + ": " +
                  std::string(policy::VoteErrorCodeName(e->code)) + ": " + e->message);
    return;
  }
  if (existing != nullptr) {
    SetStatus(status, v1::FAILED_PRECONDITION,
              "officer " + existing->officer + " already voted (" + existing->decision + ") on " +
                  rec.id + "; one officer counts once");
    return;
  }
  VoteRecord vote;
  vote.request_id = rec.id;
  vote.officer = stmt.officer_id;
  vote.decision = std::string(policy::ApprovalDecisionName(stmt.decision));
  vote.statement = req.statement();
  vote.signature = req.signature();
  if (stmt.decision == policy::ApprovalDecision::kDeny) vote.reason = req.reason();
  vote.time = FormatUtcSeconds(stmt.time.time_since_epoch().count());
  vote.received_at = now;
  vote.submitted_by = std::string(principal);
  auto inserted = store_->InsertVote(vote);
  if (!inserted) {
    SetStatus(status, v1::INTERNAL, "vote not recorded: " + inserted.error());
    return;
  }
  LogLine(logger_, LogLevel::kInfo, "quorum_vote")
      .Str("quorum_request", rec.id)
      .Str("officer", vote.officer)
      .Str("decision", vote.decision)
      .Str("submitted_by", principal);
  votes.value().push_back(vote);
  const auto tally = CountVotes(rec, votes.value(), *pol);
  if (tally.rejected) {
    std::string reason = "denied by officer " + tally.rejected_by;
    for (const auto& v : votes.value()) {
      if (v.officer == tally.rejected_by && !v.reason.empty()) reason += ": " + v.reason;
    }
    Abandon(rec, {"pending"}, "denied", reason);
  } else if (tally.approved) {
    PendingUpdate u;
    u.id = rec.id;
    u.from_states = {"pending"};
    u.to_state = "approved";
    if (auto moved = store_->UpdatePending(u); moved && *moved) Execute(rec.id);
  }
  answer(rec.id);
}

void SigningCore::HandleProposePolicy(std::string_view principal, const v1::Request& request,
                                      v1::Response& resp) {
  v1::Status* status = resp.mutable_status();
  const auto active = CurrentPolicy();
  {
    auto d = active->CheckAdmin(principal, policy::AdminOperation::kProposePolicy);
    if (!d.allowed) {
      SetStatus(status, v1::PERMISSION_DENIED, "permission denied: " + d.reason);
      status->set_policy_rule(d.rule);
      return;
    }
  }
  const std::string& text = request.propose_policy().text();
  auto parsed = policy::Policy::Parse(text);
  if (auto* e = std::get_if<policy::ParseError>(&parsed)) {
    SetStatus(status, v1::INVALID_ARGUMENT, e->ToString("proposed policy"));
    return;
  }
  auto proposed =
      std::make_shared<const policy::Policy>(std::move(std::get<policy::Policy>(parsed)));
  std::lock_guard<std::mutex> lock(quorum_mu_);
  const auto pol = CurrentPolicy();
  if (proposed->version() <= pol->version()) {
    SetStatus(status, v1::FAILED_PRECONDITION,
              "proposed policy version " + std::to_string(proposed->version()) +
                  " is not higher than the active version " + std::to_string(pol->version()) +
                  ": raise `version`");
    return;
  }
  if (AnswerIdempotent(principal, request, resp)) return;
  auto reqs = policy::QuorumPolicy::ForPolicyChange(*pol, *proposed);
  const std::string sha = Sha256Hex(Bytes(text));
  QueueSpec spec;
  spec.operation = "policy-change";
  spec.key = "policy@" + std::to_string(proposed->version());
  spec.fields.emplace_back("proposed-version", std::to_string(proposed->version()));
  spec.fields.emplace_back("payload-sha256", sha);
  const auto diff = policy::DiffPolicies(*pol, *proposed);
  for (const auto& line : diff) spec.fields.emplace_back("policy-diff", line);
  spec.summary = "policy-change v" + std::to_string(pol->version()) + " -> v" +
                 std::to_string(proposed->version()) + " (" + std::to_string(diff.size()) +
                 (diff.size() == 1 ? " change)" : " changes)");
  spec.payload = text;
  if (!reqs.empty()) {
    Enqueue(principal, request, pol->version(), std::move(reqs), std::move(spec), {}, resp);
    return;
  }
  // No quorum rule covers the change: it applies now, recorded as an
  // executed request (the server's audit record of this request covers it).
  auto id = policy::NewRequestId();
  if (!id) {
    SetStatus(status, v1::INTERNAL, "the random number generator failed; nothing changed");
    return;
  }
  const std::int64_t now = QuorumNow();
  PendingRecord rec;
  rec.id = *id;
  rec.requester = std::string(principal);
  rec.operation = spec.operation;
  rec.key = spec.key;
  rec.payload = text;
  rec.summary = spec.summary;
  rec.created_at = now;
  rec.expires_at = now;
  rec.state = "executed";
  rec.policy_version = pol->version();
  rec.request = request.SerializeAsString();
  rec.idempotency_key = request.idempotency_key();
  rec.op_sha256 = request_info::OpSha256(request);
  rec.audit_done = true;
  policy::PendingRequestText canon;
  canon.id = rec.id;
  canon.fields.emplace_back("operation", rec.operation);
  canon.fields.emplace_back("requester", rec.requester);
  canon.fields.emplace_back("created", FormatUtcSeconds(now));
  canon.fields.emplace_back("expires", FormatUtcSeconds(now));
  canon.fields.emplace_back("policy-version", std::to_string(pol->version()));
  for (auto& f : spec.fields) canon.fields.push_back(std::move(f));
  if (!request.note().empty() && request.note().size() <= kMaxNoteBytes) {
    canon.fields.emplace_back("note", request.note());
  }
  auto canonical = policy::EncodePendingRequest(canon);
  if (canonical) {
    rec.canonical = std::move(*canonical);
    rec.digest = policy::DigestToString(policy::RequestDigest(rec.canonical));
  }
  PolicyRecord p;
  p.version = proposed->version();
  p.text = text;
  p.sha256 = sha;
  p.activated_at = now;
  p.request_id = rec.id;
  p.proposed_by = rec.requester;
  p.active = true;
  v1::Response result;
  result.mutable_status()->set_code(v1::OK);
  auto* info = result.mutable_policy();
  info->set_version(p.version);
  info->set_sha256(p.sha256);
  info->set_activated_at(p.activated_at);
  info->set_request_id(p.request_id);
  info->set_proposed_by(p.proposed_by);
  rec.result = result.SerializeAsString();
  StoreChange change;
  change.activate_policy = &p;
  auto inserted = store_->InsertPending(rec, change);
  if (!inserted) {
    SetStatus(status, v1::INTERNAL, "policy not recorded: " + inserted.error());
    return;
  }
  {
    std::unique_lock mu_lock(mu_);
    policy_ = proposed;
  }
  LogLine(logger_, LogLevel::kInfo, "policy_activated")
      .Unsigned("version", p.version)
      .Str("quorum_request", rec.id)
      .Str("proposed_by", rec.requester)
      .Str("message", "no quorum rule covers this change");
  InvalidateOthers(p.version, rec.id);
  SetStatus(status, v1::OK,
            "policy version " + std::to_string(p.version) + " is active (request " + rec.id +
                "; no quorum rule covers this change)");
  FillInfo(rec, {}, principal, true, resp.mutable_pending());
}

void SigningCore::HandleGetPolicy(std::string_view principal, v1::Response& resp) {
  v1::Status* status = resp.mutable_status();
  const auto pol = CurrentPolicy();
  auto d = pol->CheckAdmin(principal, policy::AdminOperation::kReadPolicy);
  if (!d.allowed) {
    SetStatus(status, v1::PERMISSION_DENIED, "permission denied: " + d.reason);
    status->set_policy_rule(d.rule);
    return;
  }
  auto active = store_->ActivePolicy();
  if (!active || !active->has_value()) {
    SetStatus(status, v1::INTERNAL,
              active ? "the state store has no active policy" : active.error());
    return;
  }
  const PolicyRecord& p = **active;
  auto* info = resp.mutable_policy();
  info->set_version(p.version);
  info->set_text(p.text);
  info->set_sha256(p.sha256);
  info->set_activated_at(p.activated_at);
  info->set_request_id(p.request_id);
  info->set_proposed_by(p.proposed_by);
  for (const auto& a : p.approved_by) info->add_approved_by(a);
  status->set_code(v1::OK);
}

}  // namespace custos::service
