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

// A database as schema 1 (issue 3) wrote it.
constexpr const char* kSchema1Database = R"sql(
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
  expires_at INTEGER NOT NULL DEFAULT 0,
  state_changed_at INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (name, version)
);
INSERT INTO keys VALUES('old', 'ec-p256', 'code-signing', 1, 1700000000);
INSERT INTO key_versions VALUES('old', 1, 'active', 1700000000, 'custos:old@1', x'0102', x'3000',
  1900000000, 1700000001);
PRAGMA user_version=1;
)sql";

PendingRecord SamplePending(const std::string& id) {
  PendingRecord r;
  r.id = id;
  r.requester = "spiffe://test/builder";
  r.operation = "sign";
  r.key = "release@1";
  r.canonical = std::string("custos-request-v1\nid: ") + id + "\n";
  r.digest = "sha256:00";
  r.summary = "sign release@1";
  r.created_at = 1700000000;
  r.expires_at = 1700086400;
  r.policy_version = 3;
  policy::QuorumRequirement q;
  q.rule = "release\tsigning%";
  q.group = "officers";
  q.threshold = 2;
  q.deny_rejects = false;
  q.expiry = std::chrono::seconds(600);
  r.requirements = {q, q};
  r.requirements[1].rule = "second";
  r.request = std::string("\x00\x01op", 4);
  r.idempotency_key = "idem-1";
  r.op_sha256 = "abc";
  return r;
}

TEST_F(KeyStoreTest, UpgradesASchema1DatabaseToQuorumTables) {
  const std::string path = dir_ + "/custos.db";
  RawSql(path, kSchema1Database);
  auto store = KeyStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.error();
  auto keys = (*store)->LoadAll();
  ASSERT_TRUE(keys.ok()) << keys.error();
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].versions[0].expires_at, 1900000000);
  EXPECT_EQ((*keys)[0].versions[0].state_changed_at, 1700000001);
  auto none = (*store)->ActivePolicy();
  ASSERT_TRUE(none.ok()) << none.error();
  EXPECT_FALSE(none->has_value());
  ASSERT_TRUE((*store)->InsertPending(SamplePending("rq-1")).ok());
  auto got = (*store)->GetPending("rq-1");
  ASSERT_TRUE(got.ok()) << got.error();
  ASSERT_TRUE(got->has_value());
}

TEST_F(KeyStoreTest, PendingRequestsVotesAndPolicies) {
  auto store = KeyStore::Open(dir_ + "/custos.db");
  ASSERT_TRUE(store.ok()) << store.error();
  KeyStore& s = **store;
  // A request and the key it made, together.
  KeyRecord made = Sample("release");
  made.versions[0].state = KeyState::kPreActivation;
  made.active_version = 0;
  StoreChange change;
  change.insert_key = &made;
  auto inserted = s.InsertPending(SamplePending("rq-a"), change);
  ASSERT_TRUE(inserted.ok()) << inserted.error();
  EXPECT_EQ(*inserted, KeyStore::InsertResult::kInserted);
  // The key name is taken: nothing of the second request is written.
  auto again = s.InsertPending(SamplePending("rq-b"), change);
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_EQ(*again, KeyStore::InsertResult::kAlreadyExists);
  EXPECT_FALSE(s.GetPending("rq-b")->has_value());

  auto got = s.GetPending("rq-a");
  ASSERT_TRUE(got.ok() && got->has_value());
  const PendingRecord& r = **got;
  EXPECT_EQ(r.requirements, SamplePending("rq-a").requirements);
  EXPECT_EQ(r.request, std::string("\x00\x01op", 4));
  EXPECT_EQ(r.state, "pending");
  EXPECT_FALSE(r.audit_done);

  auto found = s.FindByIdempotencyKey("spiffe://test/builder", "idem-1", "abc");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->id, "rq-a");
  EXPECT_FALSE(s.FindByIdempotencyKey("spiffe://test/other", "idem-1", "abc")->has_value());
  EXPECT_FALSE(s.FindByIdempotencyKey("spiffe://test/builder", "idem-1", "abd")->has_value());

  VoteRecord v;
  v.request_id = "rq-a";
  v.officer = "alice";
  v.decision = "approve";
  v.statement = "statement";
  v.signature = std::string("\x00sig", 4);
  v.time = "2026-01-01T00:00:00Z";
  EXPECT_EQ(s.InsertVote(v).value(), KeyStore::InsertResult::kInserted);
  EXPECT_EQ(s.InsertVote(v).value(), KeyStore::InsertResult::kAlreadyExists);
  v.officer = "bob";
  v.decision = "deny";
  EXPECT_EQ(s.InsertVote(v).value(), KeyStore::InsertResult::kInserted);
  auto votes = s.Votes("rq-a");
  ASSERT_TRUE(votes.ok()) << votes.error();
  ASSERT_EQ(votes->size(), 2u);
  EXPECT_EQ((*votes)[0].officer, "alice");
  EXPECT_EQ((*votes)[0].signature, std::string("\x00sig", 4));

  // Conditional state change with the key change in the same transaction.
  made.versions[0].state = KeyState::kActive;
  made.active_version = 1;
  StoreChange activate;
  activate.update_key = &made;
  const std::string result = "result-bytes";
  PendingUpdate wrong{"rq-a", {"approved"}, "executed", "", &result, false};
  EXPECT_FALSE(s.UpdatePending(wrong, activate).value());
  EXPECT_EQ(s.LoadAll().value()[0].versions[0].state, KeyState::kPreActivation);
  PendingUpdate right{"rq-a", {"pending", "approved"}, "executed", "", &result, true};
  EXPECT_TRUE(s.UpdatePending(right, activate).value());
  EXPECT_EQ(s.LoadAll().value()[0].versions[0].state, KeyState::kActive);
  auto after = s.GetPending("rq-a");
  EXPECT_EQ((*after)->state, "executed");
  EXPECT_EQ((*after)->result, "result-bytes");
  EXPECT_TRUE((*after)->audit_done);

  ASSERT_TRUE(s.InsertPending(SamplePending("rq-c")).ok());
  auto pending = s.ListPending({"pending"});
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].id, "rq-c");
  EXPECT_EQ(s.ListPending()->size(), 2u);

  PolicyRecord p1;
  p1.version = 1;
  p1.text = "version: 1";
  p1.sha256 = "aa";
  p1.request_id = "bootstrap";
  ASSERT_TRUE(s.ActivatePolicy(p1).ok());
  PolicyRecord p2 = p1;
  p2.version = 2;
  p2.request_id = "rq-a";
  p2.approved_by = {"alice", "carol"};
  ASSERT_TRUE(s.ActivatePolicy(p2).ok());
  auto active = s.ActivePolicy();
  ASSERT_TRUE(active.ok() && active->has_value());
  EXPECT_EQ((*active)->version, 2u);
  EXPECT_EQ((*active)->approved_by, (std::vector<std::string>{"alice", "carol"}));
}

}  // namespace
}  // namespace custos::service
