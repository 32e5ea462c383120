#include "custos/service/key_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
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

// Runs SQL on a database file directly, as an older custosd would have.
void RawSql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

// The schema and rows exactly as the issue-2 custosd (schema 0, no
// user_version) wrote them.
constexpr const char* kIssue2Database = R"sql(
CREATE TABLE keys (
  name TEXT PRIMARY KEY NOT NULL,
  key_type TEXT NOT NULL,
  usage TEXT NOT NULL,
  active_version INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE key_versions (
  name TEXT NOT NULL REFERENCES keys(name),
  version INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN
    ('pre-activation', 'active', 'deactivated', 'compromised', 'destroyed')),
  created_at INTEGER NOT NULL,
  token_label TEXT NOT NULL,
  token_id BLOB NOT NULL,
  spki_der BLOB NOT NULL,
  PRIMARY KEY (name, version)
);
INSERT INTO keys VALUES('old', 'ec-p256', 'code-signing', 1, 1700000000);
INSERT INTO key_versions VALUES('old', 1, 'active', 1700000000, 'custos:old@1', x'0102', x'3000');
)sql";

TEST_F(KeyStoreTest, UpgradesAnIssue2DatabaseInPlace) {
  const std::string path = dir_ + "/custos.db";
  RawSql(path, kIssue2Database);
  {
    auto store = KeyStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.error();
    auto keys = (*store)->LoadAll();
    ASSERT_TRUE(keys.ok()) << keys.error();
    ASSERT_EQ(keys->size(), 1u);
    const KeyVersionRecord& v = (*keys)[0].versions.at(0);
    EXPECT_EQ(v.token_label, "custos:old@1");
    EXPECT_EQ(v.state, KeyState::kActive);
    EXPECT_EQ(v.expires_at, 0);        // no expiry
    EXPECT_EQ(v.state_changed_at, 0);  // unknown
    // The upgraded store takes lifecycle changes.
    KeyRecord k = (*keys)[0];
    k.versions[0].state = KeyState::kDeactivated;
    k.versions[0].state_changed_at = 1800000000;
    k.active_version = 0;
    ASSERT_TRUE((*store)->UpdateKey(k).ok());
  }
  // Opening again is a no-op at the current version.
  auto again = KeyStore::Open(path);
  ASSERT_TRUE(again.ok()) << again.error();
  auto keys = (*again)->LoadAll();
  ASSERT_TRUE(keys.ok()) << keys.error();
  EXPECT_EQ((*keys)[0].versions[0].state, KeyState::kDeactivated);
  EXPECT_EQ((*keys)[0].versions[0].state_changed_at, 1800000000);
  EXPECT_EQ((*keys)[0].active_version, 0u);
}

TEST_F(KeyStoreTest, RefusesASchemaNewerThanItKnows) {
  const std::string path = dir_ + "/custos.db";
  { ASSERT_TRUE(KeyStore::Open(path).ok()); }
  RawSql(path, "PRAGMA user_version=" + std::to_string(KeyStore::kSchemaVersion + 1));
  auto store = KeyStore::Open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().find("run a newer custosd"), std::string::npos) << store.error();
}

TEST_F(KeyStoreTest, UpdateKeyAddsVersionsAndChangesStates) {
  const std::string path = dir_ + "/custos.db";
  auto store = KeyStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.error();
  KeyRecord k = Sample("rotating");
  k.versions[0].expires_at = 1800000000;
  ASSERT_TRUE((*store)->InsertKey(k).ok());
  k.versions[0].state = KeyState::kDeactivated;
  KeyVersionRecord v2 = k.versions[0];
  v2.version = 2;
  v2.state = KeyState::kActive;
  v2.token_label = "custos:rotating@2";
  v2.expires_at = 0;
  k.versions.push_back(v2);
  k.active_version = 2;
  ASSERT_TRUE((*store)->UpdateKey(k).ok());
  auto keys = (*store)->LoadAll();
  ASSERT_TRUE(keys.ok()) << keys.error();
  ASSERT_EQ((*keys)[0].versions.size(), 2u);
  EXPECT_EQ((*keys)[0].active_version, 2u);
  EXPECT_EQ((*keys)[0].versions[0].state, KeyState::kDeactivated);
  EXPECT_EQ((*keys)[0].versions[0].expires_at, 1800000000);
  EXPECT_EQ((*keys)[0].versions[1].token_label, "custos:rotating@2");

  KeyRecord missing = Sample("nobody");
  auto r = (*store)->UpdateKey(missing);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("no key named nobody"), std::string::npos) << r.error();
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
