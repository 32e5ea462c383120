#include "session.h"

#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "cli.h"  // JSON output (client/cli/json.cc)

namespace custos::officer {
namespace {

namespace v1 = custos::v1;
using cli::JsonArray;
using cli::JsonObject;
using cli::JsonString;
using client::ErrorCode;

constexpr const char* kConsoleHelp =
    "commands:\n"
    "  list [STATE|all]      pending requests you may vote on (numbered)\n"
    "  refresh               the same list again\n"
    "  show N|ID             the request in full, checked against its digest\n"
    "  approve N|ID          show, confirm with yes, sign and submit an approval\n"
    "  deny N|ID REASON      show, confirm with yes, sign and submit a denial\n"
    "  help                  this text\n"
    "  quit                  leave (also: exit, end of input)\n";

std::string RefusalText(const v1::Status& status) {
  std::string text = "server refused: " + v1::StatusCode_Name(status.code());
  if (!status.message().empty()) text += ": " + TerminalSafe(status.message());
  if (!status.policy_rule().empty()) text += " (policy rule " + status.policy_rule() + ")";
  return text;
}

bool IsNumber(const std::string& s) {
  return !s.empty() && s.size() <= 9 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The terminal settings to put back if a signal ends the process while echo
// is off (async-signal-safe: tcsetattr, signal and raise only).
termios g_saved_termios{};
volatile sig_atomic_t g_echo_off = 0;

extern "C" void RestoreEchoAndDie(int sig) {
  if (g_echo_off) tcsetattr(STDIN_FILENO, TCSAFLUSH, &g_saved_termios);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

// Turns terminal echo off for a PIN or passphrase and restores it on every
// path, including SIGINT, SIGTERM, SIGHUP and SIGQUIT while it is off.
class EchoOff {
 public:
  EchoOff() {
    if (tcgetattr(STDIN_FILENO, &g_saved_termios) != 0) return;
    termios quiet = g_saved_termios;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    for (int sig : kSignals) previous_[Index(sig)] = std::signal(sig, RestoreEchoAndDie);
    g_echo_off = 1;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0) Restore();
  }
  ~EchoOff() { Restore(); }
  EchoOff(const EchoOff&) = delete;
  EchoOff& operator=(const EchoOff&) = delete;

 private:
  static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  static std::size_t Index(int sig) {
    for (std::size_t i = 0; i < std::size(kSignals); ++i) {
      if (kSignals[i] == sig) return i;
    }
    return 0;
  }
  void Restore() {
    if (!g_echo_off) return;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &g_saved_termios);
    g_echo_off = 0;
    for (int sig : kSignals) std::signal(sig, previous_[Index(sig)]);
  }
  void (*previous_[std::size(kSignals)])(int) = {};
};

// Reads one line from stdin; false at end of input.
bool ReadLine(std::string* line) {
  std::fflush(stdout);
  if (!std::getline(std::cin, *line)) return false;
  if (!line->empty() && line->back() == '\r') line->pop_back();
  return true;
}

std::string Trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

}  // namespace

Session::Session(client::ClientConfig config, std::string config_path, bool json)
    : config_(std::move(config)), config_path_(std::move(config_path)), json_(json) {}

Session::~Session() = default;

std::optional<Failure> Session::Call(v1::Request request, v1::Response* response) {
  if (!client_) {
    auto connected = client::Client::Connect(config_);
    if (!connected.ok()) {
      const auto& e = connected.error();
      return Failure{e.code() == ErrorCode::kInvalidConfig ? kExitUsage : kExitConnect,
                     e.message()};
    }
    client_ = std::move(connected).value();
  }
  auto result = client_->Call(std::move(request));
  if (!result.ok()) {
    const auto& e = result.error();
    return Failure{e.code() == ErrorCode::kInvalidConfig ? kExitUsage : kExitConnect, e.message()};
  }
  if (result->status().code() != v1::OK) {
    return Failure{kExitRefused, RefusalText(result->status())};
  }
  *response = std::move(result).value();
  return std::nullopt;
}

std::optional<Failure> Session::Resolve(const std::string& ref, std::string* id) const {
  if (!IsNumber(ref)) {
    *id = ref;
    return std::nullopt;
  }
  const unsigned long n = std::stoul(ref);
  if (last_list_.empty()) {
    return Failure{kExitUsage, "no list to take number " + ref + " from: run list first"};
  }
  if (n == 0 || n > last_list_.size()) {
    return Failure{kExitUsage, "no request number " + ref + " in the last list (1.." +
                                   std::to_string(last_list_.size()) + ")"};
  }
  *id = last_list_[n - 1];
  return std::nullopt;
}

std::optional<Failure> Session::Fetch(const std::string& id, CheckedRequest* out) {
  v1::Request req;
  req.mutable_get_request()->set_id(id);
  v1::Response resp;
  if (auto f = Call(req, &resp)) return f;
  if (!resp.has_pending()) {
    return Failure{kExitRefused, "server answered for " + TerminalSafe(id) + " without a request"};
  }
  if (resp.pending().id() != id) {
    return Failure{kExitUnverified, "asked for request " + TerminalSafe(id) + ", the server sent " +
                                        TerminalSafe(resp.pending().id()) + "; nothing signed"};
  }
  auto checked = CheckRequest(resp.pending());
  if (auto* error = std::get_if<std::string>(&checked)) return Failure{kExitUnverified, *error};
  *out = std::move(std::get<CheckedRequest>(checked));
  return std::nullopt;
}

std::optional<Failure> Session::List(const std::string& state) {
  v1::Request req;
  req.mutable_list_requests()->set_state(state);
  v1::Response resp;
  if (auto f = Call(req, &resp)) return f;
  const auto now = std::chrono::system_clock::now();
  last_list_.clear();
  for (const auto& r : resp.list_requests().requests()) last_list_.push_back(r.id());
  if (json_) {
    std::vector<std::string> items;
    std::size_t n = 0;
    for (const auto& r : resp.list_requests().requests()) {
      const auto left = std::chrono::seconds(r.expires_at()) -
                        std::chrono::floor<std::chrono::seconds>(now).time_since_epoch();
      items.push_back(JsonObject()
                          .Add("number", static_cast<std::int64_t>(++n))
                          .Add("id", r.id())
                          .Add("state", r.state())
                          .Add("operation", r.operation())
                          .Add("key", r.key())
                          .Add("requester", r.requester())
                          .Add("summary", r.summary())
                          .Add("approvals", ApprovalsText(r))
                          .Add("expires_at", r.expires_at())
                          .Add("time_left", TimeLeftText(left))
                          .str());
    }
    std::printf("%s\n", JsonObject().AddRaw("requests", JsonArray(items)).str().c_str());
    return std::nullopt;
  }
  if (last_list_.empty()) {
    std::printf("no %s requests for you\n",
                state.empty() ? "pending" : TerminalSafe(state).c_str());
    return std::nullopt;
  }
  std::fputs(ListHeader().c_str(), stdout);
  std::size_t n = 0;
  for (const auto& r : resp.list_requests().requests()) {
    std::fputs(ListLine(++n, r, now).c_str(), stdout);
  }
  return std::nullopt;
}

std::optional<Failure> Session::Show(const std::string& ref) {
  std::string id;
  if (auto f = Resolve(ref, &id)) return f;
  CheckedRequest request;
  if (auto f = Fetch(id, &request)) return f;
  if (json_) {
    std::vector<std::string> fields;
    for (const auto& [name, value] : request.text.fields) {
      fields.push_back(
          JsonObject().Add("name", name).Add("label", FieldLabel(name)).Add("value", value).str());
    }
    std::printf("%s\n", JsonObject()
                            .Add("id", request.text.id)
                            .Add("digest", policy::DigestToString(request.digest))
                            .AddBool("digest_verified", true)
                            .AddRaw("fields", JsonArray(fields))
                            .Add("state", request.info.state())
                            .Add("state_reason", request.info.state_reason())
                            .Add("approvals", ApprovalsText(request.info))
                            .str()
                            .c_str());
    return std::nullopt;
  }
  std::fputs(DescribeRequest(request, std::chrono::system_clock::now()).c_str(), stdout);
  return std::nullopt;
}

client::SecretSource Session::SecretFrom(const std::string& file, const char* file_key,
                                         const char* env_name) {
  return [this, file, file_key,
          env_name](std::string_view prompt) -> std::optional<client::SecretText> {
    if (!file.empty()) {
      auto secret = client::ReadSecretFile(file, file_key);
      if (!secret.ok()) {
        secret_error_ = secret.error().message();
        return std::nullopt;
      }
      return std::move(secret).value();
    }
    if (const char* env = std::getenv(env_name); env != nullptr && *env != '\0') {
      return client::SecretText(std::string(env));
    }
    if (!isatty(STDIN_FILENO)) {
      secret_error_ = std::string(prompt) + " is needed: set " + file_key + " in " + config_path_ +
                      " or " + env_name + ", or run on a terminal";
      return std::nullopt;
    }
    std::fprintf(stderr, "%.*s: ", static_cast<int>(prompt.size()), prompt.data());
    std::fflush(stderr);
    std::string line;
    line.reserve(1024);
    bool ok = false;
    {
      EchoOff quiet;
      ok = static_cast<bool>(std::getline(std::cin, line));
    }
    std::fputs("\n", stderr);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    client::SecretText secret(std::move(line));
    if (!ok || secret.empty()) {
      secret_error_ = "cancelled at the prompt: nothing signed";
      return std::nullopt;
    }
    return secret;
  };
}

std::optional<Failure> Session::LoadSigner() {
  if (signer_) return std::nullopt;
  const client::OfficerConfig& o = config_.officer;
  if (o.key.empty()) {
    return Failure{kExitUsage, "no officer-key in " + config_path_ +
                                   ": add `officer-key = PEM-FILE` or `officer-key = pkcs11:...`"};
  }
  secret_error_.clear();
  auto loaded = o.key_is_pkcs11()
                    ? client::OfficerSigner::FromPkcs11Uri(
                          o.key, SecretFrom(o.pin_file, "officer-pin-file", "CUSTOS_OFFICER_PIN"),
                          o.pkcs11_module)
                    : client::OfficerSigner::FromPemFile(
                          o.key, SecretFrom(o.passphrase_file, "officer-passphrase-file",
                                            "CUSTOS_OFFICER_PASSPHRASE"));
  if (!loaded.ok()) {
    if (loaded.error().code() == ErrorCode::kCancelled) {
      const bool prompt_cancel = secret_error_.rfind("cancelled", 0) == 0 || secret_error_.empty();
      return Failure{prompt_cancel ? kExitCancelled : kExitUsage,
                     secret_error_.empty() ? "cancelled: nothing signed" : secret_error_};
    }
    std::string message = loaded.error().message();
    if (!secret_error_.empty()) message = secret_error_;
    return Failure{kExitUsage, "officer key: " + message};
  }
  signer_.emplace(std::move(loaded).value());
  return std::nullopt;
}

std::optional<Failure> Session::Vote(const std::string& ref, policy::ApprovalDecision decision,
                                     const std::string& reason, bool confirmed) {
  const bool approve = decision == policy::ApprovalDecision::kApprove;
  const char* verb = approve ? "approve" : "deny";
  if (!approve && Trim(reason).empty()) {
    return Failure{kExitUsage, "a denial needs a reason (deny ID --reason TEXT)"};
  }
  const std::string& officer = config_.officer.id;
  if (officer.empty()) {
    return Failure{kExitUsage, "no officer-id in " + config_path_ +
                                   ": add `officer-id = <your id in the policy>`"};
  }
  if (!policy::IsValidApprovalId(officer)) {
    return Failure{kExitUsage, "officer-id '" + TerminalSafe(officer) + "' in " + config_path_ +
                                   " is not a valid officer id ([a-z0-9][a-z0-9._-]*)"};
  }
  std::string id;
  if (auto f = Resolve(ref, &id)) return f;
  CheckedRequest request;
  if (auto f = Fetch(id, &request)) return f;
  if (!json_)
    std::fputs(DescribeRequest(request, std::chrono::system_clock::now()).c_str(), stdout);
  if (request.info.state() != "pending") {
    std::string text = "request " + TerminalSafe(id) + " is " + TerminalSafe(request.info.state());
    if (!request.info.state_reason().empty()) {
      text += " (" + TerminalSafe(request.info.state_reason()) + ")";
    }
    return Failure{kExitRefused, text + "; there is nothing to vote on"};
  }
  if (!confirmed) {
    std::printf("Type yes to %s %s ", verb, TerminalSafe(id).c_str());
    std::string answer;
    const bool answered = ReadLine(&answer);
    // A terminal echoes the answer and its newline; a pipe does not.
    if (!answered || !isatty(STDIN_FILENO)) std::printf("\n");
    if (!answered || Trim(answer) != "yes") {
      return Failure{kExitCancelled, std::string("cancelled: ") + TerminalSafe(id) + " not " +
                                         (approve ? "approved" : "denied") + ", nothing signed"};
    }
  }
  if (auto f = LoadSigner()) return f;

  policy::ApprovalStatement statement;
  statement.request_id = request.text.id;
  statement.request_digest = request.digest;  // computed here, never taken from the server
  statement.decision = decision;
  statement.officer_id = officer;
  statement.time = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  std::optional<std::string> text = policy::CanonicalStatement(statement);
  if (!text) {
    return Failure{kExitUnverified, "cannot build an approval statement for request " +
                                        TerminalSafe(id) + " (invalid id)"};
  }
  // Belt and braces: what is signed names exactly the request and digest shown.
  auto reparsed = policy::ParseStatement(*text);
  if (auto* s = std::get_if<policy::ApprovalStatement>(&reparsed);
      s == nullptr || s->request_id != id || s->request_digest != request.digest ||
      policy::DigestToString(s->request_digest) != request.info.digest()) {
    return Failure{kExitUnverified, "the approval statement for " + TerminalSafe(id) +
                                        " does not name the digest shown; nothing signed"};
  }
  auto signature = signer_->Sign(*text);
  if (!signature.ok()) return Failure{kExitUsage, signature.error().message()};

  v1::Request req;
  auto* submit = req.mutable_submit_approval();
  submit->set_statement(*text);
  submit->set_signature(*signature);
  if (!approve) submit->set_reason(reason);
  v1::Response resp;
  if (auto f = Call(req, &resp)) return f;
  const v1::PendingRequestInfo& after = resp.pending();
  if (json_) {
    std::printf("%s\n", JsonObject()
                            .Add("id", id)
                            .Add("decision", verb)
                            .Add("officer", officer)
                            .Add("digest", policy::DigestToString(request.digest))
                            .Add("state", after.state())
                            .Add("state_reason", after.state_reason())
                            .Add("approvals", ApprovalsText(after))
                            .str()
                            .c_str());
    return std::nullopt;
  }
  std::printf("%s %s as %s: request is %s (%s approvals)%s%s\n", approve ? "approved" : "denied",
              TerminalSafe(id).c_str(), officer.c_str(), TerminalSafe(after.state()).c_str(),
              ApprovalsText(after).c_str(), after.state_reason().empty() ? "" : ": ",
              TerminalSafe(after.state_reason()).c_str());
  return std::nullopt;
}

int Session::Console() {
  std::printf("custos-officer console: officer %s, server %s (type help)\n",
              config_.officer.id.empty() ? "(no officer-id)" : config_.officer.id.c_str(),
              config_.server.c_str());
  auto report = [](const std::optional<Failure>& f) {
    if (f) std::printf("error: %s\n", f->message.c_str());
  };
  report(List(""));
  std::string last_state;
  for (;;) {
    std::printf("custos-officer> ");
    std::string line;
    if (!ReadLine(&line)) {
      std::printf("\n");
      break;
    }
    std::istringstream words(line);
    std::string command, ref;
    words >> command;
    if (command.empty()) continue;
    if (command == "quit" || command == "exit" || command == "q") break;
    if (command == "help" || command == "?") {
      std::fputs(kConsoleHelp, stdout);
    } else if (command == "list" || command == "ls") {
      std::string state;
      words >> state;
      last_state = state;
      report(List(state));
    } else if (command == "refresh") {
      report(List(last_state));
    } else if (command == "show" || command == "approve" || command == "deny") {
      words >> ref;
      if (ref.empty()) {
        report(Failure{kExitUsage, command + " needs a request number or id"});
        continue;
      }
      if (command == "show") {
        report(Show(ref));
      } else if (command == "approve") {
        report(Vote(ref, policy::ApprovalDecision::kApprove, "", /*confirmed=*/false));
      } else {
        std::string reason;
        std::getline(words, reason);
        reason = Trim(reason);
        if (reason.empty()) {
          report(Failure{kExitUsage, "deny needs a reason: deny N|ID REASON"});
          continue;
        }
        report(Vote(ref, policy::ApprovalDecision::kDeny, reason, /*confirmed=*/false));
      }
    } else {
      report(Failure{kExitUsage, "unknown command '" + TerminalSafe(command) + "' (type help)"});
    }
    std::fflush(stdout);
  }
  std::fflush(stdout);
  return kExitOk;
}

}  // namespace custos::officer
