// What a request is, in the words logs and the audit log use: its operation
// name, the key it names, the SHA-256 of its operation, the key version its
// result used, and whether it changes state. Internal to service/src.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "custos/v1/custos.pb.h"

namespace custos::service::request_info {

// "sign", "create_key", ...; "unknown" when the request names no operation.
std::string_view OpName(const custos::v1::Request& r);
// The key (or "name@version") the request names; "" when it names none. For
// get_request and submit_approval the request id ("rq-…"), for
// propose_policy and get_policy "policy".
std::string_view KeyOf(const custos::v1::Request& r);
// For CA requests (50-59), what KeyOf names instead: "ca:NAME" (create_ca,
// get_ca, ca_csr, import_ca_cert), "profile:NAME" (issue_certificate),
// "serial:HEX" (get_certificate, revoke_certificate), "crl:CA" (get_crl);
// "" otherwise.
std::string CaKeyOf(const custos::v1::Request& r);
// The request id a (canonical) approval statement names, or "".
std::string_view StatementRequestId(std::string_view statement);
// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);
// SHA-256 of the request's operation: the oneof message, serialized again
// (fields in number order); "" when the request names none.
std::string OpSha256(const custos::v1::Request& r);
// "name@version" when the result names the key version it used (sign,
// sign_batch, get_public_key); "profile:NAME serial:HEX" for an issued
// certificate; otherwise "".
std::string ResultKey(const custos::v1::Response& r);
// Operations that change nothing but (for signing) produce a value that is
// worthless until its response leaves need no intent record; all others do.
bool NeedsIntent(std::string_view op);

}  // namespace custos::service::request_info
