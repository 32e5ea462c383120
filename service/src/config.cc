#include "custos/service/config.h"

#include <boost/program_options.hpp>
#include <charconv>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <thread>

namespace custos::service {

namespace po = boost::program_options;

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
  }
  return "info";
}

std::string_view ThreadSchedulingName(ThreadScheduling scheduling) {
  return scheduling == ThreadScheduling::kBatch ? "batch" : "normal";
}

Result<std::pair<std::string, std::uint16_t>> ParseListenAddress(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Error{"listen address \"" + std::string(text) + "\" is not [ipv6]:port"};
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return Error{"listen address \"" + std::string(text) + "\" is not host:port"};
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (host.empty() || port.empty() || ec != std::errc() || end != port.data() + port.size() ||
      value > 65535) {
    return Error{"listen address \"" + std::string(text) + "\" is not host:port with port 0-65535"};
  }
  return std::make_pair(std::string(host), static_cast<std::uint16_t>(value));
}

namespace {

// Every setting, by its dotted name. Values are read as strings and validated
// here, so that "-1" for a count is refused rather than wrapped around.
void AddSettings(po::options_description& d) {
  auto s = [] { return po::value<std::string>(); };
  d.add_options()("server.listen", s(), "host:port to listen on (default 127.0.0.1:7443)")(
      "server.workers", s(), "HSM worker threads (default: number of cores)")(
      "server.io-threads", s(), "network event-loop threads (default 1)")(
      "server.io-scheduling", s(),
      "batch | normal: Linux scheduling policy of the network and audit-writer threads "
      "(default batch: their wake-ups do not preempt the HSM workers; normal: as started)")(
      "server.state-dir", s(), "directory of the state store (custos.db)")(
      "server.policy", s(), "policy file (Protobuf text format)")(
      "server.log-level", s(), "debug | info | warn (default info)")(
      "server.drain-timeout-ms", s(), "bound on finishing in-flight work at shutdown (10000)")(
      "tls.cert", s(), "server certificate chain (PEM)")("tls.key", s(),
                                                         "server private key (PEM)")(
      "tls.client-ca", s(), "CA certificates that client certificates must chain to (PEM)")(
      "tls.crl", s(), "optional CRL for client certificates (PEM)")(
      "hsm.module", s(), "PKCS#11 module path")("hsm.token", s(),
                                                "token label, serial or pkcs11: URI")(
      "hsm.pin-file", s(), "file holding the user PIN (mode 0600)")(
      "hsm.pin-env", s(), "environment variable holding the user PIN")(
      "hsm.max-sessions", s(), "PKCS#11 sessions to open at most (default 8)")(
      "hsm.module-env", po::value<std::vector<std::string>>(),
      "NAME=VALUE set in the environment before the module loads (repeatable)")(
      "limits.max-connections", s(), "concurrent connections (1024)")(
      "limits.max-frame-bytes", s(), "largest frame accepted (1048576)")(
      "limits.max-inflight-per-connection", s(), "pipelined requests per connection (64)")(
      "limits.handshake-timeout-ms", s(), "TLS handshake deadline (5000)")(
      "limits.idle-timeout-ms", s(), "idle connection deadline (60000)")(
      "limits.request-timeout-ms", s(), "default request deadline (10000)")(
      "limits.max-message-bytes", s(), "largest Ed25519 message (65536)")(
      "limits.max-batch-items", s(), "largest sign_batch (1024)")(
      "audit.log", s(), "audit log file (default STATE_DIR/audit.log)")(
      "audit.key", s(), "HSM key (usage audit) that signs checkpoints (default audit)")(
      "audit.checkpoint-records", s(), "sign a checkpoint after this many records (1000)")(
      "audit.checkpoint-seconds", s(), "... or after this many seconds with new records (60)")(
      "audit.retry-ms", s(), "while the log cannot be written, retry this often (500)")(
      "audit.commit-delay-us", s(),
      "under load, wait up to this long to write more records per fdatasync (300; 0: never)");
}

po::options_description GenericOptions() {
  po::options_description d("Options");
  d.add_options()("help", "print this help and exit")("version", "print the version and exit")(
      "config", po::value<std::string>(), "INI configuration file (required)")(
      "check-config", "load the configuration, policy and token, then exit 0");
  return d;
}

class Reader {
 public:
  explicit Reader(const po::variables_map& vm) : vm_(vm) {}

  std::optional<std::string> Get(const char* name) const {
    if (!vm_.count(name)) return std::nullopt;
    return vm_[name].as<std::string>();
  }

  // Reads an unsigned integer in [min, max] into *out if the setting is present.
  void Unsigned(const char* name, std::uint64_t min, std::uint64_t max, std::size_t* out) {
    auto text = Get(name);
    if (!text || !error_.empty()) return;
    std::uint64_t value = 0;
    const char* b = text->data();
    const char* e = b + text->size();
    const auto [end, ec] = std::from_chars(b, e, value);
    if (text->empty() || ec != std::errc() || end != e || value < min || value > max) {
      error_ = std::string(name) + " = \"" + *text + "\" is not an integer in [" +
               std::to_string(min) + ", " + std::to_string(max) + "]";
      return;
    }
    *out = static_cast<std::size_t>(value);
  }

  void Millis(const char* name, std::chrono::milliseconds* out) {
    std::size_t v = static_cast<std::size_t>(out->count());
    Unsigned(name, 1, 24ull * 3600 * 1000, &v);
    *out = std::chrono::milliseconds(v);
  }

  void String(const char* name, std::string* out) {
    if (auto v = Get(name)) *out = *v;
  }

  void Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
  }
  const std::string& error() const { return error_; }

 private:
  const po::variables_map& vm_;
  std::string error_;
};

Result<Config> BuildConfig(const po::variables_map& vm) {
  Config c;
  Reader r(vm);
  if (auto listen = r.Get("server.listen")) {
    auto parsed = ParseListenAddress(*listen);
    if (!parsed) return Error{"server.listen: " + parsed.error()};
    c.server.listen_host = parsed->first;
    c.server.listen_port = parsed->second;
  }
  const unsigned cores = std::thread::hardware_concurrency();
  c.server.workers = cores == 0 ? 2 : cores;
  r.Unsigned("server.workers", 1, 1024, &c.server.workers);
  r.Unsigned("server.io-threads", 1, 256, &c.server.io_threads);
  r.String("server.state-dir", &c.server.state_dir);
  r.String("server.policy", &c.server.policy);
  if (auto level = r.Get("server.log-level")) {
    if (*level == "debug") {
      c.server.log_level = LogLevel::kDebug;
    } else if (*level == "info") {
      c.server.log_level = LogLevel::kInfo;
    } else if (*level == "warn") {
      c.server.log_level = LogLevel::kWarn;
    } else {
      r.Fail("server.log-level = \"" + *level + "\" is not one of info, debug, warn");
    }
  }
  r.Millis("server.drain-timeout-ms", &c.server.drain_timeout);
  if (auto scheduling = r.Get("server.io-scheduling")) {
    if (*scheduling == "batch") {
      c.server.io_scheduling = ThreadScheduling::kBatch;
    } else if (*scheduling == "normal") {
      c.server.io_scheduling = ThreadScheduling::kNormal;
    } else {
      r.Fail("server.io-scheduling = \"" + *scheduling + "\" is not one of batch, normal");
    }
  }

  r.String("tls.cert", &c.tls.cert);
  r.String("tls.key", &c.tls.key);
  r.String("tls.client-ca", &c.tls.client_ca);
  r.String("tls.crl", &c.tls.crl);

  r.String("hsm.module", &c.hsm.module);
  r.String("hsm.token", &c.hsm.token);
  r.String("hsm.pin-file", &c.hsm.pin_file);
  r.String("hsm.pin-env", &c.hsm.pin_env);
  r.Unsigned("hsm.max-sessions", 1, 4096, &c.hsm.max_sessions);
  if (vm.count("hsm.module-env")) {
    c.hsm.module_env = vm["hsm.module-env"].as<std::vector<std::string>>();
    for (const auto& entry : c.hsm.module_env) {
      const auto eq = entry.find('=');
      if (eq == std::string::npos || eq == 0) {
        r.Fail("hsm.module-env = \"" + entry + "\" is not NAME=VALUE");
      }
    }
  }

  auto& l = c.limits;
  r.Unsigned("limits.max-connections", 1, 1000000, &l.max_connections);
  r.Unsigned("limits.max-frame-bytes", 16, std::numeric_limits<std::uint32_t>::max(),
             &l.max_frame_bytes);
  r.Unsigned("limits.max-inflight-per-connection", 1, 65536, &l.max_inflight_per_connection);
  r.Millis("limits.handshake-timeout-ms", &l.handshake_timeout);
  r.Millis("limits.idle-timeout-ms", &l.idle_timeout);
  r.Millis("limits.request-timeout-ms", &l.request_timeout);
  r.Unsigned("limits.max-message-bytes", 1, 64ull << 20, &l.max_message_bytes);
  r.Unsigned("limits.max-batch-items", 1, 1000000, &l.max_batch_items);

  r.String("audit.log", &c.audit.log);
  r.String("audit.key", &c.audit.key);
  r.Unsigned("audit.checkpoint-records", 1, 100000000, &c.audit.checkpoint_records);
  {
    std::size_t secs = 60;
    r.Unsigned("audit.checkpoint-seconds", 1, 86400, &secs);
    c.audit.checkpoint_interval = std::chrono::seconds(secs);
  }
  r.Millis("audit.retry-ms", &c.audit.retry_interval);
  {
    std::size_t micros = static_cast<std::size_t>(c.audit.commit_delay.count());
    r.Unsigned("audit.commit-delay-us", 0, 100000, &micros);
    c.audit.commit_delay = std::chrono::microseconds(micros);
  }
  if (!r.error().empty()) return Error{r.error()};

  if (!c.hsm.pin_file.empty() && !c.hsm.pin_env.empty()) {
    return Error{"hsm.pin-file and hsm.pin-env are both set; set exactly one"};
  }
  if (c.hsm.pin_file.empty() && c.hsm.pin_env.empty()) {
    return Error{"neither hsm.pin-file nor hsm.pin-env is set; set exactly one"};
  }
  const std::pair<const char*, const std::string*> required[] = {
      {"server.state-dir", &c.server.state_dir},
      {"server.policy", &c.server.policy},
      {"tls.cert", &c.tls.cert},
      {"tls.key", &c.tls.key},
      {"tls.client-ca", &c.tls.client_ca},
      {"hsm.module", &c.hsm.module},
      {"hsm.token", &c.hsm.token},
  };
  for (const auto& [name, value] : required) {
    if (value->empty()) return Error{std::string("required setting ") + name + " is missing"};
  }
  if (c.audit.log.empty()) c.audit.log = c.server.state_dir + "/audit.log";
  return c;
}

Result<CommandLine> Parse(const std::vector<std::string>& args,
                          const std::optional<std::string>& file_text,
                          std::string_view file_name_override) {
  po::options_description settings("Settings (also valid as [section] key = value in the file)");
  AddSettings(settings);
  po::options_description all;
  all.add(GenericOptions()).add(settings);

  CommandLine out;
  po::variables_map vm;
  try {
    std::vector<std::string> tail(args.begin() + (args.empty() ? 0 : 1), args.end());
    po::store(po::command_line_parser(tail).options(all).run(), vm);
  } catch (const po::unknown_option& e) {
    return Error{"unknown option \"" + e.get_option_name() + "\" (see --help)"};
  } catch (const po::error& e) {
    return Error{std::string("command line: ") + e.what()};
  }
  if (vm.count("help")) {
    std::ostringstream help;
    help << "Usage: custosd --config FILE [--check-config] [--SECTION.KEY VALUE ...]\n\n" << all;
    out.action = Action::kHelp;
    out.help_text = help.str();
    return out;
  }
  if (vm.count("version")) {
    out.action = Action::kVersion;
    return out;
  }

  std::string file_name(file_name_override);
  std::string text;
  if (file_text) {
    text = *file_text;
  } else {
    if (!vm.count("config")) return Error{"--config FILE is required (see --help)"};
    file_name = vm["config"].as<std::string>();
    std::ifstream in(file_name, std::ios::binary);
    if (!in) return Error{"cannot read configuration file " + file_name};
    std::ostringstream buf;
    buf << in.rdbuf();
    text = buf.str();
  }
  try {
    std::istringstream in(text);
    // Values already stored from the command line win: store() keeps the first.
    po::store(po::parse_config_file(in, settings, /*allow_unregistered=*/false), vm);
  } catch (const po::unknown_option& e) {
    return Error{file_name + ": unknown setting \"" + e.get_option_name() + "\""};
  } catch (const po::multiple_occurrences& e) {
    return Error{file_name + ": setting \"" + e.get_option_name() + "\" is given more than once"};
  } catch (const po::error& e) {
    return Error{file_name + ": " + e.what()};
  }
  po::notify(vm);

  auto config = BuildConfig(vm);
  if (!config) return Error{config.error()};
  out.config = std::move(config.value());
  out.config.config_file = file_name;
  out.action = vm.count("check-config") ? Action::kCheckConfig : Action::kRun;
  return out;
}

}  // namespace

Result<CommandLine> ParseCommandLine(const std::vector<std::string>& args) {
  return Parse(args, std::nullopt, "");
}

Result<CommandLine> ParseCommandLine(const std::vector<std::string>& args,
                                     std::string_view file_text, std::string_view file_name) {
  return Parse(args, std::string(file_text), file_name);
}

}  // namespace custos::service
