// custos-officer: list, check, approve and deny pending quorum requests with
// the officer's own key. See `custos-officer --help` and docs/quorum.md.
#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "session.h"

namespace po = boost::program_options;

namespace custos::officer {
namespace {

constexpr const char* kHelp = R"(usage: custos-officer [--config FILE] [--json] COMMAND [ARGS]

Commands:
  list [--state STATE|all]          requests you may vote on, numbered (default:
                                    pending); columns # ID STATE OPERATION KEY
                                    REQUESTER APPROVALS TIME-LEFT
  show ID                           the request in words, from its canonical
                                    encoding, after checking that encoding
                                    hashes to the digest the server reports
  approve ID [--yes]                show, ask "Type yes to approve ID", sign an
                                    approval statement over the digest computed
                                    here, submit it, print the new state
  deny ID --reason TEXT [--yes]     the same with a denial and its reason
  console                           interactive: list, show N|ID, approve N|ID,
                                    deny N|ID REASON, refresh, help, quit
                                    (N: a number from the last list)

Config (--config FILE, else $CUSTOS_OFFICER_CONFIG, else $CUSTOS_CONFIG): the
officer's client config (custos-init writes DIR/officers/NAME.conf) with
  officer-id = alice                 your id in the policy
  officer-key = alice.key            PEM private key, or a pkcs11: URI
  officer-pkcs11-module = PATH       PKCS#11 module for a pkcs11: key
  officer-pin-file = FILE            token PIN (mode 0600), else
                                     $CUSTOS_OFFICER_PIN, else asked on the terminal
  officer-passphrase-file = FILE     passphrase of an encrypted PEM key (mode
                                     0600), else $CUSTOS_OFFICER_PASSPHRASE, else asked
PINs and passphrases are never echoed, logged or taken from the command line.

Exit codes:
  0  success
  2  usage or configuration error (also: officer key, PIN or passphrase file)
  3  could not connect, TLS failed, or no response in time
  4  the server refused (the message names the reason), or the request is no
     longer pending
  5  cannot write the output
  7  cancelled: the answer to "Type yes ..." was not yes, or the PIN prompt
     was cancelled; nothing was signed
  8  the server's request failed the local checks (its canonical encoding
     does not parse or does not hash to the digest reported); nothing signed
)";

int Fail(const Failure& f) {
  std::fflush(stdout);
  std::fprintf(stderr, "custos-officer: error: %s\n", f.message.c_str());
  return f.exit_code;
}

int Run(int argc, char** argv) {
  std::string config_path, reason, state;
  std::vector<std::string> args;
  po::options_description desc;
  desc.add_options()("help,h", "")("config", po::value(&config_path))("json", "")("yes", "")(
      "reason", po::value(&reason))("state", po::value(&state))("args", po::value(&args));
  po::positional_options_description positional;
  positional.add("args", -1);
  po::variables_map vm;
  try {
    po::store(
        po::command_line_parser(argc, argv)
            .options(desc)
            .positional(positional)
            .style(po::command_line_style::unix_style ^ po::command_line_style::allow_guessing)
            .run(),
        vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return Fail(Failure{kExitUsage, std::string(e.what()) + " (see custos-officer --help)"});
  }
  if (vm.count("help") || (!args.empty() && args[0] == "help")) {
    std::fputs(kHelp, stdout);
    return kExitOk;
  }
  if (args.empty()) {
    std::fputs(kHelp, stderr);
    return kExitUsage;
  }
  const std::string command = args[0];
  auto usage = [](const std::string& text) {
    return Fail(Failure{kExitUsage, "usage: custos-officer " + text});
  };
  const bool yes = vm.count("yes") > 0;
  if (command == "list") {
    if (args.size() != 1 || yes || vm.count("reason")) return usage("list [--state STATE|all]");
  } else if (command == "show") {
    if (args.size() != 2 || yes || vm.count("reason") || vm.count("state")) {
      return usage("show ID");
    }
  } else if (command == "approve") {
    if (args.size() != 2 || vm.count("reason") || vm.count("state")) {
      return usage("approve ID [--yes]");
    }
  } else if (command == "deny") {
    if (args.size() != 2 || !vm.count("reason") || vm.count("state")) {
      return usage("deny ID --reason TEXT [--yes]");
    }
  } else if (command == "console") {
    if (args.size() != 1 || yes || vm.count("reason") || vm.count("state")) {
      return usage("console");
    }
  } else {
    return Fail(
        Failure{kExitUsage, "unknown command '" + command + "' (see custos-officer --help)"});
  }

  if (config_path.empty()) {
    if (const char* env = std::getenv("CUSTOS_OFFICER_CONFIG"); env != nullptr && *env) {
      config_path = env;
    } else if (const char* env2 = std::getenv("CUSTOS_CONFIG"); env2 != nullptr && *env2) {
      config_path = env2;
    }
  }
  if (config_path.empty()) {
    return Fail(Failure{kExitUsage,
                        "no config: give --config FILE (e.g. DIR/officers/alice.conf) or set "
                        "CUSTOS_OFFICER_CONFIG"});
  }
  auto loaded = client::LoadClientConfig(config_path);
  if (!loaded.ok()) return Fail(Failure{kExitUsage, loaded.error().message()});

  Session session(std::move(loaded).value(), config_path, vm.count("json") > 0);
  std::optional<Failure> failure;
  if (command == "list") {
    failure = session.List(state);
  } else if (command == "show") {
    failure = session.Show(args[1]);
  } else if (command == "approve") {
    failure = session.Vote(args[1], policy::ApprovalDecision::kApprove, "", yes);
  } else if (command == "deny") {
    failure = session.Vote(args[1], policy::ApprovalDecision::kDeny, reason, yes);
  } else {
    return session.Console();
  }
  if (failure) return Fail(*failure);
  if (std::fflush(stdout) != 0) return Fail(Failure{kExitFile, "cannot write to standard output"});
  return kExitOk;
}

}  // namespace
}  // namespace custos::officer

int main(int argc, char** argv) { return custos::officer::Run(argc, argv); }
