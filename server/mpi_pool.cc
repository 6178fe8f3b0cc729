#include "server/mpi_pool.h"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/shared_memory.h"
#include "server/abort_reaper.h"
#include "server/hello_check.h"
#include "wire/frames.pb.h"
#include "wire/mpi_frames.h"
#include "worker/hello_deadline.h"
#include "worker/worker_process.h"

namespace mpigate::server {
namespace {

// How often the MPI thread polls for results while workers have backlogs.
constexpr absl::Duration kBackloggedPoll = absl::Microseconds(100);

// While replacements boot, wait for, or take over from, old processes: how often the MPI thread
// looks, at most.
constexpr absl::Duration kHealingPoll = absl::Milliseconds(10);

// How long a worker that is told to shut down may take to answer.
constexpr absl::Duration kAnswerTimeout = absl::Seconds(10);

// How long after an abort Open MPI's daemon may take to end the workers and itself before the
// reaper kills what is left (it took well under a second in every abort that did not hang).
constexpr absl::Duration kAbortReaperPatience = absl::Seconds(10);

// A worker whose process cannot be watched (one on another host) sends a heartbeat this often
// while it listens, and is taken as lost after this long without one: a loss is seen within
// about a second, and a worker that is merely busy (its loop listens every 20 ms while a task
// runs, every millisecond or so while idle) is never taken for lost.
constexpr absl::Duration kHeartbeatInterval = absl::Milliseconds(200);
constexpr absl::Duration kHeartbeatLimit = absl::Seconds(1);

// How often Open MPI's runtime is asked about remote workers whose heartbeats are quiet (each ask
// takes the MPI thread 0.4-0.8 ms): their loss is seen within about this long.
constexpr absl::Duration kRuntimeAskInterval = absl::Milliseconds(200);

std::string HostName() {
  char name[HOST_NAME_MAX + 1] = {};
  return gethostname(name, sizeof(name)) == 0 ? std::string(name) : std::string();
}

}  // namespace

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
    worker::HelloDeadline hello_deadline(options.worker_options.hello_timeout, "the hello");
    Started started;
    started.worker_exit_code = worker::RunWorkerProcess(MPI_COMM_WORLD, /*disconnect=*/false,
                                                        options.worker_options, hello_deadline);
    start_result_ = started;
    started_.Notify();
    return;
  }
  absl::StatusOr<PoolSize> size =
      provided < MPI_THREAD_FUNNELED
          ? absl::FailedPreconditionError("MPI does not provide MPI_THREAD_FUNNELED")
          : SizePool(options.world, options.workers);
  if (!size.ok()) {
    start_result_ = size.status();
    started_.Notify();
    MPI_Finalize();
    return;
  }
  table_.emplace(size->workers, size->rank_offset);
  health_.emplace(options.world);
  options_ = std::move(options);
  start_result_ = Started{size->workers, std::nullopt};
  started_.Notify();

  serve_.WaitForNotification();
  if (scheduler_ == nullptr) {
    // World-mode workers wait for a shutdown that an orderly path would send after their hellos.
    if (options_.world) AbortWorkers(absl::AbortedError("the gateway stopped before serving"));
    MPI_Finalize();
    return;
  }
  const absl::Status booted = Boot(*scheduler_);
  if (booted_) booted_(booted);
  if (booted.ok()) {
    absl::Status served = Dispatch(*scheduler_);
    if (absl::Status stopped = StopWorkers(); served.ok()) served = stopped;
    if (final_status_.ok()) final_status_ = served;
  } else {
    final_status_ = booted;
  }
  watch_.reset();
  bell_.reset();
  runtime_.reset();
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
  // only way out is to abort the job; Open MPI then ends this process too, and its daemon the
  // workers and itself, or else the reaper does.
  Log(LogLevel::kError, "aborting the workers: ", why.ToString());
  std::vector<pid_t> local_workers;
  for (int id = 0; id < table_->process_count(); ++id) {
    const Process& process = table_->process(id);
    if (process.watched && process.state != Process::State::kGone) {
      local_workers.push_back(process.hello.pid());
    }
  }
  if (absl::Status reaper = StartAbortReaper(local_workers, kAbortReaperPatience); !reaper.ok()) {
    Log(LogLevel::kWarning, "no reaper for what the abort may leave: ", reaper.ToString());
  }
  MPI_Abort(table_->AbortComm(), 1);
  std::abort();
}

absl::Status MpiWorkerPool::StartJob() {
  MPI_Comm comm = MPI_COMM_WORLD;
  if (!options_.world) {
    absl::StatusOr<MPI_Comm> spawned = SpawnWorkers(spawn_plan_);
    if (!spawned.ok()) return spawned.status();
    comm = *spawned;
  }
  table_->AddCohort(comm, absl::Now());
  return absl::OkStatus();
}

absl::Status MpiWorkerPool::Boot(Scheduler& scheduler) {
  host_ = HostName();
  shared_memory_domain_ = SharedMemoryDomain();
  if (absl::StatusOr<std::unique_ptr<GatewayBell>> bell =
          GatewayBell::Open([&scheduler] { scheduler.WakeDispatch(); });
      bell.ok()) {
    bell_ = *std::move(bell);
  }
  watch_.emplace([&scheduler] { scheduler.WakeDispatch(); });
  silence_.emplace(kHeartbeatLimit);
  if (absl::StatusOr<std::unique_ptr<RuntimeWatch>> runtime = RuntimeWatch::Connect();
      runtime.ok()) {
    runtime_ = *std::move(runtime);
  } else {
    Log(LogLevel::kInfo, "not asking the MPI runtime about workers (", runtime.status().message(),
        "): a worker on another host lost while it runs a gang function goes unseen");
  }
  spawn_plan_ = SpawnPlan{options_.worker_binary, options_.worker_options, options_.spawn_info,
                          table_->workers()};
  if (absl::Status failure = StartJob(); !failure.ok()) {
    scheduler.PoolBroken(failure.message());
    return failure;
  }
  absl::StatusOr<std::map<int, wire::HelloFrame>> hellos = AwaitHellos(
      table_->cohort(0).comm, table_->rank_offset(), table_->workers(), options_.bootup_timeout);
  if (!hellos.ok()) {
    // Without every hello the workers' state is unknown and a disconnect could hang.
    AbortWorkers(hellos.status());
  }
  const BootVerdict verdict = JudgeFirstHellos(*hellos);
  for (const auto& [worker, hello] : *hellos) {
    Process& process = table_->process(worker);
    if (hello.has_error()) {
      // It has left its loop and waits in the collective disconnect.
      table_->SetState(process, Process::State::kGone);
      continue;
    }
    Register(worker, hello);
    process.worker = worker;
    table_->Serve(worker, worker);
    scheduler.SetWorkerProcess(worker, hello.host(), hello.pid(), hello.runner_pid());
  }
  if (!verdict.failure.ok()) {
    // The workers that failed have left their loop; the others wait for a shutdown frame. All
    // of them then meet in the collective disconnect.
    StopWorkers().IgnoreError();
    scheduler.PoolBroken(verdict.failure.message());
    return verdict.failure;
  }
  if (!verdict.broken.empty()) {
    // The workers stay up, idle, so that the service can say why it runs nothing.
    scheduler.PoolBroken(verdict.broken);
    return absl::OkStatus();
  }
  const wire::HelloFrame& first = hellos->begin()->second;
  functions_ = FunctionNames(first);
  scheduler.PoolReady(FunctionInfos(first));
  return absl::OkStatus();
}

void MpiWorkerPool::Register(int id, wire::HelloFrame hello) {
  Process& process = table_->process(id);
  process.hello = std::move(hello);
  table_->SetState(process, Process::State::kUp);
  process.up_since = absl::Now();
  const wire::HelloFrame& said = process.hello;
  process.shares_memory =
      !shared_memory_domain_.empty() && said.shared_memory_domain() == shared_memory_domain_;
  // A doorbell in another host or network namespace is not found: that worker polls.
  if (bell_ != nullptr && !said.doorbell().empty() && bell_->Ring(said.doorbell()).ok()) {
    process.doorbell = said.doorbell();
  }
  // Its pid means this process only if it runs on this host, in this pid namespace: the same
  // host name and shared memory domain (boot, /dev/shm, user).
  if (process.shares_memory && said.host() == host_ && said.pid() > 0) {
    if (absl::Status status = watch_->Watch(table_->WatchId(id), said.pid()); status.ok()) {
      process.watched = true;
    } else {
      Log(LogLevel::kWarning, ProcessTable::Describe(process), ": cannot watch its pid (",
          status.message(), "): watching its heartbeats instead");
    }
  }
  // One that failed to start has left its loop: it would never take the frame.
  if (process.watched || said.has_error()) return;
  wire::HeartbeatFrame ask;
  ask.set_interval_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(kHeartbeatInterval)));
  absl::StatusOr<std::string> buffer = wire::Encode(ask);
  absl::Status status = buffer.ok() ? sends_.Start(table_->CommOf(process), table_->RankOf(process),
                                                   wire::Tag::kHeartbeat, *std::move(buffer))
                                    : buffer.status();
  if (!status.ok()) {
    Log(LogLevel::kWarning, ProcessTable::Describe(process),
        ": its loss would go unseen: ", status.message());
    return;
  }
  silence_->Watch(table_->WatchId(id), absl::Now());
  process.heartbeats = true;
}

absl::Status MpiWorkerPool::TakeHeartbeat(int id, const std::string& bytes) {
  wire::HeartbeatFrame beat;
  if (absl::Status status = wire::Decode(bytes, beat); !status.ok()) return status;
  silence_->Heard(table_->WatchId(id), absl::Now(), beat.quiet());
  return absl::OkStatus();
}

void MpiWorkerPool::TakeHello(int id, wire::HelloFrame hello) {
  Register(id, std::move(hello));
  const Process& process = table_->process(id);
  const wire::HelloFrame& said = process.hello;
  const std::string failure = ReplacementFailure(said, functions_);
  // One that failed to start has left its loop and waits in the collective disconnect.
  if (said.has_error()) MarkGone(id);
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
  Cohort& cohort = table_->cohort(c);
  CountReplaceFailure(cohort);
  Log(LogLevel::kWarning, who, " failed to start: ", failure, "; trying again in ",
      absl::FormatDuration(absl::Ceil(health_->next_spawn() - absl::Now(), absl::Seconds(1))));
  health_->SetLastLoss(absl::StrCat("a replacement failed to start: ", failure));
  cohort.rejected = true;
  for (int i = 0; i < table_->workers(); ++i) {
    const int member = cohort.first_process + i;
    const Process& other = table_->process(member);
    if ((other.state == Process::State::kUp || other.state == Process::State::kBooting) &&
        other.worker < 0) {
      SendShutdown(member);
    }
  }
  DisconnectRejected();
}

void MpiWorkerPool::GiveUp(int id) {
  Process& process = table_->process(id);
  Cohort& cohort = table_->cohort(process.cohort);
  // It would never take part in the disconnect.
  cohort.broken = true;
  sends_.Abandon(cohort.comm, table_->RankOf(process));
  MarkGone(id);
}

void MpiWorkerPool::ExpireBooting() {
  if (table_->awaiting() == 0) return;
  const absl::Time now = absl::Now();
  const absl::Duration timeout = options_.bootup_timeout;
  for (int id = 0; id < table_->process_count(); ++id) {
    const Process& process = table_->process(id);
    // Booting, or told to stop while it booted (its job was rejected), and no hello yet.
    if (process.state == Process::State::kGone || process.hello.pid() != 0 ||
        now - process.spawned <= timeout) {
      continue;
    }
    const bool booting = process.state == Process::State::kBooting;
    GiveUp(id);
    // It ends itself by its own deadlines (worker/hello_deadline.h), at the latest its MPI_Init
    // one, counted from before its spawn returned here. A spawn while Open MPI's daemon handles
    // such an end left the new workers stuck in MPI_Init and this thread in MPI_Comm_spawn until
    // Open MPI's 5-minute PMIx timeout (CI, worker_heal_test): the next spawn waits until it has
    // surely ended and been reaped.
    health_->HoldSpawnUntil(process.spawned + worker::kMpiInitTimeoutFactor * timeout +
                            UnreapedEnds::kPatience);
    if (booting) {
      RejectJob(process.cohort, absl::StrCat("replacement for worker ", process.index),
                absl::StrCat("it did not say hello within ", absl::FormatDuration(timeout),
                             " of its spawn (it ends itself)"));
    }
  }
}

void MpiWorkerPool::CountReplaceFailure(Cohort& cohort) {
  if (cohort.counted_failure) return;
  cohort.counted_failure = true;
  health_->CountFailure(absl::Now());
}

void MpiWorkerPool::HandleEnded(Scheduler& scheduler) {
  // Each process seen to end (no word of how yet) or gone silent (and how that looks).
  std::vector<std::pair<int, std::string>> ended;
  for (const uint64_t watch_id : watch_->TakeEnded()) {
    const int id = table_->ProcessOfWatchId(watch_id);
    if (id < 0) continue;
    ended.emplace_back(id, "");
    if (!options_.world) unreaped_.Add(table_->process(id).hello.pid(), absl::Now());
  }
  if (!silence_->empty()) {
    for (const uint64_t watch_id : silence_->TakeSilent(absl::Now())) {
      if (const int id = table_->ProcessOfWatchId(watch_id); id >= 0) {
        ended.emplace_back(
            id, absl::StrCat("it sent no heartbeat for ", absl::FormatDuration(silence_->limit()),
                             ": its process, its host or the network to it is gone (a worker "
                             "on another host is watched by its heartbeats)"));
      }
    }
  }
  for (auto& [id, how] : AskRuntime()) ended.emplace_back(id, std::move(how));
  bool lost_a_worker = false;
  for (auto& [id, silent] : ended) {
    Process& process = table_->process(id);
    if (process.state == Process::State::kGone) continue;
    const Process::State was = process.state;
    Cohort& cohort = table_->cohort(process.cohort);
    cohort.broken = true;
    sends_.Abandon(cohort.comm, table_->RankOf(process));
    table_->DropInFlight(process);
    const std::string how =
        HowProcessEnded(std::move(silent), process.hello.doorbell(), process.killed_because);
    const std::string who = ProcessTable::Describe(process);
    const int worker = process.worker;
    MarkGone(id);
    if (was == Process::State::kStopping) {
      Log(LogLevel::kInfo, who, " ended while stopping: ", how);
      continue;
    }
    const bool short_lived =
        PoolHealth::ShortLived(was == Process::State::kBooting, process.up_since, absl::Now());
    if (!options_.world && short_lived && cohort.replacement) {
      CountReplaceFailure(cohort);
    } else if (!short_lived) {
      health_->ResetFailures();
    }
    Log(LogLevel::kWarning, who, " was lost: ", how);
    health_->SetLastLoss(absl::StrCat(who, " was lost: ", how));
    if (worker < 0) continue;
    lost_a_worker = true;
    table_->Serve(worker, -1);
    const std::vector<int> survivors =
        scheduler.WorkerLost(worker, health_->last_loss(), DegradedChange());
    if (!options_.world) KillGangMates(worker, survivors);
  }
  if (options_.world && lost_a_worker && !every_worker_lost_ &&
      table_->WorkersDown() == table_->workers()) {
    every_worker_lost_ = true;
    final_status_ = absl::UnavailableError(absl::StrCat(
        "every worker was lost, and in world mode nothing can replace them; the last: ",
        health_->last_loss()));
    Log(LogLevel::kError, final_status_.message());
    if (options_.every_worker_lost) options_.every_worker_lost(final_status_);
  }
}

std::vector<std::pair<int, std::string>> MpiWorkerPool::AskRuntime() {
  std::vector<std::pair<int, std::string>> ended;
  for (const int id : runtime_killed_) ended.emplace_back(id, "");
  runtime_killed_.clear();
  // Every dispatch round comes here: a pool with no worker on another host reads no clock.
  if (runtime_ == nullptr || silence_->empty()) return ended;
  const absl::Time now = absl::Now();
  if (now < next_runtime_ask_) return ended;
  const std::vector<uint64_t> quiet = silence_->Quiet();
  if (quiet.empty()) return ended;
  next_runtime_ask_ = now + kRuntimeAskInterval;
  // One query per job: a gang's members are of one.
  absl::flat_hash_map<std::string, std::vector<RuntimeProcess>> tables;
  for (const uint64_t watch_id : quiet) {
    const int id = table_->ProcessOfWatchId(watch_id);
    if (id < 0) continue;
    const wire::HelloFrame& hello = table_->process(id).hello;
    if (hello.runtime_job().empty()) continue;
    auto [table, inserted] = tables.try_emplace(hello.runtime_job());
    if (inserted) {
      absl::StatusOr<std::vector<RuntimeProcess>> processes =
          runtime_->Processes(hello.runtime_job());
      if (!processes.ok()) {
        Log(LogLevel::kWarning, "no longer asking the MPI runtime about workers (",
            processes.status().message(),
            "): a worker on another host lost while it runs a gang function goes unseen");
        runtime_.reset();
        return ended;
      }
      table->second = *std::move(processes);
    }
    if (std::optional<std::string> how =
            RuntimeSaysEnded(table->second, hello.runtime_rank(), hello.pid())) {
      ended.emplace_back(id, *std::move(how));
    }
  }
  return ended;
}

void MpiWorkerPool::KillGangMates(int worker, const std::vector<int>& mates) {
  for (const int member : mates) {
    const int id = table_->ProcessIdOf(member);
    if (id < 0) continue;
    Process& other = table_->process(id);
    // Blocked in a collective with the dead rank, it would never return: MPI releases no one.
    const std::string because =
        absl::StrCat("killed by the gateway: its gang lost worker ", worker,
                     ", and a rank blocked in a collective with a dead one is never released");
    if (other.watched) {
      other.killed_because = because;
      Log(LogLevel::kWarning, "killing ", ProcessTable::Describe(other), ": its gang lost worker ",
          worker);
      kill(other.hello.pid(), SIGKILL);
      continue;
    }
    if (runtime_ == nullptr || other.hello.runtime_job().empty()) {
      Log(LogLevel::kWarning, ProcessTable::Describe(other),
          " stays blocked in the gang that lost worker ", worker,
          ": the gateway kills only processes of its own host without the MPI runtime");
      continue;
    }
    if (absl::Status status = runtime_->Kill(other.hello.runtime_job(), other.hello.runtime_rank());
        !status.ok()) {
      Log(LogLevel::kWarning, "cannot kill ", ProcessTable::Describe(other),
          ", which stays blocked in its gang: ", status.message());
      continue;
    }
    other.killed_because = because;
    Log(LogLevel::kWarning, "killing ", ProcessTable::Describe(other),
        " through the MPI runtime: its gang lost worker ", worker);
    runtime_killed_.push_back(id);
    // Its end is not seen here: the next spawn waits as long as a seen end's reaping may take.
    health_->HoldSpawnUntil(absl::Now() + UnreapedEnds::kPatience);
  }
}

bool MpiWorkerPool::SpawnDue() const {
  if (options_.world || table_->target() < 0) return false;
  const Cohort& target = table_->cohort(table_->target());
  // Not while a process the gateway killed is still ending: a spawn while Open MPI handles that
  // death left a new worker stuck before its hello here.
  return (target.broken || target.rejected) && !table_->KilledStillEnding();
}

void MpiWorkerPool::MaybeSpawn(Scheduler& scheduler) {
  if (!SpawnDue() || absl::Now() < health_->next_spawn() || !unreaped_.AllReaped(absl::Now())) {
    return;
  }
  const int failures = health_->failures();
  Log(LogLevel::kInfo, "spawning ", table_->workers(), " workers to replace those lost",
      failures > 0 ? absl::StrCat(" (", failures, " failed in a row)") : "");
  // While it spawns nothing is dispatched: MPI_Comm_spawn blocks until the workers' MPI_Init.
  if (absl::Status status = StartJob(); !status.ok()) {
    health_->CountFailure(absl::Now());
    health_->SetLastLoss(absl::StrCat("replacements cannot be spawned: ", status.message()));
    Log(LogLevel::kWarning, "cannot spawn replacement workers: ", status.message(),
        "; trying again in ", absl::FormatDuration(PoolHealth::SpawnPause(health_->failures())));
    UpdateDegraded(scheduler);
  }
}

void MpiWorkerPool::TakeOver(Scheduler& scheduler) {
  const int target = table_->target();
  if (!table_->unsettled() || target < 0) return;
  const Cohort& cohort = table_->cohort(target);
  if (!cohort.broken && !cohort.rejected) {
    for (int worker = 0; worker < table_->workers(); ++worker) {
      const int next = cohort.first_process + worker;
      Process& process = table_->process(next);
      if (process.state != Process::State::kUp || process.worker == worker) continue;
      const int current = table_->ProcessIdOf(worker);
      if (current >= 0) {
        // A busy worker finishes what it holds on its old process first.
        if (!scheduler.TakeIdleWorker(worker)) continue;
        SendShutdown(current);
      }
      process.worker = worker;
      table_->Serve(worker, next);
      scheduler.WorkerUp(worker, process.cohort);
      scheduler.SetWorkerProcess(worker, process.hello.host(), process.hello.pid(),
                                 process.hello.runner_pid());
      if (current < 0) {
        Log(LogLevel::kInfo, "worker ", worker, " serves again, on pid ", process.hello.pid());
      }
    }
  }
  // Processes of older jobs that serve no worker (and never will): stop them.
  for (int id = 0; id < table_->process_count(); ++id) {
    const Process& process = table_->process(id);
    if (process.state == Process::State::kUp && process.worker < 0 && process.cohort != target) {
      SendShutdown(id);
    }
  }
  // Done once every worker is on a process of the target job (and none of it still boots): until
  // a worker process is lost again, there is nothing to move.
  bool done = table_->awaiting() == 0;
  for (int worker = 0; worker < table_->workers() && done; ++worker) {
    const int id = table_->ProcessIdOf(worker);
    done = id >= 0 && table_->process(id).cohort == target;
  }
  if (done) table_->Settled();
}

void MpiWorkerPool::UpdateDegraded(Scheduler& scheduler) {
  std::optional<std::string> reason = DegradedChange();
  if (reason.has_value()) scheduler.SetDegraded(*std::move(reason));
}

std::optional<std::string> MpiWorkerPool::DegradedChange() {
  // Every dispatch round comes here: most find nothing changed.
  const absl::Time now = absl::Now();
  if (!health_->NeedsUpdate(now, table_->changes())) return std::nullopt;
  const PoolHealth::Shape shape{table_->workers(), table_->WorkersDown(), SpawnDue(),
                                table_->YoungestUp()};
  std::optional<std::string> reason = health_->Update(now, table_->changes(), shape);
  if (!reason.has_value()) return std::nullopt;
  if (reason->empty()) {
    Log(LogLevel::kInfo, "the pool is whole again: ", table_->workers(), " workers");
  }
  if (degraded_changed_) degraded_changed_(*reason);
  return reason;
}

void MpiWorkerPool::SendShutdown(int id) {
  Process& process = table_->process(id);
  // A worker's process is stopped only once another serves it, or at the end.
  if (process.worker >= 0 && table_->ProcessIdOf(process.worker) == id) {
    table_->Serve(process.worker, -1);
  }
  wire::ShutdownFrame shutdown;
  shutdown.set_skip_disconnect(table_->cohort(process.cohort).broken);
  table_->SetState(process, Process::State::kStopping);
  process.worker = -1;
  // Not blocking: should the process be gone already, unseen yet, the send is abandoned when it
  // is seen.
  absl::StatusOr<std::string> buffer = wire::Encode(shutdown);
  absl::Status status = buffer.ok() ? sends_.Start(table_->CommOf(process), table_->RankOf(process),
                                                   wire::Tag::kShutdown, *std::move(buffer))
                                    : buffer.status();
  if (!status.ok()) {
    Log(LogLevel::kWarning, "cannot tell ", ProcessTable::Describe(process),
        " to shut down: ", status.message());
  }
  if (bell_ != nullptr && !process.doorbell.empty()) {
    // A ring only wakes; should it fail, the worker finds the frame on its next poll.
    bell_->Ring(process.doorbell).IgnoreError();
  }
}

void MpiWorkerPool::MarkGone(int id) {
  Process& process = table_->process(id);
  table_->SetState(process, Process::State::kGone);
  process.worker = -1;
  if (process.watched) watch_->Unwatch(table_->WatchId(id));
  if (process.heartbeats) silence_->Unwatch(table_->WatchId(id));
  process.watched = false;
  process.heartbeats = false;
  DisconnectRejected();
}

void MpiWorkerPool::DisconnectRejected() {
  // A replacement job that was rejected and has all said goodbye is disconnected (the members
  // that failed wait in the disconnect); every other job is disconnected by StopWorkers.
  for (Cohort& cohort : table_->cohorts()) {
    if (!cohort.rejected || cohort.broken || cohort.comm == MPI_COMM_NULL) continue;
    if (cohort.live == 0) MPI_Comm_disconnect(&cohort.comm);
  }
}

absl::Status MpiWorkerPool::Dispatch(Scheduler& scheduler) {
  TaskPump pump(*table_, sends_, bell_.get(), scheduler);
  wire::PollBackoff backoff;
  while (true) {
    HandleEnded(scheduler);
    ExpireBooting();
    // Before a spawn, which takes a while: PoolStatus says why workers are down as soon as it
    // says they are.
    UpdateDegraded(scheduler);
    MaybeSpawn(scheduler);
    TakeOver(scheduler);
    UpdateDegraded(scheduler);
    // Hellos or goodbyes to come.
    const bool awaiting = table_->awaiting() > 0;
    // With nothing in flight there is nothing to poll for: block until there is work.
    absl::Duration wait = table_->in_flight() > 0 || !sends_.empty() || awaiting
                              ? backoff.NextDelay()
                              : absl::InfiniteDuration();
    // More tasks in flight than workers: some wait in a backlog (Scheduler's prefetch), so results
    // can wait a little and be taken several at a time; polling hot would only take CPU from the
    // workers and gRPC. New work still ends the wait at once.
    const bool backlogged = table_->in_flight() > table_->workers();
    if (backlogged) wait = std::max(wait, kBackloggedPoll);
    // Nor would a worker's ring back (server/gateway_bell.h) be worth a wake-up then.
    if (bell_ != nullptr) bell_->WakeOnRingBacks(!backlogged);
    // Hellos and goodbyes are polled for; a replacement waits out its pause.
    if (awaiting) wait = std::min(wait, kHealingPoll);
    if (SpawnDue()) {
      wait = std::min(wait, std::max(health_->next_spawn() - absl::Now(), absl::ZeroDuration()));
    }
    if (!unreaped_.empty() && !unreaped_.AllReaped(absl::Now())) {
      wait = std::min(wait, kHealingPoll);
    }
    // Heartbeats are taken as they come, so that a silence is told within about
    // kHeartbeatLimit + kHeartbeatInterval (see SilenceWatch).
    const bool heartbeats = !silence_->empty();
    if (heartbeats) wait = std::min(wait, kHeartbeatInterval);
    // A hot poll gives way to any thread waiting for this CPU: a worker just rung is often woken
    // onto it, and the kernel does not preempt a running thread for it, so it would otherwise
    // wait out every hot poll (some hundreds of microseconds) before it could even start.
    if (wait == absl::ZeroDuration()) sched_yield();
    DispatchWork work = scheduler.AwaitWork(wait);
    // By now every task has ended or been failed (see Scheduler::FailRunning); results still on
    // their way are dropped by StopWorkers.
    if (work.stopping) break;
    absl::StatusOr<bool> sent_tasks = pump.Send(work);
    if (!sent_tasks.ok()) return sent_tasks.status();
    if (*sent_tasks) backoff.Reset();
    if (absl::Status status = sends_.Progress(); !status.ok()) return status;
    // After tasks went out the polls are hot again, and the next one finds what this one takes in.
    if (absl::Status status = Poll(pump, backoff, table_->in_flight() > 0 || awaiting || heartbeats,
                                   wait > absl::ZeroDuration() && !*sent_tasks);
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

absl::Status MpiWorkerPool::Poll(TaskPump& pump, wire::PollBackoff& backoff, bool poll,
                                 bool after_wait) {
  // Every job with a process that may still send something, polled in turn until none has.
  bool polled_any = poll;
  // Open MPI's MPI_Improbe looks for a match before it makes progress: a message that came
  // during a wait is only taken in by the first round of probes, and found by a second.
  bool probe_again = poll && after_wait;
  while (polled_any) {
    polled_any = std::exchange(probe_again, false);
    for (int c = 0; c < table_->cohort_count(); ++c) {
      const Cohort& cohort = table_->cohort(c);
      if (cohort.comm == MPI_COMM_NULL || cohort.live == 0) continue;
      absl::StatusOr<std::optional<wire::ReceivedMessage>> polled =
          wire::TryReceive(cohort.comm, MPI_ANY_SOURCE);
      if (!polled.ok()) return polled.status();
      if (!polled->has_value()) continue;
      polled_any = true;
      backoff.Reset();
      const wire::ReceivedMessage& message = **polled;
      const int id = table_->ProcessAt(c, message.source);
      Process& process = table_->process(id);
      // A lost process's last words, sent before it died: its tasks have been accounted for.
      if (process.state == Process::State::kGone) continue;
      if (message.tag == wire::Tag::kHeartbeat) {
        if (absl::Status status = TakeHeartbeat(id, message.bytes); !status.ok()) return status;
      } else if (message.tag == wire::Tag::kHello) {
        wire::HelloFrame hello;
        if (absl::Status status = wire::Decode(message.bytes, hello); !status.ok()) return status;
        // One told to stop while it booted (its job was rejected) serves nothing, whatever its
        // hello says; one that failed to start has left its loop and sends no goodbye.
        if (process.state == Process::State::kStopping) {
          process.hello = std::move(hello);
          if (process.hello.has_error()) MarkGone(id);
        } else {
          TakeHello(id, std::move(hello));
        }
      } else if (message.tag == wire::Tag::kShutdown) {
        // A replaced process's goodbye.
        MarkGone(id);
      } else if (absl::Status status = pump.Take(process, message); !status.ok()) {
        return status;
      }
    }
  }
  pump.HandOver();
  return absl::OkStatus();
}

absl::Status MpiWorkerPool::StopWorkers() {
  for (int id = 0; id < table_->process_count(); ++id) {
    const Process& process = table_->process(id);
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
    HandleEnded(*scheduler_);
    if (absl::Status status = sends_.Progress(); !status.ok()) return status;
    const int waiting = table_->Stopping();
    if (waiting == 0) break;
    bool received_any = false;
    for (int c = 0; c < table_->cohort_count(); ++c) {
      const Cohort& cohort = table_->cohort(c);
      if (cohort.comm == MPI_COMM_NULL) continue;
      absl::StatusOr<std::optional<wire::ReceivedMessage>> received =
          wire::TryReceive(cohort.comm, MPI_ANY_SOURCE);
      if (!received.ok()) return received.status();
      if (!received->has_value()) continue;
      received_any = true;
      const int id = table_->ProcessAt(c, (**received).source);
      const Process::State state = table_->process(id).state;
      if ((**received).tag == wire::Tag::kHeartbeat && state != Process::State::kGone) {
        if (absl::Status status = TakeHeartbeat(id, (**received).bytes); !status.ok()) {
          return status;
        }
        continue;
      }
      // Anything else is a hello, or the result of a task that ended or was failed after the
      // drain began.
      if ((**received).tag == wire::Tag::kShutdown && state == Process::State::kStopping) {
        MarkGone(id);
      }
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
  // MPI_COMM_WORLD is never disconnected.
  if (options_.world) return absl::OkStatus();
  for (Cohort& cohort : table_->cohorts()) {
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
