// PIN and passphrase files for the officer console.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "custos/client/officer_signer.h"

namespace custos::client {
namespace {

// Secrets longer than this are not PINs or passphrases.
constexpr std::size_t kMaxSecretFileBytes = 4096;

Error Invalid(std::string message) { return Error(ErrorCode::kInvalidConfig, std::move(message)); }

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

// Closes the descriptor on every path.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

Result<SecretText> ReadSecretFile(const std::string& path, std::string_view what) {
  const std::string label = std::string(what) + " " + path;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) return Invalid("cannot open " + label + ": " + ErrnoText(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Invalid("cannot stat " + label + ": " + ErrnoText(errno));
  if (!S_ISREG(st.st_mode)) return Invalid(label + " is not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Invalid(label + " has mode " + mode +
                   ": group and others must have no access (chmod 600 " + path + ")");
  }
  // Read into a buffer that is wiped, not into a growing std::string.
  std::string buf(kMaxSecretFileBytes + 1, '\0');
  std::size_t got = 0;
  while (got < buf.size()) {
    const ssize_t n = ::read(fd.get(), buf.data() + got, buf.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      SecretText wipe(std::move(buf));
      return Invalid("cannot read " + label + ": " + ErrnoText(err));
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  std::size_t end = 0;
  while (end < got && buf[end] != '\n') ++end;
  if (end == got && got > kMaxSecretFileBytes) {
    SecretText wipe(std::move(buf));
    return Invalid(label + " is longer than " + std::to_string(kMaxSecretFileBytes) + " bytes");
  }
  if (end > 0 && buf[end - 1] == '\r') --end;
  if (end == 0) {
    SecretText wipe(std::move(buf));
    return Invalid(label + " is empty: its first line must hold the secret");
  }
  // Wipe everything past the secret, then hand the buffer over.
  std::memset(buf.data() + end, 0, buf.size() - end);
  buf.resize(end);
  return SecretText(std::move(buf));
}

}  // namespace custos::client
