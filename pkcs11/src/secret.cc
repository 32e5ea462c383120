#include "custos/pkcs11/secret.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace custos::pkcs11 {

SecretBytes::SecretBytes(std::string_view bytes) : bytes_(bytes.begin(), bytes.end()) {}

SecretBytes::~SecretBytes() { Wipe(); }

SecretBytes::SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) {
  other.Wipe();
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Wipe();
    bytes_ = std::move(other.bytes_);
    other.Wipe();
  }
  return *this;
}

SecretBytes SecretBytes::Clone() const {
  SecretBytes copy;
  copy.bytes_ = bytes_;
  return copy;
}

void SecretBytes::Wipe() {
  if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
  bytes_.clear();
  bytes_.shrink_to_fit();
}

namespace {

// Closes a file descriptor on scope exit.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

// Wipes a stack buffer on scope exit.
class WipeOnExit {
 public:
  WipeOnExit(void* data, std::size_t size) : data_(data), size_(size) {}
  ~WipeOnExit() { OPENSSL_cleanse(data_, size_); }
  WipeOnExit(const WipeOnExit&) = delete;
  WipeOnExit& operator=(const WipeOnExit&) = delete;

 private:
  void* data_;
  std::size_t size_;
};

// Drops one trailing "\n" or "\r\n".
std::size_t TrimmedLength(const std::uint8_t* data, std::size_t size) {
  if (size > 0 && data[size - 1] == '\n') --size;
  if (size > 0 && data[size - 1] == '\r') --size;
  return size;
}

}  // namespace

Result<SecretBytes> ReadPinFile(const std::string& path) {
  // Open first, then fstat the descriptor, so the checks apply to the file we
  // read (no race between stat and open). O_NONBLOCK keeps a FIFO from hanging.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    return Error(ErrorKind::kNotFound,
                 "cannot open PIN file " + path + ": " + std::strerror(errno));
  }
  FdCloser closer(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return Error(ErrorKind::kInternal,
                 "cannot stat PIN file " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return Error(ErrorKind::kPermission, "PIN file " + path + " is not a regular file");
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return Error(ErrorKind::kPermission,
                 "PIN file " + path + " is accessible by group or others; run: chmod 600 " + path);
  }
  constexpr std::size_t kMaxPin = 4096;
  if (st.st_size < 0 || static_cast<std::size_t>(st.st_size) > kMaxPin) {
    return Error(ErrorKind::kInvalidArgument, "PIN file " + path + " is larger than 4096 bytes");
  }
  // Read into a buffer that is wiped whatever happens.
  std::uint8_t buf[kMaxPin + 1];
  WipeOnExit wipe(buf, sizeof(buf));
  std::size_t got = 0;
  while (got <= kMaxPin) {
    ssize_t n = ::read(fd, buf + got, kMaxPin + 1 - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error(ErrorKind::kInternal,
                   "cannot read PIN file " + path + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  if (got > kMaxPin) {
    return Error(ErrorKind::kInvalidArgument, "PIN file " + path + " is larger than 4096 bytes");
  }
  std::size_t len = TrimmedLength(buf, got);
  if (len == 0) return Error(ErrorKind::kInvalidArgument, "PIN file " + path + " is empty");
  return SecretBytes(std::string_view(reinterpret_cast<const char*>(buf), len));
}

Result<SecretBytes> ReadPinEnv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr || *value == '\0') {
    return Error(ErrorKind::kNotFound, "environment variable " + name + " (PIN) is unset or empty");
  }
  std::size_t size = std::strlen(value);
  size = TrimmedLength(reinterpret_cast<const std::uint8_t*>(value), size);
  if (size == 0) {
    return Error(ErrorKind::kNotFound, "environment variable " + name + " (PIN) is empty");
  }
  return SecretBytes(std::string_view(value, size));
}

}  // namespace custos::pkcs11
