// Internals of the `custos` command-line tool.
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "custos/client/client.h"

namespace custos::cli {

// Exit codes, as documented in `custos --help` and client/README.md.
enum ExitCode : int {
  kExitOk = 0,
  kExitBadSignature = 1,
  kExitUsage = 2,
  kExitConnect = 3,
  kExitRefused = 4,
  kExitFile = 5,
  // The server holds the operation for quorum approval (or `request wait`
  // timed out while it was still pending).
  kExitPending = 6,
};

// A failure that ends the command: printed as "custos: error: <message>";
// an empty message prints nothing (the command already reported, e.g. a
// pending request on stdout).
struct Failure {
  int exit_code;
  std::string message;
};

// --- JSON output (json.cc) ---

// `s` as a JSON string literal, quotes included. Bytes that are not valid
// UTF-8 are replaced with U+FFFD.
std::string JsonString(std::string_view s);

// Builds one JSON object, members in insertion order.
class JsonObject {
 public:
  JsonObject& Add(std::string_view key, std::string_view value);
  JsonObject& Add(std::string_view key, const char* value) {
    return Add(key, std::string_view(value));
  }
  JsonObject& Add(std::string_view key, std::int64_t value);
  JsonObject& AddBool(std::string_view key, bool value);
  // `json` must already be valid JSON (an object or array built here).
  JsonObject& AddRaw(std::string_view key, std::string_view json);
  std::string str() const { return "{" + body_ + "}"; }

 private:
  void Key(std::string_view key);
  std::string body_;
};

// Joins already-encoded JSON values into an array.
std::string JsonArray(const std::vector<std::string>& items);

// --- Formats (format.cc; pure, unit-tested in tests/unit/client) ---

// Parses a duration "N" + unit (s, m, h, d, y = 365 d), e.g. "365d", "20y",
// into seconds; at most 2^63-1 seconds. The Failure has exit code kExitUsage
// and names `option`.
std::optional<Failure> ParseDuration(std::string_view text, std::string_view option,
                                     std::uint64_t* seconds);
// "2026-01-02T03:04:05Z".
std::string FormatUtc(std::int64_t seconds);

// Certificates, requests and CRLs. Loaders return std::nullopt on success or
// the end of a sentence about the bytes ("is not a PKCS#10 certificate
// request (PEM or DER)"), to be prefixed with the file name.

// A PKCS#10 request in PEM or DER; *der receives its DER encoding.
std::optional<std::string> CsrToDer(std::string_view bytes, std::string* der);
// Certificates in a PEM bundle (in file order; non-certificate blocks are
// skipped) or exactly one DER certificate.
std::optional<std::string> CertificatesToDer(std::string_view bytes,
                                             std::vector<std::string>* ders);
// PEM of a DER object; "" when `der` is not exactly one object of that type
// (so a malformed server answer is never written out as if it were one).
std::string CertificatePem(std::string_view der);
std::string CsrPem(std::string_view der);
std::string CrlPem(std::string_view der);
// Revoked entries in a DER CRL; -1 when it is not one.
int CrlEntryCount(std::string_view der);

// RFC 5280 reason names as the protocol spells them (keyCompromise, ...).
bool IsRevocationReason(std::string_view reason);
std::string RevocationReasonNames();
// The --san syntax check done before anything is sent: "dns:", "ip:", "uri:"
// or "email:" and a value. The server applies the profile's rules.
std::optional<std::string> CheckSanSyntax(std::string_view san);

// --json forms. Times appear twice: seconds since the epoch under the proto
// field's name and UTC text under "<name>_utc" ("issued_at" -> "issued_utc").
// cert_pem/chain_pem appear when the message carries the DER.
std::string CertificateJson(const custos::v1::CertificateInfo& c);
std::string CaJson(const custos::v1::CaInfo& ca);
std::string CrlJson(const custos::v1::CrlInfo& crl);
// Human forms: "label:  value" rows, and fixed-width list columns.
std::string CertificateStateText(const custos::v1::CertificateInfo& c);
std::string CertificateText(const custos::v1::CertificateInfo& c);
std::string CaText(const custos::v1::CaInfo& ca);
std::string CertificateListHeader();
std::string CertificateListLine(const custos::v1::CertificateInfo& c);
std::string CaListHeader();
std::string CaListLine(const custos::v1::CaInfo& ca);

// --- Algorithms, hashing, keys (crypto.cc) ---

enum class SigFamily { kEcdsa, kRsaPkcs1, kRsaPss, kEd25519 };

struct AlgorithmInfo {
  const char* name;  // wire name, e.g. "ecdsa-p256-sha256"
  SigFamily family;
  const char* digest;  // OpenSSL digest name, nullptr for Ed25519
  const char* curve;   // for ECDSA: required curve (OpenSSL group name)
};

// nullptr when the name is not one of the nine algorithms.
const AlgorithmInfo* FindAlgorithm(std::string_view name);
// "ecdsa-p256-sha256, ..., ed25519".
std::string AlgorithmNames();
// The single algorithm of a non-RSA key type ("ec-p256" -> ecdsa-p256-sha256);
// nullptr for RSA types and unknown types.
const AlgorithmInfo* OnlyAlgorithmFor(std::string_view key_type);

bool IsKeyType(std::string_view type);
bool IsKeyUsage(std::string_view usage);

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

// Ed25519 messages the client will send at most.
inline constexpr std::size_t kMaxEd25519Message = 64 * 1024;

// Streams a file through the digest; the Failure has exit code kExitFile.
std::optional<Failure> HashFile(const std::string& path, const char* digest, std::string* out);
// Reads a whole file of at most `limit` bytes.
std::optional<Failure> ReadSmallFile(const std::string& path, std::size_t limit,
                                     std::string_view what, std::string* out);
std::optional<Failure> WriteFile(const std::string& path, std::string_view data);

Pkey PublicKeyFromDer(std::string_view der);
std::optional<Failure> LoadPublicKeyPem(const std::string& path, Pkey* out);
std::string PublicKeyPem(EVP_PKEY* key);
// "ec-p256", "rsa-3072", "ed25519", ... or "" when unsupported.
std::string KeyTypeOf(EVP_PKEY* key);

// Verifies `sig` over the file at `path` (streamed, except Ed25519) with the
// algorithm's padding; PSS uses MGF1 with the same hash and salt = hash length.
// Returns true/false for a (non-)matching signature, or a Failure for a file
// or key problem.
std::optional<Failure> VerifyFile(EVP_PKEY* key, const AlgorithmInfo& alg, const std::string& path,
                                  std::string_view sig, bool* valid);

std::string Base64(std::string_view bytes);

}  // namespace custos::cli

namespace custos::cli {

// Everything a command needs, parsed from the command line and config.
struct Invocation {
  client::ClientConfig config;
  bool json = false;
  std::vector<std::string> args;  // positional arguments after the command words
  std::string key_name;           // sign/verify --key NAME[@V]
  std::string type, usage, out, algorithm, in, sig, pubkey;
  std::string expires;   // keys create/rotate --expires DURATION
  std::string expiring;  // keys list --expiring DURATION
  bool check = false;    // keys list --check
  std::string note;      // --note TEXT on state-changing commands
  std::string wait;      // sign --wait DURATION
  std::string state;     // request list --state S
  std::string timeout;   // request wait --timeout DURATION
  // CA back-end (ca_commands.cc).
  std::string ca_name;          // --ca NAME (cert list|show|revoke, crl)
  std::string subject, parent;  // ca create-*/csr --subject DN, --parent CA
  std::string validity;         // --validity DURATION
  std::string path_len;         // ca create-intermediate --path-len N
  std::string profile, csr, chain, renews, requester, reason;
  std::vector<std::string> sans;  // cert issue --san S (repeatable)
  bool der = false;               // --der: write DER instead of PEM
  // sign with many files (multi_sign.cc): --files-from LIST, --out-dir DIR,
  // --manifest OUT.
  std::string files_from, out_dir, manifest;
  // Code signing (docs/codesigning.md): sign/keys pubkey --format, sign
  // --namespace (sshsig), --no-chain (cms); ssh sign options.
  std::string format, sig_namespace;
  bool no_chain = false;
  std::string principals, key_id, force_command, source_address;
  std::vector<std::string> extensions;  // ssh sign --extension NAME (repeatable)
  // Whether connection settings were given at all (config, env or flags).
  bool configured = false;

  // Connects on first use; a Failure carries exit code 2, 3 or 4. A
  // PENDING_APPROVAL answer is reported on stdout (ReportPending) and becomes
  // a Failure with exit code 6 and no message.
  std::optional<Failure> Call(custos::v1::Request request, custos::v1::Response* response);
  // As Call, but PENDING_APPROVAL is not a failure: *pending says whether the
  // response is one (then response->pending() describes the request).
  std::optional<Failure> CallAllowPending(custos::v1::Request request,
                                          custos::v1::Response* response, bool* pending);
  // The connected client (connecting on first use); a Failure as for Call.
  std::optional<Failure> Connected(client::Client** out);

 private:
  std::unique_ptr<client::Client> client_;
};

std::optional<Failure> KeysList(Invocation& inv);
std::optional<Failure> KeysCreate(Invocation& inv);
std::optional<Failure> KeysShow(Invocation& inv);
std::optional<Failure> KeysPubkey(Invocation& inv);
std::optional<Failure> Sign(Invocation& inv);
// The sign algorithm: --algorithm, else the only one the key's type allows
// (asks the server for the key's type).
std::optional<Failure> ResolveSignAlgorithm(Invocation& inv, const AlgorithmInfo** alg);
// "server refused: CODE: message (policy rule R, CKR_...)".
std::string RefusalText(const custos::v1::Status& status);
// `custos sign` with FILE..., --files-from or --manifest (multi_sign.cc).
std::optional<Failure> SignMany(Invocation& inv, int* exit_code);
// Sets *exit_code to kExitOk or kExitBadSignature.
std::optional<Failure> Verify(Invocation& inv, int* exit_code);
std::optional<Failure> Ping(Invocation& inv);
// `custos audit checkpoint [--out FILE]` (audit_commands.cc).
std::optional<Failure> AuditCheckpoint(Invocation& inv);

// --- CMS signatures and key certificates (cms_commands.cc) ---
std::optional<Failure> SignCms(Invocation& inv);
std::optional<Failure> KeysCertify(Invocation& inv);
std::optional<Failure> KeysAttachCert(Invocation& inv);

// --- SSH certificates and SSHSIG (ssh_commands.cc) ---
std::optional<Failure> SshSign(Invocation& inv);
std::optional<Failure> SshCaPubkey(Invocation& inv);
std::optional<Failure> SshList(Invocation& inv);
std::optional<Failure> SignSshsig(Invocation& inv);
// `custos -Y sign|verify|...`: the ssh-keygen subset git calls through
// gpg.ssh.program; returns the process exit code.
int SshKeygenCompat(const std::vector<std::string>& args);

// --- Key lifecycle (lifecycle_commands.cc) ---

// A key as JSON (`--json` output of keys list/show/create/rotate/...).
std::string KeyJson(const custos::v1::KeyInfo& k);
// A key as text (keys show).
void PrintKey(const custos::v1::KeyInfo& k);
// One key version, for `keys list --json` and `keys show --json`.
std::string KeyVersionJson(const custos::v1::KeyVersionInfo& v);
std::optional<Failure> KeysRotate(Invocation& inv);
// `action` is "disable", "enable", "destroy" or "mark-compromised".
std::optional<Failure> KeysStateChange(Invocation& inv, std::string_view action);

// --- Quorum requests (request_commands.cc) ---

// Sends a sign request. A request held for quorum approval is reported (exit
// 6) when wait_seconds is 0, else waited for; *result is the signature.
std::optional<Failure> CallSign(Invocation& inv, custos::v1::Request request,
                                std::uint64_t wait_seconds, custos::v1::SignResponse* result);
// Writes a sign result: the signature to inv.out and the usual line or JSON.
std::optional<Failure> FinishSign(Invocation& inv, const custos::v1::SignResponse& result);
// Reports a request held for approval on stdout: JSON (inv.json) or
//   pending approval: rq-<id> (<summary>) needs <rule>: <t> of group <g>[, ...]
//   follow it with `custos request wait rq-<id>`
void ReportPending(const Invocation& inv, const custos::v1::PendingRequestInfo& info,
                   const std::string& server_message);
// Polls get_request until `id` leaves pending/approved/executing or
// `timeout_seconds` pass; *info is the last answer. A timeout is a Failure
// with kExitPending; denied/expired/invalidated/failed one with kExitRefused.
std::optional<Failure> WaitForRequest(Invocation& inv, const std::string& id,
                                      std::uint64_t timeout_seconds,
                                      custos::v1::PendingRequestInfo* info);
// The request as JSON (request show/list --json, pending reports).
std::string PendingJson(const custos::v1::PendingRequestInfo& info);
// "a/b": counted approvals (capped per rule at its threshold) of the sum of
// thresholds.
std::string ApprovalsText(const custos::v1::PendingRequestInfo& info);
std::optional<Failure> RequestList(Invocation& inv);
std::optional<Failure> RequestShow(Invocation& inv);
std::optional<Failure> RequestWait(Invocation& inv);

// --- CA back-end (ca_commands.cc) ---
std::optional<Failure> CaCreate(Invocation& inv, bool root);
std::optional<Failure> CaList(Invocation& inv);
std::optional<Failure> CaShow(Invocation& inv);
std::optional<Failure> CaChain(Invocation& inv);
std::optional<Failure> CaCsr(Invocation& inv);
std::optional<Failure> CaImportCert(Invocation& inv);
std::optional<Failure> CertIssue(Invocation& inv);
std::optional<Failure> CertList(Invocation& inv);
std::optional<Failure> CertShow(Invocation& inv);
std::optional<Failure> CertRevoke(Invocation& inv);
std::optional<Failure> CrlGet(Invocation& inv);
// Writes an issued certificate to inv.out (PEM, or DER with --der) and its
// chain to inv.chain (PEM, nearest first) when given, then reports it.
std::optional<Failure> FinishIssue(Invocation& inv, const custos::v1::CertificateInfo& cert);
// Writes a new CA's certificate to inv.out when given, then reports it.
std::optional<Failure> FinishCaCreate(Invocation& inv, const custos::v1::CaInfo& ca);

// --- Policy (policy_commands.cc) ---
std::optional<Failure> PolicyShow(Invocation& inv);
std::optional<Failure> PolicyCheck(Invocation& inv);
std::optional<Failure> PolicyPropose(Invocation& inv);

}  // namespace custos::cli
