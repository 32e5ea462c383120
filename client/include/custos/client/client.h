// The Custos client: one mutually authenticated TLS 1.3 connection (ALPN
// "custos/1") to custosd, with many requests in flight.
//
//   auto client = custos::client::Client::Connect(config);
//   if (!client.ok()) { ... client.error().message() ... }
//   custos::v1::Request req;
//   req.mutable_ping();
//   auto resp = (*client)->Call(req);  // blocking, retries UNAVAILABLE
//
// Thread safety: Send and Call may be called from any thread at once. Callbacks
// run on the client's single I/O thread and must not block; they must not call
// Call() (Send() is fine).
#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <memory>

#include "custos/client/config.h"
#include "custos/client/result.h"
#include "custos/v1/custos.pb.h"

namespace custos::client {

// An I/O thread that several Clients can share. Client::Connect(config) gives
// each Client a thread of its own; a process holding many connections (a load
// generator, a service talking to several custosd) passes one IoThread to each
// Connect so that a single thread drives all of them. Clients keep it running:
// the thread is joined when the IoThread and every Client made with it are
// gone. Do not call Connect or destroy a Client on that thread (a callback).
class IoThread {
 public:
  IoThread();
  ~IoThread();
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;

 private:
  friend class Client;
  struct Runtime;
  std::shared_ptr<Runtime> runtime_;
};

struct CallOptions {
  // 0: the request's own deadline_ms if set, else config.request_timeout.
  std::chrono::milliseconds deadline{0};
};

class Client {
 public:
  using Callback = std::function<void(Result<custos::v1::Response>)>;

  // Loads credentials and connects (TCP, TLS 1.3, ALPN). An Error says which
  // step failed and why. After a lost connection the client reconnects on the
  // next Send.
  static Result<std::unique_ptr<Client>> Connect(const ClientConfig& config);
  // The same, on a shared I/O thread.
  static Result<std::unique_ptr<Client>> Connect(const ClientConfig& config,
                                                 const IoThread& io_thread);

  // Completes pending calls with kCancelled, closes the connection and joins
  // the I/O thread (a shared one only if this was its last user).
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends one request. The client assigns request.id and sets
  // request.deadline_ms. `done` is called exactly once, on the I/O thread: with
  // the server's Response (whatever its status), or with an Error
  // (kUnavailable when the connection is lost, kDeadlineExceeded when the
  // deadline passes first, kConnectFailed / kTlsFailed when reconnecting fails).
  void Send(custos::v1::Request request, Callback done, CallOptions options = {});
  std::future<Result<custos::v1::Response>> Send(custos::v1::Request request,
                                                 CallOptions options = {});

  // Blocking call. Retries up to config.retries times, with backoff, while the
  // failure is retryable: an Error with retryable(), or a Response with status
  // UNAVAILABLE and status.retryable. Sign, batch and create requests without
  // an idempotency key get a random one, so a retry is answered once.
  Result<custos::v1::Response> Call(custos::v1::Request request, CallOptions options = {});

  // Requests waiting for a response or for room on the wire.
  std::size_t pending() const;

  const ClientConfig& config() const;

 private:
  class Impl;
  Client(std::shared_ptr<IoThread::Runtime> runtime, std::shared_ptr<Impl> impl);
  std::shared_ptr<IoThread::Runtime> runtime_;
  std::shared_ptr<Impl> impl_;
};

}  // namespace custos::client
