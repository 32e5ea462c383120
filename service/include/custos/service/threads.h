// Names and scheduling policy of custosd's own threads (docs/operations.md
// "Threads").
#pragma once

#include <string_view>

#include "custos/service/config.h"
#include "custos/service/result.h"

namespace custos::service {

// Names the calling thread (first 15 bytes; shown by `top -H`, `ps -L`).
void NameCurrentThread(std::string_view name);

// Names the calling thread unless `name` is empty (the main thread keeps its
// name, for `pidof` and `killall custosd`), and with kBatch puts it under
// SCHED_BATCH (no privilege needed); kNormal leaves the policy it started
// with. SCHED_BATCH is for the threads that move bytes around the HSM
// workers, the network event loop and the audit writer: their wake-ups then
// do not preempt a worker in the middle of a signature; they run when a core
// frees up or at the next scheduler tick, and find more work waiting
// (docs/BENCHMARKS.md, issue 7 third round). The error names the call that
// failed; the name is set either way.
Result<void> SetUpCurrentThread(std::string_view name, ThreadScheduling scheduling);

}  // namespace custos::service
