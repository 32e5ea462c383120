#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>

#include "cli.h"

namespace custos::cli {
namespace {

using custos::client::ErrorCode;

Failure Usage(std::string message) { return Failure{kExitUsage, std::move(message)}; }

}  // namespace

std::string RefusalText(const v1::Status& status) {
  std::string text = "server refused: " + v1::StatusCode_Name(status.code());
  if (!status.message().empty()) text += ": " + status.message();
  std::string extra;
  if (!status.policy_rule().empty()) extra = "policy rule " + status.policy_rule();
  if (!status.ckr().empty()) extra += (extra.empty() ? "" : ", ") + status.ckr();
  if (!extra.empty()) text += " (" + extra + ")";
  return text;
}

namespace {

// "name@3" -> "name".
std::string KeyBaseName(const std::string& key) { return key.substr(0, key.find('@')); }

std::string Join(const google::protobuf::RepeatedPtrField<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ",") + s;
  return out;
}

// "2026-01-02T03:04:05Z (expired)", or "never".
std::string ExpiryText(const v1::KeyVersionInfo& v) {
  if (v.expires_at() == 0) return "never";
  return FormatUtc(v.expires_at()) + (v.expired() ? " (expired)" : "");
}

std::optional<Failure> NeedArgs(const Invocation& inv, std::size_t n, const char* usage) {
  if (inv.args.size() != n) return Usage(std::string("usage: ") + usage);
  return std::nullopt;
}

// The algorithm to use: --algorithm, else the only one the key type allows.
std::optional<Failure> ChooseAlgorithm(const Invocation& inv, const std::string& key_label,
                                       const std::string& key_type, const AlgorithmInfo** out) {
  if (!inv.algorithm.empty()) {
    *out = FindAlgorithm(inv.algorithm);
    if (*out == nullptr) {
      return Usage("unknown algorithm '" + inv.algorithm + "': use one of " + AlgorithmNames());
    }
    return std::nullopt;
  }
  if (key_type.rfind("rsa-", 0) == 0) {
    return Usage("key " + key_label +
                 " is RSA: name the padding and hash with --algorithm "
                 "rsa-pkcs1-sha256|rsa-pkcs1-sha384|rsa-pkcs1-sha512|rsa-pss-sha256|"
                 "rsa-pss-sha384|rsa-pss-sha512");
  }
  *out = OnlyAlgorithmFor(key_type);
  if (*out == nullptr) {
    return Usage("key " + key_label + " has type '" + key_type +
                 "' with no default algorithm: name one with --algorithm");
  }
  return std::nullopt;
}

}  // namespace

std::string KeyJson(const v1::KeyInfo& k) {
  std::vector<std::string> algs, versions;
  for (const auto& a : k.algorithms()) algs.push_back(JsonString(a));
  for (const auto& v : k.versions()) versions.push_back(KeyVersionJson(v));
  return JsonObject()
      .Add("name", k.name())
      .Add("key_type", k.key_type())
      .Add("usage", k.usage())
      .Add("active_version", static_cast<std::int64_t>(k.active_version()))
      .AddRaw("algorithms", JsonArray(algs))
      .AddRaw("versions", JsonArray(versions))
      .str();
}

void PrintKey(const v1::KeyInfo& k) {
  std::printf("name:           %s\n", k.name().c_str());
  std::printf("type:           %s\n", k.key_type().c_str());
  std::printf("usage:          %s\n", k.usage().c_str());
  if (k.active_version() != 0) {
    std::printf("active version: %u\n", k.active_version());
  } else {
    std::printf("active version: none\n");
  }
  std::printf("algorithms:     %s\n", Join(k.algorithms()).c_str());
  for (const auto& v : k.versions()) {
    std::printf("version %u: %s, created %s, expires %s, token label %s, id %s\n", v.version(),
                v.state().c_str(), FormatUtc(static_cast<std::int64_t>(v.created_at())).c_str(),
                ExpiryText(v).c_str(), v.token_label().c_str(), v.token_id().c_str());
    std::printf("  public key sha256: %s\n", v.public_key_sha256().c_str());
  }
}

std::optional<Failure> Invocation::Connected(client::Client** out) {
  if (!client_) {
    auto connected = client::Client::Connect(config);
    if (!connected.ok()) {
      const auto& e = connected.error();
      return Failure{e.code() == ErrorCode::kInvalidConfig ? kExitUsage : kExitConnect,
                     e.message()};
    }
    client_ = std::move(connected).value();
  }
  *out = client_.get();
  return std::nullopt;
}

std::optional<Failure> Invocation::CallAllowPending(v1::Request request, v1::Response* response,
                                                    bool* pending) {
  *pending = false;
  client::Client* unused = nullptr;
  if (auto f = Connected(&unused)) return f;
  auto result = client_->Call(std::move(request));
  if (!result.ok()) {
    const auto& e = result.error();
    return Failure{e.code() == ErrorCode::kInvalidConfig ? kExitUsage : kExitConnect, e.message()};
  }
  const v1::StatusCode code = result->status().code();
  if (code == v1::PENDING_APPROVAL && result->has_pending()) {
    *pending = true;
  } else if (code != v1::OK) {
    return Failure{kExitRefused, RefusalText(result->status())};
  }
  *response = std::move(result).value();
  return std::nullopt;
}

std::optional<Failure> Invocation::Call(v1::Request request, v1::Response* response) {
  bool pending = false;
  if (auto f = CallAllowPending(std::move(request), response, &pending)) return f;
  if (pending) {
    ReportPending(*this, response->pending(), response->status().message());
    return Failure{kExitPending, ""};
  }
  return std::nullopt;
}

std::optional<Failure> KeysList(Invocation& inv) {
  if (auto f = NeedArgs(inv, 0, "custos keys list [--check] [--expiring DURATION] [--json]")) {
    return f;
  }
  // --expiring: only versions that expire within DURATION from now, or have.
  std::optional<std::int64_t> horizon;
  if (!inv.expiring.empty()) {
    std::uint64_t seconds = 0;
    if (auto f = ParseDuration(inv.expiring, "expiring", &seconds)) return f;
    horizon = static_cast<std::int64_t>(std::time(nullptr)) + static_cast<std::int64_t>(seconds);
  }
  auto shown = [&](const v1::KeyVersionInfo& v) {
    return !horizon ||
           (v.expires_at() != 0 && v.state() != "destroyed" && v.expires_at() <= *horizon);
  };
  v1::Request req;
  req.mutable_list_keys()->set_check(inv.check);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  const auto& list = resp.list_keys();
  if (inv.json) {
    std::vector<std::string> keys;
    for (const auto& k : list.keys()) {
      if (!horizon) {
        keys.push_back(KeyJson(k));
        continue;
      }
      v1::KeyInfo filtered = k;
      filtered.clear_versions();
      for (const auto& v : k.versions()) {
        if (shown(v)) *filtered.add_versions() = v;
      }
      if (filtered.versions_size() > 0) keys.push_back(KeyJson(filtered));
    }
    JsonObject o;
    o.AddRaw("keys", JsonArray(keys));
    if (list.checked()) {
      std::vector<std::string> unknown;
      for (const auto& u : list.unknown_token_objects()) {
        unknown.push_back(JsonObject()
                              .Add("label", u.label())
                              .Add("token_id", u.token_id())
                              .Add("key_type", u.key_type())
                              .Add("reason", u.reason())
                              .str());
      }
      o.AddBool("checked", true).AddRaw("unknown_token_objects", JsonArray(unknown));
      if (!list.check_error().empty()) o.Add("check_error", list.check_error());
    }
    std::printf("%s\n", o.str().c_str());
    return std::nullopt;
  }
  std::printf("%-28s %-9s %-13s %-14s %-20s %-30s %-16s %-16s%s\n", "KEY", "TYPE", "USAGE", "STATE",
              "CREATED", "EXPIRES", "TOKEN_ID", "SHA256", list.checked() ? " TOKEN" : "");
  for (const auto& k : list.keys()) {
    for (const auto& v : k.versions()) {
      if (!shown(v)) continue;
      const std::string key = k.name() + "@" + std::to_string(v.version());
      std::printf("%-28s %-9s %-13s %-14s %-20s %-30s %-16s %-16s%s%s\n", key.c_str(),
                  k.key_type().c_str(), k.usage().c_str(), v.state().c_str(),
                  FormatUtc(static_cast<std::int64_t>(v.created_at())).c_str(),
                  ExpiryText(v).c_str(), v.token_id().c_str(),
                  v.public_key_sha256().substr(0, 16).c_str(), list.checked() ? " " : "",
                  v.token_check().c_str());
    }
  }
  if (list.checked()) {
    if (!list.check_error().empty()) {
      std::printf("token check failed: %s\n", list.check_error().c_str());
    }
    for (const auto& u : list.unknown_token_objects()) {
      std::printf("unknown token object: label %s, id %s, type %s: %s\n",
                  u.label().empty() ? "(none)" : u.label().c_str(),
                  u.token_id().empty() ? "(none)" : u.token_id().c_str(),
                  u.key_type().empty() ? "(unsupported)" : u.key_type().c_str(),
                  u.reason().c_str());
    }
  }
  return std::nullopt;
}

std::optional<Failure> KeysCreate(Invocation& inv) {
  const char* usage =
      "custos keys create NAME --type ec-p256|ec-p384|rsa-2048|rsa-3072|rsa-4096|ed25519 "
      "--usage code-signing|ca|ssh-ca|timestamping|audit [--expires DURATION] [--note TEXT] "
      "[--json]";
  if (auto f = NeedArgs(inv, 1, usage)) return f;
  if (inv.type.empty() || inv.usage.empty()) return Usage(std::string("usage: ") + usage);
  if (!IsKeyType(inv.type)) {
    return Usage("unknown key type '" + inv.type +
                 "': use ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519");
  }
  if (!IsKeyUsage(inv.usage)) {
    return Usage("unknown key usage '" + inv.usage +
                 "': use code-signing, ca, ssh-ca, timestamping or audit");
  }
  v1::Request req;
  req.set_note(inv.note);
  req.mutable_create_key()->set_name(inv.args[0]);
  req.mutable_create_key()->set_key_type(inv.type);
  req.mutable_create_key()->set_usage(inv.usage);
  if (!inv.expires.empty()) {
    std::uint64_t seconds = 0;
    if (auto f = ParseDuration(inv.expires, "expires", &seconds)) return f;
    req.mutable_create_key()->set_crypto_period_seconds(seconds);
  }
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  if (inv.json) {
    std::printf("%s\n", KeyJson(resp.create_key()).c_str());
  } else {
    std::printf("created key %s (%s, %s), version %u\n", resp.create_key().name().c_str(),
                resp.create_key().key_type().c_str(), resp.create_key().usage().c_str(),
                resp.create_key().active_version());
  }
  return std::nullopt;
}

std::optional<Failure> KeysShow(Invocation& inv) {
  if (auto f = NeedArgs(inv, 1, "custos keys show NAME [--json]")) return f;
  v1::Request req;
  req.mutable_get_key()->set_key(inv.args[0]);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  if (inv.json) {
    std::printf("%s\n", KeyJson(resp.get_key()).c_str());
  } else {
    PrintKey(resp.get_key());
  }
  return std::nullopt;
}

std::optional<Failure> KeysPubkey(Invocation& inv) {
  if (auto f = NeedArgs(inv, 1, "custos keys pubkey NAME[@V] [--format pem|ssh] [--out FILE]")) {
    return f;
  }
  if (!inv.format.empty() && inv.format != "pem" && inv.format != "ssh") {
    return Failure{kExitUsage, "--format must be pem or ssh (see custos --help)"};
  }
  v1::Request req;
  req.mutable_get_public_key()->set_key(inv.args[0]);
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  if (inv.format == "ssh") {
    // One OpenSSH line commented "custos:NAME" (what `custos -Y sign -f` reads).
    const std::string& line = resp.get_public_key().ssh_public_key();
    if (line.empty()) {
      return Failure{kExitRefused, "key " + inv.args[0] + " (" + resp.get_public_key().key_type() +
                                       ") has no OpenSSH form"};
    }
    const std::string text = line + "\n";
    if (inv.out.empty()) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      return std::nullopt;
    }
    return WriteFile(inv.out, text);
  }
  Pkey key = PublicKeyFromDer(resp.get_public_key().spki_der());
  if (!key) {
    return Failure{kExitRefused, "server sent a public key for " + inv.args[0] +
                                     " that is not a DER SubjectPublicKeyInfo"};
  }
  const std::string pem = PublicKeyPem(key.get());
  if (inv.out.empty()) {
    std::fwrite(pem.data(), 1, pem.size(), stdout);
    return std::nullopt;
  }
  return WriteFile(inv.out, pem);
}

std::optional<Failure> ResolveSignAlgorithm(Invocation& inv, const AlgorithmInfo** alg) {
  if (inv.algorithm.empty()) {
    v1::Request req;
    req.mutable_get_key()->set_key(KeyBaseName(inv.key_name));
    v1::Response resp;
    if (auto f = inv.Call(req, &resp)) return f;
    return ChooseAlgorithm(inv, inv.key_name, resp.get_key().key_type(), alg);
  }
  return ChooseAlgorithm(inv, inv.key_name, "", alg);
}

std::optional<Failure> Sign(Invocation& inv) {
  const char* usage =
      "custos sign --key NAME[@V] [--algorithm ALG] --in FILE --out SIG [--wait DURATION] "
      "[--note TEXT] [--json]";
  if (auto f = NeedArgs(inv, 0, usage)) return f;
  if (inv.key_name.empty() || inv.in.empty() || inv.out.empty()) {
    return Usage(std::string("usage: ") + usage);
  }
  const AlgorithmInfo* alg = nullptr;
  if (auto f = ResolveSignAlgorithm(inv, &alg)) return f;

  std::uint64_t wait_seconds = 0;
  if (!inv.wait.empty()) {
    if (auto f = ParseDuration(inv.wait, "wait", &wait_seconds)) return f;
  }

  v1::Request req;
  req.set_note(inv.note);
  auto* sign = req.mutable_sign();
  sign->set_key(inv.key_name);
  sign->set_file_name(std::filesystem::path(inv.in).filename().string());
  sign->set_algorithm(alg->name);
  if (alg->family == SigFamily::kEd25519) {
    std::string message;
    if (auto f = ReadSmallFile(inv.in, kMaxEd25519Message,
                               "Ed25519 (pure Ed25519 signs the message itself; sign a hash "
                               "of the file, or use an ECDSA or RSA key)",
                               &message)) {
      return f;
    }
    sign->set_message(std::move(message));
  } else {
    std::string digest;
    if (auto f = HashFile(inv.in, alg->digest, &digest)) return f;
    sign->set_digest(std::move(digest));
  }
  v1::SignResponse result;
  if (auto f = CallSign(inv, std::move(req), wait_seconds, &result)) return f;
  return FinishSign(inv, result);
}

std::optional<Failure> CallSign(Invocation& inv, v1::Request request, std::uint64_t wait_seconds,
                                v1::SignResponse* result) {
  v1::Response resp;
  bool pending = false;
  if (auto f = inv.CallAllowPending(std::move(request), &resp, &pending)) return f;
  if (!pending) {
    *result = resp.sign();
    return std::nullopt;
  }
  const v1::PendingRequestInfo& held = resp.pending();
  if (wait_seconds == 0) {
    ReportPending(inv, held, resp.status().message());
    return Failure{kExitPending, ""};
  }
  std::fprintf(stderr, "custos: %s needs approval; waiting up to %s (%s approvals so far)\n",
               held.id().c_str(), inv.wait.c_str(), ApprovalsText(held).c_str());
  v1::PendingRequestInfo done;
  if (auto f = WaitForRequest(inv, held.id(), wait_seconds, &done)) return f;
  if (!done.has_result() || !done.result().has_sign()) {
    return Failure{kExitRefused, "request " + held.id() +
                                     " was executed but the server returned no signature "
                                     "(only the requester receives it)"};
  }
  *result = done.result().sign();
  return std::nullopt;
}

std::optional<Failure> FinishSign(Invocation& inv, const v1::SignResponse& result) {
  if (auto f = WriteFile(inv.out, result.signature())) return f;
  if (inv.json) {
    std::printf("%s\n", JsonObject()
                            .Add("key", result.key())
                            .Add("key_version", static_cast<std::int64_t>(result.key_version()))
                            .Add("algorithm", result.algorithm())
                            .Add("in", inv.in)
                            .Add("out", inv.out)
                            .Add("signature_base64", Base64(result.signature()))
                            .str()
                            .c_str());
  } else {
    std::printf("signed %s with %s@%u (%s): %s\n", inv.in.c_str(), result.key().c_str(),
                result.key_version(), result.algorithm().c_str(), inv.out.c_str());
  }
  return std::nullopt;
}

std::optional<Failure> Verify(Invocation& inv, int* exit_code) {
  const char* usage =
      "custos verify --key NAME[@V] [--algorithm ALG] --in FILE --sig SIG [--pubkey PEM] [--json]";
  if (auto f = NeedArgs(inv, 0, usage)) return f;
  if ((inv.key_name.empty() && inv.pubkey.empty()) || inv.in.empty() || inv.sig.empty()) {
    return Usage(std::string("usage: ") + usage);
  }
  Pkey key;
  std::string key_label = inv.key_name;
  std::int64_t key_version = 0;
  if (!inv.pubkey.empty()) {
    if (auto f = LoadPublicKeyPem(inv.pubkey, &key)) return f;
    if (key_label.empty()) key_label = inv.pubkey;
  } else {
    v1::Request req;
    req.mutable_get_public_key()->set_key(inv.key_name);
    v1::Response resp;
    if (auto f = inv.Call(req, &resp)) return f;
    key = PublicKeyFromDer(resp.get_public_key().spki_der());
    if (!key) {
      return Failure{kExitRefused, "server sent a public key for " + inv.key_name +
                                       " that is not a DER SubjectPublicKeyInfo"};
    }
    key_version = resp.get_public_key().key_version();
    if (resp.get_public_key().key_version() != 0) {
      key_label = resp.get_public_key().key() + "@" + std::to_string(key_version);
    }
  }
  const std::string key_type = KeyTypeOf(key.get());
  if (key_type.empty()) return Usage("public key of " + key_label + " has an unsupported type");
  const AlgorithmInfo* alg = nullptr;
  if (auto f = ChooseAlgorithm(inv, key_label, key_type, &alg)) return f;
  const bool rsa_key = key_type.rfind("rsa-", 0) == 0;
  const bool fits =
      (alg->family == SigFamily::kEd25519 && key_type == "ed25519") ||
      ((alg->family == SigFamily::kRsaPkcs1 || alg->family == SigFamily::kRsaPss) && rsa_key) ||
      (alg->family == SigFamily::kEcdsa && OnlyAlgorithmFor(key_type) == alg);
  if (!fits) {
    return Usage("algorithm " + std::string(alg->name) + " does not fit key " + key_label + " (" +
                 key_type + ")");
  }
  std::string sig;
  if (auto f = ReadSmallFile(inv.sig, 64 * 1024, "a signature file", &sig)) return f;
  bool valid = false;
  if (auto f = VerifyFile(key.get(), *alg, inv.in, sig, &valid)) return f;
  *exit_code = valid ? kExitOk : kExitBadSignature;
  if (inv.json) {
    JsonObject o;
    o.AddBool("valid", valid).Add("key", key_label);
    if (key_version != 0) o.Add("key_version", key_version);
    o.Add("algorithm", alg->name).Add("in", inv.in).Add("sig", inv.sig);
    std::printf("%s\n", o.str().c_str());
  } else if (valid) {
    std::printf("signature OK: %s signed by %s (%s)\n", inv.in.c_str(), key_label.c_str(),
                alg->name);
  } else {
    std::fprintf(stderr, "custos: signature did not verify: %s, %s, key %s (%s)\n", inv.sig.c_str(),
                 inv.in.c_str(), key_label.c_str(), alg->name);
  }
  return std::nullopt;
}

std::optional<Failure> Ping(Invocation& inv) {
  if (auto f = NeedArgs(inv, 0, "custos ping [--json]")) return f;
  v1::Request req;
  req.mutable_ping();
  v1::Response resp;
  // The first call includes connecting; time a second one for the round trip.
  if (auto f = inv.Call(req, &resp)) return f;
  const auto start = std::chrono::steady_clock::now();
  if (auto f = inv.Call(req, &resp)) return f;
  const double rtt_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (inv.json) {
    char rtt[32];
    std::snprintf(rtt, sizeof rtt, "%.3f", rtt_ms);
    std::printf("%s\n",
                JsonObject()
                    .Add("server", inv.config.server)
                    .Add("server_version", resp.ping().server_version())
                    .Add("uptime_seconds", static_cast<std::int64_t>(resp.ping().uptime_seconds()))
                    .AddRaw("rtt_ms", rtt)
                    .str()
                    .c_str());
  } else {
    std::printf("custosd %s at %s: up %llu s, round trip %.3f ms\n",
                resp.ping().server_version().c_str(), inv.config.server.c_str(),
                static_cast<unsigned long long>(resp.ping().uptime_seconds()), rtt_ms);
  }
  return std::nullopt;
}

}  // namespace custos::cli
