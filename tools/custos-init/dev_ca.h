// The dev CA hierarchy of `custos-init dev` (docs/ca.md): keys dev-root
// (ec-p384) and dev-intermediate (ec-p256), usage ca, generated on the token
// and recorded in the key store, their certificates signed inside the HSM
// and stored in the state store's CA tables (service::BootstrapCaHierarchy),
// and one audit record per CA (op create_ca, key ca:NAME, principal
// custos-init), the first records of the audit log. Production deployments
// make their hierarchy under quorum instead.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "custos/pkcs11/token.h"
#include "custos/service/key_store.h"

namespace custos::init {

struct DevCaHierarchy {
  std::vector<std::uint8_t> root_der;
  std::vector<std::uint8_t> intermediate_der;
};

// Makes dev-root and dev-intermediate. `audit_log_path` is custosd's audit
// log (STATE_DIR/audit.log); it is created. Throws std::runtime_error with a
// one-line message on failure.
DevCaHierarchy MakeDevCaHierarchy(pkcs11::Token& token, service::KeyStore& store,
                                  const std::string& audit_log_path);

}  // namespace custos::init
