// Process hardening applied by custosd before it reads any secret (brief §12).
#pragma once

#include "custos/service/result.h"

namespace custos::service {

// prctl(PR_SET_DUMPABLE, 0), RLIMIT_CORE = 0, umask 077, SIGPIPE ignored.
// Fails only if a step the kernel should always allow is refused.
Result<void> HardenProcess();

}  // namespace custos::service
