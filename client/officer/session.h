// custos-officer: a security officer's view of pending quorum requests and
// their approve/deny votes (docs/operations.md "Quorum", docs/quorum.md).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "custos/client/client.h"
#include "custos/client/config.h"
#include "custos/client/officer_signer.h"
#include "custos/policy/approval.h"
#include "view.h"

namespace custos::officer {

// Exit codes of custos-officer (`custos-officer --help`, docs/operations.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitUsage = 2,       // usage or configuration error (also: officer key or PIN file)
  kExitConnect = 3,     // could not connect, TLS failed, or no response in time
  kExitRefused = 4,     // the server refused (or the request is no longer pending)
  kExitFile = 5,        // cannot write the output
  kExitCancelled = 7,   // the officer did not type "yes", or cancelled the PIN prompt
  kExitUnverified = 8,  // the server's request failed the local checks; nothing signed
};

// Ends a command: "custos-officer: error: <message>" (one line).
struct Failure {
  int exit_code;
  std::string message;
};

// One officer's connection and signing key. Output goes to stdout; the
// confirmation and PIN prompts read lines from stdin.
class Session {
 public:
  Session(client::ClientConfig config, std::string config_path, bool json);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // `state`: "" pending only, "all", or a state name. Remembers the order so
  // that later commands accept the list numbers.
  std::optional<Failure> List(const std::string& state);
  // `ref`: a request id or a number from the last List().
  std::optional<Failure> Show(const std::string& ref);
  // Fetches and checks the request, shows it, asks "Type yes to approve
  // rq-... " unless `confirmed`, then signs a statement over the digest it
  // computed itself and submits it. `reason` is required for a denial.
  std::optional<Failure> Vote(const std::string& ref, policy::ApprovalDecision decision,
                              const std::string& reason, bool confirmed);
  // The REPL: prompt "custos-officer> ", commands list [STATE], show N|ID,
  // approve N|ID, deny N|ID REASON, refresh, help, quit. Ends at quit or end
  // of input; errors are printed and the console goes on.
  int Console();

 private:
  std::optional<Failure> Call(custos::v1::Request request, custos::v1::Response* response);
  std::optional<Failure> Resolve(const std::string& ref, std::string* id) const;
  std::optional<Failure> Fetch(const std::string& id, CheckedRequest* out);
  std::optional<Failure> LoadSigner();
  client::SecretSource SecretFrom(const std::string& file, const char* file_key,
                                  const char* env_name);

  client::ClientConfig config_;
  std::string config_path_;
  bool json_;
  std::unique_ptr<client::Client> client_;
  std::optional<client::OfficerSigner> signer_;
  std::vector<std::string> last_list_;
  std::string secret_error_;  // why a SecretSource gave up, for the message
};

}  // namespace custos::officer
