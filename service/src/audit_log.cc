#include "custos/service/audit_log.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>

#include "custos/service/threads.h"

namespace custos::service {

using audit::Hash;

namespace {

std::string Errno(std::string_view what, const std::string& path, int err) {
  return std::string(what) + " " + path + ": " + std::strerror(err);
}

// Reads [offset, offset + n) fully.
bool ReadAt(int fd, std::uint64_t offset, std::size_t n, std::string* out) {
  out->resize(n);
  std::size_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, out->data() + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += static_cast<std::size_t>(r);
  }
  return true;
}

Hash Sha256(std::string_view data) {
  Hash out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1) {
    std::abort();
  }
  return out;
}

struct Tail {
  std::uint64_t size = 0;  // after cutting a torn line
  std::uint64_t dropped = 0;
  std::uint64_t seq = 0;
  Hash hash{};
  std::optional<std::string> checkpoint;
};

// Finds the end of the log, cuts a torn last line, and verifies the last
// record against itself and the record before it.
Result<Tail> RecoverTail(int fd, const std::string& path, Logger& logger) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Error{Errno("cannot stat audit log", path, errno)};
  Tail tail;
  const std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
  if (size == 0) return tail;
  std::uint64_t chunk = std::min<std::uint64_t>(size, 1 << 20);
  std::string buf;
  while (true) {
    if (!ReadAt(fd, size - chunk, chunk, &buf)) {
      return Error{Errno("cannot read audit log", path, errno)};
    }
    std::size_t newlines = 0;
    for (char c : buf) newlines += c == '\n';
    if (newlines >= 3 || chunk == size) break;
    chunk = std::min<std::uint64_t>(size, chunk * 4);
  }
  const std::uint64_t base = size - chunk;
  std::size_t end = buf.size();
  if (buf.back() != '\n') {
    const auto last_nl = buf.rfind('\n');
    const std::size_t keep = last_nl == std::string::npos ? 0 : last_nl + 1;
    if (keep == 0 && base != 0) {
      return Error{"audit log " + path + ": its last line is longer than 1 MiB"};
    }
    tail.dropped = buf.size() - keep;
    if (::ftruncate(fd, static_cast<off_t>(base + keep)) != 0 || ::fsync(fd) != 0) {
      return Error{Errno("cannot cut the torn last line of audit log", path, errno)};
    }
    LogLine(logger, LogLevel::kWarn, "audit_torn_tail")
        .Str("path", path)
        .Unsigned("dropped_bytes", tail.dropped)
        .Str("reason", "the last line was incomplete (a crash during a write); it was cut off");
    end = keep;
  }
  tail.size = base + end;
  if (end == 0) return tail;
  // Lines in buf[0, end), each ending in '\n'. The first may be partial when
  // base != 0.
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  const std::string_view view(buf.data(), end);
  while (start < view.size()) {
    const auto nl = view.find('\n', start);
    lines.push_back(view.substr(start, nl - start));
    start = nl + 1;
  }
  const bool first_is_whole = base == 0;
  const std::string where = "audit log " + path + ": ";
  auto last = audit::ParseLine(lines.back());
  if (!last) return Error{where + "last record is malformed (" + last.error() + ")"};
  const std::uint64_t seq = *last->Number("seq");
  const Hash prev = *audit::ParseHash(*last->String("prev"));
  if (audit::ChainHash(prev, last->body) != last->hash) {
    return Error{where + "record " + std::to_string(seq) +
                 " does not match its hash; run custos-audit verify and move the log aside"};
  }
  if (lines.size() >= 2 && (lines.size() > 2 || first_is_whole)) {
    auto before = audit::ParseLine(lines[lines.size() - 2]);
    if (!before || *before->Number("seq") + 1 != seq || before->hash != prev) {
      return Error{where + "record " + std::to_string(seq) +
                   " does not chain to the record before it; run custos-audit verify"};
    }
  } else if (first_is_whole && (seq != 1 || prev != audit::kZeroHash)) {
    return Error{where + "the only record has sequence " + std::to_string(seq) +
                 ", not 1; run custos-audit verify"};
  }
  tail.seq = seq;
  tail.hash = last->hash;
  const std::size_t from = first_is_whole ? 0 : 1;
  for (std::size_t i = lines.size(); i-- > from;) {
    if (lines[i].find("\"kind\":\"checkpoint\"") == std::string_view::npos) continue;
    if (auto cp = audit::ParseLine(lines[i]); cp && cp->String("kind") == "checkpoint") {
      tail.checkpoint = std::string(lines[i]);
      break;
    }
  }
  return tail;
}

}  // namespace

AuditLog::AuditLog(AuditOptions options, std::optional<CheckpointSigner> signer, Logger& logger,
                   int fd)
    : options_(std::move(options)), signer_(std::move(signer)), logger_(logger), fd_(fd) {}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(AuditOptions options,
                                                 std::optional<CheckpointSigner> signer,
                                                 Logger& logger) {
  if (options.path.empty()) return Error{"audit log path is empty"};
  const int fd = ::open(options.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Error{Errno("cannot open audit log", options.path, errno)};
  auto tail = RecoverTail(fd, options.path, logger);
  if (!tail) {
    ::close(fd);
    return Error{tail.error()};
  }
  if (!signer) {
    LogLine(logger, LogLevel::kWarn, "audit_no_checkpoints")
        .Str("path", options.path)
        .Str("reason", "no audit signing key: the log is chained but no checkpoint is signed");
  }
  const std::string path = options.path;
  std::unique_ptr<AuditLog> log(new AuditLog(std::move(options), std::move(signer), logger, fd));
  log->next_seq_ = tail->seq + 1;
  log->head_ = tail->hash;
  log->durable_seq_ = tail->seq;
  log->durable_hash_ = tail->hash;
  log->durable_offset_ = tail->size;
  log->latest_checkpoint_ = tail->checkpoint;
  log->last_checkpoint_ = std::chrono::steady_clock::now();
  log->available_flag_.store(true);
  log->writer_ = std::thread([l = log.get()] { l->Run(); });

  audit::RequestFields opened;
  opened.kind = "event";
  opened.principal = "custosd";
  opened.op = "audit_opened";
  opened.outcome = "OK";
  if (tail->dropped) {
    opened.error = "cut a torn last line of " + std::to_string(tail->dropped) + " bytes";
  }
  std::promise<Result<void>> written;
  auto future = written.get_future();
  log->Append(opened, [&written](const Result<void>& r) { written.set_value(r); });
  auto result = future.get();
  if (!result) return Error{"cannot write audit log " + path + ": " + result.error()};
  LogLine(logger, LogLevel::kInfo, "audit_opened")
      .Str("path", path)
      .Unsigned("sequence", log->durable_sequence())
      .Bool("checkpoints", log->signer_.has_value());
  return log;
}

AuditLog::~AuditLog() {
  Close();
  ::close(fd_);
}

void AuditLog::Close() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  std::lock_guard join_lock(join_mu_);
  if (writer_.joinable()) writer_.join();
}

bool AuditLog::available() const { return available_flag_.load(std::memory_order_relaxed); }

std::string AuditLog::unavailable_reason() const {
  std::lock_guard lock(mu_);
  return closed_ ? "the audit log is closed" : reason_;
}

std::optional<std::string> AuditLog::LatestCheckpoint() const {
  std::lock_guard lock(mu_);
  return latest_checkpoint_;
}

std::uint64_t AuditLog::durable_sequence() const {
  std::lock_guard lock(mu_);
  return durable_seq_;
}

void AuditLog::Append(const audit::RequestFields& record, Done done) {
  std::unique_lock lock(mu_);
  if (failed_ || closed_) {
    const std::string why = closed_ ? "the audit log is closed" : reason_;
    lock.unlock();
    if (done) done(Error{why});
    return;
  }
  const std::string time = audit::UtcMicros();
  QueueLocked(audit::RequestBody(next_seq_, head_, time, record), false, std::move(done));
}

std::uint64_t AuditLog::QueueLocked(const std::string& body, bool checkpoint, Done done) {
  Pending p;
  p.seq = next_seq_++;
  p.hash = audit::ChainHash(head_, body);
  p.line = audit::SealLine(body, p.hash);
  p.checkpoint = checkpoint;
  p.done = std::move(done);
  head_ = p.hash;
  const bool wake = queue_.empty();
  queue_.push_back(std::move(p));
  // The writer waits for the first record, or (commit delay) for a group.
  if (wake || queue_.size() == kGroupTarget) cv_.notify_one();
  return next_seq_ - 1;
}

std::string AuditLog::WriteAt(std::uint64_t offset, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n =
        ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("write", options_.path, errno);
    if (n == 0) return "write " + options_.path + ": no progress";
    done += static_cast<std::size_t>(n);
  }
  if (::fdatasync(fd_) != 0) return Errno("fdatasync", options_.path, errno);
  return "";
}

void AuditLog::FailLocked(const std::string& reason, std::vector<Pending>* failed) {
  failed_ = true;
  available_flag_.store(false);
  reason_ = reason;
  outage_started_ = audit::UtcMicros();
  for (auto& p : queue_) failed->push_back(std::move(p));
  queue_.clear();
  next_seq_ = durable_seq_ + 1;
  head_ = durable_hash_;
  if (checkpoint_record_seq_ > durable_seq_) checkpoint_record_seq_ = 0;
  // Best effort: what a failed write left beyond the durable end goes. If
  // this fails too, TryRecover() cuts it before anything new is written.
  if (::ftruncate(fd_, static_cast<off_t>(durable_offset_)) != 0) {
    // Reported through the next recovery attempt.
  }
}

bool AuditLog::TryRecover() {
  std::string line;
  std::uint64_t offset = 0;
  std::uint64_t seq = 0;
  Hash hash{};
  std::string reason;
  {
    std::lock_guard lock(mu_);
    offset = durable_offset_;
    seq = durable_seq_ + 1;
    reason = reason_;
    audit::RequestFields resumed;
    resumed.kind = "event";
    resumed.principal = "custosd";
    resumed.op = "audit_resumed";
    resumed.outcome = "OK";
    resumed.error = "the audit log was unavailable from " + outage_started_ + ": " + reason_ +
                    "; operations were refused meanwhile";
    const std::string body = audit::RequestBody(seq, durable_hash_, audit::UtcMicros(), resumed);
    hash = audit::ChainHash(durable_hash_, body);
    line = audit::SealLine(body, hash);
  }
  std::string err;
  if (::ftruncate(fd_, static_cast<off_t>(offset)) != 0) {
    err = Errno("truncate", options_.path, errno);
  } else {
    err = WriteAt(offset, line);
  }
  if (!err.empty()) {
    if (::ftruncate(fd_, static_cast<off_t>(offset)) != 0) {
      // Still broken; the next attempt cuts again.
    }
    std::lock_guard lock(mu_);
    reason_ = err;
    return false;
  }
  {
    std::lock_guard lock(mu_);
    durable_seq_ = seq;
    durable_hash_ = hash;
    durable_offset_ = offset + line.size();
    next_seq_ = seq + 1;
    head_ = hash;
    failed_ = false;
    reason_.clear();
    available_flag_.store(true);
  }
  checkpoint_due_ = true;
  LogLine(logger_, LogLevel::kWarn, "audit_resumed")
      .Str("path", options_.path)
      .Unsigned("sequence", seq)
      .Str("outage_reason", reason);
  return true;
}

void AuditLog::MaybeCheckpoint(bool force) {
  if (!signer_) return;
  std::uint64_t covers = 0;
  Hash covers_hash{};
  {
    std::lock_guard lock(mu_);
    if (failed_ || closed_) return;
    covers = durable_seq_;
    covers_hash = durable_hash_;
  }
  const std::uint64_t since = covers > checkpoint_record_seq_ ? covers - checkpoint_record_seq_ : 0;
  if (since == 0) return;
  const auto now = std::chrono::steady_clock::now();
  const bool due = force || checkpoint_due_ || since >= options_.checkpoint_records ||
                   now - last_checkpoint_ >= options_.checkpoint_interval;
  if (!due) return;
  checkpoint_due_ = false;
  last_checkpoint_ = now;
  const std::string time = audit::UtcMicros();
  const Hash digest = Sha256(audit::CheckpointStatement(covers, covers_hash, time));
  auto sig = signer_->sign(digest);
  if (!sig) {
    LogLine(logger_, LogLevel::kWarn, "audit_checkpoint_failed")
        .Unsigned("covers", covers)
        .Str("error", sig.error());
    return;
  }
  audit::CheckpointFields f;
  f.covers = covers;
  f.covers_hash = covers_hash;
  f.key = sig->key;
  f.algorithm = signer_->algorithm;
  f.signature = std::move(sig->signature);
  std::lock_guard lock(mu_);
  if (failed_ || closed_) return;
  checkpoint_record_seq_ =
      QueueLocked(audit::CheckpointBody(next_seq_, head_, time, f), true, nullptr);
}

void AuditLog::Run() {
  if (auto r = SetUpCurrentThread("custosd-audit", options_.writer_scheduling); !r) {
    LogLine(logger_, LogLevel::kWarn, "thread_scheduling").Str("error", r.error());
  }
  std::unique_lock lock(mu_);
  bool final_checkpoint = false;
  while (true) {
    if (failed_) {
      if (stop_) break;
      cv_.wait_for(lock, options_.retry_interval, [this] { return stop_; });
      if (stop_) break;
      lock.unlock();
      TryRecover();
      lock.lock();
      continue;
    }
    if (queue_.empty()) {
      if (stop_) {
        if (final_checkpoint) break;
        final_checkpoint = true;
        lock.unlock();
        MaybeCheckpoint(/*force=*/true);
        lock.lock();
        continue;
      }
      const bool timed_out = !cv_.wait_for(lock, options_.checkpoint_interval,
                                           [this] { return !queue_.empty() || stop_ || failed_; });
      if (timed_out || (queue_.empty() && !stop_)) {
        lock.unlock();
        MaybeCheckpoint(false);
        lock.lock();
      }
      continue;
    }
    if (options_.commit_delay.count() > 0 && queue_.size() < kGroupTarget && !stop_ &&
        std::chrono::steady_clock::now() - last_write_end_ < kBusyWindow) {
      // More records are on their way: one fdatasync for many of them costs
      // far less than one each (docs/BENCHMARKS.md, issue 7).
      cv_.wait_for(lock, options_.commit_delay,
                   [this] { return queue_.size() >= kGroupTarget || stop_; });
    }
    std::vector<Pending> batch;
    batch.swap(queue_);
    const std::uint64_t offset = durable_offset_;
    lock.unlock();
    std::string data;
    std::size_t total = 0;
    for (const auto& p : batch) total += p.line.size();
    data.reserve(total);
    for (const auto& p : batch) data += p.line;
    const std::string err = WriteAt(offset, data);
    lock.lock();
    last_write_end_ = std::chrono::steady_clock::now();
    if (!err.empty()) {
      std::vector<Pending> failed = std::move(batch);
      FailLocked(err, &failed);
      lock.unlock();
      LogLine(logger_, LogLevel::kWarn, "audit_unavailable")
          .Str("path", options_.path)
          .Str("error", err)
          .Unsigned("refused_records", failed.size())
          .Str("effect", "refusing every operation but ping until the log can be written");
      const Result<void> refused = Error{err};
      for (auto& p : failed) {
        if (p.done) p.done(refused);
      }
      lock.lock();
      continue;
    }
    durable_seq_ = batch.back().seq;
    durable_hash_ = batch.back().hash;
    durable_offset_ = offset + data.size();
    for (const auto& p : batch) {
      if (p.checkpoint) latest_checkpoint_ = p.line.substr(0, p.line.size() - 1);
    }
    lock.unlock();
    const Result<void> ok;
    for (auto& p : batch) {
      if (p.done) p.done(ok);
    }
    MaybeCheckpoint(false);
    lock.lock();
  }
  closed_ = true;
  available_flag_.store(false);
  std::vector<Pending> left;
  left.swap(queue_);
  lock.unlock();
  for (auto& p : left) {
    if (p.done) p.done(Error{"the audit log is closed"});
  }
}

}  // namespace custos::service
