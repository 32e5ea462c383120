// Quorum requests: custos request list|show|wait, and the reports of
// operations the server holds for approval (docs/quorum.md, docs/operations.md
// "Quorum").
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "cli.h"

namespace custos::cli {
namespace {

bool IsWaitingState(const std::string& state) {
  return state == "pending" || state == "approved" || state == "executing";
}

// "ca-key-creation: 2 of group officers, ...".
std::string NeedsText(const v1::PendingRequestInfo& info) {
  std::string out;
  for (const auto& q : info.quorum()) {
    if (!out.empty()) out += ", ";
    out += q.rule() + ": " + std::to_string(q.threshold()) + " of group " + q.group();
  }
  return out;
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

std::string ResultJson(const v1::Response& r) {
  switch (r.result_case()) {
    case v1::Response::kSign:
      return JsonObject()
          .Add("key", r.sign().key())
          .Add("key_version", static_cast<std::int64_t>(r.sign().key_version()))
          .Add("algorithm", r.sign().algorithm())
          .Add("signature_base64", Base64(r.sign().signature()))
          .str();
    case v1::Response::kSignBatch: {
      std::vector<std::string> items;
      for (const auto& item : r.sign_batch().results()) {
        JsonObject o;
        o.Add("ref", item.ref());
        if (item.status().code() == v1::OK) {
          o.Add("signature_base64", Base64(item.signature()));
        } else {
          o.Add("status", v1::StatusCode_Name(item.status().code()))
              .Add("message", item.status().message());
        }
        items.push_back(o.str());
      }
      return JsonObject().AddRaw("results", JsonArray(items)).str();
    }
    case v1::Response::kCreateKey:
      return KeyJson(r.create_key());
    case v1::Response::kRotateKey:
      return KeyJson(r.rotate_key());
    case v1::Response::kEnableKey:
      return KeyJson(r.enable_key());
    case v1::Response::kDisableKey:
      return KeyJson(r.disable_key());
    case v1::Response::kDestroyKey:
      return KeyJson(r.destroy_key());
    case v1::Response::kMarkCompromised:
      return KeyJson(r.mark_compromised());
    case v1::Response::kPolicy:
      return JsonObject()
          .Add("version", static_cast<std::int64_t>(r.policy().version()))
          .Add("sha256", r.policy().sha256())
          .str();
    case v1::Response::kIssueCertificate:
      return CertificateJson(r.issue_certificate());
    case v1::Response::kRevokeCertificate:
      return CertificateJson(r.revoke_certificate());
    case v1::Response::kCreateCa:
      return CaJson(r.create_ca());
    default:
      return JsonObject().Add("status", v1::StatusCode_Name(r.status().code())).str();
  }
}

// One line about an executed request's result (human output of wait/show).
std::string ResultText(const v1::Response& r) {
  auto key_line = [](const char* what, const v1::KeyInfo& k) {
    std::string line = std::string(what) + " key " + k.name() + ": ";
    line += k.active_version() != 0 ? "active version " + std::to_string(k.active_version())
                                    : "no active version";
    return line;
  };
  switch (r.result_case()) {
    case v1::Response::kSign:
      return "signature by " + r.sign().key() + "@" + std::to_string(r.sign().key_version()) +
             " (" + r.sign().algorithm() + ")";
    case v1::Response::kSignBatch:
      return std::to_string(r.sign_batch().results_size()) + " batch results";
    case v1::Response::kCreateKey:
      return key_line("created", r.create_key());
    case v1::Response::kRotateKey:
      return key_line("rotated", r.rotate_key());
    case v1::Response::kEnableKey:
      return key_line("enabled", r.enable_key());
    case v1::Response::kDisableKey:
      return key_line("disabled", r.disable_key());
    case v1::Response::kDestroyKey:
      return key_line("destroyed", r.destroy_key());
    case v1::Response::kMarkCompromised:
      return key_line("marked compromised", r.mark_compromised());
    case v1::Response::kPolicy:
      return "policy version " + std::to_string(r.policy().version()) + " is active";
    case v1::Response::kIssueCertificate:
      return "certificate " + r.issue_certificate().serial() + " issued by CA " +
             r.issue_certificate().ca() + " (profile " + r.issue_certificate().profile() + ")";
    case v1::Response::kRevokeCertificate:
      return "certificate " + r.revoke_certificate().serial() + " of CA " +
             r.revoke_certificate().ca() + " " + CertificateStateText(r.revoke_certificate());
    case v1::Response::kCreateCa:
      return "CA " + r.create_ca().name() + " created: " + r.create_ca().subject() + ", serial " +
             r.create_ca().serial();
    default:
      return "";
  }
}

std::optional<Failure> GetRequest(Invocation& inv, const std::string& id,
                                  v1::PendingRequestInfo* info) {
  v1::Request req;
  req.mutable_get_request()->set_id(id);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  if (!resp.has_pending()) {
    return Failure{kExitRefused, "server answered get_request for " + id + " without a request"};
  }
  *info = resp.pending();
  return std::nullopt;
}

}  // namespace

std::string ApprovalsText(const v1::PendingRequestInfo& info) {
  std::uint64_t have = 0, need = 0;
  for (const auto& q : info.quorum()) {
    have +=
        std::min<std::uint64_t>(static_cast<std::uint64_t>(q.approved_by_size()), q.threshold());
    need += q.threshold();
  }
  return std::to_string(have) + "/" + std::to_string(need);
}

std::string PendingJson(const v1::PendingRequestInfo& info) {
  std::vector<std::string> quorum, votes;
  for (const auto& q : info.quorum()) {
    std::vector<std::string> by;
    for (const auto& o : q.approved_by()) by.push_back(JsonString(o));
    quorum.push_back(JsonObject()
                         .Add("rule", q.rule())
                         .Add("group", q.group())
                         .Add("threshold", static_cast<std::int64_t>(q.threshold()))
                         .AddRaw("approved_by", JsonArray(by))
                         .str());
  }
  for (const auto& v : info.votes()) {
    JsonObject o;
    o.Add("officer", v.officer()).Add("decision", v.decision()).Add("time", v.time());
    if (!v.reason().empty()) o.Add("reason", v.reason());
    votes.push_back(o.str());
  }
  JsonObject o;
  o.Add("id", info.id())
      .Add("state", info.state())
      .Add("state_reason", info.state_reason())
      .Add("operation", info.operation())
      .Add("key", info.key())
      .Add("requester", info.requester())
      .Add("summary", info.summary())
      .Add("digest", info.digest())
      .Add("created_at", info.created_at())
      .Add("created", FormatUtc(info.created_at()))
      .Add("expires_at", info.expires_at())
      .Add("expires", FormatUtc(info.expires_at()))
      .Add("policy_version", static_cast<std::int64_t>(info.policy_version()))
      .Add("approvals", ApprovalsText(info))
      .AddRaw("quorum", JsonArray(quorum))
      .AddRaw("votes", JsonArray(votes));
  if (!info.canonical().empty()) o.Add("canonical", info.canonical());
  if (info.has_result()) o.AddRaw("result", ResultJson(info.result()));
  return o.str();
}

void ReportPending(const Invocation& inv, const v1::PendingRequestInfo& info,
                   const std::string& server_message) {
  if (inv.json) {
    std::printf("%s\n", JsonObject()
                            .Add("status", "PENDING_APPROVAL")
                            .Add("message", server_message)
                            .AddRaw("pending", PendingJson(info))
                            .str()
                            .c_str());
    return;
  }
  std::printf("pending approval: %s (%s) needs %s\n", info.id().c_str(),
              OrDash(info.summary()).c_str(), OrDash(NeedsText(info)).c_str());
  std::printf("follow it with `custos request wait %s`\n", info.id().c_str());
}

std::optional<Failure> WaitForRequest(Invocation& inv, const std::string& id,
                                      std::uint64_t timeout_seconds, v1::PendingRequestInfo* info) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_seconds);
  auto interval = std::chrono::milliseconds(500);
  for (;;) {
    if (auto f = GetRequest(inv, id, info)) return f;
    const std::string& state = info->state();
    if (state == "executed") return std::nullopt;
    if (!IsWaitingState(state)) {
      std::string text = "request " + id + " is " + state;
      if (!info->state_reason().empty()) text += ": " + info->state_reason();
      return Failure{kExitRefused, text};
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      return Failure{kExitPending, "request " + id + " is still " + state + " (" +
                                       ApprovalsText(*info) + " approvals); wait again with " +
                                       "`custos request wait " + id + "`"};
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(interval, deadline - now));
    interval = std::min(interval * 2, std::chrono::milliseconds(5000));
  }
}

std::optional<Failure> RequestList(Invocation& inv) {
  if (!inv.args.empty()) {
    return Failure{kExitUsage, "usage: custos request list [--state STATE|all] [--json]"};
  }
  v1::Request req;
  req.mutable_list_requests()->set_state(inv.state);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  const auto& list = resp.list_requests().requests();
  if (inv.json) {
    std::vector<std::string> items;
    for (const auto& r : list) items.push_back(PendingJson(r));
    std::printf("%s\n", JsonObject().AddRaw("requests", JsonArray(items)).str().c_str());
    return std::nullopt;
  }
  std::printf("%-35s %-11s %-16s %-28s %-44s %-9s %s\n", "ID", "STATE", "OPERATION", "KEY",
              "REQUESTER", "APPROVALS", "EXPIRES");
  for (const auto& r : list) {
    std::printf("%-35s %-11s %-16s %-28s %-44s %-9s %s\n", r.id().c_str(), r.state().c_str(),
                r.operation().c_str(), OrDash(r.key()).c_str(), r.requester().c_str(),
                ApprovalsText(r).c_str(), FormatUtc(r.expires_at()).c_str());
  }
  return std::nullopt;
}

std::optional<Failure> RequestShow(Invocation& inv) {
  if (inv.args.size() != 1) return Failure{kExitUsage, "usage: custos request show ID [--json]"};
  v1::PendingRequestInfo info;
  if (auto f = GetRequest(inv, inv.args[0], &info)) return f;
  if (inv.json) {
    std::printf("%s\n", PendingJson(info).c_str());
    return std::nullopt;
  }
  std::printf("id:             %s\n", info.id().c_str());
  std::printf("state:          %s%s%s\n", info.state().c_str(),
              info.state_reason().empty() ? "" : ": ", info.state_reason().c_str());
  std::printf("operation:      %s\n", info.operation().c_str());
  std::printf("summary:        %s\n", info.summary().c_str());
  std::printf("key:            %s\n", OrDash(info.key()).c_str());
  std::printf("requester:      %s\n", info.requester().c_str());
  std::printf("created:        %s\n", FormatUtc(info.created_at()).c_str());
  std::printf("expires:        %s\n", FormatUtc(info.expires_at()).c_str());
  std::printf("policy version: %llu\n", static_cast<unsigned long long>(info.policy_version()));
  std::printf("digest:         %s\n", info.digest().c_str());
  std::printf("approvals:      %s\n", ApprovalsText(info).c_str());
  for (const auto& q : info.quorum()) {
    std::string by;
    for (const auto& o : q.approved_by()) by += (by.empty() ? "" : ", ") + o;
    std::printf("  rule %s: %u of group %s; approved by %s\n", q.rule().c_str(), q.threshold(),
                q.group().c_str(), by.empty() ? "nobody yet" : by.c_str());
  }
  for (const auto& v : info.votes()) {
    std::printf("  vote: %s %s at %s%s%s\n", v.officer().c_str(), v.decision().c_str(),
                v.time().c_str(), v.reason().empty() ? "" : ": ", v.reason().c_str());
  }
  if (info.has_result()) std::printf("result:         %s\n", ResultText(info.result()).c_str());
  if (!info.canonical().empty()) {
    std::printf("canonical request (its SHA-256 is what officers sign):\n");
    std::string line;
    for (char c : info.canonical()) {
      if (c == '\n') {
        std::printf("  %s\n", line.c_str());
        line.clear();
      } else {
        line += c;
      }
    }
    if (!line.empty()) std::printf("  %s\n", line.c_str());
  }
  return std::nullopt;
}

std::optional<Failure> RequestWait(Invocation& inv) {
  const char* usage =
      "usage: custos request wait ID [--timeout DURATION] [--out FILE] [--chain FILE] [--der] "
      "[--json]";
  if (inv.args.size() != 1) return Failure{kExitUsage, usage};
  std::uint64_t timeout = 600;
  if (!inv.timeout.empty()) {
    if (auto f = ParseDuration(inv.timeout, "timeout", &timeout)) return f;
  }
  const std::string& id = inv.args[0];
  v1::PendingRequestInfo info;
  if (auto f = GetRequest(inv, id, &info)) return f;
  const bool is_sign = info.operation() == "sign";
  if (is_sign && inv.out.empty()) {
    return Failure{kExitUsage, "request " + id + " is a sign request: give --out FILE for the " +
                                   "signature (" + usage + ")"};
  }
  if (info.operation() == "issue-certificate" && inv.out.empty()) {
    return Failure{kExitUsage, "request " + id + " issues a certificate: give --out FILE for " +
                                   "it (" + usage + ")"};
  }
  if (auto f = WaitForRequest(inv, id, timeout, &info)) return f;
  // Certificates: written where --out/--chain say, reported as the operation
  // itself would have been (FinishIssue, FinishCaCreate).
  if (info.has_result() && info.result().has_issue_certificate() && !inv.out.empty()) {
    return FinishIssue(inv, info.result().issue_certificate());
  }
  if (info.has_result() && info.result().has_create_ca()) {
    return FinishCaCreate(inv, info.result().create_ca());
  }
  if (info.operation() == "issue-certificate") {
    return Failure{kExitRefused, "request " + id +
                                     " was executed but the server returned no certificate "
                                     "(only the requester receives it)"};
  }
  if (is_sign) {
    if (!info.has_result() || !info.result().has_sign()) {
      return Failure{kExitRefused, "request " + id +
                                       " was executed but the server returned no signature "
                                       "(only the requester receives it)"};
    }
    const auto& sign = info.result().sign();
    if (auto f = WriteFile(inv.out, sign.signature())) return f;
    if (inv.json) {
      std::printf("%s\n", PendingJson(info).c_str());
    } else {
      std::printf("executed %s: signed with %s@%u (%s): %s\n", id.c_str(), sign.key().c_str(),
                  sign.key_version(), sign.algorithm().c_str(), inv.out.c_str());
    }
    return std::nullopt;
  }
  if (inv.json) {
    std::printf("%s\n", PendingJson(info).c_str());
  } else {
    const std::string result = info.has_result() ? ResultText(info.result()) : "";
    std::printf("executed %s%s%s\n", id.c_str(), result.empty() ? "" : ": ", result.c_str());
  }
  return std::nullopt;
}

}  // namespace custos::cli
