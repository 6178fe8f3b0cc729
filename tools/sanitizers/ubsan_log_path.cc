// The asan-ubsan config only (.bazelrc: build:asan-ubsan --custom_malloc, which is how Bazel 4
// links one more library into every binary and test): UBSan's reports go where UBSAN_OPTIONS'
// log_path says, as ASan's do.
//
// With both sanitizers GCC links two runtimes, libasan and libubsan, each with its own copy of the
// shared sanitizer code. libubsan sets its report path through __sanitizer_set_report_path, which
// resolves to libasan's copy (loaded first), so its own copy keeps writing to stderr. A finding in
// an MPI worker would then kill the worker with the report lost in Open MPI's output, unseen by
// tools/sanitizers/run_test.sh, which collects the log files. This hands libubsan's own copy the
// path at startup.
#include <dlfcn.h>

#include <cstdlib>
#include <string>

namespace {

__attribute__((constructor)) void SetUbsanReportPath() {
  const char* options = std::getenv("UBSAN_OPTIONS");
  if (options == nullptr) return;
  // run_test.sh appends ":log_path=PATH"; the last value wins, as in the runtime's own parsing.
  const std::string all = options;
  const size_t at = all.rfind("log_path=");
  if (at == std::string::npos) return;
  const size_t start = at + 9;
  const std::string path = all.substr(start, all.find(':', start) - start);
  void* ubsan = dlopen("libubsan.so.1", RTLD_NOLOAD | RTLD_LAZY);
  if (ubsan == nullptr) return;
  // dlsym on libubsan's own handle finds its definition, not the one libasan interposes.
  if (auto* set_report_path =
          reinterpret_cast<void (*)(const char*)>(dlsym(ubsan, "__sanitizer_set_report_path"))) {
    set_report_path(path.c_str());
  }
  dlclose(ubsan);
}

}  // namespace
