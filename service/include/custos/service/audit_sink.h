// Where the signing core writes its own audit records: those of quorum
// requests it executes after the fact (docs/quorum.md), which no network
// request carries. custosd implements it over AuditLog (audit_log.h); a core
// without a sink writes none (unit tests).
#pragma once

#include "custos/service/audit_format.h"
#include "custos/service/result.h"

namespace custos::service {

class AuditSink {
 public:
  virtual ~AuditSink() = default;

  // Appends `record` and returns once it is durable (or could not be made
  // so). May block; called from worker threads and at start, never from the
  // audit log's own thread.
  virtual Result<void> RecordDurably(const audit::RequestFields& record) = 0;
};

}  // namespace custos::service
