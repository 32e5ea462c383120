#include "custos/service/threads.h"

#include <pthread.h>
#include <sched.h>

#include <cstring>
#include <string>

namespace custos::service {

void NameCurrentThread(std::string_view name) {
  // The kernel keeps 15 bytes and a terminator.
  const std::string short_name(name.substr(0, 15));
  pthread_setname_np(pthread_self(), short_name.c_str());
}

Result<void> SetUpCurrentThread(std::string_view name, ThreadScheduling scheduling) {
  if (!name.empty()) NameCurrentThread(name);
  if (scheduling != ThreadScheduling::kBatch) return {};
  sched_param param{};
  param.sched_priority = 0;
  if (const int err = pthread_setschedparam(pthread_self(), SCHED_BATCH, &param); err != 0) {
    return Error{"cannot put thread " + std::string(name.empty() ? "custosd" : name) +
                 " under SCHED_BATCH: pthread_setschedparam: " + std::strerror(err)};
  }
  return {};
}

}  // namespace custos::service
