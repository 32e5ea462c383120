#include "custos/service/key_store.h"

#include <sqlite3.h>

#include <iterator>
#include <map>
#include <mutex>

namespace custos::service {

std::string_view KeyStateName(KeyState state) {
  switch (state) {
    case KeyState::kPreActivation:
      return "pre-activation";
    case KeyState::kActive:
      return "active";
    case KeyState::kDeactivated:
      return "deactivated";
    case KeyState::kCompromised:
      return "compromised";
    case KeyState::kDestroyed:
      return "destroyed";
  }
  return "destroyed";
}

std::optional<KeyState> ParseKeyState(std::string_view name) {
  for (auto s : {KeyState::kPreActivation, KeyState::kActive, KeyState::kDeactivated,
                 KeyState::kCompromised, KeyState::kDestroyed}) {
    if (KeyStateName(s) == name) return s;
  }
  return std::nullopt;
}

namespace {

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// Resets a prepared statement and its bindings when the scope ends, so every
// exit path leaves it ready for the next use.
class StmtUse {
 public:
  explicit StmtUse(sqlite3_stmt* s) : s_(s) {}
  ~StmtUse() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  StmtUse(const StmtUse&) = delete;
  StmtUse& operator=(const StmtUse&) = delete;
  sqlite3_stmt* get() const { return s_; }

 private:
  sqlite3_stmt* s_;
};

// Schema 0, as issue 2 created it; later versions are reached by kMigrations.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS keys (
  name TEXT PRIMARY KEY NOT NULL,
  key_type TEXT NOT NULL,
  usage TEXT NOT NULL,
  active_version INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS key_versions (
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
)sql";

// kMigrations[i] upgrades schema i to i + 1. Each runs in one transaction
// together with the user_version bump, so a crash leaves the old schema.
constexpr const char* kMigrations[] = {
    // 0 -> 1: crypto-period and state-change time per version.
    "ALTER TABLE key_versions ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE key_versions ADD COLUMN state_changed_at INTEGER NOT NULL DEFAULT 0;",
};
static_assert(std::size(kMigrations) == KeyStore::kSchemaVersion);

std::string DbError(sqlite3* db, std::string_view what) {
  return "state store: " + std::string(what) + ": " + sqlite3_errmsg(db);
}

void BindText(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
void BindBlob(sqlite3_stmt* s, int i, const std::vector<std::uint8_t>& v) {
  // A zero-length blob must still bind as a blob, not NULL.
  static const std::uint8_t kEmpty = 0;
  sqlite3_bind_blob(s, i, v.empty() ? &kEmpty : v.data(), static_cast<int>(v.size()),
                    SQLITE_TRANSIENT);
}
std::string ColumnText(sqlite3_stmt* s, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, i))) : std::string();
}
std::vector<std::uint8_t> ColumnBlob(sqlite3_stmt* s, int i) {
  const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(s, i));
  const int n = sqlite3_column_bytes(s, i);
  return p ? std::vector<std::uint8_t>(p, p + n) : std::vector<std::uint8_t>();
}

// Runs `sql` (no rows wanted); the error names `what`.
Result<void> Exec(sqlite3* db, const std::string& sql, std::string_view what) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = std::string(what) + ": " + (err ? err : sqlite3_errmsg(db));
    sqlite3_free(err);
    return Error{msg};
  }
  return {};
}

Result<int> UserVersion(sqlite3* db) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &raw, nullptr) != SQLITE_OK) {
    return Error{DbError(db, "read schema version")};
  }
  Stmt s(raw);
  if (sqlite3_step(raw) != SQLITE_ROW) return Error{DbError(db, "read schema version")};
  return static_cast<int>(sqlite3_column_int64(raw, 0));
}

// Brings the schema from whatever version it has to kSchemaVersion.
Result<void> Migrate(sqlite3* db, const std::string& path) {
  auto current = UserVersion(db);
  if (!current) return Error{current.error()};
  if (*current > KeyStore::kSchemaVersion) {
    return Error{"state store " + path + " has schema version " + std::to_string(*current) +
                 "; this custosd knows up to " + std::to_string(KeyStore::kSchemaVersion) +
                 ": run a newer custosd"};
  }
  for (int v = *current; v < KeyStore::kSchemaVersion; ++v) {
    const std::string step = "BEGIN IMMEDIATE;" + std::string(kMigrations[v]) +
                             "PRAGMA user_version=" + std::to_string(v + 1) + ";COMMIT;";
    if (auto r = Exec(db, step,
                      "cannot upgrade state store " + path + " from schema " + std::to_string(v) +
                          " to " + std::to_string(v + 1));
        !r) {
      (void)Exec(db, "ROLLBACK", "rollback");
      return r;
    }
  }
  return {};
}

}  // namespace

struct KeyStore::Impl {
  std::mutex mu;
  Db db;
  Stmt begin, commit, rollback, insert_key, insert_version, select_keys, select_versions,
      update_active, upsert_version;

  Result<Stmt> Prepare(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db.get(), sql, -1, &s, nullptr) != SQLITE_OK) {
      return Error{DbError(db.get(), "prepare")};
    }
    return Stmt(s);
  }

  // Runs a statement that returns no rows.
  Result<void> Step(sqlite3_stmt* s, std::string_view what) {
    StmtUse use(s);
    const int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) return Error{DbError(db.get(), what)};
    return {};
  }
};

KeyStore::KeyStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KeyStore::~KeyStore() = default;

Result<std::unique_ptr<KeyStore>> KeyStore::Open(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &raw,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW,
      nullptr);
  impl->db.reset(raw);
  if (rc != SQLITE_OK) {
    return Error{"cannot open state store " + path + ": " +
                 (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc))};
  }
  sqlite3_busy_timeout(raw, 5000);
  sqlite3_extended_result_codes(raw, 1);
  const std::string setup = std::string(
                                "PRAGMA journal_mode=WAL;"
                                "PRAGMA synchronous=FULL;"
                                "PRAGMA foreign_keys=ON;") +
                            kSchema;
  char* err = nullptr;
  if (sqlite3_exec(raw, setup.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = "cannot initialise state store " + path + ": " + (err ? err : "?");
    sqlite3_free(err);
    return Error{msg};
  }
  if (auto migrated = Migrate(raw, path); !migrated) return Error{migrated.error()};
  struct {
    Stmt* out;
    const char* sql;
  } statements[] = {
      {&impl->begin, "BEGIN IMMEDIATE"},
      {&impl->commit, "COMMIT"},
      {&impl->rollback, "ROLLBACK"},
      {&impl->insert_key,
       "INSERT INTO keys(name, key_type, usage, active_version, created_at) "
       "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(name) DO NOTHING"},
      {&impl->insert_version,
       "INSERT INTO key_versions(name, version, state, created_at, token_label, token_id, "
       "spki_der, expires_at, state_changed_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
      {&impl->update_active, "UPDATE keys SET active_version = ?2 WHERE name = ?1"},
      {&impl->upsert_version,
       "INSERT INTO key_versions(name, version, state, created_at, token_label, token_id, "
       "spki_der, expires_at, state_changed_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
       "ON CONFLICT(name, version) DO UPDATE SET state = excluded.state, "
       "expires_at = excluded.expires_at, state_changed_at = excluded.state_changed_at"},
      {&impl->select_keys,
       "SELECT name, key_type, usage, active_version, created_at FROM keys ORDER BY name"},
      {&impl->select_versions,
       "SELECT name, version, state, created_at, token_label, token_id, spki_der, "
       "expires_at, state_changed_at FROM key_versions ORDER BY name, version"},
  };
  for (auto& s : statements) {
    auto prepared = impl->Prepare(s.sql);
    if (!prepared) return Error{prepared.error()};
    *s.out = std::move(prepared.value());
  }
  return std::unique_ptr<KeyStore>(new KeyStore(std::move(impl)));
}

Result<KeyStore::InsertResult> KeyStore::InsertKey(const KeyRecord& key) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  if (auto r = d.Step(d.begin.get(), "begin transaction"); !r) return Error{r.error()};
  // Any failure below rolls back; the rollback's own failure leaves nothing
  // committed either, so its result is not needed.
  auto fail = [&](std::string message) -> Result<InsertResult> {
    (void)d.Step(d.rollback.get(), "rollback");
    return Error{std::move(message)};
  };
  {
    StmtUse use(d.insert_key.get());
    sqlite3_stmt* s = use.get();
    BindText(s, 1, key.name);
    BindText(s, 2, key.key_type);
    BindText(s, 3, key.usage);
    sqlite3_bind_int64(s, 4, key.active_version);
    sqlite3_bind_int64(s, 5, key.created_at);
    if (sqlite3_step(s) != SQLITE_DONE) return fail(DbError(d.db.get(), "insert key"));
  }
  if (sqlite3_changes(d.db.get()) == 0) {
    (void)d.Step(d.rollback.get(), "rollback");
    return InsertResult::kAlreadyExists;
  }
  for (const auto& v : key.versions) {
    StmtUse use(d.insert_version.get());
    sqlite3_stmt* s = use.get();
    BindText(s, 1, key.name);
    sqlite3_bind_int64(s, 2, v.version);
    BindText(s, 3, std::string(KeyStateName(v.state)));
    sqlite3_bind_int64(s, 4, v.created_at);
    BindText(s, 5, v.token_label);
    BindBlob(s, 6, v.token_id);
    BindBlob(s, 7, v.spki_der);
    sqlite3_bind_int64(s, 8, v.expires_at);
    sqlite3_bind_int64(s, 9, v.state_changed_at);
    if (sqlite3_step(s) != SQLITE_DONE) return fail(DbError(d.db.get(), "insert key version"));
  }
  if (auto r = d.Step(d.commit.get(), "commit"); !r) return fail(r.error());
  return InsertResult::kInserted;
}

Result<void> KeyStore::UpdateKey(const KeyRecord& key) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  if (auto r = d.Step(d.begin.get(), "begin transaction"); !r) return r;
  auto fail = [&](std::string message) -> Result<void> {
    (void)d.Step(d.rollback.get(), "rollback");
    return Error{std::move(message)};
  };
  {
    StmtUse use(d.update_active.get());
    sqlite3_stmt* s = use.get();
    BindText(s, 1, key.name);
    sqlite3_bind_int64(s, 2, key.active_version);
    if (sqlite3_step(s) != SQLITE_DONE) return fail(DbError(d.db.get(), "update key"));
  }
  if (sqlite3_changes(d.db.get()) == 0) {
    return fail("state store: no key named " + key.name + " to update");
  }
  for (const auto& v : key.versions) {
    StmtUse use(d.upsert_version.get());
    sqlite3_stmt* s = use.get();
    BindText(s, 1, key.name);
    sqlite3_bind_int64(s, 2, v.version);
    BindText(s, 3, std::string(KeyStateName(v.state)));
    sqlite3_bind_int64(s, 4, v.created_at);
    BindText(s, 5, v.token_label);
    BindBlob(s, 6, v.token_id);
    BindBlob(s, 7, v.spki_der);
    sqlite3_bind_int64(s, 8, v.expires_at);
    sqlite3_bind_int64(s, 9, v.state_changed_at);
    if (sqlite3_step(s) != SQLITE_DONE) return fail(DbError(d.db.get(), "update key version"));
  }
  if (auto r = d.Step(d.commit.get(), "commit"); !r) return fail(r.error());
  return {};
}

Result<std::vector<KeyRecord>> KeyStore::LoadAll() {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  std::vector<KeyRecord> keys;
  std::map<std::string, std::size_t> index;
  {
    StmtUse use(d.select_keys.get());
    sqlite3_stmt* s = use.get();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      KeyRecord k;
      k.name = ColumnText(s, 0);
      k.key_type = ColumnText(s, 1);
      k.usage = ColumnText(s, 2);
      k.active_version = static_cast<std::uint32_t>(sqlite3_column_int64(s, 3));
      k.created_at = sqlite3_column_int64(s, 4);
      index[k.name] = keys.size();
      keys.push_back(std::move(k));
    }
    if (rc != SQLITE_DONE) return Error{DbError(d.db.get(), "read keys")};
  }
  {
    StmtUse use(d.select_versions.get());
    sqlite3_stmt* s = use.get();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      const std::string name = ColumnText(s, 0);
      auto it = index.find(name);
      if (it == index.end()) continue;  // foreign keys make this unreachable
      KeyVersionRecord v;
      v.version = static_cast<std::uint32_t>(sqlite3_column_int64(s, 1));
      const std::string state = ColumnText(s, 2);
      auto parsed = ParseKeyState(state);
      if (!parsed) {
        return Error{"state store: key " + name + " version " + std::to_string(v.version) +
                     " has unknown state \"" + state + "\""};
      }
      v.state = *parsed;
      v.created_at = sqlite3_column_int64(s, 3);
      v.token_label = ColumnText(s, 4);
      v.token_id = ColumnBlob(s, 5);
      v.spki_der = ColumnBlob(s, 6);
      v.expires_at = sqlite3_column_int64(s, 7);
      v.state_changed_at = sqlite3_column_int64(s, 8);
      keys[it->second].versions.push_back(std::move(v));
    }
    if (rc != SQLITE_DONE) return Error{DbError(d.db.get(), "read key versions")};
  }
  return keys;
}

}  // namespace custos::service
