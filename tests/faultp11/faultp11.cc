// libcustos_faultp11.so: a PKCS#11 module for tests that forwards every call
// to a real module and injects the faults a control file asks for.
//
// Environment:
//   CUSTOS_FAULTP11_TARGET   real module (default /usr/lib/softhsm/libsofthsm2.so)
//   CUSTOS_FAULTP11_CONTROL  control file; unset or missing file = no faults
//   CUSTOS_FAULTP11_STATS    call counters (default <control>.stats; none
//                            without a control file)
//
// Control file, one directive per line, '#' starts a comment:
//   fail <C_Function|*> <CKR_NAME|0xHEX> [count=N]
//       return that CKR instead of calling the real module (N times, default
//       every time).
//   stall <C_Function|*> <milliseconds> [count=N]
//       sleep before forwarding; a sleeping call wakes early when the control
//       file changes, and then sees the new rules.
//   closeall
//       once: call the real C_CloseAllSessions on every slot with a token,
//       then forward normally (the caller's handles become invalid for real).
//   logout
//       once: open a session, call the real C_Logout, close it; the
//       application's sessions are then really logged out.
//   removed
//       while present: C_GetSlotList(CK_TRUE) lists no slot, C_GetSlotInfo
//       clears CKF_TOKEN_PRESENT, slot calls that need the token (C_OpenSession,
//       C_GetTokenInfo, C_GetMechanism*, C_InitToken, C_CloseAllSessions)
//       return CKR_TOKEN_NOT_PRESENT, and every call on a session returns
//       CKR_DEVICE_REMOVED. The line appearing also acts as `closeall`, so when
//       it goes away the token is back and clients must open new sessions.
// "*" matches every function except C_Initialize and C_Finalize. Rules apply
// in file order: all matching stalls add up, then the first matching `fail`
// with count left decides. "Once" actions fire at the first call after each
// change of the file (after C_Initialize). The file is stat()ed on every call
// and re-read when its inode, size or mtime changes, or while its mtime is
// less than 100 ms old (the kernel's mtime is coarse). Counts restart then.
// Malformed lines are reported on stderr and ignored.
//
// Stats file: one line per PKCS#11 function, "<name> <calls>" (space-padded,
// fixed width, updated in place through a shared mapping after every call),
// counting every call the application made since this process loaded the
// module, including calls answered by an injected fault. Tests read it to
// prove, e.g., that C_FindObjectsInit is not called on every signature.
//
// Thread safety: every entry point may be called from many threads; the
// control state and counters are guarded by one mutex, which is never held
// while sleeping or while forwarding an application call.
#include <dlfcn.h>
#include <fcntl.h>
#include <p11-kit/pkcs11.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

// Every function of the 2.40 function list with what `removed` does to it:
// kAlways = unaffected, kToken = CKR_TOKEN_NOT_PRESENT, kSession =
// CKR_DEVICE_REMOVED. (C_GetSlotList and C_GetSlotInfo are handled apart.)
// clang-format off
#define FAULTP11_FUNCTIONS(X) \
  X(C_Initialize, kAlways) \
  X(C_Finalize, kAlways) \
  X(C_GetInfo, kAlways) \
  X(C_GetFunctionList, kAlways) \
  X(C_GetSlotList, kAlways) \
  X(C_GetSlotInfo, kAlways) \
  X(C_GetTokenInfo, kToken) \
  X(C_GetMechanismList, kToken) \
  X(C_GetMechanismInfo, kToken) \
  X(C_InitToken, kToken) \
  X(C_InitPIN, kSession) \
  X(C_SetPIN, kSession) \
  X(C_OpenSession, kToken) \
  X(C_CloseSession, kSession) \
  X(C_CloseAllSessions, kToken) \
  X(C_GetSessionInfo, kSession) \
  X(C_GetOperationState, kSession) \
  X(C_SetOperationState, kSession) \
  X(C_Login, kSession) \
  X(C_Logout, kSession) \
  X(C_CreateObject, kSession) \
  X(C_CopyObject, kSession) \
  X(C_DestroyObject, kSession) \
  X(C_GetObjectSize, kSession) \
  X(C_GetAttributeValue, kSession) \
  X(C_SetAttributeValue, kSession) \
  X(C_FindObjectsInit, kSession) \
  X(C_FindObjects, kSession) \
  X(C_FindObjectsFinal, kSession) \
  X(C_EncryptInit, kSession) \
  X(C_Encrypt, kSession) \
  X(C_EncryptUpdate, kSession) \
  X(C_EncryptFinal, kSession) \
  X(C_DecryptInit, kSession) \
  X(C_Decrypt, kSession) \
  X(C_DecryptUpdate, kSession) \
  X(C_DecryptFinal, kSession) \
  X(C_DigestInit, kSession) \
  X(C_Digest, kSession) \
  X(C_DigestUpdate, kSession) \
  X(C_DigestKey, kSession) \
  X(C_DigestFinal, kSession) \
  X(C_SignInit, kSession) \
  X(C_Sign, kSession) \
  X(C_SignUpdate, kSession) \
  X(C_SignFinal, kSession) \
  X(C_SignRecoverInit, kSession) \
  X(C_SignRecover, kSession) \
  X(C_VerifyInit, kSession) \
  X(C_Verify, kSession) \
  X(C_VerifyUpdate, kSession) \
  X(C_VerifyFinal, kSession) \
  X(C_VerifyRecoverInit, kSession) \
  X(C_VerifyRecover, kSession) \
  X(C_DigestEncryptUpdate, kSession) \
  X(C_DecryptDigestUpdate, kSession) \
  X(C_SignEncryptUpdate, kSession) \
  X(C_DecryptVerifyUpdate, kSession) \
  X(C_GenerateKey, kSession) \
  X(C_GenerateKeyPair, kSession) \
  X(C_WrapKey, kSession) \
  X(C_UnwrapKey, kSession) \
  X(C_DeriveKey, kSession) \
  X(C_SeedRandom, kSession) \
  X(C_GenerateRandom, kSession) \
  X(C_GetFunctionStatus, kSession) \
  X(C_CancelFunction, kSession) \
  X(C_WaitForSlotEvent, kAlways)
// clang-format on

enum Fn : int {
#define FAULTP11_ENUM(name, scope) k_##name,
  FAULTP11_FUNCTIONS(FAULTP11_ENUM) kFnCount
#undef FAULTP11_ENUM
};

constexpr const char* kFnNames[] = {
#define FAULTP11_NAME(name, scope) #name,
    FAULTP11_FUNCTIONS(FAULTP11_NAME)
#undef FAULTP11_NAME
};

enum Scope { kAlways, kToken, kSession };

#define FAULTP11_CKR(x) \
  { #x, x }
constexpr struct {
  const char* name;
  CK_RV value;
} kCkrNames[] = {
    FAULTP11_CKR(CKR_CANCEL),
    FAULTP11_CKR(CKR_HOST_MEMORY),
    FAULTP11_CKR(CKR_SLOT_ID_INVALID),
    FAULTP11_CKR(CKR_GENERAL_ERROR),
    FAULTP11_CKR(CKR_FUNCTION_FAILED),
    FAULTP11_CKR(CKR_ARGUMENTS_BAD),
    FAULTP11_CKR(CKR_DEVICE_ERROR),
    FAULTP11_CKR(CKR_DEVICE_MEMORY),
    FAULTP11_CKR(CKR_DEVICE_REMOVED),
    FAULTP11_CKR(CKR_FUNCTION_CANCELED),
    FAULTP11_CKR(CKR_FUNCTION_NOT_SUPPORTED),
    FAULTP11_CKR(CKR_KEY_HANDLE_INVALID),
    FAULTP11_CKR(CKR_MECHANISM_INVALID),
    FAULTP11_CKR(CKR_OBJECT_HANDLE_INVALID),
    FAULTP11_CKR(CKR_OPERATION_ACTIVE),
    FAULTP11_CKR(CKR_OPERATION_NOT_INITIALIZED),
    FAULTP11_CKR(CKR_PIN_INCORRECT),
    FAULTP11_CKR(CKR_PIN_EXPIRED),
    FAULTP11_CKR(CKR_PIN_LOCKED),
    FAULTP11_CKR(CKR_SESSION_CLOSED),
    FAULTP11_CKR(CKR_SESSION_COUNT),
    FAULTP11_CKR(CKR_SESSION_HANDLE_INVALID),
    FAULTP11_CKR(CKR_TOKEN_NOT_PRESENT),
    FAULTP11_CKR(CKR_TOKEN_NOT_RECOGNIZED),
    FAULTP11_CKR(CKR_USER_ALREADY_LOGGED_IN),
    FAULTP11_CKR(CKR_USER_NOT_LOGGED_IN),
    FAULTP11_CKR(CKR_USER_TYPE_INVALID),
    FAULTP11_CKR(CKR_BUFFER_TOO_SMALL),
    FAULTP11_CKR(CKR_CRYPTOKI_NOT_INITIALIZED),
    FAULTP11_CKR(CKR_TEMPLATE_INCONSISTENT),
    FAULTP11_CKR(CKR_ATTRIBUTE_VALUE_INVALID),
    FAULTP11_CKR(CKR_DATA_LEN_RANGE),
    FAULTP11_CKR(CKR_SESSION_READ_ONLY),
    FAULTP11_CKR(CKR_TOKEN_WRITE_PROTECTED),
};
#undef FAULTP11_CKR

struct Rule {
  bool stall = false;
  int fn = -1;          // -1 = "*"
  CK_RV rv = CKR_OK;    // for fail
  long ms = 0;          // for stall
  long remaining = -1;  // -1 = forever
};

struct State {
  std::mutex mu;
  CK_FUNCTION_LIST* target = nullptr;  // set once in C_GetFunctionList
  CK_FUNCTION_LIST list{};

  // Control file state, guarded by mu.
  std::string control_path;
  bool file_exists = false;
  struct stat file_stat {};
  std::string content;
  unsigned long generation = 0;
  std::vector<Rule> rules;
  bool removed = false;
  bool pending_closeall = false;
  bool pending_logout = false;
  bool initialized = false;

  // Counters, guarded by mu, mirrored into the mapped stats file.
  unsigned long long counts[kFnCount] = {};
  char* stats = nullptr;
  void* target_handle = nullptr;

  ~State();
};

// Destroyed when the module is unloaded (dlclose or exit); the application
// must not call into a module it is unloading.
State& S() {
  static State state;
  return state;
}

constexpr int kNameWidth = 24;
constexpr int kCountWidth = 20;
constexpr int kLineLength = kNameWidth + 1 + kCountWidth + 1;

State::~State() {
  if (stats != nullptr) ::munmap(stats, static_cast<size_t>(kLineLength) * kFnCount);
  // A module still initialised may have threads or handlers of its own:
  // unload it only after the application finalised it through us.
  if (target_handle != nullptr && !initialized) ::dlclose(target_handle);
}

void WriteCount(State& s, int fn) {
  if (s.stats == nullptr) return;
  char line[kLineLength + 1];
  std::snprintf(line, sizeof(line), "%-*s %*llu\n", kNameWidth, kFnNames[fn], kCountWidth,
                s.counts[fn]);
  std::memcpy(s.stats + fn * kLineLength, line, kLineLength);
}

void OpenStats(State& s, const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const size_t size = static_cast<size_t>(kLineLength) * kFnCount;
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    std::fprintf(stderr, "custos_faultp11: cannot write stats file %s: %s\n", path.c_str(),
                 std::strerror(errno));
    if (fd >= 0) ::close(fd);
    return;
  }
  void* map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return;
  s.stats = static_cast<char*>(map);
  for (int fn = 0; fn < kFnCount; ++fn) WriteCount(s, fn);
}

bool ParseCount(const std::string& word, long* out) {
  if (word.rfind("count=", 0) != 0) return false;
  char* end = nullptr;
  *out = std::strtol(word.c_str() + 6, &end, 10);
  return *end == '\0' && *out > 0;
}

// Parses s.content into rules and flags; reports bad lines on stderr.
void Parse(State& s, bool was_removed) {
  s.rules.clear();
  bool closeall = false;
  bool removed = false;
  s.pending_logout = false;
  std::istringstream in(s.content);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string word; words >> word;) w.push_back(word);
    if (w.empty()) continue;
    const char* problem = nullptr;
    if (w.size() == 1 && w[0] == "closeall") {
      closeall = true;
    } else if (w.size() == 1 && w[0] == "logout") {
      s.pending_logout = true;
    } else if (w.size() == 1 && w[0] == "removed") {
      removed = true;
    } else if ((w[0] == "fail" || w[0] == "stall") && (w.size() == 3 || w.size() == 4)) {
      Rule rule;
      rule.stall = w[0] == "stall";
      if (w[1] != "*") {
        auto it = std::find_if(std::begin(kFnNames), std::end(kFnNames),
                               [&](const char* n) { return w[1] == n; });
        rule.fn = it == std::end(kFnNames) ? -2 : static_cast<int>(it - std::begin(kFnNames));
      }
      char* end = nullptr;
      if (rule.stall) {
        rule.ms = std::strtol(w[2].c_str(), &end, 10);
        if (*end != '\0' || rule.ms < 0) problem = "bad milliseconds";
      } else {
        for (const auto& c : kCkrNames) {
          if (w[2] == c.name) rule.rv = c.value;
        }
        if (rule.rv == CKR_OK) rule.rv = std::strtoul(w[2].c_str(), &end, 0);
        if (rule.rv == CKR_OK || (end != nullptr && *end != '\0')) problem = "unknown CKR name";
      }
      if (rule.fn == -2) problem = "unknown function name";
      if (w.size() == 4 && !ParseCount(w[3], &rule.remaining)) problem = "bad count=N";
      if (problem == nullptr) s.rules.push_back(rule);
    } else {
      problem = "unknown directive";
    }
    if (problem != nullptr) {
      std::fprintf(stderr, "custos_faultp11: %s:%d: %s, line ignored\n", s.control_path.c_str(),
                   number, problem);
    }
  }
  s.removed = removed;
  s.pending_closeall = closeall || (removed && !was_removed);
}

// Re-reads the control file if it changed. Requires s.mu.
void MaybeReload(State& s) {
  if (s.control_path.empty()) return;
  struct stat st {};
  const bool exists = ::stat(s.control_path.c_str(), &st) == 0;
  if (exists == s.file_exists) {
    if (!exists) return;
    const auto age =
        std::chrono::system_clock::now().time_since_epoch() -
        (std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec));
    const bool same = st.st_ino == s.file_stat.st_ino && st.st_size == s.file_stat.st_size &&
                      st.st_mtim.tv_sec == s.file_stat.st_mtim.tv_sec &&
                      st.st_mtim.tv_nsec == s.file_stat.st_mtim.tv_nsec;
    if (same && age > std::chrono::milliseconds(100)) return;
  }
  std::string content;
  if (exists) {
    std::ifstream f(s.control_path);
    std::ostringstream text;
    text << f.rdbuf();
    content = text.str();
  }
  const bool content_changed = content != s.content || exists != s.file_exists;
  s.file_exists = exists;
  s.file_stat = st;
  if (!content_changed) return;
  s.content = std::move(content);
  ++s.generation;
  Parse(s, s.removed);
}

// The "once" actions, run against the real module. Requires s.mu.
void RunOnceActions(State& s) {
  if (!s.initialized || (!s.pending_closeall && !s.pending_logout)) return;
  CK_FUNCTION_LIST* t = s.target;
  CK_ULONG count = 0;
  std::vector<CK_SLOT_ID> slots;
  if (t->C_GetSlotList(CK_TRUE, nullptr, &count) == CKR_OK) {
    slots.resize(count);
    if (t->C_GetSlotList(CK_TRUE, slots.data(), &count) != CKR_OK) count = 0;
  }
  for (CK_ULONG i = 0; i < count && i < slots.size(); ++i) {
    if (s.pending_logout) {
      CK_SESSION_HANDLE h = 0;
      if (t->C_OpenSession(slots[i], CKF_SERIAL_SESSION, nullptr, nullptr, &h) == CKR_OK) {
        t->C_Logout(h);
        t->C_CloseSession(h);
      }
    }
    if (s.pending_closeall) t->C_CloseAllSessions(slots[i]);
  }
  s.pending_closeall = false;
  s.pending_logout = false;
}

// Counts the call and decides its fate: CKR_OK to forward it to the real
// module, anything else to return instead. Never throws.
CK_RV Enter(int fn, Scope scope) noexcept try {
  State& s = S();
  std::unique_lock<std::mutex> lock(s.mu);
  if (s.target == nullptr) return CKR_GENERAL_ERROR;
  ++s.counts[fn];
  WriteCount(s, fn);
  MaybeReload(s);
  const bool lifecycle = fn == k_C_Initialize || fn == k_C_Finalize;
  auto matches = [&](const Rule& r) {
    return r.remaining != 0 && (r.fn == fn || (r.fn == -1 && !lifecycle));
  };

  long stall_ms = 0;
  for (Rule& r : s.rules) {
    if (r.stall && matches(r)) {
      stall_ms += r.ms;
      if (r.remaining > 0) --r.remaining;
    }
  }
  if (stall_ms > 0) {
    const unsigned long generation = s.generation;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(stall_ms);
    while (s.generation == generation && std::chrono::steady_clock::now() < deadline) {
      lock.unlock();
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          std::chrono::milliseconds(20), deadline - std::chrono::steady_clock::now()));
      lock.lock();
      MaybeReload(s);
    }
  }

  if (!lifecycle) RunOnceActions(s);
  for (Rule& r : s.rules) {
    if (!r.stall && matches(r)) {
      if (r.remaining > 0) --r.remaining;
      return r.rv;
    }
  }
  if (s.removed && scope == kToken) return CKR_TOKEN_NOT_PRESENT;
  if (s.removed && scope == kSession) return CKR_DEVICE_REMOVED;
  return CKR_OK;
} catch (...) {
  return CKR_HOST_MEMORY;
}

bool Removed() {
  std::lock_guard<std::mutex> lock(S().mu);
  return S().removed;
}

// The generic wrapper: decide, then forward to the same member of the real
// function list. Argument types come from the member's own type.
template <int kFn, Scope kScope, auto kMember>
struct Wrapper;
template <int kFn, Scope kScope, typename... Args, CK_RV (*CK_FUNCTION_LIST::*kMember)(Args...)>
struct Wrapper<kFn, kScope, kMember> {
  static CK_RV Call(Args... args) {
    if (CK_RV rv = Enter(kFn, kScope); rv != CKR_OK) return rv;
    auto* target_fn = S().target->*kMember;
    return target_fn != nullptr ? target_fn(args...) : CKR_FUNCTION_NOT_SUPPORTED;
  }
};

CK_RV Initialize(void* args) {
  if (CK_RV rv = Enter(k_C_Initialize, kAlways); rv != CKR_OK) return rv;
  const CK_RV rv = S().target->C_Initialize(args);
  if (rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    std::lock_guard<std::mutex> lock(S().mu);
    S().initialized = true;
  }
  return rv;
}

CK_RV Finalize(void* reserved) {
  if (CK_RV rv = Enter(k_C_Finalize, kAlways); rv != CKR_OK) return rv;
  const CK_RV rv = S().target->C_Finalize(reserved);
  if (rv == CKR_OK) {
    std::lock_guard<std::mutex> lock(S().mu);
    S().initialized = false;
  }
  return rv;
}

CK_RV GetSlotList(CK_BBOOL token_present, CK_SLOT_ID* slots, CK_ULONG* count) {
  if (CK_RV rv = Enter(k_C_GetSlotList, kAlways); rv != CKR_OK) return rv;
  if (token_present == CK_TRUE && Removed()) {
    if (count == nullptr) return CKR_ARGUMENTS_BAD;
    *count = 0;
    return CKR_OK;
  }
  return S().target->C_GetSlotList(token_present, slots, count);
}

CK_RV GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO* info) {
  if (CK_RV rv = Enter(k_C_GetSlotInfo, kAlways); rv != CKR_OK) return rv;
  const CK_RV rv = S().target->C_GetSlotInfo(slot, info);
  if (rv == CKR_OK && info != nullptr && Removed()) info->flags &= ~CKF_TOKEN_PRESENT;
  return rv;
}

CK_RV GetFunctionList(CK_FUNCTION_LIST** list);

// Loads the real module and sets up the stats file, once per process.
CK_RV Load() {
  State& s = S();
  const char* target_env = std::getenv("CUSTOS_FAULTP11_TARGET");
  const std::string target =
      target_env != nullptr && *target_env != '\0' ? target_env : "/usr/lib/softhsm/libsofthsm2.so";
  void* handle = ::dlopen(target.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    std::fprintf(stderr, "custos_faultp11: cannot load target module %s: %s\n", target.c_str(),
                 ::dlerror());
    return CKR_GENERAL_ERROR;
  }
  auto get = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
  CK_FUNCTION_LIST* real = nullptr;
  if (get == nullptr || get(&real) != CKR_OK || real == nullptr) {
    std::fprintf(stderr, "custos_faultp11: %s is not a PKCS#11 module\n", target.c_str());
    ::dlclose(handle);
    return CKR_GENERAL_ERROR;
  }

  std::lock_guard<std::mutex> lock(s.mu);
  const char* control = std::getenv("CUSTOS_FAULTP11_CONTROL");
  const char* stats = std::getenv("CUSTOS_FAULTP11_STATS");
  s.control_path = control != nullptr ? control : "";
  if (stats != nullptr && *stats != '\0') {
    OpenStats(s, stats);
  } else if (!s.control_path.empty()) {
    OpenStats(s, s.control_path + ".stats");
  }
  s.list.version = {2, 40};
#define FAULTP11_FILL(name, scope) \
  s.list.name = &Wrapper<k_##name, scope, &CK_FUNCTION_LIST::name>::Call;
  FAULTP11_FUNCTIONS(FAULTP11_FILL)
#undef FAULTP11_FILL
  s.list.C_Initialize = Initialize;
  s.list.C_Finalize = Finalize;
  s.list.C_GetSlotList = GetSlotList;
  s.list.C_GetSlotInfo = GetSlotInfo;
  s.list.C_GetFunctionList = GetFunctionList;
  s.target = real;
  s.target_handle = handle;
  return CKR_OK;
}

CK_RV GetFunctionList(CK_FUNCTION_LIST** list) {
  static std::once_flag once;
  static CK_RV loaded = CKR_GENERAL_ERROR;
  try {
    std::call_once(once, [] { loaded = Load(); });
  } catch (...) {
    return CKR_HOST_MEMORY;
  }
  if (loaded != CKR_OK) return loaded;
  if (list == nullptr) return CKR_ARGUMENTS_BAD;
  *list = &S().list;
  return CKR_OK;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST** list) {
  return GetFunctionList(list);
}
