#include "custos/service/audit_verify.h"

#include <deque>
#include <memory>
#include <utility>

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

}  // namespace custos::service::audit
