// Scheduler unit tests. The scheduler is synchronous when driven with AwaitWork(ZeroDuration()),
// so these tests play the transport themselves: AwaitWork hands out assignments, Complete reports
// them back. A fake clock drives queue timeouts and timings; no test sleeps.
#include "server/scheduler.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

int Code(absl::StatusCode code) { return static_cast<int>(code); }

// Counts OnSessionEvents() calls; the tests collect the events themselves.
class CountingListener : public SessionListener {
 public:
  void OnSessionEvents() override { calls_.fetch_add(1, std::memory_order_relaxed); }
  int calls() const { return calls_.load(std::memory_order_relaxed); }
  // The calls so far, counting from zero again afterwards.
  int TakeCalls() { return calls_.exchange(0, std::memory_order_relaxed); }

 private:
  std::atomic<int> calls_{0};
};

// An echo task whose payload names its client id, so that a dispatched frame (which carries only
// the scheduler's task key) can be traced back to the task.
v1::TaskSpec Task(uint64_t id, absl::string_view function = "echo") {
  v1::TaskSpec spec;
  spec.set_task_id(id);
  spec.set_function(std::string(function));
  spec.set_payload(absl::StrCat("t", id));
  return spec;
}

// The client id of a dispatched task (see Task()).
uint64_t IdOf(const Assignment& assignment) {
  uint64_t id = 0;
  absl::string_view payload = assignment.frame.payload();
  EXPECT_TRUE(!payload.empty() && payload[0] == 't' && absl::SimpleAtoi(payload.substr(1), &id))
      << "unexpected payload '" << payload << "'";
  return id;
}

std::vector<uint64_t> IdsOf(const std::vector<Assignment>& assignments) {
  std::vector<uint64_t> ids;
  for (const Assignment& assignment : assignments) ids.push_back(IdOf(assignment));
  return ids;
}

std::vector<uint64_t> IdsOf(const std::vector<v1::TaskOutcome>& outcomes) {
  std::vector<uint64_t> ids;
  for (const v1::TaskOutcome& outcome : outcomes) ids.push_back(outcome.task_id());
  return ids;
}

// Whether the thread `tid` of this process sleeps (its state in /proc is S).
bool Sleeping(pid_t tid) {
  std::ifstream stat(absl::StrCat("/proc/self/task/", tid, "/stat"));
  std::string line;
  std::getline(stat, line);
  // "tid (comm) S ...": the state follows the last ')'.
  const size_t comm_end = line.rfind(')');
  return comm_end != std::string::npos && line.size() > comm_end + 2 && line[comm_end + 2] == 'S';
}

// A successful result for `assignment` that echoes its payload.
wire::ResultFrame Echoed(const Assignment& assignment) {
  wire::ResultFrame result;
  result.set_task_key(assignment.frame.task_key());
  result.set_result(assignment.frame.payload());
  return result;
}

class SchedulerTest : public ::testing::Test {
 protected:
  // Options of a scheduler on the fixture's clock that reports each start and outcome at once
  // (tests of start_report_delay and backlog_outcome_delay set their own).
  Scheduler::Options FakeClockOptions(int workers) {
    Scheduler::Options options;
    options.workers = workers;
    options.clock = [this] { return now_; };
    options.start_report_delay = absl::ZeroDuration();
    options.backlog_outcome_delay = absl::ZeroDuration();
    return options;
  }

  // Builds the scheduler under test, still booting.
  void Boot(int workers, absl::flat_hash_map<std::string, std::string> refused = {}) {
    Scheduler::Options options = FakeClockOptions(workers);
    options.refused_functions = std::move(refused);
    scheduler_ = std::make_unique<Scheduler>(std::move(options));
  }

  static std::vector<v1::FunctionInfo> Functions(std::vector<std::string> names) {
    std::vector<v1::FunctionInfo> functions;
    for (std::string& name : names) {
      v1::FunctionInfo& info = functions.emplace_back();
      info.set_name(std::move(name));
      info.set_description(absl::StrCat("does ", info.name()));
    }
    return functions;
  }

  // Builds the scheduler under test with a ready pool of echo that holds each start back for
  // `delay` (Options::start_report_delay).
  void StartHoldingStarts(int workers, absl::Duration delay) {
    Scheduler::Options options = FakeClockOptions(workers);
    options.start_report_delay = delay;
    scheduler_ = std::make_unique<Scheduler>(std::move(options));
    scheduler_->PoolReady(Functions({"echo"}));
  }

  // Builds the scheduler under test with a ready pool of echo that reports starts at once and
  // holds the outcomes of a session with at least `backlog` tasks queued back for `delay`, or
  // until it holds `batch` (Options::backlog_tasks, backlog_outcome_delay and
  // backlog_outcome_batch).
  void StartHoldingOutcomes(int workers, size_t backlog, absl::Duration delay,
                            size_t batch = 1024) {
    Scheduler::Options options = FakeClockOptions(workers);
    options.backlog_tasks = backlog;
    options.backlog_outcome_delay = delay;
    options.backlog_outcome_batch = batch;
    scheduler_ = std::make_unique<Scheduler>(std::move(options));
    scheduler_->PoolReady(Functions({"echo"}));
  }

  // StartHoldingOutcomes with 1 worker, a backlog of 1 and a delay of 1 ms; then a session whose
  // task 1 has ended, its outcome held, while task 2 runs (`running`) and task 3 waits.
  SessionId HoldFirstOutcome(std::vector<Assignment>& running) {
    StartHoldingOutcomes(/*workers=*/1, /*backlog=*/1, absl::Milliseconds(1));
    const SessionId session = Open();
    SubmitRange(session, 1, 3);
    running = Dispatch();
    EXPECT_EQ(running.size(), 1u);
    EXPECT_THAT(TakeStarted(session), ElementsAre(1));
    if (running.size() != 1) return session;
    CompleteEchoed(running[0]);
    EXPECT_EQ(Listener(session).calls(), 0);
    running = Dispatch();
    EXPECT_EQ(running.size(), 1u);
    EXPECT_EQ(Listener(session).calls(), 0);
    return session;
  }

  // Builds the scheduler under test with a ready pool of echo and fail whose sessions may be
  // resumed within `grace` and hold at most `max_unread` bytes of outcomes (0: any). Session n's
  // resume token is "token-n".
  void StartResumable(int workers, absl::Duration grace, uint64_t max_unread = 0) {
    Scheduler::Options options = FakeClockOptions(workers);
    options.resume_grace = grace;
    options.max_unread_result_bytes = max_unread;
    options.token_source = [this]() -> absl::StatusOr<std::string> {
      return absl::StrCat("token-", ++tokens_made_);
    };
    scheduler_ = std::make_unique<Scheduler>(std::move(options));
    scheduler_->PoolReady(Functions({"echo", "fail"}));
  }

  // Resumes the session with `token` on a fresh counting listener, which replaces the session's
  // entry in listeners_.
  absl::StatusOr<ResumedSession> Resume(const std::string& token,
                                        std::vector<uint64_t> acked = {}) {
    auto listener = std::make_shared<CountingListener>();
    absl::StatusOr<ResumedSession> resumed = scheduler_->Resume(token, listener, acked);
    if (resumed.ok()) {
      for (auto& [id, old] : listeners_) {
        if (id == resumed->id) old = listener;
      }
    }
    return resumed;
  }

  // The session's entry in the pool status; fails the test if the status does not list it.
  v1::SessionStatus SessionStatusOf(SessionId session) {
    const v1::PoolStatus status = scheduler_->Status();
    for (const v1::SessionStatus& entry : status.session_list()) {
      if (entry.session_id() == session) return entry;
    }
    ADD_FAILURE() << "status does not list session " << session;
    return v1::SessionStatus();
  }

  // Builds the scheduler under test with a ready pool; `functions` are the names the workers
  // registered.
  void Start(int workers, std::vector<std::string> functions = {"echo", "fail"}) {
    Boot(workers);
    scheduler_->PoolReady(Functions(std::move(functions)));
  }

  // Collects a session's events after a dispatch: the listener was told once, and there are only
  // starts. Returns their ids; the listener's count starts from zero again.
  std::vector<uint64_t> TakeStarted(SessionId session) {
    EXPECT_EQ(Listener(session).TakeCalls(), 1);
    SessionEvents events = scheduler_->TakeEvents(session);
    EXPECT_THAT(events.outcomes, IsEmpty());
    return events.started;
  }

  // Opens a session with a fresh counting listener, kept in listeners_[session].
  SessionId Open(absl::string_view name = "client") {
    auto listener = std::make_shared<CountingListener>();
    absl::StatusOr<SessionId> id = scheduler_->OpenSession(std::string(name), listener);
    EXPECT_TRUE(id.ok()) << id.status();
    if (!id.ok()) return 0;
    listeners_.emplace_back(*id, listener);
    return *id;
  }

  // Opens a session that may have at most `cap` tasks on workers at once (max_running_tasks).
  SessionId OpenCapped(uint32_t cap, absl::string_view name = "capped") {
    auto listener = std::make_shared<CountingListener>();
    absl::StatusOr<SessionId> id =
        scheduler_->OpenSession(std::string(name), listener, 0, {}, {}, cap);
    EXPECT_TRUE(id.ok()) << id.status();
    if (!id.ok()) return 0;
    listeners_.emplace_back(*id, listener);
    return *id;
  }

  CountingListener& Listener(SessionId session) {
    for (auto& [id, listener] : listeners_) {
      if (id == session) return *listener;
    }
    ADD_FAILURE() << "no listener for session " << session;
    static CountingListener* const kNone = new CountingListener();
    return *kNone;
  }

  // Submits `tasks` as one batch, as the gRPC adapter passes a SubmitTasks message's tasks.
  absl::StatusOr<std::vector<v1::TaskRejection>> TrySubmit(SessionId session,
                                                           std::vector<v1::TaskSpec> tasks) {
    google::protobuf::RepeatedPtrField<v1::TaskSpec> batch(std::make_move_iterator(tasks.begin()),
                                                           std::make_move_iterator(tasks.end()));
    return scheduler_->Submit(session, batch);
  }

  // Submits `tasks` to an existing session and returns the rejections.
  std::vector<v1::TaskRejection> Submit(SessionId session, std::vector<v1::TaskSpec> tasks) {
    absl::StatusOr<std::vector<v1::TaskRejection>> rejections =
        TrySubmit(session, std::move(tasks));
    EXPECT_TRUE(rejections.ok()) << rejections.status();
    return rejections.ok() ? *std::move(rejections) : std::vector<v1::TaskRejection>();
  }

  // Submits echo tasks with ids first..last, expecting all to be accepted.
  void SubmitRange(SessionId session, uint64_t first, uint64_t last) {
    std::vector<v1::TaskSpec> tasks;
    for (uint64_t id = first; id <= last; ++id) tasks.push_back(Task(id));
    EXPECT_THAT(Submit(session, std::move(tasks)), IsEmpty());
  }

  std::vector<Assignment> Dispatch() {
    DispatchWork work = scheduler_->AwaitWork(absl::ZeroDuration());
    EXPECT_FALSE(work.stopping);
    return std::move(work.assignments);
  }

  void CompleteEchoed(const Assignment& assignment) {
    scheduler_->Complete(assignment.worker, Echoed(assignment));
  }

  std::vector<v1::CancelResult> Cancel(SessionId session, std::vector<uint64_t> ids) {
    absl::StatusOr<std::vector<v1::CancelResult>> results = scheduler_->Cancel(session, ids);
    EXPECT_TRUE(results.ok()) << results.status();
    return results.ok() ? *std::move(results) : std::vector<v1::CancelResult>();
  }

  // Builds the scheduler under test with a ready pool of `functions` whose workers may hold up to
  // `max_tasks` tasks each, within the default prefetch window of 1 ms.
  void StartPrefetching(int workers, int max_tasks, std::vector<v1::FunctionInfo> functions) {
    Scheduler::Options options = FakeClockOptions(workers);
    options.max_tasks_per_worker = max_tasks;
    scheduler_ = std::make_unique<Scheduler>(std::move(options));
    scheduler_->PoolReady(std::move(functions));
  }

  // Builds the scheduler under test with a ready pool of echo and fail that offers shared memory
  // with the prefix kSharedPrefix, recording in released_ each object it releases; sessions hold
  // at most `max_unread` bytes of outcomes (0: any).
  void StartShared(int workers, uint64_t max_unread = 0) {
    Scheduler::Options options = FakeClockOptions(workers);
    options.max_unread_result_bytes = max_unread;
    options.shared_memory_prefix = kSharedPrefix;
    options.release_shared_object = [this](const std::string& name) { released_.push_back(name); };
    scheduler_ = std::make_unique<Scheduler>(std::move(options));
    scheduler_->PoolReady(Functions({"echo", "fail"}));
  }

  // Opens a session that may use shared memory, with results of at least `result_min_bytes` in
  // shared memory (0: never).
  SessionId OpenShared(uint64_t result_min_bytes) {
    auto listener = std::make_shared<CountingListener>();
    absl::StatusOr<SessionId> id = scheduler_->OpenSession(
        "shared", listener, 0, {.enabled = true, .result_min_bytes = result_min_bytes});
    EXPECT_TRUE(id.ok()) << id.status();
    if (!id.ok()) return 0;
    listeners_.emplace_back(*id, listener);
    return *id;
  }

  static constexpr char kSharedPrefix[] = "mpigate-test-";

  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
  int tokens_made_ = 0;
  std::vector<std::string> released_;
  std::unique_ptr<Scheduler> scheduler_;
  std::vector<std::pair<SessionId, std::shared_ptr<CountingListener>>> listeners_;
};

// --- Dispatch and completion ---

TEST_F(SchedulerTest, DispatchAssignsQueuedTasksToIdleWorkers) {
  Start(/*workers=*/2);
  const SessionId session = Open();
  SubmitRange(session, 1, 3);

  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 2u);
  // FIFO within a session; the lowest-numbered idle worker first.
  EXPECT_EQ(assignments[0].worker, 0);
  EXPECT_EQ(assignments[1].worker, 1);
  EXPECT_THAT(IdsOf(assignments), ElementsAre(1, 2));
  for (const Assignment& assignment : assignments) {
    EXPECT_EQ(assignment.frame.function(), "echo");
    EXPECT_NE(assignment.frame.task_key(), 0u);
  }
  EXPECT_NE(assignments[0].frame.task_key(), assignments[1].frame.task_key());

  // Both workers are busy: the third task waits.
  EXPECT_THAT(Dispatch(), IsEmpty());
  const v1::PoolStatus status = scheduler_->Status();
  EXPECT_EQ(status.busy_workers(), 2u);
  EXPECT_EQ(status.queued_tasks(), 1u);
}

TEST_F(SchedulerTest, NothingToDispatchWithoutTasks) {
  Start(/*workers=*/2);
  Open();
  const DispatchWork work = scheduler_->AwaitWork(absl::ZeroDuration());
  EXPECT_THAT(work.assignments, IsEmpty());
  EXPECT_FALSE(work.stopping);
}

TEST_F(SchedulerTest, FrameCarriesBinaryPayload) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  v1::TaskSpec spec = Task(1);
  const std::string payload("\0\x01\xff\0", 4);
  spec.set_payload(payload);
  EXPECT_THAT(Submit(session, {spec}), IsEmpty());

  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_EQ(assignments[0].frame.payload(), payload);
  EXPECT_THAT(assignments[0].frame.items(), IsEmpty());
}

TEST_F(SchedulerTest, CompleteDeliversSucceededOutcome) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  SubmitRange(session, 42, 42);
  now_ += absl::Milliseconds(5);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_THAT(TakeStarted(session), ElementsAre(42));

  wire::ResultFrame result;
  result.set_task_key(assignments[0].frame.task_key());
  result.set_result(std::string("out\0put", 7));
  result.set_run_us(17);
  scheduler_->Complete(assignments[0].worker, std::move(result));
  EXPECT_EQ(Listener(session).calls(), 1);

  const SessionEvents events = scheduler_->TakeEvents(session);
  EXPECT_FALSE(events.closed);
  ASSERT_EQ(events.outcomes.size(), 1u);
  const v1::TaskOutcome& outcome = events.outcomes[0];
  EXPECT_EQ(outcome.task_id(), 42u);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(outcome.result(), std::string("out\0put", 7));
  EXPECT_EQ(outcome.worker(), 0);
  EXPECT_EQ(outcome.queue_us(), 5000u);
  EXPECT_EQ(outcome.run_us(), 17u);
  EXPECT_FALSE(outcome.has_error());
  EXPECT_THAT(outcome.items(), IsEmpty());

  // Collected: nothing more to hand over.
  EXPECT_THAT(scheduler_->TakeEvents(session).outcomes, IsEmpty());
}

TEST_F(SchedulerTest, ListenerToldOnceUntilEventsAreTaken) {
  Start(/*workers=*/3);
  const SessionId session = Open();
  SubmitRange(session, 1, 3);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 3u);

  CompleteEchoed(assignments[0]);
  CompleteEchoed(assignments[1]);
  // Two outcomes, one call: the listener has not collected the first yet.
  EXPECT_EQ(Listener(session).calls(), 1);
  EXPECT_THAT(IdsOf(scheduler_->TakeEvents(session).outcomes), ElementsAre(1, 2));

  CompleteEchoed(assignments[2]);
  EXPECT_EQ(Listener(session).calls(), 2);
  EXPECT_THAT(IdsOf(scheduler_->TakeEvents(session).outcomes), ElementsAre(3));
}

TEST_F(SchedulerTest, AStartGoesWithItsOutcomeWhenTheTaskEndsWithinTheReportDelay) {
  StartHoldingStarts(/*workers=*/2, absl::Milliseconds(1));
  const SessionId session = Open();
  SubmitRange(session, 1, 1);
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_EQ(Listener(session).calls(), 0) << "the start is held";
  now_ += absl::Microseconds(300);
  EXPECT_THAT(Dispatch(), IsEmpty());
  EXPECT_EQ(Listener(session).calls(), 0);
  CompleteEchoed(assignments[0]);
  EXPECT_EQ(Listener(session).TakeCalls(), 1);
  SessionEvents events = scheduler_->TakeEvents(session);
  EXPECT_THAT(events.started, ElementsAre(1)) << "in the same update as the outcome";
  EXPECT_THAT(IdsOf(events.outcomes), ElementsAre(1));
  // Its report, no longer needed, tells nobody anything when it comes due.
  now_ += absl::Milliseconds(5);
  EXPECT_THAT(Dispatch(), IsEmpty());
  EXPECT_EQ(Listener(session).calls(), 0);
}

TEST_F(SchedulerTest, AHeldStartIsReportedOnceTheDelayHasPassed) {
  StartHoldingStarts(/*workers=*/2, absl::Milliseconds(1));
  const SessionId session = Open();
  SubmitRange(session, 1, 1);
  const std::vector<Assignment> first = Dispatch();
  ASSERT_EQ(first.size(), 1u);
  // A later start joins the held one: one report for both, due when the first is.
  now_ += absl::Microseconds(600);
  SubmitRange(session, 2, 2);
  ASSERT_EQ(Dispatch().size(), 1u);
  now_ += absl::Microseconds(399);
  EXPECT_THAT(Dispatch(), IsEmpty());
  EXPECT_EQ(Listener(session).calls(), 0);
  now_ += absl::Microseconds(1);
  EXPECT_THAT(Dispatch(), IsEmpty());
  EXPECT_THAT(TakeStarted(session), ElementsAre(1, 2));

  // With a start held, the transport's endless wait ends by the time it is due (here 1 ms of
  // real time, the fake clock standing still), though nothing else wakes it.
  CompleteEchoed(first[0]);
  EXPECT_THAT(IdsOf(scheduler_->TakeEvents(session).outcomes), ElementsAre(1));
  Listener(session).TakeCalls();
  SubmitRange(session, 3, 3);
  ASSERT_EQ(Dispatch().size(), 1u);
  EXPECT_THAT(scheduler_->AwaitWork(absl::InfiniteDuration()).assignments, IsEmpty());
  now_ += absl::Milliseconds(1);
  EXPECT_THAT(Dispatch(), IsEmpty());
  EXPECT_THAT(TakeStarted(session), ElementsAre(3));
}

TEST_F(SchedulerTest, OutcomesOfASessionWithABacklogGoTogetherOnceTheDelayHasPassed) {
  StartHoldingOutcomes(/*workers=*/1, /*backlog=*/2, absl::Milliseconds(1));
  const SessionId session = Open();
  SubmitRange(session, 1, 6);
  std::vector<Assignment> running = Dispatch();
  ASSERT_EQ(running.size(), 1u);
  EXPECT_THAT(TakeStarted(session), ElementsAre(1));
  // Five still queued: the outcome waits, and so does the next start.
  CompleteEchoed(running[0]);
  running = Dispatch();
  ASSERT_EQ(running.size(), 1u);
  EXPECT_EQ(Listener(session).calls(), 0);
  // A later outcome joins the held one: one update for both, due when the first is.
  now_ += absl::Microseconds(600);
  CompleteEchoed(running[0]);
  running = Dispatch();
  ASSERT_EQ(running.size(), 1u);
  now_ += absl::Microseconds(399);
  EXPECT_THAT(Dispatch(), IsEmpty());
  EXPECT_EQ(Listener(session).calls(), 0);
  now_ += absl::Microseconds(1);
  EXPECT_THAT(Dispatch(), IsEmpty());
  EXPECT_EQ(Listener(session).TakeCalls(), 1);
  SessionEvents events = scheduler_->TakeEvents(session);
  EXPECT_THAT(IdsOf(events.outcomes), ElementsAre(1, 2));
  EXPECT_THAT(events.started, ElementsAre(2, 3));

  // Held again (tasks 4 to 6 queued), until the backlog is gone: once task 5 starts, one task is
  // left queued, fewer than two, and what was held goes at once.
  CompleteEchoed(running[0]);
  running = Dispatch();
  ASSERT_EQ(running.size(), 1u);
  EXPECT_EQ(Listener(session).calls(), 0);
  CompleteEchoed(running[0]);
  running = Dispatch();
  ASSERT_EQ(running.size(), 1u);
  EXPECT_EQ(Listener(session).TakeCalls(), 1);
  events = scheduler_->TakeEvents(session);
  EXPECT_THAT(IdsOf(events.outcomes), ElementsAre(3, 4));
  EXPECT_THAT(events.started, ElementsAre(4, 5));
  // Below the backlog an outcome goes at once.
  CompleteEchoed(running[0]);
  EXPECT_EQ(Listener(session).TakeCalls(), 1);
  EXPECT_THAT(IdsOf(scheduler_->TakeEvents(session).outcomes), ElementsAre(5));
}

TEST_F(SchedulerTest, HeldOutcomesGoOnceTheSessionHoldsABatchOfThem) {
  StartHoldingOutcomes(/*workers=*/1, /*backlog=*/1, absl::Seconds(1), /*batch=*/3);
  const SessionId session = Open();
  SubmitRange(session, 1, 8);
  std::vector<Assignment> running = Dispatch();
  ASSERT_EQ(running.size(), 1u);
  EXPECT_THAT(TakeStarted(session), ElementsAre(1));
  for (int ended = 1; ended <= 2; ++ended) {
    CompleteEchoed(running[0]);
    running = Dispatch();
    ASSERT_EQ(running.size(), 1u);
  }
  EXPECT_EQ(Listener(session).calls(), 0) << "two held, far from due";
  CompleteEchoed(running[0]);
  EXPECT_EQ(Listener(session).TakeCalls(), 1) << "the third makes a batch: they go at once";
  SessionEvents events = scheduler_->TakeEvents(session);
  EXPECT_THAT(IdsOf(events.outcomes), ElementsAre(1, 2, 3));
  EXPECT_THAT(events.started, ElementsAre(2, 3));
  // The next is held again, the session still having a backlog.
  running = Dispatch();
  ASSERT_EQ(running.size(), 1u);
  EXPECT_THAT(TakeStarted(session), ElementsAre(4));
  CompleteEchoed(running[0]);
  EXPECT_EQ(Listener(session).calls(), 0);
}

TEST_F(SchedulerTest, HeldOutcomesEndTheTransportsWaitWhenDue) {
  std::vector<Assignment> running;
  const SessionId session = HoldFirstOutcome(running);
  ASSERT_EQ(running.size(), 1u);
  // Nothing else wakes the wait below but the held outcome's due time (1 ms of real time; the fake
  // clock stands still). Not an endless wait, so that a scheduler that forgets the due time fails
  // rather than hangs.
  EXPECT_THAT(scheduler_->AwaitWork(absl::Minutes(1)).assignments, IsEmpty());
  EXPECT_EQ(Listener(session).calls(), 0);
  now_ += absl::Milliseconds(1);
  EXPECT_THAT(Dispatch(), IsEmpty());
  EXPECT_EQ(Listener(session).TakeCalls(), 1);
  EXPECT_THAT(IdsOf(scheduler_->TakeEvents(session).outcomes), ElementsAre(1));
}

TEST_F(SchedulerTest, HeldOutcomesGoWithTheSessionsNextOtherEvent) {
  std::vector<Assignment> running;
  const SessionId session = HoldFirstOutcome(running);
  ASSERT_EQ(running.size(), 1u);
  // Progress is news at once, and takes the held outcome and start with it.
  wire::ProgressFrame progress;
  progress.set_task_key(running[0].frame.task_key());
  progress.set_fraction(0.5);
  scheduler_->Progress(running[0].worker, progress);
  EXPECT_EQ(Listener(session).TakeCalls(), 1);
  const SessionEvents events = scheduler_->TakeEvents(session);
  EXPECT_THAT(IdsOf(events.outcomes), ElementsAre(1));
  EXPECT_THAT(events.started, ElementsAre(2));
  ASSERT_EQ(events.progress.size(), 1u);
  // Its report, no longer needed, tells nobody anything when it comes due.
  now_ += absl::Milliseconds(5);
  EXPECT_THAT(Dispatch(), IsEmpty());
  EXPECT_EQ(Listener(session).calls(), 0);
}

TEST_F(SchedulerTest, AnOutcomeHeldByAnotherThreadEndsTheTransportsWaitWhenDue) {
  // The real clock: the wait must end by itself once the held outcome is due.
  Scheduler::Options options;
  options.workers = 1;
  options.start_report_delay = absl::ZeroDuration();
  options.backlog_tasks = 1;
  options.backlog_outcome_delay = absl::Milliseconds(1);
  scheduler_ = std::make_unique<Scheduler>(std::move(options));
  scheduler_->PoolReady(Functions({"echo"}));
  const SessionId session = Open();
  SubmitRange(session, 1, 3);
  ASSERT_EQ(Dispatch().size(), 1u);
  EXPECT_THAT(TakeStarted(session), ElementsAre(1));
  // The transport's loop, blocked with its worker busy and nothing due, until the session hears
  // of something: the cancel below ends task 3 while task 2 stays queued, so its outcome is held,
  // and only the end of the wait brings it out. A scheduler that did not wake the wait would
  // hang this test.
  std::atomic<pid_t> transport_tid{0};
  std::thread transport([this, session, &transport_tid] {
    transport_tid = static_cast<pid_t>(syscall(SYS_gettid));
    while (Listener(session).calls() == 0) scheduler_->AwaitWork(absl::InfiniteDuration());
  });
  // Cancelled only once the transport is asleep in its wait (nothing else here blocks it).
  while (transport_tid == 0 || !Sleeping(transport_tid)) std::this_thread::yield();
  EXPECT_TRUE(Cancel(session, {3})[0].cancelled());
  transport.join();
  const SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_THAT(IdsOf(events.outcomes), ElementsAre(3));
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_CANCELLED);
}

TEST_F(SchedulerTest, OutcomesGoToTheirOwnSession) {
  Start(/*workers=*/2);
  const SessionId a = Open("a");
  const SessionId b = Open("b");
  // Both sessions use the same client ids; they are independent.
  SubmitRange(a, 1, 1);
  SubmitRange(b, 1, 1);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 2u);
  EXPECT_THAT(TakeStarted(a), ElementsAre(1));
  EXPECT_THAT(TakeStarted(b), ElementsAre(1));
  CompleteEchoed(assignments[1]);
  EXPECT_EQ(Listener(a).calls(), 0);
  EXPECT_EQ(Listener(b).calls(), 1);
  EXPECT_THAT(scheduler_->TakeEvents(a).outcomes, IsEmpty());
  const SessionEvents events = scheduler_->TakeEvents(b);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].worker(), 1);
}

TEST_F(SchedulerTest, ChunkResultsMapToItemOutcomes) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  v1::TaskSpec spec = Task(9);
  spec.clear_payload();
  for (const char* item : {"x", "y", "z"}) spec.add_items(item);
  EXPECT_THAT(Submit(session, {spec}), IsEmpty());

  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_THAT(assignments[0].frame.items(), ElementsAre("x", "y", "z"));

  wire::ResultFrame result;
  result.set_task_key(assignments[0].frame.task_key());
  result.add_items()->set_result("X");
  wire::ErrorInfo& error = *result.add_items()->mutable_error();
  error.set_code(Code(absl::StatusCode::kInvalidArgument));
  error.set_message("y is not allowed");
  error.set_exception_type("std::invalid_argument");
  result.add_items()->set_result("");
  scheduler_->Complete(0, std::move(result));

  const SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  const v1::TaskOutcome& outcome = events.outcomes[0];
  EXPECT_EQ(outcome.task_id(), 9u);
  // Items fail on their own; the chunk as a whole succeeded.
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_FALSE(outcome.has_error());
  ASSERT_EQ(outcome.items_size(), 3);
  ASSERT_EQ(outcome.items(0).outcome_case(), v1::ItemOutcome::kResult);
  EXPECT_EQ(outcome.items(0).result(), "X");
  ASSERT_EQ(outcome.items(1).outcome_case(), v1::ItemOutcome::kError);
  EXPECT_EQ(outcome.items(1).error().code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(outcome.items(1).error().message(), "y is not allowed");
  EXPECT_EQ(outcome.items(1).error().exception_type(), "std::invalid_argument");
  // An empty result is still a result.
  ASSERT_EQ(outcome.items(2).outcome_case(), v1::ItemOutcome::kResult);
  EXPECT_EQ(outcome.items(2).result(), "");
}

TEST_F(SchedulerTest, ErrorResultFailsTheTask) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  SubmitRange(session, 5, 5);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);

  wire::ResultFrame result;
  result.set_task_key(assignments[0].frame.task_key());
  wire::ErrorInfo& error = *result.mutable_error();
  error.set_code(Code(absl::StatusCode::kUnknown));
  error.set_message("boom");
  error.set_exception_type("std::runtime_error");
  scheduler_->Complete(0, std::move(result));

  const SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  const v1::TaskOutcome& outcome = events.outcomes[0];
  EXPECT_EQ(outcome.task_id(), 5u);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(outcome.error().code(), Code(absl::StatusCode::kUnknown));
  EXPECT_EQ(outcome.error().message(), "boom");
  EXPECT_EQ(outcome.error().exception_type(), "std::runtime_error");
  EXPECT_EQ(outcome.result(), "");
  EXPECT_EQ(outcome.worker(), 0);
  EXPECT_EQ(scheduler_->Status().tasks_failed(), 1u);
}

// --- Rejections ---

TEST_F(SchedulerTest, RejectsInvalidTasksAndRunsTheRest) {
  Start(/*workers=*/2);
  const SessionId session = Open();
  const std::vector<v1::TaskRejection> rejections =
      Submit(session, {Task(0), Task(1, ""), Task(2, "nope"), Task(3), Task(3), Task(4)});

  ASSERT_EQ(rejections.size(), 4u);
  EXPECT_EQ(rejections[0].task_id(), 0u);
  EXPECT_EQ(rejections[0].code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(rejections[1].task_id(), 1u);
  EXPECT_EQ(rejections[1].code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(rejections[2].task_id(), 2u);
  EXPECT_EQ(rejections[2].code(), Code(absl::StatusCode::kNotFound));
  EXPECT_THAT(rejections[2].message(), HasSubstr("nope"));
  // The second task 3 of the same batch collides with the first.
  EXPECT_EQ(rejections[3].task_id(), 3u);
  EXPECT_EQ(rejections[3].code(), Code(absl::StatusCode::kAlreadyExists));

  // The accepted tasks run, and rejections produce no outcomes.
  const std::vector<Assignment> assignments = Dispatch();
  EXPECT_THAT(IdsOf(assignments), ElementsAre(3, 4));
  for (const Assignment& assignment : assignments) CompleteEchoed(assignment);
  const SessionEvents events = scheduler_->TakeEvents(session);
  EXPECT_THAT(IdsOf(events.outcomes), ElementsAre(3, 4));
  EXPECT_EQ(events.outcomes[0].result(), "t3");
}

TEST_F(SchedulerTest, RejectsIdOfLiveTaskInLaterBatch) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  SubmitRange(session, 1, 2);
  ASSERT_EQ(Dispatch().size(), 1u);  // 1 runs, 2 is queued.
  for (const uint64_t id : {1, 2}) {
    const std::vector<v1::TaskRejection> rejections = Submit(session, {Task(id)});
    ASSERT_EQ(rejections.size(), 1u) << "task " << id;
    EXPECT_EQ(rejections[0].code(), Code(absl::StatusCode::kAlreadyExists)) << "task " << id;
  }
}

TEST_F(SchedulerTest, RejectsSubmitAfterShutdown) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  ASSERT_EQ(scheduler_->Shutdown(session, /*cancel_pending=*/false), absl::OkStatus());
  const std::vector<v1::TaskRejection> rejections = Submit(session, {Task(1)});
  ASSERT_EQ(rejections.size(), 1u);
  EXPECT_EQ(rejections[0].task_id(), 1u);
  EXPECT_EQ(rejections[0].code(), Code(absl::StatusCode::kFailedPrecondition));
}

TEST_F(SchedulerTest, UnknownSessionIsNotFound) {
  Start(/*workers=*/1);
  const SessionId unknown = 12345;
  EXPECT_EQ(TrySubmit(unknown, {Task(1)}).status().code(), absl::StatusCode::kNotFound);
  const std::vector<uint64_t> ids = {1};
  EXPECT_EQ(scheduler_->Cancel(unknown, ids).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler_->Shutdown(unknown, true).code(), absl::StatusCode::kNotFound);
  const SessionEvents events = scheduler_->TakeEvents(unknown);
  EXPECT_THAT(events.outcomes, IsEmpty());
  EXPECT_FALSE(events.closed);
  scheduler_->Abandon(unknown);  // A no-op.
  EXPECT_EQ(scheduler_->Status().sessions(), 0u);
}

TEST_F(SchedulerTest, TaskIdMayBeReusedOnceItsOutcomeIsAcknowledged) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  SubmitRange(session, 7, 8);
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  CompleteEchoed(assignments[0]);
  // 7 succeeded; 8 ends by cancellation.
  EXPECT_TRUE(Cancel(session, {8})[0].cancelled());
  EXPECT_THAT(IdsOf(scheduler_->TakeEvents(session).outcomes), ElementsAre(7, 8));

  // The session holds both outcomes until the client acknowledges them.
  const std::vector<v1::TaskRejection> rejections = Submit(session, {Task(7)});
  ASSERT_EQ(rejections.size(), 1u);
  EXPECT_EQ(rejections[0].code(), Code(absl::StatusCode::kAlreadyExists));
  const std::vector<uint64_t> acked = {7, 8};
  ASSERT_EQ(scheduler_->Ack(session, acked), absl::OkStatus());

  SubmitRange(session, 7, 8);
  assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_EQ(IdOf(assignments[0]), 7u);
  CompleteEchoed(assignments[0]);
  assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_EQ(IdOf(assignments[0]), 8u);
}

// --- Fair share ---

TEST_F(SchedulerTest, SmallSessionIsNotStuckBehindLargeOne) {
  Start(/*workers=*/2);
  const SessionId a = Open("a");
  const SessionId b = Open("b");
  SubmitRange(a, 1, 1000);
  // Ids apart from A's, so that the dispatched frames tell the sessions apart.
  SubmitRange(b, 10001, 10010);

  int assignments_seen = 0;
  int b_dispatched = 0;
  int b_done_at = -1;
  for (int round = 0; round < 600 && b_done_at < 0; ++round) {
    const std::vector<Assignment> assignments = Dispatch();
    ASSERT_FALSE(assignments.empty()) << "round " << round;
    for (const Assignment& assignment : assignments) {
      ++assignments_seen;
      if (IdOf(assignment) > 10000 && ++b_dispatched == 10) b_done_at = assignments_seen;
      CompleteEchoed(assignment);
    }
  }
  // Round-robin: A and B alternate, so B's 10 tasks are among the first 20 assignments.
  ASSERT_EQ(b_dispatched, 10);
  EXPECT_LE(b_done_at, 20);

  // B is done; A's remaining tasks still all run.
  EXPECT_EQ(scheduler_->TakeEvents(b).outcomes.size(), 10u);
  const v1::PoolStatus status = scheduler_->Status();
  EXPECT_EQ(status.queued_tasks(), 1010u - assignments_seen);
}

TEST_F(SchedulerTest, SessionsTakeTurnsOnSingleWorker) {
  Start(/*workers=*/1);
  const SessionId a = Open("a");
  const SessionId b = Open("b");
  SubmitRange(a, 1, 3);
  SubmitRange(b, 11, 12);
  std::vector<uint64_t> order;
  for (int i = 0; i < 5; ++i) {
    const std::vector<Assignment> assignments = Dispatch();
    ASSERT_EQ(assignments.size(), 1u);
    order.push_back(IdOf(assignments[0]));
    CompleteEchoed(assignments[0]);
  }
  EXPECT_THAT(order, ElementsAre(1, 11, 2, 12, 3));
}

// --- Cancel ---

TEST_F(SchedulerTest, CancelQueuedButNotRunningOrUnknown) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  SubmitRange(session, 1, 3);
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  ASSERT_EQ(IdOf(assignments[0]), 1u);

  const std::vector<v1::CancelResult> results = Cancel(session, {2, 1, 99});
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0].task_id(), 2u);
  EXPECT_TRUE(results[0].cancelled());
  EXPECT_EQ(results[1].task_id(), 1u);
  EXPECT_FALSE(results[1].cancelled()) << "a running task cannot be cancelled";
  EXPECT_EQ(results[2].task_id(), 99u);
  EXPECT_FALSE(results[2].cancelled()) << "unknown task";
  EXPECT_EQ(Listener(session).calls(), 1);

  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].task_id(), 2u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_CANCELLED);
  EXPECT_EQ(events.outcomes[0].error().code(), Code(absl::StatusCode::kCancelled));
  EXPECT_THAT(events.outcomes[0].error().message(), HasSubstr("client"));
  EXPECT_EQ(events.outcomes[0].worker(), -1);

  // Cancelling it again does nothing: it has ended.
  EXPECT_FALSE(Cancel(session, {2})[0].cancelled());

  // The cancelled task is skipped; 3 runs next and nothing after it.
  CompleteEchoed(assignments[0]);
  assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_EQ(IdOf(assignments[0]), 3u);
  CompleteEchoed(assignments[0]);
  EXPECT_THAT(Dispatch(), IsEmpty());
  events = scheduler_->TakeEvents(session);
  EXPECT_THAT(IdsOf(events.outcomes), ElementsAre(1, 3));

  const v1::PoolStatus status = scheduler_->Status();
  EXPECT_EQ(status.tasks_cancelled(), 1u);
  EXPECT_EQ(status.tasks_succeeded(), 2u);
  EXPECT_EQ(status.queued_tasks(), 0u);
}

TEST_F(SchedulerTest, CancelEveryQueuedTaskLeavesNothingToDispatch) {
  Start(/*workers=*/2);
  const SessionId session = Open();
  SubmitRange(session, 1, 5);
  const std::vector<v1::CancelResult> results = Cancel(session, {1, 2, 3, 4, 5});
  for (const v1::CancelResult& result : results)
    EXPECT_TRUE(result.cancelled()) << result.task_id();
  EXPECT_THAT(Dispatch(), IsEmpty());
  EXPECT_EQ(scheduler_->Status().queued_tasks(), 0u);
  EXPECT_EQ(scheduler_->TakeEvents(session).outcomes.size(), 5u);

  // The session still works afterwards.
  SubmitRange(session, 6, 6);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_EQ(IdOf(assignments[0]), 6u);
}

// --- Shutdown ---

TEST_F(SchedulerTest, ShutdownCancellingPendingClosesWhenRunningTasksEnd) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  SubmitRange(session, 1, 3);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);

  ASSERT_EQ(scheduler_->Shutdown(session, /*cancel_pending=*/true), absl::OkStatus());
  EXPECT_EQ(Listener(session).calls(), 1);
  SessionEvents events = scheduler_->TakeEvents(session);
  EXPECT_FALSE(events.closed) << "task 1 is still running";
  EXPECT_THAT(IdsOf(events.outcomes), ElementsAre(2, 3));
  for (const v1::TaskOutcome& outcome : events.outcomes) {
    EXPECT_EQ(outcome.state(), v1::TASK_STATE_CANCELLED);
    EXPECT_EQ(outcome.error().code(), Code(absl::StatusCode::kCancelled));
    EXPECT_THAT(outcome.error().message(), HasSubstr("shutdown"));
  }
  // Idempotent.
  EXPECT_EQ(scheduler_->Shutdown(session, /*cancel_pending=*/true), absl::OkStatus());
  EXPECT_FALSE(scheduler_->TakeEvents(session).closed);

  CompleteEchoed(assignments[0]);
  EXPECT_EQ(Listener(session).calls(), 2);
  events = scheduler_->TakeEvents(session);
  EXPECT_TRUE(events.closed);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].task_id(), 1u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_SUCCEEDED);

  // Once `closed` is written, the session is gone.
  scheduler_->ForgetClosed(session);
  events = scheduler_->TakeEvents(session);
  EXPECT_FALSE(events.closed);
  EXPECT_THAT(events.outcomes, IsEmpty());
  EXPECT_EQ(TrySubmit(session, {Task(4)}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler_->Shutdown(session, false).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler_->Status().sessions(), 0u);
  EXPECT_THAT(Dispatch(), IsEmpty());
  EXPECT_EQ(Listener(session).calls(), 2);
}

TEST_F(SchedulerTest, ShutdownWithoutCancelLetsQueuedTasksRun) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  SubmitRange(session, 1, 2);
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_THAT(TakeStarted(session), ElementsAre(1));

  ASSERT_EQ(scheduler_->Shutdown(session, /*cancel_pending=*/false), absl::OkStatus());
  EXPECT_EQ(Listener(session).calls(), 0) << "nothing has happened yet";
  EXPECT_FALSE(scheduler_->TakeEvents(session).closed);

  CompleteEchoed(assignments[0]);
  assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_EQ(IdOf(assignments[0]), 2u);
  CompleteEchoed(assignments[0]);

  const SessionEvents events = scheduler_->TakeEvents(session);
  EXPECT_TRUE(events.closed);
  EXPECT_THAT(IdsOf(events.outcomes), ElementsAre(1, 2));
  for (const v1::TaskOutcome& outcome : events.outcomes) {
    EXPECT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED);
  }
  scheduler_->ForgetClosed(session);
  EXPECT_EQ(scheduler_->Status().sessions(), 0u);
}

TEST_F(SchedulerTest, ShutdownOfIdleSessionClosesAtOnce) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  ASSERT_EQ(scheduler_->Shutdown(session, /*cancel_pending=*/false), absl::OkStatus());
  // Closing is an event too: the listener must be told so that it collects it.
  EXPECT_EQ(Listener(session).calls(), 1);
  const SessionEvents events = scheduler_->TakeEvents(session);
  EXPECT_TRUE(events.closed);
  EXPECT_THAT(events.outcomes, IsEmpty());
  scheduler_->ForgetClosed(session);
  EXPECT_EQ(scheduler_->Status().sessions(), 0u);
}

// --- Abandon ---

TEST_F(SchedulerTest, AbandonCancelsQueuedAndDropsRunningOutcomes) {
  Start(/*workers=*/1);
  const SessionId gone = Open("gone");
  const SessionId other = Open("other");
  SubmitRange(gone, 1, 3);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_THAT(TakeStarted(gone), ElementsAre(1));
  ASSERT_EQ(scheduler_->Status().sessions(), 2u);

  scheduler_->Abandon(gone);
  EXPECT_EQ(Listener(gone).calls(), 0);
  v1::PoolStatus status = scheduler_->Status();
  EXPECT_EQ(status.queued_tasks(), 0u);
  EXPECT_EQ(status.tasks_cancelled(), 2u);
  EXPECT_EQ(status.busy_workers(), 1u);

  // The session no longer exists for its client.
  EXPECT_EQ(TrySubmit(gone, {Task(9)}).status().code(), absl::StatusCode::kNotFound);
  const std::vector<uint64_t> ids = {1};
  EXPECT_EQ(scheduler_->Cancel(gone, ids).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler_->Shutdown(gone, false).code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(scheduler_->TakeEvents(gone).outcomes, IsEmpty());
  scheduler_->Abandon(gone);  // Idempotent.

  // The running task ends; its outcome goes nowhere and the session is forgotten.
  CompleteEchoed(assignments[0]);
  EXPECT_EQ(Listener(gone).calls(), 0);
  EXPECT_THAT(scheduler_->TakeEvents(gone).outcomes, IsEmpty());
  status = scheduler_->Status();
  EXPECT_EQ(status.sessions(), 1u);
  EXPECT_EQ(status.tasks_succeeded(), 1u);
  EXPECT_EQ(status.busy_workers(), 0u);
  EXPECT_THAT(Dispatch(), IsEmpty());

  // The other session is unaffected.
  SubmitRange(other, 1, 1);
  EXPECT_EQ(Dispatch().size(), 1u);
}

TEST_F(SchedulerTest, AbandonIdleSessionForgetsItAtOnce) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  SubmitRange(session, 1, 2);
  scheduler_->Abandon(session);
  EXPECT_EQ(Listener(session).calls(), 0);
  EXPECT_EQ(scheduler_->Status().sessions(), 0u);
  EXPECT_THAT(Dispatch(), IsEmpty());
}

TEST_F(SchedulerTest, AbandonAfterShutdownDropsUncollectedOutcomes) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  SubmitRange(session, 1, 1);
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  ASSERT_EQ(scheduler_->Shutdown(session, /*cancel_pending=*/false), absl::OkStatus());
  CompleteEchoed(assignments[0]);
  EXPECT_EQ(Listener(session).calls(), 1);

  // The client vanished before collecting its last outcome and the close.
  scheduler_->Abandon(session);
  EXPECT_THAT(scheduler_->TakeEvents(session).outcomes, IsEmpty());
  EXPECT_EQ(scheduler_->Status().sessions(), 0u);
}

// --- Detach, resume, acknowledgements and the unread bound ---

// The outcomes of `events`, as the gateway holds them in the SessionEvent it writes.
google::protobuf::RepeatedPtrField<v1::TaskOutcome> Written(SessionEvents& events) {
  return google::protobuf::RepeatedPtrField<v1::TaskOutcome>(
      std::make_move_iterator(events.outcomes.begin()),
      std::make_move_iterator(events.outcomes.end()));
}

// A successful result of `bytes` bytes for `assignment`.
wire::ResultFrame ResultOfSize(const Assignment& assignment, size_t bytes) {
  wire::ResultFrame result;
  result.set_task_key(assignment.frame.task_key());
  result.set_result(std::string(bytes, 'r'));
  return result;
}

// A short failure for `assignment`, as a function that raises returns.
wire::ResultFrame Raised(const Assignment& assignment) {
  wire::ResultFrame result;
  result.set_task_key(assignment.frame.task_key());
  result.mutable_error()->set_code(Code(absl::StatusCode::kInternal));
  result.mutable_error()->set_message("raised");
  return result;
}

TEST_F(SchedulerTest, SessionsGetDistinctTokensFromTheSource) {
  StartResumable(/*workers=*/1, absl::Seconds(10));
  const SessionId first = Open();
  const SessionId second = Open();
  EXPECT_EQ(scheduler_->ResumeToken(first).value_or(""), "token-1");
  EXPECT_EQ(scheduler_->ResumeToken(second).value_or(""), "token-2");
  EXPECT_EQ(scheduler_->ResumeToken(12345).status().code(), absl::StatusCode::kNotFound);

  const absl::StatusOr<std::string> a = RandomResumeToken();
  const absl::StatusOr<std::string> b = RandomResumeToken();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 16u);
  EXPECT_NE(*a, *b);
}

TEST_F(SchedulerTest, DetachedSessionRunsOnAndResumeDeliversWhatHappenedMeanwhile) {
  StartResumable(/*workers=*/1, absl::Seconds(10));
  const SessionId session = Open();
  SubmitRange(session, 1, 3);
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_THAT(TakeStarted(session), ElementsAre(1));

  scheduler_->Detach(session);
  scheduler_->Detach(session);  // Idempotent.
  EXPECT_TRUE(SessionStatusOf(session).detached());
  // Its tasks go on, and nobody is told.
  CompleteEchoed(assignments[0]);
  assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_EQ(IdOf(assignments[0]), 2u);
  EXPECT_EQ(Listener(session).calls(), 0);

  const absl::StatusOr<ResumedSession> resumed = Resume("token-1");
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->id, session);
  EXPECT_EQ(resumed->last_task_id, 3u);
  EXPECT_THAT(resumed->pending_task_ids, ElementsAre(1, 2, 3));
  EXPECT_FALSE(SessionStatusOf(session).detached());
  // The new listener is told at once of what happened while detached.
  EXPECT_EQ(Listener(session).TakeCalls(), 1);
  SessionEvents events = scheduler_->TakeEvents(session);
  EXPECT_THAT(IdsOf(events.outcomes), ElementsAre(1));
  EXPECT_EQ(events.outcomes[0].result(), "t1");
  EXPECT_THAT(events.started, ElementsAre(2));

  // The session is the client's again: tasks flow to the new listener.
  CompleteEchoed(assignments[0]);
  EXPECT_EQ(Listener(session).TakeCalls(), 1);
  EXPECT_THAT(IdsOf(scheduler_->TakeEvents(session).outcomes), ElementsAre(2));
}

TEST_F(SchedulerTest, ResumeNeedsTheTokenOfADetachedSession) {
  StartResumable(/*workers=*/1, absl::Seconds(10));
  const SessionId session = Open();
  EXPECT_EQ(Resume("token-99").status().code(), absl::StatusCode::kNotFound);
  // Its stream is still there.
  EXPECT_EQ(Resume("token-1").status().code(), absl::StatusCode::kFailedPrecondition);

  scheduler_->Detach(session);
  ASSERT_TRUE(Resume("token-1").ok());
  // A second stream while the first resumed one holds it.
  EXPECT_EQ(Resume("token-1").status().code(), absl::StatusCode::kFailedPrecondition);

  // Closed sessions cannot be resumed.
  ASSERT_EQ(scheduler_->Shutdown(session, /*cancel_pending=*/false), absl::OkStatus());
  EXPECT_TRUE(scheduler_->TakeEvents(session).closed);
  scheduler_->ForgetClosed(session);
  EXPECT_EQ(Resume("token-1").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SchedulerTest, ClosedThatWasNotWrittenIsCollectedAgainOnResume) {
  StartResumable(/*workers=*/1, absl::Seconds(10));
  const SessionId session = Open();
  SubmitRange(session, 1, 2);
  ASSERT_EQ(scheduler_->Shutdown(session, /*cancel_pending=*/false), absl::OkStatus());
  for (int task = 0; task < 2; ++task) {
    const std::vector<Assignment> assignments = Dispatch();
    ASSERT_EQ(assignments.size(), 1u);
    CompleteEchoed(assignments[0]);
  }
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_TRUE(events.closed);
  ASSERT_THAT(IdsOf(events.outcomes), ElementsAre(1, 2));
  // The stream broke while writing them: they come back, and the session is not forgotten.
  google::protobuf::RepeatedPtrField<v1::TaskOutcome> unwritten = Written(events);
  scheduler_->Retain(session, unwritten);
  scheduler_->Detach(session);
  EXPECT_EQ(scheduler_->Status().sessions(), 1u);

  const absl::StatusOr<ResumedSession> resumed = Resume("token-1");
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_THAT(resumed->pending_task_ids, ElementsAre(1, 2));
  events = scheduler_->TakeEvents(session);
  EXPECT_TRUE(events.closed);
  EXPECT_THAT(IdsOf(events.outcomes), ElementsAre(1, 2));

  scheduler_->ForgetClosed(session);
  EXPECT_EQ(scheduler_->Status().sessions(), 0u);
  EXPECT_EQ(Resume("token-1").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SchedulerTest, WrittenOutcomesAreSentAgainOnResumeUntilAcknowledged) {
  StartResumable(/*workers=*/2, absl::Seconds(10));
  const SessionId session = Open();
  SubmitRange(session, 1, 4);
  for (int round = 0; round < 2; ++round) {
    for (const Assignment& assignment : Dispatch()) CompleteEchoed(assignment);
  }
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_THAT(IdsOf(events.outcomes), ElementsAre(1, 2, 3, 4));
  const uint64_t held = SessionStatusOf(session).unread_result_bytes();
  EXPECT_GT(held, 0u);

  // The client acknowledges 2 while the gateway is still writing, and 3 once it is written.
  const std::vector<uint64_t> early = {2};
  ASSERT_EQ(scheduler_->Ack(session, early), absl::OkStatus());
  google::protobuf::RepeatedPtrField<v1::TaskOutcome> written = Written(events);
  scheduler_->Retain(session, written);
  const std::vector<uint64_t> late = {3, 999};  // 999 is not held: ignored.
  ASSERT_EQ(scheduler_->Ack(session, late), absl::OkStatus());
  EXPECT_LT(SessionStatusOf(session).unread_result_bytes(), held);

  // The stream breaks; the client resumes, saying it already has 4.
  scheduler_->Detach(session);
  absl::StatusOr<ResumedSession> resumed = Resume("token-1", {4});
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_THAT(resumed->pending_task_ids, ElementsAre(1));
  events = scheduler_->TakeEvents(session);
  ASSERT_THAT(IdsOf(events.outcomes), ElementsAre(1));
  EXPECT_EQ(events.outcomes[0].result(), "t1");

  // Written again and acknowledged at last: the session holds nothing.
  written = Written(events);
  scheduler_->Retain(session, written);
  const std::vector<uint64_t> last = {1};
  ASSERT_EQ(scheduler_->Ack(session, last), absl::OkStatus());
  EXPECT_EQ(SessionStatusOf(session).unread_result_bytes(), 0u);
  scheduler_->Detach(session);
  resumed = Resume("token-1");
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_THAT(resumed->pending_task_ids, IsEmpty());
  EXPECT_THAT(scheduler_->TakeEvents(session).outcomes, IsEmpty());
}

TEST_F(SchedulerTest, OutcomesNotWrittenBeforeTheStreamEndedAreSentAgain) {
  StartResumable(/*workers=*/1, absl::Seconds(10));
  const SessionId session = Open();
  SubmitRange(session, 1, 2);
  std::vector<Assignment> assignments = Dispatch();
  CompleteEchoed(assignments[0]);
  // Collected, then given back unwritten as the stream broke; task 2 ends while detached.
  SessionEvents events = scheduler_->TakeEvents(session);
  google::protobuf::RepeatedPtrField<v1::TaskOutcome> unwritten = Written(events);
  scheduler_->Retain(session, unwritten);
  scheduler_->Detach(session);
  assignments = Dispatch();
  CompleteEchoed(assignments[0]);

  ASSERT_TRUE(Resume("token-1").ok());
  EXPECT_THAT(IdsOf(scheduler_->TakeEvents(session).outcomes), ElementsAre(1, 2));
}

TEST_F(SchedulerTest, ResubmittedTasksTheSessionHoldsAreIgnoredOnceResumed) {
  StartResumable(/*workers=*/1, absl::Seconds(10));
  const SessionId session = Open();
  SubmitRange(session, 1, 2);
  std::vector<Assignment> assignments = Dispatch();
  CompleteEchoed(assignments[0]);
  // 1's outcome is written, not acknowledged.
  SessionEvents events = scheduler_->TakeEvents(session);
  google::protobuf::RepeatedPtrField<v1::TaskOutcome> written = Written(events);
  scheduler_->Retain(session, written);
  scheduler_->Detach(session);
  const absl::StatusOr<ResumedSession> resumed = Resume("token-1");
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->last_task_id, 2u);

  // The client re-sends all it is unsure of: 1 (ended) and 2 (queued) are ignored, 3 is new.
  EXPECT_THAT(Submit(session, {Task(1), Task(2), Task(3)}), IsEmpty());
  EXPECT_EQ(SessionStatusOf(session).queued_tasks(), 2u);
  std::vector<uint64_t> ran;
  for (int round = 0; round < 3; ++round) {
    for (const Assignment& assignment : Dispatch()) {
      ran.push_back(IdOf(assignment));
      CompleteEchoed(assignment);
    }
  }
  EXPECT_THAT(ran, ElementsAre(2, 3));
  EXPECT_THAT(IdsOf(scheduler_->TakeEvents(session).outcomes), ElementsAre(1, 2, 3));
  // 1 is acknowledged now: the session no longer holds it, and a new task may take its id.
  const std::vector<uint64_t> acked = {1};
  ASSERT_EQ(scheduler_->Ack(session, acked), absl::OkStatus());
  EXPECT_THAT(Submit(session, {Task(1)}), IsEmpty());
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(1));
}

TEST_F(SchedulerTest, GracePeriodExpiryCancelsInterruptsAndFreesTheSession) {
  StartResumable(/*workers=*/1, absl::Seconds(10));
  const SessionId gone = Open("gone");
  const SessionId other = Open("other");
  SubmitRange(gone, 1, 3);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_THAT(TakeStarted(gone), ElementsAre(1));
  scheduler_->Detach(gone);

  now_ += absl::Seconds(9);
  DispatchWork work = scheduler_->AwaitWork(absl::ZeroDuration());
  EXPECT_THAT(work.interrupts, IsEmpty());
  EXPECT_TRUE(SessionStatusOf(gone).detached());

  now_ += absl::Seconds(2);
  work = scheduler_->AwaitWork(absl::ZeroDuration());
  ASSERT_EQ(work.interrupts.size(), 1u);
  EXPECT_EQ(work.interrupts[0].worker, assignments[0].worker);
  EXPECT_EQ(work.interrupts[0].task_key, assignments[0].frame.task_key());
  v1::PoolStatus status = scheduler_->Status();
  EXPECT_EQ(status.queued_tasks(), 0u);
  EXPECT_EQ(status.tasks_cancelled(), 2u);
  ASSERT_EQ(status.session_list_size(), 1);
  EXPECT_EQ(status.session_list(0).session_id(), other);
  EXPECT_EQ(Resume("token-1").status().code(), absl::StatusCode::kNotFound);

  // Its running task ends: the session is forgotten, its outcome dropped.
  CompleteEchoed(assignments[0]);
  EXPECT_EQ(scheduler_->Status().sessions(), 1u);
  EXPECT_EQ(Listener(gone).calls(), 0);
}

TEST_F(SchedulerTest, AResumedSessionIsNotExpiredByItsEarlierDetach) {
  StartResumable(/*workers=*/1, absl::Seconds(10));
  const SessionId session = Open();
  scheduler_->Detach(session);
  now_ += absl::Seconds(5);
  ASSERT_TRUE(Resume("token-1").ok());
  scheduler_->Detach(session);  // A new grace period, to 15 s.
  now_ += absl::Seconds(6);
  scheduler_->AwaitWork(absl::ZeroDuration());
  EXPECT_TRUE(SessionStatusOf(session).detached());
  now_ += absl::Seconds(5);
  scheduler_->AwaitWork(absl::ZeroDuration());
  EXPECT_EQ(scheduler_->Status().sessions(), 0u);
}

TEST_F(SchedulerTest, WithoutAGracePeriodDetachAbandons) {
  StartResumable(/*workers=*/1, absl::ZeroDuration());
  const SessionId session = Open();
  SubmitRange(session, 1, 2);
  scheduler_->Detach(session);
  EXPECT_EQ(scheduler_->Status().sessions(), 0u);
  EXPECT_EQ(scheduler_->Status().tasks_cancelled(), 2u);
  EXPECT_EQ(Resume("token-1").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SchedulerTest, AnIdlePoolStillExpiresGracePeriods) {
  // The real clock: AwaitWork's wait must end at the grace deadline by itself.
  Scheduler::Options options;
  options.workers = 1;
  options.resume_grace = absl::Milliseconds(50);
  scheduler_ = std::make_unique<Scheduler>(std::move(options));
  scheduler_->PoolReady(Functions({"echo"}));
  const SessionId session = Open();
  // The transport's loop, blocked with nothing to do before the session is detached: the detach
  // must wake it, and the expiry must end its next wait. A scheduler that did neither would
  // hang this test.
  std::thread transport([this] {
    while (scheduler_->Status().sessions() > 0) scheduler_->AwaitWork(absl::InfiniteDuration());
  });
  scheduler_->Detach(session);
  transport.join();
  EXPECT_EQ(scheduler_->Status().sessions(), 0u);
}

TEST_F(SchedulerTest, UnreadBoundFailsTheOutcomeThatWouldPassItAndSparesOtherSessions) {
  StartResumable(/*workers=*/1, absl::Seconds(10), /*max_unread=*/10'000);
  const SessionId slow = Open("slow reader");
  const SessionId other = Open("other");
  SubmitRange(slow, 1, 3);
  std::vector<Assignment> assignments;
  for (uint64_t id = 1; id <= 3; ++id) {
    assignments = Dispatch();
    ASSERT_EQ(assignments.size(), 1u);
    scheduler_->Complete(assignments[0].worker, ResultOfSize(assignments[0], 4'000));
  }
  SessionEvents events = scheduler_->TakeEvents(slow);
  ASSERT_THAT(IdsOf(events.outcomes), ElementsAre(1, 2, 3));
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(events.outcomes[1].state(), v1::TASK_STATE_SUCCEEDED);
  const v1::TaskOutcome& refused = events.outcomes[2];
  EXPECT_EQ(refused.state(), v1::TASK_STATE_FAILED);
  EXPECT_TRUE(refused.result().empty());
  EXPECT_EQ(refused.worker(), assignments[0].worker);
  EXPECT_EQ(refused.error().code(), Code(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(refused.error().message(),
              AllOf(HasSubstr("task 3"), HasSubstr("10000 bytes"),
                    HasSubstr("--max_unread_result_mb"), HasSubstr("not read")));
  EXPECT_EQ(scheduler_->Status().tasks_failed(), 1u);
  EXPECT_LE(SessionStatusOf(slow).unread_result_bytes(), 10'000u);

  // Another session's results are not counted against this one's.
  SubmitRange(other, 1, 1);
  assignments = Dispatch();
  scheduler_->Complete(assignments[0].worker, ResultOfSize(assignments[0], 4'000));
  EXPECT_EQ(scheduler_->TakeEvents(other).outcomes.at(0).state(), v1::TASK_STATE_SUCCEEDED);

  // Once the slow reader acknowledges, it has room again.
  const std::vector<uint64_t> acked = {1, 2, 3};
  ASSERT_EQ(scheduler_->Ack(slow, acked), absl::OkStatus());
  SubmitRange(slow, 4, 4);
  assignments = Dispatch();
  scheduler_->Complete(assignments[0].worker, ResultOfSize(assignments[0], 4'000));
  EXPECT_EQ(scheduler_->TakeEvents(slow).outcomes.at(0).state(), v1::TASK_STATE_SUCCEEDED);
}

TEST_F(SchedulerTest, UnreadBoundCountsFailuresAndRejectsTasksItHasNoRoomFor) {
  constexpr uint64_t kBound = 20'000;
  StartResumable(/*workers=*/1, absl::Seconds(10), kBound);
  const SessionId session = Open("never reads");
  // Each task fails with a short error; the client never collects, reads or acknowledges. Kept
  // failures alone would grow without end; instead the bound refuses new tasks once full.
  size_t accepted = 0;
  std::vector<v1::TaskRejection> rejected;
  for (uint64_t id = 1; id <= 1'000; ++id) {
    std::vector<v1::TaskRejection> rejections = Submit(session, {Task(id)});
    if (!rejections.empty()) {
      rejected.push_back(std::move(rejections.front()));
      continue;
    }
    ++accepted;
    const std::vector<Assignment> assignments = Dispatch();
    ASSERT_EQ(assignments.size(), 1u);
    scheduler_->Complete(assignments[0].worker, Raised(assignments[0]));
    ASSERT_LE(SessionStatusOf(session).unread_result_bytes(), kBound) << "after task " << id;
  }
  EXPECT_GT(accepted, 10u);
  ASSERT_FALSE(rejected.empty());
  EXPECT_EQ(accepted + rejected.size(), 1'000u);
  EXPECT_EQ(rejected.front().code(), Code(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(rejected.front().message(),
              AllOf(HasSubstr("20000 bytes"), HasSubstr("--max_unread_result_mb"),
                    HasSubstr("not read or acknowledged")));
  // Rejections are not kept: the session holds only the outcomes of the tasks it accepted.
  EXPECT_EQ(scheduler_->TakeEvents(session).outcomes.size(), accepted);
}

TEST_F(SchedulerTest, AnOutcomeThatWouldPassTheBoundBecomesAFailureThatFitsItsReservation) {
  constexpr uint64_t kBound = 20'000;
  StartResumable(/*workers=*/1, absl::Seconds(10), kBound);
  const SessionId session = Open("never reads");
  // Many tasks queued at once: each reserves room for the failure it may end as, so all of them
  // may end with results too large to hold, and their failures still fit.
  uint64_t last = 0;
  while (last < 10'000 && Submit(session, {Task(last + 1)}).empty()) ++last;
  ASSERT_GT(last, 10u);
  ASSERT_LT(last, 10'000u) << "no task was refused";
  for (uint64_t id = 1; id <= last; ++id) {
    const std::vector<Assignment> assignments = Dispatch();
    ASSERT_EQ(assignments.size(), 1u);
    scheduler_->Complete(assignments[0].worker, ResultOfSize(assignments[0], 3'000));
    ASSERT_LE(SessionStatusOf(session).unread_result_bytes(), kBound) << "after task " << id;
  }
  // With every task's room reserved, the first results cannot be held; the room their failures
  // leave unused lets the last ones through.
  const SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), last);
  EXPECT_EQ(events.outcomes.front().error().code(), Code(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(events.outcomes.front().error().message(), HasSubstr("--max_unread_result_mb"));
  for (const v1::TaskOutcome& outcome : events.outcomes) {
    EXPECT_TRUE(outcome.state() == v1::TASK_STATE_SUCCEEDED ||
                outcome.error().code() == Code(absl::StatusCode::kResourceExhausted))
        << outcome.ShortDebugString();
  }
}

TEST_F(SchedulerTest, AcknowledgingAnOutcomeNeverCollectedFreesNothing) {
  StartResumable(/*workers=*/1, absl::Seconds(10), /*max_unread=*/100'000);
  const SessionId session = Open();
  SubmitRange(session, 1, 1);
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  scheduler_->Complete(assignments[0].worker, ResultOfSize(assignments[0], 4'000));
  const uint64_t held = SessionStatusOf(session).unread_result_bytes();
  EXPECT_GT(held, 4'000u);
  // A client cannot have read what was never sent: acknowledging it blindly would free the bytes
  // while the outcome still waits in the outbox.
  ASSERT_TRUE(scheduler_->Ack(session, {1}).ok());
  EXPECT_EQ(SessionStatusOf(session).unread_result_bytes(), held);
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  ASSERT_TRUE(scheduler_->Ack(session, {1}).ok());
  EXPECT_EQ(SessionStatusOf(session).unread_result_bytes(), 0u);
}

// --- Queue timeout ---

TEST_F(SchedulerTest, AResumingClientThatTakesSmallerMessagesGetsTooLargeOutcomesAsFailures) {
  StartResumable(/*workers=*/1, absl::Seconds(10));
  const SessionId session = Open();
  SubmitRange(session, 1, 2);
  for (const size_t size : {4'000, 100}) {
    const std::vector<Assignment> assignments = Dispatch();
    ASSERT_EQ(assignments.size(), 1u);
    scheduler_->Complete(assignments[0].worker, ResultOfSize(assignments[0], size));
  }
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_THAT(IdsOf(events.outcomes), ElementsAre(1, 2));
  google::protobuf::RepeatedPtrField<v1::TaskOutcome> written = Written(events);
  scheduler_->Retain(session, written);
  scheduler_->Detach(session);

  // Sending task 1's outcome as it is would break the new stream again, on every resume.
  ASSERT_TRUE(scheduler_
                  ->Resume("token-1", std::make_shared<CountingListener>(), {},
                           /*client_max_message_bytes=*/2'000)
                  .ok());
  events = scheduler_->TakeEvents(session);
  ASSERT_THAT(IdsOf(events.outcomes), ElementsAre(1, 2));
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(events.outcomes[0].error().code(), Code(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(events.outcomes[0].error().message(),
              AllOf(HasSubstr("task 1"), HasSubstr("max_message_bytes")));
  EXPECT_EQ(events.outcomes[1].state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_LT(SessionStatusOf(session).unread_result_bytes(), 2'000u);
}

TEST_F(SchedulerTest, QueueTimeoutFailsTaskThatWaitedTooLong) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  v1::TaskSpec patient = Task(2);
  v1::TaskSpec impatient = Task(3);
  impatient.mutable_options()->set_queue_timeout_ms(100);
  EXPECT_THAT(Submit(session, {Task(1), patient, impatient}), IsEmpty());
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_THAT(TakeStarted(session), ElementsAre(1));

  // Before the deadline nothing happens.
  now_ += absl::Milliseconds(99);
  EXPECT_THAT(Dispatch(), IsEmpty());
  EXPECT_EQ(Listener(session).calls(), 0);

  now_ += absl::Milliseconds(2);
  EXPECT_THAT(Dispatch(), IsEmpty());
  EXPECT_EQ(Listener(session).calls(), 1);
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  const v1::TaskOutcome& outcome = events.outcomes[0];
  EXPECT_EQ(outcome.task_id(), 3u);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(outcome.error().code(), Code(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(outcome.worker(), -1);
  EXPECT_EQ(outcome.queue_us(), 101000u);
  EXPECT_EQ(scheduler_->Status().queued_tasks(), 1u);

  // The expired task never runs; the one without a timeout does.
  std::vector<uint64_t> ran;
  for (int i = 0; i < 3 && !assignments.empty(); ++i) {
    for (const Assignment& assignment : assignments) {
      ran.push_back(IdOf(assignment));
      CompleteEchoed(assignment);
    }
    assignments = Dispatch();
  }
  EXPECT_THAT(ran, ElementsAre(1, 2));
  EXPECT_EQ(scheduler_->Status().tasks_failed(), 1u);
}

TEST_F(SchedulerTest, QueueTimeoutDoesNotAffectDispatchedTask) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  v1::TaskSpec spec = Task(1);
  spec.mutable_options()->set_queue_timeout_ms(10);
  EXPECT_THAT(Submit(session, {spec}), IsEmpty());
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);

  // The deadline passes while the task runs: it only bounds the time in the queue.
  now_ += absl::Seconds(1);
  EXPECT_THAT(Dispatch(), IsEmpty());
  CompleteEchoed(assignments[0]);
  const SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_SUCCEEDED);
}

TEST_F(SchedulerTest, HugeQueueTimeoutNeverExpires) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  v1::TaskSpec huge = Task(2);
  huge.mutable_options()->set_queue_timeout_ms(std::numeric_limits<uint64_t>::max());
  v1::TaskSpec large = Task(3);
  large.mutable_options()->set_queue_timeout_ms(uint64_t{1} << 62);
  EXPECT_THAT(Submit(session, {Task(1), huge, large}), IsEmpty());
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);

  now_ += absl::Hours(24 * 365);
  EXPECT_THAT(Dispatch(), IsEmpty());
  EXPECT_THAT(scheduler_->TakeEvents(session).outcomes, IsEmpty());
  EXPECT_EQ(scheduler_->Status().queued_tasks(), 2u);
}

// --- Drain and stop ---

TEST_F(SchedulerTest, DrainCancelsQueuedAndClosesSessionsAsTasksEnd) {
  Start(/*workers=*/1);
  const SessionId a = Open("a");
  const SessionId b = Open("b");
  SubmitRange(a, 1, 2);
  SubmitRange(b, 1, 1);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);  // a's task 1.

  scheduler_->Drain("upgrade");
  EXPECT_TRUE(scheduler_->Status().draining());

  // b had nothing running: its queued task is cancelled and it closes at once.
  EXPECT_EQ(Listener(b).calls(), 1);
  SessionEvents events = scheduler_->TakeEvents(b);
  EXPECT_TRUE(events.closed);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_CANCELLED);
  EXPECT_EQ(events.outcomes[0].error().code(), Code(absl::StatusCode::kCancelled));
  EXPECT_THAT(events.outcomes[0].error().message(), HasSubstr("draining"));
  EXPECT_THAT(events.outcomes[0].error().message(), HasSubstr("upgrade"));

  // a still runs task 1.
  EXPECT_EQ(Listener(a).calls(), 1);
  events = scheduler_->TakeEvents(a);
  EXPECT_FALSE(events.closed);
  EXPECT_THAT(IdsOf(events.outcomes), ElementsAre(2));
  EXPECT_THAT(events.outcomes[0].error().message(), HasSubstr("draining"));

  EXPECT_FALSE(scheduler_->AwaitNoRunningTasks(absl::InfinitePast()));
  CompleteEchoed(assignments[0]);
  EXPECT_TRUE(scheduler_->AwaitNoRunningTasks(absl::InfinitePast()));

  events = scheduler_->TakeEvents(a);
  EXPECT_TRUE(events.closed);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_SUCCEEDED);
  scheduler_->ForgetClosed(a);
  scheduler_->ForgetClosed(b);
  EXPECT_EQ(scheduler_->Status().sessions(), 0u);

  scheduler_->Drain("again");  // Idempotent.
  EXPECT_THAT(Dispatch(), IsEmpty());
}

TEST_F(SchedulerTest, DrainRejectsNewSessionsAndTasks) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  scheduler_->Drain("maintenance");

  const absl::StatusOr<SessionId> opened =
      scheduler_->OpenSession("late", std::make_shared<CountingListener>());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(opened.status().message(), HasSubstr("maintenance"));

  // The session has closed but its client has not collected that yet.
  const std::vector<v1::TaskRejection> rejections = Submit(session, {Task(1)});
  ASSERT_EQ(rejections.size(), 1u);
  EXPECT_EQ(rejections[0].code(), Code(absl::StatusCode::kUnavailable));
  EXPECT_THAT(rejections[0].message(), HasSubstr("maintenance"));

  EXPECT_TRUE(scheduler_->TakeEvents(session).closed);
  scheduler_->ForgetClosed(session);
  EXPECT_EQ(TrySubmit(session, {Task(1)}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SchedulerTest, AwaitNoRunningTasksTrueWhenIdle) {
  Start(/*workers=*/2);
  EXPECT_TRUE(scheduler_->AwaitNoRunningTasks(absl::InfinitePast()));
}

TEST_F(SchedulerTest, StopDispatchReturnsStoppingAtOnce) {
  Start(/*workers=*/1);
  EXPECT_FALSE(scheduler_->AwaitWork(absl::ZeroDuration()).stopping);
  scheduler_->StopDispatch();
  // Would block forever if stopping did not count as work.
  const DispatchWork work = scheduler_->AwaitWork(absl::InfiniteDuration());
  EXPECT_TRUE(work.stopping);
  EXPECT_THAT(work.assignments, IsEmpty());
  EXPECT_TRUE(scheduler_->AwaitWork(absl::InfiniteDuration()).stopping);
}

// --- Status ---

TEST_F(SchedulerTest, StatusCountsEverything) {
  Start(/*workers=*/3, {"echo", "fail", "sleep"});
  v1::PoolStatus status = scheduler_->Status();
  EXPECT_EQ(status.workers(), 3u);
  EXPECT_EQ(status.busy_workers(), 0u);
  EXPECT_EQ(status.sessions(), 0u);
  EXPECT_EQ(status.uptime_ms(), 0u);
  EXPECT_FALSE(status.draining());
  std::vector<std::string> names;
  for (const v1::FunctionInfo& function : status.functions()) {
    names.push_back(function.name());
    EXPECT_EQ(function.description(), absl::StrCat("does ", function.name()));
  }
  EXPECT_THAT(names, UnorderedElementsAre("echo", "fail", "sleep"));

  const SessionId a = Open("a");
  const SessionId b = Open("b");
  SubmitRange(a, 1, 3);
  SubmitRange(b, 1, 3);
  status = scheduler_->Status();
  EXPECT_EQ(status.sessions(), 2u);
  EXPECT_EQ(status.queued_tasks(), 6u);

  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 3u);
  CompleteEchoed(assignments[0]);
  wire::ResultFrame failure;
  failure.set_task_key(assignments[1].frame.task_key());
  failure.mutable_error()->set_code(Code(absl::StatusCode::kInternal));
  scheduler_->Complete(assignments[1].worker, std::move(failure));
  EXPECT_TRUE(Cancel(b, {3})[0].cancelled());
  now_ += absl::Milliseconds(2500);

  status = scheduler_->Status();
  EXPECT_EQ(status.workers(), 3u);
  EXPECT_EQ(status.busy_workers(), 1u);
  EXPECT_EQ(status.queued_tasks(), 2u);
  EXPECT_EQ(status.sessions(), 2u);
  EXPECT_EQ(status.tasks_succeeded(), 1u);
  EXPECT_EQ(status.tasks_failed(), 1u);
  EXPECT_EQ(status.tasks_cancelled(), 1u);
  EXPECT_EQ(status.uptime_ms(), 2500u);
}

// --- Bad completions ---

TEST_F(SchedulerTest, CompleteWithStaleKeyOrBadWorkerIsIgnored) {
  Start(/*workers=*/2);
  const SessionId session = Open();
  SubmitRange(session, 1, 1);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  const Assignment& assignment = assignments[0];
  ASSERT_EQ(assignment.worker, 0);
  EXPECT_THAT(TakeStarted(session), ElementsAre(1));

  wire::ResultFrame wrong_key = Echoed(assignment);
  wrong_key.set_task_key(assignment.frame.task_key() + 1000);
  scheduler_->Complete(assignment.worker, wrong_key);
  wire::ResultFrame zero_key = Echoed(assignment);
  zero_key.set_task_key(0);
  scheduler_->Complete(assignment.worker, zero_key);
  scheduler_->Complete(-1, Echoed(assignment));
  scheduler_->Complete(2, Echoed(assignment));
  scheduler_->Complete(1'000'000, Echoed(assignment));
  // Worker 1 is idle: it cannot have finished anything.
  scheduler_->Complete(1, Echoed(assignment));

  EXPECT_EQ(Listener(session).calls(), 0);
  EXPECT_THAT(scheduler_->TakeEvents(session).outcomes, IsEmpty());
  v1::PoolStatus status = scheduler_->Status();
  EXPECT_EQ(status.busy_workers(), 1u);
  EXPECT_EQ(status.tasks_succeeded(), 0u);

  CompleteEchoed(assignment);
  // A duplicate of a result already taken is stale too.
  CompleteEchoed(assignment);
  EXPECT_EQ(scheduler_->TakeEvents(session).outcomes.size(), 1u);
  status = scheduler_->Status();
  EXPECT_EQ(status.busy_workers(), 0u);
  EXPECT_EQ(status.tasks_succeeded(), 1u);

  // The worker is idle exactly once: two new tasks use both workers, not worker 0 twice.
  SubmitRange(session, 2, 3);
  const std::vector<Assignment> next = Dispatch();
  ASSERT_EQ(next.size(), 2u);
  EXPECT_NE(next[0].worker, next[1].worker);
}

// --- Listener re-entrancy ---

// Collects events from inside the callback, as a gRPC adapter might: the scheduler must not hold
// its lock while calling listeners.
class CollectingListener : public SessionListener {
 public:
  void Attach(Scheduler* scheduler, SessionId session) {
    scheduler_ = scheduler;
    session_ = session;
  }
  void OnSessionEvents() override {
    SessionEvents events = scheduler_->TakeEvents(session_);
    if (!events.outcomes.empty()) outcomes_per_call.push_back(events.outcomes.size());
    for (v1::TaskOutcome& outcome : events.outcomes) outcomes.push_back(std::move(outcome));
    closed = closed || events.closed;
  }

  std::vector<v1::TaskOutcome> outcomes;
  // How many outcomes each call that collected any found.
  std::vector<size_t> outcomes_per_call;
  bool closed = false;

 private:
  Scheduler* scheduler_ = nullptr;
  SessionId session_ = 0;
};

TEST_F(SchedulerTest, ListenerMayCallBackIntoScheduler) {
  Start(/*workers=*/1);
  auto listener = std::make_shared<CollectingListener>();
  const absl::StatusOr<SessionId> session = scheduler_->OpenSession("reentrant", listener);
  ASSERT_TRUE(session.ok()) << session.status();
  listener->Attach(scheduler_.get(), *session);

  SubmitRange(*session, 1, 3);
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_TRUE(Cancel(*session, {3})[0].cancelled());  // Notifies from Cancel.
  CompleteEchoed(assignments[0]);                     // Notifies from Complete.
  ASSERT_EQ(scheduler_->Shutdown(*session, false), absl::OkStatus());
  assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  CompleteEchoed(assignments[0]);

  EXPECT_THAT(IdsOf(listener->outcomes), ElementsAre(3, 1, 2));
  EXPECT_TRUE(listener->closed);
}

TEST_F(SchedulerTest, ResultsCompletedTogetherReachEachListenerInOneCall) {
  Start(/*workers=*/4);
  auto listener_a = std::make_shared<CollectingListener>();
  auto listener_b = std::make_shared<CollectingListener>();
  const absl::StatusOr<SessionId> a = scheduler_->OpenSession("a", listener_a);
  const absl::StatusOr<SessionId> b = scheduler_->OpenSession("b", listener_b);
  ASSERT_TRUE(a.ok() && b.ok());
  listener_a->Attach(scheduler_.get(), *a);
  listener_b->Attach(scheduler_.get(), *b);
  SubmitRange(*a, 1, 2);
  SubmitRange(*b, 11, 12);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 4u);

  // The sessions' results interleaved, as a worker's batch or a round of polls brings them.
  std::vector<Scheduler::WorkerResult> results;
  for (const Assignment& assignment : assignments) {
    results.push_back({assignment.worker, Echoed(assignment)});
  }
  scheduler_->Complete(absl::MakeSpan(results));

  EXPECT_THAT(listener_a->outcomes_per_call, ElementsAre(2));
  EXPECT_THAT(listener_b->outcomes_per_call, ElementsAre(2));
  EXPECT_THAT(IdsOf(listener_a->outcomes), UnorderedElementsAre(1, 2));
  EXPECT_THAT(IdsOf(listener_b->outcomes), UnorderedElementsAre(11, 12));
  for (const v1::TaskOutcome& outcome : listener_a->outcomes) {
    EXPECT_EQ(outcome.result(), absl::StrCat("t", outcome.task_id()));
  }
  // Every worker is free again.
  SubmitRange(*a, 3, 6);
  EXPECT_EQ(Dispatch().size(), 4u);
}

// --- Interrupts, progress, typed functions ---

// The typed function "square" takes and returns google.protobuf.Int64Value.
std::vector<v1::FunctionInfo> TypedFunctions() {
  std::vector<v1::FunctionInfo> functions(2);
  functions[0].set_name("echo");
  functions[1].set_name("square");
  functions[1].set_request_type("google.protobuf.Int64Value");
  functions[1].set_response_type("google.protobuf.Int64Value");
  return functions;
}

v1::TaskSpec Typed(uint64_t id, absl::string_view payload_type) {
  v1::TaskSpec spec = Task(id, "square");
  spec.set_payload_type(std::string(payload_type));
  return spec;
}

wire::ResultFrame Cancelled(const Assignment& assignment) {
  wire::ResultFrame result;
  result.set_task_key(assignment.frame.task_key());
  result.mutable_error()->set_code(Code(absl::StatusCode::kCancelled));
  result.mutable_error()->set_message("gave up");
  return result;
}

TEST_F(SchedulerTest, InterruptAsksTheWorkerOnceAndCancelledErrorEndsCancelled) {
  Start(/*workers=*/2);
  const SessionId session = Open();
  SubmitRange(session, 1, 3);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 2u);
  TakeStarted(session);

  const std::vector<uint64_t> ids = {1, 3};
  absl::StatusOr<std::vector<v1::CancelResult>> results =
      scheduler_->Cancel(session, ids, /*interrupt_running=*/true);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_FALSE((*results)[0].cancelled());
  EXPECT_TRUE((*results)[0].interrupted()) << "1 is running";
  EXPECT_TRUE((*results)[1].cancelled()) << "3 was still queued";
  EXPECT_FALSE((*results)[1].interrupted());

  DispatchWork work = scheduler_->AwaitWork(absl::ZeroDuration());
  ASSERT_EQ(work.interrupts.size(), 1u);
  EXPECT_EQ(work.interrupts[0].worker, assignments[0].worker);
  EXPECT_EQ(work.interrupts[0].task_key, assignments[0].frame.task_key());
  // Asking again is answered the same but sends nothing more.
  EXPECT_TRUE(scheduler_->Cancel(session, ids, true)->at(0).interrupted());
  EXPECT_THAT(scheduler_->AwaitWork(absl::ZeroDuration()).interrupts, IsEmpty());

  // The interrupted task gives up with CANCELLED: it ends CANCELLED. The other one, which was
  // not interrupted, fails with the same error as FAILED.
  scheduler_->Complete(assignments[0].worker, Cancelled(assignments[0]));
  scheduler_->Complete(assignments[1].worker, Cancelled(assignments[1]));
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 3u);
  EXPECT_EQ(events.outcomes[0].task_id(), 3u);
  EXPECT_EQ(events.outcomes[1].task_id(), 1u);
  EXPECT_EQ(events.outcomes[1].state(), v1::TASK_STATE_CANCELLED);
  EXPECT_EQ(events.outcomes[1].error().message(), "gave up");
  EXPECT_EQ(events.outcomes[2].task_id(), 2u);
  EXPECT_EQ(events.outcomes[2].state(), v1::TASK_STATE_FAILED);
}

TEST_F(SchedulerTest, PlainCancelNeverInterrupts) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  SubmitRange(session, 1, 1);
  ASSERT_EQ(Dispatch().size(), 1u);
  EXPECT_FALSE(Cancel(session, {1})[0].interrupted());
  EXPECT_THAT(scheduler_->AwaitWork(absl::ZeroDuration()).interrupts, IsEmpty());
}

TEST_F(SchedulerTest, AbandonInterruptsRunningTasks) {
  Start(/*workers=*/2);
  const SessionId gone = Open("gone");
  const SessionId other = Open("other");
  SubmitRange(gone, 1, 1);
  SubmitRange(other, 1, 1);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 2u);

  scheduler_->Abandon(gone);
  const DispatchWork work = scheduler_->AwaitWork(absl::ZeroDuration());
  ASSERT_EQ(work.interrupts.size(), 1u) << "only the abandoned session's task";
  const Assignment& gone_task = assignments[0].frame.task_key() == work.interrupts[0].task_key
                                    ? assignments[0]
                                    : assignments[1];
  EXPECT_EQ(work.interrupts[0].worker, gone_task.worker);
}

wire::ProgressFrame ProgressOf(const Assignment& assignment, double fraction,
                               absl::string_view message) {
  wire::ProgressFrame progress;
  progress.set_task_key(assignment.frame.task_key());
  progress.set_fraction(fraction);
  progress.set_message(std::string(message));
  return progress;
}

TEST_F(SchedulerTest, ProgressKeepsTheLatestReportUntilCollected) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  SubmitRange(session, 1, 1);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  TakeStarted(session);

  scheduler_->Progress(assignments[0].worker, ProgressOf(assignments[0], 0.25, "a quarter"));
  scheduler_->Progress(assignments[0].worker, ProgressOf(assignments[0], 0.5, "half"));
  EXPECT_EQ(Listener(session).TakeCalls(), 1);
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.progress.size(), 1u);
  EXPECT_EQ(events.progress[0].task_id(), 1u);
  EXPECT_EQ(events.progress[0].fraction(), 0.5);
  EXPECT_EQ(events.progress[0].message(), "half");

  // A report that the outcome overtakes is dropped: progress never follows an outcome.
  scheduler_->Progress(assignments[0].worker, ProgressOf(assignments[0], 0.9, "nearly"));
  CompleteEchoed(assignments[0]);
  events = scheduler_->TakeEvents(session);
  EXPECT_THAT(events.progress, IsEmpty());
  EXPECT_THAT(IdsOf(events.outcomes), ElementsAre(1));

  // Reports of a task that has ended, or from a worker out of range, are ignored.
  scheduler_->Progress(assignments[0].worker, ProgressOf(assignments[0], 1, "late"));
  scheduler_->Progress(7, ProgressOf(assignments[0], 1, "nobody"));
  EXPECT_EQ(Listener(session).TakeCalls(), 1) << "once, for the report before the outcome";
  EXPECT_THAT(scheduler_->TakeEvents(session).progress, IsEmpty());
}

TEST_F(SchedulerTest, RefusedFunctionIsPermissionDeniedWithTheReason) {
  Boot(/*workers=*/1, {{"exec", "exec is off: start with --allow-exec"}});
  const SessionId session = Open();
  // Refused even before the pool knows its functions.
  std::vector<v1::TaskRejection> rejections = Submit(session, {Task(1, "exec")});
  ASSERT_EQ(rejections.size(), 1u);
  EXPECT_EQ(rejections[0].code(), Code(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(rejections[0].message(), "exec is off: start with --allow-exec");
  scheduler_->PoolReady(Functions({"echo"}));
  rejections = Submit(session, {Task(2, "exec"), Task(3)});
  ASSERT_EQ(rejections.size(), 1u);
  EXPECT_EQ(rejections[0].code(), Code(absl::StatusCode::kPermissionDenied));
}

TEST_F(SchedulerTest, PayloadTypeMustMatchTheFunctionsRequestType) {
  Boot(/*workers=*/1);
  const SessionId session = Open();
  // While booting, types are checked once the pool is ready.
  EXPECT_THAT(Submit(session, {Typed(1, "google.protobuf.StringValue"),
                               Typed(2, "google.protobuf.Int64Value")}),
              IsEmpty());
  scheduler_->PoolReady(TypedFunctions());
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].task_id(), 1u);
  EXPECT_EQ(events.outcomes[0].error().code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(events.outcomes[0].error().message(),
              HasSubstr("takes google.protobuf.Int64Value, not google.protobuf.StringValue"));

  // Once ready, at submit. An empty payload_type, or a function of bytes, is not checked.
  std::vector<v1::TaskRejection> rejections =
      Submit(session, {Typed(3, "google.protobuf.StringValue"), Typed(4, ""), [] {
                         v1::TaskSpec spec = Task(5, "echo");
                         spec.set_payload_type("anything.At.All");
                         return spec;
                       }()});
  ASSERT_EQ(rejections.size(), 1u);
  EXPECT_EQ(rejections[0].task_id(), 3u);
  EXPECT_EQ(rejections[0].code(), Code(absl::StatusCode::kInvalidArgument));
}

TEST_F(SchedulerTest, FunctionsAreKnownOnceThePoolIsReady) {
  Boot(/*workers=*/1);
  EXPECT_EQ(scheduler_->Functions().status().code(), absl::StatusCode::kUnavailable);
  scheduler_->PoolReady(TypedFunctions());
  absl::StatusOr<std::vector<v1::FunctionInfo>> functions = scheduler_->Functions();
  ASSERT_TRUE(functions.ok()) << functions.status();
  ASSERT_EQ(functions->size(), 2u);
  EXPECT_EQ((*functions)[1].name(), "square");
  EXPECT_EQ((*functions)[1].response_type(), "google.protobuf.Int64Value");
  EXPECT_EQ(scheduler_->Status().functions(1).request_type(), "google.protobuf.Int64Value");

  Boot(/*workers=*/1);
  scheduler_->PoolBroken("initializer 'setup' failed");
  EXPECT_EQ(scheduler_->Functions().status().code(), absl::StatusCode::kFailedPrecondition);
}

// --- Pool state ---

TEST_F(SchedulerTest, TasksQueueWhileBootingAndRunOnceReady) {
  Boot(/*workers=*/2);
  EXPECT_EQ(scheduler_->PoolState().state(), v1::POOL_STATE_BOOTING);
  EXPECT_EQ(scheduler_->PoolState().workers(), 2u);
  const SessionId session = Open();
  // Function names cannot be checked yet: both are accepted.
  EXPECT_THAT(Submit(session, {Task(1), Task(2, "nonesuch")}), IsEmpty());
  EXPECT_THAT(Dispatch(), IsEmpty()) << "no worker is up";

  scheduler_->PoolReady(Functions({"echo"}));
  EXPECT_EQ(Listener(session).TakeCalls(), 1);
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_TRUE(events.pool.has_value());
  EXPECT_EQ(events.pool->state(), v1::POOL_STATE_READY);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].task_id(), 2u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(events.outcomes[0].error().code(), Code(absl::StatusCode::kNotFound));

  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_EQ(IdOf(assignments[0]), 1u);
  EXPECT_THAT(TakeStarted(session), ElementsAre(1));
  // Now names are checked at submit.
  const std::vector<v1::TaskRejection> rejections = Submit(session, {Task(3, "nonesuch")});
  ASSERT_EQ(rejections.size(), 1u);
  EXPECT_EQ(rejections[0].code(), Code(absl::StatusCode::kNotFound));
}

TEST_F(SchedulerTest, BrokenPoolFailsQueuedAndNewTasks) {
  Boot(/*workers=*/2);
  const SessionId session = Open();
  SubmitRange(session, 1, 3);
  scheduler_->PoolBroken("worker 1: initializer 'setup' failed: no data");

  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_TRUE(events.pool.has_value());
  EXPECT_EQ(events.pool->state(), v1::POOL_STATE_BROKEN);
  EXPECT_EQ(events.pool->reason(), "worker 1: initializer 'setup' failed: no data");
  EXPECT_THAT(IdsOf(events.outcomes), ElementsAre(1, 2, 3));
  for (const v1::TaskOutcome& outcome : events.outcomes) {
    EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
    EXPECT_EQ(outcome.error().code(), Code(absl::StatusCode::kFailedPrecondition));
    EXPECT_THAT(outcome.error().message(), HasSubstr("BrokenExecutor: worker 1"));
  }

  const std::vector<v1::TaskRejection> rejections = Submit(session, {Task(4)});
  ASSERT_EQ(rejections.size(), 1u);
  EXPECT_EQ(rejections[0].code(), Code(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(rejections[0].message(), HasSubstr("BrokenExecutor: worker 1"));
  EXPECT_THAT(Dispatch(), IsEmpty());

  const v1::PoolStatus status = scheduler_->Status();
  EXPECT_EQ(status.state(), v1::POOL_STATE_BROKEN);
  EXPECT_THAT(status.state_reason(), HasSubstr("no data"));
  // A broken pool cannot become ready.
  scheduler_->PoolReady(Functions({"echo"}));
  EXPECT_EQ(scheduler_->PoolState().state(), v1::POOL_STATE_BROKEN);
}

TEST_F(SchedulerTest, DrainTellsEverySessionThePoolState) {
  Start(/*workers=*/1);
  const SessionId a = Open("a");
  const SessionId b = Open("b");
  scheduler_->Drain("maintenance");
  for (const SessionId session : {a, b}) {
    const SessionEvents events = scheduler_->TakeEvents(session);
    ASSERT_TRUE(events.pool.has_value());
    EXPECT_EQ(events.pool->state(), v1::POOL_STATE_DRAINING);
    EXPECT_EQ(events.pool->reason(), "maintenance");
  }
  EXPECT_EQ(scheduler_->OpenSession("late", nullptr).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(SchedulerTest, FailRunningEndsRunningTasksAndKeepsTheirWorkersBusy) {
  Start(/*workers=*/2);
  const SessionId session = Open();
  SubmitRange(session, 1, 3);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 2u);
  EXPECT_THAT(TakeStarted(session), ElementsAre(1, 2));
  scheduler_->Drain("stop");
  scheduler_->FailRunning("cancelled: the drain grace period passed");
  EXPECT_TRUE(scheduler_->AwaitNoRunningTasks(absl::InfinitePast()));

  const SessionEvents events = scheduler_->TakeEvents(session);
  EXPECT_TRUE(events.closed);
  ASSERT_EQ(events.outcomes.size(), 3u);
  for (const v1::TaskOutcome& outcome : events.outcomes) {
    EXPECT_EQ(outcome.error().code(), Code(absl::StatusCode::kCancelled));
  }
  EXPECT_THAT(events.outcomes[1].error().message(), HasSubstr("grace period"));
  // A result that arrives afterwards is ignored, and the worker is not reused.
  CompleteEchoed(assignments[0]);
  EXPECT_EQ(scheduler_->Status().tasks_succeeded(), 0u);
}

TEST_F(SchedulerTest, StatusListsOpenSessionsWithTheirLoad) {
  Start(/*workers=*/1);
  const SessionId heavy = Open("heavy");
  const SessionId light = Open("light");
  SubmitRange(heavy, 1, 5);
  SubmitRange(light, 1, 1);
  ASSERT_EQ(Dispatch().size(), 1u);
  const v1::PoolStatus status = scheduler_->Status();
  ASSERT_EQ(status.session_list_size(), 2);
  EXPECT_EQ(status.session_list(0).session_id(), heavy);
  EXPECT_EQ(status.session_list(0).client_name(), "heavy");
  EXPECT_EQ(status.session_list(0).queued_tasks(), 4u);
  EXPECT_EQ(status.session_list(0).running_tasks(), 1u);
  EXPECT_EQ(status.session_list(1).client_name(), "light");
  EXPECT_EQ(status.session_list(1).queued_tasks(), 1u);
  EXPECT_EQ(status.session_list(1).running_tasks(), 0u);
}

// --- Gang tasks, broadcasts and range maps ---

// The workers' functions for group tasks: "echo" and "fail" as usual, and "sum", a gang
// function (worker/gang.h).
std::vector<v1::FunctionInfo> WithGangFunction() {
  std::vector<v1::FunctionInfo> functions(3);
  functions[0].set_name("echo");
  functions[1].set_name("fail");
  functions[2].set_name("sum");
  functions[2].set_gang(true);
  return functions;
}

v1::TaskSpec Gang(uint64_t id, uint32_t gang_size, absl::string_view function = "sum") {
  v1::TaskSpec spec = Task(id, function);
  spec.mutable_options()->set_gang_size(gang_size);
  return spec;
}

v1::TaskSpec Broadcast(uint64_t id, absl::string_view function = "echo") {
  v1::TaskSpec spec = Task(id, function);
  spec.mutable_options()->set_broadcast(true);
  return spec;
}

v1::TaskSpec Ranged(uint64_t id, uint64_t first, uint64_t count,
                    absl::string_view function = "echo") {
  v1::TaskSpec spec = Task(id, function);
  spec.mutable_range()->set_first(first);
  spec.mutable_range()->set_count(count);
  spec.mutable_range()->set_base_seed(99);
  return spec;
}

std::vector<int> WorkersOf(const std::vector<Assignment>& assignments) {
  std::vector<int> workers;
  for (const Assignment& assignment : assignments) workers.push_back(assignment.worker);
  return workers;
}

wire::ResultFrame ResultOf(const Assignment& assignment, absl::string_view result,
                           uint64_t run_us = 0) {
  wire::ResultFrame frame;
  frame.set_task_key(assignment.frame.task_key());
  frame.set_result(std::string(result));
  frame.set_run_us(run_us);
  return frame;
}

wire::ResultFrame ErrorOf(const Assignment& assignment, absl::StatusCode code,
                          absl::string_view message) {
  wire::ResultFrame frame;
  frame.set_task_key(assignment.frame.task_key());
  frame.mutable_error()->set_code(Code(code));
  frame.mutable_error()->set_message(std::string(message));
  return frame;
}

// The one rejection of a batch of one task.
v1::TaskRejection RejectionOf(std::vector<v1::TaskRejection> rejections) {
  EXPECT_EQ(rejections.size(), 1u);
  return rejections.empty() ? v1::TaskRejection() : rejections[0];
}

TEST_F(SchedulerTest, GangSizeAboveThePoolIsRejectedEvenWhileBooting) {
  Boot(/*workers=*/4);
  const SessionId session = Open();
  v1::TaskRejection rejection = RejectionOf(Submit(session, {Gang(1, 5)}));
  EXPECT_EQ(rejection.task_id(), 1u);
  EXPECT_EQ(rejection.code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(rejection.message(), HasSubstr("gang_size 5"));
  EXPECT_THAT(rejection.message(), HasSubstr("4 workers"));

  scheduler_->PoolReady(WithGangFunction());
  rejection = RejectionOf(Submit(session, {Gang(2, 5), Gang(3, 4)}));
  EXPECT_EQ(rejection.task_id(), 2u);
  EXPECT_EQ(rejection.code(), Code(absl::StatusCode::kInvalidArgument));
}

TEST_F(SchedulerTest, GangSizeAboveOneNeedsAGangFunction) {
  Boot(/*workers=*/4);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId session = Open();
  const v1::TaskRejection rejection =
      RejectionOf(Submit(session, {Gang(1, 2, "echo"), Gang(2, 1, "echo"), Gang(3, 2)}));
  EXPECT_EQ(rejection.task_id(), 1u);
  EXPECT_EQ(rejection.code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(rejection.message(), HasSubstr("'echo' is not a gang function"));
}

TEST_F(SchedulerTest, BroadcastCannotHaveItemsRangeOrGangSize) {
  Boot(/*workers=*/2);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId session = Open();
  v1::TaskSpec with_items = Broadcast(1);
  with_items.add_items("x");
  v1::TaskSpec with_range = Broadcast(2);
  with_range.mutable_range()->set_count(1);
  v1::TaskSpec with_gang_size = Broadcast(3, "sum");
  with_gang_size.mutable_options()->set_gang_size(1);
  const std::vector<v1::TaskRejection> rejections =
      Submit(session, {with_items, with_range, with_gang_size, Broadcast(4)});
  ASSERT_EQ(rejections.size(), 3u);
  for (const v1::TaskRejection& rejection : rejections) {
    EXPECT_EQ(rejection.code(), Code(absl::StatusCode::kInvalidArgument)) << rejection.task_id();
    EXPECT_THAT(rejection.message(), HasSubstr("a broadcast cannot have")) << rejection.task_id();
  }
  EXPECT_THAT(rejections[0].message(), HasSubstr("items"));
  EXPECT_THAT(rejections[1].message(), HasSubstr("range"));
  EXPECT_THAT(rejections[2].message(), HasSubstr("gang_size (1)"));
}

TEST_F(SchedulerTest, RangeCannotHaveItemsOrAGangAndCountsOneToTwoToTheTwenty) {
  Boot(/*workers=*/2);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId session = Open();
  v1::TaskSpec with_items = Ranged(1, 0, 3);
  with_items.add_items("x");
  v1::TaskSpec with_gang_size = Ranged(2, 0, 3, "sum");
  with_gang_size.mutable_options()->set_gang_size(2);
  const std::vector<v1::TaskRejection> rejections =
      Submit(session, {with_items, with_gang_size, Ranged(3, 0, 3, "sum"), Ranged(4, 7, 0),
                       Ranged(5, 7, 1), Ranged(6, 0, (1 << 20) + 1), Ranged(7, 0, 1 << 20)});
  ASSERT_EQ(rejections.size(), 5u);
  for (const v1::TaskRejection& rejection : rejections) {
    EXPECT_EQ(rejection.code(), Code(absl::StatusCode::kInvalidArgument)) << rejection.task_id();
  }
  EXPECT_THAT(rejections[0].message(), HasSubstr("both items and a range"));
  EXPECT_THAT(rejections[1].message(),
              HasSubstr("a gang (gang_size 2) takes one payload, not items or a range"));
  // A gang function is a gang even without a gang_size.
  EXPECT_THAT(rejections[2].message(), HasSubstr("'sum' is a gang function"));
  EXPECT_THAT(rejections[3].message(), HasSubstr("range.count must be at least 1"));
  EXPECT_EQ(rejections[4].task_id(), 6u);
  EXPECT_THAT(rejections[4].message(),
              HasSubstr("range.count 1048577 is more than the 1048576 items one task may compute"));
}

TEST_F(SchedulerTest, AGangTakesOnePayloadNotItems) {
  Boot(/*workers=*/2);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId session = Open();
  v1::TaskSpec gang_function_items;
  gang_function_items.set_task_id(1);
  gang_function_items.set_function("sum");
  gang_function_items.add_items("x");
  v1::TaskSpec gang_size_items = gang_function_items;
  gang_size_items.set_task_id(2);
  gang_size_items.mutable_options()->set_gang_size(2);
  const std::vector<v1::TaskRejection> rejections =
      Submit(session, {gang_function_items, gang_size_items});
  ASSERT_EQ(rejections.size(), 2u);
  EXPECT_EQ(rejections[0].code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(rejections[0].message(), HasSubstr("'sum' is a gang function: it takes one payload"));
  EXPECT_EQ(rejections[1].code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(rejections[1].message(), HasSubstr("a gang (gang_size 2) takes one payload"));
}

TEST_F(SchedulerTest, RangeIsCopiedIntoTheFrame) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  EXPECT_THAT(Submit(session, {Ranged(1, 1000, 4)}), IsEmpty());
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  ASSERT_TRUE(assignments[0].frame.has_range());
  EXPECT_EQ(assignments[0].frame.range().first(), 1000u);
  EXPECT_EQ(assignments[0].frame.range().count(), 4u);
  EXPECT_EQ(assignments[0].frame.range().base_seed(), 99u);
  EXPECT_EQ(IdOf(assignments[0]), 1u) << "the payload is every item's input";
  EXPECT_THAT(assignments[0].frame.gang(), IsEmpty());

  // Ordinary tasks carry no range.
  CompleteEchoed(assignments[0]);
  SubmitRange(session, 2, 2);
  const std::vector<Assignment> plain = Dispatch();
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_FALSE(plain[0].frame.has_range());
}

TEST_F(SchedulerTest, GangGetsTheLowestIdleWorkersInRankOrder) {
  Boot(/*workers=*/4);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId session = Open();
  SubmitRange(session, 1, 4);
  const std::vector<Assignment> singles = Dispatch();
  ASSERT_EQ(singles.size(), 4u);
  // Workers 1 and then 3 come free: a single task would take 3, the most recently freed, first.
  CompleteEchoed(singles[1]);
  CompleteEchoed(singles[3]);
  scheduler_->TakeEvents(session);
  Listener(session).TakeCalls();

  EXPECT_THAT(Submit(session, {Gang(5, 2)}), IsEmpty());
  const std::vector<Assignment> gang = Dispatch();
  ASSERT_EQ(gang.size(), 2u);
  EXPECT_THAT(WorkersOf(gang), ElementsAre(1, 3));
  for (const Assignment& member : gang) {
    EXPECT_EQ(member.frame.task_key(), gang[0].frame.task_key());
    EXPECT_EQ(member.frame.function(), "sum");
    EXPECT_EQ(IdOf(member), 5u) << "every member gets the input";
    EXPECT_THAT(member.frame.gang(), ElementsAre(1, 3));
  }
  EXPECT_THAT(TakeStarted(session), ElementsAre(5)) << "started once, not once per member";
  EXPECT_EQ(scheduler_->Status().busy_workers(), 4u);
}

TEST_F(SchedulerTest, GangFunctionWithoutGangSizeRunsAsAGangOfOne) {
  Boot(/*workers=*/2);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId session = Open();
  EXPECT_THAT(Submit(session, {Gang(1, 0), Gang(2, 1)}), IsEmpty());
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 2u);
  for (const Assignment& assignment : assignments) {
    EXPECT_THAT(assignment.frame.gang(), ElementsAre(assignment.worker)) << IdOf(assignment);
  }
  scheduler_->Complete(assignments[0].worker, ResultOf(assignments[0], "one"));
  const SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(events.outcomes[0].result(), "one");
  EXPECT_THAT(events.outcomes[0].workers(), ElementsAre(assignments[0].worker));
}

TEST_F(SchedulerTest, GangWaitsForItsWorkersAndNothingElseStartsMeanwhile) {
  Boot(/*workers=*/3);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId busy = Open("busy");
  const SessionId gang = Open("gang");
  const SessionId small = Open("small");
  SubmitRange(busy, 1, 2);
  const std::vector<Assignment> running = Dispatch();
  ASSERT_EQ(running.size(), 2u);  // Workers 0 and 1; 2 is idle.
  EXPECT_THAT(Submit(gang, {Gang(10, 3)}), IsEmpty());
  SubmitRange(small, 20, 21);

  // One worker is idle, but the gang needs three and goes first.
  EXPECT_THAT(Dispatch(), IsEmpty());
  // And waiting for work does not wake for the one idle worker either.
  const absl::Time before = absl::Now();
  EXPECT_THAT(scheduler_->AwaitWork(absl::Milliseconds(50)).assignments, IsEmpty());
  EXPECT_GE(absl::Now() - before, absl::Milliseconds(40)) << "AwaitWork must not spin";

  CompleteEchoed(running[0]);
  EXPECT_THAT(Dispatch(), IsEmpty()) << "two idle workers are still too few";
  CompleteEchoed(running[1]);
  const std::vector<Assignment> members = Dispatch();
  ASSERT_EQ(members.size(), 3u) << "the gang, and nothing else: no worker is left";
  EXPECT_THAT(IdsOf(members), ElementsAre(10, 10, 10));
  EXPECT_THAT(WorkersOf(members), ElementsAre(0, 1, 2));
  EXPECT_EQ(Listener(small).calls(), 0);

  // Once the gang is done, the small session's tasks run.
  for (const Assignment& member : members) CompleteEchoed(member);
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(20, 21));
}

TEST_F(SchedulerTest, CancellingAHeldGangLetsOthersRun) {
  Boot(/*workers=*/2);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId busy = Open("busy");
  const SessionId gang = Open("gang");
  const SessionId small = Open("small");
  SubmitRange(busy, 1, 1);
  ASSERT_EQ(Dispatch().size(), 1u);
  EXPECT_THAT(Submit(gang, {Gang(10, 2)}), IsEmpty());
  SubmitRange(small, 20, 20);
  EXPECT_THAT(Dispatch(), IsEmpty());

  EXPECT_TRUE(Cancel(gang, {10})[0].cancelled());
  // The hold is gone with the gang: waiting for work returns at once with the small task.
  const absl::Time before = absl::Now();
  const DispatchWork work = scheduler_->AwaitWork(absl::Seconds(10));
  EXPECT_LT(absl::Now() - before, absl::Seconds(5));
  EXPECT_THAT(IdsOf(work.assignments), ElementsAre(20));
  EXPECT_THAT(WorkersOf(work.assignments), ElementsAre(1));
}

TEST_F(SchedulerTest, ExpiredHeldGangLetsOthersRun) {
  Boot(/*workers=*/2);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId busy = Open("busy");
  const SessionId gang = Open("gang");
  SubmitRange(busy, 1, 1);
  ASSERT_EQ(Dispatch().size(), 1u);
  v1::TaskSpec impatient = Gang(10, 2);
  impatient.mutable_options()->set_queue_timeout_ms(100);
  EXPECT_THAT(Submit(gang, {impatient}), IsEmpty());
  SubmitRange(busy, 2, 2);
  EXPECT_THAT(Dispatch(), IsEmpty());

  now_ += absl::Milliseconds(100);
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(2));
  const SessionEvents events = scheduler_->TakeEvents(gang);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].error().code(), Code(absl::StatusCode::kDeadlineExceeded));
}

TEST_F(SchedulerTest, BroadcastWaitsForEveryWorkerAndHasOneItemPerWorker) {
  Start(/*workers=*/3);
  const SessionId session = Open();
  SubmitRange(session, 1, 1);
  const std::vector<Assignment> single = Dispatch();
  ASSERT_EQ(single.size(), 1u);
  EXPECT_THAT(Submit(session, {Broadcast(2)}), IsEmpty());
  EXPECT_THAT(Dispatch(), IsEmpty()) << "worker 0 is busy";
  CompleteEchoed(single[0]);
  scheduler_->TakeEvents(session);
  Listener(session).TakeCalls();

  now_ += absl::Milliseconds(3);
  const std::vector<Assignment> members = Dispatch();
  ASSERT_EQ(members.size(), 3u);
  EXPECT_THAT(WorkersOf(members), ElementsAre(0, 1, 2));
  for (const Assignment& member : members) {
    EXPECT_EQ(IdOf(member), 2u);
    EXPECT_THAT(member.frame.gang(), IsEmpty()) << "a plain function runs alone on each worker";
  }
  EXPECT_THAT(TakeStarted(session), ElementsAre(2));

  // The members report in any order; the items are in worker order.
  scheduler_->Complete(2, ErrorOf(members[2], absl::StatusCode::kUnknown, "no disk"));
  scheduler_->Complete(0, ResultOf(members[0], "zero", 5));
  EXPECT_EQ(Listener(session).calls(), 0) << "worker 1 has not reported";
  scheduler_->Complete(1, ResultOf(members[1], "one", 9));
  const SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  const v1::TaskOutcome& outcome = events.outcomes[0];
  EXPECT_EQ(outcome.task_id(), 2u);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED);
  ASSERT_EQ(outcome.items_size(), 3);
  EXPECT_EQ(outcome.items(0).result(), "zero");
  EXPECT_EQ(outcome.items(1).result(), "one");
  ASSERT_EQ(outcome.items(2).outcome_case(), v1::ItemOutcome::kError);
  EXPECT_EQ(outcome.items(2).error().message(), "no disk");
  EXPECT_THAT(outcome.workers(), ElementsAre(0, 1, 2));
  EXPECT_EQ(outcome.worker(), 0);
  EXPECT_EQ(outcome.run_us(), 9u) << "the longest member";
  EXPECT_EQ(outcome.queue_us(), 3000u);
  EXPECT_EQ(scheduler_->Status().busy_workers(), 0u);
  EXPECT_EQ(scheduler_->Status().tasks_succeeded(), 2u);
}

TEST_F(SchedulerTest, BroadcastOfAGangFunctionIsAGangOfThePool) {
  Boot(/*workers=*/3);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId session = Open();
  EXPECT_THAT(Submit(session, {Broadcast(1, "sum")}), IsEmpty());
  const std::vector<Assignment> members = Dispatch();
  ASSERT_EQ(members.size(), 3u);
  for (const Assignment& member : members) EXPECT_THAT(member.frame.gang(), ElementsAre(0, 1, 2));
  for (const Assignment& member : members) CompleteEchoed(member);
  const SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].items_size(), 3) << "still one item per worker";
}

TEST_F(SchedulerTest, GangOutcomeIsRankZerosResult) {
  Boot(/*workers=*/4);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId session = Open();
  const SessionId other = Open("other");
  EXPECT_THAT(Submit(session, {Gang(1, 3)}), IsEmpty());
  const std::vector<Assignment> members = Dispatch();
  ASSERT_EQ(members.size(), 3u);
  TakeStarted(session);

  // Progress from any member counts.
  scheduler_->Progress(members[1].worker, ProgressOf(members[1], 0.5, "rank 1 halfway"));
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.progress.size(), 1u);
  EXPECT_EQ(events.progress[0].message(), "rank 1 halfway");
  Listener(session).TakeCalls();

  scheduler_->Complete(members[2].worker, ResultOf(members[2], "rank 2", 30));
  EXPECT_EQ(scheduler_->Status().busy_workers(), 2u);
  // The member that is done is free at once.
  SubmitRange(other, 7, 8);
  EXPECT_THAT(WorkersOf(Dispatch()), UnorderedElementsAre(members[2].worker, 3));
  scheduler_->Complete(members[0].worker, ResultOf(members[0], "rank 0", 10));
  EXPECT_EQ(Listener(session).calls(), 0);
  scheduler_->Complete(members[1].worker, ResultOf(members[1], "rank 1", 20));

  events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  const v1::TaskOutcome& outcome = events.outcomes[0];
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(outcome.result(), "rank 0");
  EXPECT_THAT(outcome.items(), IsEmpty());
  EXPECT_THAT(outcome.workers(), ElementsAre(0, 1, 2));
  EXPECT_EQ(outcome.worker(), 0);
  EXPECT_EQ(outcome.run_us(), 30u);
}

TEST_F(SchedulerTest, GangOutcomeIsTheLowestFailingRanksError) {
  Boot(/*workers=*/4);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId session = Open();
  SubmitRange(session, 1, 1);  // Takes worker 0, so the gang's ranks are not its workers.
  ASSERT_EQ(Dispatch().size(), 1u);
  EXPECT_THAT(Submit(session, {Gang(2, 3)}), IsEmpty());
  const std::vector<Assignment> members = Dispatch();
  ASSERT_EQ(members.size(), 3u);
  ASSERT_THAT(WorkersOf(members), ElementsAre(1, 2, 3));

  scheduler_->Complete(3, ErrorOf(members[2], absl::StatusCode::kInternal, "rank 2 broke"));
  scheduler_->Complete(1, ResultOf(members[0], "rank 0"));
  scheduler_->Complete(2, ErrorOf(members[1], absl::StatusCode::kDataLoss, "rank 1 broke"));
  const SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  const v1::TaskOutcome& outcome = events.outcomes[0];
  EXPECT_EQ(outcome.task_id(), 2u);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(outcome.result(), "");
  EXPECT_EQ(outcome.error().code(), Code(absl::StatusCode::kDataLoss));
  EXPECT_EQ(outcome.error().message(), "gang rank 1 (worker 2): rank 1 broke");
  EXPECT_THAT(outcome.workers(), ElementsAre(1, 2, 3));
  EXPECT_EQ(outcome.worker(), 1);
}

TEST_F(SchedulerTest, InterruptReachesEveryRunningMember) {
  Boot(/*workers=*/3);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId session = Open();
  EXPECT_THAT(Submit(session, {Gang(1, 3)}), IsEmpty());
  const std::vector<Assignment> members = Dispatch();
  ASSERT_EQ(members.size(), 3u);
  // Rank 1 has already finished: only the others are still running the task.
  scheduler_->Complete(1, ResultOf(members[1], "done"));

  const std::vector<uint64_t> ids = {1};
  absl::StatusOr<std::vector<v1::CancelResult>> results =
      scheduler_->Cancel(session, ids, /*interrupt_running=*/true);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_TRUE((*results)[0].interrupted());
  const DispatchWork work = scheduler_->AwaitWork(absl::ZeroDuration());
  std::vector<int> interrupted;
  for (const Interrupt& interrupt : work.interrupts) {
    EXPECT_EQ(interrupt.task_key, members[0].frame.task_key());
    interrupted.push_back(interrupt.worker);
  }
  EXPECT_THAT(interrupted, ElementsAre(0, 2));
  EXPECT_THAT(work.assignments, IsEmpty());

  // The ranks give up with CANCELLED: the gang ends CANCELLED with rank 0's error.
  scheduler_->Complete(0, Cancelled(members[0]));
  scheduler_->Complete(2, Cancelled(members[2]));
  const SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_CANCELLED);
  EXPECT_EQ(events.outcomes[0].error().message(), "gang rank 0 (worker 0): gave up");
}

TEST_F(SchedulerTest, AbandonInterruptsEveryGangMember) {
  Boot(/*workers=*/2);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId session = Open();
  EXPECT_THAT(Submit(session, {Gang(1, 2)}), IsEmpty());
  ASSERT_EQ(Dispatch().size(), 2u);
  scheduler_->Abandon(session);
  std::vector<int> interrupted;
  for (const Interrupt& interrupt : scheduler_->AwaitWork(absl::ZeroDuration()).interrupts) {
    interrupted.push_back(interrupt.worker);
  }
  EXPECT_THAT(interrupted, ElementsAre(0, 1));
}

TEST_F(SchedulerTest, FailRunningEndsAGangOnce) {
  Boot(/*workers=*/3);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId session = Open();
  EXPECT_THAT(Submit(session, {Gang(1, 2), Task(2)}), IsEmpty());
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 3u);
  // One member has reported; the other still runs.
  scheduler_->Complete(assignments[0].worker, Echoed(assignments[0]));
  scheduler_->Drain("stop");
  scheduler_->FailRunning("cancelled: the drain grace period passed");
  EXPECT_TRUE(scheduler_->AwaitNoRunningTasks(absl::InfinitePast()));
  EXPECT_EQ(scheduler_->Status().busy_workers(), 0u);

  const SessionEvents events = scheduler_->TakeEvents(session);
  EXPECT_TRUE(events.closed);
  ASSERT_EQ(events.outcomes.size(), 2u);
  EXPECT_THAT(IdsOf(events.outcomes), UnorderedElementsAre(1, 2));
  for (const v1::TaskOutcome& outcome : events.outcomes) {
    EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
    EXPECT_THAT(outcome.error().message(), HasSubstr("grace period"));
    if (outcome.task_id() == 1) {
      EXPECT_THAT(outcome.workers(), ElementsAre(0, 1));
    }
  }
  EXPECT_EQ(scheduler_->Status().tasks_failed(), 2u);
  // The other member's late result is ignored.
  scheduler_->Complete(assignments[1].worker, Echoed(assignments[1]));
  EXPECT_EQ(scheduler_->Status().tasks_succeeded(), 0u);
}

TEST_F(SchedulerTest, PoolReadyRejectsQueuedTasksThatBreakTheGangRules) {
  Boot(/*workers=*/2);
  const SessionId session = Open();
  EXPECT_THAT(
      Submit(session, {Gang(1, 2, "echo"), Ranged(2, 0, 3, "sum"), Gang(3, 2), Ranged(4, 0, 3)}),
      IsEmpty());
  scheduler_->PoolReady(WithGangFunction());
  const SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 2u);
  std::vector<v1::TaskOutcome> outcomes = events.outcomes;
  std::sort(
      outcomes.begin(), outcomes.end(),
      [](const v1::TaskOutcome& a, const v1::TaskOutcome& b) { return a.task_id() < b.task_id(); });
  EXPECT_EQ(outcomes[0].task_id(), 1u);
  EXPECT_EQ(outcomes[0].error().code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(outcomes[0].error().message(), HasSubstr("not a gang function"));
  EXPECT_EQ(outcomes[1].task_id(), 2u);
  EXPECT_EQ(outcomes[1].error().code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(outcomes[1].error().message(), HasSubstr("is a gang function"));

  // The gang queued while booting is known for one now: it runs as a gang.
  const std::vector<Assignment> members = Dispatch();
  ASSERT_EQ(members.size(), 2u);
  EXPECT_THAT(IdsOf(members), ElementsAre(3, 3));
  EXPECT_THAT(members[0].frame.gang(), ElementsAre(0, 1));
}

// --- Crashes, retries, run timeouts and forced cancels ---

// What a worker reports when the task runner process died under the task.
wire::ResultFrame RunnerLost(const Assignment& assignment, absl::string_view how) {
  wire::ResultFrame result;
  result.set_task_key(assignment.frame.task_key());
  result.set_runner_lost(true);
  result.mutable_error()->set_code(Code(absl::StatusCode::kAborted));
  result.mutable_error()->set_message(std::string(how));
  return result;
}

v1::TaskSpec Retried(uint64_t id, uint32_t max_retries) {
  v1::TaskSpec spec = Task(id);
  spec.mutable_options()->set_max_retries(max_retries);
  return spec;
}

TEST_F(SchedulerTest, ACrashWithoutRetriesFailsTheTaskWithTheWorkersWords) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  SubmitRange(session, 1, 2);
  std::vector<Assignment> first = Dispatch();
  ASSERT_EQ(first.size(), 1u);
  // Without retries the frame is handed over, not copied.
  scheduler_->Complete(first[0].worker, RunnerLost(first[0], "killed by signal 11"));
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(events.outcomes[0].error().code(), Code(absl::StatusCode::kAborted));
  EXPECT_EQ(events.outcomes[0].error().message(), "killed by signal 11");
  EXPECT_EQ(events.outcomes[0].attempts(), 1u);
  // The worker is free again for the next task.
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(2));
}

TEST_F(SchedulerTest, ACrashedTaskWithRetriesRunsAgainAheadOfItsSessionsQueue) {
  Start(/*workers=*/2);
  const SessionId session = Open();
  ASSERT_THAT(Submit(session, {Retried(1, 2), Task(2), Task(3)}), IsEmpty());
  std::vector<Assignment> first = Dispatch();
  ASSERT_EQ(first.size(), 2u);
  ASSERT_EQ(IdOf(first[0]), 1u);
  scheduler_->Complete(first[0].worker, RunnerLost(first[0], "killed by signal 9"));
  EXPECT_THAT(scheduler_->TakeEvents(session).outcomes, IsEmpty()) << "it is retried, not ended";

  // Task 1 goes before task 3, with its payload intact.
  std::vector<Assignment> second = Dispatch();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(IdOf(second[0]), 1u);
  EXPECT_EQ(second[0].frame.task_key(), first[0].frame.task_key());
  CompleteEchoed(second[0]);
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(events.outcomes[0].result(), "t1");
  EXPECT_EQ(events.outcomes[0].attempts(), 2u);
}

TEST_F(SchedulerTest, ATaskThatKeepsCrashingFailsSayingHowManyAttemptsItTook) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  ASSERT_THAT(Submit(session, {Retried(1, 2)}), IsEmpty());
  for (int attempt = 1; attempt <= 3; ++attempt) {
    std::vector<Assignment> assignments = Dispatch();
    ASSERT_EQ(assignments.size(), 1u) << "attempt " << attempt;
    EXPECT_EQ(assignments[0].frame.payload(), "t1") << "attempt " << attempt;
    scheduler_->Complete(assignments[0].worker, RunnerLost(assignments[0], "killed by signal 11"));
  }
  EXPECT_THAT(Dispatch(), IsEmpty()) << "no fourth attempt";
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(events.outcomes[0].error().code(), Code(absl::StatusCode::kAborted));
  EXPECT_EQ(events.outcomes[0].error().message(),
            "failed on all 3 attempts; the last: killed by signal 11");
  EXPECT_EQ(events.outcomes[0].attempts(), 3u);
  EXPECT_THAT(events.started, ElementsAre(1, 1, 1)) << "each attempt is a start";
}

TEST_F(SchedulerTest, ErrorsThatAreNotCrashesAreNeverRetried) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  ASSERT_THAT(Submit(session, {Retried(1, 3)}), IsEmpty());
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  wire::ResultFrame failed;
  failed.set_task_key(assignments[0].frame.task_key());
  failed.mutable_error()->set_code(Code(absl::StatusCode::kDeadlineExceeded));
  failed.mutable_error()->set_message("ran past its run timeout");
  scheduler_->Complete(assignments[0].worker, failed);
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].error().code(), Code(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(events.outcomes[0].attempts(), 1u);
}

TEST_F(SchedulerTest, AnInterruptedTaskIsNotRetriedAfterACrash) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  ASSERT_THAT(Submit(session, {Retried(1, 3)}), IsEmpty());
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  const std::vector<uint64_t> ids = {1};
  ASSERT_TRUE(scheduler_->Cancel(session, ids, /*interrupt_running=*/true).ok());
  scheduler_->Complete(assignments[0].worker, RunnerLost(assignments[0], "exited with status 3"));
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].error().message(), "exited with status 3");
}

TEST_F(SchedulerTest, ADrainingPoolDoesNotRetry) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  ASSERT_THAT(Submit(session, {Retried(1, 3)}), IsEmpty());
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  scheduler_->Drain("stopping");
  scheduler_->Complete(assignments[0].worker, RunnerLost(assignments[0], "killed by signal 9"));
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(events.outcomes[0].error().code(), Code(absl::StatusCode::kAborted));
}

TEST_F(SchedulerTest, RetriesAreBoundedAndNotForBroadcasts) {
  Start(/*workers=*/2);
  const SessionId session = Open();
  v1::TaskSpec broadcast = Retried(2, 1);
  broadcast.mutable_options()->set_broadcast(true);
  const std::vector<v1::TaskRejection> rejections =
      Submit(session, {Retried(1, 11), std::move(broadcast), Retried(3, 10)});
  ASSERT_EQ(rejections.size(), 2u);
  EXPECT_EQ(rejections[0].task_id(), 1u);
  EXPECT_EQ(rejections[0].code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(rejections[0].message(), HasSubstr("max_retries 11"));
  EXPECT_EQ(rejections[1].task_id(), 2u);
  EXPECT_THAT(rejections[1].message(), HasSubstr("broadcast"));
}

TEST_F(SchedulerTest, TheRunTimeoutTravelsInTheFrame) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  v1::TaskSpec spec = Task(1);
  spec.mutable_options()->set_run_timeout_ms(250);
  ASSERT_THAT(Submit(session, {std::move(spec)}), IsEmpty());
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_EQ(assignments[0].frame.run_timeout_ms(), 250u);
}

TEST_F(SchedulerTest, ForcedCancelAsksTheWorkerToKillEvenAfterAnInterrupt) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  SubmitRange(session, 1, 1);
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  const std::vector<uint64_t> ids = {1};

  ASSERT_TRUE(scheduler_->Cancel(session, ids, /*interrupt_running=*/true).ok());
  DispatchWork work = scheduler_->AwaitWork(absl::ZeroDuration());
  ASSERT_EQ(work.interrupts.size(), 1u);
  EXPECT_FALSE(work.interrupts[0].force);

  absl::StatusOr<std::vector<v1::CancelResult>> forced =
      scheduler_->Cancel(session, ids, /*interrupt_running=*/false, /*force=*/true);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_TRUE(forced->at(0).interrupted());
  work = scheduler_->AwaitWork(absl::ZeroDuration());
  ASSERT_EQ(work.interrupts.size(), 1u);
  EXPECT_TRUE(work.interrupts[0].force);
  EXPECT_EQ(work.interrupts[0].task_key, assignments[0].frame.task_key());
  // Once killed, asking again sends nothing.
  ASSERT_TRUE(scheduler_->Cancel(session, ids, true, true).ok());
  EXPECT_THAT(scheduler_->AwaitWork(absl::ZeroDuration()).interrupts, IsEmpty());

  // The worker answers a kill with CANCELLED: the task ends CANCELLED.
  scheduler_->Complete(assignments[0].worker, Cancelled(assignments[0]));
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_CANCELLED);
}

// --- Prefetch: several short tasks per worker ---

// Runs the one task AwaitWork() hands out and reports it done after `run`, so that the scheduler
// learns how long its worker's tasks take.
void RunOneTaken(Scheduler& scheduler, absl::Duration run) {
  DispatchWork work = scheduler.AwaitWork(absl::ZeroDuration());
  ASSERT_EQ(work.assignments.size(), 1u);
  scheduler.Complete(
      work.assignments[0].worker,
      ResultOf(work.assignments[0], "done", static_cast<uint64_t>(absl::ToInt64Microseconds(run))));
}

TEST_F(SchedulerTest, AWorkerIsHandedOneTaskUntilItsTasksAreKnownToBeShort) {
  StartPrefetching(/*workers=*/1, /*max_tasks=*/4, Functions({"echo", "fail"}));
  const SessionId session = Open();
  SubmitRange(session, 1, 20);
  // Nothing is known of the worker's tasks yet: one at a time.
  ASSERT_NO_FATAL_FAILURE(RunOneTaken(*scheduler_, absl::Microseconds(10)));

  // 10 us each: a 1 ms window holds 100, capped at 4.
  std::vector<Assignment> taken = Dispatch();
  EXPECT_THAT(IdsOf(taken), ElementsAre(2, 3, 4, 5));
  EXPECT_THAT(WorkersOf(taken), ElementsAre(0, 0, 0, 0));
  // They are all running, as far as the session can tell, and the worker is full.
  EXPECT_THAT(scheduler_->TakeEvents(session).started, ElementsAre(1, 2, 3, 4, 5));
  EXPECT_THAT(Dispatch(), IsEmpty());
  EXPECT_EQ(scheduler_->Status().busy_workers(), 1u);
  EXPECT_EQ(scheduler_->Status().queued_tasks(), 15u);

  // Each task done makes room for one more.
  scheduler_->Complete(0, ResultOf(taken[0], "done", 10));
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(6));
}

TEST_F(SchedulerTest, AWorkerRunningLongTasksHoldsOneAtATime) {
  StartPrefetching(/*workers=*/1, /*max_tasks=*/16, Functions({"echo", "fail"}));
  const SessionId session = Open();
  SubmitRange(session, 1, 10);
  ASSERT_NO_FATAL_FAILURE(RunOneTaken(*scheduler_, absl::Milliseconds(5)));
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(2));
  EXPECT_THAT(Dispatch(), IsEmpty());
}

TEST_F(SchedulerTest, ABacklogHoldsAboutTheWindowsWorthOfWork) {
  StartPrefetching(/*workers=*/1, /*max_tasks=*/16, Functions({"echo", "fail"}));
  const SessionId session = Open();
  SubmitRange(session, 1, 20);
  // 250 us each: 4 fit into the 1 ms window.
  ASSERT_NO_FATAL_FAILURE(RunOneTaken(*scheduler_, absl::Microseconds(250)));
  EXPECT_EQ(Dispatch().size(), 4u);
}

TEST_F(SchedulerTest, ATaskInABacklogCannotBeCancelledButCanBeInterrupted) {
  StartPrefetching(/*workers=*/1, /*max_tasks=*/4, Functions({"echo", "fail"}));
  const SessionId session = Open();
  SubmitRange(session, 1, 5);
  ASSERT_NO_FATAL_FAILURE(RunOneTaken(*scheduler_, absl::Microseconds(10)));
  const std::vector<Assignment> taken = Dispatch();
  ASSERT_THAT(IdsOf(taken), ElementsAre(2, 3, 4, 5));
  scheduler_->TakeEvents(session);

  // Task 4 waits in the worker's backlog: handed over, so running (as a ProcessPoolExecutor's
  // call queue would have it).
  const std::vector<v1::CancelResult> plain = Cancel(session, {4});
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_FALSE(plain[0].cancelled());
  absl::StatusOr<std::vector<v1::CancelResult>> interrupted =
      scheduler_->Cancel(session, {4}, /*interrupt_running=*/true);
  ASSERT_TRUE(interrupted.ok()) << interrupted.status();
  EXPECT_TRUE((*interrupted)[0].interrupted());
  const DispatchWork work = scheduler_->AwaitWork(absl::ZeroDuration());
  ASSERT_EQ(work.interrupts.size(), 1u);
  EXPECT_EQ(work.interrupts[0].worker, 0);
  EXPECT_EQ(work.interrupts[0].task_key, taken[2].frame.task_key());

  // The worker drops it from its backlog and says so before the tasks ahead of it end.
  scheduler_->Complete(0, ErrorOf(taken[2], absl::StatusCode::kCancelled, "dropped"));
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].task_id(), 4u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_CANCELLED);
  // The others still end, in order, and the worker then takes none: nothing is left.
  for (const size_t i : {0, 1, 3}) scheduler_->Complete(0, ResultOf(taken[i], "done", 10));
  EXPECT_THAT(IdsOf(scheduler_->TakeEvents(session).outcomes), ElementsAre(2, 3, 5));
  EXPECT_EQ(scheduler_->Status().busy_workers(), 0u);
}

TEST_F(SchedulerTest, AnotherSessionsTaskWaitsBehindTheBacklogNotTheQueue) {
  StartPrefetching(/*workers=*/1, /*max_tasks=*/4, Functions({"echo", "fail"}));
  const SessionId flood = Open("flood");
  SubmitRange(flood, 1, 1000);
  ASSERT_NO_FATAL_FAILURE(RunOneTaken(*scheduler_, absl::Microseconds(10)));
  const std::vector<Assignment> taken = Dispatch();
  ASSERT_EQ(taken.size(), 4u);

  const SessionId late = Open("late");
  Submit(late, {Task(7)});
  // Round-robin as between idle workers: the flood's turn, then the late session's. The late task
  // waits for the backlog and one turn, not for the flood's 995 queued tasks.
  scheduler_->Complete(0, ResultOf(taken[0], "done", 10));
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(6));
  scheduler_->Complete(0, ResultOf(taken[1], "done", 10));
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(7));
  TakeStarted(late);
}

TEST_F(SchedulerTest, AWorkerWhoseTaskRunsTenTimesTheWindowIsHandedNothingMoreUntilItEnds) {
  StartPrefetching(/*workers=*/2, /*max_tasks=*/8, Functions({"echo", "fail"}));
  const SessionId session = Open();
  // Both workers learn that their tasks are short (10 us: the window holds 8).
  SubmitRange(session, 1, 2);
  std::vector<Assignment> first = Dispatch();
  ASSERT_THAT(WorkersOf(first), UnorderedElementsAre(0, 1));
  for (const Assignment& assignment : first) {
    scheduler_->Complete(assignment.worker, ResultOf(assignment, "done", 10));
  }
  // A long one starts on one of them, the other stays busy with short ones.
  SubmitRange(session, 3, 4);
  std::vector<Assignment> busy = Dispatch();
  ASSERT_EQ(busy.size(), 2u);
  const int long_worker = busy[0].worker;
  scheduler_->TakeEvents(session);

  // Until then (10 ms), both may still be handed more.
  now_ += absl::Milliseconds(9);
  SubmitRange(session, 5, 6);
  const std::vector<Assignment> within = Dispatch();
  EXPECT_THAT(WorkersOf(within), UnorderedElementsAre(0, 1));
  // Past it, with the other worker's first task ended (so its clock starts again), new tasks go
  // only to the other worker, however short the long one's earlier tasks were.
  now_ += absl::Milliseconds(2);
  scheduler_->Complete(busy[1].worker, ResultOf(busy[1], "done", 10));
  SubmitRange(session, 7, 10);
  std::vector<Assignment> later = Dispatch();
  ASSERT_FALSE(later.empty());
  for (const Assignment& assignment : later) EXPECT_NE(assignment.worker, long_worker);

  // Once the long task and the one handed over behind it have ended, its worker takes tasks
  // again.
  scheduler_->Complete(long_worker, ResultOf(busy[0], "done", 11000));
  for (const Assignment& assignment : within) {
    if (assignment.worker == long_worker) {
      scheduler_->Complete(long_worker, ResultOf(assignment, "done", 10));
    }
  }
  Submit(session, {Task(11)});
  EXPECT_THAT(WorkersOf(Dispatch()), ElementsAre(long_worker));
}

TEST_F(SchedulerTest, AGangWaitsForWorkersToEmptyTheirBacklogsAndNothingIsPrefetchedMeanwhile) {
  StartPrefetching(/*workers=*/2, /*max_tasks=*/4, WithGangFunction());
  const SessionId session = Open();
  SubmitRange(session, 1, 2);
  // Both workers learn that echo is short.
  std::vector<Assignment> first = Dispatch();
  ASSERT_EQ(first.size(), 2u);
  for (const Assignment& assignment : first) {
    scheduler_->Complete(assignment.worker, ResultOf(assignment, "done", 10));
  }
  SubmitRange(session, 3, 6);
  const std::vector<Assignment> backlog = Dispatch();
  ASSERT_EQ(backlog.size(), 4u);
  Submit(session, {Gang(7, 2), Task(8)});
  // The gang needs both workers idle; task 8, behind it, must not slip into a backlog.
  EXPECT_THAT(Dispatch(), IsEmpty());
  for (size_t i = 0; i + 1 < backlog.size(); ++i) {
    scheduler_->Complete(backlog[i].worker, ResultOf(backlog[i], "done", 10));
    EXPECT_THAT(Dispatch(), IsEmpty()) << "after " << i + 1 << " of 4 ended";
  }
  scheduler_->Complete(backlog.back().worker, ResultOf(backlog.back(), "done", 10));
  const std::vector<Assignment> gang = Dispatch();
  ASSERT_EQ(gang.size(), 2u);
  EXPECT_THAT(IdsOf(gang), ElementsAre(7, 7));
  // A worker in a gang is handed nothing else until the gang ends.
  EXPECT_THAT(Dispatch(), IsEmpty());
}

TEST_F(SchedulerTest, FailRunningEndsEveryTaskInEveryBacklog) {
  StartPrefetching(/*workers=*/1, /*max_tasks=*/4, Functions({"echo", "fail"}));
  const SessionId session = Open();
  SubmitRange(session, 1, 5);
  ASSERT_NO_FATAL_FAILURE(RunOneTaken(*scheduler_, absl::Microseconds(10)));
  ASSERT_EQ(Dispatch().size(), 4u);
  scheduler_->TakeEvents(session);
  scheduler_->FailRunning("drain grace period over");
  const SessionEvents events = scheduler_->TakeEvents(session);
  EXPECT_THAT(IdsOf(events.outcomes), UnorderedElementsAre(2, 3, 4, 5));
  for (const v1::TaskOutcome& outcome : events.outcomes) {
    EXPECT_EQ(outcome.error().code(), Code(absl::StatusCode::kCancelled));
  }
  EXPECT_TRUE(scheduler_->AwaitNoRunningTasks(absl::InfinitePast()));
}

// --- Shared memory ---

// Object `n`'s name under the test's prefix.
std::string SharedName(int n) {
  return absl::StrCat("mpigate-test-", absl::Hex(n, absl::kZeroPad16));
}

// An echo task whose input is shared memory object `n`, of `size` bytes.
v1::TaskSpec SharedTask(uint64_t id, int n, uint64_t size = 1 << 20,
                        absl::string_view function = "echo") {
  v1::TaskSpec spec;
  spec.set_task_id(id);
  spec.set_function(std::string(function));
  spec.mutable_shared_payload()->set_name(SharedName(n));
  spec.mutable_shared_payload()->set_size(size);
  return spec;
}

// A result in shared memory object `n`, of `size` bytes, for `assignment`.
wire::ResultFrame SharedResult(const Assignment& assignment, int n, uint64_t size) {
  wire::ResultFrame result;
  result.set_task_key(assignment.frame.task_key());
  result.mutable_shared_result()->set_name(SharedName(n));
  result.mutable_shared_result()->set_size(size);
  return result;
}

TEST_F(SchedulerTest, ASharedInputGoesToItsWorkerAndIsReleasedOnceItsTaskHasEnded) {
  StartShared(/*workers=*/1);
  const SessionId session = OpenShared(0);
  EXPECT_THAT(Submit(session, {SharedTask(1, 1, 5000)}), IsEmpty());
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_EQ(assignments[0].frame.shared_payload().name(), SharedName(1));
  EXPECT_EQ(assignments[0].frame.shared_payload().size(), 5000u);
  EXPECT_EQ(assignments[0].frame.payload(), "");
  // The session asked for no shared results.
  EXPECT_EQ(assignments[0].frame.shared_result_prefix(), "");
  EXPECT_THAT(released_, IsEmpty());
  wire::ResultFrame result;
  result.set_task_key(assignments[0].frame.task_key());
  result.set_result("done");
  scheduler_->Complete(0, std::move(result));
  EXPECT_THAT(released_, ElementsAre(SharedName(1)));
}

TEST_F(SchedulerTest, ASharedInputThatRanAndCrashedIsKeptForItsRetry) {
  StartShared(/*workers=*/1);
  const SessionId session = OpenShared(0);
  v1::TaskSpec spec = SharedTask(1, 1);
  spec.mutable_options()->set_max_retries(1);
  EXPECT_THAT(Submit(session, {spec}), IsEmpty());
  std::vector<Assignment> first = Dispatch();
  ASSERT_EQ(first.size(), 1u);
  wire::ResultFrame lost;
  lost.set_task_key(first[0].frame.task_key());
  lost.set_runner_lost(true);
  lost.mutable_error()->set_code(Code(absl::StatusCode::kAborted));
  scheduler_->Complete(0, std::move(lost));
  EXPECT_THAT(released_, IsEmpty());
  std::vector<Assignment> second = Dispatch();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].frame.shared_payload().name(), SharedName(1));
  CompleteEchoed(second[0]);
  EXPECT_THAT(released_, ElementsAre(SharedName(1)));
}

TEST_F(SchedulerTest, TheSharedInputsOfRejectedAndCancelledTasksAreReleased) {
  StartShared(/*workers=*/1);
  const SessionId session = OpenShared(0);
  const std::vector<v1::TaskRejection> rejections =
      Submit(session, {SharedTask(1, 1, 10, "nothing such"), Task(2), SharedTask(3, 3)});
  ASSERT_EQ(rejections.size(), 1u);
  EXPECT_EQ(rejections[0].code(), Code(absl::StatusCode::kNotFound));
  EXPECT_THAT(released_, ElementsAre(SharedName(1)));
  // Task 2 runs; task 3 waits and is cancelled.
  ASSERT_EQ(Dispatch().size(), 1u);
  ASSERT_EQ(Cancel(session, {3}).size(), 1u);
  EXPECT_THAT(released_, ElementsAre(SharedName(1), SharedName(3)));
}

TEST_F(SchedulerTest, MalformedSharedInputsAreRejected) {
  StartShared(/*workers=*/1);
  const SessionId plain = Open();
  const SessionId shared = OpenShared(0);
  v1::TaskSpec not_ours = SharedTask(1, 1);
  not_ours.mutable_shared_payload()->set_name("../../etc/passwd");
  v1::TaskSpec both = SharedTask(2, 2);
  both.set_payload("and inline");
  v1::TaskSpec with_items = SharedTask(3, 3);
  with_items.add_items("item");
  const std::vector<v1::TaskRejection> rejected =
      Submit(shared, {not_ours, std::move(both), std::move(with_items)});
  ASSERT_EQ(rejected.size(), 3u);
  for (const v1::TaskRejection& rejection : rejected) {
    EXPECT_EQ(rejection.code(), Code(absl::StatusCode::kInvalidArgument)) << rejection.message();
  }
  EXPECT_THAT(rejected[0].message(), HasSubstr("is not a name of this service's objects"));
  EXPECT_THAT(rejected[1].message(), HasSubstr("takes no payload and no items"));
  // A name that is not the service's is never removed; the others were handed over.
  EXPECT_THAT(released_, ElementsAre(SharedName(2), SharedName(3)));
  released_.clear();

  const std::vector<v1::TaskRejection> refused = Submit(plain, {SharedTask(4, 4)});
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(refused[0].message(), HasSubstr("needs a session with shared memory"));
  // A session without shared memory handed nothing over.
  EXPECT_THAT(released_, IsEmpty());
}

TEST_F(SchedulerTest, WithoutAPrefixNoSessionUsesSharedMemory) {
  Start(/*workers=*/1);
  auto listener = std::make_shared<CountingListener>();
  absl::StatusOr<SessionId> session =
      scheduler_->OpenSession("asks", listener, 0, {.enabled = true, .result_min_bytes = 1});
  ASSERT_TRUE(session.ok());
  EXPECT_EQ(scheduler_->shared_memory_prefix(), "");
  absl::StatusOr<std::vector<v1::TaskRejection>> rejections =
      TrySubmit(*session, {SharedTask(1, 1)});
  ASSERT_TRUE(rejections.ok());
  ASSERT_EQ(rejections->size(), 1u);
  EXPECT_EQ((*rejections)[0].code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(TrySubmit(*session, {Task(2)}).value_or(std::vector<v1::TaskRejection>(1)),
              IsEmpty());
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_EQ(assignments[0].frame.shared_result_prefix(), "");
}

TEST_F(SchedulerTest, SharedResultsAreAskedOfSingleTasksOfSessionsThatWantThem) {
  StartShared(/*workers=*/2);
  const SessionId wants = OpenShared(4096);
  const SessionId does_not = OpenShared(0);
  SubmitRange(wants, 1, 1);
  SubmitRange(does_not, 2, 2);
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 2u);
  for (const Assignment& assignment : assignments) {
    if (IdOf(assignment) == 1) {
      EXPECT_EQ(assignment.frame.shared_result_prefix(), kSharedPrefix);
      EXPECT_EQ(assignment.frame.shared_result_min_bytes(), 4096u);
    } else {
      EXPECT_EQ(assignment.frame.shared_result_prefix(), "");
    }
    CompleteEchoed(assignment);
  }
  // A broadcast's results are items, each in its frame.
  v1::TaskSpec broadcast = Task(3);
  broadcast.mutable_options()->set_broadcast(true);
  EXPECT_THAT(Submit(wants, {broadcast}), IsEmpty());
  assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 2u);
  for (const Assignment& assignment : assignments) {
    EXPECT_EQ(assignment.frame.shared_result_prefix(), "");
  }
}

TEST_F(SchedulerTest, ASharedResultReachesTheClientAndIsTheClientsToRemove) {
  StartShared(/*workers=*/1);
  const SessionId session = OpenShared(1);
  SubmitRange(session, 1, 1);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  scheduler_->Complete(0, SharedResult(assignments[0], 7, 1 << 20));
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  const v1::TaskOutcome& outcome = events.outcomes[0];
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(outcome.result(), "");
  EXPECT_EQ(outcome.shared_result().name(), SharedName(7));
  EXPECT_EQ(outcome.shared_result().size(), 1u << 20);
  // The session holds the result's bytes until they are acknowledged, shared or not.
  EXPECT_GT(SessionStatusOf(session).unread_result_bytes(), 1u << 20);
  // Written, read and acknowledged: the client removed it.
  google::protobuf::RepeatedPtrField<v1::TaskOutcome> written(events.outcomes.begin(),
                                                              events.outcomes.end());
  scheduler_->Retain(session, written);
  ASSERT_TRUE(scheduler_->Ack(session, {1}).ok());
  EXPECT_THAT(released_, IsEmpty());
  EXPECT_EQ(SessionStatusOf(session).unread_result_bytes(), 0u);
}

TEST_F(SchedulerTest, SharedResultsNobodyWillReadAreReleased) {
  StartShared(/*workers=*/2);
  const SessionId session = OpenShared(1);
  SubmitRange(session, 1, 3);
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 2u);
  // One outcome written and given back, one still in the outbox, one task still running.
  scheduler_->Complete(assignments[0].worker, SharedResult(assignments[0], 1, 100));
  SessionEvents events = scheduler_->TakeEvents(session);
  google::protobuf::RepeatedPtrField<v1::TaskOutcome> written(events.outcomes.begin(),
                                                              events.outcomes.end());
  scheduler_->Retain(session, written);
  scheduler_->Complete(assignments[1].worker, SharedResult(assignments[1], 2, 100));
  assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  EXPECT_THAT(released_, IsEmpty());
  scheduler_->Abandon(session);
  EXPECT_THAT(released_, UnorderedElementsAre(SharedName(1), SharedName(2)));
  // The running task's result comes after its session was abandoned.
  scheduler_->Complete(assignments[0].worker, SharedResult(assignments[0], 3, 100));
  EXPECT_THAT(released_, UnorderedElementsAre(SharedName(1), SharedName(2), SharedName(3)));
}

TEST_F(SchedulerTest, SharedResultsCountAgainstTheUnreadBound) {
  StartShared(/*workers=*/1, /*max_unread=*/10'000);
  const SessionId session = OpenShared(1);
  SubmitRange(session, 1, 1);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  scheduler_->Complete(0, SharedResult(assignments[0], 1, 20'000));
  const SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].error().code(), Code(absl::StatusCode::kResourceExhausted));
  EXPECT_FALSE(events.outcomes[0].has_shared_result());
  EXPECT_THAT(released_, ElementsAre(SharedName(1)));
}

// --- Limits ---

TEST_F(SchedulerTest, OpeningASessionPastTheLimitIsResourceExhaustedUntilOneCloses) {
  Scheduler::Options options = FakeClockOptions(1);
  options.max_sessions = 2;
  scheduler_ = std::make_unique<Scheduler>(std::move(options));
  scheduler_->PoolReady(Functions({"echo"}));
  const SessionId first = Open("first");
  const SessionId second = Open("second");
  absl::StatusOr<SessionId> third =
      scheduler_->OpenSession("third", std::make_shared<CountingListener>());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(),
              AllOf(HasSubstr("maximum of 2 open sessions"), HasSubstr("--max_sessions")));
  // The sessions that are open are unaffected.
  SubmitRange(second, 1, 1);
  EXPECT_THAT(Dispatch(), testing::SizeIs(1));

  scheduler_->Abandon(first);
  absl::StatusOr<SessionId> after =
      scheduler_->OpenSession("after", std::make_shared<CountingListener>());
  EXPECT_TRUE(after.ok()) << after.status();
}

TEST_F(SchedulerTest, ANewSessionAtTheLimitEndsTheDetachedSessionThatWaitedLongest) {
  Scheduler::Options options = FakeClockOptions(1);
  options.resume_grace = absl::Seconds(60);
  options.max_sessions = 3;
  options.token_source = [this]() -> absl::StatusOr<std::string> {
    return absl::StrCat("token-", ++tokens_made_);
  };
  scheduler_ = std::make_unique<Scheduler>(std::move(options));
  scheduler_->PoolReady(Functions({"echo"}));
  const SessionId oldest = Open("oldest");
  const SessionId newer = Open("newer");
  const SessionId attached = Open("attached");
  // The oldest detached holds a running and a queued task.
  SubmitRange(oldest, 1, 2);
  std::vector<Assignment> running = Dispatch();
  ASSERT_EQ(running.size(), 1u);
  scheduler_->Detach(oldest);
  now_ += absl::Seconds(1);
  scheduler_->Detach(newer);

  // A new client gets in at once, in place of the session that has waited longest.
  absl::StatusOr<SessionId> first =
      scheduler_->OpenSession("first", std::make_shared<CountingListener>());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(scheduler_->ResumeToken(oldest).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Resume("token-1").status().code(), absl::StatusCode::kNotFound);
  DispatchWork work = scheduler_->AwaitWork(absl::ZeroDuration());
  EXPECT_THAT(work.assignments, IsEmpty());
  ASSERT_EQ(work.interrupts.size(), 1u);
  EXPECT_EQ(work.interrupts[0].task_key, running[0].frame.task_key());
  EXPECT_EQ(scheduler_->Status().queued_tasks(), 0u);

  // The next takes the place of the other detached one.
  absl::StatusOr<SessionId> second =
      scheduler_->OpenSession("second", std::make_shared<CountingListener>());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(Resume("token-2").status().code(), absl::StatusCode::kNotFound);

  // Every session counted has its client: now a new one is refused.
  absl::StatusOr<SessionId> refused =
      scheduler_->OpenSession("refused", std::make_shared<CountingListener>());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(),
              AllOf(HasSubstr("maximum of 3 open sessions"), HasSubstr("--max_sessions")));
  SubmitRange(attached, 1, 1);
  // The evicted session's running task ends and is forgotten with it.
  CompleteEchoed(running[0]);
  EXPECT_EQ(scheduler_->Status().sessions(), 3u);
}

TEST_F(SchedulerTest, ASessionsEnvironmentGoesWithEachOfItsTasksAndNoOthers) {
  Start(/*workers=*/2);
  google::protobuf::Map<std::string, std::string> env;
  env["X"] = "1";
  env["A"] = "two words";
  absl::StatusOr<SessionId> with_env =
      scheduler_->OpenSession("with env", std::make_shared<CountingListener>(), 0, {}, env);
  ASSERT_TRUE(with_env.ok()) << with_env.status();
  const SessionId without = Open("without");
  SubmitRange(*with_env, 1, 1);
  SubmitRange(without, 2, 2);
  const std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 2u);
  for (const Assignment& assignment : assignments) {
    if (IdOf(assignment) == 1) {
      EXPECT_THAT(assignment.frame.env(), ElementsAre("A=two words", "X=1"));
    } else {
      EXPECT_THAT(assignment.frame.env(), IsEmpty());
    }
  }
}

TEST_F(SchedulerTest, AMalformedEnvironmentIsInvalidArgument) {
  Start(/*workers=*/1);
  const auto open = [this](const std::string& name, const std::string& value) {
    google::protobuf::Map<std::string, std::string> env;
    env[name] = value;
    return scheduler_->OpenSession("bad env", std::make_shared<CountingListener>(), 0, {}, env)
        .status();
  };
  EXPECT_EQ(open("", "1").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(open("A=B", "1").message(), HasSubstr("not an environment variable name"));
  EXPECT_EQ(open(std::string("A\0B", 3), "1").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(open("A", std::string("1\0", 2)).code(), absl::StatusCode::kInvalidArgument);
  const absl::Status large = open("A", std::string(70'000, 'v'));
  EXPECT_EQ(large.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(large.message(), HasSubstr("65536 bytes"));
  EXPECT_EQ(scheduler_->Status().sessions(), 0u);
}

TEST_F(SchedulerTest, AnEnvironmentOnAPoolWithoutTaskRunnersIsFailedPrecondition) {
  Scheduler::Options options = FakeClockOptions(1);
  options.task_environments = false;
  scheduler_ = std::make_unique<Scheduler>(std::move(options));
  scheduler_->PoolReady(Functions({"echo"}));
  google::protobuf::Map<std::string, std::string> env;
  env["X"] = "1";
  const absl::Status refused =
      scheduler_->OpenSession("env", std::make_shared<CountingListener>(), 0, {}, env).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), HasSubstr("--isolation=none"));
  // Without env, sessions open as ever.
  Open("no env");
}

TEST_F(SchedulerTest, TasksPastASessionsQueueLimitAreRejectedAndAcceptedAgainAsItDrains) {
  Scheduler::Options options = FakeClockOptions(1);
  options.max_queued_tasks_per_session = 2;
  scheduler_ = std::make_unique<Scheduler>(std::move(options));
  scheduler_->PoolReady(Functions({"echo"}));
  const SessionId limited = Open("limited");
  const SessionId other = Open("other");

  const std::vector<v1::TaskRejection> rejections =
      Submit(limited, {Task(1), Task(2), Task(3), Task(4)});
  ASSERT_EQ(rejections.size(), 2u);
  for (const v1::TaskRejection& rejection : rejections) {
    EXPECT_EQ(rejection.code(), Code(absl::StatusCode::kResourceExhausted));
    EXPECT_THAT(rejection.message(), AllOf(HasSubstr("maximum of 2 queued tasks"),
                                           HasSubstr("--max_queued_tasks_per_session")));
  }
  EXPECT_EQ(rejections[0].task_id(), 3u);
  EXPECT_EQ(rejections[1].task_id(), 4u);
  // Another session has a queue of its own.
  SubmitRange(other, 1, 2);

  // A task that starts leaves room for one more.
  std::vector<Assignment> started = Dispatch();
  ASSERT_EQ(started.size(), 1u);
  EXPECT_THAT(Submit(limited, {Task(5)}), IsEmpty());
  EXPECT_THAT(Submit(limited, {Task(6)}), testing::SizeIs(1));
  const v1::PoolStatus status = scheduler_->Status();
  EXPECT_EQ(status.queued_tasks(), 4u);
  EXPECT_THAT(scheduler_->PrometheusText(),
              HasSubstr("mpigate_tasks_rejected_total{code=\"RESOURCE_EXHAUSTED\"} 3\n"));
}

// The function names of a metrics snapshot's labels.
std::vector<std::string> LabelsOf(const Scheduler::MetricsSnapshot& metrics) {
  std::vector<std::string> labels;
  for (const auto& [name, function] : metrics.tasks.functions) labels.push_back(name);
  return labels;
}

// A name a client sends becomes a label only if the pool has that function: made-up names queued
// while booting count under "other" (accepted, then failed at PoolReady), those sent after are
// refusals by code; a task of the pool's own function queued while booting counts under its name
// from PoolReady on, and one that ends before (cancelled) under "other".
TEST_F(SchedulerTest, OnlyThePoolsFunctionsBecomeMetricLabels) {
  Boot(/*workers=*/1);
  const SessionId session = Open();
  constexpr int kNames = 20'000;
  std::vector<v1::TaskSpec> early;
  for (int i = 1; i <= kNames; ++i) early.push_back(Task(i, absl::StrCat("made.up.", i)));
  early.push_back(Task(kNames + 1));
  early.push_back(Task(kNames + 2));
  EXPECT_THAT(Submit(session, std::move(early)), IsEmpty());
  ASSERT_TRUE(scheduler_->Cancel(session, {kNames + 2}).ok());
  EXPECT_THAT(LabelsOf(scheduler_->Metrics()), ElementsAre("other"));

  scheduler_->PoolReady(Functions({"echo", "fail"}));
  std::vector<v1::TaskSpec> late;
  for (int i = kNames + 3; i < 2 * kNames + 3; ++i) {
    late.push_back(Task(i, absl::StrCat("made.up.", i)));
  }
  EXPECT_EQ(Submit(session, std::move(late)).size(), kNames);
  const Scheduler::MetricsSnapshot metrics = scheduler_->Metrics();
  EXPECT_THAT(LabelsOf(metrics), ElementsAre("echo", "fail", "other"));
  const TaskMetrics::Function& echo = metrics.tasks.functions[0].second;
  const TaskMetrics::Function& other = metrics.tasks.functions[2].second;
  EXPECT_EQ(echo.accepted, 1u);
  EXPECT_EQ(echo.payload_bytes, Task(kNames + 1).payload().size());
  EXPECT_EQ(other.accepted, kNames + 1u);
  EXPECT_EQ(other.failed, static_cast<uint64_t>(kNames));
  EXPECT_EQ(other.cancelled, 1u);
  const std::string page = metrics.PrometheusText();
  EXPECT_THAT(page, HasSubstr(absl::StrCat("mpigate_tasks_rejected_total{code=\"NOT_FOUND\"} ",
                                           kNames, "\n")));
  EXPECT_LT(page.size(), 16u << 10);
}

// A scrape copies the figures under the scheduler's lock and writes the page from that copy,
// which holds nothing of the scheduler's: formatting needs neither its lock nor the scheduler.
TEST_F(SchedulerTest, MetricsAreASnapshotFormattedWithoutTheScheduler) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  SubmitRange(session, 1, 1);
  const Scheduler::MetricsSnapshot before = scheduler_->Metrics();
  for (const Assignment& assignment : Dispatch()) CompleteEchoed(assignment);
  EXPECT_THAT(scheduler_->PrometheusText(),
              HasSubstr("mpigate_tasks_ended_total{function=\"echo\",state=\"succeeded\"} 1\n"));
  scheduler_.reset();
  const std::string page = before.PrometheusText();
  EXPECT_THAT(page, HasSubstr("\nmpigate_tasks_queued 1\n"));
  EXPECT_THAT(page, HasSubstr("mpigate_tasks_accepted_total{function=\"echo\"} 1\n"));
  EXPECT_THAT(page,
              HasSubstr("mpigate_tasks_ended_total{function=\"echo\",state=\"succeeded\"} 0\n"));
  EXPECT_THAT(page, HasSubstr("mpigate_pool_state{state=\"ready\"} 1\n"));
}

// --- A session's cap on its running tasks (max_running_tasks) ---

TEST_F(SchedulerTest, ACappedSessionRunsAtMostItsCapWhileOthersTakeTheFreeWorkers) {
  Start(/*workers=*/4);
  const SessionId capped = OpenCapped(2);
  const SessionId other = Open("other");
  SubmitRange(capped, 1, 10);
  SubmitRange(other, 20, 20);

  // Turns as usual until the capped session has two out; the fourth worker stays idle.
  std::vector<Assignment> first = Dispatch();
  EXPECT_THAT(IdsOf(first), ElementsAre(1, 20, 2));
  EXPECT_EQ(scheduler_->Status().busy_workers(), 3u);
  EXPECT_EQ(SessionStatusOf(capped).max_running_tasks(), 2u);
  EXPECT_EQ(SessionStatusOf(other).max_running_tasks(), 0u);

  // A session at its cap holds nothing back: the other session's new tasks take the free worker.
  SubmitRange(other, 21, 22);
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(21));
  CompleteEchoed(first[1]);
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(22));

  // Each of its tasks that ends makes room for one more.
  CompleteEchoed(first[0]);
  std::vector<Assignment> next = Dispatch();
  EXPECT_THAT(IdsOf(next), ElementsAre(3));
  EXPECT_THAT(Dispatch(), IsEmpty());
  CompleteEchoed(first[2]);
  CompleteEchoed(next[0]);
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(4, 5));
}

TEST_F(SchedulerTest, ASessionAtItsCapDoesNotWakeTheDispatcher) {
  Start(/*workers=*/2);
  const SessionId capped = OpenCapped(1);
  SubmitRange(capped, 1, 3);
  const std::vector<Assignment> running = Dispatch();
  ASSERT_THAT(IdsOf(running), ElementsAre(1));

  // A worker is idle and tasks are queued, but none may start: no work, even after more arrive.
  SubmitRange(capped, 4, 5);
  const absl::Time before = absl::Now();
  EXPECT_THAT(scheduler_->AwaitWork(absl::Milliseconds(50)).assignments, IsEmpty());
  EXPECT_GE(absl::Now() - before, absl::Milliseconds(40)) << "AwaitWork must not spin";
  EXPECT_EQ(scheduler_->Status().queued_tasks(), 4u);

  CompleteEchoed(running[0]);
  EXPECT_THAT(IdsOf(scheduler_->AwaitWork(absl::Milliseconds(50)).assignments), ElementsAre(2));
}

TEST_F(SchedulerTest, TasksInAWorkersBacklogCountAgainstTheCap) {
  StartPrefetching(/*workers=*/1, /*max_tasks=*/4, Functions({"echo", "fail"}));
  const SessionId capped = OpenCapped(2);
  SubmitRange(capped, 1, 10);
  ASSERT_NO_FATAL_FAILURE(RunOneTaken(*scheduler_, absl::Microseconds(10)));

  // The worker could hold four short tasks; the session may have two out, prefetched or not.
  const std::vector<Assignment> taken = Dispatch();
  EXPECT_THAT(IdsOf(taken), ElementsAre(2, 3));
  EXPECT_THAT(Dispatch(), IsEmpty());

  // The room left in the backlog goes to another session.
  const SessionId other = Open("other");
  SubmitRange(other, 20, 21);
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(20, 21));

  // A task interrupted in the backlog holds its slot until the worker has dropped it.
  ASSERT_TRUE(scheduler_->Cancel(capped, {3}, /*interrupt_running=*/true).ok());
  EXPECT_THAT(scheduler_->AwaitWork(absl::ZeroDuration()).assignments, IsEmpty());
  scheduler_->Complete(0, ErrorOf(taken[1], absl::StatusCode::kCancelled, "dropped"));
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(4));
}

TEST_F(SchedulerTest, ARetriedTaskTakesItsSlotAgainAheadOfItsSessionsQueue) {
  Start(/*workers=*/3);
  const SessionId capped = OpenCapped(1);
  ASSERT_THAT(Submit(capped, {Retried(1, 1), Task(2), Task(3)}), IsEmpty());
  std::vector<Assignment> first = Dispatch();
  ASSERT_THAT(IdsOf(first), ElementsAre(1));
  scheduler_->Complete(first[0].worker, RunnerLost(first[0], "killed by signal 9"));

  // Its runner died: the slot is free, and the retry takes it, alone.
  std::vector<Assignment> again = Dispatch();
  ASSERT_THAT(IdsOf(again), ElementsAre(1));
  EXPECT_THAT(Dispatch(), IsEmpty());
  CompleteEchoed(again[0]);
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(2));
}

TEST_F(SchedulerTest, AGangCountsOneSlotPerMemberStillRunningIt) {
  Boot(/*workers=*/4);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId capped = OpenCapped(2);
  const SessionId other = Open("other");

  // A gang larger than the cap would never find room.
  const v1::TaskRejection rejection = RejectionOf(Submit(capped, {Gang(9, 3)}));
  EXPECT_EQ(rejection.code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(rejection.message(), HasSubstr("max_running_tasks"));

  ASSERT_THAT(Submit(capped, {Task(1), Gang(2, 2), Task(3)}), IsEmpty());
  SubmitRange(other, 20, 22);
  // The gang does not fit beside task 1: it waits out of turn, holding no worker back.
  std::vector<Assignment> first = Dispatch();
  EXPECT_THAT(IdsOf(first), ElementsAre(1, 20, 21, 22));

  // Task 1 ends: the gang fits under the cap, and waits for two idle workers as gangs do.
  CompleteEchoed(first[0]);
  CompleteEchoed(first[1]);
  std::vector<Assignment> gang = Dispatch();
  ASSERT_THAT(IdsOf(gang), ElementsAre(2, 2));
  EXPECT_THAT(Dispatch(), IsEmpty()) << "task 3 would be a third task out";

  // One member done frees its slot, while the other member still runs.
  CompleteEchoed(gang[1]);
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(3));
}

TEST_F(SchedulerTest, ABroadcastNeitherCountsAgainstTheCapNorWaitsForIt) {
  Start(/*workers=*/3);
  const SessionId capped = OpenCapped(1);
  ASSERT_THAT(Submit(capped, {Broadcast(1), Task(2), Task(3)}), IsEmpty());
  std::vector<Assignment> members = Dispatch();
  ASSERT_THAT(IdsOf(members), ElementsAre(1, 1, 1));

  // A member done frees a worker, which the session's next task may take: the broadcast holds
  // no slot.
  CompleteEchoed(members[0]);
  std::vector<Assignment> next = Dispatch();
  EXPECT_THAT(IdsOf(next), ElementsAre(2));
  CompleteEchoed(members[1]);
  EXPECT_THAT(Dispatch(), IsEmpty()) << "task 2 holds the one slot";
  CompleteEchoed(next[0]);
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(3));
}

TEST_F(SchedulerTest, CancellingQueuedTasksOfASessionAtItsCapLeavesNothingToDispatch) {
  Start(/*workers=*/2);
  const SessionId capped = OpenCapped(1);
  SubmitRange(capped, 1, 3);
  std::vector<Assignment> running = Dispatch();
  ASSERT_THAT(IdsOf(running), ElementsAre(1));
  const std::vector<v1::CancelResult> results = Cancel(capped, {2, 3});
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results[0].cancelled());
  EXPECT_TRUE(results[1].cancelled());
  CompleteEchoed(running[0]);
  EXPECT_THAT(Dispatch(), IsEmpty());
  // Its slot is free again for what comes next.
  SubmitRange(capped, 4, 5);
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(4));
}

// --- Lost workers ---

TEST_F(SchedulerTest, ALostWorkersTasksRunAgainIfTheirRetriesAllowElseFailAborted) {
  StartPrefetching(/*workers=*/2, /*max_tasks=*/4, Functions({"echo"}));
  const SessionId first = Open("first");
  const SessionId second = Open("second");
  ASSERT_THAT(Submit(first, {Retried(1, 1), Task(2)}), IsEmpty());
  ASSERT_THAT(Submit(second, {Retried(3, 2), Task(4)}), IsEmpty());
  // Each worker learns that tasks are short, then gets a backlog.
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 2u);
  for (const Assignment& assignment : assignments) CompleteEchoed(assignment);
  scheduler_->TakeEvents(first);
  scheduler_->TakeEvents(second);
  ASSERT_THAT(Submit(first, {Retried(5, 1), Task(6)}), IsEmpty());
  ASSERT_THAT(Submit(second, {Task(7)}), IsEmpty());
  assignments = Dispatch();
  std::vector<uint64_t> on_zero;
  for (const Assignment& assignment : assignments) {
    if (assignment.worker == 0) on_zero.push_back(IdOf(assignment));
  }
  ASSERT_GE(on_zero.size(), 2u) << "worker 0 holds a running task and a backlog";

  EXPECT_THAT(scheduler_->WorkerLost(0, "worker 0 on vm (pid 7) was lost: killed by signal 9"),
              IsEmpty());
  EXPECT_EQ(scheduler_->Status().workers_down(), 1u);
  // The task worker 0 ran ended once: queued again if it had a retry left, else failed ABORTED
  // with the worker's words; those in its backlog never started and are queued again.
  std::vector<uint64_t> failed;
  for (const SessionId session : {first, second}) {
    for (const v1::TaskOutcome& outcome : scheduler_->TakeEvents(session).outcomes) {
      EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
      EXPECT_EQ(outcome.error().code(), Code(absl::StatusCode::kAborted));
      EXPECT_THAT(outcome.error().message(), HasSubstr("was lost: killed by signal 9"));
      failed.push_back(outcome.task_id());
    }
  }
  std::vector<uint64_t> expected_failed;
  if (on_zero[0] != 5) expected_failed.push_back(on_zero[0]);
  EXPECT_THAT(failed, ::testing::UnorderedElementsAreArray(expected_failed));
  // Nothing goes to the lost worker: the others it held run on worker 1 once it has room.
  std::vector<uint64_t> ran_again;
  for (int round = 0; round < 10; ++round) {
    for (const Assignment& assignment : Dispatch()) {
      EXPECT_EQ(assignment.worker, 1) << IdOf(assignment);
      ran_again.push_back(IdOf(assignment));
      CompleteEchoed(assignment);
    }
  }
  for (const uint64_t id : on_zero) {
    if (id != on_zero[0] || id == 5) {
      EXPECT_THAT(ran_again, Contains(id));
    }
  }
}

TEST_F(SchedulerTest, TasksInALostWorkersBacklogRunAgainWithoutUsingAnAttempt) {
  StartPrefetching(/*workers=*/2, /*max_tasks=*/4, Functions({"echo"}));
  const SessionId session = Open();
  ASSERT_THAT(Submit(session, {Task(1)}), IsEmpty());
  // Worker 0 learns that tasks are short, then takes a running task and a backlog: tasks 2, 3, 4
  // (none may be retried), while worker 1 is out of service.
  std::vector<Assignment> assignments = Dispatch();
  ASSERT_EQ(assignments.size(), 1u);
  const int worker = assignments[0].worker;
  const int other = 1 - worker;
  CompleteEchoed(assignments[0]);
  scheduler_->TakeEvents(session);
  ASSERT_TRUE(scheduler_->TakeIdleWorker(other));
  ASSERT_THAT(Submit(session, {Task(2), Task(3), Task(4)}), IsEmpty());
  assignments = Dispatch();
  ASSERT_THAT(IdsOf(assignments), ElementsAre(2, 3, 4));

  scheduler_->WorkerLost(worker, "worker on vm (pid 7) was lost: killed by signal 9");
  // The running one failed; the two behind it never started.
  SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].task_id(), 2u);
  EXPECT_EQ(events.outcomes[0].error().code(), Code(absl::StatusCode::kAborted));
  EXPECT_EQ(events.outcomes[0].attempts(), 1u);

  // On the other worker they run, in their order, with their frames, on their first attempt.
  scheduler_->WorkerUp(other, /*job=*/0);
  std::vector<uint64_t> ran;
  for (int round = 0; round < 10; ++round) {
    for (const Assignment& assignment : Dispatch()) {
      EXPECT_EQ(assignment.worker, other);
      EXPECT_EQ(assignment.frame.function(), "echo");
      ran.push_back(IdOf(assignment));
      CompleteEchoed(assignment);
    }
  }
  EXPECT_THAT(ran, ElementsAre(3, 4));
  events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 2u);
  for (const v1::TaskOutcome& outcome : events.outcomes) {
    EXPECT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED) << outcome.task_id();
    EXPECT_EQ(outcome.attempts(), 1u) << outcome.task_id();
  }
}

TEST_F(SchedulerTest, AWorkerLostTwiceEndsItsTasksOnce) {
  Start(/*workers=*/2);
  const SessionId session = Open();
  SubmitRange(session, 1, 2);
  ASSERT_EQ(Dispatch().size(), 2u);
  scheduler_->WorkerLost(1, "lost");
  scheduler_->WorkerLost(1, "lost again");
  EXPECT_EQ(scheduler_->TakeEvents(session).outcomes.size(), 1u);
  EXPECT_EQ(scheduler_->Status().workers_down(), 1u);
  EXPECT_THAT(scheduler_->PrometheusText(), HasSubstr("mpigate_workers_lost_total 1\n"));
}

TEST_F(SchedulerTest, ALostWorkerAndWhyThePoolIsDegradedAreSeenTogether) {
  Start(/*workers=*/2);
  // The reason comes with the loss: no status in between shows the worker down and no reason.
  scheduler_->WorkerLost(1, "worker 1 was lost", "1 of 2 workers out of service; worker 1 lost");
  v1::PoolStatus status = scheduler_->Status();
  EXPECT_EQ(status.workers_down(), 1u);
  EXPECT_EQ(status.degraded_reason(), "1 of 2 workers out of service; worker 1 lost");
  // Without one, the reason stays what it was.
  scheduler_->WorkerLost(0, "worker 0 was lost");
  status = scheduler_->Status();
  EXPECT_EQ(status.workers_down(), 2u);
  EXPECT_EQ(status.degraded_reason(), "1 of 2 workers out of service; worker 1 lost");
}

TEST_F(SchedulerTest, AReplacedWorkerServesAgainAndTheLateResultsOfItsPredecessorAreIgnored) {
  Start(/*workers=*/1);
  const SessionId session = Open();
  SubmitRange(session, 1, 2);
  const std::vector<Assignment> first = Dispatch();
  ASSERT_EQ(first.size(), 1u);
  scheduler_->WorkerLost(0, "lost");
  ASSERT_EQ(scheduler_->TakeEvents(session).outcomes.size(), 1u);
  EXPECT_THAT(Dispatch(), IsEmpty()) << "no worker in service";
  // A result the dead process sent before it died, handed over after the loss.
  CompleteEchoed(first[0]);
  EXPECT_THAT(scheduler_->TakeEvents(session).outcomes, IsEmpty());

  scheduler_->WorkerUp(0, /*job=*/1);
  EXPECT_EQ(scheduler_->Status().workers_down(), 0u);
  const std::vector<Assignment> second = Dispatch();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(IdOf(second[0]), 2u);
  CompleteEchoed(second[0]);
  const SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_SUCCEEDED);
}

TEST_F(SchedulerTest, AGangThatLosesAMemberFailsWithThatLossAndItsOtherMembersAreReleased) {
  Boot(/*workers=*/3);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId session = Open();
  EXPECT_THAT(Submit(session, {Gang(1, 3)}), IsEmpty());
  const std::vector<Assignment> gang = Dispatch();
  ASSERT_EQ(gang.size(), 3u);
  Listener(session).TakeCalls();
  scheduler_->TakeEvents(session);

  EXPECT_THAT(scheduler_->WorkerLost(1, "worker 1 was lost: killed by signal 11"),
              UnorderedElementsAre(0, 2));
  // The others are interrupted; until they report (or are lost too) the gang has not ended.
  DispatchWork work = scheduler_->AwaitWork(absl::ZeroDuration());
  std::vector<int> interrupted;
  for (const Interrupt& interrupt : work.interrupts) interrupted.push_back(interrupt.worker);
  EXPECT_THAT(interrupted, UnorderedElementsAre(0, 2));
  EXPECT_THAT(scheduler_->TakeEvents(session).outcomes, IsEmpty());
  // Rank 2 gives up when interrupted; rank 0's worker is killed and lost in turn, which is not
  // what the gang's outcome tells, though it is the lower rank.
  wire::ResultFrame cancelled = ResultOf(gang[2], "");
  cancelled.clear_result();
  cancelled.mutable_error()->set_code(Code(absl::StatusCode::kCancelled));
  cancelled.mutable_error()->set_message("gang interrupted");
  scheduler_->Complete(2, cancelled);
  EXPECT_THAT(scheduler_->WorkerLost(0, "worker 0 was killed: its gang lost a member"), IsEmpty());
  const SessionEvents events = scheduler_->TakeEvents(session);
  ASSERT_EQ(events.outcomes.size(), 1u);
  EXPECT_EQ(events.outcomes[0].state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(events.outcomes[0].error().code(), Code(absl::StatusCode::kAborted));
  EXPECT_THAT(events.outcomes[0].error().message(),
              AllOf(HasSubstr("gang rank 1 (worker 1)"), HasSubstr("killed by signal 11")));
  EXPECT_EQ(scheduler_->Status().busy_workers(), 0u);
  EXPECT_EQ(scheduler_->Status().workers_down(), 2u);
}

TEST_F(SchedulerTest, AGangWaitsForLostWorkersToBeReplaced) {
  Boot(/*workers=*/2);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId session = Open();
  scheduler_->WorkerLost(1, "lost");
  EXPECT_THAT(Submit(session, {Gang(1, 2)}), IsEmpty());
  EXPECT_THAT(Dispatch(), IsEmpty());
  scheduler_->WorkerUp(1, /*job=*/0);
  EXPECT_EQ(Dispatch().size(), 2u);
}

// While lost workers are replaced, the survivors' processes and the replacements' are of two MPI
// jobs, and a gang's members make their communicator in one job's world.
TEST_F(SchedulerTest, AGangWaitsUntilItsWorkersAreOfOneJobWhileOthersAreReplaced) {
  Boot(/*workers=*/2);
  scheduler_->PoolReady(WithGangFunction());
  const SessionId session = Open();
  scheduler_->WorkerLost(1, "lost");
  scheduler_->WorkerUp(1, /*job=*/1);
  EXPECT_THAT(Submit(session, {Gang(1, 2)}), IsEmpty());
  // Both workers idle, of different jobs: the gang waits, and its wait is no work for the
  // transport's loop, which sleeps (a loop that spun would never be seen asleep) until the
  // survivor, idle, moves onto the new job.
  EXPECT_EQ(scheduler_->Status().busy_workers(), 0u);
  EXPECT_THAT(Dispatch(), IsEmpty());
  std::atomic<pid_t> transport_tid{0};
  std::vector<Assignment> gang;
  std::thread transport([this, &transport_tid, &gang] {
    transport_tid = static_cast<pid_t>(syscall(SYS_gettid));
    while (gang.empty()) gang = scheduler_->AwaitWork(absl::InfiniteDuration()).assignments;
  });
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while ((transport_tid == 0 || !Sleeping(transport_tid)) && absl::Now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_TRUE(Sleeping(transport_tid)) << "the transport's loop never slept";
  EXPECT_TRUE(scheduler_->TakeIdleWorker(0));
  scheduler_->WorkerUp(0, /*job=*/1);
  transport.join();
  ASSERT_EQ(gang.size(), 2u);
  EXPECT_THAT(gang[0].frame.gang(), ElementsAre(0, 1));
  EXPECT_THAT(scheduler_->TakeEvents(session).outcomes, IsEmpty()) << "nothing failed meanwhile";
}

TEST_F(SchedulerTest, OnlyAnIdleWorkerIsTakenOutOfServiceForReplacement) {
  Start(/*workers=*/2);
  const SessionId session = Open();
  SubmitRange(session, 1, 1);
  const std::vector<Assignment> running = Dispatch();
  ASSERT_EQ(running.size(), 1u);
  EXPECT_FALSE(scheduler_->TakeIdleWorker(running[0].worker));
  const int idle = 1 - running[0].worker;
  EXPECT_TRUE(scheduler_->TakeIdleWorker(idle));
  EXPECT_FALSE(scheduler_->TakeIdleWorker(idle));
  SubmitRange(session, 2, 2);
  EXPECT_THAT(Dispatch(), IsEmpty());
  scheduler_->WorkerUp(idle, /*job=*/1);
  EXPECT_THAT(IdsOf(Dispatch()), ElementsAre(2));
  EXPECT_THAT(scheduler_->TakeEvents(session).outcomes, IsEmpty()) << "no task was affected";
}

TEST_F(SchedulerTest, WakeDispatchEndsTheWaitOnce) {
  Start(/*workers=*/1);
  std::thread waker([this] { scheduler_->WakeDispatch(); });
  const DispatchWork work = scheduler_->AwaitWork(absl::InfiniteDuration());
  waker.join();
  EXPECT_THAT(work.assignments, IsEmpty());
  EXPECT_FALSE(work.stopping);
}

TEST_F(SchedulerTest, StatusAndMetricsSayWhyThePoolIsDegraded) {
  Start(/*workers=*/2);
  scheduler_->WorkerLost(0, "lost");
  scheduler_->SetDegraded("worker 0 on vm (pid 7) was lost: killed by signal 9; replacing it");
  const v1::PoolStatus status = scheduler_->Status();
  EXPECT_EQ(status.workers_down(), 1u);
  EXPECT_THAT(status.degraded_reason(), HasSubstr("replacing it"));
  EXPECT_EQ(status.state(), v1::POOL_STATE_READY) << "it serves on with the others";
  EXPECT_THAT(scheduler_->PrometheusText(), HasSubstr("mpigate_workers_down 1\n"));
  scheduler_->WorkerUp(0, /*job=*/1);
  scheduler_->SetDegraded("");
  EXPECT_EQ(scheduler_->Status().workers_down(), 0u);
  EXPECT_THAT(scheduler_->Status().degraded_reason(), IsEmpty());
}

}  // namespace
}  // namespace mpigate::server
