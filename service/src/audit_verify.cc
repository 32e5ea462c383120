#include "custos/service/audit_verify.h"

#include <deque>
#include <memory>
#include <utility>
#include <variant>

#include "custos/service/audit_format.h"

namespace custos::service::audit {

namespace {

bool VerifySignature(EVP_PKEY* key, std::string_view statement,
                     const std::vector<std::uint8_t>& sig) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), sig.data(), sig.size(),
                          reinterpret_cast<const unsigned char*>(statement.data()),
                          statement.size()) == 1;
}

// Checks a checkpoint line's signature; "" when it verifies, else why.
std::string CheckCheckpoint(const ParsedLine& p, EVP_PKEY* key) {
  auto covers = p.Number("covers");
  auto covers_hash = ParseHash(p.String("covers_hash").value_or(""));
  auto sig = ParseHex(p.String("signature").value_or(""));
  auto algorithm = p.String("algorithm");
  if (!covers || !covers_hash || !sig || !algorithm || !p.String("key")) {
    return "checkpoint lacks covers, covers_hash, key, algorithm or signature";
  }
  if (*algorithm != "ecdsa-p256-sha256") {
    return "checkpoint algorithm \"" + *algorithm + "\" is not ecdsa-p256-sha256";
  }
  const std::string statement = CheckpointStatement(*covers, *covers_hash, *p.String("time"));
  if (!VerifySignature(key, statement, *sig)) {
    return "checkpoint signature does not verify with the given audit public key";
  }
  return "";
}

}  // namespace

VerifyReport VerifyLog(std::istream& in, EVP_PKEY* key, const std::optional<std::string>& pinned) {
  VerifyReport r;
  auto fail = [&r](std::uint64_t line, std::uint64_t seq, std::string why) {
    r.ok = false;
    r.bad_line = line;
    r.bad_sequence = seq;
    r.problem = "line " + std::to_string(line) + " (sequence " + std::to_string(seq) +
                "): " + std::move(why);
    return r;
  };

  std::optional<ParsedLine> pin;
  if (pinned) {
    std::string text = *pinned;
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    auto parsed = ParseLine(text);
    if (!parsed || parsed->String("kind") != "checkpoint") {
      r.problem = "the pinned checkpoint is not a checkpoint record" +
                  (parsed ? std::string() : " (" + parsed.error() + ")");
      return r;
    }
    if (ChainHash(*ParseHash(*parsed->String("prev")), parsed->body) != parsed->hash) {
      r.problem = "the pinned checkpoint does not match its own hash";
      return r;
    }
    if (auto why = CheckCheckpoint(*parsed, key); !why.empty()) {
      r.problem = "the pinned checkpoint: " + why;
      return r;
    }
    pin = std::move(parsed.value());
  }
  const std::uint64_t pin_seq = pin ? *pin->Number("seq") : 0;
  bool pin_seen = false;

  Hash prev = kZeroHash;
  std::uint64_t expected = 1;
  // Hashes from the last checkpoint on: a checkpoint covers a record after
  // the checkpoint before it.
  std::deque<std::pair<std::uint64_t, Hash>> window;
  std::string line;
  while (std::getline(in, line)) {
    ++r.lines;
    const std::uint64_t n = r.lines;
    if (in.eof()) {
      return fail(n, expected,
                  "the last line is incomplete (no newline): a crash during a write; custosd "
                  "cuts it at its next start");
    }
    auto p = ParseLine(line);
    if (!p) return fail(n, expected, "malformed record: " + p.error());
    const std::uint64_t seq = *p->Number("seq");
    if (seq != expected) {
      return fail(n, expected,
                  "found sequence " + std::to_string(seq) + " where " + std::to_string(expected) +
                      " belongs: a record was deleted, inserted or moved here");
    }
    if (*ParseHash(*p->String("prev")) != prev) {
      return fail(n, seq,
                  "\"prev\" is not the hash of the record before: that record or this link was "
                  "altered");
    }
    if (ChainHash(prev, p->body) != p->hash) {
      return fail(n, seq, "the record does not match its hash: it was altered");
    }
    if (p->String("kind") == "checkpoint") {
      if (auto why = CheckCheckpoint(*p, key); !why.empty()) return fail(n, seq, why);
      const std::uint64_t covers = *p->Number("covers");
      const Hash covers_hash = *ParseHash(*p->String("covers_hash"));
      bool found = false;
      for (const auto& [s, h] : window) {
        if (s != covers) continue;
        found = true;
        if (h != covers_hash) {
          return fail(n, seq,
                      "checkpoint signs a hash for sequence " + std::to_string(covers) +
                          " that differs from the chain's");
        }
      }
      if (!found) {
        return fail(n, seq,
                    "checkpoint covers sequence " + std::to_string(covers) +
                        ", which is not between the previous checkpoint and this one");
      }
      ++r.checkpoints;
      r.last_checkpoint = seq;
      r.last_checkpoint_covers = covers;
      window.clear();
    }
    if (pin && seq == pin_seq) {
      if (p->hash != pin->hash) {
        return fail(n, seq, "differs from the pinned checkpoint at this sequence");
      }
      pin_seen = true;
    }
    window.emplace_back(seq, p->hash);
    prev = p->hash;
    r.last_sequence = seq;
    ++expected;
  }
  if (in.bad()) {
    r.problem = "read error";
    return r;
  }
  r.unsigned_tail = r.last_sequence - r.last_checkpoint;
  if (pin && !pin_seen) {
    return fail(r.lines + 1, r.last_sequence + 1,
                "the log ends at sequence " + std::to_string(r.last_sequence) +
                    ", before the pinned checkpoint at sequence " + std::to_string(pin_seq) +
                    ": records were cut off the end (truncated)");
  }
  if (r.checkpoints == 0) {
    return fail(r.lines + 1, r.last_sequence + 1,
                r.lines == 0 ? "the log is empty" : "no signed checkpoint in the log");
  }
  r.ok = true;
  return r;
}

namespace {

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

// The statement an approval entry stands for, rebuilt with
// policy::CanonicalStatement; std::nullopt with `why` set when the entry's
// fields do not form a valid statement.
std::optional<std::string> RebuildStatement(std::string_view request_id, const ApprovalEntry& e,
                                            std::string* why) {
  // The entry carries the time as text; the strict statement parser turns
  // it (and the ids) into a statement or says what is wrong.
  const std::string draft =
      std::string(policy::kApprovalStatementPrefix) + "request-id: " + std::string(request_id) +
      "\nrequest-digest: sha256:" + Hex(e.request_digest) + "\ndecision: " + e.decision +
      "\nofficer: " + e.officer + "\ntime: " + e.time + "\n";
  auto parsed = policy::ParseStatement(draft);
  if (auto* err = std::get_if<policy::ApprovalError>(&parsed)) {
    *why = "not a valid statement: " + err->message;
    return std::nullopt;
  }
  auto canonical = policy::CanonicalStatement(std::get<policy::ApprovalStatement>(parsed));
  if (!canonical) *why = "not a valid statement";
  return canonical;
}

}  // namespace

std::string ExecutedRequest::Summary(bool checked) const {
  std::string out = quorum_request + " " + (op.empty() ? "(no op)" : op);
  if (!key.empty()) out += " " + key;
  out += ": ";
  if (signatures == 0) return out + "no approvals recorded";
  if (!approved_by.empty()) out += "approved by " + JoinNames(approved_by);
  if (!denied_by.empty()) {
    out += approved_by.empty() ? "" : "; ";
    out += "denied by " + JoinNames(denied_by);
  }
  if (!checked) return out + " (signatures not checked)";
  return out + " (" + std::to_string(valid_signatures) + " valid signature" +
         (valid_signatures == 1 ? "" : "s") + ")";
}

ApprovalEvidenceChecker::ApprovalEvidenceChecker(const OfficerKeyring* keyring)
    : keyring_(keyring) {
  report_.checked = keyring != nullptr;
}

void ApprovalEvidenceChecker::Add(const ParsedLine& record) {
  const std::string kind = record.String("kind").value_or("");
  if (kind == "checkpoint") return;
  const std::uint64_t seq = record.Number("seq").value_or(0);
  const std::string request_id = record.String("quorum_request").value_or("");
  const std::string op = record.String("op").value_or("");
  const std::string outcome = record.String("outcome").value_or("");
  const JsonValue* approvals = record.Get("approvals");
  const std::vector<std::string> empty;
  const std::vector<std::string>& entries =
      approvals && approvals->type == JsonValue::Type::kArray ? approvals->array : empty;

  const bool refused_vote = op == "submit_approval" && outcome != "OK";
  // Votes and reads name the request too (their answer carries it); only the
  // operation's own record says it was executed.
  const bool about_request =
      op == "submit_approval" || op == "get_request" || op == "list_requests";
  const bool executed =
      kind == "request" && !request_id.empty() && !about_request && outcome == "OK";
  auto problem = [&](const std::string& who, const std::string& why) {
    std::string line = "sequence " + std::to_string(seq) + ": ";
    if (!who.empty()) line += "approval by " + who + " for " + request_id + ": ";
    report_.problems.push_back(line + why);
  };

  ExecutedRequest ex;
  ex.seq = seq;
  ex.quorum_request = request_id;
  ex.op = op;
  ex.key = record.String("key").value_or("");
  ex.signatures = entries.size();

  if (!entries.empty()) {
    ++report_.records;
    report_.entries += entries.size();
  }
  if (refused_vote) {
    report_.refused_votes += entries.size();
    return;
  }
  if (!entries.empty() && request_id.empty()) {
    problem("", "record carries approvals but no quorum_request to bind them to");
    return;
  }
  for (std::size_t i = 0; i < entries.size(); ++i) {
    auto entry = ParseApproval(entries[i]);
    if (!entry) {
      problem("", "approval entry " + std::to_string(i + 1) +
                      " is malformed (want \"<officer> <approve|deny> <time> sha256:<hex> "
                      "<signature hex>\")");
      continue;
    }
    (entry->decision == "approve" ? ex.approved_by : ex.denied_by).push_back(entry->officer);
    std::string why;
    auto statement = RebuildStatement(request_id, *entry, &why);
    if (!statement) {
      problem(entry->officer, why);
      continue;
    }
    // With keys, a signature is checked before its digest is trusted: a
    // tampered entry is reported as such, not as a digest mismatch of the
    // good entries after it.
    if (keyring_) {
      auto keys = keyring_->find(entry->officer);
      if (keys == keyring_->end() || keys->second.empty()) {
        problem(entry->officer,
                "officer " + entry->officer + " is not an officer of any given policy");
        continue;
      }
      const std::string_view sig(reinterpret_cast<const char*>(entry->signature.data()),
                                 entry->signature.size());
      bool verified = false;
      for (const auto& key : keys->second) {
        if (key.Verify(*statement, sig)) {
          verified = true;
          break;
        }
      }
      if (!verified) {
        problem(entry->officer,
                "the " + entry->decision + " signature does not verify with " + entry->officer +
                    "'s key in any given policy (" + std::to_string(keys->second.size()) +
                    (keys->second.size() == 1 ? " key" : " keys") +
                    " tried): the statement, digest or signature was altered, or it was "
                    "signed with another key");
        continue;
      }
    }
    auto [known, inserted] = digests_.try_emplace(request_id, entry->request_digest);
    if (!inserted && known->second != entry->request_digest) {
      problem(entry->officer, "names request digest sha256:" + Hex(entry->request_digest) +
                                  " but earlier approvals of " + request_id +
                                  " name sha256:" + Hex(known->second));
      continue;
    }
    if (keyring_) {
      ++report_.valid;
      ++ex.valid_signatures;
    }
  }
  if (executed) report_.executed.push_back(std::move(ex));
}

ApprovalReport CheckApprovalEvidence(std::istream& in, const OfficerKeyring* keyring) {
  ApprovalEvidenceChecker checker(keyring);
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // a torn last line is not a record
    auto parsed = ParseLine(line);
    if (parsed) checker.Add(*parsed);
  }
  return checker.report();
}

}  // namespace custos::service::audit
