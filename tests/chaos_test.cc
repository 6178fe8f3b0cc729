// The chaos test: 10,000 tasks from several clients while task runner processes and worker
// processes are killed at random, a client process is killed and resumes its session, and some
// tasks crash on purpose. Every task must end exactly once with its result or a clear error, the
// pool must be whole again at the end, and no process may be left.
#include <dirent.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "tests/process_info.h"
#include "tests/resume_client_process.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::testing::HasSubstr;

constexpr int kClients = 3;
constexpr int kTasksPerClient = 2500;
// Tasks of the client process that is killed midway, and how many results it reads first.
constexpr int kKilledClientTasks = 2500;
constexpr size_t kKilledClientReads = 300;
// One task in this many crashes its runner on purpose (a segfault).
constexpr int kCrashEvery = 97;
// Task runners and worker processes killed from outside while the load runs: every
// kWorkerKillEvery-th kill takes a worker process (with its runner and its backlog of tasks).
constexpr int kRunnerKills = 20;
constexpr int kWorkerKills = 4;
constexpr int kWorkerKillEvery = 6;

struct Submitted {
  Future future;
  // The echo's payload, or empty for a task that crashes on purpose.
  std::string payload;
};

TEST(ChaosTest, EveryTaskEndsExactlyOnceWhileRunnersWorkersAndAClientAreKilled) {
  testing::ServerProcess server;
  ASSERT_TRUE(server
                  .Start({.workers = 2,
                          // The killed client's session is resumed only after the whole load,
                          // which takes minutes in a sanitizer build.
                          .flags = {absl::StrCat("--task_lib=",
                                                 testing::RunfilePath(
                                                     "tests/testdata/libsample_tasks.so")),
                                    "--resume_grace_s=600"}})
                  .ok());

  std::vector<std::unique_ptr<Executor>> clients;
  for (int c = 0; c < kClients; ++c) {
    absl::StatusOr<std::unique_ptr<Executor>> executor = Executor::Connect(
        {.endpoint = server.target(), .client_name = absl::StrCat("chaos ", c)});
    ASSERT_TRUE(executor.ok()) << executor.status();
    clients.push_back(*std::move(executor));
  }

  // One kill that certainly hits a running task: its runner dies under it, and it runs again. Its
  // first progress report shows it is running in its runner (not just dispatched).
  SubmitOptions once_more;
  once_more.max_retries = 1;
  Future victim = clients[0]->Submit("sleep", "500", once_more);
  absl::Notification victim_running;
  victim.AddProgressCallback([&](const Future&, const TaskProgress&) {
    if (!victim_running.HasBeenNotified()) victim_running.Notify();
  });
  victim_running.WaitForNotification();
  for (const pid_t runner : testing::DescendantsNamed(server.pid(), "mpigate-runner"))
    kill(runner, SIGKILL);
  EXPECT_TRUE(victim.Result().ok()) << victim.Result().status();
  EXPECT_EQ(victim.attempts(), 2u);

  // Submitted from several threads at once, each client on its own.
  std::atomic<int> done{0};
  std::vector<std::vector<Submitted>> submitted(kClients);
  std::vector<std::thread> submitters;
  for (int c = 0; c < kClients; ++c) {
    submitters.emplace_back([&, c] {
      SubmitOptions retried;
      retried.max_retries = 3;
      SubmitOptions crash;
      crash.max_retries = 1;
      for (int i = 0; i < kTasksPerClient; ++i) {
        if (i % kCrashEvery == kCrashEvery - 1) {
          submitted[c].push_back({clients[c]->Submit("sample.crash", "segv", crash), ""});
        } else {
          std::string payload = absl::StrCat("client ", c, " task ", i);
          Future future = clients[c]->Submit("echo", payload, retried);
          submitted[c].push_back({std::move(future), std::move(payload)});
        }
        submitted[c].back().future.AddDoneCallback([&](const Future&) { done.fetch_add(1); });
      }
    });
  }

  // Meanwhile a client process reads some of its results and is killed.
  absl::StatusOr<testing::KilledClient> killed;
  std::thread killed_client([&] {
    killed = testing::RunAndKillResumeClient(server.target(), kKilledClientTasks,
                                             kKilledClientReads);
  });

  // Kill runners and workers at random moments spread over the load (the i-th once
  // i/(kills + 1) of the tasks are done); the seed makes the choices repeatable.
  constexpr int kTotal = kClients * kTasksPerClient;
  constexpr int kKills = kRunnerKills + kWorkerKills;
  std::mt19937 random(20261121);
  std::set<pid_t> runners_seen;
  std::set<pid_t> workers_seen;
  int kills = 0;
  int worker_kills = 0;
  while (kills < kKills && done.load() < kTotal) {
    absl::SleepFor(absl::Microseconds(std::uniform_int_distribution<int>(500, 5000)(random)));
    if (done.load() < (kills + 1) * kTotal / (kKills + 1)) continue;
    std::vector<pid_t> runners = testing::DescendantsNamed(server.pid(), "mpigate-runner");
    std::vector<pid_t> workers = testing::DescendantsNamed(server.pid(), "mpigate-worker");
    runners_seen.insert(runners.begin(), runners.end());
    workers_seen.insert(workers.begin(), workers.end());
    const bool worker_kill = kills % kWorkerKillEvery == kWorkerKillEvery - 1;
    const std::vector<pid_t>& candidates = worker_kill ? workers : runners;
    if (candidates.empty()) continue;
    const pid_t victim =
        candidates[std::uniform_int_distribution<size_t>(0, candidates.size() - 1)(random)];
    if (kill(victim, SIGKILL) != 0) continue;
    ++kills;
    if (worker_kill) ++worker_kills;
  }
  for (std::thread& submitter : submitters) submitter.join();
  killed_client.join();
  ASSERT_TRUE(killed.ok()) << killed.status();
  EXPECT_EQ(killed->duplicates, 0);
  ASSERT_GE(killed->recorded.size(), kKilledClientReads);

  // A new client resumes the killed one's session and collects everything it had not read.
  ExecutorOptions resume{.endpoint = server.target(), .client_name = "resumed"};
  resume.resume_token = killed->token;
  for (const auto& [id, result] : killed->recorded) resume.acked_task_ids.push_back(id);
  absl::StatusOr<std::unique_ptr<Executor>> resumed = Executor::Connect(resume);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  std::set<uint64_t> killed_client_tasks;
  int resumed_succeeded = 0;
  // Its echoes have no retries: a runner or worker kill may fail one, with a clear error.
  const auto expect_result_or_killed = [](uint64_t id, const absl::StatusOr<std::string>& result) {
    if (result.ok()) {
      EXPECT_EQ(*result, testing::ResumeClientResult(id)) << "task " << id;
    } else {
      EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted) << result.status();
      EXPECT_THAT(std::string(result.status().message()),
                  ::testing::AnyOf(HasSubstr("signal 9"), HasSubstr("was lost")))
          << "task " << id;
    }
  };
  for (const auto& [id, result] : killed->recorded) {
    // resume_client records an error as absl::Status::ToString() does.
    if (absl::StartsWith(result, "ABORTED: ")) {
      expect_result_or_killed(id, absl::AbortedError(result.substr(9)));
    } else {
      expect_result_or_killed(id, result);
    }
    killed_client_tasks.insert(id);
  }
  for (const Future& future : (*resumed)->Reattached()) {
    EXPECT_TRUE(killed_client_tasks.insert(future.task_id()).second)
        << "task " << future.task_id() << " was read before the kill and delivered again";
    absl::StatusOr<std::string> result = future.Result();
    expect_result_or_killed(future.task_id(), result);
    if (result.ok()) ++resumed_succeeded;
  }
  // Every task of the killed client, exactly once: read by it, or by its successor.
  EXPECT_EQ(killed_client_tasks.size(), static_cast<size_t>(kKilledClientTasks));
  EXPECT_EQ(*killed_client_tasks.begin(), 1u);
  EXPECT_EQ(*killed_client_tasks.rbegin(), static_cast<uint64_t>(kKilledClientTasks));

  int succeeded = 0;
  int crashed = 0;
  for (int c = 0; c < kClients; ++c) {
    for (const Submitted& task : submitted[c]) {
      ASSERT_TRUE(task.future.Wait());
      absl::StatusOr<std::string> result = task.future.Result();
      if (task.payload.empty()) {
        // Crashes on purpose, on both of its attempts.
        ++crashed;
        ASSERT_FALSE(result.ok());
        EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted) << result.status();
        EXPECT_THAT(result.status().message(), HasSubstr("failed on all 2 attempts"));
        EXPECT_THAT(result.status().message(), HasSubstr("SIG"));
        continue;
      }
      // Each echo is retried up to three times; the kills are far apart, so it gets through.
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_EQ(*result, task.payload);
      ++succeeded;
    }
  }
  EXPECT_EQ(succeeded + crashed, kTotal);
  EXPECT_EQ(kills, kKills) << "the load ended before every kill was made";
  EXPECT_EQ(worker_kills, kWorkerKills);
  // The pool replaced every worker it lost.
  const absl::Status whole =
      testing::AwaitPoolStatus(server.target(), [](const v1::PoolStatus& pool) {
        return pool.workers_down() == 0 && pool.degraded_reason().empty();
      });
  EXPECT_TRUE(whole.ok()) << whole;

  // The service's own count: each task ended once there too (a duplicate outcome would be dropped
  // by the client unseen, but counted here).
  auto stub = v1::Gateway::NewStub(
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::PoolStatus status;
  ASSERT_TRUE(stub->GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status).ok());
  const uint64_t resumed_failed = (*resumed)->Reattached().size() - resumed_succeeded;
  const uint64_t killed_read = killed->recorded.size();
  EXPECT_EQ(status.tasks_succeeded() + status.tasks_failed(),
            static_cast<uint64_t>(1 + kTotal + kKilledClientTasks));
  EXPECT_GE(status.tasks_succeeded(), static_cast<uint64_t>(1 + succeeded + resumed_succeeded));
  EXPECT_LE(status.tasks_failed(), static_cast<uint64_t>(crashed) + resumed_failed + killed_read);
  EXPECT_EQ(status.tasks_cancelled(), 0u);

  clients.clear();
  resumed->reset();
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
  for (const pid_t runner : runners_seen) {
    EXPECT_NE(testing::ProcessName(runner), "mpigate-runner")
        << "task runner " << runner << " outlived the service";
  }
  for (const pid_t worker : workers_seen) {
    EXPECT_NE(testing::ProcessName(worker), "mpigate-worker")
        << "worker " << worker << " outlived the service";
  }
}

}  // namespace
}  // namespace mpigate
