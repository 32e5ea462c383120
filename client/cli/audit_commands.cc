// `custos audit checkpoint`: fetches the latest signed checkpoint of the
// daemon's audit log so that a verifier can pin it
// (custos-audit verify --checkpoint FILE; docs/audit.md).
#include <cstdio>

#include "cli.h"

namespace custos::cli {

namespace v1 = custos::v1;

std::optional<Failure> AuditCheckpoint(Invocation& inv) {
  if (!inv.args.empty()) {
    return Failure{kExitUsage,
                   "usage: custos audit checkpoint [--out FILE] [--json] (see custos --help)"};
  }
  v1::Request req;
  req.mutable_audit_checkpoint();
  v1::Response resp;
  if (auto f = inv.Call(req, &resp)) return f;
  const v1::AuditCheckpoint& cp = resp.audit_checkpoint();
  if (cp.record().empty()) {
    return Failure{kExitRefused, "the server sent no checkpoint record"};
  }
  if (!inv.out.empty()) {
    if (auto f = WriteFile(inv.out, cp.record() + "\n")) return f;
  }
  if (inv.json) {
    JsonObject o;
    o.Add("sequence", static_cast<std::int64_t>(cp.sequence()))
        .Add("covers", static_cast<std::int64_t>(cp.covers()))
        .Add("covers_hash", cp.covers_hash())
        .Add("time", cp.time())
        .Add("key", cp.key())
        .Add("algorithm", cp.algorithm())
        .AddRaw("record", cp.record());
    if (!inv.out.empty()) o.Add("out", inv.out);
    std::printf("%s\n", o.str().c_str());
  } else if (inv.out.empty()) {
    std::printf("%s\n", cp.record().c_str());
  } else {
    std::printf("checkpoint at sequence %llu (covers %llu, %s, signed by %s) written to %s\n",
                static_cast<unsigned long long>(cp.sequence()),
                static_cast<unsigned long long>(cp.covers()), cp.time().c_str(), cp.key().c_str(),
                inv.out.c_str());
  }
  return std::nullopt;
}

}  // namespace custos::cli
