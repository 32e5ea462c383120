// custosd's network side: a TLS 1.3 listener (Boost.Asio + OpenSSL) that
// authenticates clients by certificate, reads framed Requests, hands them to a
// RequestHandler on a worker pool and writes the Responses back in completion
// order. It holds no secret beyond its TLS key and knows nothing of PKCS#11 or
// policy (see handler.h for the seam).
//
// Per connection: a handshake deadline; frames read with
// client::FrameDecoder; a frame too large, of length zero or not a Request is
// answered with one error Response (id 0) and the connection is closed; an
// idle deadline (no complete frame and nothing in flight); at most
// max-inflight-per-connection requests in flight, beyond which reading stops
// until a response is written. A request still queued past its deadline is
// answered DEADLINE_EXCEEDED without reaching the handler. Ping is answered on
// the event loop. With an audit log (ServerOptions::audit) every response,
// including those above, waits for its durable audit record. Beyond max-connections, new TCP
// connections are closed before the TLS handshake and logged.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "custos/service/config.h"
#include "custos/service/handler.h"
#include "custos/service/log.h"
#include "custos/service/result.h"

namespace custos::service {

class AuditLog;
class Connection;

struct ServerOptions {
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 7443;  // 0: any free port (see Server::port())
  std::size_t io_threads = 1;
  std::size_t workers = 2;
  // Run() sets the policy of the threads that run the event loop, the
  // calling thread among them (threads.h); the workers stay normal.
  ThreadScheduling io_scheduling = ThreadScheduling::kNormal;
  TlsConfig tls;
  LimitsConfig limits;
  std::chrono::milliseconds drain_timeout{10000};
  std::string server_version;
  // Handle SIGTERM and SIGINT by draining (custosd does; tests call Stop()).
  bool handle_signals = true;
  // The audit log (audit_log.h), or null for none. With one, every request
  // (also malformed ones and pings) is recorded, each response leaves only
  // after its record is durable, operations other than ping are refused with
  // UNAVAILABLE while the log cannot be written, and operations that change
  // state (all but ping, sign, sign_batch, list_keys, get_key,
  // get_public_key, audit_checkpoint) get an "intent" record, durable before
  // the handler runs. audit_checkpoint is answered here from the log. It must
  // outlive the Server and be closed after Run() returns.
  AuditLog* audit = nullptr;
  // Maps the verified client certificate's names to the principal. custosd
  // passes policy::PrincipalFromIdentity.
  std::function<std::string(const std::vector<std::string>& uri_sans,
                            const std::vector<std::string>& dns_sans, std::string_view cn)>
      principal_of;
};

class Server {
 public:
  // Loads the TLS material, binds and listens. `handler` and `logger` must
  // outlive the Server.
  static Result<std::unique_ptr<Server>> Create(ServerOptions options, RequestHandler& handler,
                                                Logger& logger);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound port (useful when listen_port was 0).
  std::uint16_t port() const;
  // "host:port" as bound.
  std::string address() const;

  // Serves until SIGTERM/SIGINT (when handle_signals) or Stop(); then stops
  // accepting, lets in-flight requests finish (bounded by drain_timeout),
  // closes every connection and returns.
  void Run();
  // Begins the graceful shutdown from any thread.
  void Stop();

 private:
  struct Impl;
  friend class Connection;  // one client connection, private to server.cc
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace custos::service
