// Linked into a test binary (alwayslink), makes std::terminate print the stack it was called from
// before the usual message and abort: a test in CI once ended with nothing but "terminate called
// without an active exception", which says neither where nor why.
#include <execinfo.h>
#include <unistd.h>

#include <cstdlib>
#include <exception>

// The sanitizers' symbolised trace (into their log file, which tools/sanitizers/run_test.sh
// prints); absent from uninstrumented builds.
extern "C" void __sanitizer_print_stack_trace() __attribute__((weak));

namespace {

std::terminate_handler previous_handler = nullptr;

[[noreturn]] void TerminateWithTrace() {
  static constexpr char kSaid[] = "std::terminate called; its stack:\n";
  [[maybe_unused]] const ssize_t written = write(STDERR_FILENO, kSaid, sizeof(kSaid) - 1);
  if (__sanitizer_print_stack_trace != nullptr) {
    __sanitizer_print_stack_trace();
  } else {
    void* frames[64];
    backtrace_symbols_fd(frames, backtrace(frames, 64), STDERR_FILENO);
  }
  previous_handler();  // Says which exception, if any, and aborts.
  std::abort();
}

[[maybe_unused]] const bool installed = [] {
  previous_handler = std::set_terminate(TerminateWithTrace);
  return true;
}();

}  // namespace
