// `mpigate map FUNCTION [FILE|-]`: every input line an item, results on stdout, failures and
// progress on stderr.
//
// One Executor::Map with keep_going, for every chunksize, ordered or not: the map goes on past
// failures, and MapResults::index() says which line each outcome answers. SIGINT and SIGTERM
// (cli/interrupt.h) kill the map's tasks and end the command with kExitInterrupted.
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/command_support.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/interrupt.h"
#include "cli/lines.h"
#include "cli/progress.h"
#include "client/executor.h"

namespace mpigate::cli {
namespace {

// Items ended, as the progress shows them: counted by the main thread as it reads and writes
// them, and read by the thread that redraws the progress.
struct ItemCounters {
  // For display only: a reader may see one count a moment before the other.
  std::atomic<size_t> done{0};
  std::atomic<size_t> failed{0};

  void Ended(bool succeeded) {
    if (!succeeded) failed.fetch_add(1, std::memory_order_relaxed);
    done.fetch_add(1, std::memory_order_relaxed);
  }
};

enum class ProgressMode {
  kOff,       // --quiet.
  kTerminal,  // stderr is a terminal: a bar redrawn in place.
  kPlain,     // A line every kPlainProgressInterval.
};

int TerminalColumns() {
  struct winsize size;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

// Owns stderr while the map runs: a thread redraws the progress from ItemCounters, and every
// other line (failures, the summary) goes through Print() so that it never lands in the middle
// of the bar.
class ProgressReporter {
 public:
  ProgressReporter(ProgressMode mode, size_t total, std::shared_ptr<const ItemCounters> counters)
      : mode_(mode), total_(total), counters_(std::move(counters)), start_(absl::Now()) {
    rate_.Record(start_, 0);
    if (mode_ == ProgressMode::kOff) return;
    // The first frame before anything runs, so that a terminal shows the bar at once.
    if (mode_ == ProgressMode::kTerminal) {
      absl::MutexLock lock(&mu_);
      DrawLocked();
    }
    thread_ = std::thread([this] { RedrawLoop(); });
  }

  ~ProgressReporter() { StopThread(); }

  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;

  // Writes `text` and a newline to stderr, after erasing the bar if one is drawn.
  void Print(absl::string_view text) {
    absl::MutexLock lock(&mu_);
    std::string out;
    if (bar_drawn_) out = "\r\x1b[K";
    bar_drawn_ = false;
    absl::StrAppend(&out, text, "\n");
    std::fwrite(out.data(), 1, out.size(), stderr);
  }

  // Stops redrawing; on a terminal draws the bar once more with the final counts and leaves it.
  void Finish(const ProgressSnapshot& final_counts) {
    StopThread();
    if (mode_ != ProgressMode::kTerminal) return;
    absl::MutexLock lock(&mu_);
    ProgressSnapshot snapshot = final_counts;
    rate_.Record(absl::Now(), snapshot.done);
    snapshot.items_per_second = rate_.ItemsPerSecond();
    const std::string out =
        absl::StrCat("\r", FormatProgressBar(snapshot, TerminalColumns()), "\x1b[K\n");
    std::fwrite(out.data(), 1, out.size(), stderr);
    bar_drawn_ = false;
  }

  absl::Time start() const { return start_; }

 private:
  void StopThread() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

  void RedrawLoop() {
    const absl::Duration interval =
        mode_ == ProgressMode::kTerminal ? kTerminalRedrawInterval : kPlainProgressInterval;
    absl::MutexLock lock(&mu_);
    // A log gets no line at the start: a short map then prints only its summary.
    while (!mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval)) DrawLocked();
  }

  void DrawLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ProgressSnapshot snapshot;
    snapshot.total = total_;
    snapshot.done = counters_->done.load(std::memory_order_relaxed);
    snapshot.failed = counters_->failed.load(std::memory_order_relaxed);
    rate_.Record(absl::Now(), snapshot.done);
    snapshot.items_per_second = rate_.ItemsPerSecond();
    std::string out;
    if (mode_ == ProgressMode::kTerminal) {
      // Erase to the end of the line after drawing: a shorter bar leaves no tail of a longer one.
      out = absl::StrCat("\r", FormatProgressBar(snapshot, TerminalColumns()), "\x1b[K");
      bar_drawn_ = true;
    } else {
      out = absl::StrCat(FormatProgressLine(snapshot), "\n");
    }
    std::fwrite(out.data(), 1, out.size(), stderr);
  }

  const ProgressMode mode_;
  const size_t total_;
  const std::shared_ptr<const ItemCounters> counters_;
  const absl::Time start_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool bar_drawn_ ABSL_GUARDED_BY(mu_) = false;
  RateMeter rate_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;
};

// One map's run: one Executor::Map with keep_going, whatever the chunksize, so that every item's
// outcome is read, in input order or as chunks complete; MapResults::index() names each one's
// line. Results and failures are written, and counted for the progress, as they are read.
class MapRun {
 public:
  MapRun(const CommandLine& line, ProgressReporter& progress, ItemCounters& counters)
      : line_(line), progress_(progress), counters_(counters) {}

  // Submits `items`, then reads and writes every outcome, until the end, the map's timeout, or
  // an interrupt (`watcher`: the map's tasks are then killed, and the rest is not read).
  void Run(Executor& executor, std::vector<std::string> items, InterruptWatcher& watcher) {
    const size_t total = items.size();
    MapOptions options;
    options.chunksize = line_.chunksize;
    options.unordered = line_.unordered;
    options.timeout = line_.timeout;
    options.keep_going = true;
    // Shared with the stop action, which may run on the watcher's thread after this returns.
    auto results =
        std::make_shared<MapResults>(executor.Map(line_.function, std::move(items), options));
    watcher.OnInterrupt([results] { results->Kill(); });
    std::vector<bool> read(total, false);
    while (std::optional<absl::StatusOr<std::string>> result = results->Next()) {
      // Checked after Next(): the kill that woke it up comes after the mark.
      if (watcher.interrupted()) {
        interrupted_ = true;
        return;
      }
      const size_t index = results->index();
      if (index == MapResults::kNoIndex) {
        // The map's timeout, its last result: every item not read fails with it. Chunks not
        // started are cancelled already; the running ones are killed, so that the executor,
        // which waits for them when destroyed, is not held up by results nobody reads.
        results->Kill();
        const absl::Status error =
            result->status().code() == absl::StatusCode::kDeadlineExceeded
                ? absl::DeadlineExceededError(
                      absl::StrCat("map timed out after ", absl::FormatDuration(line_.timeout)))
                : result->status();
        for (size_t i = 0; i < total; ++i) {
          if (!read[i]) Failed(i, error);
        }
        return;
      }
      read[index] = true;
      if (result->ok()) {
        Succeeded(**result);
      } else {
        Failed(index, result->status());
      }
    }
  }

  size_t failed() const { return failed_; }
  int exit_code() const { return exit_code_; }
  bool interrupted() const { return interrupted_; }

 private:
  // An item succeeded, or the item of input line `index` + 1 failed. In input order a failed
  // item leaves an empty line, so that output line N still answers input line N.
  void Succeeded(const std::string& result) {
    std::fwrite(result.data(), 1, result.size(), stdout);
    std::fputc('\n', stdout);
    counters_.Ended(true);
  }
  void Failed(size_t index, const absl::Status& status) {
    if (!line_.unordered) std::fputc('\n', stdout);
    progress_.Print(absl::StrCat("mpigate: line ", index + 1, ": ", StatusText(status)));
    counters_.Ended(false);
    ++failed_;
    exit_code_ = std::max(exit_code_, ExitCodeForTaskError(status));
  }

  const CommandLine& line_;
  ProgressReporter& progress_;
  ItemCounters& counters_;
  size_t failed_ = 0;
  int exit_code_ = kExitSuccess;
  bool interrupted_ = false;
};

}  // namespace

int RunMap(const CommandLine& line) {
  absl::StatusOr<std::string> input = ReadInput(line.input_path);
  if (!input.ok()) {
    PrintDiagnostic(absl::StrCat("map: ", StatusText(input.status())));
    return kExitError;
  }
  std::vector<std::string> items = SplitLines(*input);
  input->clear();
  input->shrink_to_fit();
  const size_t total = items.size();

  absl::StatusOr<std::unique_ptr<Executor>> executor = ConnectExecutor(line, "mpigate map");
  if (!executor.ok()) {
    PrintDiagnostic(absl::StrCat("cannot reach the service: ", StatusText(executor.status())));
    return ExitCodeForServiceError(executor.status());
  }

  // A bar only where it has the line to itself: results written to the same screen would land
  // in the middle of it.
  const bool bar = isatty(STDERR_FILENO) == 1 && isatty(STDOUT_FILENO) != 1;
  const ProgressMode mode = line.quiet ? ProgressMode::kOff
                            : bar      ? ProgressMode::kTerminal
                                       : ProgressMode::kPlain;
  auto counters = std::make_shared<ItemCounters>();
  ProgressReporter progress(mode, total, counters);
  // From before the first submission until the command returns.
  InterruptWatcher watcher;
  MapRun run(line, progress, *counters);
  run.Run(**executor, std::move(items), watcher);
  const bool written = std::fflush(stdout) == 0 && std::ferror(stdout) == 0;

  if (run.interrupted()) {
    const size_t done = counters->done.load(std::memory_order_relaxed);
    progress.Finish({.total = total, .done = done, .failed = run.failed()});
    progress.Print(absl::StrCat("mpigate: interrupted: ", done, " of ", total, " items done"));
    return kExitInterrupted;
  }
  const ProgressSnapshot final_counts = {.total = total, .done = total, .failed = run.failed()};
  progress.Finish(final_counts);
  if (!written) {
    progress.Print("mpigate: map: cannot write the results to stdout");
    return kExitError;
  }
  if (mode != ProgressMode::kOff) {
    progress.Print(FormatSummary(line.function, final_counts, absl::Now() - progress.start()));
  }
  return run.exit_code();
}

}  // namespace mpigate::cli
