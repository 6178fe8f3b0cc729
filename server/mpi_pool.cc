#include "server/mpi_pool.h"

#include <signal.h>
#include <unistd.h>

#include <climits>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/shared_memory.h"
#include "server/mpi_library.h"
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

// A worker process younger than this that is lost counts as a failed replacement: the next is
// spawned after a pause, growing with each failure in a row up to kMaxSpawnPause.
constexpr absl::Duration kShortLife = absl::Seconds(10);
constexpr absl::Duration kFirstSpawnPause = absl::Seconds(1);
constexpr absl::Duration kMaxSpawnPause = absl::Seconds(60);

// While replacements boot, wait for, or take over from, old processes: how often the MPI thread
// looks, at most.
constexpr absl::Duration kHealingPoll = absl::Milliseconds(10);

// How long a spawn waits for Open MPI's daemon to reap a process seen to end, at most.
constexpr absl::Duration kReapPatience = absl::Seconds(2);

// How long a worker that is told to shut down may take to answer.
constexpr absl::Duration kAnswerTimeout = absl::Seconds(10);

// A worker whose process cannot be watched (one on another host) sends a heartbeat this often
// while it listens, and is taken as lost after this long without one: a loss is seen within
// about a second, and a worker that is merely busy (its loop listens every 20 ms while a task
// runs, every millisecond or so while idle) is never taken for lost.
constexpr absl::Duration kHeartbeatInterval = absl::Milliseconds(200);
constexpr absl::Duration kHeartbeatLimit = absl::Seconds(1);

absl::Duration SpawnPause(int failures) {
  if (failures <= 0) return absl::ZeroDuration();
  absl::Duration pause = kFirstSpawnPause;
  for (int i = 1; i < failures && pause < kMaxSpawnPause; ++i) pause *= 2;
  return std::min(pause, kMaxSpawnPause);
}

std::string HostName() {
  char name[HOST_NAME_MAX + 1] = {};
  return gethostname(name, sizeof(name)) == 0 ? std::string(name) : std::string();
}

// The note a worker left of how it died (worker/death_note.h), removed once read; empty if none.
std::string TakeDeathNote(const std::string& doorbell) {
  if (doorbell.empty()) return "";
  const std::string path = wire::DeathNotePath(doorbell);
  std::ifstream file(path);
  std::stringstream note;
  note << file.rdbuf();
  std::remove(path.c_str());
  return note.str();
}

// Whether the process `pid`, which has ended, has been reaped by its parent: it is a zombie until
// then, and gone (or another process under a reused pid) after.
bool Reaped(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(stat, line);
  // "PID (COMM) STATE ...", where COMM may hold anything.
  const size_t name_end = line.rfind(')');
  return name_end == std::string::npos || name_end + 2 >= line.size() || line[name_end + 2] != 'Z';
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

void MpiWorkerPool::Serve(Scheduler* scheduler, std::function<void(const absl::Status&)> booted,
                          std::function<void(const std::string&)> degraded) {
  scheduler_ = scheduler;
  booted_ = std::move(booted);
  degraded_changed_ = std::move(degraded);
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
  options_ = std::move(options);
  start_result_ = Started{*workers, std::nullopt};
  started_.Notify();

  serve_.WaitForNotification();
  if (scheduler_ == nullptr) {
    // World-mode workers wait for a shutdown that an orderly path would send after their hellos.
    if (options_.world) AbortWorkers(absl::AbortedError("the gateway stopped before serving"));
    MPI_Finalize();
    return;
  }
  const absl::Status booted = Boot(options_, *scheduler_);
  if (booted_) booted_(booted);
  if (booted.ok()) {
    absl::Status served = Dispatch(*scheduler_);
    if (absl::Status stopped = StopWorkers(); served.ok()) served = stopped;
    if (final_status_.ok()) final_status_ = served;
  } else {
    final_status_ = booted;
  }
  watch_.reset();
  // With every other rank of a world job dead, Open MPI's finalize was seen to hang (and the
  // process ends anyway; docs/worker-loss.md).
  if (every_worker_lost_) {
    Log(LogLevel::kWarning, "not finalising MPI: every worker of the job is gone");
    return;
  }
  MPI_Finalize();
}

void MpiWorkerPool::AbortWorkers(const absl::Status& why) {
  // A worker that cannot be reached never meets the gateway in the collective disconnect, so the
  // only way out is to abort the job; Open MPI then ends this process too.
  Log(LogLevel::kError, "aborting the workers: ", why.ToString());
  // Through the newest job, or another still connected: a rejected job's communicator is null
  // by now, and MPI_Abort needs a valid one.
  MPI_Comm comm = MPI_COMM_WORLD;
  if (target_ >= 0 && cohorts_[static_cast<size_t>(target_)].comm != MPI_COMM_NULL) {
    comm = cohorts_[static_cast<size_t>(target_)].comm;
  } else {
    for (const Cohort& cohort : cohorts_) {
      if (cohort.comm != MPI_COMM_NULL) comm = cohort.comm;
    }
  }
  MPI_Abort(comm, 1);
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
    rank_offset_ = 1;
    worker_count_ = world_size - 1;
    // Open MPI's parameter and advice (docs/worker-loss.md); they mean nothing to MPICH.
    if (const char* abort = std::getenv("OMPI_MCA_orte_abort_on_non_zero_status");
        kOpenMpi && (abort == nullptr || absl::string_view(abort) != "0")) {
      Log(LogLevel::kInfo,
          "world mode: Open MPI ends the whole job if a worker is lost; to serve on with the "
          "others, start it with mpiexec --enable-recovery --mca orte_abort_on_non_zero_status 0");
    }
    return worker_count_;
  }
  if (absl::Status status = CheckCanSpawn(); !status.ok()) return status;
  absl::StatusOr<int> workers =
      ResolveWorkerCount(options.workers, std::getenv("MPIGATE_MAX_WORKERS"), UniverseSize(),
                         world_size, static_cast<int>(std::thread::hardware_concurrency()));
  if (!workers.ok()) return workers.status();
  worker_count_ = *workers;
  return worker_count_;
}

absl::Status MpiWorkerPool::Spawn(const Options& options) {
  MPI_Comm comm = MPI_COMM_NULL;
  if (options.world) {
    comm = MPI_COMM_WORLD;
  } else {
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
    const int rc = MPI_Comm_spawn(options.worker_binary.c_str(), argv.data(), worker_count_, info,
                                  0, MPI_COMM_SELF, &comm, spawn_errors.data());
    if (info != MPI_INFO_NULL) MPI_Info_free(&info);
    if (rc != MPI_SUCCESS) {
      absl::Status status = wire::MpiError(
          rc, absl::StrCat("spawning ", worker_count_, " workers from ", options.worker_binary));
      return absl::UnavailableError(status.message());
    }
    if (absl::Status status = wire::ReturnErrors(comm); !status.ok()) return status;
  }
  // The slot of a job that is over (every process gone; its communicator disconnected, or never
  // to be, having lost a process), else a new one.
  int slot = -1;
  for (int c = 0; c < static_cast<int>(cohorts_.size()) && slot < 0; ++c) {
    const Cohort& old = cohorts_[static_cast<size_t>(c)];
    if (c != target_ && old.live == 0 && (old.comm == MPI_COMM_NULL || old.broken)) slot = c;
  }
  if (slot < 0) {
    slot = static_cast<int>(cohorts_.size());
    cohorts_.emplace_back().first_process = static_cast<int>(processes_.size());
    processes_.resize(processes_.size() + static_cast<size_t>(worker_count_));
  }
  Cohort& cohort = cohorts_[static_cast<size_t>(slot)];
  const int first_process = cohort.first_process;
  cohort = Cohort();
  cohort.comm = comm;
  cohort.first_process = first_process;
  cohort.live = worker_count_;
  cohort.replacement = spawned_jobs_++ > 0;
  awaiting_ += worker_count_;
  const absl::Time now = absl::Now();
  for (int index = 0; index < worker_count_; ++index) {
    Process& process = processes_[static_cast<size_t>(first_process + index)];
    const uint32_t generation = process.generation + 1;
    process = Process();
    process.generation = generation;
    process.cohort = slot;
    process.index = index;
    process.spawned = now;
  }
  target_ = slot;
  consolidating_ = true;
  degraded_dirty_ = true;
  return absl::OkStatus();
}

absl::Status MpiWorkerPool::Boot(const Options& options, Scheduler& scheduler) {
  host_ = HostName();
  shared_memory_domain_ = SharedMemoryDomain();
  if (absl::StatusOr<wire::DoorbellRinger> ringer = wire::DoorbellRinger::Open(); ringer.ok()) {
    ringer_ = *std::move(ringer);
  }
  // Without a ringer the workers poll, as they would for a gateway on another host.
  watch_.emplace([&scheduler] { scheduler.WakeDispatch(); });
  silence_.emplace(kHeartbeatLimit);
  absl::Status failure = Spawn(options);
  if (!failure.ok()) {
    scheduler.PoolBroken(failure.message());
    return failure;
  }
  absl::StatusOr<std::map<int, wire::HelloFrame>> hellos = AwaitHellos(options.bootup_timeout);
  if (!hellos.ok()) {
    // Without every hello the workers' state is unknown and a disconnect could hang.
    AbortWorkers(hellos.status());
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
  worker_process_.assign(static_cast<size_t>(worker_count_), -1);
  for (const auto& [worker, hello] : *hellos) {
    Process& process = processes_[static_cast<size_t>(worker)];
    if (hello.has_error()) {
      // It has left its loop and waits in the collective disconnect.
      SetState(process, Process::State::kGone);
      continue;
    }
    Register(worker, hello);
    process.worker = worker;
    worker_process_[static_cast<size_t>(worker)] = worker;
    scheduler.SetWorkerProcess(worker, hello.host(), hello.pid(), hello.runner_pid());
  }
  if (!failure.ok()) {
    // The workers that failed have left their loop; the others wait for a shutdown frame. All
    // of them then meet in the collective disconnect.
    StopWorkers().IgnoreError();
    scheduler.PoolBroken(failure.message());
    return failure;
  }
  if (!broken.empty()) {
    // The workers stay up, idle, so that the service can say why it runs nothing.
    scheduler.PoolBroken(broken);
    return absl::OkStatus();
  }
  functions_ = FunctionNames(first);
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
  const MPI_Comm comm = cohorts_.front().comm;
  while (static_cast<int>(hellos.size()) < worker_count_) {
    absl::StatusOr<std::optional<wire::ReceivedMessage>> received =
        wire::TryReceive(comm, MPI_ANY_SOURCE);
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
    wire::HelloFrame& hello = hellos[(**received).source - rank_offset_];
    if (absl::Status status = wire::Decode((**received).bytes, hello); !status.ok()) return status;
  }
  return hellos;
}

void MpiWorkerPool::Register(int id, wire::HelloFrame hello) {
  Process& process = processes_[static_cast<size_t>(id)];
  process.hello = std::move(hello);
  SetState(process, Process::State::kUp);
  process.up_since = absl::Now();
  const wire::HelloFrame& said = process.hello;
  process.shares_memory =
      !shared_memory_domain_.empty() && said.shared_memory_domain() == shared_memory_domain_;
  // A doorbell in another host or network namespace is not found: that worker polls.
  if (ringer_.has_value() && !said.doorbell().empty() && ringer_->Ring(said.doorbell()).ok()) {
    process.doorbell = said.doorbell();
  }
  // Its pid means this process only if it runs on this host, in this pid namespace: the same
  // host name and shared memory domain (boot, /dev/shm, user).
  if (process.shares_memory && said.host() == host_ && said.pid() > 0) {
    if (absl::Status status = watch_->Watch(WatchId(id), said.pid()); status.ok()) {
      process.watched = true;
    } else {
      Log(LogLevel::kWarning, Describe(process), ": cannot watch its pid (", status.message(),
          "): watching its heartbeats instead");
    }
  }
  // One that failed to start has left its loop: it would never take the frame.
  if (process.watched || said.has_error()) return;
  wire::HeartbeatFrame ask;
  ask.set_interval_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(kHeartbeatInterval)));
  absl::StatusOr<std::string> buffer = wire::Encode(ask);
  absl::Status status = buffer.ok() ? sends_.Start(CommOf(process), RankOf(process),
                                                   wire::Tag::kHeartbeat, *std::move(buffer))
                                    : buffer.status();
  if (!status.ok()) {
    Log(LogLevel::kWarning, Describe(process), ": its loss would go unseen: ", status.message());
    return;
  }
  silence_->Watch(WatchId(id), absl::Now());
  process.heartbeats = true;
}

absl::Status MpiWorkerPool::TakeHeartbeat(int id, const std::string& bytes) {
  wire::HeartbeatFrame beat;
  if (absl::Status status = wire::Decode(bytes, beat); !status.ok()) return status;
  silence_->Heard(WatchId(id), absl::Now(), beat.quiet());
  return absl::OkStatus();
}

uint64_t MpiWorkerPool::WatchId(int id) const {
  return (static_cast<uint64_t>(processes_[static_cast<size_t>(id)].generation) << 32) |
         static_cast<uint32_t>(id);
}

int MpiWorkerPool::ProcessOfWatchId(uint64_t watch_id) const {
  const uint32_t id = static_cast<uint32_t>(watch_id);
  if (id >= processes_.size() || processes_[id].generation != watch_id >> 32) return -1;
  return static_cast<int>(id);
}

void MpiWorkerPool::TakeHello(int id, wire::HelloFrame hello) {
  Register(id, std::move(hello));
  Process& process = processes_[static_cast<size_t>(id)];
  const wire::HelloFrame& said = process.hello;
  std::string failure;
  if (said.has_error()) {
    failure = said.error().message();
    // It has left its loop and waits in the collective disconnect.
    MarkGone(id);
  } else if (said.has_initializer_error()) {
    failure = absl::StrCat("its initializer failed: ", said.initializer_error().message());
  } else if (FunctionNames(said) != functions_) {
    failure = absl::StrCat("it registered other functions: [", FunctionNames(said), "] against [",
                           functions_, "]");
  }
  if (failure.empty()) {
    Log(LogLevel::kInfo, "replacement for worker ", process.index, " up on ", said.host(),
        " (pid ", said.pid(), ")");
    return;
  }
  RejectJob(process.cohort,
            absl::StrCat("replacement for worker ", process.index, " on ", said.host(), " (pid ",
                         said.pid(), ")"),
            failure);
}

void MpiWorkerPool::RejectJob(int c, absl::string_view who, absl::string_view failure) {
  Cohort& cohort = cohorts_[static_cast<size_t>(c)];
  CountReplaceFailure(cohort);
  Log(LogLevel::kWarning, who, " failed to start: ", failure, "; trying again in ",
      absl::FormatDuration(SpawnPause(replace_failures_)));
  last_loss_ = absl::StrCat("a replacement failed to start: ", failure);
  degraded_dirty_ = true;
  cohort.rejected = true;
  for (int i = 0; i < worker_count_; ++i) {
    const int member = cohort.first_process + i;
    const Process& other = processes_[static_cast<size_t>(member)];
    if ((other.state == Process::State::kUp || other.state == Process::State::kBooting) &&
        other.worker < 0) {
      SendShutdown(member);
    }
  }
  DisconnectRejected();
}

void MpiWorkerPool::GiveUp(int id) {
  Process& process = processes_[static_cast<size_t>(id)];
  Cohort& cohort = cohorts_[static_cast<size_t>(process.cohort)];
  // It would never take part in the disconnect.
  cohort.broken = true;
  sends_.Abandon(cohort.comm, RankOf(process));
  MarkGone(id);
}

void MpiWorkerPool::ExpireBooting() {
  if (awaiting_ == 0) return;
  const absl::Time now = absl::Now();
  const absl::Duration timeout = options_.bootup_timeout;
  for (int id = 0; id < static_cast<int>(processes_.size()); ++id) {
    Process& process = processes_[static_cast<size_t>(id)];
    // Booting, or told to stop while it booted (its job was rejected), and no hello yet.
    if (process.state == Process::State::kGone || process.hello.pid() != 0 ||
        now - process.spawned <= timeout) {
      continue;
    }
    const bool booting = process.state == Process::State::kBooting;
    GiveUp(id);
    if (booting) {
      RejectJob(process.cohort, absl::StrCat("replacement for worker ", process.index),
                absl::StrCat("it did not say hello within ", absl::FormatDuration(timeout),
                             " of its spawn (it ends itself)"));
    }
  }
}

void MpiWorkerPool::CountReplaceFailure(Cohort& cohort) {
  degraded_dirty_ = true;
  if (cohort.counted_failure) return;
  cohort.counted_failure = true;
  ++replace_failures_;
  next_spawn_ = absl::Now() + SpawnPause(replace_failures_);
}

void MpiWorkerPool::HandleEnded(Scheduler& scheduler, int& in_flight) {
  // Each process seen to end (no word of how yet) or gone silent (and how that looks).
  std::vector<std::pair<int, std::string>> ended;
  for (const uint64_t watch_id : watch_->TakeEnded()) {
    const int id = ProcessOfWatchId(watch_id);
    if (id < 0) continue;
    ended.emplace_back(id, "");
    if (!options_.world) {
      unreaped_.emplace_back(processes_[static_cast<size_t>(id)].hello.pid(), absl::Now());
    }
  }
  if (!silence_->empty()) {
    for (const uint64_t watch_id : silence_->TakeSilent(absl::Now())) {
      if (const int id = ProcessOfWatchId(watch_id); id >= 0) {
        ended.emplace_back(
            id, absl::StrCat("it sent no heartbeat for ", absl::FormatDuration(silence_->limit()),
                             ": its process, its host or the network to it is gone (a worker "
                             "on another host is watched by its heartbeats)"));
      }
    }
  }
  bool lost_a_worker = false;
  for (auto& [id, silent] : ended) {
    Process& process = processes_[static_cast<size_t>(id)];
    if (process.state == Process::State::kGone) continue;
    const Process::State was = process.state;
    degraded_dirty_ = true;
    Cohort& cohort = cohorts_[static_cast<size_t>(process.cohort)];
    cohort.broken = true;
    sends_.Abandon(cohort.comm, RankOf(process));
    in_flight -= process.in_flight;
    process.in_flight = 0;
    std::string how = std::move(silent);
    if (how.empty()) how = TakeDeathNote(process.hello.doorbell());
    if (how.empty()) how = process.killed_because;
    if (how.empty()) {
      how =
          "its process ended without a word (killed by SIGKILL, e.g. by the kernel's OOM killer, "
          "or ended by Open MPI)";
    }
    const std::string who = Describe(process);
    const int worker = process.worker;
    MarkGone(id);
    if (was == Process::State::kStopping) {
      Log(LogLevel::kInfo, who, " ended while stopping: ", how);
      continue;
    }
    const bool short_lived =
        was == Process::State::kBooting || absl::Now() - process.up_since < kShortLife;
    if (!options_.world && short_lived && cohort.replacement) {
      CountReplaceFailure(cohort);
    } else if (!short_lived) {
      replace_failures_ = 0;
    }
    Log(LogLevel::kWarning, who, " was lost: ", how);
    last_loss_ = absl::StrCat(who, " was lost: ", how);
    if (worker < 0) continue;
    lost_a_worker = true;
    worker_process_[static_cast<size_t>(worker)] = -1;
    const std::vector<int> survivors =
        scheduler.WorkerLost(worker, absl::StrCat(who, " was lost: ", how));
    if (options_.world) continue;
    for (const int member : survivors) {
      Process* other = ProcessOf(member);
      if (other == nullptr || !other->watched) continue;
      // Blocked in a collective with the dead rank, it would never return: MPI releases no one.
      other->killed_because =
          absl::StrCat("killed by the gateway: its gang lost worker ", worker,
                       ", and a rank blocked in a collective with a dead one is never released");
      Log(LogLevel::kWarning, "killing ", Describe(*other), ": its gang lost worker ", worker);
      kill(other->hello.pid(), SIGKILL);
    }
  }
  if (options_.world && lost_a_worker && !every_worker_lost_ &&
      std::all_of(worker_process_.begin(), worker_process_.end(), [](int p) { return p < 0; })) {
    every_worker_lost_ = true;
    final_status_ = absl::UnavailableError(absl::StrCat(
        "every worker was lost, and in world mode nothing can replace them; the last: ",
        last_loss_));
    Log(LogLevel::kError, final_status_.message());
    if (options_.every_worker_lost) options_.every_worker_lost(final_status_);
  }
}

bool MpiWorkerPool::SpawnDue() const {
  if (options_.world || target_ < 0) return false;
  const Cohort& target = cohorts_[static_cast<size_t>(target_)];
  if (!target.broken && !target.rejected) return false;
  // Not while a process the gateway killed is still ending: a spawn while Open MPI handles that
  // death left a new worker stuck before its hello here.
  return std::none_of(processes_.begin(), processes_.end(), [](const Process& process) {
    return process.state != Process::State::kGone && !process.killed_because.empty();
  });
}

bool MpiWorkerPool::EndsReaped() {
  const absl::Time now = absl::Now();
  const auto done = [now](const std::pair<pid_t, absl::Time>& ended) {
    return now - ended.second > kReapPatience || Reaped(ended.first);
  };
  unreaped_.erase(std::remove_if(unreaped_.begin(), unreaped_.end(), done), unreaped_.end());
  return unreaped_.empty();
}

void MpiWorkerPool::MaybeSpawn(Scheduler& scheduler) {
  if (!SpawnDue() || absl::Now() < next_spawn_ || !EndsReaped()) return;
  Log(LogLevel::kInfo, "spawning ", worker_count_, " workers to replace those lost",
      replace_failures_ > 0 ? absl::StrCat(" (", replace_failures_, " failed in a row)") : "");
  // While it spawns nothing is dispatched: MPI_Comm_spawn blocks until the workers' MPI_Init.
  if (absl::Status status = Spawn(options_); !status.ok()) {
    ++replace_failures_;
    next_spawn_ = absl::Now() + SpawnPause(replace_failures_);
    last_loss_ = absl::StrCat("replacements cannot be spawned: ", status.message());
    degraded_dirty_ = true;
    Log(LogLevel::kWarning, "cannot spawn replacement workers: ", status.message(),
        "; trying again in ", absl::FormatDuration(SpawnPause(replace_failures_)));
    UpdateDegraded(scheduler);
  }
}

void MpiWorkerPool::TakeOver(Scheduler& scheduler) {
  if (!consolidating_ || target_ < 0) return;
  const Cohort& target = cohorts_[static_cast<size_t>(target_)];
  if (!target.broken && !target.rejected) {
    for (int worker = 0; worker < worker_count_; ++worker) {
      const int next = target.first_process + worker;
      Process& process = processes_[static_cast<size_t>(next)];
      if (process.state != Process::State::kUp || process.worker == worker) continue;
      const int current = worker_process_[static_cast<size_t>(worker)];
      if (current >= 0) {
        // A busy worker finishes what it holds on its old process first.
        if (!scheduler.TakeIdleWorker(worker)) continue;
        SendShutdown(current);
      }
      process.worker = worker;
      worker_process_[static_cast<size_t>(worker)] = next;
      degraded_dirty_ = true;
      scheduler.WorkerUp(worker);
      scheduler.SetWorkerProcess(worker, process.hello.host(), process.hello.pid(),
                                 process.hello.runner_pid());
      if (current < 0) Log(LogLevel::kInfo, "worker ", worker, " serves again, on pid ", process.hello.pid());
    }
  }
  // Processes of older jobs that serve no worker (and never will): stop them.
  for (int id = 0; id < static_cast<int>(processes_.size()); ++id) {
    Process& process = processes_[static_cast<size_t>(id)];
    if (process.state == Process::State::kUp && process.worker < 0 && process.cohort != target_) {
      SendShutdown(id);
    }
  }
  // Done once every worker is on a process of the target job (and none of it still boots): until
  // a worker process is lost again, there is nothing to move.
  bool done = awaiting_ == 0;
  for (int worker = 0; worker < worker_count_ && done; ++worker) {
    const int id = worker_process_[static_cast<size_t>(worker)];
    done = id >= 0 && processes_[static_cast<size_t>(id)].cohort == target_;
  }
  consolidating_ = !done;
}

void MpiWorkerPool::UpdateDegraded(Scheduler& scheduler) {
  // Every dispatch round comes here: most find nothing changed.
  const absl::Time now = absl::Now();
  if (!degraded_dirty_ && now < degraded_refresh_) return;
  degraded_dirty_ = false;
  degraded_refresh_ = absl::InfiniteFuture();
  const int down = static_cast<int>(std::count(worker_process_.begin(), worker_process_.end(), -1));
  std::string reason;
  if (down > 0 || SpawnDue()) {
    reason = absl::StrCat(down, " of ", worker_count_, " workers out of service; ", last_loss_);
    if (options_.world) {
      absl::StrAppend(&reason, "; in world mode nothing can replace them");
    } else if (replace_failures_ > 0 && next_spawn_ > now) {
      absl::StrAppend(&reason, "; replacements keep failing (", replace_failures_,
                      " in a row): the next attempt within ",
                      absl::FormatDuration(absl::Ceil(next_spawn_ - now, absl::Seconds(1))));
      // The count down, and what follows it.
      degraded_refresh_ = now + absl::Seconds(1);
    } else {
      absl::StrAppend(&reason, "; replacements are starting");
    }
  } else if (replace_failures_ > 0) {
    // Whole again: the failures in a row end once its processes have lived a while.
    absl::Time youngest = absl::InfinitePast();
    for (const int id : worker_process_) {
      youngest = std::max(youngest, processes_[static_cast<size_t>(id)].up_since);
    }
    if (now - youngest >= kShortLife) {
      replace_failures_ = 0;
    } else {
      degraded_refresh_ = youngest + kShortLife;
    }
  }
  if (reason == degraded_) return;
  if (reason.empty()) Log(LogLevel::kInfo, "the pool is whole again: ", worker_count_, " workers");
  degraded_ = reason;
  scheduler.SetDegraded(reason);
  if (degraded_changed_) degraded_changed_(degraded_);
}

void MpiWorkerPool::SendShutdown(int id) {
  Process& process = processes_[static_cast<size_t>(id)];
  // A worker's process is stopped only once another serves it, or at the end.
  if (process.worker >= 0 && worker_process_[static_cast<size_t>(process.worker)] == id) {
    worker_process_[static_cast<size_t>(process.worker)] = -1;
  }
  wire::ShutdownFrame shutdown;
  shutdown.set_skip_disconnect(cohorts_[static_cast<size_t>(process.cohort)].broken);
  SetState(process, Process::State::kStopping);
  process.worker = -1;
  // Not blocking: should the process be gone already, unseen yet, the send is abandoned when it
  // is seen.
  absl::StatusOr<std::string> buffer = wire::Encode(shutdown);
  absl::Status status = buffer.ok() ? sends_.Start(CommOf(process), RankOf(process),
                                                   wire::Tag::kShutdown, *std::move(buffer))
                                    : buffer.status();
  if (!status.ok()) {
    Log(LogLevel::kWarning, "cannot tell ", Describe(process), " to shut down: ", status.message());
  }
  if (ringer_.has_value() && !process.doorbell.empty()) {
    // A ring only wakes; should it fail, the worker finds the frame on its next poll.
    ringer_->Ring(process.doorbell).IgnoreError();
  }
}

void MpiWorkerPool::MarkGone(int id) {
  Process& process = processes_[static_cast<size_t>(id)];
  SetState(process, Process::State::kGone);
  process.worker = -1;
  if (process.watched) watch_->Unwatch(WatchId(id));
  if (process.heartbeats) silence_->Unwatch(WatchId(id));
  process.watched = false;
  process.heartbeats = false;
  DisconnectRejected();
}

void MpiWorkerPool::DisconnectRejected() {
  // A replacement job that was rejected and has all said goodbye is disconnected (the members
  // that failed wait in the disconnect); every other job is disconnected by StopWorkers.
  for (Cohort& cohort : cohorts_) {
    if (!cohort.rejected || cohort.broken || cohort.comm == MPI_COMM_NULL) continue;
    bool all_gone = true;
    for (int i = 0; i < worker_count_; ++i) {
      const Process& member = processes_[static_cast<size_t>(cohort.first_process + i)];
      all_gone = all_gone && member.state == Process::State::kGone;
    }
    if (all_gone) MPI_Comm_disconnect(&cohort.comm);
  }
}

void MpiWorkerPool::SetState(Process& process, Process::State state) {
  // Any change may let a worker move (TakeOver), or change why the pool is degraded.
  consolidating_ = true;
  degraded_dirty_ = true;
  const auto awaited = [](Process::State each) {
    return each == Process::State::kBooting || each == Process::State::kStopping;
  };
  awaiting_ += (awaited(state) ? 1 : 0) - (awaited(process.state) ? 1 : 0);
  if (state == Process::State::kGone && process.state != Process::State::kGone) {
    --cohorts_[static_cast<size_t>(process.cohort)].live;
  }
  process.state = state;
}

std::string MpiWorkerPool::Describe(const Process& process) const {
  const std::string where =
      absl::StrCat(" on ", process.hello.host(), " (pid ", process.hello.pid(), ")");
  if (process.worker >= 0) return absl::StrCat("worker ", process.worker, where);
  return absl::StrCat("replacement process for worker ", process.index, where);
}

MpiWorkerPool::Process* MpiWorkerPool::ProcessOf(int worker) {
  const int id = worker_process_[static_cast<size_t>(worker)];
  return id < 0 ? nullptr : &processes_[static_cast<size_t>(id)];
}

absl::Status MpiWorkerPool::Dispatch(Scheduler& scheduler) {
  wire::PollBackoff backoff;
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
    const Process& process = *ProcessOf(worker);
    absl::Status status;
    if (batch.frames_size() == 1) {
      status = sends_.Start(CommOf(process), RankOf(process), wire::Tag::kTask,
                           std::move(*batch.mutable_frames(0)));
    } else {
      absl::StatusOr<std::string> encoded = wire::Encode(batch);
      status = encoded.ok() ? sends_.Start(CommOf(process), RankOf(process), wire::Tag::kTasks,
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
  // Takes one result, serialized, of a process that serves `worker`.
  const auto complete = [&](int worker, const std::string& bytes) {
    Scheduler::WorkerResult& taken = received.emplace_back();
    taken.worker = worker;
    if (absl::Status status = wire::Decode(bytes, taken.result); !status.ok()) return status;
    if (received.size() >= kResultsPerCompletion) hand_over();
    return absl::OkStatus();
  };
  // Fails a frame that cannot go to its worker, as the worker would have answered it.
  const auto fail_assignment = [&](Assignment& assignment, const absl::Status& why) {
    scheduler.Complete(assignment.worker, FailedResult(assignment.frame.task_key(), why));
  };
  // The frames of one result message (one, or a batch's).
  std::vector<const std::string*> frames;
  while (true) {
    HandleEnded(scheduler, in_flight);
    ExpireBooting();
    // Before a spawn, which takes a while: PoolStatus says why workers are down as soon as it
    // says they are.
    UpdateDegraded(scheduler);
    MaybeSpawn(scheduler);
    TakeOver(scheduler);
    UpdateDegraded(scheduler);
    // Hellos or goodbyes to come.
    const bool awaiting = awaiting_ > 0;
    // With nothing in flight there is nothing to poll for: block until there is work.
    absl::Duration wait = in_flight > 0 || !sends_.empty() || awaiting ? backoff.NextDelay()
                                                                      : absl::InfiniteDuration();
    // More tasks in flight than workers: some wait in a backlog (Scheduler's prefetch), so results
    // can wait a little and be taken several at a time; polling hot would only take CPU from the
    // workers and gRPC. New work still ends the wait at once.
    if (in_flight > worker_count_) wait = std::max(wait, kBackloggedPoll);
    // Hellos and goodbyes are polled for; a replacement waits out its pause.
    if (awaiting) wait = std::min(wait, kHealingPoll);
    if (SpawnDue()) wait = std::min(wait, std::max(next_spawn_ - absl::Now(), absl::ZeroDuration()));
    if (!unreaped_.empty() && !EndsReaped()) wait = std::min(wait, kHealingPoll);
    // Heartbeats are taken as they come, so that a silence is told within about
    // kHeartbeatLimit + kHeartbeatInterval (see SilenceWatch).
    const bool heartbeats = !silence_->empty();
    if (heartbeats) wait = std::min(wait, kHeartbeatInterval);
    DispatchWork work = scheduler.AwaitWork(wait);
    // By now every task has ended or been failed (see Scheduler::FailRunning); results still on
    // their way are dropped by StopWorkers.
    if (work.stopping) break;
    for (Assignment& assignment : work.assignments) {
      const Process* process = ProcessOf(assignment.worker);
      if (process == nullptr) {
        // Not handed out once the scheduler knows of the loss; one handed out before is lost.
        fail_assignment(assignment, absl::AbortedError("its worker was lost"));
        continue;
      }
      if (assignment.frame.gang_size() > 0) {
        // A gang's members make their communicator in their job's world: all must be of one.
        bool one_job = true;
        for (const int member : assignment.frame.gang()) {
          const Process* other = ProcessOf(member);
          one_job = one_job && other != nullptr && other->cohort == process->cohort;
        }
        if (!one_job) {
          fail_assignment(assignment,
                          absl::UnavailableError(
                              "the gang's workers run in different MPI jobs while the pool "
                              "replaces lost workers; submit it again"));
          continue;
        }
      }
      absl::Status fitted = FitSharedMemory(assignment.worker, assignment.frame);
      absl::StatusOr<std::string> buffer =
          fitted.ok() ? wire::Encode(assignment.frame) : absl::StatusOr<std::string>(fitted);
      if (!buffer.ok()) {
        fail_assignment(assignment, buffer.status());
        continue;
      }
      // Small frames for one worker go together, in one message; a large one alone.
      const size_t worker = static_cast<size_t>(assignment.worker);
      if (buffer->size() >= kTaskBatchBytes) {
        // After the worker's frames before it: a worker runs its tasks in the order they came.
        if (absl::Status status = send_batch(assignment.worker); !status.ok()) return status;
        if (absl::Status status = sends_.Start(CommOf(*process), RankOf(*process), wire::Tag::kTask,
                                              *std::move(buffer));
            !status.ok()) {
          return status;
        }
      } else {
        batches[worker].add_frames(*std::move(buffer));
      }
      sent_to[worker] = true;
      ++in_flight;
      ++ProcessOf(assignment.worker)->in_flight;
      backoff.Reset();
    }
    for (int worker = 0; worker < worker_count_; ++worker) {
      if (absl::Status status = send_batch(worker); !status.ok()) return status;
    }
    for (const Interrupt& interrupt : work.interrupts) {
      const Process* process = ProcessOf(interrupt.worker);
      // Nothing goes to a process that is gone: in Open MPI that send would never end.
      if (process == nullptr) continue;
      wire::CancelFrame cancel;
      cancel.set_task_key(interrupt.task_key);
      cancel.set_force(interrupt.force);
      absl::StatusOr<std::string> buffer = wire::Encode(cancel);
      if (!buffer.ok()) return buffer.status();
      if (absl::Status status = sends_.Start(CommOf(*process), RankOf(*process), wire::Tag::kCancel,
                                            *std::move(buffer));
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
    if (absl::Status status = sends_.Progress(); !status.ok()) return status;

    // Every job with a process that may still send something, polled in turn until none has.
    bool polled_any = in_flight > 0 || awaiting || heartbeats;
    while (polled_any) {
      polled_any = false;
      for (size_t c = 0; c < cohorts_.size(); ++c) {
        Cohort& cohort = cohorts_[c];
        if (cohort.comm == MPI_COMM_NULL || cohort.live == 0) continue;
        absl::StatusOr<std::optional<wire::ReceivedMessage>> polled =
            wire::TryReceive(cohort.comm, MPI_ANY_SOURCE);
        if (!polled.ok()) return polled.status();
        if (!polled->has_value()) continue;
        polled_any = true;
        backoff.Reset();
        const wire::ReceivedMessage& message = **polled;
        const int id = cohort.first_process + message.source - rank_offset_;
        Process& process = processes_[static_cast<size_t>(id)];
        // A lost process's last words, sent before it died: its tasks have been accounted for.
        if (process.state == Process::State::kGone) continue;
        if (message.tag == wire::Tag::kHeartbeat) {
          if (absl::Status status = TakeHeartbeat(id, message.bytes); !status.ok()) return status;
          continue;
        }
        if (message.tag == wire::Tag::kHello) {
          wire::HelloFrame hello;
          if (absl::Status status = wire::Decode(message.bytes, hello); !status.ok()) {
            return status;
          }
          // One told to stop while it booted (its job was rejected) serves nothing, whatever its
          // hello says; one that failed to start has left its loop and sends no goodbye.
          if (process.state == Process::State::kStopping) {
            process.hello = std::move(hello);
            if (process.hello.has_error()) MarkGone(id);
            continue;
          }
          TakeHello(id, std::move(hello));
          continue;
        }
        if (message.tag == wire::Tag::kShutdown) {
          // A replaced process's goodbye.
          MarkGone(id);
          continue;
        }
        const int worker = process.worker;
        if (message.tag == wire::Tag::kProgress) {
          if (worker < 0) continue;
          if (absl::Status status = wire::Decode(message.bytes, progress); !status.ok()) {
            return status;
          }
          scheduler.Progress(worker, progress);
          continue;
        }
        frames.clear();
        if (message.tag == wire::Tag::kResults) {
          if (absl::Status status = wire::Decode(message.bytes, results); !status.ok()) {
            return status;
          }
          for (const std::string& frame : results.frames()) frames.push_back(&frame);
        } else if (message.tag == wire::Tag::kResult) {
          frames.push_back(&message.bytes);
        } else {
          return absl::InternalError(absl::StrCat(Describe(process),
                                                  " sent an unexpected frame with tag ",
                                                  static_cast<int>(message.tag)));
        }
        for (const std::string* frame : frames) {
          --process.in_flight;
          --in_flight;
          // A result of a process that no longer serves its worker was accounted for.
          if (worker < 0) continue;
          if (absl::Status status = complete(worker, *frame); !status.ok()) return status;
        }
        results.Clear();
      }
    }
    hand_over();
  }
  return absl::OkStatus();
}

absl::Status MpiWorkerPool::FitSharedMemory(int worker, wire::TaskFrame& frame) const {
  const int id = worker_process_[static_cast<size_t>(worker)];
  if (processes_[static_cast<size_t>(id)].shares_memory) return absl::OkStatus();
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
  const Process* process = ProcessOf(worker);
  if (!ringer_.has_value() || process == nullptr || process->doorbell.empty()) return;
  // A ring only wakes; should it fail, the worker finds the frame on its next poll.
  ringer_->Ring(process->doorbell).IgnoreError();
}

absl::Status MpiWorkerPool::StopWorkers() {
  for (int id = 0; id < static_cast<int>(processes_.size()); ++id) {
    const Process& process = processes_[static_cast<size_t>(id)];
    // One that has not said hello (a replacement still starting, or hung) would hear the
    // shutdown only after its hello, if ever: not waited for. It ends with the job's daemon once
    // this process has finalised MPI, or by itself (WorkerOptions::hello_timeout).
    if (process.state != Process::State::kGone && process.hello.pid() == 0) {
      Log(LogLevel::kInfo, "not waiting for the replacement for worker ", process.index,
          ", which has not said hello");
      GiveUp(id);
      continue;
    }
    if (process.state == Process::State::kUp) SendShutdown(id);
  }
  // A busy worker hears the shutdown within milliseconds (its task goes on, unwanted); one that
  // does not answer in this long cannot be stopped in order.
  const absl::Time deadline = absl::Now() + kAnswerTimeout;
  wire::PollBackoff backoff;
  while (true) {
    // A process that ends (or goes silent) meanwhile answers nothing. Every one is stopping by
    // now: the scheduler hears of none of them.
    int unused_in_flight = 0;
    HandleEnded(*scheduler_, unused_in_flight);
    if (absl::Status status = sends_.Progress(); !status.ok()) return status;
    size_t waiting = 0;
    for (const Process& process : processes_) {
      if (process.state == Process::State::kStopping) ++waiting;
    }
    if (waiting == 0) break;
    bool received_any = false;
    for (Cohort& cohort : cohorts_) {
      if (cohort.comm == MPI_COMM_NULL) continue;
      absl::StatusOr<std::optional<wire::ReceivedMessage>> received =
          wire::TryReceive(cohort.comm, MPI_ANY_SOURCE);
      if (!received.ok()) return received.status();
      if (!received->has_value()) continue;
      received_any = true;
      const int id = cohort.first_process + (**received).source - rank_offset_;
      if ((**received).tag == wire::Tag::kHeartbeat &&
          processes_[static_cast<size_t>(id)].state != Process::State::kGone) {
        if (absl::Status status = TakeHeartbeat(id, (**received).bytes); !status.ok()) {
          return status;
        }
        continue;
      }
      // Anything else is a hello, or the result of a task that ended or was failed after the
      // drain began.
      if ((**received).tag != wire::Tag::kShutdown) continue;
      if (processes_[static_cast<size_t>(id)].state == Process::State::kStopping) MarkGone(id);
    }
    if (received_any) {
      backoff.Reset();
      continue;
    }
    if (absl::Now() > deadline) {
      AbortWorkers(absl::DeadlineExceededError(
          absl::StrCat(waiting, " workers did not answer the shutdown within ",
                       absl::FormatDuration(kAnswerTimeout))));
    }
    absl::SleepFor(backoff.NextDelay());
  }
  // Every process left has answered: what is still sent to it completes.
  if (absl::Status status = sends_.WaitAll(); !status.ok()) return status;
  if (rank_offset_ > 0) return absl::OkStatus();  // MPI_COMM_WORLD is never disconnected.
  for (Cohort& cohort : cohorts_) {
    // A job that lost a process would never finish the collective disconnect; its survivors
    // were told to skip it too.
    if (cohort.comm == MPI_COMM_NULL || cohort.broken) continue;
    if (const int rc = MPI_Comm_disconnect(&cohort.comm); rc != MPI_SUCCESS) {
      return wire::MpiError(rc, "MPI_Comm_disconnect");
    }
  }
  return absl::OkStatus();
}

}  // namespace mpigate::server
