// custosd: the Custos signing daemon. See docs/architecture.md.
//
// Exit codes: 0 success (also after a graceful shutdown), 1 a runtime failure
// (token, store, TLS, listen), 2 a configuration or policy error.

#include <google/protobuf/stubs/logging.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "custos/pkcs11/secret.h"
#include "custos/pkcs11/token.h"
#include "custos/policy/policy.h"
#include "custos/service/audit_log.h"
#include "custos/service/config.h"
#include "custos/service/core.h"
#include "custos/service/hardening.h"
#include "custos/service/key_store.h"
#include "custos/service/log.h"
#include "custos/service/server.h"

namespace {

using namespace custos::service;  // NOLINT: one file, the daemon's own namespace

constexpr int kExitRuntime = 1;
constexpr int kExitConfig = 2;

int Fail(Logger& logger, int code, std::string_view event, const std::string& message) {
  LogLine(logger, LogLevel::kWarn, event).Str("error", message);
  std::fprintf(stderr, "custosd: %s\n", message.c_str());
  return code;
}

// The core's own audit records (quorum executions, policy imports), written
// through the same log as the network side's, synchronously.
class AuditLogSink final : public AuditSink {
 public:
  explicit AuditLogSink(AuditLog& log) : log_(log) {}
  Result<void> RecordDurably(const custos::service::audit::RequestFields& record) override {
    auto done = std::make_shared<std::promise<Result<void>>>();
    auto future = done->get_future();
    log_.Append(record, [done](const Result<void>& r) { done->set_value(r); });
    return future.get();
  }

 private:
  AuditLog& log_;
};

// Detaches the sink from the core before the sink and the log go away.
// Built in place (never copied: a copy's destructor would detach early).
class SinkDetach {
 public:
  explicit SinkDetach(SigningCore& core) : core_(core) {}
  SinkDetach(const SinkDetach&) = delete;
  SinkDetach& operator=(const SinkDetach&) = delete;
  ~SinkDetach() { core_.SetAuditSink(nullptr); }

 private:
  SigningCore& core_;
};

// Protobuf reports e.g. invalid UTF-8 in a peer's string field through its
// own logger; a peer must not be able to fill our stderr with that.
void DiscardProtobufLog(google::protobuf::LogLevel, const char*, int, const std::string&) {}

int Main(int argc, char** argv) {
  if (auto hardened = HardenProcess(); !hardened) {
    std::fprintf(stderr, "custosd: %s\n", hardened.error().c_str());
    return kExitRuntime;
  }
  google::protobuf::SetLogHandler(&DiscardProtobufLog);

  std::vector<std::string> args(argv, argv + argc);
  auto parsed = ParseCommandLine(args);
  if (!parsed) {
    std::fprintf(stderr, "custosd: %s\n", parsed.error().c_str());
    return kExitConfig;
  }
  if (parsed->action == Action::kHelp) {
    std::fputs(parsed->help_text.c_str(), stdout);
    return 0;
  }
  if (parsed->action == Action::kVersion) {
    std::printf("custosd %s\n", CUSTOS_VERSION);
    return 0;
  }
  const Config& config = parsed->config;
  Logger logger(config.server.log_level);
  LogLine(logger, LogLevel::kInfo, "config")
      .Str("version", CUSTOS_VERSION)
      .Str("config", config.config_file)
      .Str("listen", config.server.listen_host + ":" + std::to_string(config.server.listen_port))
      .Unsigned("workers", config.server.workers)
      .Unsigned("io_threads", config.server.io_threads)
      .Str("io_scheduling", ThreadSchedulingName(config.server.io_scheduling))
      .Str("state_dir", config.server.state_dir)
      .Str("policy", config.server.policy)
      .Str("module", config.hsm.module)
      .Str("token", config.hsm.token)
      .Str("pin_source", config.hsm.pin_file.empty() ? "env" : "file")
      .Unsigned("max_sessions", config.hsm.max_sessions)
      .Bool("crl", !config.tls.crl.empty());

  for (const auto& entry : config.hsm.module_env) {
    const auto eq = entry.find('=');
    if (setenv(entry.substr(0, eq).c_str(), entry.substr(eq + 1).c_str(), 1) != 0) {
      return Fail(logger, kExitConfig, "config_error",
                  "cannot set hsm.module-env " + entry.substr(0, eq) + ": " + std::strerror(errno));
    }
  }

  // Policy.
  std::ifstream policy_in(config.server.policy, std::ios::binary);
  if (!policy_in) {
    return Fail(logger, kExitConfig, "policy_error",
                "cannot read policy file " + config.server.policy);
  }
  std::ostringstream policy_text;
  policy_text << policy_in.rdbuf();
  auto policy = custos::policy::Policy::Parse(policy_text.str());
  if (auto* err = std::get_if<custos::policy::ParseError>(&policy)) {
    const std::string where = err->ToString(config.server.policy);
    LogLine(logger, LogLevel::kWarn, "policy_error").Str("error", where);
    std::fprintf(stderr, "%s\n", where.c_str());
    return kExitConfig;
  }

  // Token. The PIN lives in a SecretBytes only; an environment copy is
  // removed so that no child process inherits it.
  auto pin = config.hsm.pin_file.empty() ? custos::pkcs11::ReadPinEnv(config.hsm.pin_env)
                                         : custos::pkcs11::ReadPinFile(config.hsm.pin_file);
  if (!config.hsm.pin_env.empty()) unsetenv(config.hsm.pin_env.c_str());
  if (!pin) return Fail(logger, kExitConfig, "pin_error", pin.error().message());
  custos::pkcs11::TokenConfig token_config;
  token_config.module_path = config.hsm.module;
  token_config.token = config.hsm.token;
  token_config.pin = std::move(pin.value());
  token_config.max_sessions = config.hsm.max_sessions;
  auto token = custos::pkcs11::Token::Open(std::move(token_config));
  if (!token) return Fail(logger, kExitRuntime, "token_error", token.error().message());
  const auto info = (*token)->Info();
  LogLine(logger, LogLevel::kInfo, "token_open")
      .Str("token", info.label)
      .Str("serial", info.serial)
      .Str("manufacturer", info.manufacturer)
      .Str("model", info.model)
      .Unsigned("slot", info.slot_id);

  // State store.
  if (mkdir(config.server.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Fail(
        logger, kExitRuntime, "store_error",
        "cannot create state directory " + config.server.state_dir + ": " + std::strerror(errno));
  }
  auto store = KeyStore::Open(config.server.state_dir + "/custos.db");
  if (!store) return Fail(logger, kExitRuntime, "store_error", store.error());

  CoreLimits limits;
  limits.max_message_bytes = config.limits.max_message_bytes;
  limits.max_batch_items = config.limits.max_batch_items;
  auto core = SigningCore::Create(std::move(token.value()),
                                  std::move(std::get<custos::policy::Policy>(policy)),
                                  policy_text.str(), std::move(store.value()), limits, logger);
  if (!core) return Fail(logger, kExitRuntime, "core_error", core.error());
  LogLine(logger, LogLevel::kInfo, "keys_loaded")
      .Unsigned("keys", (*core)->key_count())
      .Unsigned("policy_version", (*core)->policy_version());

  // Audit log (docs/audit.md). Checkpoints are signed in the HSM by the key
  // audit.key; without a usable one the log is chained but unsigned.
  std::unique_ptr<AuditLog> audit;
  if (parsed->action != Action::kCheckConfig) {
    std::optional<CheckpointSigner> signer;
    SigningCore* signing_core = core->get();
    const std::string audit_key = config.audit.key;
    const std::array<std::uint8_t, 32> probe{};
    std::string key_version;
    if (auto test = signing_core->SignAuditDigest(audit_key, probe, &key_version); test) {
      signer = CheckpointSigner{
          "ecdsa-p256-sha256",
          [signing_core,
           audit_key](std::span<const std::uint8_t> digest) -> Result<CheckpointSignature> {
            CheckpointSignature out;
            auto sig = signing_core->SignAuditDigest(audit_key, digest, &out.key);
            if (!sig) return Error{sig.error()};
            out.signature = std::move(sig.value());
            return out;
          }};
    } else {
      LogLine(logger, LogLevel::kWarn, "audit_key_unusable")
          .Str("key", audit_key)
          .Str("error", test.error());
    }
    AuditOptions audit_options;
    audit_options.path = config.audit.log;
    audit_options.checkpoint_records = config.audit.checkpoint_records;
    audit_options.checkpoint_interval = config.audit.checkpoint_interval;
    audit_options.retry_interval = config.audit.retry_interval;
    audit_options.commit_delay = config.audit.commit_delay;
    audit_options.writer_scheduling = config.server.io_scheduling;
    auto opened = AuditLog::Open(std::move(audit_options), std::move(signer), logger);
    if (!opened) return Fail(logger, kExitRuntime, "audit_error", opened.error());
    audit = std::move(opened.value());
  }

  // Quorum: finish what a restart interrupted, with the audit log open.
  std::unique_ptr<AuditLogSink> sink;
  std::optional<SinkDetach> detach;
  if (audit) {
    sink = std::make_unique<AuditLogSink>(*audit);
    (*core)->SetAuditSink(sink.get());
    detach.emplace(**core);
    if (auto resumed = (*core)->ResumeQuorum(); !resumed) {
      return Fail(logger, kExitRuntime, "quorum_error", resumed.error());
    }
  }

  // Network side.
  ServerOptions options;
  options.audit = audit.get();
  options.listen_host = config.server.listen_host;
  options.listen_port = config.server.listen_port;
  options.io_threads = config.server.io_threads;
  options.io_scheduling = config.server.io_scheduling;
  options.workers = config.server.workers;
  options.tls = config.tls;
  options.limits = config.limits;
  options.drain_timeout = config.server.drain_timeout;
  options.server_version = CUSTOS_VERSION;
  options.principal_of = [](const std::vector<std::string>& uris,
                            const std::vector<std::string>& dns, std::string_view cn) {
    return custos::policy::PrincipalFromIdentity(uris, dns, cn);
  };
  auto server = Server::Create(std::move(options), **core, logger);
  if (!server) return Fail(logger, kExitRuntime, "listen_error", server.error());

  if (parsed->action == Action::kCheckConfig) {
    std::printf("custosd: configuration OK (token %s, %zu keys, would listen on %s)\n",
                info.label.c_str(), (*core)->key_count(), (*server)->address().c_str());
    return 0;
  }

  const std::string ready = "custosd listening on " + (*server)->address();
  LogLine(logger, LogLevel::kInfo, "listening")
      .Str("address", (*server)->address())
      .Str("message", ready);
  std::printf("%s\n", ready.c_str());
  std::fflush(stdout);
  (*server)->Run();
  // Records of the last responses are durable; a final checkpoint follows.
  if (audit) audit->Close();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
