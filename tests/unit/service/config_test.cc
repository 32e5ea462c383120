#include "custos/service/config.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace custos::service {
namespace {

constexpr std::string_view kMinimal = R"(
[server]
state-dir = /var/lib/custos
policy = /etc/custos/policy.txtpb
[tls]
cert = /etc/custos/server.pem
key = /etc/custos/server.key
client-ca = /etc/custos/clients.pem
[hsm]
module = /usr/lib/softhsm/libsofthsm2.so
token = custos-dev
pin-file = /etc/custos/pin
)";

Result<CommandLine> Parse(std::string_view file, std::vector<std::string> flags = {}) {
  std::vector<std::string> args = {"custosd"};
  args.insert(args.end(), flags.begin(), flags.end());
  return ParseCommandLine(args, file, "custosd.conf");
}

TEST(ConfigTest, MinimalFileGetsDefaults) {
  auto r = Parse(kMinimal);
  ASSERT_TRUE(r.ok()) << r.error();
  const Config& c = r->config;
  EXPECT_EQ(r->action, Action::kRun);
  EXPECT_EQ(c.server.listen_host, "127.0.0.1");
  EXPECT_EQ(c.server.listen_port, 7443);
  EXPECT_GE(c.server.workers, 1u);
  EXPECT_EQ(c.server.io_threads, 1u);
  EXPECT_EQ(c.server.drain_timeout.count(), 10000);
  EXPECT_EQ(c.server.log_level, LogLevel::kInfo);
  EXPECT_EQ(c.server.io_scheduling, ThreadScheduling::kBatch);
  EXPECT_EQ(c.hsm.max_sessions, 8u);
  EXPECT_EQ(c.hsm.pin_file, "/etc/custos/pin");
  EXPECT_EQ(c.limits.max_connections, 1024u);
  EXPECT_EQ(c.limits.max_frame_bytes, 1048576u);
  EXPECT_EQ(c.limits.max_inflight_per_connection, 64u);
  EXPECT_EQ(c.limits.handshake_timeout.count(), 5000);
  EXPECT_EQ(c.limits.idle_timeout.count(), 60000);
  EXPECT_EQ(c.limits.request_timeout.count(), 10000);
  EXPECT_EQ(c.limits.max_message_bytes, 65536u);
  EXPECT_EQ(c.limits.max_batch_items, 1024u);
  EXPECT_TRUE(c.tls.crl.empty());
  EXPECT_EQ(c.audit.commit_delay.count(), 300);
}

TEST(ConfigTest, EverySettingIsRead) {
  std::string file = std::string(kMinimal) + R"(
[server]
listen = 0.0.0.0:9000
workers = 3
io-threads = 2
log-level = debug
drain-timeout-ms = 250
io-scheduling = normal
[tls]
crl = /etc/custos/clients.crl
[hsm]
max-sessions = 4
module-env = SOFTHSM2_CONF=/tmp/a.conf
module-env = OTHER=x=y
[limits]
max-connections = 10
max-frame-bytes = 4096
max-inflight-per-connection = 2
handshake-timeout-ms = 100
idle-timeout-ms = 200
request-timeout-ms = 300
max-message-bytes = 512
max-batch-items = 7
[audit]
commit-delay-us = 0
)";
  auto r = Parse(file);
  ASSERT_TRUE(r.ok()) << r.error();
  const Config& c = r->config;
  EXPECT_EQ(c.server.listen_host, "0.0.0.0");
  EXPECT_EQ(c.server.listen_port, 9000);
  EXPECT_EQ(c.server.workers, 3u);
  EXPECT_EQ(c.server.io_threads, 2u);
  EXPECT_EQ(c.server.log_level, LogLevel::kDebug);
  EXPECT_EQ(c.server.drain_timeout.count(), 250);
  EXPECT_EQ(c.server.io_scheduling, ThreadScheduling::kNormal);
  EXPECT_EQ(c.tls.crl, "/etc/custos/clients.crl");
  EXPECT_EQ(c.hsm.max_sessions, 4u);
  EXPECT_EQ(c.hsm.module_env, (std::vector<std::string>{"SOFTHSM2_CONF=/tmp/a.conf", "OTHER=x=y"}));
  EXPECT_EQ(c.limits.max_connections, 10u);
  EXPECT_EQ(c.limits.max_frame_bytes, 4096u);
  EXPECT_EQ(c.limits.max_inflight_per_connection, 2u);
  EXPECT_EQ(c.limits.handshake_timeout.count(), 100);
  EXPECT_EQ(c.limits.idle_timeout.count(), 200);
  EXPECT_EQ(c.limits.request_timeout.count(), 300);
  EXPECT_EQ(c.limits.max_message_bytes, 512u);
  EXPECT_EQ(c.limits.max_batch_items, 7u);
  EXPECT_EQ(c.audit.commit_delay.count(), 0);
}

TEST(ConfigTest, FlagOverridesFile) {
  auto r = Parse(std::string(kMinimal) + "[server]\nlisten = 127.0.0.1:1111\nworkers = 2\n",
                 {"--server.listen", "127.0.0.1:2222", "--limits.max-batch-items=5"});
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->config.server.listen_port, 2222);
  EXPECT_EQ(r->config.server.workers, 2u);
  EXPECT_EQ(r->config.limits.max_batch_items, 5u);
}

TEST(ConfigTest, UnknownKeyInFileIsRefusedByName) {
  auto r = Parse(std::string(kMinimal) + "[server]\nlisten-port = 7443\n");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "custosd.conf: unknown setting \"server.listen-port\"");
}

TEST(ConfigTest, UnknownSectionIsRefused) {
  auto r = Parse(std::string(kMinimal) + "[audit]\ndir = /x\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("\"audit.dir\""), std::string::npos) << r.error();
}

TEST(ConfigTest, UnknownFlagIsRefused) {
  auto r = Parse(kMinimal, {"--hsm.pin", "1234"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("hsm.pin"), std::string::npos) << r.error();
  // The value is never echoed.
  EXPECT_EQ(r.error().find("1234"), std::string::npos) << r.error();
}

TEST(ConfigTest, BothPinSourcesAreRefused) {
  auto r = Parse(std::string(kMinimal) + "[hsm]\npin-env = CUSTOS_PIN\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("hsm.pin-file and hsm.pin-env"), std::string::npos) << r.error();
}

TEST(ConfigTest, BothPinSourcesViaFlagAreRefused) {
  auto r = Parse(kMinimal, {"--hsm.pin-env", "CUSTOS_PIN"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("exactly one"), std::string::npos) << r.error();
}

TEST(ConfigTest, NoPinSourceIsRefused) {
  std::string file(kMinimal);
  file.erase(file.find("pin-file"));
  auto r = Parse(file);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("neither hsm.pin-file nor hsm.pin-env"), std::string::npos);
}

TEST(ConfigTest, MissingRequiredSettingIsNamed) {
  std::string file(kMinimal);
  file.replace(file.find("client-ca"), 9, "#client-ca");
  auto r = Parse(file);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "required setting tls.client-ca is missing");
}

TEST(ConfigTest, DuplicateKeyInFileIsRefused) {
  auto r = Parse(std::string(kMinimal) + "[server]\nworkers = 1\nworkers = 2\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("server.workers"), std::string::npos) << r.error();
}

struct BadValue {
  const char* flag;
  const char* value;
  const char* message_contains;
};

class BadValueTest : public testing::TestWithParam<BadValue> {};

TEST_P(BadValueTest, IsRefusedWithTheSettingName) {
  auto r = Parse(kMinimal, {std::string("--") + GetParam().flag, GetParam().value});
  ASSERT_FALSE(r.ok()) << GetParam().flag;
  EXPECT_NE(r.error().find(GetParam().message_contains), std::string::npos) << r.error();
}

INSTANTIATE_TEST_SUITE_P(
    Config, BadValueTest,
    testing::Values(BadValue{"server.workers", "0", "server.workers"},
                    BadValue{"server.workers", "-1", "server.workers"},
                    BadValue{"server.workers", "two", "server.workers"},
                    BadValue{"limits.max-frame-bytes", "99999999999", "limits.max-frame-bytes"},
                    BadValue{"limits.idle-timeout-ms", "0", "limits.idle-timeout-ms"},
                    BadValue{"server.log-level", "trace", "server.log-level"},
                    BadValue{"server.io-scheduling", "fifo", "server.io-scheduling"},
                    BadValue{"server.listen", "7443", "host:port"},
                    BadValue{"server.listen", "localhost:70000", "host:port"},
                    BadValue{"hsm.module-env", "NOEQUALS", "NAME=VALUE"},
                    BadValue{"audit.commit-delay-us", "100001", "audit.commit-delay-us"},
                    BadValue{"audit.commit-delay-us", "-1", "audit.commit-delay-us"}));

TEST(ConfigTest, HelpVersionAndCheck) {
  auto help = ParseCommandLine({"custosd", "--help"});
  ASSERT_TRUE(help.ok());
  EXPECT_EQ(help->action, Action::kHelp);
  EXPECT_NE(help->help_text.find("--server.listen"), std::string::npos);
  EXPECT_NE(help->help_text.find("--hsm.module-env"), std::string::npos);
  auto version = ParseCommandLine({"custosd", "--version"});
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(version->action, Action::kVersion);
  auto check = Parse(kMinimal, {"--check-config"});
  ASSERT_TRUE(check.ok()) << check.error();
  EXPECT_EQ(check->action, Action::kCheckConfig);
}

TEST(ConfigTest, MissingConfigFlagIsRefused) {
  auto r = ParseCommandLine({"custosd"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("--config"), std::string::npos);
  auto missing = ParseCommandLine({"custosd", "--config", "/nonexistent/custosd.conf"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("/nonexistent/custosd.conf"), std::string::npos);
}

TEST(ListenAddressTest, Forms) {
  auto v4 = ParseListenAddress("10.0.0.1:443");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->first, "10.0.0.1");
  EXPECT_EQ(v4->second, 443);
  auto v6 = ParseListenAddress("[::1]:7443");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->first, "::1");
  EXPECT_FALSE(ParseListenAddress(":7443").ok());
  EXPECT_FALSE(ParseListenAddress("host:").ok());
  EXPECT_FALSE(ParseListenAddress("[::1]7443").ok());
}

}  // namespace
}  // namespace custos::service
