// MakeServerConfig and SplitArgs: mpigate-server's command line, checked without starting
// anything. Each check's error names its flag; defaults are the flags' defaults.
#include "server/server_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "worker/exec_task.h"

namespace mpigate::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

// The environment MakeServerConfig reads, set for one test and restored after it.
class ServerConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"MPIGATE_RUN_DIR", "MPIGATE_ENDPOINT_FILE", "MPIGATE_WORKER_BINARY",
                             "MPIGATE_RUNNER_BINARY", "MPIGATE_TASK_LIB_PATH"}) {
      unsetenv(name);
    }
    setenv("MPIGATE_RUN_DIR", "/run/test-dir", 1);
  }

  // The error MakeServerConfig gives for `flags`, which must be INVALID_ARGUMENT.
  static std::string Error(const ServerFlags& flags) {
    absl::StatusOr<ServerConfig> config = MakeServerConfig(flags);
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
    return std::string(config.status().message());
  }
};

TEST_F(ServerConfigTest, DefaultsAreTheFlagsDefaults) {
  absl::StatusOr<ServerConfig> config = MakeServerConfig(ServerFlags());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen_address, "unix:/run/test-dir/gateway.sock");
  EXPECT_EQ(config->socket_path, "/run/test-dir/gateway.sock");
  EXPECT_EQ(config->endpoint_file, "/run/test-dir/endpoint");
  EXPECT_EQ(config->pool.workers, 0);
  EXPECT_FALSE(config->pool.world);
  EXPECT_EQ(config->pool.bootup_timeout, absl::Seconds(60));
  EXPECT_EQ(config->pool.worker_options.hello_timeout, absl::Seconds(60));
  EXPECT_FALSE(config->pool.worker_options.in_process);
  EXPECT_FALSE(config->pool.worker_options.allow_exec);
  EXPECT_THAT(config->pool.spawn_info, IsEmpty());
  EXPECT_EQ(config->explicit_worker_binary, "");
  EXPECT_EQ(config->explicit_runner_binary, "");
  EXPECT_EQ(config->python, PythonTasks::kAuto);
  EXPECT_EQ(config->token_file, "");
  EXPECT_EQ(config->metrics_listen, "");
  EXPECT_EQ(config->max_message_bytes, 512 << 20);
  EXPECT_EQ(config->scheduler.max_message_bytes, uint64_t{512} << 20);
  EXPECT_EQ(config->scheduler.max_tasks_per_worker, 256);
  EXPECT_EQ(config->scheduler.prefetch_window, absl::Milliseconds(1));
  EXPECT_EQ(config->scheduler.resume_grace, absl::Seconds(60));
  EXPECT_EQ(config->scheduler.max_unread_result_bytes, uint64_t{1024} << 20);
  EXPECT_EQ(config->scheduler.max_sessions, 1024u);
  EXPECT_EQ(config->scheduler.max_queued_tasks_per_session, size_t{1} << 20);
  EXPECT_TRUE(config->scheduler.task_environments);
  EXPECT_THAT(config->scheduler.refused_functions,
              ElementsAre(Pair(worker::kExecFunction, HasSubstr("--allow-exec"))));
  EXPECT_TRUE(config->shared_memory);
  EXPECT_EQ(config->max_connection_idle_ms, 60'000);
  EXPECT_EQ(config->handshake_timeout_ms, 10'000);
  EXPECT_EQ(config->drain_grace, absl::Seconds(30));
  EXPECT_EQ(config->idle_memory_release, absl::Seconds(5));
}

TEST_F(ServerConfigTest, EndpointFileFromFlagThenEnvironment) {
  setenv("MPIGATE_ENDPOINT_FILE", "/env/endpoint", 1);
  EXPECT_EQ(MakeServerConfig(ServerFlags())->endpoint_file, "/env/endpoint");
  ServerFlags flags;
  flags.endpoint_file = "/flag/endpoint";
  EXPECT_EQ(MakeServerConfig(flags)->endpoint_file, "/flag/endpoint");
}

TEST_F(ServerConfigTest, PoolErrors) {
  ServerFlags flags;
  flags.python = "yes";
  EXPECT_EQ(Error(flags), "--python is `auto`, `on` or `off`, got 'yes'");
  flags = ServerFlags();
  flags.isolation = "thread";
  EXPECT_EQ(Error(flags), "--isolation is `process` or `none`, got 'thread'");
  flags = ServerFlags();
  flags.worker_env = {"A=1", "=2"};
  EXPECT_EQ(Error(flags), "worker environment entries are NAME=VALUE, got '=2'");
  flags = ServerFlags();
  flags.spawn_info = {"host=a", "wdir"};
  EXPECT_EQ(Error(flags), "--spawn-info takes KEY=VALUE, got 'wdir'");
  flags.spawn_info = {"=x"};
  EXPECT_EQ(Error(flags), "--spawn-info takes KEY=VALUE, got '=x'");
  flags.spawn_info = {"host=a"};
  flags.world = true;
  EXPECT_EQ(Error(flags), "--spawn-info has no effect in world mode: nothing spawns");
}

TEST_F(ServerConfigTest, ServingErrors) {
  ServerFlags flags;
  flags.listen = "unix:";
  EXPECT_EQ(Error(flags), "--listen unix: needs a path");
  flags.listen = "host:port";
  EXPECT_EQ(Error(flags), "--listen must be unix:PATH, HOST:PORT or :PORT, got 'host:port'");
  const std::string tcp_only =
      "--token-file and --tls-* apply to TCP only: pass --listen HOST:PORT (on a Unix socket, the "
      "socket's permissions let only this user in)";
  for (std::string ServerFlags::*file : {&ServerFlags::token_file, &ServerFlags::tls_cert,
                                         &ServerFlags::tls_key, &ServerFlags::tls_client_ca}) {
    flags = ServerFlags();
    flags.*file = "/some/file";
    EXPECT_EQ(Error(flags), tcp_only);
    flags.listen = "unix:/x/s.sock";
    EXPECT_EQ(Error(flags), tcp_only);
  }
  flags = ServerFlags();
  flags.listen = ":5000";
  flags.tls_cert = "cert.pem";
  EXPECT_EQ(Error(flags), "--tls-cert and --tls-key go together");
  flags.tls_cert = "";
  flags.tls_key = "key.pem";
  EXPECT_EQ(Error(flags), "--tls-cert and --tls-key go together");
  flags.tls_key = "";
  flags.tls_client_ca = "ca.pem";
  EXPECT_EQ(Error(flags), "--tls-client-ca needs --tls-cert");
  flags = ServerFlags();
  flags.metrics_token_file = "/metrics/token";
  EXPECT_EQ(Error(flags), "--metrics_token_file needs --metrics_listen");
}

TEST_F(ServerConfigTest, LimitErrors) {
  const std::string negative =
      "--resume_grace_s, --max_unread_result_mb, --max_sessions and "
      "--max_queued_tasks_per_session must not be negative";
  ServerFlags flags;
  flags.resume_grace_s = -1;
  EXPECT_EQ(Error(flags), negative);
  flags.resume_grace_s = std::nan("");
  EXPECT_EQ(Error(flags), negative);
  flags = ServerFlags();
  flags.max_unread_result_mb = -1;
  EXPECT_EQ(Error(flags), negative);
  flags = ServerFlags();
  flags.max_sessions = -1;
  EXPECT_EQ(Error(flags), negative);
  flags = ServerFlags();
  flags.max_queued_tasks_per_session = -1;
  EXPECT_EQ(Error(flags), negative);
  flags = ServerFlags();
  flags.max_message_mb = 0;
  EXPECT_EQ(Error(flags), "--max_message_mb must be between 1 and 2047, not 0");
  flags.max_message_mb = 2048;
  EXPECT_EQ(Error(flags), "--max_message_mb must be between 1 and 2047, not 2048");
  flags = ServerFlags();
  flags.max_tasks_per_worker = 0;
  EXPECT_EQ(Error(flags), "--max_tasks_per_worker must be between 1 and 4096, not 0");
  flags.max_tasks_per_worker = 4097;
  EXPECT_EQ(Error(flags), "--max_tasks_per_worker must be between 1 and 4096, not 4097");
  flags = ServerFlags();
  flags.prefetch_window = -absl::Milliseconds(1);
  EXPECT_EQ(Error(flags), "--prefetch_window must not be negative");
  const std::string at_least = "--max_connection_idle and --handshake_timeout must be at least 1ms";
  flags = ServerFlags();
  flags.max_connection_idle = absl::Microseconds(999);
  EXPECT_EQ(Error(flags), at_least);
  flags = ServerFlags();
  flags.handshake_timeout = absl::ZeroDuration();
  EXPECT_EQ(Error(flags), at_least);
}

TEST_F(ServerConfigTest, LimitsAtTheirBounds) {
  ServerFlags flags;
  flags.resume_grace_s = 0;
  flags.max_unread_result_mb = 0;
  flags.max_sessions = 0;
  flags.max_queued_tasks_per_session = 0;
  flags.max_message_mb = 2047;
  flags.max_tasks_per_worker = 4096;
  flags.prefetch_window = absl::ZeroDuration();
  flags.max_connection_idle = absl::InfiniteDuration();
  flags.handshake_timeout = absl::Milliseconds(1);
  flags.idle_memory_release_s = 0;
  absl::StatusOr<ServerConfig> config = MakeServerConfig(flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->max_message_bytes, 2047 << 20);
  EXPECT_EQ(config->scheduler.resume_grace, absl::ZeroDuration());
  EXPECT_EQ(config->scheduler.max_unread_result_bytes, 0u);
  EXPECT_EQ(config->scheduler.max_sessions, 0u);
  EXPECT_EQ(config->scheduler.max_tasks_per_worker, 4096);
  EXPECT_EQ(config->max_connection_idle_ms, INT_MAX);
  EXPECT_EQ(config->handshake_timeout_ms, 1);
  EXPECT_EQ(config->idle_memory_release, absl::ZeroDuration());
}

TEST_F(ServerConfigTest, TcpWithTlsAndMetrics) {
  ServerFlags flags;
  flags.listen = ":0";
  flags.token_file = "/t/token";
  flags.tls_cert = "/t/cert.pem";
  flags.tls_key = "/t/key.pem";
  flags.tls_client_ca = "/t/ca.pem";
  flags.metrics_listen = "9100";
  flags.metrics_token_file = "/t/metrics";
  absl::StatusOr<ServerConfig> config = MakeServerConfig(flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen_address, "0.0.0.0:0");
  EXPECT_EQ(config->socket_path, "");
  EXPECT_EQ(config->token_file, "/t/token");
  EXPECT_EQ(config->tls_cert, "/t/cert.pem");
  EXPECT_EQ(config->tls_key, "/t/key.pem");
  EXPECT_EQ(config->tls_client_ca, "/t/ca.pem");
  EXPECT_EQ(config->metrics_listen, "9100");
  EXPECT_EQ(config->metrics_token_file, "/t/metrics");
}

TEST_F(ServerConfigTest, WorkerOptionsAndBinaries) {
  setenv("MPIGATE_WORKER_BINARY", "/env/worker", 1);
  setenv("MPIGATE_RUNNER_BINARY", "/env/runner", 1);
  setenv("MPIGATE_TASK_LIB_PATH", "/env/a::/env/b", 1);
  ServerFlags flags;
  flags.initializer = "init";
  flags.initargs = "args";
  flags.worker_wdir = "/wdir";
  flags.task_lib_path = "/flag/a:/flag/b";
  flags.worker_env = {"A=1", "B="};
  flags.task_lib = {"one", "/two.so"};
  flags.spawn_info = {"host=a,b", "wdir=/x=y"};
  flags.bootup_timeout = absl::Seconds(5);
  flags.allow_exec = true;
  flags.python = "off";
  absl::StatusOr<ServerConfig> config = MakeServerConfig(flags);
  ASSERT_TRUE(config.ok()) << config.status();
  const worker::WorkerOptions& worker = config->pool.worker_options;
  EXPECT_EQ(worker.initializer.function, "init");
  EXPECT_EQ(worker.initializer.input, "args");
  EXPECT_EQ(worker.wdir, "/wdir");
  EXPECT_THAT(worker.task_lib_path, ElementsAre("/flag/a", "/flag/b", "/env/a", "/env/b"));
  EXPECT_THAT(worker.env, ElementsAre("A=1", "B="));
  EXPECT_THAT(worker.task_libs, ElementsAre("one", "/two.so"));
  EXPECT_TRUE(worker.allow_exec);
  EXPECT_EQ(worker.hello_timeout, absl::Seconds(5));
  EXPECT_THAT(config->pool.spawn_info, ElementsAre(Pair("host", "a,b"), Pair("wdir", "/x=y")));
  EXPECT_THAT(config->scheduler.refused_functions, IsEmpty());
  EXPECT_EQ(config->python, PythonTasks::kOff);
  EXPECT_EQ(config->explicit_worker_binary, "/env/worker");
  EXPECT_EQ(config->explicit_runner_binary, "/env/runner");
  // The flags win over the environment.
  flags.worker_binary = "/flag/worker";
  flags.runner_binary = "/flag/runner";
  config = MakeServerConfig(flags);
  EXPECT_EQ(config->explicit_worker_binary, "/flag/worker");
  EXPECT_EQ(config->explicit_runner_binary, "/flag/runner");
}

TEST_F(ServerConfigTest, InProcessAndWorldModes) {
  setenv("MPIGATE_WORKER_BINARY", "/env/worker", 1);
  setenv("MPIGATE_RUNNER_BINARY", "/env/runner", 1);
  ServerFlags flags;
  flags.isolation = "none";
  flags.world = true;
  flags.python = "on";
  absl::StatusOr<ServerConfig> config = MakeServerConfig(flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->pool.worker_options.in_process);
  EXPECT_TRUE(config->pool.world);
  EXPECT_FALSE(config->scheduler.task_environments);
  EXPECT_EQ(config->python, PythonTasks::kOn);
  // Nothing spawns a worker, and no runner runs tasks.
  EXPECT_EQ(config->explicit_worker_binary, "");
  EXPECT_EQ(config->explicit_runner_binary, "");
}

// Runs SplitArgs on `args`.
SplitArgs Split(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  return SplitArgs(static_cast<int>(argv.size()), argv.data());
}

TEST(SplitArgsTest, DashesBecomeUnderscoresInNamesOnly) {
  SplitArgs split = Split({"/bin/mpigate-server", "--endpoint-file=/a-b", "--max-message-mb", "3",
                           "plain-arg", "--", "--after-dashes", "-x-y"});
  EXPECT_THAT(split.args,
              ElementsAre("/bin/mpigate-server", "--endpoint_file=/a-b", "--max_message_mb", "3",
                          "plain-arg", "--", "--after_dashes", "-x-y"));
  std::vector<char*> argv = split.argv();
  ASSERT_EQ(argv.size(), split.args.size());
  EXPECT_EQ(argv[1], split.args[1].data());
}

TEST(SplitArgsTest, TakesOutTheRepeatableFlags) {
  SplitArgs split =
      Split({"server", "--worker-env=A=1", "--workers=2", "--worker_env", "B=2", "--spawn-info",
             "host=a", "--task-lib=one", "--task_lib", "two", "--spawn_info"});
  EXPECT_THAT(split.args, ElementsAre("server", "--workers=2"));
  EXPECT_THAT(split.worker_env, ElementsAre("A=1", "B=2"));
  EXPECT_THAT(split.task_lib, ElementsAre("one", "two"));
  // The last one has no value: kept empty, so that MakeServerConfig rejects it.
  EXPECT_THAT(split.spawn_info, ElementsAre("host=a", ""));
}

}  // namespace
}  // namespace mpigate::server
