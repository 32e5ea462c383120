// Policy commands: custos policy show|check|propose (docs/operations.md
// "Quorum", docs/policy.md).
#include <cstdio>

#include "cli.h"
#include "custos/policy/policy.h"
#include "custos/policy/quorum.h"

namespace custos::cli {
namespace {

// Policy files larger than this are refused (the daemon's frame limit is 1 MiB).
constexpr std::size_t kMaxPolicyFile = 512 * 1024;

std::string Joined(const google::protobuf::RepeatedPtrField<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::string RequirementsText(const std::vector<policy::QuorumRequirement>& reqs) {
  std::string out;
  for (const auto& r : reqs) {
    if (!out.empty()) out += ", ";
    out += r.rule + ": " + std::to_string(r.threshold) + " of group " + r.group;
  }
  return out;
}

std::string RequirementsJson(const std::vector<policy::QuorumRequirement>& reqs) {
  std::vector<std::string> items;
  for (const auto& r : reqs) {
    items.push_back(JsonObject()
                        .Add("rule", r.rule)
                        .Add("group", r.group)
                        .Add("threshold", static_cast<std::int64_t>(r.threshold))
                        .str());
  }
  return JsonArray(items);
}

}  // namespace

std::optional<Failure> PolicyShow(Invocation& inv) {
  if (!inv.args.empty()) {
    return Failure{kExitUsage, "usage: custos policy show [--out FILE] [--json]"};
  }
  v1::Request req;
  req.mutable_get_policy();
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  const v1::PolicyInfo& p = resp.policy();
  if (!inv.out.empty()) {
    if (auto f = WriteFile(inv.out, p.text())) return f;
  }
  if (inv.json) {
    std::vector<std::string> approved;
    for (const auto& a : p.approved_by()) approved.push_back(JsonString(a));
    JsonObject o;
    o.Add("version", static_cast<std::int64_t>(p.version()))
        .Add("sha256", p.sha256())
        .Add("activated_at", p.activated_at())
        .Add("activated", FormatUtc(p.activated_at()))
        .Add("request_id", p.request_id())
        .Add("proposed_by", p.proposed_by())
        .AddRaw("approved_by", JsonArray(approved));
    if (inv.out.empty()) o.Add("text", p.text());
    std::printf("%s\n", o.str().c_str());
    return std::nullopt;
  }
  // Comment lines keep the output a valid policy file.
  const std::string header =
      "# active policy version " + std::to_string(p.version()) + ", sha256 " + p.sha256() +
      "\n# activated " + FormatUtc(p.activated_at()) + " by " + p.request_id() +
      (p.proposed_by().empty() ? "" : ", proposed by " + p.proposed_by()) +
      (p.approved_by().empty() ? "" : ", approved by " + Joined(p.approved_by())) + "\n";
  if (!inv.out.empty()) {
    std::printf("wrote policy version %llu (sha256 %s) to %s\n",
                static_cast<unsigned long long>(p.version()), p.sha256().c_str(), inv.out.c_str());
    return std::nullopt;
  }
  std::fputs(header.c_str(), stdout);
  std::fwrite(p.text().data(), 1, p.text().size(), stdout);
  if (!p.text().empty() && p.text().back() != '\n') std::fputs("\n", stdout);
  return std::nullopt;
}

std::optional<Failure> PolicyCheck(Invocation& inv) {
  if (inv.args.size() != 1) return Failure{kExitUsage, "usage: custos policy check FILE [--json]"};
  const std::string& file = inv.args[0];
  std::string text;
  if (auto f = ReadSmallFile(file, kMaxPolicyFile, "a policy file", &text)) return f;
  auto parsed = policy::Policy::Parse(text);
  if (auto* error = std::get_if<policy::ParseError>(&parsed)) {
    const std::string where = error->ToString(file);
    if (inv.json) {
      std::printf("%s\n", JsonObject()
                              .AddBool("valid", false)
                              .Add("file", file)
                              .Add("line", static_cast<std::int64_t>(error->line))
                              .Add("column", static_cast<std::int64_t>(error->column))
                              .Add("error", where)
                              .str()
                              .c_str());
      return Failure{kExitUsage, ""};
    }
    return Failure{kExitUsage, where};
  }
  const policy::Policy& proposed = std::get<policy::Policy>(parsed);

  // Compare with the active policy when the server is reachable.
  std::string compare_error;
  std::optional<policy::Policy> active;
  std::uint64_t active_version = 0;
  if (!inv.configured) {
    compare_error = "no server configured";
  } else {
    v1::Request req;
    req.mutable_get_policy();
    v1::Response resp;
    bool pending = false;
    if (auto f = inv.CallAllowPending(req, &resp, &pending)) {
      compare_error = f->message;
    } else {
      active_version = resp.policy().version();
      auto current = policy::Policy::Parse(resp.policy().text());
      if (auto* error = std::get_if<policy::ParseError>(&current)) {
        compare_error = "the server's active policy does not parse here: " + error->ToString();
      } else {
        active.emplace(std::move(std::get<policy::Policy>(current)));
      }
    }
  }
  std::vector<std::string> diff;
  std::vector<policy::QuorumRequirement> needs;
  if (active) {
    diff = policy::DiffPolicies(*active, proposed);
    needs = policy::QuorumPolicy::ForPolicyChange(*active, proposed);
  }
  const bool version_ok = !active || proposed.version() > active_version;
  if (inv.json) {
    JsonObject o;
    o.AddBool("valid", true)
        .Add("file", file)
        .Add("version", static_cast<std::int64_t>(proposed.version()));
    if (active) {
      std::vector<std::string> lines;
      for (const auto& d : diff) lines.push_back(JsonString(d));
      o.Add("active_version", static_cast<std::int64_t>(active_version))
          .AddBool("version_ok", version_ok)
          .AddRaw("diff", JsonArray(lines))
          .AddRaw("quorum", RequirementsJson(needs));
    } else {
      o.Add("not_compared", compare_error);
    }
    std::printf("%s\n", o.str().c_str());
    return std::nullopt;
  }
  std::printf("%s: valid policy, version %llu\n", file.c_str(),
              static_cast<unsigned long long>(proposed.version()));
  if (!active) {
    std::printf("not compared with the active policy: %s\n", compare_error.c_str());
    return std::nullopt;
  }
  std::printf("active policy: version %llu\n", static_cast<unsigned long long>(active_version));
  if (!version_ok) {
    std::printf(
        "warning: version %llu is not higher than the active version %llu; "
        "custos policy propose will be refused\n",
        static_cast<unsigned long long>(proposed.version()),
        static_cast<unsigned long long>(active_version));
  }
  if (diff.empty()) {
    std::printf("no changes apart from the version\n");
  } else {
    std::printf("changes:\n");
    for (const auto& d : diff) std::printf("  %s\n", d.c_str());
  }
  if (needs.empty()) {
    std::printf("quorum: none; custos policy propose applies it at once\n");
  } else {
    std::printf("quorum: %s\n", RequirementsText(needs).c_str());
  }
  return std::nullopt;
}

std::optional<Failure> PolicyPropose(Invocation& inv) {
  if (inv.args.size() != 1) {
    return Failure{kExitUsage, "usage: custos policy propose FILE [--note TEXT] [--json]"};
  }
  const std::string& file = inv.args[0];
  std::string text;
  if (auto f = ReadSmallFile(file, kMaxPolicyFile, "a policy file", &text)) return f;
  // Catch mistakes before they reach the officers.
  auto parsed = policy::Policy::Parse(text);
  if (auto* error = std::get_if<policy::ParseError>(&parsed)) {
    return Failure{kExitUsage, error->ToString(file)};
  }
  v1::Request req;
  req.set_note(inv.note);
  req.mutable_propose_policy()->set_text(text);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  const v1::PendingRequestInfo& info = resp.pending();
  if (inv.json) {
    std::printf("%s\n", PendingJson(info).c_str());
    return std::nullopt;
  }
  std::printf("policy version %llu from %s is active (%s: no quorum rule covers this change)\n",
              static_cast<unsigned long long>(std::get<policy::Policy>(parsed).version()),
              file.c_str(), info.id().c_str());
  return std::nullopt;
}

}  // namespace custos::cli
