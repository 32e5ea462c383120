// custos-audit: verify and export custosd's audit log (docs/audit.md).
//
//   custos-audit verify --log PATH --pubkey AUDIT.pem [--checkpoint FILE]
//                       [--policy FILE ...] [--json]
//   custos-audit export --log PATH [--out FILE]
//
// Exit codes: 0 the log is intact (verify) / exported; 1 the log is not
// intact (verify names the first bad record) or, with --policy, some
// approval evidence does not verify; 2 usage or file error.
#include <openssl/pem.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "custos/policy/policy.h"
#include "custos/policy/quorum.h"
#include "custos/service/audit_format.h"
#include "custos/service/audit_verify.h"

namespace po = boost::program_options;
namespace audit = custos::service::audit;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitNotIntact = 1;
constexpr int kExitUsage = 2;

constexpr const char* kUsage =
    "usage: custos-audit verify --log PATH --pubkey AUDIT.pem [--checkpoint FILE]\n"
    "                           [--policy FILE ...] [--json]\n"
    "       custos-audit export --log PATH [--out FILE]\n\n"
    "verify  recomputes the hash chain, checks every checkpoint signature with the audit\n"
    "        public key (custos keys pubkey audit) and, with --checkpoint (from custos\n"
    "        audit checkpoint --out FILE), that the log still holds that checkpoint.\n"
    "        With --policy (repeatable: every policy version whose officers voted, e.g.\n"
    "        from custos policy show --out FILE), it also verifies each quorum approval\n"
    "        the log records with the officers' public keys and lists who approved each\n"
    "        executed request. Exit 0 only for an intact log with valid evidence; 1\n"
    "        names the first bad record or every bad approval.\n"
    "export  writes the records as JSON lines (one object per line) for a SIEM.\n";

int Usage(const std::string& message) {
  std::fprintf(stderr, "custos-audit: %s\n\n%s", message.c_str(), kUsage);
  return kExitUsage;
}

std::string JsonEscape(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  return out + "\"";
}

// The officers' keys of every policy file; an error line when a file cannot
// be read or parsed.
std::optional<std::string> LoadKeyring(const std::vector<std::string>& paths,
                                       audit::OfficerKeyring* keyring) {
  for (const std::string& path : paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return "cannot read policy " + path;
    std::ostringstream text;
    text << in.rdbuf();
    auto parsed = custos::policy::Policy::Parse(text.str());
    if (auto* err = std::get_if<custos::policy::ParseError>(&parsed)) {
      return "policy " + err->ToString(path);
    }
    const auto& policy = std::get<custos::policy::Policy>(parsed);
    for (const auto& officer : custos::policy::QuorumPolicy(policy).officers()) {
      (*keyring)[officer.id].push_back(officer.public_key);
    }
  }
  return std::nullopt;
}

int Verify(const std::string& log_path, const std::string& pubkey_path,
           const std::string& checkpoint_path, const std::vector<std::string>& policy_paths,
           bool json) {
  if (log_path.empty() || pubkey_path.empty()) return Usage("verify needs --log and --pubkey");
  audit::OfficerKeyring keyring;
  if (auto err = LoadKeyring(policy_paths, &keyring)) {
    std::fprintf(stderr, "custos-audit: %s\n", err->c_str());
    return kExitUsage;
  }
  std::FILE* f = std::fopen(pubkey_path.c_str(), "r");
  if (!f) {
    std::fprintf(stderr, "custos-audit: cannot read public key %s\n", pubkey_path.c_str());
    return kExitUsage;
  }
  EVP_PKEY* key = PEM_read_PUBKEY(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (!key) {
    std::fprintf(stderr, "custos-audit: %s is not a PEM public key\n", pubkey_path.c_str());
    return kExitUsage;
  }
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key_holder(key, EVP_PKEY_free);
  std::optional<std::string> pinned;
  if (!checkpoint_path.empty()) {
    std::ifstream cp(checkpoint_path, std::ios::binary);
    if (!cp) {
      std::fprintf(stderr, "custos-audit: cannot read checkpoint %s\n", checkpoint_path.c_str());
      return kExitUsage;
    }
    std::ostringstream text;
    text << cp.rdbuf();
    pinned = text.str();
  }
  std::ifstream in(log_path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "custos-audit: cannot read audit log %s\n", log_path.c_str());
    return kExitUsage;
  }
  const audit::VerifyReport r = audit::VerifyLog(in, key, pinned);
  // Approval evidence is judged only on a log whose chain is intact.
  audit::ApprovalReport approvals;
  if (r.ok) {
    std::ifstream again(log_path, std::ios::binary);
    if (!again) {
      std::fprintf(stderr, "custos-audit: cannot read audit log %s\n", log_path.c_str());
      return kExitUsage;
    }
    approvals = audit::CheckApprovalEvidence(again, policy_paths.empty() ? nullptr : &keyring);
  }
  const bool ok = r.ok && approvals.ok();
  if (json) {
    std::cout << "{\"ok\":" << (ok ? "true" : "false") << ",\"records\":" << r.last_sequence
              << ",\"checkpoints\":" << r.checkpoints
              << ",\"last_checkpoint\":" << r.last_checkpoint
              << ",\"unsigned_tail\":" << r.unsigned_tail
              << ",\"pinned\":" << (pinned ? "true" : "false");
    if (!r.ok) {
      std::cout << ",\"bad_line\":" << r.bad_line << ",\"bad_sequence\":" << r.bad_sequence
                << ",\"problem\":" << JsonEscape(r.problem);
    } else {
      std::cout << ",\"approvals_checked\":" << (approvals.checked ? "true" : "false")
                << ",\"approval_signatures\":" << approvals.entries
                << ",\"valid_approval_signatures\":" << approvals.valid
                << ",\"refused_votes\":" << approvals.refused_votes << ",\"executed_requests\":[";
      for (std::size_t i = 0; i < approvals.executed.size(); ++i) {
        const auto& e = approvals.executed[i];
        std::cout << (i ? "," : "") << "{\"seq\":" << e.seq
                  << ",\"quorum_request\":" << JsonEscape(e.quorum_request)
                  << ",\"op\":" << JsonEscape(e.op) << ",\"key\":" << JsonEscape(e.key)
                  << ",\"approved_by\":[";
        for (std::size_t k = 0; k < e.approved_by.size(); ++k) {
          std::cout << (k ? "," : "") << JsonEscape(e.approved_by[k]);
        }
        std::cout << "],\"denied_by\":[";
        for (std::size_t k = 0; k < e.denied_by.size(); ++k) {
          std::cout << (k ? "," : "") << JsonEscape(e.denied_by[k]);
        }
        std::cout << "],\"valid_signatures\":" << e.valid_signatures << "}";
      }
      std::cout << "],\"approval_problems\":[";
      for (std::size_t i = 0; i < approvals.problems.size(); ++i) {
        std::cout << (i ? "," : "") << JsonEscape(approvals.problems[i]);
      }
      std::cout << "]";
    }
    std::cout << "}\n";
  }
  if (!r.ok) {
    std::fprintf(stderr, "custos-audit: NOT INTACT: %s: %s\n", log_path.c_str(), r.problem.c_str());
    return kExitNotIntact;
  }
  if (!json) {
    std::printf(
        "custos-audit: OK: %s: %llu records, %llu checkpoints verified; the last, sequence %llu, "
        "covers sequence %llu; %llu records after it are chained but not yet signed%s\n",
        log_path.c_str(), static_cast<unsigned long long>(r.last_sequence),
        static_cast<unsigned long long>(r.checkpoints),
        static_cast<unsigned long long>(r.last_checkpoint),
        static_cast<unsigned long long>(r.last_checkpoint_covers),
        static_cast<unsigned long long>(r.unsigned_tail),
        pinned ? "; the pinned checkpoint is present" : "");
    for (const auto& e : approvals.executed) {
      std::printf("%s\n", e.Summary(approvals.checked).c_str());
    }
    if (approvals.entries > 0 && !approvals.checked) {
      std::printf(
          "custos-audit: %llu approval signatures in %llu records not checked: give --policy "
          "FILE with the officers' public keys to verify them\n",
          static_cast<unsigned long long>(approvals.entries),
          static_cast<unsigned long long>(approvals.records));
    } else if (approvals.checked && approvals.ok()) {
      std::printf(
          "custos-audit: approval evidence OK: %llu of %llu approval signatures verified "
          "(%llu in refused votes not counted)\n",
          static_cast<unsigned long long>(approvals.valid),
          static_cast<unsigned long long>(approvals.entries - approvals.refused_votes),
          static_cast<unsigned long long>(approvals.refused_votes));
    }
  }
  if (!approvals.ok()) {
    for (const auto& p : approvals.problems) {
      std::fprintf(stderr, "custos-audit: BAD APPROVAL: %s: %s\n", log_path.c_str(), p.c_str());
    }
    return kExitNotIntact;
  }
  return kExitOk;
}

int Export(const std::string& log_path, const std::string& out_path) {
  if (log_path.empty()) return Usage("export needs --log");
  std::ifstream in(log_path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "custos-audit: cannot read audit log %s\n", log_path.c_str());
    return kExitUsage;
  }
  std::ofstream file;
  if (!out_path.empty()) {
    file.open(out_path, std::ios::binary | std::ios::trunc);
    if (!file) {
      std::fprintf(stderr, "custos-audit: cannot write %s\n", out_path.c_str());
      return kExitUsage;
    }
  }
  std::ostream& out = out_path.empty() ? std::cout : file;
  std::string line;
  std::uint64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (in.eof()) break;  // a torn last line is not a record
    auto parsed = audit::ParseLine(line);
    if (!parsed) {
      std::fprintf(stderr, "custos-audit: line %llu of %s is not a record: %s\n",
                   static_cast<unsigned long long>(n), log_path.c_str(), parsed.error().c_str());
      return kExitNotIntact;
    }
    // Records are already one canonical JSON object per line.
    out << line << '\n';
  }
  out.flush();
  if (!out) {
    std::fprintf(stderr, "custos-audit: write error\n");
    return kExitUsage;
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage("a command is required");
  const std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  std::string log_path, pubkey, checkpoint, out;
  std::vector<std::string> policies;
  po::options_description opts;
  opts.add_options()("help,h", "")("log", po::value(&log_path))("pubkey", po::value(&pubkey))(
      "checkpoint", po::value(&checkpoint))("out", po::value(&out))(
      "policy", po::value(&policies)->composing())("json", "");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc - 1, argv + 1).options(opts).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return Usage(e.what());
  }
  if (vm.count("help")) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (command == "verify") {
    if (!out.empty()) return Usage("--out does not apply to verify");
    return Verify(log_path, pubkey, checkpoint, policies, vm.count("json") > 0);
  }
  if (command == "export") {
    if (!pubkey.empty() || !checkpoint.empty() || !policies.empty()) {
      return Usage("export takes --log and --out only (verify first)");
    }
    return Export(log_path, out);
  }
  return Usage("unknown command \"" + command + "\"");
}
