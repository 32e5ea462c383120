// Creating a CA hierarchy outside custosd, for custos-init (which calls
// BootstrapCaHierarchy while custosd is not running, with the token and the
// state store it prepared). Exported for custos-init; custosd itself creates
// CAs through create_ca (under quorum).
//
// BootstrapCaHierarchy generates two keys of usage "ca" on the token (labels
// "custos:NAME@1", as every Custos key), records them in the key store,
// makes a self-signed root and an intermediate signed by it
// (ca::CreateRoot / ca::CreateIntermediate, signed inside the token through
// Token::OpenSslKey), and stores the two CAs and both certificates in the
// state store's CA tables (the root's certificate in its own inventory with
// profile "ca:root", the intermediate's in the root's with profile
// "ca:intermediate"). The caller writes the audit records (one per CA, e.g.
// op "create_ca", key "ca:NAME", from the returned serials).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "custos/pkcs11/token.h"
#include "custos/service/key_store.h"
#include "custos/service/result.h"

namespace custos::service {

struct CaBootstrapSpec {
  // CA name = key name ([a-z0-9][a-z0-9._-]{0,63}); neither may exist yet.
  std::string root_name = "dev-root";
  std::string root_subject = "CN=Custos Dev Root,O=Custos Dev";
  pkcs11::KeyType root_key_type = pkcs11::KeyType::kEcP384;
  std::chrono::seconds root_validity = std::chrono::days(3650);
  int root_path_len = -1;  // -1: no pathLenConstraint
  std::string intermediate_name = "dev-intermediate";
  std::string intermediate_subject = "CN=Custos Dev Intermediate,O=Custos Dev";
  pkcs11::KeyType intermediate_key_type = pkcs11::KeyType::kEcP256;
  std::chrono::seconds intermediate_validity = std::chrono::days(5 * 365);
  int intermediate_path_len = 0;
  // CRL distribution point in the intermediate's certificate (optional).
  std::vector<std::string> intermediate_crl_urls;
  // Recorded as the certificates' requester.
  std::string requester = "custos-init";
};

struct BootstrappedCa {
  std::string name;
  std::string key;     // "name@1"
  std::string serial;  // lowercase hex
  std::string subject;
  std::vector<std::uint8_t> cert_der;
};

struct CaBootstrapResult {
  BootstrappedCa root;
  BootstrappedCa intermediate;
};

// Fails with a one-line message (and destroys the keys it generated if
// nothing was recorded yet) when a name is taken, the token refuses, or a
// certificate cannot be made.
Result<CaBootstrapResult> BootstrapCaHierarchy(pkcs11::Token& token, KeyStore& store,
                                               const CaBootstrapSpec& spec);

}  // namespace custos::service
