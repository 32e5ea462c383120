// What custos-officer shows an officer about a pending request, and the
// checks it makes before anything is signed (docs/operations.md "Quorum",
// docs/quorum.md). Pure: no sockets, files or keys; "now" is passed in.
//
// The server's PendingRequestInfo is untrusted. Only its canonical bytes are
// shown as "what you approve" (CheckRequest parses them strictly and
// recomputes their SHA-256), and only that locally computed digest goes into
// an approval statement. Every string printed is made terminal-safe first, so
// a hostile server cannot hide text with control sequences.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "certificate_view.h"
#include "custos/policy/pending_request.h"
#include "custos/v1/custos.pb.h"

namespace custos::officer {

// A request whose canonical bytes passed CheckRequest().
struct CheckedRequest {
  custos::v1::PendingRequestInfo info;  // as the server sent it
  policy::PendingRequestText text;      // parsed from info.canonical()
  policy::Sha256Digest digest{};        // SHA-256 of info.canonical(), computed here
  // CA requests (IsCertificateOperation): the certificate parsed from the
  // payload that "payload-sha256" binds.
  std::optional<CertificateView> certificate;
};

// Checks the server's request before it is shown or voted on:
//   - canonical parses strictly (policy::ParsePendingRequest);
//   - its id equals info.id;
//   - the locally computed SHA-256 equals info.digest ("sha256:<hex>");
//   - if it carries "payload-sha256", info.payload is present and hashes to it;
//   - CA requests: "issue-certificate" and "create-ca" carry "payload-sha256";
//     a bound payload of a CA request parses as a TBSCertificate or
//     certificate (ParseCertificatePayload) and agrees with the canonical
//     serial, subject, san, not-before and not-after (CompareWithRequest).
// The error is one line saying what did not match; nothing may be signed then.
std::variant<CheckedRequest, std::string> CheckRequest(const custos::v1::PendingRequestInfo& info);

// `text` with bytes below 0x20 and 0x7f written as %XX (and '%' as %25), so
// that it prints as one harmless line.
std::string TerminalSafe(std::string_view text);

// Time left in words: "2 d 3 h" (over a day), "24 h 0 min", "23 h 12 min",
// "12 min", "45 s"; "expired" when `left` is zero or negative.
std::string TimeLeftText(std::chrono::seconds left);

// Parses "YYYY-MM-DDTHH:MM:SSZ"; std::nullopt if it is not exactly that.
std::optional<std::chrono::sys_seconds> ParseUtc(std::string_view text);
// "YYYY-MM-DDTHH:MM:SSZ".
std::string FormatUtc(std::chrono::sys_seconds t);

// The label an officer reads for a canonical field ("digest" -> "Digest to be
// signed"); the field name itself for fields this console does not know.
std::string FieldLabel(std::string_view field);

// "a/b": approvals counted (each rule capped at its threshold) of the sum of
// the thresholds. From the server's progress report (not signed).
std::string ApprovalsText(const custos::v1::PendingRequestInfo& info);

// The request in words, several lines, each ending in '\n':
//
//   Request rq-<id>
//     Operation:            create a key (create-key)
//     Requester:            spiffe://dev.custos.test/admin
//     ...every canonical field, in order, labelled...
//     Time left:            23 h 12 min            (after "Expires")
//     Request digest:       sha256:<hex> (computed here from the request)
//   Certificate to be signed (parsed here from the payload ...):   CA requests
//     Subject:              CN=www.dev.custos.test
//     ...CertificateLines()...
//   Status (reported by the server, not part of what you sign):
//     State:                pending
//     Approvals:            1/2 (ca-key-creation: alice)
//     Vote:                 alice approve at 2026-...Z
//
// "Time left" comes from the signed "expires" field, else info.expires_at.
std::string DescribeRequest(const CheckedRequest& request,
                            std::chrono::system_clock::time_point now);

// The header and one line per request for `list`:
//   "  #  ID                                   STATE      OPERATION        KEY ..."
//   "  1  rq-...  pending  create-key  root-ca-key@1  spiffe://...  0/2  23 h 59 min"
// From the server's summary (list answers carry no payload to check); `show`
// is where the canonical bytes are checked.
std::string ListHeader();
std::string ListLine(std::size_t number, const custos::v1::PendingRequestInfo& info,
                     std::chrono::system_clock::time_point now);

}  // namespace custos::officer
