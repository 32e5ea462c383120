// Key lifecycle commands: keys rotate, disable, enable, destroy,
// mark-compromised (docs/operations.md, "Key lifecycle").
#include <cstdio>

#include "cli.h"

namespace custos::cli {

std::string KeyVersionJson(const v1::KeyVersionInfo& v) {
  JsonObject o;
  o.Add("version", static_cast<std::int64_t>(v.version()))
      .Add("state", v.state())
      .Add("created_at", static_cast<std::int64_t>(v.created_at()))
      .Add("created", FormatUtc(static_cast<std::int64_t>(v.created_at())))
      .Add("expires_at", v.expires_at())
      .Add("expires", v.expires_at() != 0 ? FormatUtc(v.expires_at()) : "")
      .AddBool("expired", v.expired())
      .Add("state_changed_at", v.state_changed_at())
      .Add("token_label", v.token_label())
      .Add("token_id", v.token_id())
      .Add("public_key_sha256", v.public_key_sha256());
  if (!v.token_check().empty()) o.Add("token_check", v.token_check());
  return o.str();
}

std::optional<Failure> KeysRotate(Invocation& inv) {
  const char* usage = "custos keys rotate NAME [--expires DURATION] [--note TEXT] [--json]";
  if (inv.args.size() != 1) return Failure{kExitUsage, std::string("usage: ") + usage};
  v1::Request req;
  req.set_note(inv.note);
  auto* rotate = req.mutable_rotate_key();
  rotate->set_name(inv.args[0]);
  if (!inv.expires.empty()) {
    std::uint64_t seconds = 0;
    if (auto f = ParseDuration(inv.expires, "expires", &seconds)) return f;
    rotate->set_crypto_period_seconds(seconds);
  }
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  const v1::KeyInfo& k = resp.rotate_key();
  if (inv.json) {
    std::printf("%s\n", KeyJson(k).c_str());
    return std::nullopt;
  }
  std::printf("rotated key %s: version %u is active", k.name().c_str(), k.active_version());
  for (const auto& v : k.versions()) {
    if (v.version() + 1 == k.active_version() && v.state() == "deactivated") {
      std::printf(", %s@%u is deactivated (verify only)", k.name().c_str(), v.version());
    }
  }
  std::printf("\n");
  return std::nullopt;
}

std::optional<Failure> KeysStateChange(Invocation& inv, std::string_view action) {
  const std::string usage =
      "custos keys " + std::string(action) + " NAME[@V] [--note TEXT] [--json]";
  if (inv.args.size() != 1) return Failure{kExitUsage, "usage: " + usage};
  v1::Request req;
  req.set_note(inv.note);
  v1::KeyVersionRequest* target = nullptr;
  const v1::KeyInfo* (*result)(const v1::Response&) = nullptr;
  if (action == "disable") {
    target = req.mutable_disable_key();
    result = [](const v1::Response& r) { return &r.disable_key(); };
  } else if (action == "enable") {
    target = req.mutable_enable_key();
    result = [](const v1::Response& r) { return &r.enable_key(); };
  } else if (action == "destroy") {
    target = req.mutable_destroy_key();
    result = [](const v1::Response& r) { return &r.destroy_key(); };
  } else {
    target = req.mutable_mark_compromised();
    result = [](const v1::Response& r) { return &r.mark_compromised(); };
  }
  target->set_key(inv.args[0]);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  const v1::KeyInfo& k = *result(resp);
  if (inv.json) {
    std::printf("%s\n", KeyJson(k).c_str());
    return std::nullopt;
  }
  std::printf("%s %s:", std::string(action).c_str(), inv.args[0].c_str());
  for (const auto& v : k.versions()) {
    std::printf(" %s@%u %s", k.name().c_str(), v.version(), v.state().c_str());
    if (&v != &*k.versions().rbegin()) std::printf(",");
  }
  if (k.active_version() != 0) {
    std::printf("; active version %u\n", k.active_version());
  } else {
    std::printf("; no active version\n");
  }
  return std::nullopt;
}

}  // namespace custos::cli
