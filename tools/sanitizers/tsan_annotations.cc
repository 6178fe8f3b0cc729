// ThreadSanitizer builds only (.bazelrc: build:tsan --custom_malloc, which is how Bazel 4 links one
// more library into every binary and test): tells TSan how Debian's uninstrumented Abseil and gRPC
// order the threads that use them, the way an instrumented build of those libraries would.
//
// Abseil. absl::Mutex synchronizes through atomics and futexes inside libabsl_synchronization,
// which TSan never sees, so every access to state correctly guarded by an absl::Mutex would look
// like a race. An Abseil built with -fsanitize=thread announces its own locks to TSan
// (absl/base/internal/tsan_mutex_interface.h); this file does it from outside. It defines the
// out-of-line entry points of absl::Mutex, absl::CondVar and absl::Notification in the
// executable, whose definitions take precedence over the shared library's for every caller: our
// code, gRPC (whose mutexes are absl::Mutex) and Abseil's own calls through its PLT. Each tells
// TSan what the call does (__tsan_mutex_*, __tsan_acquire/release) and calls the real function,
// found with dlsym(RTLD_NEXT). Only the outermost such call on a thread is announced: Abseil's
// functions call each other (LockWhenWithTimeout calls LockWhenWithDeadline, Notification::Notify
// locks a Mutex), and announcing the inner calls too would describe one lock as two.
//
// gRPC. An operation started with grpc_call_start_batch completes, on whichever thread, through
// grpc_cq_end_op with the same tag, and is then taken from the completion queue with
// grpc_completion_queue_next or _pluck (the callback API's threads call next, then the reactor).
// In between it travels through gRPC's lock-free queues, which TSan cannot see either, so a
// reactor's StartWrite on one thread and its OnWriteDone on another (the order the callback API
// promises) would look unordered. These functions are interposed the same way and release and
// acquire on the tag along that path.
//
// Signals. TSan does not run a signal handler when the signal arrives: it queues it and runs it
// when the receiving thread next enters or leaves a function TSan intercepts. A thread blocked in
// Abseil's futex wait (the gateway's MPI thread when idle, gRPC's threads) never does, and a
// thread blocked in read() never leaves it if the handler asked for SA_RESTART, as
// mpigate-server's SIGTERM handler does: the kernel restarts the read. Either way the server would
// never drain. So, in TSan builds only, threads are started with SIGTERM and SIGINT blocked
// (pthread_create is interposed too), which leaves those signals to the main thread, and their
// handlers are installed without SA_RESTART, so that the main thread's read() returns EINTR and
// the handler runs (mpigate-server retries the read).
#include <dlfcn.h>
#include <grpc/grpc.h>
#include <pthread.h>
#include <sanitizer/tsan_interface.h>
#include <signal.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "absl/base/options.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#define MPIGATE_TSAN_STR2(x) #x
#define MPIGATE_TSAN_STR(x) MPIGATE_TSAN_STR2(x)

namespace {

// The real function named `symbol` (mangled), from the libraries loaded after this one.
template <typename Function>
Function Real(const std::string& symbol) {
  void* function = dlsym(RTLD_NEXT, symbol.c_str());
  if (function == nullptr) {
    std::fprintf(stderr, "tsan_annotations: %s not found\n", symbol.c_str());
    std::abort();
  }
  return reinterpret_cast<Function>(function);
}

// The mangled name of a member of Abseil's inline namespace, written without the namespace part:
// prefix "_ZN" (or "_ZNK" for a const member) and the rest, e.g. ("_ZN", "5Mutex4LockEv") for
// absl::Mutex::Lock(). Between them "4absl" and the inline namespace, e.g. "7debian3".
std::string Absl(const char* prefix, const char* rest) {
  const char* inline_namespace = MPIGATE_TSAN_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  return std::string(prefix) + "4absl" + std::to_string(std::strlen(inline_namespace)) +
         inline_namespace + rest;
}

thread_local int nesting = 0;

// True for the outermost announced call on this thread while it lasts.
class Outermost {
 public:
  Outermost() : outermost_(nesting++ == 0) {}
  ~Outermost() { --nesting; }
  Outermost(const Outermost&) = delete;
  Outermost& operator=(const Outermost&) = delete;
  explicit operator bool() const { return outermost_; }

 private:
  const bool outermost_;
};

// absl::Mutex is one word whose kMuWriter bit (absl/synchronization/mutex.cc) says that it is held
// exclusively; Await and CondVar::Wait release and retake the lock in the mode it is held in.
static_assert(sizeof(absl::Mutex) == sizeof(std::atomic<intptr_t>));
constexpr intptr_t kMuWriter = 0x0008;

unsigned HeldMode(const absl::Mutex* mu) {
  const auto* word = reinterpret_cast<const std::atomic<intptr_t>*>(mu);
  return (word->load(std::memory_order_relaxed) & kMuWriter) != 0 ? 0 : __tsan_mutex_read_lock;
}

// Notification::HasBeenNotified() is inline, so our instrumented code reads notified_yet_ with an
// acquire load that TSan does see; Notify() releases on that same address for it to pair with.
// The member comes right after the Mutex (absl/synchronization/notification.h).
struct NotificationLayout {
  absl::Mutex mutex;
  std::atomic<bool> notified_yet;
};
static_assert(sizeof(NotificationLayout) == sizeof(absl::Notification));

void* NotifiedFlag(const absl::Notification* notification) {
  return const_cast<char*>(reinterpret_cast<const char*>(notification)) + sizeof(absl::Mutex);
}

// Calls `call`, which takes `mu` in `mode`, announcing the lock around it if it is outermost.
// `taken` tells from the call's result whether it took the lock (TryLock may not).
template <typename Call, typename Taken>
auto Locking(absl::Mutex* mu, unsigned mode, Call call, Taken taken) {
  Outermost outer;
  if (outer) __tsan_mutex_pre_lock(mu, mode);
  auto result = call();
  if (outer) {
    __tsan_mutex_post_lock(mu, mode | (taken(result) ? 0 : __tsan_mutex_try_lock_failed), 0);
  }
  return result;
}

template <typename Call>
auto Locking(absl::Mutex* mu, unsigned mode, Call call) {
  return Locking(mu, mode, call, [](auto) { return true; });
}

// Calls `call`, which releases `mu` (held in `mode`), announcing it if it is outermost.
template <typename Call>
void Unlocking(absl::Mutex* mu, unsigned mode, Call call) {
  Outermost outer;
  if (outer) __tsan_mutex_pre_unlock(mu, mode);
  call();
  if (outer) __tsan_mutex_post_unlock(mu, mode);
}

// Calls `call`, which waits while holding `mu`: Await, CondVar::Wait. The lock is announced as
// released before the call and taken again after it, in the mode it is held in. The call itself
// runs inside the announced release, where TSan ignores what the thread does, as in every other
// announced call: it evaluates the caller's condition while actually holding the lock. (When the
// condition already holds, the real call keeps the lock; a release and retake by one thread adds
// no ordering.)
template <typename Call>
auto Waiting(absl::Mutex* mu, Call call) {
  Outermost outer;
  const unsigned mode = HeldMode(mu);
  if (outer) __tsan_mutex_pre_unlock(mu, mode);
  auto result = call();
  if (outer) {
    __tsan_mutex_post_unlock(mu, mode);
    __tsan_mutex_pre_lock(mu, mode);
    __tsan_mutex_post_lock(mu, mode, 0);
  }
  return result;
}

// What the lambdas of the void entry points return, for the helpers above.
struct Done {};

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

// --- Taking and releasing a Mutex ---

void Mutex::Lock() {
  static const auto real = Real<void (*)(Mutex*)>(Absl("_ZN", "5Mutex4LockEv"));
  Locking(this, 0, [&] {
    real(this);
    return Done{};
  });
}

void Mutex::ReaderLock() {
  static const auto real = Real<void (*)(Mutex*)>(Absl("_ZN", "5Mutex10ReaderLockEv"));
  Locking(this, __tsan_mutex_read_lock, [&] {
    real(this);
    return Done{};
  });
}

void Mutex::LockWhen(const Condition& cond) {
  static const auto real =
      Real<void (*)(Mutex*, const Condition&)>(Absl("_ZN", "5Mutex8LockWhenERKNS0_9ConditionE"));
  Locking(this, 0, [&] {
    real(this, cond);
    return Done{};
  });
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  static const auto real = Real<void (*)(Mutex*, const Condition&)>(
      Absl("_ZN", "5Mutex14ReaderLockWhenERKNS0_9ConditionE"));
  Locking(this, __tsan_mutex_read_lock, [&] {
    real(this, cond);
    return Done{};
  });
}

// The timed forms hold the lock on return whether or not the condition became true.
bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Duration)>(
      Absl("_ZN", "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  return Locking(this, 0, [&] { return real(this, cond, timeout); });
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Time)>(
      Absl("_ZN", "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  return Locking(this, 0, [&] { return real(this, cond, deadline); });
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Duration)>(
      Absl("_ZN", "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  return Locking(this, __tsan_mutex_read_lock, [&] { return real(this, cond, timeout); });
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Time)>(
      Absl("_ZN", "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  return Locking(this, __tsan_mutex_read_lock, [&] { return real(this, cond, deadline); });
}

bool Mutex::TryLock() {
  static const auto real = Real<bool (*)(Mutex*)>(Absl("_ZN", "5Mutex7TryLockEv"));
  return Locking(
      this, __tsan_mutex_try_lock, [&] { return real(this); }, [](bool locked) { return locked; });
}

bool Mutex::ReaderTryLock() {
  static const auto real = Real<bool (*)(Mutex*)>(Absl("_ZN", "5Mutex13ReaderTryLockEv"));
  return Locking(
      this, __tsan_mutex_read_lock | __tsan_mutex_try_lock, [&] { return real(this); },
      [](bool locked) { return locked; });
}

void Mutex::Unlock() {
  static const auto real = Real<void (*)(Mutex*)>(Absl("_ZN", "5Mutex6UnlockEv"));
  Unlocking(this, 0, [&] { real(this); });
}

void Mutex::ReaderUnlock() {
  static const auto real = Real<void (*)(Mutex*)>(Absl("_ZN", "5Mutex12ReaderUnlockEv"));
  Unlocking(this, __tsan_mutex_read_lock, [&] { real(this); });
}

// --- Waiting while holding a Mutex ---

void Mutex::Await(const Condition& cond) {
  static const auto real =
      Real<void (*)(Mutex*, const Condition&)>(Absl("_ZN", "5Mutex5AwaitERKNS0_9ConditionE"));
  Waiting(this, [&] {
    real(this, cond);
    return Done{};
  });
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Duration)>(
      Absl("_ZN", "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  return Waiting(this, [&] { return real(this, cond, timeout); });
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Time)>(
      Absl("_ZN", "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  return Waiting(this, [&] { return real(this, cond, deadline); });
}

void CondVar::Wait(Mutex* mu) {
  static const auto real =
      Real<void (*)(CondVar*, Mutex*)>(Absl("_ZN", "7CondVar4WaitEPNS0_5MutexE"));
  Waiting(mu, [&] {
    real(this, mu);
    return Done{};
  });
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  static const auto real = Real<bool (*)(CondVar*, Mutex*, Duration)>(
      Absl("_ZN", "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE"));
  return Waiting(mu, [&] { return real(this, mu, timeout); });
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  static const auto real = Real<bool (*)(CondVar*, Mutex*, Time)>(
      Absl("_ZN", "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE"));
  return Waiting(mu, [&] { return real(this, mu, deadline); });
}

// --- Notification: Notify() happens before every wait that sees it ---

void Notification::Notify() {
  static const auto real = Real<void (*)(Notification*)>(Absl("_ZN", "12Notification6NotifyEv"));
  Outermost outer;
  if (outer) __tsan_release(NotifiedFlag(this));
  real(this);
}

void Notification::WaitForNotification() const {
  static const auto real =
      Real<void (*)(const Notification*)>(Absl("_ZNK", "12Notification19WaitForNotificationEv"));
  Outermost outer;
  real(this);
  if (outer) __tsan_acquire(NotifiedFlag(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  static const auto real = Real<bool (*)(const Notification*, Duration)>(
      Absl("_ZNK", "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE"));
  Outermost outer;
  const bool notified = real(this, timeout);
  if (outer && notified) __tsan_acquire(NotifiedFlag(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  static const auto real = Real<bool (*)(const Notification*, Time)>(
      Absl("_ZNK", "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE"));
  Outermost outer;
  const bool notified = real(this, deadline);
  if (outer && notified) __tsan_acquire(NotifiedFlag(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl

// --- gRPC: a batch's start happens before its completion ---

// gRPC's internal completion entry point (src/core/lib/surface/completion_queue.h).
struct grpc_cq_completion;
void grpc_cq_end_op(grpc_completion_queue* cq, void* tag, absl::Status error,
                    void (*done)(void* done_arg, grpc_cq_completion* storage), void* done_arg,
                    grpc_cq_completion* storage, bool internal);

extern "C" grpc_call_error grpc_call_start_batch(grpc_call* call, const grpc_op* ops, size_t nops,
                                                 void* tag, void* reserved) {
  static const auto real =
      Real<grpc_call_error (*)(grpc_call*, const grpc_op*, size_t, void*, void*)>(
          "grpc_call_start_batch");
  __tsan_release(tag);
  return real(call, ops, nops, tag, reserved);
}

void grpc_cq_end_op(grpc_completion_queue* cq, void* tag, absl::Status error,
                    void (*done)(void* done_arg, grpc_cq_completion* storage), void* done_arg,
                    grpc_cq_completion* storage, bool internal) {
  using EndOp = void (*)(grpc_completion_queue*, void*, absl::Status,
                         void (*)(void*, grpc_cq_completion*), void*, grpc_cq_completion*, bool);
  static const auto real = Real<EndOp>(Absl("_Z14grpc_cq_end_opP21grpc_completion_queuePvN",
                                            "6StatusEPFvS1_P18grpc_cq_completionES1_S6_b"));
  // Ordered after the batch's start, and before whoever takes the completion.
  __tsan_acquire(tag);
  __tsan_release(tag);
  real(cq, tag, std::move(error), done, done_arg, storage, internal);
}

namespace {

grpc_event Taken(grpc_event event) {
  if (event.type == GRPC_OP_COMPLETE) __tsan_acquire(event.tag);
  return event;
}

}  // namespace

extern "C" grpc_event grpc_completion_queue_next(grpc_completion_queue* cq, gpr_timespec deadline,
                                                 void* reserved) {
  static const auto real = Real<grpc_event (*)(grpc_completion_queue*, gpr_timespec, void*)>(
      "grpc_completion_queue_next");
  return Taken(real(cq, deadline, reserved));
}

extern "C" grpc_event grpc_completion_queue_pluck(grpc_completion_queue* cq, void* tag,
                                                  gpr_timespec deadline, void* reserved) {
  static const auto real = Real<grpc_event (*)(grpc_completion_queue*, void*, gpr_timespec, void*)>(
      "grpc_completion_queue_pluck");
  return Taken(real(cq, tag, deadline, reserved));
}

// --- Signals: only the main thread takes SIGTERM and SIGINT, and they interrupt it ---
//
// TSan intercepts these two functions itself. Where this library is linked into the executable,
// RTLD_NEXT finds TSan's interceptors; where it is a shared library loaded after libtsan (tests
// link dynamically), TSan's interceptors come first and call these as the "real" functions, TSan's
// own start-up included. Hence no instrumentation and no function-local statics here.

namespace {

using PthreadCreate = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
using Sigaction = int (*)(int, const struct sigaction*, struct sigaction*);
PthreadCreate real_pthread_create = nullptr;
Sigaction real_sigaction = nullptr;

}  // namespace

extern "C" __attribute__((no_sanitize("thread"))) int pthread_create(pthread_t* thread,
                                                                     const pthread_attr_t* attr,
                                                                     void* (*start_routine)(void*),
                                                                     void* arg) {
  if (real_pthread_create == nullptr) {
    real_pthread_create = reinterpret_cast<PthreadCreate>(dlsym(RTLD_NEXT, "pthread_create"));
  }
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigset_t previous;
  // The new thread inherits the creating thread's mask.
  pthread_sigmask(SIG_BLOCK, &stop_signals, &previous);
  const int result = real_pthread_create(thread, attr, start_routine, arg);
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return result;
}

extern "C" __attribute__((no_sanitize("thread"))) int sigaction(int signal_number,
                                                                const struct sigaction* action,
                                                                struct sigaction* previous) {
  if (real_sigaction == nullptr) {
    real_sigaction = reinterpret_cast<Sigaction>(dlsym(RTLD_NEXT, "sigaction"));
  }
  if (action == nullptr || (signal_number != SIGTERM && signal_number != SIGINT)) {
    return real_sigaction(signal_number, action, previous);
  }
  struct sigaction interrupting = *action;
  interrupting.sa_flags &= ~SA_RESTART;
  return real_sigaction(signal_number, &interrupting, previous);
}
