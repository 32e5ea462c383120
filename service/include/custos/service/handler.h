// The seam between custosd's network side and its signing core.
//
// The network side (server.h) parses bytes from peers, authenticates them by
// TLS and hands each decoded Request to a RequestHandler. It holds no secret
// beyond its TLS key and knows nothing of PKCS#11 or policy. The handler
// (SigningCore, core.h) is the only code that touches secrets. Everything
// crossing the seam is a plain value, so the two sides can later run in
// separate processes (OpenSSH-style privilege separation) without changing
// either.
#pragma once

#include <string_view>

#include "custos/v1/custos.pb.h"

namespace custos::service {

class RequestHandler {
 public:
  virtual ~RequestHandler() = default;

  // Answers one request. `principal` is the identity taken from the verified
  // client certificate (may be empty when the certificate names none);
  // `peer` is "ip:port" for logs. The Response carries request.id() and a
  // status; it never throws.
  //
  // Thread safety: called concurrently from the worker pool.
  virtual custos::v1::Response Handle(std::string_view principal, std::string_view peer,
                                      const custos::v1::Request& request) = 0;
};

}  // namespace custos::service
