// AuditLog: custosd's tamper-evident, durable record of every request
// (brief §6, docs/audit.md).
//
// Append() gives a record its sequence number and chain hash at once (so the
// file order is the sequence order) and queues it; one writer thread takes
// everything queued, writes it with one pwrite and one fdatasync (group
// commit), and only then calls each record's completion. A caller sends its
// response from the completion, so nothing is answered before its record is
// on disk.
//
// Fail closed (LevelDB's sticky write error): when a write or fdatasync
// fails, every queued record fails, the chain falls back to the last durable
// record, the file is cut back to it, and available() turns false: Append()
// then fails at once. Every retry interval the writer cuts the file back and
// appends an "audit_resumed" event naming the outage; once that is durable the
// log is available again, with no restart.
//
// Checkpoints: after checkpoint_records records, or checkpoint_interval with
// at least one new record, at start and at Close(), the writer signs the
// statement (covers, covers_hash, time) through the CheckpointSigner (the HSM)
// and appends it as a "checkpoint" record. A signing failure is logged and
// retried at the next occasion; it does not stop the log.
//
// Start: Open() cuts a torn last line (a crash mid-write; logged), checks the
// last record's own hash and its link to the one before, and continues the
// sequence; a tail that does not verify refuses to open.
//
// Thread safety: Append, available, LatestCheckpoint may be called from any
// thread. Completions run on the writer thread and must not block.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "custos/service/audit_format.h"
#include "custos/service/log.h"
#include "custos/service/result.h"

namespace custos::service {

struct AuditOptions {
  std::string path;  // the log file (created 0600 if missing)
  std::size_t checkpoint_records = 1000;
  std::chrono::milliseconds checkpoint_interval{60000};
  std::chrono::milliseconds retry_interval{500};
  // Group commit under load: when records keep arriving (the last write
  // ended less than 2 ms ago) and fewer than 16 are queued, the writer waits
  // up to this long for more before one write + fdatasync covers them all.
  // A record after a quiet spell is written at once. 0 disables the wait.
  std::chrono::microseconds commit_delay{300};
  // The writer thread's policy (threads.h): custosd passes
  // server.io-scheduling.
  ThreadScheduling writer_scheduling = ThreadScheduling::kNormal;
};

struct CheckpointSignature {
  std::vector<std::uint8_t> signature;
  std::string key;  // the key version that made it, "audit@1"
};

// Signs checkpoints inside the HSM. `sign` takes the SHA-256 digest of a
// checkpoint statement and returns the signature as `algorithm` defines it.
struct CheckpointSigner {
  std::string algorithm;  // "ecdsa-p256-sha256"
  std::function<Result<CheckpointSignature>(std::span<const std::uint8_t> digest)> sign;
};

class AuditLog {
 public:
  // Called once the record is durable (ok) or refused (error message).
  using Done = std::function<void(const Result<void>&)>;

  // Opens (or creates) the log, repairs a torn tail, verifies the last
  // record, appends an "audit_opened" event and starts the writer. Without a
  // signer no checkpoints are written (logged as a warning).
  static Result<std::unique_ptr<AuditLog>> Open(AuditOptions options,
                                                std::optional<CheckpointSigner> signer,
                                                Logger& logger);
  // Close()s.
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Queues one record; `done` is called exactly once, on the writer thread
  // (or at once, on this thread, while the log is unavailable or closed).
  void Append(const audit::RequestFields& record, Done done);

  // False while writes fail; unavailable_reason() says why.
  bool available() const;
  std::string unavailable_reason() const;

  // The newest durable checkpoint line (without "\n"), if any.
  std::optional<std::string> LatestCheckpoint() const;

  // Writes what is queued and a final checkpoint, stops the writer. Further
  // Append() calls fail. Idempotent.
  void Close();

  // Durable records so far (the last durable sequence number).
  std::uint64_t durable_sequence() const;

 private:
  // See AuditOptions::commit_delay.
  static constexpr std::size_t kGroupTarget = 16;
  static constexpr std::chrono::milliseconds kBusyWindow{2};
  struct Pending {
    std::string line;
    std::uint64_t seq = 0;
    audit::Hash hash{};
    bool checkpoint = false;
    Done done;
  };

  AuditLog(AuditOptions options, std::optional<CheckpointSigner> signer, Logger& logger, int fd);

  // Seals `body` (built for next_seq_ and head_) and queues it; returns its
  // sequence number. Requires mu_.
  std::uint64_t QueueLocked(const std::string& body, bool checkpoint, Done done);
  void Run();
  // Writes `data` at `offset` and fdatasyncs; "" on success, else why.
  std::string WriteAt(std::uint64_t offset, const std::string& data);
  void FailLocked(const std::string& reason, std::vector<Pending>* failed);
  bool TryRecover();
  void MaybeCheckpoint(bool force);

  const AuditOptions options_;
  const std::optional<CheckpointSigner> signer_;
  Logger& logger_;
  const int fd_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Pending> queue_;                            // GUARDED_BY(mu_)
  std::uint64_t next_seq_ = 1;                            // GUARDED_BY(mu_)
  audit::Hash head_{};                                    // GUARDED_BY(mu_): hash of next_seq_ - 1
  std::uint64_t durable_seq_ = 0;                         // GUARDED_BY(mu_)
  audit::Hash durable_hash_{};                            // GUARDED_BY(mu_)
  std::uint64_t durable_offset_ = 0;                      // GUARDED_BY(mu_)
  std::chrono::steady_clock::time_point last_write_end_;  // GUARDED_BY(mu_)
  bool failed_ = false;                                   // GUARDED_BY(mu_)
  std::string reason_;                                    // GUARDED_BY(mu_)
  std::string outage_started_;                            // GUARDED_BY(mu_)
  bool stop_ = false;                                     // GUARDED_BY(mu_)
  bool closed_ = false;                                   // GUARDED_BY(mu_)
  std::optional<std::string> latest_checkpoint_;          // GUARDED_BY(mu_)

  std::atomic<bool> available_flag_{false};
  std::mutex join_mu_;

  // Writer thread only.
  std::uint64_t checkpoint_record_seq_ = 0;  // sequence of the last checkpoint queued
  std::chrono::steady_clock::time_point last_checkpoint_;
  bool checkpoint_due_ = true;

  std::thread writer_;
};

}  // namespace custos::service
