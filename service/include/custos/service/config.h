// custosd configuration: an INI file read with Boost.Program_options, every
// setting also a command-line flag with the same dotted name
// ("--server.listen"). Flags override the file. Unknown keys in the file are
// errors that name the key. There is no PIN setting: the PIN comes from
// hsm.pin-file or the variable named by hsm.pin-env, never from argv.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "custos/service/result.h"

namespace custos::service {

enum class LogLevel { kDebug, kInfo, kWarn };
std::string_view LogLevelName(LogLevel level);

// Scheduling policy of the network and audit-writer threads (threads.h).
enum class ThreadScheduling { kNormal, kBatch };
std::string_view ThreadSchedulingName(ThreadScheduling scheduling);

struct ServerConfig {
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 7443;
  std::size_t workers = 0;  // 0 in the file means "number of cores"; resolved on parse
  std::size_t io_threads = 1;
  std::string state_dir;
  std::string policy;
  LogLevel log_level = LogLevel::kInfo;
  std::chrono::milliseconds drain_timeout{10000};
  ThreadScheduling io_scheduling = ThreadScheduling::kBatch;
};

struct TlsConfig {
  std::string cert;
  std::string key;
  std::string client_ca;
  std::string crl;  // empty: no CRL check
};

struct HsmConfig {
  std::string module;
  std::string token;
  std::string pin_file;  // exactly one of pin_file / pin_env is non-empty
  std::string pin_env;
  std::size_t max_sessions = 8;
  std::vector<std::string> module_env;  // "NAME=VALUE"
};

struct LimitsConfig {
  std::size_t max_connections = 1024;
  std::size_t max_frame_bytes = 1048576;
  std::size_t max_inflight_per_connection = 64;
  std::chrono::milliseconds handshake_timeout{5000};
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds request_timeout{10000};
  std::size_t max_message_bytes = 65536;
  std::size_t max_batch_items = 1024;
};

// [audit]: the tamper-evident audit log (docs/audit.md).
struct AuditConfig {
  std::string log;            // default: STATE_DIR/audit.log
  std::string key = "audit";  // the HSM key that signs checkpoints
  std::size_t checkpoint_records = 1000;
  std::chrono::milliseconds checkpoint_interval{60000};  // checkpoint-seconds
  std::chrono::milliseconds retry_interval{500};         // retry-ms, while unwritable
  std::chrono::microseconds commit_delay{300};           // commit-delay-us (group commit)
};

struct Config {
  std::string config_file;  // as given to --config
  ServerConfig server;
  TlsConfig tls;
  HsmConfig hsm;
  LimitsConfig limits;
  AuditConfig audit;
};

enum class Action { kRun, kCheckConfig, kHelp, kVersion };

struct CommandLine {
  Action action = Action::kRun;
  Config config;          // valid when action is kRun or kCheckConfig
  std::string help_text;  // for kHelp
};

// Parses argv (argv[0] is the program name) and the file named by --config.
// Refuses: a missing --config, an unreadable file, unknown keys in the file or
// on the command line, malformed values, both or neither of hsm.pin-file and
// hsm.pin-env, and a missing required setting.
Result<CommandLine> ParseCommandLine(const std::vector<std::string>& args);

// The same, with the file's text given directly (for tests); `file_name` is
// used in messages only.
Result<CommandLine> ParseCommandLine(const std::vector<std::string>& args,
                                     std::string_view file_text, std::string_view file_name);

// Parses "host:port" or "[v6addr]:port".
Result<std::pair<std::string, std::uint16_t>> ParseListenAddress(std::string_view text);

}  // namespace custos::service
