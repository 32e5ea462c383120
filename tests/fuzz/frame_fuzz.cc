// Fuzz target: FrameDecoder fed hostile bytes in random chunk sizes.
//
// Input layout: byte 0 picks the maximum frame size, the next 8 bytes pick
// chunk sizes (cycled), the rest is the stream.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "custos/client/framing.h"
#include "custos/v1/custos.pb.h"
#include "google/protobuf/stubs/logging.h"

namespace {

// Protobuf logs each string field with invalid UTF-8; the noise hides findings.
const bool kQuietProtobuf = [] {
  google::protobuf::SetLogHandler(nullptr);
  return true;
}();

void Check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using custos::client::FrameDecoder;
  using custos::client::FrameError;
  if (size < 9) return 0;
  const std::size_t max =
      data[0] == 0 ? custos::client::kDefaultMaxFrameSize : static_cast<std::size_t>(data[0]) * 64;
  const std::uint8_t* chunks = data + 1;
  std::span<const std::uint8_t> stream(data + 9, size - 9);

  FrameDecoder decoder(max);
  std::size_t consumed = 0;
  std::size_t framed = 0;  // bytes of complete frames, headers included
  std::size_t turn = 0;
  while (consumed < stream.size()) {
    const std::size_t chunk =
        std::min<std::size_t>(stream.size() - consumed, 1 + chunks[turn++ % 8]);
    std::span<const std::uint8_t> piece = stream.subspan(consumed, chunk);
    while (!piece.empty()) {
      const std::size_t used = decoder.Feed(piece);
      Check(used <= piece.size());
      piece = piece.subspan(used);
      consumed += used;
      bool took = false;
      while (auto body = decoder.Next()) {
        took = true;
        Check(!body->empty() && body->size() <= max);
        framed += body->size() + custos::client::kFrameHeaderSize;
        custos::v1::Response response;
        (void)custos::client::ParseResponse(*body, &response);
      }
      if (decoder.error() != FrameError::kNone) {
        Check(!decoder.Next().has_value());
        Check(piece.empty());  // input is discarded after an error
        return 0;
      }
      Check(took || piece.empty());  // Feed stops early only for a waiting frame
    }
  }
  Check(framed <= consumed);
  Check(decoder.HasPartialFrame() == (framed < consumed));
  return 0;
}
