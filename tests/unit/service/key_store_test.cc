#include "custos/service/key_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace custos::service {
namespace {

class KeyStoreTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/custos-store-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static KeyRecord Sample(const std::string& name) {
    KeyRecord k;
    k.name = name;
    k.key_type = "ec-p256";
    k.usage = "code-signing";
    k.active_version = 1;
    k.created_at = 1700000000;
    KeyVersionRecord v;
    v.version = 1;
    v.state = KeyState::kActive;
    v.created_at = 1700000000;
    v.token_label = "custos:" + name + "@1";
    v.token_id = {0x01, 0x02, 0x00, 0xff};
    v.spki_der = {0x30, 0x03, 0x02, 0x01, 0x00};
    k.versions.push_back(v);
    return k;
  }

  std::string dir_;
};

TEST_F(KeyStoreTest, InsertLoadAndRefuseDuplicates) {
  const std::string path = dir_ + "/custos.db";
  {
    auto store = KeyStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.error();
    auto first = (*store)->InsertKey(Sample("beta"));
    ASSERT_TRUE(first.ok()) << first.error();
    EXPECT_EQ(*first, KeyStore::InsertResult::kInserted);
    ASSERT_TRUE((*store)->InsertKey(Sample("alpha")).ok());
    auto again = (*store)->InsertKey(Sample("beta"));
    ASSERT_TRUE(again.ok()) << again.error();
    EXPECT_EQ(*again, KeyStore::InsertResult::kAlreadyExists);
  }
  auto reopened = KeyStore::Open(path);
  ASSERT_TRUE(reopened.ok()) << reopened.error();
  auto keys = (*reopened)->LoadAll();
  ASSERT_TRUE(keys.ok()) << keys.error();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].name, "alpha");
  const KeyRecord& beta = (*keys)[1];
  EXPECT_EQ(beta.name, "beta");
  EXPECT_EQ(beta.key_type, "ec-p256");
  EXPECT_EQ(beta.usage, "code-signing");
  ASSERT_EQ(beta.versions.size(), 1u);
  EXPECT_EQ(beta.versions[0].state, KeyState::kActive);
  EXPECT_EQ(beta.versions[0].token_label, "custos:beta@1");
  EXPECT_EQ(beta.versions[0].token_id, (std::vector<std::uint8_t>{0x01, 0x02, 0x00, 0xff}));
  EXPECT_EQ(beta.versions[0].spki_der, Sample("beta").versions[0].spki_der);
}

TEST_F(KeyStoreTest, UsesWalMode) {
  auto store = KeyStore::Open(dir_ + "/custos.db");
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->InsertKey(Sample("k")).ok());
  struct stat st {};
  EXPECT_EQ(stat((dir_ + "/custos.db-wal").c_str(), &st), 0) << "no WAL file";
}

TEST_F(KeyStoreTest, UnopenablePathIsAnError) {
  auto store = KeyStore::Open(dir_ + "/missing-dir/custos.db");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().find("missing-dir"), std::string::npos) << store.error();
}

TEST(KeyStateTest, NamesRoundTrip) {
  for (auto s : {KeyState::kPreActivation, KeyState::kActive, KeyState::kDeactivated,
                 KeyState::kCompromised, KeyState::kDestroyed}) {
    EXPECT_EQ(ParseKeyState(KeyStateName(s)), s);
  }
  EXPECT_EQ(KeyStateName(KeyState::kPreActivation), "pre-activation");
  EXPECT_FALSE(ParseKeyState("Active").has_value());
}

}  // namespace
}  // namespace custos::service
