// Payloads and results in shared memory, end to end: real mpigate-servers and their MPI workers on
// this host, the C++ client, and raw streams that speak the protocol (proto/mpigate/v1 SharedBytes)
// as a client in another language would. Where workers do not share the gateway's shared memory
// (here: started with MPIGATE_SHARED_MEMORY=off, as on another host), the gateway carries the
// bytes itself. Objects are recycled without mixing up anyone's bytes, and no object outlives
// the service.
#include <dirent.h>
#include <sys/stat.h>
#include <grpcpp/grpcpp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/executor.h"
#include "common/shared_memory.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "tests/raw_session.h"
#include "tests/server_process.h"
#include "tests/shared_server.h"

namespace mpigate {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

constexpr absl::Duration kPatience = absl::Minutes(2);

// Bytes that differ from position to position, so that a misplaced or truncated copy shows.
std::string Pattern(size_t size, int seed) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>((i * 131 + seed) % 251);
  return bytes;
}

// The objects in /dev/shm whose names start with `prefix`.
std::vector<std::string> ObjectsWithPrefix(const std::string& prefix) {
  std::vector<std::string> names;
  DIR* directory = opendir("/dev/shm");
  if (directory == nullptr) return names;
  while (const dirent* entry = readdir(directory)) {
    if (absl::StartsWith(entry->d_name, prefix)) names.push_back(entry->d_name);
  }
  closedir(directory);
  return names;
}

std::unique_ptr<v1::Gateway::Stub> StubOf(const testing::ServerProcess& server) {
  return v1::Gateway::NewStub(
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
}

// An `open` that asks for shared memory, with results of at least `result_min_bytes` in it.
v1::OpenSession SharedOpen(uint64_t result_min_bytes) {
  v1::OpenSession open;
  open.set_client_name("shared raw");
  open.set_shared_memory_domain(SharedMemoryDomain());
  open.set_shared_result_min_bytes(result_min_bytes);
  return open;
}

// The prefix of `server`'s objects, as a session that may use shared memory is told it: it holds
// a secret no one can derive from the server's pid.
std::string PrefixOf(const testing::ServerProcess& server) {
  testing::RawSession session(*StubOf(server), SharedOpen(/*result_min_bytes=*/0), kPatience);
  return session.opened().shared_memory_prefix();
}

// The start of every object name of the gateway with pid `pid`, whatever its secret: a prefix of
// that pid without its last 33 characters (the secret's 32 digits and a dash).
std::string AnyPrefixOf(pid_t pid) {
  const std::string prefix = NewSharedObjectPrefix(pid).value();
  return prefix.substr(0, prefix.size() - 33);
}

// Submits echo of `input`, handed over in a new shared memory object with `prefix`; returns the
// object's name.
std::string SubmitShared(testing::RawSession& session, uint64_t id, const std::string& prefix,
                         const std::string& input) {
  absl::StatusOr<std::string> name = CreateSharedObject(prefix, input);
  EXPECT_TRUE(name.ok()) << name.status();
  if (!name.ok()) return "";
  v1::SessionRequest request;
  v1::TaskSpec& task = *request.mutable_submit()->add_tasks();
  task.set_task_id(id);
  task.set_function("echo");
  task.mutable_shared_payload()->set_name(*name);
  task.mutable_shared_payload()->set_size(input.size());
  session.Send(request);
  return *name;
}

// The suite's server refuses messages over 4 MiB, which payloads in shared memory do not meet.
// It starts after a gateway that was killed left an object behind, which it must remove.
class SharedPayloadTest : public testing::SharedServerTest<SharedPayloadTest> {
 public:
  static testing::ServerOptions SharedServerOptions() {
    return {.workers = 2, .flags = {"--max-message-mb=4"}};
  }
  static constexpr char kClientName[] = "shared_payload_test";

  static void SetUpTestSuite() {
    const pid_t dead = fork();
    if (dead == 0) _exit(0);
    ASSERT_GT(dead, 0);
    ASSERT_EQ(waitpid(dead, nullptr, 0), dead);
    absl::StatusOr<std::string> orphan =
        CreateSharedObject(NewSharedObjectPrefix(dead).value(), "left");
    ASSERT_TRUE(orphan.ok());
    orphan_ = new std::string(*orphan);
    SharedServerTest::SetUpTestSuite();
  }

  static void TearDownTestSuite() {
    const std::string prefix = AnyPrefixOf(server_->pid());
    SharedServerTest::TearDownTestSuite();
    EXPECT_THAT(ObjectsWithPrefix(prefix), IsEmpty());
    delete orphan_;
  }

 protected:
  static std::string Prefix() {
    static const std::string* const prefix = new std::string(PrefixOf(*server_));
    return *prefix;
  }
  static std::unique_ptr<v1::Gateway::Stub> Stub() { return StubOf(*server_); }

  static inline std::string* orphan_ = nullptr;
};

// Stops the server, which must exit 0 and leave none of its objects behind.
void StopCleanly(testing::ServerProcess& server) {
  const std::string prefix = AnyPrefixOf(server.pid());
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
  EXPECT_THAT(ObjectsWithPrefix(prefix), IsEmpty());
}

TEST_F(SharedPayloadTest, LargePayloadsAndResultsTravelInSharedMemoryAndComeBackWhole) {
  // The orphan was removed when the server started.
  EXPECT_THAT(ObjectsWithPrefix(*orphan_), IsEmpty());
  {
    absl::StatusOr<std::unique_ptr<Executor>> executor =
        Executor::Connect({.endpoint = server_->target(), .client_name = "shared"});
    ASSERT_TRUE(executor.ok()) << executor.status();
    std::vector<std::string> inputs = {Pattern(100, 1), Pattern(64 << 10, 2), Pattern(1 << 20, 3),
                                       Pattern(16 << 20, 4)};
    std::vector<Future> futures;
    for (const std::string& input : inputs) futures.push_back((*executor)->Submit("echo", input));
    for (size_t i = 0; i < inputs.size(); ++i) {
      absl::StatusOr<std::string> result = futures[i].Result(kPatience);
      ASSERT_TRUE(result.ok()) << "input " << i << ": " << result.status();
      EXPECT_TRUE(*result == inputs[i]) << "input " << i << " came back altered";
    }
    // In a range map too, whose every item gets the batch's payload.
    int items = 0;
    for (absl::StatusOr<std::string> echoed :
         (*executor)->MapRange("echo", Pattern(200 << 10, 5), {.count = 3, .batch_size = 2})) {
      ASSERT_TRUE(echoed.ok()) << echoed.status();
      EXPECT_TRUE(*echoed == Pattern(200 << 10, 5));
      ++items;
    }
    EXPECT_EQ(items, 3);
    (*executor)->Shutdown();
  }
}

TEST_F(SharedPayloadTest, TheProtocolHandsObjectsOverAndTheReaderRemovesResults) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  const std::string prefix = Prefix();
  {
    testing::RawSession session(*stub, SharedOpen(/*result_min_bytes=*/1000), kPatience);
    ASSERT_EQ(session.opened().shared_memory_prefix(), prefix);
    const std::string big = Pattern(300 << 10, 6);
    SubmitShared(session, 1, prefix, big);
    session.Submit(2, "echo", "small");
    session.Submit(3, "echo", Pattern(5000, 7));
    ASSERT_TRUE(session.AwaitOutcomes(3));

    const v1::TaskOutcome& first = session.outcomes().at(1);
    ASSERT_EQ(first.state(), v1::TASK_STATE_SUCCEEDED) << first.DebugString();
    EXPECT_EQ(first.result(), "");
    ASSERT_TRUE(first.has_shared_result());
    EXPECT_TRUE(IsSharedObjectName(first.shared_result().name(), prefix));
    EXPECT_EQ(first.shared_result().size(), big.size());
    absl::StatusOr<std::string> read =
        ReadSharedObject(first.shared_result().name(), first.shared_result().size());
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_TRUE(*read == big);
    // Below the session's threshold: in the message.
    EXPECT_EQ(session.outcomes().at(2).result(), "small");
    EXPECT_FALSE(session.outcomes().at(2).has_shared_result());
    // Above it, from an input in the message: in shared memory.
    const v1::TaskOutcome& third = session.outcomes().at(3);
    ASSERT_TRUE(third.has_shared_result());
    EXPECT_TRUE(ReadSharedObject(third.shared_result().name(), 5000).value_or("") ==
                Pattern(5000, 7));
    // The reader removes what it read; the service removed the input when its task ended.
    UnlinkSharedObject(first.shared_result().name());
    UnlinkSharedObject(third.shared_result().name());
  }
}

TEST_F(SharedPayloadTest, ObjectsAreRecycledAndEveryTaskStillGetsItsOwnBytes) {
  absl::StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Connect({.endpoint = server_->target(), .client_name = "recycling"});
  ASSERT_TRUE(executor.ok()) << executor.status();
  // Rounds of echoes in flight together, each input and result a recycled object as soon as
  // there are parked ones: none may see another's bytes.
  for (int round = 0; round < 10; ++round) {
    std::vector<std::string> inputs;
    std::vector<Future> futures;
    for (int i = 0; i < 8; ++i) {
      inputs.push_back(Pattern((1 << 20) - i * 4096, round * 8 + i));
      futures.push_back((*executor)->Submit("echo", inputs.back()));
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      absl::StatusOr<std::string> result = futures[i].Result(kPatience);
      ASSERT_TRUE(result.ok()) << "round " << round << ", input " << i << ": " << result.status();
      EXPECT_TRUE(*result == inputs[i]) << "round " << round << ", input " << i << " altered";
    }
  }
  (*executor)->Shutdown();
}

TEST_F(SharedPayloadTest, ATaskRunnerWritesItsResultIntoAParkedObject) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  const std::string prefix = Prefix();
  // Fill the parking of the class no other test uses, 2 to 4 MiB, with objects of ours.
  std::vector<ino_t> parked;
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::string> name = CreateSharedObject(prefix, Pattern(3 << 20, i));
    ASSERT_TRUE(name.ok()) << name.status();
    struct stat st;
    ASSERT_EQ(stat(absl::StrCat("/dev/shm/", *name).c_str(), &st), 0);
    parked.push_back(st.st_ino);
    ReleaseSharedObject(*name);
  }
  testing::RawSession session(*stub, SharedOpen(/*result_min_bytes=*/1000), kPatience);
  const std::string input = Pattern(2500 << 10, 9);
  session.Submit(1, "echo", input);
  ASSERT_TRUE(session.AwaitOutcomes(1));
  const v1::TaskOutcome& outcome = session.outcomes().at(1);
  ASSERT_TRUE(outcome.has_shared_result()) << outcome.DebugString();
  const std::string result_path = absl::StrCat("/dev/shm/", outcome.shared_result().name());
  struct stat st;
  ASSERT_EQ(stat(result_path.c_str(), &st), 0);
  EXPECT_THAT(parked, Contains(st.st_ino));
  EXPECT_EQ(static_cast<size_t>(st.st_size), input.size());
  EXPECT_TRUE(ReadSharedObject(outcome.shared_result().name(), input.size()).value_or("") ==
              input);
  ReleaseSharedObject(outcome.shared_result().name());
}

TEST_F(SharedPayloadTest, ASessionFromElsewhereGetsEverythingInItsMessages) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  const std::string prefix = Prefix();
  std::string refused;
  {
    v1::OpenSession elsewhere = SharedOpen(1);
    elsewhere.set_shared_memory_domain("another host/1:2/3");
    testing::RawSession session(*stub, elsewhere, kPatience);
    EXPECT_EQ(session.opened().shared_memory_prefix(), "");
    session.Submit(1, "echo", Pattern(200 << 10, 8));
    refused = SubmitShared(session, 2, prefix, "not allowed here");
    const v1::SessionEvent reply = session.NextReply();
    ASSERT_TRUE(reply.has_rejected()) << reply.DebugString();
    ASSERT_EQ(reply.rejected().rejections_size(), 1);
    EXPECT_EQ(reply.rejected().rejections(0).code(), static_cast<int>(grpc::INVALID_ARGUMENT));
    EXPECT_THAT(reply.rejected().rejections(0).message(),
                HasSubstr("needs a session with shared memory"));
    ASSERT_TRUE(session.AwaitOutcomes(1));
    EXPECT_TRUE(session.outcomes().at(1).result() == Pattern(200 << 10, 8));
    EXPECT_FALSE(session.outcomes().at(1).has_shared_result());
  }
  // The rejected task's object was never the service's: its creator removes it.
  EXPECT_THAT(ObjectsWithPrefix(prefix), ::testing::Contains(refused));
  UnlinkSharedObject(refused);
}

TEST(SharedPayloadRemoteWorkersTest, WorkersOffSharedMemoryGetTheBytesFromTheGateway) {
  testing::ServerProcess server;
  ASSERT_TRUE(
      server.Start({.workers = 2, .flags = {"--worker-env=MPIGATE_SHARED_MEMORY=off"}}).ok());
  std::unique_ptr<v1::Gateway::Stub> stub = StubOf(server);
  const std::string prefix = PrefixOf(server);
  {
    testing::RawSession session(*stub, SharedOpen(/*result_min_bytes=*/1), kPatience);
    // The client shares the gateway's memory, its workers do not.
    ASSERT_EQ(session.opened().shared_memory_prefix(), prefix);
    const std::string input = Pattern(1 << 20, 9);
    SubmitShared(session, 1, prefix, input);
    ASSERT_TRUE(session.AwaitOutcomes(1));
    const v1::TaskOutcome& outcome = session.outcomes().at(1);
    ASSERT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED) << outcome.DebugString();
    EXPECT_FALSE(outcome.has_shared_result());
    EXPECT_TRUE(outcome.result() == input);
  }
  {
    // The C++ client needs to know nothing of it.
    absl::StatusOr<std::unique_ptr<Executor>> executor =
        Executor::Connect({.endpoint = server.target(), .client_name = "shared, remote workers"});
    ASSERT_TRUE(executor.ok()) << executor.status();
    const std::string input = Pattern(3 << 20, 10);
    EXPECT_TRUE((*executor)->Submit("echo", input).Result(kPatience).value_or("") == input);
  }
  StopCleanly(server);
}

TEST_F(SharedPayloadTest, AnInputObjectThatIsGoneFailsItsTaskWithDataLoss) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  const std::string prefix = Prefix();
  {
    testing::RawSession session(*stub, SharedOpen(0), kPatience);
    v1::SessionRequest request;
    v1::TaskSpec& task = *request.mutable_submit()->add_tasks();
    task.set_task_id(1);
    task.set_function("echo");
    task.mutable_shared_payload()->set_name(absl::StrCat(prefix, "00000000deadbeef"));
    task.mutable_shared_payload()->set_size(10);
    session.Send(request);
    session.Submit(2, "echo", "after");
    ASSERT_TRUE(session.AwaitOutcomes(2));
    const v1::TaskOutcome& lost = session.outcomes().at(1);
    EXPECT_EQ(lost.state(), v1::TASK_STATE_FAILED);
    EXPECT_EQ(lost.error().code(), static_cast<int>(grpc::DATA_LOSS)) << lost.DebugString();
    EXPECT_THAT(lost.error().message(), HasSubstr("00000000deadbeef"));
    EXPECT_EQ(session.outcomes().at(2).result(), "after");
  }
}

}  // namespace
}  // namespace mpigate
