// `mpigate map FUNCTION [FILE|-]`: every input line an item, results on stdout, failures and
// progress on stderr.
//
// With --chunksize=1 every item is a task of its own (Executor::Submit: the client library batches
// them onto the session's stream), so every item's outcome is known and the map goes on past
// failures. Larger chunks go through Executor::Map, one call per chunk: Map ends a chunk's results
// at its first error, as Python's map does, so one failure costs only the rest of its own chunk.
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
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/command_support.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/lines.h"
#include "cli/progress.h"
#include "client/executor.h"

namespace mpigate::cli {
namespace {

// Items ended, as the progress shows them. Counted where outcomes arrive (done callbacks on the
// executor's reader thread, or the main thread for chunks), so the bar moves with the pool and
// not with the order in which results are written.
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

// One map's run: writes results and reports failures as the outcomes are read.
class MapRun {
 public:
  MapRun(const CommandLine& line, Executor& executor, std::vector<std::string> items,
         ProgressReporter& progress, std::shared_ptr<ItemCounters> counters)
      : line_(line),
        executor_(executor),
        items_(std::move(items)),
        progress_(progress),
        counters_(std::move(counters)),
        deadline_(line.timeout == absl::InfiniteDuration() ? absl::InfiniteFuture()
                                                           : absl::Now() + line.timeout) {}

  // Runs the whole map: submits, reads every outcome, writes results.
  void Run() {
    if (line_.chunksize > 1) {
      RunChunks();
    } else if (line_.unordered) {
      RunTasksUnordered();
    } else {
      RunTasksOrdered();
    }
  }

  size_t failed() const { return failed_; }
  int exit_code() const { return exit_code_; }

 private:
  // An item succeeded, or the item of input line `index` + 1 failed. Counting it for the progress
  // is the caller's. In input order a failed item leaves an empty line, so that output line N
  // still answers input line N.
  void Succeeded(const std::string& result) {
    std::fwrite(result.data(), 1, result.size(), stdout);
    std::fputc('\n', stdout);
  }
  void Failed(size_t index, const absl::Status& status) {
    if (!line_.unordered) std::fputc('\n', stdout);
    progress_.Print(absl::StrCat("mpigate: line ", index + 1, ": ", StatusText(status)));
    ++failed_;
    exit_code_ = std::max(exit_code_, ExitCodeForTaskError(status));
  }
  // Item `index` was never read: the error of an earlier item, at `ended_at`, ended its chunk's
  // results. Its status code says which error that was.
  void NotRead(size_t index, size_t ended_at, absl::StatusCode ended_code) {
    std::fputc('\n', stdout);
    progress_.Print(absl::StrCat("mpigate: line ", index + 1,
                                 ": not read: its chunk ended at line ", ended_at + 1, " (",
                                 absl::StatusCodeToString(ended_code), ")"));
    ++failed_;
    exit_code_ = std::max(exit_code_, ExitCodeForTaskError(absl::Status(ended_code, "")));
  }

  absl::Status TimedOut() const {
    return absl::DeadlineExceededError(
        absl::StrCat("map timed out after ", absl::FormatDuration(line_.timeout)));
  }

  // How long a Result() may wait now to honour the map's deadline.
  absl::Duration Remaining() const {
    if (deadline_ == absl::InfiniteFuture()) return absl::InfiniteDuration();
    return std::max(deadline_ - absl::Now(), absl::ZeroDuration());
  }

  std::vector<Future> SubmitAll() {
    std::vector<Future> futures;
    futures.reserve(items_.size());
    for (std::string& item : items_) {
      futures.push_back(executor_.Submit(line_.function, std::move(item)));
      futures.back().AddDoneCallback([counters = counters_](const Future& future) {
        counters->Ended(future.Exception(absl::ZeroDuration()).ok());
      });
    }
    items_.clear();
    return futures;
  }

  // After the deadline: the tasks that will never be read are cancelled if queued and killed if
  // running, so that the executor, which waits for them when destroyed, is not held up.
  void StopUnfinished(std::vector<Future>& futures) {
    executor_.Shutdown(/*wait=*/false, /*cancel_futures=*/true);
    for (Future& future : futures) {
      if (!future.Done()) future.Kill();
    }
  }

  void Write(size_t index, const Future& future) {
    absl::StatusOr<std::string> result = future.Result(absl::ZeroDuration());
    if (result.ok()) {
      Succeeded(*result);
    } else {
      Failed(index, result.status());
    }
  }

  void RunTasksOrdered() {
    std::vector<Future> futures = SubmitAll();
    // Set at the deadline: the items not done then, reported as timed out whatever they do later.
    std::vector<bool> timed_out;
    for (size_t i = 0; i < futures.size(); ++i) {
      if (timed_out.empty() && !futures[i].Wait(Remaining())) {
        timed_out.resize(futures.size(), false);
        for (size_t j = i; j < futures.size(); ++j) timed_out[j] = !futures[j].Done();
        StopUnfinished(futures);
      }
      if (!timed_out.empty() && timed_out[i]) {
        Failed(i, TimedOut());
        continue;
      }
      Write(i, futures[i]);
    }
  }

  void RunTasksUnordered() {
    std::vector<Future> futures = SubmitAll();
    absl::flat_hash_map<Future, size_t> index_of;
    index_of.reserve(futures.size());
    for (size_t i = 0; i < futures.size(); ++i) index_of.emplace(futures[i], i);
    std::vector<bool> written(futures.size(), false);
    bool deadline_passed = false;
    for (absl::StatusOr<Future> done : AsCompleted(futures, Remaining())) {
      if (!done.ok()) {
        deadline_passed = true;
        break;
      }
      const size_t index = index_of.at(*done);
      written[index] = true;
      Write(index, *done);
    }
    if (!deadline_passed) return;
    std::vector<bool> timed_out(futures.size(), false);
    for (size_t i = 0; i < futures.size(); ++i) timed_out[i] = !written[i] && !futures[i].Done();
    StopUnfinished(futures);
    for (size_t i = 0; i < futures.size(); ++i) {
      if (written[i]) continue;
      if (timed_out[i]) {
        Failed(i, TimedOut());
      } else {
        Write(i, futures[i]);
      }
    }
  }

  void RunChunks() {
    const size_t chunksize = static_cast<size_t>(line_.chunksize);
    MapOptions options;
    options.chunksize = line_.chunksize;
    options.timeout = line_.timeout;
    std::vector<MapResults> chunks;
    for (size_t first = 0; first < items_.size(); first += chunksize) {
      const size_t end = std::min(first + chunksize, items_.size());
      std::vector<std::string> inputs(std::make_move_iterator(items_.begin() + first),
                                      std::make_move_iterator(items_.begin() + end));
      chunks.push_back(executor_.Map(line_.function, std::move(inputs), options));
    }
    const size_t total = items_.size();
    items_.clear();
    for (size_t chunk = 0; chunk < chunks.size(); ++chunk) {
      const size_t first = chunk * chunksize;
      const size_t end = std::min(first + chunksize, total);
      // The line whose error ended this chunk's results, if one did.
      std::optional<size_t> ended_at;
      absl::StatusCode ended_code = absl::StatusCode::kOk;
      for (size_t i = first; i < end; ++i) {
        std::optional<absl::StatusOr<std::string>> result =
            ended_at.has_value() ? std::nullopt : chunks[chunk].Next();
        if (result.has_value() && result->ok()) {
          Succeeded(**result);
          counters_->Ended(true);
          continue;
        }
        counters_->Ended(false);
        if (result.has_value()) {
          ended_at = i;
          ended_code = result->status().code();
          Failed(i, result->status());
        } else {
          NotRead(i, *ended_at, ended_code);
        }
      }
    }
    // Chunks left queued after a timeout are not waited for.
    executor_.Shutdown(/*wait=*/false, /*cancel_futures=*/true);
  }

  const CommandLine& line_;
  Executor& executor_;
  std::vector<std::string> items_;
  ProgressReporter& progress_;
  const std::shared_ptr<ItemCounters> counters_;
  const absl::Time deadline_;
  size_t failed_ = 0;
  int exit_code_ = kExitSuccess;
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
  MapRun run(line, **executor, std::move(items), progress, counters);
  run.Run();
  const bool written = std::fflush(stdout) == 0 && std::ferror(stdout) == 0;

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
