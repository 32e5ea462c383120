// End-to-end tests of Client against a small TLS 1.3 server written here with
// asio::ssl, with certificates made by the openssl tool.
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "custos/client/client.h"
#include "custos/client/framing.h"

namespace custos::client {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

std::string g_dir;  // certificates for the whole suite

void Run(const std::string& command) {
  const std::string full = "cd '" + g_dir + "' && " + command + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(full.c_str()), 0) << command;
}

void MakePki() {
  char tmpl[] = "/tmp/custos-client-tls-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  g_dir = tmpl;
  std::ofstream(g_dir + "/server.ext") << "subjectAltName=IP:127.0.0.1,DNS:custosd.test\n"
                                          "extendedKeyUsage=serverAuth\n";
  std::ofstream(g_dir + "/client.ext") << "subjectAltName=URI:spiffe://test/ci\n"
                                          "extendedKeyUsage=clientAuth\n";
  const std::string newkey = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
  for (const char* ca : {"ca", "other"}) {
    Run("openssl req -x509 " + newkey + " -keyout " + ca + ".key -out " + ca +
        ".pem -days 2 -subj /CN=" + ca +
        " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign");
  }
  for (const char* leaf : {"server", "client"}) {
    const std::string l = leaf;
    Run("openssl req " + newkey + " -keyout " + l + ".key -out " + l + ".csr -subj /CN=" + l);
    Run("openssl x509 -req -in " + l +
        ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out " + l + ".pem -extfile " + l +
        ".ext");
  }
}

constexpr unsigned char kAlpn[] = {8, 'c', 'u', 's', 't', 'o', 's', '/', '1'};

int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kAlpn, sizeof kAlpn, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// Answers pings with server_version = the request's trace_id. Special trace ids:
//   "silent"  never answered
//   "close"   the server closes the connection
//   "hold:N"  held until N such requests arrived, then answered in reverse order
//   "flaky"   first answered UNAVAILABLE (retryable), then OK
class TestServer {
 public:
  explicit TestServer(bool alpn = true) : ctx_(ssl::context::tls_server), acceptor_(io_) {
    SSL_CTX* c = ctx_.native_handle();
    SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
    SSL_CTX_set_mode(c, SSL_MODE_NO_AUTO_CHAIN);  // send the leaf only
    ctx_.use_certificate_chain_file(g_dir + "/server.pem");
    ctx_.use_private_key_file(g_dir + "/server.key", ssl::context::pem);
    ctx_.load_verify_file(g_dir + "/ca.pem");
    ctx_.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    if (alpn) SSL_CTX_set_alpn_select_cb(c, SelectAlpn, nullptr);
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~TestServer() {
    stop_ = true;
    {
      boost::system::error_code ec;
      tcp::socket wake(io_);
      wake.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ec);
    }
    accept_thread_.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : conn_threads_) t.join();
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int connections() const { return connections_.load(); }
  std::string flaky_keys() {
    std::lock_guard<std::mutex> lock(mu_);
    return flaky_keys_;
  }

 private:
  void AcceptLoop() {
    while (!stop_) {
      auto stream = std::make_unique<ssl::stream<tcp::socket>>(io_, ctx_);
      boost::system::error_code ec;
      acceptor_.accept(stream->lowest_layer(), ec);
      if (ec || stop_) return;
      {
        std::lock_guard<std::mutex> lock(mu_);
        fds_.push_back(stream->lowest_layer().native_handle());
      }
      conn_threads_.emplace_back([this, s = std::move(stream)]() mutable { Serve(*s); });
    }
  }

  void Write(ssl::stream<tcp::socket>& s, const v1::Response& r) {
    boost::system::error_code ec;
    asio::write(s, asio::buffer(EncodeFrame(r)), ec);
  }

  void Serve(ssl::stream<tcp::socket>& s) {
    boost::system::error_code ec;
    s.handshake(ssl::stream_base::server, ec);
    if (ec) return;
    ++connections_;
    FrameDecoder decoder;
    std::vector<v1::Request> held;
    char buf[4096];
    while (true) {
      const std::size_t n = s.read_some(asio::buffer(buf), ec);
      if (ec) return;
      std::string_view bytes(buf, n);
      while (!bytes.empty()) {
        bytes.remove_prefix(decoder.Feed(bytes));
        if (decoder.error() != FrameError::kNone) return;
        while (auto body = decoder.Next()) {
          v1::Request req;
          if (!ParseRequest(*body, &req)) return;
          const std::string& t = req.trace_id();
          if (t == "silent") continue;
          if (t == "close") {
            s.lowest_layer().close(ec);
            return;
          }
          v1::Response resp;
          resp.set_id(req.id());
          resp.mutable_ping()->set_server_version(t);
          if (t == "flaky") {
            std::lock_guard<std::mutex> lock(mu_);
            flaky_keys_ += req.idempotency_key() + ";";
            if (++flaky_count_ == 1) {
              resp.mutable_status()->set_code(v1::UNAVAILABLE);
              resp.mutable_status()->set_retryable(true);
              resp.mutable_status()->set_message("token busy");
            }
          }
          if (t.rfind("hold:", 0) == 0) {
            held.push_back(req);
            if (held.size() < std::stoul(t.substr(5))) continue;
            for (auto it = held.rbegin(); it != held.rend(); ++it) {
              v1::Response r;
              r.set_id(it->id());
              r.mutable_ping()->set_server_version(it->trace_id());
              Write(s, r);
            }
            held.clear();
            continue;
          }
          Write(s, resp);
        }
      }
    }
  }

  asio::io_context io_;
  ssl::context ctx_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread accept_thread_;
  std::vector<std::thread> conn_threads_;
  std::mutex mu_;
  std::vector<int> fds_;
  std::string flaky_keys_;
  int flaky_count_ = 0;
};

class ClientTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { MakePki(); }
  static void TearDownTestSuite() { std::filesystem::remove_all(g_dir); }

  static ClientConfig Config(const std::string& server) {
    ClientConfig c;
    c.server = server;
    c.cert = g_dir + "/client.pem";
    c.key = g_dir + "/client.key";
    c.ca = g_dir + "/ca.pem";
    c.connect_timeout = std::chrono::milliseconds(3000);
    c.backoff_initial = std::chrono::milliseconds(10);
    return c;
  }

  static v1::Request Ping(const std::string& trace) {
    v1::Request r;
    r.set_trace_id(trace);
    r.mutable_ping();
    return r;
  }
};

TEST_F(ClientTlsTest, PingRoundTrip) {
  TestServer server;
  auto client = Client::Connect(Config(server.address()));
  ASSERT_TRUE(client.ok()) << client.error().message();
  auto resp = (*client)->Call(Ping("hello"));
  ASSERT_TRUE(resp.ok()) << resp.error().message();
  EXPECT_EQ(resp->status().code(), v1::OK);
  EXPECT_EQ(resp->ping().server_version(), "hello");
  EXPECT_NE(resp->id(), 0u);
}

TEST_F(ClientTlsTest, ServerNameOverrideIsVerified) {
  TestServer server;
  ClientConfig ok = Config(server.address());
  ok.server_name = "custosd.test";
  EXPECT_TRUE(Client::Connect(ok).ok());
  ClientConfig bad = Config(server.address());
  bad.server_name = "wrong.test";
  auto client = Client::Connect(bad);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.error().code(), ErrorCode::kTlsFailed);
  EXPECT_NE(client.error().message().find("certificate verify failed"), std::string::npos)
      << client.error().message();
}

TEST_F(ClientTlsTest, PipelinedResponsesInAnyOrder) {
  TestServer server;
  auto client = Client::Connect(Config(server.address()));
  ASSERT_TRUE(client.ok()) << client.error().message();
  constexpr int kCount = 40;
  std::vector<std::future<Result<v1::Response>>> futures;
  std::vector<v1::Request> requests;
  for (int i = 0; i < kCount; ++i) {
    v1::Request r = Ping("hold:" + std::to_string(kCount));
    r.set_idempotency_key(std::to_string(i));
    futures.push_back((*client)->Send(r));
  }
  std::set<std::uint64_t> ids;
  for (auto& f : futures) {
    auto resp = f.get();
    ASSERT_TRUE(resp.ok()) << resp.error().message();
    ids.insert(resp->id());
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kCount));
  EXPECT_EQ((*client)->pending(), 0u);
}

TEST_F(ClientTlsTest, InFlightLimitStillCompletesEverything) {
  TestServer server;
  ClientConfig config = Config(server.address());
  config.max_in_flight = 2;
  auto client = Client::Connect(config);
  ASSERT_TRUE(client.ok()) << client.error().message();
  std::atomic<int> done{0};
  std::promise<void> all;
  for (int i = 0; i < 100; ++i) {
    (*client)->Send(Ping("n" + std::to_string(i)), [&](Result<v1::Response> r) {
      EXPECT_TRUE(r.ok());
      if (++done == 100) all.set_value();
    });
  }
  ASSERT_EQ(all.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
}

TEST_F(ClientTlsTest, DeadlineExceeded) {
  TestServer server;
  auto client = Client::Connect(Config(server.address()));
  ASSERT_TRUE(client.ok());
  auto slow = (*client)->Send(Ping("silent"), CallOptions{std::chrono::milliseconds(150)});
  auto resp = slow.get();
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_NE(resp.error().message().find("within 150 ms"), std::string::npos);
  // The connection is still usable.
  auto next = (*client)->Call(Ping("after"));
  ASSERT_TRUE(next.ok()) << next.error().message();
  EXPECT_EQ(next->ping().server_version(), "after");
}

TEST_F(ClientTlsTest, ServerCloseFailsPendingCallsThenReconnects) {
  TestServer server;
  auto client = Client::Connect(Config(server.address()));
  ASSERT_TRUE(client.ok());
  auto a = (*client)->Send(Ping("silent"));
  auto b = (*client)->Send(Ping("silent"));
  auto c = (*client)->Send(Ping("close"));
  for (auto* f : {&a, &b, &c}) {
    ASSERT_EQ(f->wait_for(std::chrono::seconds(5)), std::future_status::ready);
    auto r = f->get();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), ErrorCode::kUnavailable);
    EXPECT_TRUE(r.error().retryable());
  }
  auto again = (*client)->Call(Ping("back"));
  ASSERT_TRUE(again.ok()) << again.error().message();
  EXPECT_EQ(again->ping().server_version(), "back");
  EXPECT_EQ(server.connections(), 2);
}

TEST_F(ClientTlsTest, CallRetriesRetryableUnavailableWithOneIdempotencyKey) {
  TestServer server;
  auto client = Client::Connect(Config(server.address()));
  ASSERT_TRUE(client.ok());
  v1::Request req = Ping("flaky");
  req.set_idempotency_key("k1");
  auto resp = (*client)->Call(req);
  ASSERT_TRUE(resp.ok()) << resp.error().message();
  EXPECT_EQ(resp->status().code(), v1::OK);
  EXPECT_EQ(server.flaky_keys(), "k1;k1;");
}

TEST_F(ClientTlsTest, WrongCaIsATlsError) {
  TestServer server;
  ClientConfig config = Config(server.address());
  config.ca = g_dir + "/other.pem";
  auto client = Client::Connect(config);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.error().code(), ErrorCode::kTlsFailed);
  EXPECT_EQ(client.error().message(),
            "TLS handshake with " + server.address() +
                " failed: certificate verify failed (unable to get local issuer certificate)");
}

TEST_F(ClientTlsTest, MissingAlpnIsRefused) {
  TestServer server(/*alpn=*/false);
  auto client = Client::Connect(Config(server.address()));
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.error().code(), ErrorCode::kTlsFailed);
  EXPECT_NE(client.error().message().find("did not select ALPN protocol custos/1"),
            std::string::npos)
      << client.error().message();
}

TEST_F(ClientTlsTest, ConnectionRefused) {
  std::uint16_t port;
  {
    asio::io_context io;
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }
  auto client = Client::Connect(Config("127.0.0.1:" + std::to_string(port)));
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.error().code(), ErrorCode::kConnectFailed);
  EXPECT_NE(client.error().message().find("cannot connect to 127.0.0.1:"), std::string::npos)
      << client.error().message();
}

TEST_F(ClientTlsTest, MissingCredentialFileIsAConfigError) {
  ClientConfig config = Config("127.0.0.1:1");
  config.key = g_dir + "/absent.key";
  auto client = Client::Connect(config);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.error().code(), ErrorCode::kInvalidConfig);
  EXPECT_NE(client.error().message().find("absent.key"), std::string::npos);
}

TEST_F(ClientTlsTest, DestructorCancelsPendingCalls) {
  TestServer server;
  std::future<Result<v1::Response>> pending;
  {
    auto client = Client::Connect(Config(server.address()));
    ASSERT_TRUE(client.ok());
    pending = (*client)->Send(Ping("silent"));
  }
  auto r = pending.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kCancelled);
}

TEST_F(ClientTlsTest, SharedIoThreadDrivesSeveralClients) {
  TestServer server;
  std::vector<std::unique_ptr<Client>> clients;
  {
    const IoThread io_thread;  // the Clients keep it running after it goes
    for (int i = 0; i < 3; ++i) {
      auto c = Client::Connect(Config(server.address()), io_thread);
      ASSERT_TRUE(c.ok()) << c.error().message();
      clients.push_back(std::move(c.value()));
    }
  }
  std::mutex mu;
  std::set<std::thread::id> callback_threads;
  std::atomic<int> done{0};
  std::promise<void> all;
  constexpr int kPerClient = 20;
  for (auto& c : clients) {
    for (int i = 0; i < kPerClient; ++i) {
      c->Send(Ping("n" + std::to_string(i)), [&](Result<v1::Response> r) {
        EXPECT_TRUE(r.ok()) << r.error().message();
        {
          std::lock_guard lock(mu);
          callback_threads.insert(std::this_thread::get_id());
        }
        if (++done == 3 * kPerClient) all.set_value();
      });
    }
  }
  ASSERT_EQ(all.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(callback_threads.size(), 1u);  // one thread served all three connections
  EXPECT_EQ(callback_threads.count(std::this_thread::get_id()), 0u);

  // Destroying one Client cancels its own calls only; the others go on.
  auto pending = clients[0]->Send(Ping("silent"));
  clients.erase(clients.begin());
  auto cancelled = pending.get();
  ASSERT_FALSE(cancelled.ok());
  EXPECT_EQ(cancelled.error().code(), ErrorCode::kCancelled);
  for (auto& c : clients) {
    auto resp = c->Call(Ping("still-here"));
    ASSERT_TRUE(resp.ok()) << resp.error().message();
    EXPECT_EQ(resp->ping().server_version(), "still-here");
  }
}

}  // namespace
}  // namespace custos::client
