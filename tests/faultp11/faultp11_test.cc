// Drives libcustos_faultp11.so in-process against a real SoftHSM token: call
// counters, closeall, logout, removed, stall and fail under many threads.
#include <dlfcn.h>
#include <p11-kit/pkcs11.h>
#include <stdlib.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kUserPin[] = "5678";  // throwaway token made by this test

class FaultP11Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string tmpl = (fs::temp_directory_path() / "custos-faultp11-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = new fs::path(tmpl);
    fs::create_directory(*dir_ / "tokens");
    std::ofstream(*dir_ / "softhsm2.conf")
        << "directories.tokendir = " << (*dir_ / "tokens").string()
        << "\nobjectstore.backend = file\nlog.level = ERROR\n";
    setenv("SOFTHSM2_CONF", (*dir_ / "softhsm2.conf").c_str(), 1);
    setenv("CUSTOS_FAULTP11_TARGET", CUSTOS_SOFTHSM2_MODULE, 1);
    setenv("CUSTOS_FAULTP11_CONTROL", (*dir_ / "control").c_str(), 1);
    unsetenv("CUSTOS_FAULTP11_STATS");
    const std::string init = std::string(CUSTOS_SOFTHSM2_UTIL) +
                             " --init-token --free --label faultp11 --so-pin 1234 --pin " +
                             kUserPin + " > /dev/null";
    ASSERT_EQ(std::system(init.c_str()), 0);
    WriteControl("");

    void* handle = dlopen(CUSTOS_FAULTP11_PATH, RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(handle, nullptr) << dlerror();
    auto get = reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle, "C_GetFunctionList"));
    ASSERT_NE(get, nullptr);
    ASSERT_EQ(get(&p11_), CKR_OK);
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    ASSERT_EQ(p11_->C_Initialize(&args), CKR_OK);
    // SoftHSM lists the initialised token and a fresh empty one.
    CK_ULONG count = 0;
    ASSERT_EQ(p11_->C_GetSlotList(CK_TRUE, nullptr, &count), CKR_OK);
    std::vector<CK_SLOT_ID> slots(count);
    ASSERT_EQ(p11_->C_GetSlotList(CK_TRUE, slots.data(), &count), CKR_OK);
    token_slots_ = count;
    for (CK_SLOT_ID slot : slots) {
      CK_TOKEN_INFO info{};
      ASSERT_EQ(p11_->C_GetTokenInfo(slot, &info), CKR_OK);
      if (std::string(reinterpret_cast<char*>(info.label), 8) == "faultp11") slot_ = slot;
    }
  }

  static void TearDownTestSuite() {
    if (p11_ != nullptr) p11_->C_Finalize(nullptr);
    std::error_code ec;
    if (dir_ != nullptr) fs::remove_all(*dir_, ec);
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override { WriteControl(""); }

  static void WriteControl(const std::string& text) {
    std::ofstream(*dir_ / "control", std::ios::trunc) << text;
  }

  static unsigned long long Count(const std::string& function) {
    std::ifstream stats(*dir_ / "control.stats");
    std::string name;
    unsigned long long n = 0;
    while (stats >> name >> n) {
      if (name == function) return n;
    }
    return ~0ull;
  }

  static CK_SESSION_HANDLE Open() {
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    EXPECT_EQ(p11_->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h),
              CKR_OK);
    return h;
  }

  static void Login(CK_SESSION_HANDLE h) {
    CK_RV rv =
        p11_->C_Login(h, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(const_cast<char*>(kUserPin)),
                      sizeof(kUserPin) - 1);
    EXPECT_TRUE(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) << rv;
  }

  static CK_STATE State(CK_SESSION_HANDLE h, CK_RV* rv) {
    CK_SESSION_INFO info{};
    *rv = p11_->C_GetSessionInfo(h, &info);
    return info.state;
  }

  static fs::path* dir_;
  static CK_FUNCTION_LIST* p11_;
  static CK_SLOT_ID slot_;
  static CK_ULONG token_slots_;
};

fs::path* FaultP11Test::dir_ = nullptr;
CK_FUNCTION_LIST* FaultP11Test::p11_ = nullptr;
CK_SLOT_ID FaultP11Test::slot_ = 0;
CK_ULONG FaultP11Test::token_slots_ = 0;

TEST_F(FaultP11Test, CountsEveryCall) {
  const unsigned long long before = Count("C_FindObjectsInit");
  CK_SESSION_HANDLE h = Open();
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(p11_->C_FindObjectsInit(h, nullptr, 0), CKR_OK);
    ASSERT_EQ(p11_->C_FindObjectsFinal(h), CKR_OK);
  }
  EXPECT_EQ(Count("C_FindObjectsInit"), before + 3);
  EXPECT_EQ(Count("C_Initialize"), 1u);
  EXPECT_EQ(Count("C_Sign"), 0u);
  p11_->C_CloseSession(h);
}

TEST_F(FaultP11Test, FailWithCountThenForward) {
  CK_SESSION_HANDLE h = Open();
  WriteControl(
      "# two faults, then the real module\nfail C_GetSessionInfo CKR_DEVICE_ERROR count=2\n");
  CK_RV rv;
  State(h, &rv);
  EXPECT_EQ(rv, CKR_DEVICE_ERROR);
  State(h, &rv);
  EXPECT_EQ(rv, CKR_DEVICE_ERROR);
  State(h, &rv);
  EXPECT_EQ(rv, CKR_OK);
  p11_->C_CloseSession(h);
}

TEST_F(FaultP11Test, CloseAllInvalidatesRealSessions) {
  CK_SESSION_HANDLE h = Open();
  WriteControl("closeall\n");
  CK_RV rv;
  State(h, &rv);
  EXPECT_EQ(rv, CKR_SESSION_HANDLE_INVALID);
  // Fires once per change: a new session lives.
  CK_SESSION_HANDLE h2 = Open();
  State(h2, &rv);
  EXPECT_EQ(rv, CKR_OK);
  p11_->C_CloseSession(h2);
}

TEST_F(FaultP11Test, LogoutLogsTheApplicationOut) {
  CK_SESSION_HANDLE h = Open();
  Login(h);
  CK_RV rv;
  EXPECT_EQ(State(h, &rv), CKS_RW_USER_FUNCTIONS);
  WriteControl("logout\n");
  EXPECT_EQ(State(h, &rv), CKS_RW_PUBLIC_SESSION);
  EXPECT_EQ(rv, CKR_OK);
  p11_->C_CloseSession(h);
}

TEST_F(FaultP11Test, RemovedTokenAndItsReturn) {
  CK_SESSION_HANDLE h = Open();
  WriteControl("removed\n");
  CK_RV rv;
  State(h, &rv);
  EXPECT_EQ(rv, CKR_DEVICE_REMOVED);
  CK_ULONG count = 0;
  ASSERT_EQ(p11_->C_GetSlotList(CK_TRUE, nullptr, &count), CKR_OK);
  EXPECT_EQ(count, 0u);
  CK_SLOT_INFO slot_info{};
  ASSERT_EQ(p11_->C_GetSlotInfo(slot_, &slot_info), CKR_OK);
  EXPECT_EQ(slot_info.flags & CKF_TOKEN_PRESENT, 0u);
  CK_TOKEN_INFO token_info{};
  EXPECT_EQ(p11_->C_GetTokenInfo(slot_, &token_info), CKR_TOKEN_NOT_PRESENT);
  CK_SESSION_HANDLE h2 = CK_INVALID_HANDLE;
  EXPECT_EQ(p11_->C_OpenSession(slot_, CKF_SERIAL_SESSION, nullptr, nullptr, &h2),
            CKR_TOKEN_NOT_PRESENT);

  WriteControl("# token is back\n");
  ASSERT_EQ(p11_->C_GetSlotList(CK_TRUE, nullptr, &count), CKR_OK);
  EXPECT_EQ(count, token_slots_);
  State(h, &rv);
  EXPECT_EQ(rv, CKR_SESSION_HANDLE_INVALID);  // closed on removal
  h2 = Open();
  State(h2, &rv);
  EXPECT_EQ(rv, CKR_OK);
  p11_->C_CloseSession(h2);
}

TEST_F(FaultP11Test, StallDelaysThenStops) {
  CK_SESSION_HANDLE h = Open();
  WriteControl("stall C_GetSessionInfo 300 count=1\n");
  CK_RV rv;
  auto start = Clock::now();
  State(h, &rv);
  EXPECT_EQ(rv, CKR_OK);
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(300));
  start = Clock::now();
  State(h, &rv);
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(250));
  p11_->C_CloseSession(h);
}

TEST_F(FaultP11Test, StallEndsWhenTheFileChanges) {
  CK_SESSION_HANDLE h = Open();
  WriteControl("stall * 20000\n");
  std::thread rewrite([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    WriteControl("");
  });
  CK_RV rv;
  const auto start = Clock::now();
  State(h, &rv);
  rewrite.join();
  EXPECT_EQ(rv, CKR_OK);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  p11_->C_CloseSession(h);
}

TEST_F(FaultP11Test, FailCountIsExactUnderThreads) {
  CK_SESSION_HANDLE h = Open();
  const unsigned long long before = Count("C_GetSessionInfo");
  WriteControl("fail C_GetSessionInfo CKR_DEVICE_ERROR count=50\n");
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        CK_RV rv;
        State(h, &rv);
        if (rv == CKR_DEVICE_ERROR) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 50);
  EXPECT_EQ(Count("C_GetSessionInfo"), before + 400);
  p11_->C_CloseSession(h);
}

}  // namespace
