// Framing of brief §3: a 4-byte big-endian unsigned length, then that many
// bytes of one Protobuf message. Shared by the client library and custosd.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace custos::v1 {
class Request;
class Response;
}  // namespace custos::v1

namespace custos::client {

inline constexpr std::size_t kFrameHeaderSize = 4;
inline constexpr std::size_t kDefaultMaxFrameSize = 1 << 20;  // 1 MiB

// Serialises one message into a frame (header + body).
std::string EncodeFrame(const custos::v1::Request& request);
std::string EncodeFrame(const custos::v1::Response& response);

enum class FrameError {
  kNone,
  kZeroLength,  // a frame with length 0
  kTooLarge,    // the header announces more than the maximum
};
std::string_view FrameErrorText(FrameError error);

// Incremental decoder: feed bytes as they arrive, take complete frame bodies
// out. Never buffers more than max_frame_size + 4 bytes. After an error the
// decoder stays in the error state (the connection must be closed).
class FrameDecoder {
 public:
  explicit FrameDecoder(std::size_t max_frame_size = kDefaultMaxFrameSize);

  // Appends bytes; returns how many were consumed (fewer than given only when
  // a complete frame is waiting to be taken with Next()). Once error() is set,
  // Feed discards its input and returns its full size.
  std::size_t Feed(std::span<const std::uint8_t> bytes);
  std::size_t Feed(std::string_view bytes);
  // The next complete frame body, if one is buffered.
  std::optional<std::string> Next();
  FrameError error() const { return error_; }
  // Length announced by the header that caused kTooLarge.
  std::uint64_t announced_length() const { return announced_; }
  // True when a partial frame is buffered (for "truncated frame" reporting at EOF).
  bool HasPartialFrame() const;

 private:
  std::size_t max_;
  std::string header_;
  std::string body_;
  std::uint32_t want_ = 0;
  bool have_header_ = false;
  std::optional<std::string> ready_;
  FrameError error_ = FrameError::kNone;
  std::uint64_t announced_ = 0;
};

// Decode helpers that treat a body as hostile: false on undecodable bytes.
bool ParseRequest(std::string_view body, custos::v1::Request* request);
bool ParseResponse(std::string_view body, custos::v1::Response* response);

}  // namespace custos::client
