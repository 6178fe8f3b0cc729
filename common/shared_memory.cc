#include "common/shared_memory.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace mpigate {
namespace {

constexpr char kShmDirectory[] = "/dev/shm";
constexpr size_t kSuffixDigits = 16;
// The random part of a gateway's prefix: 128 bits.
constexpr size_t kSecretDigits = 32;
// How many fresh names CreateSharedObject tries: another one existing already is someone else's
// doing (2^-64 by chance), so a few tries tell a squatter from bad luck.
constexpr int kCreateAttempts = 4;

// Parking: object names are the prefix and 16 hex digits; a parked object is the prefix,
// kParkedTag, its size class and a slot number, which no submitted name can be.
constexpr char kParkedTag[] = "parked-";
// Objects up to 64 KiB share the smallest class; class c holds objects of up to 2^c bytes.
constexpr int kSmallestClass = 16;
constexpr uint64_t kParkedBytesPerClass = uint64_t{8} << 20;
constexpr uint64_t kMaxParkedPerClass = 4;

// Identifies this process's PID namespace, so that a gateway only ever judges by process ids the
// objects of gateways whose ids it can see.
std::string PidNamespace() {
  struct stat ns;
  if (stat("/proc/self/ns/pid", &ns) != 0) return "0";
  return absl::StrCat(ns.st_ino);
}

bool IsLowerHex(absl::string_view digits) {
  for (const char c : digits) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

absl::StatusOr<std::string> RandomHex(size_t digits) {
  std::string hex;
  for (size_t i = 0; i < digits; i += 16) {
    uint64_t random = 0;
    if (getrandom(&random, sizeof(random), 0) != sizeof(random)) {
      return absl::InternalError(absl::StrCat("getrandom: ", std::strerror(errno)));
    }
    absl::StrAppend(&hex, absl::Hex(random, absl::kZeroPad16));
  }
  hex.resize(digits);
  return hex;
}

std::string PathOf(absl::string_view name) { return absl::StrCat("/", name); }

std::string FilePathOf(absl::string_view name) { return absl::StrCat(kShmDirectory, "/", name); }

int SizeClass(uint64_t size) {
  int size_class = kSmallestClass;
  while ((uint64_t{1} << size_class) < size) ++size_class;
  return size_class;
}

// How many objects of `size_class` a prefix parks: 0 past kMaxParkedObjectBytes.
uint64_t ParkingSlots(int size_class) {
  if ((uint64_t{1} << size_class) > kMaxParkedObjectBytes) return 0;
  return std::min(kMaxParkedPerClass, kParkedBytesPerClass >> size_class);
}

std::string ParkedName(absl::string_view prefix, int size_class, uint64_t slot) {
  return absl::StrCat(prefix, kParkedTag, size_class, "-", slot);
}

// Whether `name` is a parked object of `prefix`.
bool IsParkedName(absl::string_view name, absl::string_view prefix) {
  if (!absl::ConsumePrefix(&name, prefix) || !absl::ConsumePrefix(&name, kParkedTag)) return false;
  const size_t dash = name.find('-');
  int size_class = 0;
  uint64_t slot = 0;
  return dash != absl::string_view::npos && absl::SimpleAtoi(name.substr(0, dash), &size_class) &&
         absl::SimpleAtoi(name.substr(dash + 1), &slot) && size_class >= kSmallestClass &&
         slot < ParkingSlots(size_class);
}

// The objects a gateway's prefix covers: those in use and those parked.
bool IsOwnedBy(absl::string_view name, absl::string_view prefix) {
  return IsSharedObjectName(name, prefix) || IsParkedName(name, prefix);
}

// Renames `from` to `to` unless `to` exists. Atomic, so that two processes racing for one parked
// object or one free slot never both win.
bool RenameIfAbsent(absl::string_view from, absl::string_view to) {
  return renameat2(AT_FDCWD, FilePathOf(from).c_str(), AT_FDCWD, FilePathOf(to).c_str(),
                   RENAME_NOREPLACE) == 0;
}

// Whether `st` is an object this process may trust: a regular file of its effective user that
// no other user may open. Anything else under one of our names was put there by someone else.
bool IsPrivate(const struct stat& st) {
  return S_ISREG(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & 077) == 0;
}

absl::Status NotPrivateError(absl::string_view name, const struct stat& st) {
  return absl::DataLossError(absl::StrFormat(
      "shared memory object %s is not private to user %d (owner %d, mode %04o, %s): another "
      "user may have read or written it, so it is not used",
      name, geteuid(), st.st_uid, st.st_mode & 07777,
      S_ISREG(st.st_mode) ? "a regular file" : "not a regular file"));
}

// Takes a parked object of `prefix` for `size` bytes, renamed to `name`, opened for writing;
// -1 if none is parked. A parked name that holds anything but a private object of ours (another
// user made it, e.g. to be handed our next result) is removed, never written.
int TakeParked(absl::string_view prefix, uint64_t size, absl::string_view name) {
  const int size_class = SizeClass(size);
  for (uint64_t slot = 0; slot < ParkingSlots(size_class); ++slot) {
    if (!RenameIfAbsent(ParkedName(prefix, size_class, slot), name)) continue;
    // O_NONBLOCK: a FIFO put there must not block the open.
    const int fd = shm_open(PathOf(name).c_str(), O_WRONLY | O_CLOEXEC | O_NONBLOCK, 0);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && IsPrivate(st)) return fd;
    if (fd >= 0) close(fd);
    shm_unlink(PathOf(name).c_str());
  }
  return -1;
}

absl::Status ErrnoStatus(absl::string_view what, absl::string_view name, int error) {
  const std::string message =
      absl::StrCat(what, " shared memory object ", name, ": ", std::strerror(error));
  if (error == ENOSPC || error == ENOMEM || error == EMFILE || error == ENFILE) {
    return absl::ResourceExhaustedError(message);
  }
  if (error == ENOENT) return absl::DataLossError(message);
  if (error == EACCES || error == EPERM) return absl::PermissionDeniedError(message);
  return absl::InternalError(message);
}

// Opens object `name` for reading and checks that it is private to this user and holds `size`
// bytes. The checks are of the open descriptor, so that no rename between them and the reading
// can swap the object.
absl::StatusOr<int> OpenSized(absl::string_view name, uint64_t size) {
  // O_NONBLOCK: a FIFO put there must not block the open.
  const int fd = shm_open(PathOf(name).c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
  if (fd < 0) return ErrnoStatus("cannot open", name, errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int error = errno;
    close(fd);
    return ErrnoStatus("cannot stat", name, error);
  }
  if (!IsPrivate(st)) {
    close(fd);
    return NotPrivateError(name, st);
  }
  if (static_cast<uint64_t>(st.st_size) != size) {
    close(fd);
    return absl::DataLossError(
        absl::StrCat("shared memory object ", name, " holds ", st.st_size, " bytes, not ", size));
  }
  return fd;
}

// The process id in an object name of any gateway of this PID namespace, or 0.
pid_t GatewayOf(absl::string_view name, absl::string_view namespace_prefix) {
  if (!absl::ConsumePrefix(&name, namespace_prefix)) return 0;
  const size_t dash = name.find('-');
  if (dash == absl::string_view::npos) return 0;
  int pid = 0;
  if (!absl::SimpleAtoi(name.substr(0, dash), &pid) || pid <= 0) return 0;
  // "<pid>-<secret>-": the gateway's own prefix, past the namespace's.
  const size_t prefix_length = dash + 1 + kSecretDigits + 1;
  if (name.size() < prefix_length || name[prefix_length - 1] != '-' ||
      !IsLowerHex(name.substr(dash + 1, kSecretDigits)) ||
      !IsOwnedBy(name, name.substr(0, prefix_length))) {
    return 0;
  }
  return pid;
}

std::string NamespacePrefix() { return absl::StrCat("mpigate-", PidNamespace(), "-"); }

// Removes this user's objects in /dev/shm whose name `doomed` picks; returns how many. Another
// user's are left alone: /dev/shm is sticky, so none can take the name of one of ours between the
// look and the removal.
template <typename Doomed>
int UnlinkWhere(Doomed doomed) {
  DIR* directory = opendir(kShmDirectory);
  if (directory == nullptr) return 0;
  int removed = 0;
  while (const dirent* entry = readdir(directory)) {
    const absl::string_view name = entry->d_name;
    struct stat st;
    if (!doomed(name) || fstatat(dirfd(directory), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        st.st_uid != geteuid()) {
      continue;
    }
    if (shm_unlink(PathOf(name).c_str()) == 0) ++removed;
  }
  closedir(directory);
  return removed;
}

}  // namespace

std::string SharedMemoryDomain() {
  if (const char* setting = std::getenv("MPIGATE_SHARED_MEMORY");
      setting != nullptr && absl::string_view(setting) == "off") {
    return "";
  }
  struct stat shm;
  if (stat(kShmDirectory, &shm) != 0) return "";
  std::ifstream boot_id_file("/proc/sys/kernel/random/boot_id");
  std::string boot_id;
  std::getline(boot_id_file, boot_id);
  if (boot_id.empty()) return "";
  return absl::StrCat(absl::StripAsciiWhitespace(boot_id), "/", shm.st_dev, ":", shm.st_ino, "/",
                      geteuid());
}

absl::StatusOr<std::string> NewSharedObjectPrefix(pid_t gateway_pid) {
  absl::StatusOr<std::string> secret = RandomHex(kSecretDigits);
  if (!secret.ok()) return secret.status();
  return absl::StrCat(NamespacePrefix(), gateway_pid, "-", *secret, "-");
}

bool IsSharedObjectName(absl::string_view name, absl::string_view prefix) {
  return absl::ConsumePrefix(&name, prefix) && name.size() == kSuffixDigits && IsLowerHex(name);
}

absl::StatusOr<std::string> CreateSharedObject(absl::string_view prefix, absl::string_view bytes) {
  std::string name;
  int parked = -1;
  int fd = -1;
  for (int attempt = 0; fd < 0 && attempt < kCreateAttempts; ++attempt) {
    absl::StatusOr<std::string> suffix = RandomHex(kSuffixDigits);
    if (!suffix.ok()) return suffix.status();
    name = absl::StrCat(prefix, *suffix);
    parked = TakeParked(prefix, bytes.size(), name);
    // O_EXCL: never a name that exists, which may be another user's object.
    fd = parked >= 0
             ? parked
             : shm_open(PathOf(name).c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) return ErrnoStatus("cannot create", name, errno);
  }
  if (fd < 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("cannot create a shared memory object with prefix ", prefix, ": ",
                     kCreateAttempts, " random names in a row exist already"));
  }
  absl::Cleanup close_fd = [fd] { close(fd); };
  const auto fail = [&name](absl::string_view what, int error) {
    shm_unlink(PathOf(name).c_str());
    return ErrnoStatus(what, name, error);
  };
  // write(2) rather than a mapping: the kernel fills the pages without a fault per page.
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("cannot write", n < 0 ? errno : ENOSPC);
    written += static_cast<size_t>(n);
  }
  // A parked object may have held more.
  if (parked >= 0 && ftruncate(fd, static_cast<off_t>(bytes.size())) != 0) {
    return fail("cannot resize", errno);
  }
  return name;
}

std::string LargeCopy(absl::string_view bytes) {
  constexpr size_t kHugePage = size_t{2} << 20;
  std::string copy;
  // Room first, untouched: malloc maps a buffer this large afresh, and the advice must come
  // before its pages are.
  copy.reserve(bytes.size());
  if (bytes.size() >= 2 * kHugePage) {
    const uintptr_t begin = reinterpret_cast<uintptr_t>(copy.data());
    const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
    const uintptr_t last = (begin + bytes.size()) & ~(kHugePage - 1);
    if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
  copy.assign(bytes.data(), bytes.size());
  return copy;
}

absl::StatusOr<std::string> ReadSharedObject(absl::string_view name, uint64_t size) {
  absl::StatusOr<SharedMapping> mapping = SharedMapping::Map(name, size);
  if (!mapping.ok()) return mapping.status();
  return LargeCopy(mapping->bytes());
}

absl::StatusOr<SharedMapping> SharedMapping::Map(absl::string_view name, uint64_t size) {
  absl::StatusOr<int> fd = OpenSized(name, size);
  if (!fd.ok()) return fd.status();
  absl::Cleanup close_fd = [fd = *fd] { close(fd); };
  if (size == 0) return SharedMapping(nullptr, 0);
  // Populated at once: one call maps every page instead of a fault per page.
  void* data = mmap(nullptr, size, PROT_READ, MAP_SHARED | MAP_POPULATE, *fd, 0);
  if (data == MAP_FAILED) return ErrnoStatus("cannot map", name, errno);
  return SharedMapping(static_cast<const char*>(data), size);
}

SharedMapping::SharedMapping(SharedMapping&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

SharedMapping& SharedMapping::operator=(SharedMapping&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) munmap(const_cast<char*>(data_), size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SharedMapping::~SharedMapping() {
  if (data_ != nullptr) munmap(const_cast<char*>(data_), size_);
}

void UnlinkSharedObject(absl::string_view name) { shm_unlink(PathOf(name).c_str()); }

void ReleaseSharedObject(absl::string_view name) {
  struct stat st;
  if (name.size() <= kSuffixDigits || lstat(FilePathOf(name).c_str(), &st) != 0) return;
  // Not ours: never parked for a writer to take over.
  if (!IsPrivate(st)) return UnlinkSharedObject(name);
  const absl::string_view prefix = name.substr(0, name.size() - kSuffixDigits);
  const int size_class = SizeClass(static_cast<uint64_t>(st.st_size));
  for (uint64_t slot = 0; slot < ParkingSlots(size_class); ++slot) {
    if (RenameIfAbsent(name, ParkedName(prefix, size_class, slot))) return;
  }
  UnlinkSharedObject(name);
}

SharedObjectReaper::SharedObjectReaper() : thread_([this] { Loop(); }) {}

SharedObjectReaper::~SharedObjectReaper() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void SharedObjectReaper::Release(std::string name) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(name));
}

void SharedObjectReaper::Loop() {
  std::vector<std::string> names;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      const auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;
      names.swap(queue_);
    }
    for (const std::string& name : names) ReleaseSharedObject(name);
    names.clear();
  }
}

int UnlinkSharedObjects(absl::string_view prefix) {
  return UnlinkWhere([prefix](absl::string_view name) { return IsOwnedBy(name, prefix); });
}

int UnlinkOrphanedSharedObjects() {
  const std::string namespace_prefix = NamespacePrefix();
  return UnlinkWhere([&namespace_prefix](absl::string_view name) {
    const pid_t gateway = GatewayOf(name, namespace_prefix);
    return gateway > 0 && kill(gateway, 0) != 0 && errno == ESRCH;
  });
}

}  // namespace mpigate
