#include "custos/service/log.h"

#include <chrono>
#include <ctime>

namespace custos::service {

namespace {

bool ValidUtf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0 && c >= 0xC2) {
      n = 1;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
    } else if ((c & 0xF8) == 0xF0 && c <= 0xF4) {
      n = 3;
    } else {
      return false;
    }
    for (std::size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n + 1;
  }
  return true;
}

}  // namespace

void AppendJsonString(std::string& out, std::string_view value) {
  static constexpr char kHex[] = "0123456789abcdef";
  const bool utf8 = ValidUtf8(value);
  out.push_back('"');
  for (char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      default:
        break;
    }
    if (c < 0x20 || c == 0x7F || (c >= 0x80 && !utf8)) {
      out += "\\u00";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
}

std::string UtcTimestamp() {
  const auto now = std::chrono::system_clock::now();
  const auto secs = std::chrono::time_point_cast<std::chrono::seconds>(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - secs).count();
  const std::time_t t = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

void Logger::WriteLine(std::string_view line) {
  std::lock_guard<std::mutex> lock(mu_);
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fputc('\n', out_);
  std::fflush(out_);
}

LogLine::LogLine(Logger& logger, LogLevel level, std::string_view event)
    : logger_(logger), enabled_(logger.Enabled(level)) {
  if (!enabled_) return;
  line_.reserve(256);
  line_ += "{\"ts\":";
  AppendJsonString(line_, UtcTimestamp());
  line_ += ",\"level\":";
  AppendJsonString(line_, LogLevelName(level));
  line_ += ",\"event\":";
  AppendJsonString(line_, event);
}

LogLine::~LogLine() {
  if (!enabled_) return;
  line_.push_back('}');
  logger_.WriteLine(line_);
}

LogLine& LogLine::Str(std::string_view key, std::string_view value) {
  if (!enabled_) return *this;
  line_.push_back(',');
  AppendJsonString(line_, key);
  line_.push_back(':');
  AppendJsonString(line_, value);
  return *this;
}

LogLine& LogLine::Num(std::string_view key, std::int64_t value) {
  if (!enabled_) return *this;
  line_.push_back(',');
  AppendJsonString(line_, key);
  line_.push_back(':');
  line_ += std::to_string(value);
  return *this;
}

LogLine& LogLine::Unsigned(std::string_view key, std::uint64_t value) {
  if (!enabled_) return *this;
  line_.push_back(',');
  AppendJsonString(line_, key);
  line_.push_back(':');
  line_ += std::to_string(value);
  return *this;
}

LogLine& LogLine::Bool(std::string_view key, bool value) {
  if (!enabled_) return *this;
  line_.push_back(',');
  AppendJsonString(line_, key);
  line_ += value ? ":true" : ":false";
  return *this;
}

}  // namespace custos::service
