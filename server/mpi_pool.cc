#include "server/mpi_pool.h"

#include <cstdio>
#include <map>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "wire/frames.pb.h"
#include "wire/mpi_frames.h"
#include "wire/poll_backoff.h"

namespace mpigate::server {
namespace {

std::optional<int> UniverseSize() {
  int* value = nullptr;
  int found = 0;
  if (MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_UNIVERSE_SIZE, &value, &found) != MPI_SUCCESS ||
      !found || value == nullptr) {
    return std::nullopt;
  }
  return *value;
}

// A worker's registered functions, as a comparable list.
std::string FunctionNames(const wire::HelloFrame& hello) {
  std::vector<std::string> names;
  for (const wire::FunctionEntry& function : hello.functions()) names.push_back(function.name());
  return absl::StrJoin(names, ",");
}

wire::ResultFrame FailedResult(uint64_t task_key, const absl::Status& status) {
  wire::ResultFrame result;
  result.set_task_key(task_key);
  result.mutable_error()->set_code(static_cast<int>(status.code()));
  result.mutable_error()->set_message(std::string(status.message()));
  return result;
}

}  // namespace

absl::StatusOr<int> ResolveWorkerCount(int requested, const char* env,
                                       std::optional<int> universe_size, int world_size,
                                       int cores) {
  if (requested > 0) return requested;
  if (env != nullptr && env[0] != '\0') {
    int from_env = 0;
    if (!absl::SimpleAtoi(env, &from_env) || from_env <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("MPIGATE_MAX_WORKERS must be a positive integer, got '", env, "'"));
    }
    return from_env;
  }
  if (universe_size.has_value() && *universe_size > world_size) {
    return *universe_size - world_size;
  }
  return cores > 0 ? cores : 1;
}

MpiWorkerPool::~MpiWorkerPool() {
  if (thread_.joinable()) {
    // Start() succeeded but Serve() never came: let the thread stop the workers.
    if (!serve_.HasBeenNotified()) serve_.Notify();
    thread_.join();
  }
}

absl::StatusOr<MpiWorkerPool::PoolInfo> MpiWorkerPool::Start(const Options& options) {
  thread_ = std::thread(&MpiWorkerPool::ThreadMain, this, options);
  started_.WaitForNotification();
  if (!start_result_->ok()) thread_.join();
  return *start_result_;
}

void MpiWorkerPool::Serve(Scheduler* scheduler) {
  scheduler_ = scheduler;
  serve_.Notify();
}

absl::Status MpiWorkerPool::Join() {
  if (thread_.joinable()) thread_.join();
  return final_status_;
}

void MpiWorkerPool::ThreadMain(Options options) {
  wire::UsePreciseSleeps();
  // This thread makes every MPI call of the process, so FUNNELED is all it needs.
  int provided = MPI_THREAD_SINGLE;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    start_result_ = absl::InternalError("MPI_Init_thread failed");
    started_.Notify();
    return;
  }
  absl::StatusOr<PoolInfo> booted =
      provided < MPI_THREAD_FUNNELED
          ? absl::FailedPreconditionError("MPI does not provide MPI_THREAD_FUNNELED")
          : Boot(options);
  const bool ok = booted.ok();
  start_result_ = std::move(booted);
  started_.Notify();

  if (ok) {
    serve_.WaitForNotification();
    if (scheduler_ != nullptr) final_status_ = Dispatch(*scheduler_, options.stop_timeout);
    if (absl::IsDeadlineExceeded(final_status_)) AbortWorkers(final_status_);
    std::vector<int> all(static_cast<size_t>(worker_count_));
    for (int worker = 0; worker < worker_count_; ++worker)
      all[static_cast<size_t>(worker)] = worker;
    if (absl::Status stopped = StopWorkers(all); final_status_.ok()) final_status_ = stopped;
  }
  MPI_Finalize();
}

void MpiWorkerPool::AbortWorkers(const absl::Status& why) {
  // A worker stuck in a task never reaches the collective disconnect, so the only way out is to
  // abort the job; Open MPI then ends this process too.
  std::fprintf(stderr, "mpigate-server: aborting the workers: %s\n", why.ToString().c_str());
  std::fflush(stderr);
  MPI_Abort(workers_comm_, 1);
}

absl::StatusOr<MpiWorkerPool::PoolInfo> MpiWorkerPool::Boot(const Options& options) {
  if (absl::Status status = wire::ReturnErrors(MPI_COMM_SELF); !status.ok()) return status;
  if (absl::Status status = wire::ReturnErrors(MPI_COMM_WORLD); !status.ok()) return status;
  int world_size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  absl::StatusOr<int> workers =
      ResolveWorkerCount(options.workers, std::getenv("MPIGATE_MAX_WORKERS"), UniverseSize(),
                         world_size, static_cast<int>(std::thread::hardware_concurrency()));
  if (!workers.ok()) return workers.status();

  std::vector<int> spawn_errors(static_cast<size_t>(*workers), MPI_SUCCESS);
  char* argv[] = {nullptr};
  const int rc = MPI_Comm_spawn(options.worker_binary.c_str(), argv, *workers, MPI_INFO_NULL, 0,
                                MPI_COMM_SELF, &workers_comm_, spawn_errors.data());
  if (rc != MPI_SUCCESS) {
    absl::Status status = wire::MpiError(
        rc, absl::StrCat("spawning ", *workers, " workers from ", options.worker_binary));
    return absl::UnavailableError(status.message());
  }
  worker_count_ = *workers;
  if (absl::Status status = wire::ReturnErrors(workers_comm_); !status.ok()) return status;

  absl::StatusOr<std::map<int, wire::HelloFrame>> hellos = AwaitHellos(options.bootup_timeout);
  if (!hellos.ok()) {
    // Without every hello the workers' state is unknown and a disconnect could hang.
    AbortWorkers(hellos.status());
    return hellos.status();
  }
  absl::Status failure;
  const wire::HelloFrame& first = hellos->begin()->second;
  for (const auto& [rank, hello] : *hellos) {
    if (hello.has_error()) {
      failure = absl::Status(static_cast<absl::StatusCode>(hello.error().code()),
                             absl::StrCat("worker ", rank, " on ", hello.host(),
                                          " failed to start: ", hello.error().message()));
      break;
    }
    if (FunctionNames(hello) != FunctionNames(first)) {
      failure = absl::FailedPreconditionError(absl::StrCat(
          "workers registered different functions: worker 0 has [", FunctionNames(first),
          "], worker ", rank, " has [", FunctionNames(hello), "]"));
      break;
    }
  }
  if (!failure.ok()) {
    // Workers that failed have left their loop; the others wait for a shutdown frame. All of
    // them then meet in the collective disconnect.
    std::vector<int> running;
    for (const auto& [rank, hello] : *hellos) {
      if (!hello.has_error()) running.push_back(rank);
    }
    StopWorkers(running).IgnoreError();
    return failure;
  }

  PoolInfo info;
  info.workers = *workers;
  for (const wire::FunctionEntry& entry : first.functions()) {
    v1::FunctionInfo& function = info.functions.emplace_back();
    function.set_name(entry.name());
    function.set_description(entry.description());
  }
  return info;
}

absl::StatusOr<std::map<int, wire::HelloFrame>> MpiWorkerPool::AwaitHellos(absl::Duration timeout) {
  std::map<int, wire::HelloFrame> hellos;
  wire::PollBackoff backoff;
  const absl::Time deadline = absl::Now() + timeout;
  while (static_cast<int>(hellos.size()) < worker_count_) {
    absl::StatusOr<std::optional<wire::ReceivedMessage>> received =
        wire::TryReceive(workers_comm_, MPI_ANY_SOURCE);
    if (!received.ok()) return received.status();
    if (!received->has_value()) {
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat("only ", hellos.size(), " of ",
                                                        worker_count_, " workers started within ",
                                                        absl::FormatDuration(timeout)));
      }
      absl::SleepFor(backoff.NextDelay());
      continue;
    }
    backoff.Reset();
    if ((**received).tag != wire::Tag::kHello) {
      return absl::InternalError("a worker sent a frame before its hello");
    }
    wire::HelloFrame& hello = hellos[(**received).source];
    if (absl::Status status = wire::Decode((**received).bytes, hello); !status.ok()) return status;
  }
  return hellos;
}

absl::Status MpiWorkerPool::Dispatch(Scheduler& scheduler, absl::Duration stop_timeout) {
  wire::PollBackoff backoff;
  wire::PendingSends sends;
  wire::ResultFrame result;
  int in_flight = 0;
  bool stopping = false;
  absl::Time stop_deadline = absl::InfiniteFuture();
  while (true) {
    if (stopping) {
      if (in_flight == 0) break;
      if (absl::Now() > stop_deadline) {
        return absl::DeadlineExceededError(absl::StrCat(in_flight, " tasks still running ",
                                                        absl::FormatDuration(stop_timeout),
                                                        " after the stop"));
      }
      absl::SleepFor(backoff.NextDelay());
    } else {
      // With nothing in flight there is nothing to poll for: block until there is work.
      const absl::Duration wait =
          in_flight > 0 || !sends.empty() ? backoff.NextDelay() : absl::InfiniteDuration();
      DispatchWork work = scheduler.AwaitWork(wait);
      if (work.stopping) {
        stopping = true;
        stop_deadline = absl::Now() + stop_timeout;
      }
      for (Assignment& assignment : work.assignments) {
        absl::StatusOr<std::string> buffer = wire::Encode(assignment.frame);
        if (!buffer.ok()) {
          scheduler.Complete(assignment.worker,
                             FailedResult(assignment.frame.task_key(), buffer.status()));
          continue;
        }
        if (absl::Status status =
                sends.Start(workers_comm_, assignment.worker, wire::Tag::kTask, *std::move(buffer));
            !status.ok()) {
          return status;
        }
        ++in_flight;
        backoff.Reset();
      }
    }
    if (absl::Status status = sends.Progress(); !status.ok()) return status;

    while (in_flight > 0) {
      absl::StatusOr<std::optional<wire::ReceivedMessage>> received =
          wire::TryReceive(workers_comm_, MPI_ANY_SOURCE);
      if (!received.ok()) return received.status();
      if (!received->has_value()) break;
      backoff.Reset();
      const wire::ReceivedMessage& message = **received;
      if (message.tag != wire::Tag::kResult) {
        return absl::InternalError(absl::StrCat("worker ", message.source,
                                                " sent an unexpected frame with tag ",
                                                static_cast<int>(message.tag)));
      }
      if (absl::Status status = wire::Decode(message.bytes, result); !status.ok()) return status;
      --in_flight;
      scheduler.Complete(message.source, std::move(result));
      result.Clear();
    }
  }
  return sends.WaitAll();
}

absl::Status MpiWorkerPool::StopWorkers(const std::vector<int>& running) {
  if (workers_comm_ == MPI_COMM_NULL) return absl::OkStatus();
  const wire::ShutdownFrame shutdown;
  for (const int worker : running) {
    if (absl::Status status =
            wire::SendFrame(workers_comm_, worker, wire::Tag::kShutdown, shutdown);
        !status.ok()) {
      return status;
    }
  }
  const int rc = MPI_Comm_disconnect(&workers_comm_);
  return rc == MPI_SUCCESS ? absl::OkStatus() : wire::MpiError(rc, "MPI_Comm_disconnect");
}

}  // namespace mpigate::server
