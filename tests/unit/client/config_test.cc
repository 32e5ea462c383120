#include "custos/client/config.h"

#include <sys/stat.h>

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "custos/client/officer_signer.h"

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
                                 "timeout-ms = 1500\n"
                                 "retries = 5\n");
  auto config = LoadClientConfig(path);
  ASSERT_TRUE(config.ok()) << config.error().message();
  EXPECT_EQ(config->server, "127.0.0.1:7443");
  EXPECT_EQ(config->cert, dir_ + "/certs/builder.pem");
  EXPECT_EQ(config->key, "/abs/builder.key");
  EXPECT_EQ(config->ca, dir_ + "/ca.pem");
  EXPECT_EQ(config->server_name, "custosd.local");
  EXPECT_EQ(config->request_timeout.count(), 1500);
  EXPECT_EQ(config->retries, 5);
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
      {"retries = 101\n", "retries must be 0 to 100"},
      {"retries = -2\n", "retries must be 0 to 100"},
      {"retries = many\n", "retries"},
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

TEST_F(ConfigTest, OfficerKeysResolveRelativeToTheFile) {
  const std::string path = Write("alice.conf",
                                 "server = 127.0.0.1:7443\n"
                                 "cert = alice-tls.crt\nkey = alice-tls.key\nca = ../pki/ca.crt\n"
                                 "officer-id = alice\n"
                                 "officer-key = alice.key\n"
                                 "officer-passphrase-file = secrets/alice.pass\n"
                                 "officer-pin-file = /abs/alice.pin\n"
                                 "officer-pkcs11-module = lib/module.so\n");
  auto config = LoadClientConfig(path);
  ASSERT_TRUE(config.ok()) << config.error().message();
  EXPECT_EQ(config->officer.id, "alice");
  EXPECT_EQ(config->officer.key, dir_ + "/alice.key");
  EXPECT_FALSE(config->officer.key_is_pkcs11());
  EXPECT_EQ(config->officer.passphrase_file, dir_ + "/secrets/alice.pass");
  EXPECT_EQ(config->officer.pin_file, "/abs/alice.pin");
  EXPECT_EQ(config->officer.pkcs11_module, dir_ + "/lib/module.so");
  // The connection settings are unaffected.
  EXPECT_EQ(config->key, dir_ + "/alice-tls.key");
  EXPECT_TRUE(ValidateClientConfig(*config).ok());
}

TEST_F(ConfigTest, OfficerPkcs11UriIsKeptAsWritten) {
  auto config = LoadClientConfig(Write(
      "dave.conf", "officer-id = dave\nofficer-key = pkcs11:token=officer-dave;object=dave\n"));
  ASSERT_TRUE(config.ok()) << config.error().message();
  EXPECT_EQ(config->officer.key, "pkcs11:token=officer-dave;object=dave");
  EXPECT_TRUE(config->officer.key_is_pkcs11());
  EXPECT_TRUE(config->officer.pin_file.empty());
  EXPECT_TRUE(config->officer.pkcs11_module.empty());
}

TEST_F(ConfigTest, WithoutOfficerKeysTheOfficerSettingsAreEmpty) {
  auto config = LoadClientConfig(Write("builder.conf", "server = a:1\n"));
  ASSERT_TRUE(config.ok()) << config.error().message();
  EXPECT_TRUE(config->officer.id.empty());
  EXPECT_TRUE(config->officer.key.empty());
  EXPECT_TRUE(config->officer.pin_file.empty());
  EXPECT_TRUE(config->officer.passphrase_file.empty());
}

TEST_F(ConfigTest, UnknownKeyListsTheOfficerKeys) {
  auto config = LoadClientConfig(Write("c.conf", "officer-pin = 1234\n"));
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.error().message().find("unknown key 'officer-pin'"), std::string::npos)
      << config.error().message();
  EXPECT_NE(config.error().message().find("officer-pin-file"), std::string::npos);
}

TEST_F(ConfigTest, SecretFileReadsTheFirstLine) {
  const std::string path = Write("pin", "123456\r\nsecond line\n");
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  auto secret = ReadSecretFile(path, "officer-pin-file");
  ASSERT_TRUE(secret.ok()) << secret.error().message();
  EXPECT_STREQ(secret->Reveal(), "123456");
  EXPECT_EQ(secret->size(), 6u);

  const std::string bare = Write("bare", "no newline at the end");
  ASSERT_EQ(::chmod(bare.c_str(), 0400), 0);
  auto b = ReadSecretFile(bare, "officer-passphrase-file");
  ASSERT_TRUE(b.ok()) << b.error().message();
  EXPECT_STREQ(b->Reveal(), "no newline at the end");
}

TEST_F(ConfigTest, SecretFileRefusesLooseModesAndEmptyFiles) {
  const std::string path = Write("pin", "123456\n");
  for (mode_t mode : {0644, 0640, 0604, 0660, 0602}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto secret = ReadSecretFile(path, "officer-pin-file");
    ASSERT_FALSE(secret.ok()) << std::oct << mode;
    EXPECT_EQ(secret.error().code(), ErrorCode::kInvalidConfig);
    const std::string& m = secret.error().message();
    EXPECT_NE(m.find("officer-pin-file " + path), std::string::npos) << m;
    EXPECT_NE(m.find("chmod 600"), std::string::npos) << m;
    EXPECT_EQ(m.find("123456"), std::string::npos) << "the secret must not be in messages: " << m;
  }
  const std::string empty = Write("empty", "\nsecret on line two\n");
  ASSERT_EQ(::chmod(empty.c_str(), 0600), 0);
  auto e = ReadSecretFile(empty, "officer-pin-file");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message().find("empty"), std::string::npos) << e.error().message();
  EXPECT_EQ(e.error().message().find("secret on line two"), std::string::npos);

  auto missing = ReadSecretFile(dir_ + "/nope", "officer-pin-file");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message().find("cannot open"), std::string::npos);
  EXPECT_FALSE(ReadSecretFile(dir_, "officer-pin-file").ok());
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

TEST(ApplyEnvironment, FillsServerAndCredentialsWhenSet) {
  ClientConfig c;
  c.server = "file:1";
  c.cert = "file-cert.pem";
  c.key = "file-key.pem";
  c.ca = "file-ca.pem";
  c.server_name = "kept";
  unsetenv("CUSTOS_SERVER");
  unsetenv("CUSTOS_CERT");
  unsetenv("CUSTOS_KEY");
  unsetenv("CUSTOS_CA");
  EXPECT_FALSE(ApplyEnvironment(&c));
  EXPECT_EQ(c.server, "file:1");
  setenv("CUSTOS_SERVER", "env:2", 1);
  setenv("CUSTOS_CERT", "", 1);  // empty: not set
  setenv("CUSTOS_KEY", "env-key.pem", 1);
  setenv("CUSTOS_CA", "env-ca.pem", 1);
  EXPECT_TRUE(ApplyEnvironment(&c));
  unsetenv("CUSTOS_SERVER");
  unsetenv("CUSTOS_CERT");
  unsetenv("CUSTOS_KEY");
  unsetenv("CUSTOS_CA");
  EXPECT_EQ(c.server, "env:2");
  EXPECT_EQ(c.cert, "file-cert.pem");
  EXPECT_EQ(c.key, "env-key.pem");
  EXPECT_EQ(c.ca, "env-ca.pem");
  EXPECT_EQ(c.server_name, "kept");
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
