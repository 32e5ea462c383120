#include "custos/service/threads.h"

#include <pthread.h>
#include <sched.h>

#include <cstring>
#include <string>

namespace custos::service {

Result<void> SetUpCurrentThread(std::string_view name, ThreadScheduling scheduling) {
  // The kernel keeps 15 bytes and a terminator.
  const std::string short_name(name.substr(0, 15));
  if (!short_name.empty()) pthread_setname_np(pthread_self(), short_name.c_str());
  sched_param param{};
  param.sched_priority = 0;
  const int policy = scheduling == ThreadScheduling::kBatch ? SCHED_BATCH : SCHED_OTHER;
  if (const int err = pthread_setschedparam(pthread_self(), policy, &param); err != 0) {
    return Error{"cannot set scheduling policy " + std::string(ThreadSchedulingName(scheduling)) +
                 " for thread " + (short_name.empty() ? std::string("custosd") : short_name) +
                 ": pthread_setschedparam: " + std::strerror(err)};
  }
  return {};
}

}  // namespace custos::service
