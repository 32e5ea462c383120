#include "custos/service/key_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>

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
    ("ALTER TABLE key_versions ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE key_versions ADD COLUMN state_changed_at INTEGER NOT NULL DEFAULT 0;"),
    // 1 -> 2: quorum (pending requests and votes) and versioned policies.
    R"sql(
CREATE TABLE pending_requests (
  id TEXT PRIMARY KEY NOT NULL,
  requester TEXT NOT NULL,
  operation TEXT NOT NULL,
  key TEXT NOT NULL,
  canonical BLOB NOT NULL,
  digest TEXT NOT NULL,
  payload BLOB NOT NULL,
  summary TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'executing', 'executed',
    'denied', 'expired', 'invalidated', 'failed')),
  state_reason TEXT NOT NULL,
  policy_version INTEGER NOT NULL,
  requirements BLOB NOT NULL,
  request BLOB NOT NULL,
  idempotency_key TEXT NOT NULL,
  op_sha256 TEXT NOT NULL,
  result BLOB NOT NULL,
  audit_done INTEGER NOT NULL
);
CREATE INDEX pending_requests_state ON pending_requests(state);
CREATE INDEX pending_requests_idempotency ON pending_requests(requester, idempotency_key);
CREATE TABLE votes (
  request_id TEXT NOT NULL REFERENCES pending_requests(id),
  officer TEXT NOT NULL,
  decision TEXT NOT NULL CHECK (decision IN ('approve', 'deny')),
  statement BLOB NOT NULL,
  signature BLOB NOT NULL,
  reason TEXT NOT NULL,
  time TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  submitted_by TEXT NOT NULL,
  PRIMARY KEY (request_id, officer)
);
CREATE TABLE policies (
  version INTEGER PRIMARY KEY NOT NULL,
  text BLOB NOT NULL,
  sha256 TEXT NOT NULL,
  activated_at INTEGER NOT NULL,
  request_id TEXT NOT NULL,
  proposed_by TEXT NOT NULL,
  approved_by TEXT NOT NULL,
  active INTEGER NOT NULL
);
)sql",
    // 2 -> 3: the CA back-end (issue 5).
    R"sql(
CREATE TABLE cas (
  name TEXT PRIMARY KEY NOT NULL,
  key TEXT NOT NULL,
  key_version INTEGER NOT NULL,
  parent TEXT NOT NULL,
  subject TEXT NOT NULL,
  cert_der BLOB NOT NULL,
  chain BLOB NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('active', 'pending-certificate', 'revoked')),
  created_at INTEGER NOT NULL
);
CREATE TABLE certificates (
  ca TEXT NOT NULL,
  serial TEXT NOT NULL,
  profile TEXT NOT NULL,
  subject TEXT NOT NULL,
  sans TEXT NOT NULL,
  requester TEXT NOT NULL,
  not_before INTEGER NOT NULL,
  not_after INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('valid', 'revoked')),
  reason TEXT NOT NULL,
  revoked_at INTEGER NOT NULL,
  der BLOB NOT NULL,
  renews TEXT NOT NULL,
  renewed_by TEXT NOT NULL,
  issued_at INTEGER NOT NULL,
  PRIMARY KEY (ca, serial)
);
CREATE INDEX certificates_requester ON certificates(requester);
CREATE INDEX certificates_not_after ON certificates(not_after);
CREATE INDEX certificates_serial ON certificates(serial);
CREATE TABLE crls (
  ca TEXT PRIMARY KEY NOT NULL,
  number INTEGER NOT NULL,
  der BLOB NOT NULL,
  this_update INTEGER NOT NULL,
  next_update INTEGER NOT NULL
);
)sql",
    // 3 -> 4: code signing (issue 6): SSH certificates signed by ssh-ca keys,
    // and certificates attached to signing keys for CMS.
    R"sql(
CREATE TABLE ssh_certificates (
  ca_key TEXT NOT NULL,
  serial INTEGER NOT NULL,
  key_id TEXT NOT NULL,
  cert_type TEXT NOT NULL CHECK (cert_type IN ('user', 'host')),
  principals TEXT NOT NULL,
  valid_after INTEGER NOT NULL,
  valid_before INTEGER NOT NULL,
  requester TEXT NOT NULL,
  profile TEXT NOT NULL,
  subject_fingerprint TEXT NOT NULL,
  certificate TEXT NOT NULL,
  issued_at INTEGER NOT NULL,
  PRIMARY KEY (ca_key, serial)
);
CREATE INDEX ssh_certificates_requester ON ssh_certificates(requester);
CREATE TABLE key_certificates (
  key TEXT NOT NULL,
  version INTEGER NOT NULL,
  cert_der BLOB NOT NULL,
  chain BLOB NOT NULL,
  source TEXT NOT NULL CHECK (source IN ('custos', 'imported')),
  attached_at INTEGER NOT NULL,
  PRIMARY KEY (key, version)
);
)sql",
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
void BindBytes(sqlite3_stmt* s, int i, const std::string& v) {
  static const char kEmpty = 0;
  sqlite3_bind_blob(s, i, v.empty() ? &kEmpty : v.data(), static_cast<int>(v.size()),
                    SQLITE_TRANSIENT);
}
std::string ColumnBytes(sqlite3_stmt* s, int i) {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(s, i));
  const int n = sqlite3_column_bytes(s, i);
  return p ? std::string(p, static_cast<std::size_t>(n)) : std::string();
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

  // The rows of InsertKey / UpdateKey, inside the caller's transaction.
  Result<InsertResult> InsertKeyRows(const KeyRecord& key);
  Result<void> UpdateKeyRows(const KeyRecord& key);
  Result<InsertResult> ApplyChange(const StoreChange& change);
  // CA back-end rows, inside the caller's transaction.
  Result<void> PutCaRow(const CaRecord& ca, bool replace_only);
  Result<InsertResult> InsertCertificateRow(const CertificateRecord& cert);
  Result<bool> RevokeRow(const CertificateRevocation& r);
  // Runs `body` in one transaction; rolls back when it fails or returns a
  // value `keep` rejects.
  template <typename T, typename Body, typename Keep>
  Result<T> Transaction(Body body, Keep keep) {
    std::lock_guard<std::mutex> lock(mu);
    if (auto r = Step(begin.get(), "begin transaction"); !r) return Error{r.error()};
    Result<T> out = body();
    if (!out || !keep(*out)) {
      (void)Step(rollback.get(), "rollback");
      return out;
    }
    if (auto r = Step(commit.get(), "commit"); !r) {
      (void)Step(rollback.get(), "rollback");
      return Error{r.error()};
    }
    return out;
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

Result<KeyStore::InsertResult> KeyStore::Impl::InsertKeyRows(const KeyRecord& key) {
  {
    StmtUse use(insert_key.get());
    sqlite3_stmt* s = use.get();
    BindText(s, 1, key.name);
    BindText(s, 2, key.key_type);
    BindText(s, 3, key.usage);
    sqlite3_bind_int64(s, 4, key.active_version);
    sqlite3_bind_int64(s, 5, key.created_at);
    if (sqlite3_step(s) != SQLITE_DONE) return Error{DbError(db.get(), "insert key")};
  }
  if (sqlite3_changes(db.get()) == 0) return InsertResult::kAlreadyExists;
  for (const auto& v : key.versions) {
    StmtUse use(insert_version.get());
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
    if (sqlite3_step(s) != SQLITE_DONE) return Error{DbError(db.get(), "insert key version")};
  }
  return InsertResult::kInserted;
}

Result<void> KeyStore::Impl::UpdateKeyRows(const KeyRecord& key) {
  {
    StmtUse use(update_active.get());
    sqlite3_stmt* s = use.get();
    BindText(s, 1, key.name);
    sqlite3_bind_int64(s, 2, key.active_version);
    if (sqlite3_step(s) != SQLITE_DONE) return Error{DbError(db.get(), "update key")};
  }
  if (sqlite3_changes(db.get()) == 0) {
    return Error{"state store: no key named " + key.name + " to update"};
  }
  for (const auto& v : key.versions) {
    StmtUse use(upsert_version.get());
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
    if (sqlite3_step(s) != SQLITE_DONE) return Error{DbError(db.get(), "update key version")};
  }
  return {};
}

Result<KeyStore::InsertResult> KeyStore::InsertKey(const KeyRecord& key) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  if (auto r = d.Step(d.begin.get(), "begin transaction"); !r) return Error{r.error()};
  // Any failure below rolls back; the rollback's own failure leaves nothing
  // committed either, so its result is not needed.
  auto inserted = d.InsertKeyRows(key);
  if (!inserted || *inserted != InsertResult::kInserted) {
    (void)d.Step(d.rollback.get(), "rollback");
    return inserted;
  }
  if (auto r = d.Step(d.commit.get(), "commit"); !r) {
    (void)d.Step(d.rollback.get(), "rollback");
    return Error{r.error()};
  }
  return InsertResult::kInserted;
}

Result<void> KeyStore::UpdateKey(const KeyRecord& key) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  if (auto r = d.Step(d.begin.get(), "begin transaction"); !r) return r;
  auto updated = d.UpdateKeyRows(key);
  if (updated) updated = d.Step(d.commit.get(), "commit");
  if (!updated) (void)d.Step(d.rollback.get(), "rollback");
  return updated;
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

// --- Quorum tables (schema 2). Rare operations: statements are prepared per
// call.

namespace {

// Requirements as text: one line per requirement,
//   rule \t group \t threshold \t deny_rejects(0|1) \t expiry seconds
// with %, tab, newline and other control bytes of names written as %XX.
std::string EscapeField(std::string_view v) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : v) {
    if (c < 0x20 || c == 0x7f || c == '%') {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

std::optional<std::string> UnescapeField(std::string_view v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '%') {
      out.push_back(v[i]);
      continue;
    }
    if (i + 2 >= v.size()) return std::nullopt;
    unsigned value = 0;
    auto [p, ec] = std::from_chars(v.data() + i + 1, v.data() + i + 3, value, 16);
    if (ec != std::errc() || p != v.data() + i + 3) return std::nullopt;
    out.push_back(static_cast<char>(value));
    i += 2;
  }
  return out;
}

std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    const auto at = text.find(sep, start);
    if (at == std::string_view::npos) {
      out.push_back(text.substr(start));
      return out;
    }
    out.push_back(text.substr(start, at - start));
    start = at + 1;
  }
}

template <typename T>
bool ParseNumber(std::string_view text, T* out) {
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && p == text.data() + text.size();
}

std::string EncodeRequirements(const std::vector<policy::QuorumRequirement>& reqs) {
  std::string out;
  for (const auto& r : reqs) {
    out += EscapeField(r.rule) + "\t" + EscapeField(r.group) + "\t" + std::to_string(r.threshold) +
           "\t" + (r.deny_rejects ? "1" : "0") + "\t" + std::to_string(r.expiry.count()) + "\n";
  }
  return out;
}

std::optional<std::vector<policy::QuorumRequirement>> DecodeRequirements(std::string_view text) {
  std::vector<policy::QuorumRequirement> out;
  if (text.empty()) return out;
  if (text.back() != '\n') return std::nullopt;
  text.remove_suffix(1);
  for (auto line : Split(text, '\n')) {
    auto parts = Split(line, '\t');
    if (parts.size() != 5) return std::nullopt;
    policy::QuorumRequirement r;
    auto rule = UnescapeField(parts[0]);
    auto group = UnescapeField(parts[1]);
    std::int64_t expiry = 0;
    if (!rule || !group || !ParseNumber(parts[2], &r.threshold) ||
        (parts[3] != "0" && parts[3] != "1") || !ParseNumber(parts[4], &expiry)) {
      return std::nullopt;
    }
    r.rule = std::move(*rule);
    r.group = std::move(*group);
    r.deny_rejects = parts[3] == "1";
    r.expiry = std::chrono::seconds(expiry);
    out.push_back(std::move(r));
  }
  return out;
}

constexpr const char* kPendingColumns =
    "id, requester, operation, key, canonical, digest, payload, summary, created_at, "
    "expires_at, state, state_reason, policy_version, requirements, request, idempotency_key, "
    "op_sha256, result, audit_done";

Result<PendingRecord> ReadPending(sqlite3_stmt* s) {
  PendingRecord r;
  r.id = ColumnText(s, 0);
  r.requester = ColumnText(s, 1);
  r.operation = ColumnText(s, 2);
  r.key = ColumnText(s, 3);
  r.canonical = ColumnBytes(s, 4);
  r.digest = ColumnText(s, 5);
  r.payload = ColumnBytes(s, 6);
  r.summary = ColumnText(s, 7);
  r.created_at = sqlite3_column_int64(s, 8);
  r.expires_at = sqlite3_column_int64(s, 9);
  r.state = ColumnText(s, 10);
  r.state_reason = ColumnText(s, 11);
  r.policy_version = static_cast<std::uint64_t>(sqlite3_column_int64(s, 12));
  auto reqs = DecodeRequirements(ColumnBytes(s, 13));
  if (!reqs) return Error{"state store: request " + r.id + " has unreadable quorum requirements"};
  r.requirements = std::move(*reqs);
  r.request = ColumnBytes(s, 14);
  r.idempotency_key = ColumnText(s, 15);
  r.op_sha256 = ColumnText(s, 16);
  r.result = ColumnBytes(s, 17);
  r.audit_done = sqlite3_column_int64(s, 18) != 0;
  return r;
}

}  // namespace

Result<KeyStore::InsertResult> KeyStore::Impl::ApplyChange(const StoreChange& change) {
  if (change.insert_key != nullptr) {
    auto r = InsertKeyRows(*change.insert_key);
    if (!r || *r != InsertResult::kInserted) return r;
  }
  if (change.update_key != nullptr) {
    if (auto r = UpdateKeyRows(*change.update_key); !r) return Error{r.error()};
  }
  if (change.put_ca != nullptr) {
    if (auto r = PutCaRow(*change.put_ca, false); !r) return Error{r.error()};
  }
  if (change.insert_certificate != nullptr) {
    auto r = InsertCertificateRow(*change.insert_certificate);
    if (!r) return r;
    if (*r != InsertResult::kInserted) {
      return Error{"state store: CA " + change.insert_certificate->ca + " already has serial " +
                   change.insert_certificate->serial};
    }
  }
  if (change.revoke != nullptr) {
    auto r = RevokeRow(*change.revoke);
    if (!r) return Error{r.error()};
    if (!*r) {
      return Error{"state store: certificate " + change.revoke->serial + " of CA " +
                   change.revoke->ca + " is not valid"};
    }
  }
  if (const PolicyRecord* p = change.activate_policy) {
    if (auto r = Exec(db.get(), "UPDATE policies SET active = 0 WHERE active != 0",
                      "state store: deactivate policy");
        !r) {
      return Error{r.error()};
    }
    auto st = Prepare(
        "INSERT INTO policies(version, text, sha256, activated_at, request_id, proposed_by, "
        "approved_by, active) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, 1) ON CONFLICT(version) DO "
        "UPDATE SET text = excluded.text, sha256 = excluded.sha256, activated_at = "
        "excluded.activated_at, request_id = excluded.request_id, proposed_by = "
        "excluded.proposed_by, approved_by = excluded.approved_by, active = 1");
    if (!st) return Error{st.error()};
    sqlite3_stmt* s = st->get();
    std::string approved;
    for (const auto& a : p->approved_by) approved += (approved.empty() ? "" : "\n") + a;
    sqlite3_bind_int64(s, 1, static_cast<std::int64_t>(p->version));
    BindBytes(s, 2, p->text);
    BindText(s, 3, p->sha256);
    sqlite3_bind_int64(s, 4, p->activated_at);
    BindText(s, 5, p->request_id);
    BindText(s, 6, p->proposed_by);
    BindText(s, 7, approved);
    if (sqlite3_step(s) != SQLITE_DONE) return Error{DbError(db.get(), "activate policy")};
  }
  return InsertResult::kInserted;
}

Result<KeyStore::InsertResult> KeyStore::InsertPending(const PendingRecord& rec,
                                                       const StoreChange& change) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  if (auto r = d.Step(d.begin.get(), "begin transaction"); !r) return Error{r.error()};
  auto fail = [&](Result<InsertResult> r) {
    (void)d.Step(d.rollback.get(), "rollback");
    return r;
  };
  auto applied = d.ApplyChange(change);
  if (!applied || *applied != InsertResult::kInserted) return fail(applied);
  auto st = d.Prepare((std::string("INSERT INTO pending_requests(") + kPendingColumns +
                       ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
                       "?15, ?16, ?17, ?18, ?19)")
                          .c_str());
  if (!st) return fail(Error{st.error()});
  sqlite3_stmt* s = st->get();
  BindText(s, 1, rec.id);
  BindText(s, 2, rec.requester);
  BindText(s, 3, rec.operation);
  BindText(s, 4, rec.key);
  BindBytes(s, 5, rec.canonical);
  BindText(s, 6, rec.digest);
  BindBytes(s, 7, rec.payload);
  BindText(s, 8, rec.summary);
  sqlite3_bind_int64(s, 9, rec.created_at);
  sqlite3_bind_int64(s, 10, rec.expires_at);
  BindText(s, 11, rec.state);
  BindText(s, 12, rec.state_reason);
  sqlite3_bind_int64(s, 13, static_cast<std::int64_t>(rec.policy_version));
  BindBytes(s, 14, EncodeRequirements(rec.requirements));
  BindBytes(s, 15, rec.request);
  BindText(s, 16, rec.idempotency_key);
  BindText(s, 17, rec.op_sha256);
  BindBytes(s, 18, rec.result);
  sqlite3_bind_int(s, 19, rec.audit_done ? 1 : 0);
  if (sqlite3_step(s) != SQLITE_DONE) return fail(Error{DbError(d.db.get(), "insert request")});
  if (auto r = d.Step(d.commit.get(), "commit"); !r) return fail(Error{r.error()});
  return InsertResult::kInserted;
}

Result<bool> KeyStore::UpdatePending(const PendingUpdate& update, const StoreChange& change) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  if (auto r = d.Step(d.begin.get(), "begin transaction"); !r) return Error{r.error()};
  auto fail = [&](Result<bool> r) {
    (void)d.Step(d.rollback.get(), "rollback");
    return r;
  };
  std::string sql = "UPDATE pending_requests SET state = ?2, state_reason = ?3";
  if (update.result != nullptr) sql += ", result = ?4";
  if (update.audit_done) sql += ", audit_done = 1";
  sql += " WHERE id = ?1";
  if (!update.from_states.empty()) {
    sql += " AND state IN (";
    for (std::size_t i = 0; i < update.from_states.size(); ++i) {
      sql += (i ? ", ?" : "?") + std::to_string(10 + i);
    }
    sql += ")";
  }
  auto st = d.Prepare(sql.c_str());
  if (!st) return fail(Error{st.error()});
  sqlite3_stmt* s = st->get();
  BindText(s, 1, update.id);
  BindText(s, 2, update.to_state);
  BindText(s, 3, update.reason);
  if (update.result != nullptr) BindBytes(s, 4, *update.result);
  for (std::size_t i = 0; i < update.from_states.size(); ++i) {
    BindText(s, static_cast<int>(10 + i), update.from_states[i]);
  }
  if (sqlite3_step(s) != SQLITE_DONE) return fail(Error{DbError(d.db.get(), "update request")});
  if (sqlite3_changes(d.db.get()) == 0) return fail(false);
  auto applied = d.ApplyChange(change);
  if (!applied) return fail(Error{applied.error()});
  if (*applied != InsertResult::kInserted) {
    return fail(Error{"state store: key " + change.insert_key->name + " already exists"});
  }
  if (auto r = d.Step(d.commit.get(), "commit"); !r) return fail(Error{r.error()});
  return true;
}

Result<std::optional<PendingRecord>> KeyStore::GetPending(std::string_view id) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  auto st = d.Prepare(
      (std::string("SELECT ") + kPendingColumns + " FROM pending_requests WHERE id = ?1").c_str());
  if (!st) return Error{st.error()};
  sqlite3_stmt* s = st->get();
  BindText(s, 1, std::string(id));
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) return std::optional<PendingRecord>();
  if (rc != SQLITE_ROW) return Error{DbError(d.db.get(), "read request")};
  auto r = ReadPending(s);
  if (!r) return Error{r.error()};
  return std::optional<PendingRecord>(std::move(r.value()));
}

Result<std::vector<PendingRecord>> KeyStore::ListPending(const std::vector<std::string>& states) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  std::string sql = std::string("SELECT ") + kPendingColumns + " FROM pending_requests";
  if (!states.empty()) {
    sql += " WHERE state IN (";
    for (std::size_t i = 0; i < states.size(); ++i)
      sql += (i ? ", ?" : "?") + std::to_string(i + 1);
    sql += ")";
  }
  sql += " ORDER BY created_at DESC, rowid DESC";
  auto st = d.Prepare(sql.c_str());
  if (!st) return Error{st.error()};
  sqlite3_stmt* s = st->get();
  for (std::size_t i = 0; i < states.size(); ++i) BindText(s, static_cast<int>(i + 1), states[i]);
  std::vector<PendingRecord> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    auto r = ReadPending(s);
    if (!r) return Error{r.error()};
    out.push_back(std::move(r.value()));
  }
  if (rc != SQLITE_DONE) return Error{DbError(d.db.get(), "list requests")};
  return out;
}

Result<std::optional<PendingRecord>> KeyStore::FindByIdempotencyKey(
    std::string_view requester, std::string_view idempotency_key, std::string_view op_sha256) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  auto st = d.Prepare((std::string("SELECT ") + kPendingColumns +
                       " FROM pending_requests WHERE requester = ?1 AND idempotency_key = ?2 "
                       "AND op_sha256 = ?3 ORDER BY created_at DESC LIMIT 1")
                          .c_str());
  if (!st) return Error{st.error()};
  sqlite3_stmt* s = st->get();
  BindText(s, 1, std::string(requester));
  BindText(s, 2, std::string(idempotency_key));
  BindText(s, 3, std::string(op_sha256));
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) return std::optional<PendingRecord>();
  if (rc != SQLITE_ROW) return Error{DbError(d.db.get(), "find request")};
  auto r = ReadPending(s);
  if (!r) return Error{r.error()};
  return std::optional<PendingRecord>(std::move(r.value()));
}

Result<KeyStore::InsertResult> KeyStore::InsertVote(const VoteRecord& v) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  auto st = d.Prepare(
      "INSERT INTO votes(request_id, officer, decision, statement, signature, reason, time, "
      "received_at, submitted_by) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
      "ON CONFLICT(request_id, officer) DO NOTHING");
  if (!st) return Error{st.error()};
  sqlite3_stmt* s = st->get();
  BindText(s, 1, v.request_id);
  BindText(s, 2, v.officer);
  BindText(s, 3, v.decision);
  BindBytes(s, 4, v.statement);
  BindBytes(s, 5, v.signature);
  BindText(s, 6, v.reason);
  BindText(s, 7, v.time);
  sqlite3_bind_int64(s, 8, v.received_at);
  BindText(s, 9, v.submitted_by);
  if (sqlite3_step(s) != SQLITE_DONE) return Error{DbError(d.db.get(), "insert vote")};
  return sqlite3_changes(d.db.get()) == 0 ? InsertResult::kAlreadyExists : InsertResult::kInserted;
}

Result<std::vector<VoteRecord>> KeyStore::Votes(std::string_view request_id) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  auto st = d.Prepare(
      "SELECT request_id, officer, decision, statement, signature, reason, time, received_at, "
      "submitted_by FROM votes WHERE request_id = ?1 ORDER BY rowid");
  if (!st) return Error{st.error()};
  sqlite3_stmt* s = st->get();
  BindText(s, 1, std::string(request_id));
  std::vector<VoteRecord> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    VoteRecord v;
    v.request_id = ColumnText(s, 0);
    v.officer = ColumnText(s, 1);
    v.decision = ColumnText(s, 2);
    v.statement = ColumnBytes(s, 3);
    v.signature = ColumnBytes(s, 4);
    v.reason = ColumnText(s, 5);
    v.time = ColumnText(s, 6);
    v.received_at = sqlite3_column_int64(s, 7);
    v.submitted_by = ColumnText(s, 8);
    out.push_back(std::move(v));
  }
  if (rc != SQLITE_DONE) return Error{DbError(d.db.get(), "read votes")};
  return out;
}

Result<void> KeyStore::ActivatePolicy(const PolicyRecord& policy) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  if (auto r = d.Step(d.begin.get(), "begin transaction"); !r) return r;
  StoreChange change;
  change.activate_policy = &policy;
  auto applied = d.ApplyChange(change);
  Result<void> r = applied ? Result<void>() : Result<void>(Error{applied.error()});
  if (r) r = d.Step(d.commit.get(), "commit");
  if (!r) (void)d.Step(d.rollback.get(), "rollback");
  return r;
}

Result<std::optional<PolicyRecord>> KeyStore::ActivePolicy() {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  auto st = d.Prepare(
      "SELECT version, text, sha256, activated_at, request_id, proposed_by, approved_by, active "
      "FROM policies WHERE active != 0 ORDER BY version DESC LIMIT 1");
  if (!st) return Error{st.error()};
  sqlite3_stmt* s = st->get();
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) return std::optional<PolicyRecord>();
  if (rc != SQLITE_ROW) return Error{DbError(d.db.get(), "read active policy")};
  PolicyRecord p;
  p.version = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
  p.text = ColumnBytes(s, 1);
  p.sha256 = ColumnText(s, 2);
  p.activated_at = sqlite3_column_int64(s, 3);
  p.request_id = ColumnText(s, 4);
  p.proposed_by = ColumnText(s, 5);
  const std::string approved = ColumnText(s, 6);
  if (!approved.empty()) {
    for (auto a : Split(approved, '\n')) p.approved_by.emplace_back(a);
  }
  p.active = sqlite3_column_int64(s, 7) != 0;
  return std::optional<PolicyRecord>(std::move(p));
}

// --- CA back-end (schema 3). ---

namespace {

// A chain as one blob: per certificate a 4-byte big-endian length, then DER.
std::vector<std::uint8_t> EncodeChain(const std::vector<std::vector<std::uint8_t>>& chain) {
  std::vector<std::uint8_t> out;
  for (const auto& c : chain) {
    const auto n = static_cast<std::uint32_t>(c.size());
    for (int shift = 24; shift >= 0; shift -= 8)
      out.push_back(static_cast<std::uint8_t>(n >> shift));
    out.insert(out.end(), c.begin(), c.end());
  }
  return out;
}

std::optional<std::vector<std::vector<std::uint8_t>>> DecodeChain(
    const std::vector<std::uint8_t>& blob) {
  std::vector<std::vector<std::uint8_t>> out;
  std::size_t i = 0;
  while (i < blob.size()) {
    if (blob.size() - i < 4) return std::nullopt;
    const std::uint32_t n = (std::uint32_t{blob[i]} << 24) | (std::uint32_t{blob[i + 1]} << 16) |
                            (std::uint32_t{blob[i + 2]} << 8) | std::uint32_t{blob[i + 3]};
    i += 4;
    if (blob.size() - i < n) return std::nullopt;
    out.emplace_back(blob.begin() + static_cast<std::ptrdiff_t>(i),
                     blob.begin() + static_cast<std::ptrdiff_t>(i + n));
    i += n;
  }
  return out;
}

std::string JoinLines(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += EscapeField(item) + "\n";
  return out;
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  std::string_view rest(text);
  if (rest.back() == '\n') rest.remove_suffix(1);
  for (auto line : Split(rest, '\n'))
    out.push_back(UnescapeField(line).value_or(std::string(line)));
  return out;
}

constexpr const char* kCaColumns =
    "name, key, key_version, parent, subject, cert_der, chain, state, created_at";

Result<CaRecord> ReadCa(sqlite3_stmt* s) {
  CaRecord c;
  c.name = ColumnText(s, 0);
  c.key = ColumnText(s, 1);
  c.key_version = static_cast<std::uint32_t>(sqlite3_column_int64(s, 2));
  c.parent = ColumnText(s, 3);
  c.subject = ColumnText(s, 4);
  c.cert_der = ColumnBlob(s, 5);
  auto chain = DecodeChain(ColumnBlob(s, 6));
  if (!chain) return Error{"state store: CA " + c.name + " has an unreadable chain"};
  c.chain = std::move(*chain);
  c.state = ColumnText(s, 7);
  c.created_at = sqlite3_column_int64(s, 8);
  return c;
}

constexpr const char* kCertColumns =
    "ca, serial, profile, subject, sans, requester, not_before, not_after, state, reason, "
    "revoked_at, der, renews, renewed_by, issued_at";

CertificateRecord ReadCertificate(sqlite3_stmt* s, bool with_der) {
  CertificateRecord c;
  c.ca = ColumnText(s, 0);
  c.serial = ColumnText(s, 1);
  c.profile = ColumnText(s, 2);
  c.subject = ColumnText(s, 3);
  c.sans = SplitLines(ColumnText(s, 4));
  c.requester = ColumnText(s, 5);
  c.not_before = sqlite3_column_int64(s, 6);
  c.not_after = sqlite3_column_int64(s, 7);
  c.state = ColumnText(s, 8);
  c.reason = ColumnText(s, 9);
  c.revoked_at = sqlite3_column_int64(s, 10);
  if (with_der) c.der = ColumnBlob(s, 11);
  c.renews = ColumnText(s, 12);
  c.renewed_by = ColumnText(s, 13);
  c.issued_at = sqlite3_column_int64(s, 14);
  return c;
}

}  // namespace

Result<void> KeyStore::Impl::PutCaRow(const CaRecord& ca, bool replace_only) {
  const std::string sql =
      replace_only
          ? "UPDATE cas SET key = ?2, key_version = ?3, parent = ?4, subject = ?5, cert_der = ?6, "
            "chain = ?7, state = ?8, created_at = ?9 WHERE name = ?1"
          : std::string("INSERT INTO cas(") + kCaColumns +
                ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(name) DO UPDATE SET "
                "key = excluded.key, key_version = excluded.key_version, parent = excluded.parent, "
                "subject = excluded.subject, cert_der = excluded.cert_der, chain = excluded.chain, "
                "state = excluded.state, created_at = excluded.created_at";
  auto st = Prepare(sql.c_str());
  if (!st) return Error{st.error()};
  sqlite3_stmt* s = st->get();
  BindText(s, 1, ca.name);
  BindText(s, 2, ca.key);
  sqlite3_bind_int64(s, 3, ca.key_version);
  BindText(s, 4, ca.parent);
  BindText(s, 5, ca.subject);
  BindBlob(s, 6, ca.cert_der);
  BindBlob(s, 7, EncodeChain(ca.chain));
  BindText(s, 8, ca.state);
  sqlite3_bind_int64(s, 9, ca.created_at);
  if (sqlite3_step(s) != SQLITE_DONE) return Error{DbError(db.get(), "write CA " + ca.name)};
  if (replace_only && sqlite3_changes(db.get()) == 0) {
    return Error{"state store: no CA named " + ca.name + " to update"};
  }
  return {};
}

Result<KeyStore::InsertResult> KeyStore::Impl::InsertCertificateRow(const CertificateRecord& c) {
  auto st = Prepare((std::string("INSERT INTO certificates(") + kCertColumns +
                     ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) "
                     "ON CONFLICT(ca, serial) DO NOTHING")
                        .c_str());
  if (!st) return Error{st.error()};
  sqlite3_stmt* s = st->get();
  BindText(s, 1, c.ca);
  BindText(s, 2, c.serial);
  BindText(s, 3, c.profile);
  BindText(s, 4, c.subject);
  BindText(s, 5, JoinLines(c.sans));
  BindText(s, 6, c.requester);
  sqlite3_bind_int64(s, 7, c.not_before);
  sqlite3_bind_int64(s, 8, c.not_after);
  BindText(s, 9, c.state);
  BindText(s, 10, c.reason);
  sqlite3_bind_int64(s, 11, c.revoked_at);
  BindBlob(s, 12, c.der);
  BindText(s, 13, c.renews);
  BindText(s, 14, c.renewed_by);
  sqlite3_bind_int64(s, 15, c.issued_at);
  if (sqlite3_step(s) != SQLITE_DONE) return Error{DbError(db.get(), "insert certificate")};
  if (sqlite3_changes(db.get()) == 0) return InsertResult::kAlreadyExists;
  if (!c.renews.empty()) {
    auto up = Prepare("UPDATE certificates SET renewed_by = ?3 WHERE ca = ?1 AND serial = ?2");
    if (!up) return Error{up.error()};
    BindText(up->get(), 1, c.ca);
    BindText(up->get(), 2, c.renews);
    BindText(up->get(), 3, c.serial);
    if (sqlite3_step(up->get()) != SQLITE_DONE) {
      return Error{DbError(db.get(), "link renewed certificate")};
    }
  }
  return InsertResult::kInserted;
}

Result<bool> KeyStore::Impl::RevokeRow(const CertificateRevocation& r) {
  auto st = Prepare(
      "UPDATE certificates SET state = 'revoked', reason = ?3, revoked_at = ?4 "
      "WHERE ca = ?1 AND serial = ?2 AND state = 'valid'");
  if (!st) return Error{st.error()};
  BindText(st->get(), 1, r.ca);
  BindText(st->get(), 2, r.serial);
  BindText(st->get(), 3, r.reason);
  sqlite3_bind_int64(st->get(), 4, r.revoked_at);
  if (sqlite3_step(st->get()) != SQLITE_DONE) return Error{DbError(db.get(), "revoke certificate")};
  if (sqlite3_changes(db.get()) == 0) return false;
  if (!r.revokes_ca.empty()) {
    auto up = Prepare("UPDATE cas SET state = 'revoked' WHERE name = ?1");
    if (!up) return Error{up.error()};
    BindText(up->get(), 1, r.revokes_ca);
    if (sqlite3_step(up->get()) != SQLITE_DONE) return Error{DbError(db.get(), "revoke CA")};
  }
  return true;
}

Result<KeyStore::InsertResult> KeyStore::InsertCa(const CaRecord& ca) {
  Impl& d = *impl_;
  return d.Transaction<InsertResult>(
      [&]() -> Result<InsertResult> {
        auto st = d.Prepare((std::string("INSERT INTO cas(") + kCaColumns +
                             ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
                             "ON CONFLICT(name) DO NOTHING")
                                .c_str());
        if (!st) return Error{st.error()};
        sqlite3_stmt* s = st->get();
        BindText(s, 1, ca.name);
        BindText(s, 2, ca.key);
        sqlite3_bind_int64(s, 3, ca.key_version);
        BindText(s, 4, ca.parent);
        BindText(s, 5, ca.subject);
        BindBlob(s, 6, ca.cert_der);
        BindBlob(s, 7, EncodeChain(ca.chain));
        BindText(s, 8, ca.state);
        sqlite3_bind_int64(s, 9, ca.created_at);
        if (sqlite3_step(s) != SQLITE_DONE) return Error{DbError(d.db.get(), "insert CA")};
        return sqlite3_changes(d.db.get()) == 0 ? InsertResult::kAlreadyExists
                                                : InsertResult::kInserted;
      },
      [](InsertResult r) { return r == InsertResult::kInserted; });
}

Result<void> KeyStore::UpdateCa(const CaRecord& ca) {
  Impl& d = *impl_;
  auto r = d.Transaction<bool>(
      [&]() -> Result<bool> {
        if (auto put = d.PutCaRow(ca, true); !put) return Error{put.error()};
        return true;
      },
      [](bool) { return true; });
  if (!r) return Error{r.error()};
  return {};
}

Result<std::optional<CaRecord>> KeyStore::GetCa(std::string_view name) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  auto st = d.Prepare((std::string("SELECT ") + kCaColumns + " FROM cas WHERE name = ?1").c_str());
  if (!st) return Error{st.error()};
  BindText(st->get(), 1, std::string(name));
  const int rc = sqlite3_step(st->get());
  if (rc == SQLITE_DONE) return std::optional<CaRecord>();
  if (rc != SQLITE_ROW) return Error{DbError(d.db.get(), "read CA")};
  auto c = ReadCa(st->get());
  if (!c) return Error{c.error()};
  return std::optional<CaRecord>(std::move(c.value()));
}

Result<std::vector<CaRecord>> KeyStore::ListCas() {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  auto st = d.Prepare((std::string("SELECT ") + kCaColumns + " FROM cas ORDER BY name").c_str());
  if (!st) return Error{st.error()};
  std::vector<CaRecord> out;
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
    auto c = ReadCa(st->get());
    if (!c) return Error{c.error()};
    out.push_back(std::move(c.value()));
  }
  if (rc != SQLITE_DONE) return Error{DbError(d.db.get(), "list CAs")};
  return out;
}

Result<KeyStore::InsertResult> KeyStore::InsertCertificate(const CertificateRecord& cert) {
  Impl& d = *impl_;
  return d.Transaction<InsertResult>([&] { return d.InsertCertificateRow(cert); },
                                     [](InsertResult r) { return r == InsertResult::kInserted; });
}

Result<std::optional<CertificateRecord>> KeyStore::GetCertificate(std::string_view ca,
                                                                  std::string_view serial) {
  CertificateQuery q;
  q.ca = std::string(ca);
  q.serial = std::string(serial);
  auto found = ListCertificates(q);
  if (!found) return Error{found.error()};
  if (found->empty()) return std::optional<CertificateRecord>();
  return std::optional<CertificateRecord>(std::move(found->front()));
}

Result<std::vector<CertificateRecord>> KeyStore::ListCertificates(const CertificateQuery& q) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  std::string sql = std::string("SELECT ") + kCertColumns + " FROM certificates WHERE 1";
  if (!q.ca.empty()) sql += " AND ca = ?1";
  if (!q.requester.empty()) sql += " AND requester = ?2";
  if (!q.profile.empty()) sql += " AND profile = ?3";
  if (!q.serial.empty()) sql += " AND serial = ?4";
  if (q.not_after_from != 0) sql += " AND not_after >= ?5";
  if (q.not_after_to != 0) sql += " AND not_after <= ?6";
  sql += " ORDER BY issued_at, serial";
  auto st = d.Prepare(sql.c_str());
  if (!st) return Error{st.error()};
  sqlite3_stmt* s = st->get();
  if (!q.ca.empty()) BindText(s, 1, q.ca);
  if (!q.requester.empty()) BindText(s, 2, q.requester);
  if (!q.profile.empty()) BindText(s, 3, q.profile);
  if (!q.serial.empty()) BindText(s, 4, q.serial);
  if (q.not_after_from != 0) sqlite3_bind_int64(s, 5, q.not_after_from);
  if (q.not_after_to != 0) sqlite3_bind_int64(s, 6, q.not_after_to);
  std::vector<CertificateRecord> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) out.push_back(ReadCertificate(s, q.with_der));
  if (rc != SQLITE_DONE) return Error{DbError(d.db.get(), "list certificates")};
  return out;
}

Result<bool> KeyStore::SerialExists(std::string_view ca, std::string_view serial) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  auto st = d.Prepare("SELECT 1 FROM certificates WHERE ca = ?1 AND serial = ?2");
  if (!st) return Error{st.error()};
  BindText(st->get(), 1, std::string(ca));
  BindText(st->get(), 2, std::string(serial));
  const int rc = sqlite3_step(st->get());
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) return Error{DbError(d.db.get(), "look up serial")};
  return false;
}

Result<bool> KeyStore::RevokeCertificate(const CertificateRevocation& revocation) {
  Impl& d = *impl_;
  return d.Transaction<bool>([&] { return d.RevokeRow(revocation); }, [](bool r) { return r; });
}

Result<std::optional<CrlRecord>> KeyStore::GetCrl(std::string_view ca) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  auto st = d.Prepare("SELECT ca, number, der, this_update, next_update FROM crls WHERE ca = ?1");
  if (!st) return Error{st.error()};
  BindText(st->get(), 1, std::string(ca));
  const int rc = sqlite3_step(st->get());
  if (rc == SQLITE_DONE) return std::optional<CrlRecord>();
  if (rc != SQLITE_ROW) return Error{DbError(d.db.get(), "read CRL")};
  CrlRecord c;
  c.ca = ColumnText(st->get(), 0);
  c.number = static_cast<std::uint64_t>(sqlite3_column_int64(st->get(), 1));
  c.der = ColumnBlob(st->get(), 2);
  c.this_update = sqlite3_column_int64(st->get(), 3);
  c.next_update = sqlite3_column_int64(st->get(), 4);
  return std::optional<CrlRecord>(std::move(c));
}

Result<bool> KeyStore::PutCrl(const CrlRecord& crl) {
  Impl& d = *impl_;
  return d.Transaction<bool>(
      [&]() -> Result<bool> {
        auto st = d.Prepare(
            "INSERT INTO crls(ca, number, der, this_update, next_update) VALUES(?1, ?2, ?3, ?4, "
            "?5) ON CONFLICT(ca) DO UPDATE SET number = excluded.number, der = excluded.der, "
            "this_update = excluded.this_update, next_update = excluded.next_update "
            "WHERE excluded.number > crls.number");
        if (!st) return Error{st.error()};
        sqlite3_stmt* s = st->get();
        BindText(s, 1, crl.ca);
        sqlite3_bind_int64(s, 2, static_cast<std::int64_t>(crl.number));
        BindBlob(s, 3, crl.der);
        sqlite3_bind_int64(s, 4, crl.this_update);
        sqlite3_bind_int64(s, 5, crl.next_update);
        if (sqlite3_step(s) != SQLITE_DONE) return Error{DbError(d.db.get(), "store CRL")};
        return sqlite3_changes(d.db.get()) != 0;
      },
      [](bool r) { return r; });
}

// --- SSH certificates (schema 4). ---
// Serials are unsigned 64-bit; SQLite stores them bit for bit as INTEGER.
// Principals are stored joined with ',' (they never contain one). The CA key
// column is "name@version"; a serial is unique per key name.

namespace {

constexpr const char* kSshCertColumns =
    "ca_key, serial, key_id, cert_type, principals, valid_after, valid_before, requester, "
    "profile, subject_fingerprint, certificate, issued_at";

std::string SshKeyNamePrefix(std::string_view ca_name) { return std::string(ca_name) + "@"; }

}  // namespace

Result<bool> KeyStore::InsertSshCertificate(const SshCertificateRecord& cert) {
  Impl& d = *impl_;
  const std::string name = cert.ca_key.substr(0, cert.ca_key.find('@'));
  return d.Transaction<bool>(
      [&]() -> Result<bool> {
        auto used = d.Prepare(
            "SELECT 1 FROM ssh_certificates WHERE substr(ca_key, 1, length(?1)) = ?1 AND "
            "serial = ?2");
        if (!used) return Error{used.error()};
        BindText(used->get(), 1, SshKeyNamePrefix(name));
        sqlite3_bind_int64(used->get(), 2, static_cast<std::int64_t>(cert.serial));
        const int rc = sqlite3_step(used->get());
        if (rc == SQLITE_ROW) return false;
        if (rc != SQLITE_DONE) return Error{DbError(d.db.get(), "look up ssh serial")};
        auto st = d.Prepare((std::string("INSERT INTO ssh_certificates(") + kSshCertColumns +
                             ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)")
                                .c_str());
        if (!st) return Error{st.error()};
        sqlite3_stmt* s = st->get();
        std::string principals;
        for (const auto& p : cert.principals) {
          if (!principals.empty()) principals += ',';
          principals += p;
        }
        BindText(s, 1, cert.ca_key);
        sqlite3_bind_int64(s, 2, static_cast<std::int64_t>(cert.serial));
        BindText(s, 3, cert.key_id);
        BindText(s, 4, cert.cert_type);
        BindText(s, 5, principals);
        sqlite3_bind_int64(s, 6, cert.valid_after);
        sqlite3_bind_int64(s, 7, cert.valid_before);
        BindText(s, 8, cert.requester);
        BindText(s, 9, cert.profile);
        BindText(s, 10, cert.subject_fingerprint);
        BindText(s, 11, cert.certificate);
        sqlite3_bind_int64(s, 12, cert.issued_at);
        if (sqlite3_step(s) != SQLITE_DONE) {
          return Error{DbError(d.db.get(), "insert ssh certificate")};
        }
        return true;
      },
      [](bool r) { return r; });
}

Result<bool> KeyStore::SshSerialExists(std::string_view ca_name, std::uint64_t serial) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  auto st = d.Prepare(
      "SELECT 1 FROM ssh_certificates WHERE substr(ca_key, 1, length(?1)) = ?1 AND serial = ?2");
  if (!st) return Error{st.error()};
  BindText(st->get(), 1, SshKeyNamePrefix(ca_name));
  sqlite3_bind_int64(st->get(), 2, static_cast<std::int64_t>(serial));
  const int rc = sqlite3_step(st->get());
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) return Error{DbError(d.db.get(), "look up ssh serial")};
  return false;
}

Result<std::vector<KeyStore::SshCertificateRecord>> KeyStore::ListSshCertificates(
    std::string_view ca_name, std::string_view requester) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  std::string sql = std::string("SELECT ") + kSshCertColumns + " FROM ssh_certificates WHERE 1";
  if (!ca_name.empty()) sql += " AND substr(ca_key, 1, length(?1)) = ?1";
  if (!requester.empty()) sql += " AND requester = ?2";
  sql += " ORDER BY issued_at, serial";
  auto st = d.Prepare(sql.c_str());
  if (!st) return Error{st.error()};
  sqlite3_stmt* s = st->get();
  if (!ca_name.empty()) BindText(s, 1, SshKeyNamePrefix(ca_name));
  if (!requester.empty()) BindText(s, 2, std::string(requester));
  std::vector<SshCertificateRecord> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    SshCertificateRecord c;
    c.ca_key = ColumnText(s, 0);
    c.serial = static_cast<std::uint64_t>(sqlite3_column_int64(s, 1));
    c.key_id = ColumnText(s, 2);
    c.cert_type = ColumnText(s, 3);
    const std::string principals = ColumnText(s, 4);
    for (std::size_t at = 0; at <= principals.size() && !principals.empty();) {
      const std::size_t comma = std::min(principals.find(',', at), principals.size());
      c.principals.push_back(principals.substr(at, comma - at));
      at = comma + 1;
    }
    c.valid_after = sqlite3_column_int64(s, 5);
    c.valid_before = sqlite3_column_int64(s, 6);
    c.requester = ColumnText(s, 7);
    c.profile = ColumnText(s, 8);
    c.subject_fingerprint = ColumnText(s, 9);
    c.certificate = ColumnText(s, 10);
    c.issued_at = sqlite3_column_int64(s, 11);
    out.push_back(std::move(c));
  }
  if (rc != SQLITE_DONE) return Error{DbError(d.db.get(), "list ssh certificates")};
  return out;
}

// --- Certificates attached to signing keys (schema 4). ---

Result<bool> KeyStore::PutKeyCertificate(const KeyCertificate& cert,
                                         const CertificateRecord* issued) {
  Impl& d = *impl_;
  return d.Transaction<bool>(
      [&]() -> Result<bool> {
        if (issued != nullptr) {
          auto r = d.InsertCertificateRow(*issued);
          if (!r) return Error{r.error()};
          if (*r != InsertResult::kInserted) {
            return Error{"state store: CA " + issued->ca + " already has serial " + issued->serial};
          }
        }
        auto st = d.Prepare(
            "INSERT INTO key_certificates(key, version, cert_der, chain, source, attached_at) "
            "VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(key, version) DO UPDATE SET "
            "cert_der = excluded.cert_der, chain = excluded.chain, source = excluded.source, "
            "attached_at = excluded.attached_at");
        if (!st) return Error{st.error()};
        sqlite3_stmt* s = st->get();
        BindText(s, 1, cert.key);
        sqlite3_bind_int64(s, 2, cert.version);
        BindBlob(s, 3, cert.cert_der);
        BindBlob(s, 4, EncodeChain(cert.chain));
        BindText(s, 5, cert.source);
        sqlite3_bind_int64(s, 6, cert.attached_at);
        if (sqlite3_step(s) != SQLITE_DONE) {
          return Error{DbError(d.db.get(), "attach key certificate")};
        }
        return true;
      },
      [](bool r) { return r; });
}

Result<std::optional<KeyStore::KeyCertificate>> KeyStore::GetKeyCertificate(std::string_view key,
                                                                            std::uint32_t version) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mu);
  auto st = d.Prepare(
      "SELECT cert_der, chain, source, attached_at FROM key_certificates "
      "WHERE key = ?1 AND version = ?2");
  if (!st) return Error{st.error()};
  sqlite3_stmt* s = st->get();
  BindText(s, 1, std::string(key));
  sqlite3_bind_int64(s, 2, version);
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) return std::optional<KeyCertificate>();
  if (rc != SQLITE_ROW) return Error{DbError(d.db.get(), "read key certificate")};
  KeyCertificate c;
  c.key = std::string(key);
  c.version = version;
  c.cert_der = ColumnBlob(s, 0);
  auto chain = DecodeChain(ColumnBlob(s, 1));
  if (!chain) {
    return Error{"state store: the certificate chain of " + c.key + "@" + std::to_string(version) +
                 " is unreadable"};
  }
  c.chain = std::move(*chain);
  c.source = ColumnText(s, 2);
  c.attached_at = sqlite3_column_int64(s, 3);
  return std::optional<KeyCertificate>(std::move(c));
}

}  // namespace custos::service
