// Refusals: every hostile or unauthorised thing a peer can do gets a clear
// error (or a closed connection where no words can be sent), and custosd is
// still serving afterwards.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "custos/v1/custos.pb.h"
#include "harness.h"

namespace custos::testing {
namespace {
using namespace std::chrono_literals;

constexpr int kIdleTimeoutMs = 1500;
constexpr int kHandshakeTimeoutMs = 1000;

class Refusals : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    deployment_ = new Deployment();
    ASSERT_TRUE(
        deployment_->Start({"--limits.idle-timeout-ms", std::to_string(kIdleTimeoutMs),
                            "--limits.handshake-timeout-ms", std::to_string(kHandshakeTimeoutMs)}))
        << deployment_->log();
    CommandResult r = deployment_->Custos(
        "admin", {"keys", "create", "signer", "--type", "ec-p256", "--usage", "code-signing"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    // A ca key waits for 2 officers under the starter policy (exit 6, version
    // 1 pre-activation); that it exists is all these tests need.
    r = deployment_->Custos("admin",
                            {"keys", "create", "ca-key", "--type", "ec-p256", "--usage", "ca"});
    ASSERT_EQ(r.exit_code, 6) << r.out << r.err;
  }
  static void TearDownTestSuite() {
    delete deployment_;
    deployment_ = nullptr;
  }

  void TearDown() override {
    // Whatever the test did, the daemon must still be alive and serving.
    EXPECT_TRUE(deployment_->running()) << deployment_->log();
    CommandResult ping = deployment_->Custos("builder", {"ping"});
    EXPECT_EQ(ping.exit_code, 0) << "daemon not serving after the refusal: " << ping.err;
  }

  RawTls::Options As(const std::string& who) const {
    const std::string base = deployment_->dir() + "/clients/" + who;
    return {.cert = base + ".crt", .key = base + ".key", .ca = deployment_->dir() + "/pki/ca.crt"};
  }

  static v1::Response ParseResponse(const std::string& body) {
    v1::Response response;
    EXPECT_TRUE(response.ParseFromString(body));
    return response;
  }

  static Deployment* deployment_;
};
Deployment* Refusals::deployment_ = nullptr;

TEST_F(Refusals, NoClientCertificate) {
  RawTls::Options options = As("builder");
  options.cert.clear();
  options.key.clear();
  RawTls conn(deployment_->port(), options);
  if (conn.ok()) {
    // TLS 1.3 may finish the client side before the server's alert arrives.
    EXPECT_TRUE(conn.WaitClosed(3s)) << "server kept a connection without a client certificate";
  } else {
    SUCCEED() << conn.error();
  }
  EXPECT_FALSE(conn.ok() && conn.ReadFrame(200ms).has_value());
}

TEST_F(Refusals, ClientCertificateFromAnotherCa) {
  TempDir other;
  const std::string key = other.path() + "/k.pem", crt = other.path() + "/c.pem";
  CommandResult r = Exec({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=builder", "-addext",
                          "subjectAltName=URI:spiffe://dev.custos.test/builder", "-keyout", key,
                          "-out", crt, "-days", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  RawTls::Options options = As("builder");
  options.cert = crt;
  options.key = key;
  RawTls conn(deployment_->port(), options);
  if (conn.ok()) {
    EXPECT_TRUE(conn.WaitClosed(3s)) << "server accepted a certificate from a foreign CA";
  }
  // The CLI with the same foreign identity fails with a connection error (3).
  const std::string conf = other.path() + "/c.conf";
  WriteFile(conf, "server = 127.0.0.1:" + std::to_string(deployment_->port()) + "\ncert = " + crt +
                      "\nkey = " + key + "\nca = " + deployment_->dir() + "/pki/ca.crt\n");
  CommandResult cli = Exec({BinPath("custos"), "--config", conf, "ping"});
  EXPECT_EQ(cli.exit_code, 3) << cli.out << cli.err;
  EXPECT_FALSE(cli.err.empty());
}

TEST_F(Refusals, Tls12IsRefused) {
  RawTls::Options options = As("builder");
  options.min_tls_version = TLS1_2_VERSION;
  options.max_tls_version = TLS1_2_VERSION;
  RawTls conn(deployment_->port(), options);
  EXPECT_FALSE(conn.ok()) << "TLS 1.2 handshake succeeded";
}

TEST_F(Refusals, MissingAlpnIsRefused) {
  RawTls::Options options = As("builder");
  options.alpn = false;
  RawTls conn(deployment_->port(), options);
  EXPECT_FALSE(conn.ok() && !conn.WaitClosed(2s)) << "handshake without ALPN custos/1 accepted";
}

TEST_F(Refusals, PrincipalNotAllowedOnKey) {
  TempDir work;
  WriteFile(work.path() + "/f", "data");
  // issuer has no key rules at all.
  CommandResult r =
      deployment_->Custos("issuer", {"sign", "--key", "signer", "--algorithm", "ecdsa-p256-sha256",
                                     "--in", work.path() + "/f", "--out", work.path() + "/f.sig"});
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_NE(r.err.find("PERMISSION_DENIED"), std::string::npos) << r.err;
  // builder may sign only with code-signing keys, not with a ca key.
  r = deployment_->Custos("builder", {"sign", "--key", "ca-key", "--algorithm", "ecdsa-p256-sha256",
                                      "--in", work.path() + "/f", "--out", work.path() + "/f.sig"});
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_NE(r.err.find("PERMISSION_DENIED"), std::string::npos) << r.err;
  // builder may not create keys.
  r = deployment_->Custos(
      "builder", {"keys", "create", "mine", "--type", "ec-p256", "--usage", "code-signing"});
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_NE(r.err.find("PERMISSION_DENIED"), std::string::npos) << r.err;
}

TEST_F(Refusals, UnknownKey) {
  TempDir work;
  WriteFile(work.path() + "/f", "data");
  CommandResult r = deployment_->Custos(
      "builder", {"sign", "--key", "no-such-key", "--algorithm", "ecdsa-p256-sha256", "--in",
                  work.path() + "/f", "--out", work.path() + "/f.sig"});
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no-such-key"), std::string::npos) << r.err;
  r = deployment_->Custos("admin", {"keys", "show", "no-such-key"});
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.err;
}

TEST_F(Refusals, DigestOfWrongLength) {
  RawTls conn(deployment_->port(), As("builder"));
  ASSERT_TRUE(conn.ok()) << conn.error();
  v1::Request request;
  request.set_id(42);
  request.mutable_sign()->set_key("signer");
  request.mutable_sign()->set_algorithm("ecdsa-p256-sha256");
  request.mutable_sign()->set_digest(std::string(31, 'a'));
  ASSERT_TRUE(conn.Write(Frame(request.SerializeAsString())));
  auto body = conn.ReadFrame(5s);
  ASSERT_TRUE(body.has_value());
  v1::Response response = ParseResponse(*body);
  EXPECT_EQ(response.id(), 42u);
  EXPECT_EQ(response.status().code(), v1::INVALID_ARGUMENT) << response.status().message();
  EXPECT_NE(response.status().message().find("32"), std::string::npos)
      << response.status().message();
  EXPECT_FALSE(response.has_sign());

  // The connection stays usable for a correct request afterwards.
  request.set_id(43);
  request.mutable_sign()->set_digest(std::string(32, 'a'));
  ASSERT_TRUE(conn.Write(Frame(request.SerializeAsString())));
  body = conn.ReadFrame(5s);
  ASSERT_TRUE(body.has_value());
  response = ParseResponse(*body);
  EXPECT_EQ(response.id(), 43u);
  EXPECT_EQ(response.status().code(), v1::OK) << response.status().message();
  EXPECT_FALSE(response.sign().signature().empty());
}

TEST_F(Refusals, FrameOverTheLimit) {
  RawTls conn(deployment_->port(), As("builder"));
  ASSERT_TRUE(conn.ok()) << conn.error();
  // Announce 2 MiB (over the 1 MiB default) and send a little of it.
  std::string header = {'\x00', '\x20', '\x00', '\x00'};
  ASSERT_TRUE(conn.Write(header + std::string(1000, 'x')));
  auto body = conn.ReadFrame(5s);
  ASSERT_TRUE(body.has_value()) << "no error response before close";
  v1::Response response = ParseResponse(*body);
  EXPECT_NE(response.status().code(), v1::OK);
  EXPECT_NE(response.status().message().find("2097152"), std::string::npos)
      << response.status().message();
  EXPECT_TRUE(conn.WaitClosed(3s));
}

TEST_F(Refusals, ZeroLengthFrame) {
  RawTls conn(deployment_->port(), As("builder"));
  ASSERT_TRUE(conn.ok()) << conn.error();
  ASSERT_TRUE(conn.Write(std::string(4, '\0')));
  auto body = conn.ReadFrame(5s);
  ASSERT_TRUE(body.has_value());
  EXPECT_EQ(ParseResponse(*body).status().code(), v1::INVALID_ARGUMENT);
  EXPECT_TRUE(conn.WaitClosed(3s));
}

TEST_F(Refusals, UndecodableFrame) {
  RawTls conn(deployment_->port(), As("builder"));
  ASSERT_TRUE(conn.ok()) << conn.error();
  // A field tag with wire type 7 does not exist: no protobuf parser accepts it.
  ASSERT_TRUE(conn.Write(Frame(std::string("\x0f\xff\xff\xff", 4))));
  auto body = conn.ReadFrame(5s);
  ASSERT_TRUE(body.has_value());
  v1::Response response = ParseResponse(*body);
  EXPECT_EQ(response.status().code(), v1::INVALID_ARGUMENT);
  EXPECT_FALSE(response.status().message().empty());
  EXPECT_TRUE(conn.WaitClosed(3s));
}

TEST_F(Refusals, TruncatedFrame) {
  RawTls conn(deployment_->port(), As("builder"));
  ASSERT_TRUE(conn.ok()) << conn.error();
  // Announce 100 bytes, send 10, then nothing: the idle deadline closes it.
  ASSERT_TRUE(conn.Write(std::string("\x00\x00\x00\x64", 4) + std::string(10, 'x')));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(conn.WaitClosed(std::chrono::milliseconds(kIdleTimeoutMs + 4000)));
  EXPECT_LT(std::chrono::steady_clock::now() - start,
            std::chrono::milliseconds(kIdleTimeoutMs + 4000));
}

TEST_F(Refusals, RandomBytesInsteadOfAFrame) {
  // Fixed "random" bytes so that a failure can be reproduced.
  std::string noise;
  std::uint32_t x = 0x9e3779b9u;
  for (int i = 0; i < 4096; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    noise.push_back(static_cast<char>(x & 0xff));
  }
  RawTls conn(deployment_->port(), As("builder"));
  ASSERT_TRUE(conn.ok()) << conn.error();
  ASSERT_TRUE(conn.Write(noise));
  auto body = conn.ReadFrame(5s);
  if (body.has_value()) {
    EXPECT_NE(ParseResponse(*body).status().code(), v1::OK);
  }
  EXPECT_TRUE(conn.WaitClosed(std::chrono::milliseconds(kIdleTimeoutMs + 4000)));
}

TEST_F(Refusals, RandomBytesInsteadOfTls) {
  // Not even TLS: plain bytes on the TCP port.
  CommandResult r = Exec({"bash", "-c",
                          "exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(deployment_->port()) +
                              "; head -c 3000 /dev/urandom >&3; timeout 5 cat <&3 >/dev/null; "
                              "echo closed"});
  EXPECT_NE(r.out.find("closed"), std::string::npos) << r.out << r.err;
}

TEST_F(Refusals, SilentConnectionHitsTheDeadline) {
  RawTls conn(deployment_->port(), As("builder"));
  ASSERT_TRUE(conn.ok()) << conn.error();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(conn.WaitClosed(std::chrono::milliseconds(kIdleTimeoutMs + 4000)));
  EXPECT_GE(std::chrono::steady_clock::now() - start,
            std::chrono::milliseconds(kIdleTimeoutMs / 2));
}

TEST_F(Refusals, SilentTcpBeforeHandshakeHitsTheDeadline) {
  CommandResult r = Exec({"bash", "-c",
                          "exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(deployment_->port()) +
                              "; start=$(date +%s%N); timeout 10 cat <&3 >/dev/null; "
                              "echo $(( ($(date +%s%N) - start) / 1000000 ))"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const long waited_ms = std::stol(r.out);
  EXPECT_LT(waited_ms, kHandshakeTimeoutMs + 4000) << "server held a silent TCP connection";
}

}  // namespace
}  // namespace custos::testing
