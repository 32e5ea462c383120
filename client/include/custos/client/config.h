// Client configuration: where the server is and which credentials to use.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "custos/client/result.h"

namespace custos::client {

// The security officer's settings, used only by custos-officer (the custos CLI
// ignores them). docs/operations.md "Quorum", docs/quorum.md.
struct OfficerConfig {
  // The officer's id in the policy (`officer { id: ... }`), as it appears in
  // approval statements.
  std::string id;
  // The approval key: a PEM file path (made absolute), or an RFC 7512
  // "pkcs11:" URI (kept as written).
  std::string key;
  // PKCS#11 module for a pkcs11: key; empty uses the URI's module-path.
  std::string pkcs11_module;
  // Files holding the token PIN / the PEM passphrase (first line). They must
  // not be readable by group or others; ReadSecretFile() checks that.
  std::string pin_file;
  std::string passphrase_file;

  // True when `key` is a PKCS#11 URI.
  bool key_is_pkcs11() const { return key.rfind("pkcs11:", 0) == 0; }
};

struct ClientConfig {
  // "host:port", "1.2.3.4:port" or "[::1]:port".
  std::string server;
  // PEM files: client certificate (chain), its private key, and the CA the
  // server certificate must chain to.
  std::string cert;
  std::string key;
  std::string ca;
  // Name the server certificate must carry; empty means the host of `server`
  // (matched against an IP SAN when that host is an IP literal).
  std::string server_name;
  // Covers name resolution, TCP connect and the TLS handshake.
  std::chrono::milliseconds connect_timeout{5000};
  // Deadline for a request that names none.
  std::chrono::milliseconds request_timeout{30000};
  // Requests on the wire at once; more wait in the client, in order.
  std::size_t max_in_flight = 64;
  // Extra attempts Client::Call makes after a retryable failure, with
  // exponential backoff from `backoff_initial`, capped at `backoff_max`, with
  // full jitter.
  int retries = 3;
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{2000};
  // officer-* keys; empty unless the file sets them.
  OfficerConfig officer;
};

// Reads an INI file with the keys server, cert, key, ca, server-name and
// timeout-ms (the default request deadline), and the officer keys officer-id,
// officer-key, officer-pkcs11-module, officer-pin-file and
// officer-passphrase-file. Relative paths are taken relative to the file's
// directory (officer-key only when it is not a pkcs11: URI). An unknown key, an unreadable file or
// a bad value is an Error (kInvalidConfig) whose message names the file and the key.
Result<ClientConfig> LoadClientConfig(const std::string& path);

// Fills settings from the environment: CUSTOS_SERVER, CUSTOS_CERT, CUSTOS_KEY
// (the TLS private key) and CUSTOS_CA replace server, cert, key and ca when set
// and non-empty; paths are used as written (relative to the working
// directory). Call after LoadClientConfig and before applying flags, so that
// flags > environment > config file. Returns whether any variable was used.
bool ApplyEnvironment(ClientConfig* config);

// Checks that the settings needed to connect are present and well-formed.
Status ValidateClientConfig(const ClientConfig& config);

struct ServerAddress {
  std::string host;  // without brackets for IPv6 literals
  std::string port;
  bool is_ip = false;
};
// Splits "host:port" / "[v6]:port"; an Error names what is wrong.
Result<ServerAddress> ParseServerAddress(std::string_view server);

}  // namespace custos::client
