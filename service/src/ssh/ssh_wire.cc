// SSH wire encoding (RFC 4251 §5) and strict base64.
#include <openssl/err.h>

#include <array>

#include "ssh_internal.h"

namespace custos::service::ssh {

void Writer::U32(std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out_.push_back(static_cast<std::uint8_t>(v >> shift));
}

void Writer::U64(std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out_.push_back(static_cast<std::uint8_t>(v >> shift));
}

void Writer::String(ByteSpan data) {
  U32(static_cast<std::uint32_t>(data.size()));
  Raw(data);
}

void Writer::String(std::string_view data) { String(internal::AsBytes(data)); }

void Writer::Mpint(ByteSpan magnitude) {
  std::size_t skip = 0;
  while (skip < magnitude.size() && magnitude[skip] == 0) ++skip;
  const ByteSpan m = magnitude.subspan(skip);
  const bool pad = !m.empty() && (m[0] & 0x80) != 0;
  U32(static_cast<std::uint32_t>(m.size() + (pad ? 1 : 0)));
  if (pad) U8(0);
  Raw(m);
}

bool Reader::U8(std::uint8_t* v) {
  if (in_.empty()) return false;
  *v = in_[0];
  in_ = in_.subspan(1);
  return true;
}

bool Reader::U32(std::uint32_t* v) {
  if (in_.size() < 4) return false;
  std::uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r = (r << 8) | in_[i];
  *v = r;
  in_ = in_.subspan(4);
  return true;
}

bool Reader::U64(std::uint64_t* v) {
  if (in_.size() < 8) return false;
  std::uint64_t r = 0;
  for (int i = 0; i < 8; ++i) r = (r << 8) | in_[i];
  *v = r;
  in_ = in_.subspan(8);
  return true;
}

bool Reader::Raw(std::size_t n, ByteSpan* out) {
  if (in_.size() < n) return false;
  *out = in_.first(n);
  in_ = in_.subspan(n);
  return true;
}

bool Reader::String(ByteSpan* out) {
  ByteSpan saved = in_;
  std::uint32_t len;
  if (!U32(&len) || !Raw(len, out)) {
    in_ = saved;
    return false;
  }
  return true;
}

bool Reader::String(std::string* out) {
  ByteSpan s;
  if (!String(&s)) return false;
  out->assign(s.begin(), s.end());
  return true;
}

bool Reader::Mpint(ByteSpan* magnitude) {
  ByteSpan saved = in_;
  ByteSpan m;
  if (!String(&m)) return false;
  const bool negative = !m.empty() && (m[0] & 0x80) != 0;
  // A leading zero is only allowed (and then required) before a high bit.
  const bool non_minimal = !m.empty() && m[0] == 0 && (m.size() == 1 || (m[1] & 0x80) == 0);
  if (negative || non_minimal) {
    in_ = saved;
    return false;
  }
  *magnitude = (!m.empty() && m[0] == 0) ? m.subspan(1) : m;
  return true;
}

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int DecodeChar(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

std::string Base64Encode(ByteSpan data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    const std::uint32_t v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const std::size_t rest = data.size() - i;
  if (rest == 1) {
    const std::uint32_t v = data[i] << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    const std::uint32_t v = (data[i] << 16) | (data[i + 1] << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::optional<Bytes> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  Bytes out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    std::array<int, 4> v{};
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      const char c = text[i + j];
      if (c == '=') {
        // Padding only at the end of the last quantum, in positions 2 and 3.
        if (!last || j < 2) return std::nullopt;
        ++pad;
        v[j] = 0;
        continue;
      }
      if (pad > 0) return std::nullopt;
      v[j] = DecodeChar(c);
      if (v[j] < 0) return std::nullopt;
    }
    const std::uint32_t n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    if (pad == 2 && (n & 0xffff) != 0) return std::nullopt;
    if (pad == 1 && (n & 0xff) != 0) return std::nullopt;
    out.push_back(static_cast<std::uint8_t>(n >> 16));
    if (pad < 2) out.push_back(static_cast<std::uint8_t>(n >> 8));
    if (pad < 1) out.push_back(static_cast<std::uint8_t>(n));
  }
  return out;
}

namespace internal {

std::string OpenSslErrors() {
  std::string out;
  unsigned long code;
  while ((code = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

}  // namespace internal

}  // namespace custos::service::ssh
