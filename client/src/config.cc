#include "custos/client/config.h"

#include <arpa/inet.h>

#include <boost/program_options.hpp>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace custos::client {
namespace po = boost::program_options;

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidConfig:
      return "INVALID_CONFIG";
    case ErrorCode::kConnectFailed:
      return "CONNECT_FAILED";
    case ErrorCode::kTlsFailed:
      return "TLS_FAILED";
    case ErrorCode::kUnavailable:
      return "UNAVAILABLE";
    case ErrorCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case ErrorCode::kProtocolError:
      return "PROTOCOL_ERROR";
    case ErrorCode::kCancelled:
      return "CANCELLED";
  }
  return "UNKNOWN";
}

namespace {

Error ConfigError(std::string message) {
  return Error(ErrorCode::kInvalidConfig, std::move(message));
}

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string ResolveRelative(const std::filesystem::path& base, const std::string& value) {
  if (value.empty()) return value;
  std::filesystem::path p(value);
  if (p.is_absolute()) return value;
  return (base / p).lexically_normal().string();
}

}  // namespace

Result<ServerAddress> ParseServerAddress(std::string_view server) {
  const std::string shown(server);
  if (server.empty()) return ConfigError("server address is empty: expected HOST:PORT");
  ServerAddress out;
  std::string_view port;
  if (server.front() == '[') {
    const auto close = server.find(']');
    if (close == std::string_view::npos || close + 1 >= server.size() || server[close + 1] != ':') {
      return ConfigError("server address '" + shown + "' is not [IPv6]:PORT");
    }
    out.host = std::string(server.substr(1, close - 1));
    port = server.substr(close + 2);
  } else {
    const auto colon = server.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return ConfigError("server address '" + shown + "' is not HOST:PORT");
    }
    out.host = std::string(server.substr(0, colon));
    if (out.host.find(':') != std::string::npos) {
      return ConfigError("server address '" + shown + "': write IPv6 literals as [ADDR]:PORT");
    }
    port = server.substr(colon + 1);
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 ||
      value > 65535) {
    return ConfigError("server address '" + shown + "': port must be a number from 1 to 65535");
  }
  out.port = std::string(port);
  out.is_ip = IsIpLiteral(out.host);
  return out;
}

Result<ClientConfig> LoadClientConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return ConfigError("cannot read client config " + path + ": " +
                       std::error_code(errno, std::generic_category()).message());
  }
  ClientConfig config;
  std::uint32_t timeout_ms = 0;
  int retries = -1;
  po::options_description desc;
  desc.add_options()("server", po::value(&config.server))("cert", po::value(&config.cert))(
      "key", po::value(&config.key))("ca", po::value(&config.ca))(
      "server-name", po::value(&config.server_name))("timeout-ms", po::value(&timeout_ms))(
      "retries", po::value(&retries))("officer-id", po::value(&config.officer.id))(
      "officer-key", po::value(&config.officer.key))("officer-pkcs11-module",
                                                     po::value(&config.officer.pkcs11_module))(
      "officer-pin-file", po::value(&config.officer.pin_file))(
      "officer-passphrase-file", po::value(&config.officer.passphrase_file));
  po::variables_map vm;
  try {
    po::parsed_options parsed = po::parse_config_file(in, desc, /*allow_unregistered=*/true);
    for (const auto& option : parsed.options) {
      if (option.unregistered) {
        return ConfigError(
            "client config " + path + ": unknown key '" + option.string_key +
            "' (known: server, cert, key, ca, server-name, timeout-ms, retries, officer-id, "
            "officer-key, officer-pkcs11-module, officer-pin-file, "
            "officer-passphrase-file)");
      }
    }
    po::store(parsed, vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return ConfigError("client config " + path + ": " + e.what());
  }
  if (vm.count("timeout-ms")) {
    if (timeout_ms == 0) return ConfigError("client config " + path + ": timeout-ms must be > 0");
    config.request_timeout = std::chrono::milliseconds(timeout_ms);
  }
  if (vm.count("retries")) {
    if (retries < 0 || retries > 100) {
      return ConfigError("client config " + path + ": retries must be 0 to 100");
    }
    config.retries = retries;
  }
  const std::filesystem::path base = std::filesystem::path(path).parent_path();
  config.cert = ResolveRelative(base, config.cert);
  config.key = ResolveRelative(base, config.key);
  config.ca = ResolveRelative(base, config.ca);
  if (!config.officer.key_is_pkcs11()) {
    config.officer.key = ResolveRelative(base, config.officer.key);
  }
  config.officer.pkcs11_module = ResolveRelative(base, config.officer.pkcs11_module);
  config.officer.pin_file = ResolveRelative(base, config.officer.pin_file);
  config.officer.passphrase_file = ResolveRelative(base, config.officer.passphrase_file);
  return config;
}

bool ApplyEnvironment(ClientConfig* config) {
  bool used = false;
  auto take = [&used](const char* name, std::string* field) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') return;
    *field = value;
    used = true;
  };
  take("CUSTOS_SERVER", &config->server);
  take("CUSTOS_CERT", &config->cert);
  take("CUSTOS_KEY", &config->key);
  take("CUSTOS_CA", &config->ca);
  return used;
}

Status ValidateClientConfig(const ClientConfig& config) {
  if (config.server.empty()) {
    return ConfigError(
        "no server configured: give --config FILE, set CUSTOS_CONFIG or CUSTOS_SERVER, or pass "
        "--server HOST:PORT");
  }
  auto address = ParseServerAddress(config.server);
  if (!address.ok()) return address.error();
  if (config.cert.empty())
    return ConfigError("no client certificate configured (cert / --cert / CUSTOS_CERT)");
  if (config.key.empty())
    return ConfigError("no client private key configured (key / --key / CUSTOS_KEY)");
  if (config.ca.empty()) return ConfigError("no CA certificate configured (ca / --ca / CUSTOS_CA)");
  if (config.max_in_flight == 0) return ConfigError("max_in_flight must be at least 1");
  if (config.connect_timeout.count() <= 0 || config.request_timeout.count() <= 0) {
    return ConfigError("timeouts must be positive");
  }
  return Status();
}

}  // namespace custos::client
