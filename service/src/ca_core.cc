// The CA back-end half of SigningCore (requests 50-59, docs/ca.md).
#include "core_internal.h"
#include "custos/service/core.h"

namespace custos::service {

namespace v1 = custos::v1;
using namespace core_internal;

void SigningCore::HandleCa(std::string_view /*principal*/, const v1::Request& /*request*/,
                           v1::Response& resp) {
  SetStatus(resp.mutable_status(), v1::FAILED_PRECONDITION,
            "this custosd does not serve CA requests yet");
}

}  // namespace custos::service
