#include "custos/client/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace custos::client {
namespace {

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/custos-config-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  std::string dir_;
};

TEST_F(ConfigTest, LoadsAllKeysAndResolvesRelativePaths) {
  const std::string path = Write("c.conf",
                                 "server = 127.0.0.1:7443\n"
                                 "cert = certs/builder.pem\n"
                                 "key = /abs/builder.key\n"
                                 "ca = ca.pem\n"
                                 "server-name = custosd.local\n"
                                 "timeout-ms = 1500\n");
  auto config = LoadClientConfig(path);
  ASSERT_TRUE(config.ok()) << config.error().message();
  EXPECT_EQ(config->server, "127.0.0.1:7443");
  EXPECT_EQ(config->cert, dir_ + "/certs/builder.pem");
  EXPECT_EQ(config->key, "/abs/builder.key");
  EXPECT_EQ(config->ca, dir_ + "/ca.pem");
  EXPECT_EQ(config->server_name, "custosd.local");
  EXPECT_EQ(config->request_timeout.count(), 1500);
  EXPECT_TRUE(ValidateClientConfig(*config).ok());
}

struct BadConfig {
  const char* text;
  const char* expected_in_message;
};

TEST_F(ConfigTest, ErrorsNameTheProblem) {
  const BadConfig cases[] = {
      {"server = a:1\nport = 7\n", "unknown key 'port'"},
      {"server = a:1\n[tls]\ncert = x\n", "unknown key 'tls.cert'"},
      {"timeout-ms = soon\n", "timeout-ms"},
      {"timeout-ms = 0\n", "timeout-ms must be > 0"},
      {"server\n", "c.conf"},
      {"server = a:1\nserver = b:2\n", "server"},
  };
  for (const auto& c : cases) {
    auto config = LoadClientConfig(Write("c.conf", c.text));
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_EQ(config.error().code(), ErrorCode::kInvalidConfig);
    EXPECT_NE(config.error().message().find(c.expected_in_message), std::string::npos)
        << c.text << " -> " << config.error().message();
  }
}

TEST_F(ConfigTest, MissingFile) {
  auto config = LoadClientConfig(dir_ + "/nope.conf");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.error().message().find("cannot read client config"), std::string::npos);
  EXPECT_NE(config.error().message().find("No such file"), std::string::npos);
}

TEST(ValidateClientConfig, NamesTheMissingSetting) {
  ClientConfig c;
  EXPECT_NE(ValidateClientConfig(c).error().message().find("no server configured"),
            std::string::npos);
  c.server = "localhost:7443";
  EXPECT_NE(ValidateClientConfig(c).error().message().find("certificate"), std::string::npos);
  c.cert = "c";
  c.key = "k";
  c.ca = "a";
  EXPECT_TRUE(ValidateClientConfig(c).ok());
}

TEST(ParseServerAddress, Table) {
  struct Case {
    const char* in;
    bool ok;
    const char* host;
    const char* port;
    bool is_ip;
  };
  const Case cases[] = {
      {"127.0.0.1:7443", true, "127.0.0.1", "7443", true},
      {"localhost:1", true, "localhost", "1", false},
      {"[::1]:7443", true, "::1", "7443", true},
      {"custos.example.com:65535", true, "custos.example.com", "65535", false},
      {"host", false, "", "", false},
      {":7443", false, "", "", false},
      {"host:", false, "", "", false},
      {"host:0", false, "", "", false},
      {"host:65536", false, "", "", false},
      {"host:12ab", false, "", "", false},
      {"::1:7443", false, "", "", false},
      {"[::1]7443", false, "", "", false},
      {"", false, "", "", false},
  };
  for (const auto& c : cases) {
    auto a = ParseServerAddress(c.in);
    ASSERT_EQ(a.ok(), c.ok) << c.in;
    if (!c.ok) continue;
    EXPECT_EQ(a->host, c.host) << c.in;
    EXPECT_EQ(a->port, c.port) << c.in;
    EXPECT_EQ(a->is_ip, c.is_ip) << c.in;
  }
}

}  // namespace
}  // namespace custos::client
