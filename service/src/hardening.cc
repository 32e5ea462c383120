#include "custos/service/hardening.h"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>

namespace custos::service {

Result<void> HardenProcess() {
  // No core dumps and no ptrace by other processes of the same user: a dump
  // of custosd could hold a PIN.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return Error{std::string("prctl(PR_SET_DUMPABLE, 0) failed: ") + std::strerror(errno)};
  }
  const struct rlimit no_core { 0, 0 };
  if (setrlimit(RLIMIT_CORE, &no_core) != 0) {
    return Error{std::string("setrlimit(RLIMIT_CORE, 0) failed: ") + std::strerror(errno)};
  }
  umask(077);
  // A peer that closes mid-write must not kill the daemon; writes report EPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  return {};
}

}  // namespace custos::service
