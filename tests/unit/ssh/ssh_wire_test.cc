// SSH wire encoding: RFC 4251 §5 vectors, strict base64, bounded reads.
#include <gtest/gtest.h>

#include "ssh_test_util.h"

namespace custos::service::ssh {
namespace {

using testing::ToBytes;

Bytes Hex(std::string_view hex) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

TEST(SshWire, MpintMatchesRfc4251Examples) {
  struct Case {
    std::string magnitude;
    std::string encoded;
  };
  const Case cases[] = {
      {"", "00000000"},
      {"00", "00000000"},
      {"09a378f9b2e332a7", "0000000809a378f9b2e332a7"},
      {"80", "000000020080"},
      {"0080", "000000020080"},
      {"7f", "000000017f"},
  };
  for (const Case& c : cases) {
    Writer w;
    w.Mpint(Hex(c.magnitude));
    EXPECT_EQ(w.bytes(), Hex(c.encoded)) << c.magnitude;
    Reader r(w.bytes());
    ByteSpan m;
    ASSERT_TRUE(r.Mpint(&m));
    EXPECT_TRUE(r.empty());
    Bytes expect = Hex(c.magnitude);
    while (!expect.empty() && expect[0] == 0) expect.erase(expect.begin());
    EXPECT_EQ(Bytes(m.begin(), m.end()), expect);
  }
}

TEST(SshWire, MpintReaderRefusesNegativeAndNonMinimal) {
  for (std::string_view bad : {"0000000180", "000000020001", "0000000100", "00000002ff01"}) {
    const Bytes in = Hex(bad);
    Reader r(in);
    ByteSpan m;
    EXPECT_FALSE(r.Mpint(&m)) << bad;
    EXPECT_EQ(r.remaining(), in.size()) << "a failed read consumes nothing";
  }
}

TEST(SshWire, IntegersAndStrings) {
  Writer w;
  w.U32(0x01020304);
  w.U64(0x0102030405060708ULL);
  w.String(std::string_view("ssh"));
  EXPECT_EQ(w.bytes(), Hex("010203040102030405060708"
                           "00000003737368"));
  Reader r(w.bytes());
  std::uint32_t a;
  std::uint64_t b;
  std::string s;
  ASSERT_TRUE(r.U32(&a) && r.U64(&b) && r.String(&s));
  EXPECT_EQ(a, 0x01020304u);
  EXPECT_EQ(b, 0x0102030405060708ULL);
  EXPECT_EQ(s, "ssh");
  EXPECT_TRUE(r.empty());
}

TEST(SshWire, StringLengthBeyondInputIsRefused) {
  for (std::string_view bad : {"ffffffff00", "00000005616263", "000000", ""}) {
    const Bytes in = Hex(bad);
    Reader r(in);
    ByteSpan s;
    EXPECT_FALSE(r.String(&s)) << bad;
  }
}

TEST(SshWire, Base64RoundTripAndStrictness) {
  for (std::string_view text : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    const std::string enc = Base64Encode(ToBytes(text));
    auto dec = Base64Decode(enc);
    ASSERT_TRUE(dec.has_value()) << enc;
    EXPECT_EQ(*dec, ToBytes(text));
  }
  EXPECT_EQ(Base64Encode(ToBytes("foobar")), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode(ToBytes("fo")), "Zm8=");
  for (std::string_view bad :
       {"Zm8", "Zm9=", "Zg=a", "Z===", "Zm8=Zm8=", "Zm 8", "Zm8\n", "Zm-8", "=Zm8", "Zh=="}) {
    EXPECT_FALSE(Base64Decode(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace custos::service::ssh
