#include "custos/client/framing.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "custos/v1/custos.pb.h"

namespace custos::client {
namespace {

v1::Request SignRequest(std::uint64_t id) {
  v1::Request r;
  r.set_id(id);
  r.set_trace_id("trace-" + std::to_string(id));
  r.mutable_sign()->set_key("release@2");
  r.mutable_sign()->set_algorithm("ecdsa-p256-sha256");
  r.mutable_sign()->set_digest(std::string(32, '\x5a'));
  return r;
}

std::string Header(std::uint32_t n) {
  std::string h(4, '\0');
  h[0] = static_cast<char>(n >> 24);
  h[1] = static_cast<char>(n >> 16);
  h[2] = static_cast<char>(n >> 8);
  h[3] = static_cast<char>(n);
  return h;
}

// Feeds everything, taking frames as they complete.
std::vector<std::string> FeedAll(FrameDecoder& d, std::string_view bytes) {
  std::vector<std::string> out;
  while (!bytes.empty()) {
    const std::size_t used = d.Feed(bytes);
    bytes.remove_prefix(used);
    while (auto f = d.Next()) out.push_back(*f);
    if (d.error() != FrameError::kNone) break;
  }
  return out;
}

TEST(EncodeFrame, HeaderIsBigEndianLength) {
  const v1::Request r = SignRequest(7);
  const std::string frame = EncodeFrame(r);
  ASSERT_EQ(frame.size(), 4 + r.ByteSizeLong());
  EXPECT_EQ(frame.substr(0, 4), Header(static_cast<std::uint32_t>(r.ByteSizeLong())));
  v1::Request back;
  ASSERT_TRUE(ParseRequest(std::string_view(frame).substr(4), &back));
  EXPECT_EQ(back.id(), 7u);
  EXPECT_EQ(back.sign().key(), "release@2");
}

TEST(FrameDecoder, SplitAtEveryByteBoundary) {
  const std::string frame = EncodeFrame(SignRequest(1));
  for (std::size_t split = 0; split <= frame.size(); ++split) {
    FrameDecoder d;
    auto a = FeedAll(d, std::string_view(frame).substr(0, split));
    if (split < frame.size()) {
      EXPECT_TRUE(a.empty()) << split;
      EXPECT_EQ(d.HasPartialFrame(), split > 0) << split;
    }
    auto b = FeedAll(d, std::string_view(frame).substr(split));
    a.insert(a.end(), b.begin(), b.end());
    ASSERT_EQ(a.size(), 1u) << split;
    EXPECT_EQ(a[0], frame.substr(4)) << split;
    EXPECT_EQ(d.error(), FrameError::kNone);
    EXPECT_FALSE(d.HasPartialFrame());
  }
}

TEST(FrameDecoder, OneByteAtATime) {
  const std::string stream = EncodeFrame(SignRequest(1)) + EncodeFrame(SignRequest(2));
  FrameDecoder d;
  std::vector<std::string> frames;
  for (char c : stream) {
    auto got = FeedAll(d, std::string_view(&c, 1));
    frames.insert(frames.end(), got.begin(), got.end());
  }
  ASSERT_EQ(frames.size(), 2u);
  v1::Request r;
  ASSERT_TRUE(ParseRequest(frames[1], &r));
  EXPECT_EQ(r.id(), 2u);
}

TEST(FrameDecoder, TwoFramesInOneFeedStopsAtTheFirst) {
  const std::string one = EncodeFrame(SignRequest(1));
  const std::string stream = one + EncodeFrame(SignRequest(2));
  FrameDecoder d;
  EXPECT_EQ(d.Feed(stream), one.size());
  EXPECT_EQ(d.Feed(std::string_view(stream).substr(one.size())), 0u);  // frame waiting
  ASSERT_TRUE(d.Next().has_value());
  EXPECT_FALSE(d.Next().has_value());
  EXPECT_EQ(d.Feed(std::string_view(stream).substr(one.size())), stream.size() - one.size());
  auto second = d.Next();
  ASSERT_TRUE(second.has_value());
  v1::Request r;
  ASSERT_TRUE(ParseRequest(*second, &r));
  EXPECT_EQ(r.id(), 2u);
}

TEST(FrameDecoder, ZeroLength) {
  FrameDecoder d;
  FeedAll(d, Header(0) + "abc");
  EXPECT_EQ(d.error(), FrameError::kZeroLength);
  EXPECT_EQ(FrameErrorText(d.error()), "zero-length frame");
  // Sticky: later input is discarded.
  EXPECT_EQ(d.Feed(EncodeFrame(SignRequest(1))), EncodeFrame(SignRequest(1)).size());
  EXPECT_FALSE(d.Next().has_value());
  EXPECT_EQ(d.error(), FrameError::kZeroLength);
}

TEST(FrameDecoder, TooLargeIsRefusedFromTheHeaderAlone) {
  FrameDecoder d(100);
  EXPECT_EQ(d.Feed(Header(0xffffffffu)), 4u);
  EXPECT_EQ(d.error(), FrameError::kTooLarge);
  EXPECT_EQ(d.announced_length(), 0xffffffffu);
  EXPECT_FALSE(d.Next().has_value());
}

TEST(FrameDecoder, MaxExactlyAtLimitIsAccepted) {
  const std::string body(100, 'x');
  FrameDecoder d(100);
  auto frames = FeedAll(d, Header(100) + body);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0], body);
  FrameDecoder e(100);
  FeedAll(e, Header(101) + body + "x");
  EXPECT_EQ(e.error(), FrameError::kTooLarge);
  EXPECT_EQ(e.announced_length(), 101u);
}

TEST(FrameDecoder, DefaultMaximumIsOneMiB) {
  FrameDecoder ok;
  const std::string body(kDefaultMaxFrameSize, 'a');
  auto frames = FeedAll(ok, Header(static_cast<std::uint32_t>(kDefaultMaxFrameSize)) + body);
  ASSERT_EQ(frames.size(), 1u);
  FrameDecoder big;
  big.Feed(Header(static_cast<std::uint32_t>(kDefaultMaxFrameSize + 1)));
  EXPECT_EQ(big.error(), FrameError::kTooLarge);
}

TEST(ParseRequest, RejectsGarbage) {
  v1::Request r;
  EXPECT_FALSE(ParseRequest("\xff\xff\xff\xff\xff", &r));
  v1::Response resp;
  EXPECT_FALSE(ParseResponse(std::string("\x0a\x05"
                                         "ab"),
                             &resp));  // truncated length-delimited field
}

TEST(ParseResponse, IgnoresUnknownFields) {
  v1::Response resp;
  resp.set_id(9);
  std::string body = resp.SerializeAsString();
  body += std::string("\xa8\x1f\x01", 3);  // field 501, varint 1
  v1::Response back;
  ASSERT_TRUE(ParseResponse(body, &back));
  EXPECT_EQ(back.id(), 9u);
}

}  // namespace
}  // namespace custos::client
