// Structured logging: one JSON object per line on stderr,
//   {"ts":"2026-01-02T03:04:05.678Z","level":"info","event":"request",...}
// Fields appear in the order they were added. Never pass a PIN or key
// material to a log line; digests may be logged as a short hex prefix.
//
// Thread safety: a Logger may be used from any thread; each line is written
// with one call under a mutex, so lines never interleave.
#pragma once

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>

#include "custos/service/config.h"

namespace custos::service {

class Logger {
 public:
  explicit Logger(LogLevel min_level = LogLevel::kInfo, std::FILE* out = stderr)
      : min_level_(min_level), out_(out) {}
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  bool Enabled(LogLevel level) const { return level >= min_level_; }
  // Writes one complete line (the caller's text plus '\n') atomically.
  void WriteLine(std::string_view line);

 private:
  const LogLevel min_level_;
  std::FILE* const out_;
  std::mutex mu_;
};

// Builds one line and writes it when destroyed:
//   LogLine(logger, LogLevel::kInfo, "connection_closed").Num("conn", 7).Str("reason", "idle");
class LogLine {
 public:
  LogLine(Logger& logger, LogLevel level, std::string_view event);
  ~LogLine();
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;

  // Strings are JSON-escaped; invalid UTF-8 bytes are written as \u00XX.
  LogLine& Str(std::string_view key, std::string_view value);
  LogLine& Num(std::string_view key, std::int64_t value);
  LogLine& Unsigned(std::string_view key, std::uint64_t value);
  LogLine& Bool(std::string_view key, bool value);

 private:
  Logger& logger_;
  bool enabled_;
  std::string line_;
};

// Appends `value` to `out` as a JSON string literal (with quotes).
void AppendJsonString(std::string& out, std::string_view value);

// "2026-01-02T03:04:05.678Z" for the current time.
std::string UtcTimestamp();

}  // namespace custos::service
