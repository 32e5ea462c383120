#include "custos/client/framing.h"

#include <algorithm>
#include <climits>

#include "custos/v1/custos.pb.h"

namespace custos::client {
namespace {

std::string EncodeMessage(const google::protobuf::MessageLite& message) {
  const std::size_t size = message.ByteSizeLong();
  std::string frame(kFrameHeaderSize + size, '\0');
  frame[0] = static_cast<char>((size >> 24) & 0xff);
  frame[1] = static_cast<char>((size >> 16) & 0xff);
  frame[2] = static_cast<char>((size >> 8) & 0xff);
  frame[3] = static_cast<char>(size & 0xff);
  if (size > 0) {
    message.SerializeWithCachedSizesToArray(
        reinterpret_cast<std::uint8_t*>(frame.data() + kFrameHeaderSize));
  }
  return frame;
}

bool ParseBounded(std::string_view body, google::protobuf::MessageLite* message) {
  if (body.size() > static_cast<std::size_t>(INT_MAX)) return false;
  return message->ParseFromArray(body.data(), static_cast<int>(body.size()));
}

}  // namespace

std::string EncodeFrame(const custos::v1::Request& request) { return EncodeMessage(request); }

std::string EncodeFrame(const custos::v1::Response& response) { return EncodeMessage(response); }

std::string_view FrameErrorText(FrameError error) {
  switch (error) {
    case FrameError::kNone:
      return "no error";
    case FrameError::kZeroLength:
      return "zero-length frame";
    case FrameError::kTooLarge:
      return "frame larger than the maximum frame size";
  }
  return "unknown frame error";
}

FrameDecoder::FrameDecoder(std::size_t max_frame_size) : max_(max_frame_size) {}

std::size_t FrameDecoder::Feed(std::string_view bytes) {
  return Feed(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                            bytes.size()));
}

std::size_t FrameDecoder::Feed(std::span<const std::uint8_t> bytes) {
  // After an error the stream is unusable: discard everything so that callers
  // looping on "consumed < size" terminate.
  if (error_ != FrameError::kNone) return bytes.size();
  std::size_t used = 0;
  while (used < bytes.size() && !ready_.has_value()) {
    if (!have_header_) {
      const std::size_t take = std::min(kFrameHeaderSize - header_.size(), bytes.size() - used);
      header_.append(reinterpret_cast<const char*>(bytes.data() + used), take);
      used += take;
      if (header_.size() < kFrameHeaderSize) break;
      const auto* h = reinterpret_cast<const std::uint8_t*>(header_.data());
      const std::uint32_t length =
          (static_cast<std::uint32_t>(h[0]) << 24) | (static_cast<std::uint32_t>(h[1]) << 16) |
          (static_cast<std::uint32_t>(h[2]) << 8) | static_cast<std::uint32_t>(h[3]);
      header_.clear();
      if (length == 0) {
        error_ = FrameError::kZeroLength;
        return bytes.size();
      }
      if (length > max_) {
        announced_ = length;
        error_ = FrameError::kTooLarge;
        return bytes.size();
      }
      want_ = length;
      have_header_ = true;
      continue;
    }
    const std::size_t take = std::min<std::size_t>(want_ - body_.size(), bytes.size() - used);
    body_.append(reinterpret_cast<const char*>(bytes.data() + used), take);
    used += take;
    if (body_.size() == want_) {
      ready_ = std::move(body_);
      body_ = std::string();
      have_header_ = false;
      want_ = 0;
    }
  }
  return used;
}

std::optional<std::string> FrameDecoder::Next() {
  std::optional<std::string> out = std::move(ready_);
  ready_.reset();
  return out;
}

bool FrameDecoder::HasPartialFrame() const { return have_header_ || !header_.empty(); }

bool ParseRequest(std::string_view body, custos::v1::Request* request) {
  return ParseBounded(body, request);
}

bool ParseResponse(std::string_view body, custos::v1::Response* response) {
  return ParseBounded(body, response);
}

}  // namespace custos::client
