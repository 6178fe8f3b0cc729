#include "server/mpi_pool.h"

#include <map>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/shared_memory.h"
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

// How often the MPI thread polls for results while workers have backlogs.
constexpr absl::Duration kBackloggedPoll = absl::Microseconds(100);
// Results handed to the scheduler at once, at most: bounds how long a round of polls that keeps
// finding results holds the first of them back, and how long it holds the scheduler's lock.
constexpr size_t kResultsPerCompletion = 128;

// Task frames smaller than this that go to one worker in one dispatch round travel together in
// one message (Tag::kTasks); larger ones alone, so that a payload is not copied into a batch.
constexpr size_t kTaskBatchBytes = 64 << 10;

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
    // Start() succeeded but Serve() never came: let the thread finish without a pool.
    if (!serve_.HasBeenNotified()) serve_.Notify();
    thread_.join();
  }
}

absl::StatusOr<MpiWorkerPool::Started> MpiWorkerPool::Start(const Options& options) {
  thread_ = std::thread(&MpiWorkerPool::ThreadMain, this, options);
  started_.WaitForNotification();
  if (!start_result_->ok() || (*start_result_)->worker_exit_code.has_value()) thread_.join();
  return *start_result_;
}

void MpiWorkerPool::Serve(Scheduler* scheduler, std::function<void(const absl::Status&)> booted) {
  scheduler_ = scheduler;
  booted_ = std::move(booted);
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
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (options.world && rank != 0) {
    // This process is one of the pool's workers; RunWorkerProcess finalises MPI.
    Started started;
    started.worker_exit_code =
        worker::RunWorkerProcess(MPI_COMM_WORLD, /*disconnect=*/false, options.worker_options);
    start_result_ = started;
    started_.Notify();
    return;
  }
  absl::StatusOr<int> workers =
      provided < MPI_THREAD_FUNNELED
          ? absl::FailedPreconditionError("MPI does not provide MPI_THREAD_FUNNELED")
          : Init(options);
  if (!workers.ok()) {
    start_result_ = workers.status();
    started_.Notify();
    MPI_Finalize();
    return;
  }
  start_result_ = Started{*workers, std::nullopt};
  started_.Notify();

  serve_.WaitForNotification();
  if (scheduler_ == nullptr) {
    // World-mode workers wait for a shutdown that an orderly path would send after their hellos.
    if (options.world) AbortWorkers(absl::AbortedError("the gateway stopped before serving"));
    MPI_Finalize();
    return;
  }
  const absl::Status booted = Boot(options, *scheduler_);
  if (booted_) booted_(booted);
  if (booted.ok()) {
    final_status_ = Dispatch(*scheduler_);
    std::vector<int> all(static_cast<size_t>(worker_count_));
    for (int worker = 0; worker < worker_count_; ++worker) {
      all[static_cast<size_t>(worker)] = worker;
    }
    if (absl::Status stopped = StopWorkers(all); final_status_.ok()) final_status_ = stopped;
  } else {
    final_status_ = booted;
  }
  MPI_Finalize();
}

void MpiWorkerPool::AbortWorkers(const absl::Status& why) {
  // A worker that cannot be reached never meets the gateway in the collective disconnect, so the
  // only way out is to abort the job; Open MPI then ends this process too.
  Log(LogLevel::kError, "aborting the workers: ", why.ToString());
  MPI_Abort(workers_comm_ == MPI_COMM_NULL ? MPI_COMM_WORLD : workers_comm_, 1);
  std::abort();
}

absl::StatusOr<int> MpiWorkerPool::Init(const Options& options) {
  if (absl::Status status = wire::ReturnErrors(MPI_COMM_SELF); !status.ok()) return status;
  if (absl::Status status = wire::ReturnErrors(MPI_COMM_WORLD); !status.ok()) return status;
  int world_size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  if (options.world) {
    if (world_size < 2) {
      return absl::InvalidArgumentError(
          "--world needs the workers started with the gateway: mpiexec -n N+1 mpigate-server "
          "--world (N >= 1)");
    }
    if (options.workers > 0 && options.workers != world_size - 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--workers=", options.workers, " but mpiexec started ", world_size - 1,
                       " worker ranks; in world mode the pool is ranks 1..N"));
    }
    workers_comm_ = MPI_COMM_WORLD;
    rank_offset_ = 1;
    worker_count_ = world_size - 1;
    return worker_count_;
  }
  absl::StatusOr<int> workers =
      ResolveWorkerCount(options.workers, std::getenv("MPIGATE_MAX_WORKERS"), UniverseSize(),
                         world_size, static_cast<int>(std::thread::hardware_concurrency()));
  if (!workers.ok()) return workers.status();
  worker_count_ = *workers;
  return worker_count_;
}

absl::Status MpiWorkerPool::Spawn(const Options& options) {
  std::vector<std::string> args = worker::ToArgs(options.worker_options);
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  MPI_Info info = MPI_INFO_NULL;
  if (!options.spawn_info.empty()) {
    MPI_Info_create(&info);
    for (const auto& [key, value] : options.spawn_info) {
      MPI_Info_set(info, key.c_str(), value.c_str());
    }
  }
  std::vector<int> spawn_errors(static_cast<size_t>(worker_count_), MPI_SUCCESS);
  const int rc = MPI_Comm_spawn(options.worker_binary.c_str(), argv.data(), worker_count_, info, 0,
                                MPI_COMM_SELF, &workers_comm_, spawn_errors.data());
  if (info != MPI_INFO_NULL) MPI_Info_free(&info);
  if (rc != MPI_SUCCESS) {
    workers_comm_ = MPI_COMM_NULL;
    absl::Status status = wire::MpiError(
        rc, absl::StrCat("spawning ", worker_count_, " workers from ", options.worker_binary));
    return absl::UnavailableError(status.message());
  }
  return wire::ReturnErrors(workers_comm_);
}

absl::Status MpiWorkerPool::Boot(const Options& options, Scheduler& scheduler) {
  absl::Status failure = options.world ? absl::OkStatus() : Spawn(options);
  if (!failure.ok()) {
    scheduler.PoolBroken(failure.message());
    return failure;
  }
  absl::StatusOr<std::map<int, wire::HelloFrame>> hellos = AwaitHellos(options.bootup_timeout);
  if (!hellos.ok()) {
    // Without every hello the workers' state is unknown and a disconnect could hang.
    AbortWorkers(hellos.status());
  }
  ConnectDoorbells(*hellos);
  const std::string domain = SharedMemoryDomain();
  shares_memory_.assign(static_cast<size_t>(worker_count_), false);
  for (const auto& [worker, hello] : *hellos) {
    shares_memory_[static_cast<size_t>(worker)] =
        !domain.empty() && hello.shared_memory_domain() == domain;
  }
  std::string broken;
  const wire::HelloFrame& first = hellos->begin()->second;
  for (const auto& [worker, hello] : *hellos) {
    if (hello.has_error()) {
      Log(LogLevel::kError, "worker ", worker, " on ", hello.host(), " (pid ", hello.pid(),
          ") failed to start: ", hello.error().message());
    } else if (hello.has_initializer_error()) {
      Log(LogLevel::kError, "worker ", worker, " on ", hello.host(), " (pid ", hello.pid(),
          ") is up, but its initializer failed: ", hello.initializer_error().message());
    } else {
      Log(LogLevel::kInfo, "worker ", worker, " up on ", hello.host(), " (pid ", hello.pid(), ")");
    }
  }
  for (const auto& [worker, hello] : *hellos) {
    if (hello.has_error()) {
      failure = absl::Status(static_cast<absl::StatusCode>(hello.error().code()),
                             absl::StrCat("worker ", worker, " on ", hello.host(),
                                          " failed to start: ", hello.error().message()));
      break;
    }
    if (FunctionNames(hello) != FunctionNames(first)) {
      failure = absl::FailedPreconditionError(absl::StrCat(
          "workers registered different functions: worker 0 has [", FunctionNames(first),
          "], worker ", worker, " has [", FunctionNames(hello), "]"));
      break;
    }
    if (hello.has_initializer_error() && broken.empty()) {
      broken = absl::StrCat("worker ", worker, " on ", hello.host(), ": ",
                            hello.initializer_error().message());
    }
  }
  if (!failure.ok()) {
    // Workers that failed have left their loop; the others wait for a shutdown frame. All of
    // them then meet in the collective disconnect.
    std::vector<int> in_loop;
    for (const auto& [worker, hello] : *hellos) {
      if (!hello.has_error()) in_loop.push_back(worker);
    }
    StopWorkers(in_loop).IgnoreError();
    scheduler.PoolBroken(failure.message());
    return failure;
  }
  if (!broken.empty()) {
    // The workers stay up, idle, so that the service can say why it runs nothing.
    scheduler.PoolBroken(broken);
    return absl::OkStatus();
  }
  std::vector<v1::FunctionInfo> functions;
  for (const wire::FunctionEntry& entry : first.functions()) {
    v1::FunctionInfo& function = functions.emplace_back();
    function.set_name(entry.name());
    function.set_description(entry.description());
    function.set_request_type(entry.request_type());
    function.set_response_type(entry.response_type());
    function.set_gang(entry.gang());
  }
  scheduler.PoolReady(std::move(functions));
  return absl::OkStatus();
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
    wire::HelloFrame& hello = hellos[WorkerAt((**received).source)];
    if (absl::Status status = wire::Decode((**received).bytes, hello); !status.ok()) return status;
  }
  return hellos;
}

absl::Status MpiWorkerPool::Dispatch(Scheduler& scheduler) {
  wire::PollBackoff backoff;
  wire::PendingSends sends;
  wire::ProgressFrame progress;
  wire::FrameBatch results;
  // Each worker's small task frames of one dispatch round.
  std::vector<wire::FrameBatch> batches(static_cast<size_t>(worker_count_));
  int in_flight = 0;
  // Workers sent a frame this round; each is rung once, after all of them.
  std::vector<bool> sent_to(static_cast<size_t>(worker_count_), false);
  // Sends a worker's batched frames: one as it is, several in one message.
  const auto send_batch = [&](int worker) {
    wire::FrameBatch& batch = batches[static_cast<size_t>(worker)];
    if (batch.frames_size() == 0) return absl::OkStatus();
    absl::Status status;
    if (batch.frames_size() == 1) {
      status = sends.Start(workers_comm_, RankOf(worker), wire::Tag::kTask,
                           std::move(*batch.mutable_frames(0)));
    } else {
      absl::StatusOr<std::string> encoded = wire::Encode(batch);
      status = encoded.ok() ? sends.Start(workers_comm_, RankOf(worker), wire::Tag::kTasks,
                                          *std::move(encoded))
                            : encoded.status();
    }
    batch.Clear();
    return status;
  };
  // The results of one round of polls, handed to the scheduler together (see
  // Scheduler::Complete(results)) once the round ends or kResultsPerCompletion have come.
  std::vector<Scheduler::WorkerResult> received;
  const auto hand_over = [&] {
    if (received.empty()) return;
    scheduler.Complete(absl::MakeSpan(received));
    received.clear();
  };
  // Takes one worker's result, serialized.
  const auto complete = [&](int worker, const std::string& bytes) {
    Scheduler::WorkerResult& taken = received.emplace_back();
    taken.worker = worker;
    if (absl::Status status = wire::Decode(bytes, taken.result); !status.ok()) return status;
    --in_flight;
    if (received.size() >= kResultsPerCompletion) hand_over();
    return absl::OkStatus();
  };
  while (true) {
    // With nothing in flight there is nothing to poll for: block until there is work.
    absl::Duration wait =
        in_flight > 0 || !sends.empty() ? backoff.NextDelay() : absl::InfiniteDuration();
    // More tasks in flight than workers: some wait in a backlog (Scheduler's prefetch), so results
    // can wait a little and be taken several at a time; polling hot would only take CPU from the
    // workers and gRPC. New work still ends the wait at once.
    if (in_flight > worker_count_) wait = std::max(wait, kBackloggedPoll);
    DispatchWork work = scheduler.AwaitWork(wait);
    // By now every task has ended or been failed (see Scheduler::FailRunning); results still on
    // their way are dropped by StopWorkers.
    if (work.stopping) break;
    for (Assignment& assignment : work.assignments) {
      absl::Status fitted = FitSharedMemory(assignment.worker, assignment.frame);
      absl::StatusOr<std::string> buffer =
          fitted.ok() ? wire::Encode(assignment.frame) : absl::StatusOr<std::string>(fitted);
      if (!buffer.ok()) {
        scheduler.Complete(assignment.worker,
                           FailedResult(assignment.frame.task_key(), buffer.status()));
        continue;
      }
      // Small frames for one worker go together, in one message; a large one alone.
      const size_t worker = static_cast<size_t>(assignment.worker);
      if (buffer->size() >= kTaskBatchBytes) {
        // After the worker's frames before it: a worker runs its tasks in the order they came.
        if (absl::Status status = send_batch(assignment.worker); !status.ok()) return status;
        if (absl::Status status = sends.Start(workers_comm_, RankOf(assignment.worker),
                                              wire::Tag::kTask, *std::move(buffer));
            !status.ok()) {
          return status;
        }
      } else {
        batches[worker].add_frames(*std::move(buffer));
      }
      sent_to[worker] = true;
      ++in_flight;
      backoff.Reset();
    }
    for (int worker = 0; worker < worker_count_; ++worker) {
      if (absl::Status status = send_batch(worker); !status.ok()) return status;
    }
    for (const Interrupt& interrupt : work.interrupts) {
      wire::CancelFrame cancel;
      cancel.set_task_key(interrupt.task_key);
      cancel.set_force(interrupt.force);
      absl::StatusOr<std::string> buffer = wire::Encode(cancel);
      if (!buffer.ok()) return buffer.status();
      if (absl::Status status = sends.Start(workers_comm_, RankOf(interrupt.worker),
                                            wire::Tag::kCancel, *std::move(buffer));
          !status.ok()) {
        return status;
      }
      sent_to[static_cast<size_t>(interrupt.worker)] = true;
    }
    if (!work.assignments.empty() || !work.interrupts.empty()) {
      for (int worker = 0; worker < worker_count_; ++worker) {
        if (!sent_to[static_cast<size_t>(worker)]) continue;
        sent_to[static_cast<size_t>(worker)] = false;
        RingDoorbell(worker);
      }
    }
    if (absl::Status status = sends.Progress(); !status.ok()) return status;

    while (in_flight > 0) {
      absl::StatusOr<std::optional<wire::ReceivedMessage>> polled =
          wire::TryReceive(workers_comm_, MPI_ANY_SOURCE);
      if (!polled.ok()) return polled.status();
      if (!polled->has_value()) break;
      backoff.Reset();
      const wire::ReceivedMessage& message = **polled;
      if (message.tag == wire::Tag::kProgress) {
        if (absl::Status status = wire::Decode(message.bytes, progress); !status.ok()) {
          return status;
        }
        scheduler.Progress(WorkerAt(message.source), progress);
        continue;
      }
      if (message.tag == wire::Tag::kResults) {
        if (absl::Status status = wire::Decode(message.bytes, results); !status.ok()) {
          return status;
        }
        for (const std::string& frame : results.frames()) {
          if (absl::Status status = complete(WorkerAt(message.source), frame); !status.ok()) {
            return status;
          }
        }
        results.Clear();
        continue;
      }
      if (message.tag != wire::Tag::kResult) {
        return absl::InternalError(absl::StrCat("worker ", WorkerAt(message.source),
                                                " sent an unexpected frame with tag ",
                                                static_cast<int>(message.tag)));
      }
      if (absl::Status status = complete(WorkerAt(message.source), message.bytes); !status.ok()) {
        return status;
      }
    }
    hand_over();
  }
  return sends.WaitAll();
}

void MpiWorkerPool::ConnectDoorbells(const std::map<int, wire::HelloFrame>& hellos) {
  absl::StatusOr<wire::DoorbellRinger> ringer = wire::DoorbellRinger::Open();
  if (!ringer.ok()) return;  // The workers poll, as they would for a gateway on another host.
  ringer_ = *std::move(ringer);
  doorbells_.assign(static_cast<size_t>(worker_count_), "");
  for (const auto& [worker, hello] : hellos) {
    // A doorbell in another host or network namespace is not found: that worker polls.
    if (!hello.doorbell().empty() && ringer_->Ring(hello.doorbell()).ok()) {
      doorbells_[static_cast<size_t>(worker)] = hello.doorbell();
    }
  }
}

absl::Status MpiWorkerPool::FitSharedMemory(int worker, wire::TaskFrame& frame) const {
  if (shares_memory_[static_cast<size_t>(worker)]) return absl::OkStatus();
  frame.clear_shared_result_prefix();
  if (!frame.has_shared_payload()) return absl::OkStatus();
  absl::StatusOr<std::string> payload =
      ReadSharedObject(frame.shared_payload().name(), frame.shared_payload().size());
  if (!payload.ok()) return payload.status();
  frame.set_payload(*std::move(payload));
  frame.clear_shared_payload();
  return absl::OkStatus();
}

void MpiWorkerPool::RingDoorbell(int worker) {
  if (!ringer_.has_value() || doorbells_[static_cast<size_t>(worker)].empty()) return;
  // A ring only wakes; should it fail, the worker finds the frame on its next poll.
  ringer_->Ring(doorbells_[static_cast<size_t>(worker)]).IgnoreError();
}

absl::Status MpiWorkerPool::StopWorkers(const std::vector<int>& in_loop) {
  if (workers_comm_ == MPI_COMM_NULL) return absl::OkStatus();
  const wire::ShutdownFrame shutdown;
  for (const int worker : in_loop) {
    if (absl::Status status =
            wire::SendFrame(workers_comm_, RankOf(worker), wire::Tag::kShutdown, shutdown);
        !status.ok()) {
      return status;
    }
    RingDoorbell(worker);
  }
  // A busy worker hears the shutdown within milliseconds (its task goes on, unwanted); one that
  // does not answer in this long cannot be stopped in order.
  constexpr absl::Duration kAnswerTimeout = absl::Seconds(10);
  const absl::Time deadline = absl::Now() + kAnswerTimeout;
  size_t answered = 0;
  wire::PollBackoff backoff;
  while (answered < in_loop.size()) {
    absl::StatusOr<std::optional<wire::ReceivedMessage>> received =
        wire::TryReceive(workers_comm_, MPI_ANY_SOURCE);
    if (!received.ok()) return received.status();
    if (!received->has_value()) {
      if (absl::Now() > deadline) {
        AbortWorkers(absl::DeadlineExceededError(
            absl::StrCat(in_loop.size() - answered, " workers did not answer the shutdown within ",
                         absl::FormatDuration(kAnswerTimeout))));
      }
      absl::SleepFor(backoff.NextDelay());
      continue;
    }
    backoff.Reset();
    // Anything else is the result of a task that ended or was failed after the drain began.
    if ((**received).tag == wire::Tag::kShutdown) ++answered;
  }
  if (rank_offset_ > 0) return absl::OkStatus();  // MPI_COMM_WORLD is never disconnected.
  const int rc = MPI_Comm_disconnect(&workers_comm_);
  return rc == MPI_SUCCESS ? absl::OkStatus() : wire::MpiError(rc, "MPI_Comm_disconnect");
}

}  // namespace mpigate::server
