// Open MPI's TCP listeners of a one-host pool (common/loopback_listeners.h), end to end: a real
// mpigate-server with 2 spawned workers, whose processes (the gateway, Open MPI's daemon orted, the
// workers, their task runners) are found as the server's descendants in /proc, their listening
// sockets by matching the socket inodes of /proc/PID/fd against /proc/net/tcp and tcp6.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "common/loopback_listeners.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/process_info.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::testing::IsEmpty;
using ::testing::Not;

constexpr absl::Duration kPatience = absl::Minutes(1);

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// The inodes of the sockets `pid` has open.
std::set<uint64_t> SocketInodes(pid_t pid) {
  std::set<uint64_t> inodes;
  const std::string directory = absl::StrCat("/proc/", pid, "/fd");
  DIR* fds = opendir(directory.c_str());
  if (fds == nullptr) return inodes;
  while (dirent* entry = readdir(fds)) {
    char target[64] = {};
    const std::string link = absl::StrCat(directory, "/", entry->d_name);
    if (readlink(link.c_str(), target, sizeof(target) - 1) <= 0) continue;
    absl::string_view name = target;
    uint64_t inode = 0;
    if (absl::ConsumePrefix(&name, "socket:[") && absl::ConsumeSuffix(&name, "]") &&
        absl::SimpleAtoi(name, &inode)) {
      inodes.insert(inode);
    }
  }
  closedir(fds);
  return inodes;
}

struct Listener {
  std::string address;  // "127.0.0.1:1024", "[::]:1025"
  uint32_t port = 0;
  bool loopback = false;
  bool ipv6 = false;
};

// The listening TCP sockets of this thread's network namespace, by inode.
std::map<uint64_t, Listener> ListeningSockets() {
  std::map<uint64_t, Listener> listeners;
  for (const bool ipv6 : {false, true}) {
    std::istringstream table(
        ReadFile(ipv6 ? "/proc/thread-self/net/tcp6" : "/proc/thread-self/net/tcp"));
    std::string line;
    std::getline(table, line);  // The header.
    while (std::getline(table, line)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (fields.size() < 10 || fields[3] != "0A") continue;  // 0A: LISTEN.
      const std::vector<std::string> local = absl::StrSplit(fields[1], ':');
      uint64_t inode = 0;
      uint32_t port = 0;
      if (local.size() != 2 || !absl::SimpleAtoi(fields[9], &inode) ||
          !absl::SimpleHexAtoi(local[1], &port)) {
        continue;
      }
      // The address as the kernel holds it (network order), printed as 32-bit words in this
      // host's order.
      Listener& listener = listeners[inode];
      listener.port = port;
      listener.ipv6 = ipv6;
      char text[INET6_ADDRSTRLEN] = {};
      if (ipv6) {
        in6_addr address = {};
        for (int word = 0; word < 4; ++word) {
          uint32_t value = 0;
          EXPECT_TRUE(
              absl::SimpleHexAtoi(local[0].substr(static_cast<size_t>(word) * 8, 8), &value))
              << line;
          std::memcpy(&address.s6_addr[word * 4], &value, 4);
        }
        listener.loopback = IN6_IS_ADDR_LOOPBACK(&address);
        inet_ntop(AF_INET6, &address, text, sizeof(text));
        listener.address = absl::StrCat("[", text, "]:", port);
      } else {
        in_addr address = {};
        EXPECT_TRUE(absl::SimpleHexAtoi(local[0], &address.s_addr)) << line;
        listener.loopback = (ntohl(address.s_addr) >> 24) == 127;
        inet_ntop(AF_INET, &address, text, sizeof(text));
        listener.address = absl::StrCat(text, ":", port);
      }
    }
  }
  return listeners;
}

// One process of the pool, what it listens on and whether it has loaded the daemon's preload
// library.
struct PoolProcess {
  pid_t pid = 0;
  std::string command;
  std::vector<Listener> listeners;
  bool preloaded = false;

  std::string Describe() const {
    std::string text = absl::StrCat(command, " (pid ", pid, ") listens on");
    for (const Listener& listener : listeners) absl::StrAppend(&text, " ", listener.address);
    return text;
  }
};

std::vector<PoolProcess> PoolProcesses(pid_t server) {
  const std::map<uint64_t, Listener> listening = ListeningSockets();
  std::vector<PoolProcess> processes;
  for (const pid_t pid : testing::ProcessTree(server)) {
    PoolProcess& process = processes.emplace_back();
    process.pid = pid;
    process.command = testing::ProcessName(pid);
    for (const uint64_t inode : SocketInodes(pid)) {
      if (const auto it = listening.find(inode); it != listening.end()) {
        process.listeners.push_back(it->second);
      }
    }
    process.preloaded =
        absl::StrContains(ReadFile(absl::StrCat("/proc/", pid, "/maps")), kLoopbackPreloadLibrary);
  }
  return processes;
}

// Every process of the pool that runs `command`.
std::vector<PoolProcess> Named(const std::vector<PoolProcess>& processes,
                               const std::string& command) {
  std::vector<PoolProcess> named;
  for (const PoolProcess& process : processes) {
    if (process.command == command) named.push_back(process);
  }
  return named;
}

// Fails the test for each listener of `process` that is not on loopback, but for the one on
// `allowed_port`.
void ExpectLoopbackOnly(const PoolProcess& process, uint32_t allowed_port = 0) {
  for (const Listener& listener : process.listeners) {
    if (allowed_port != 0 && listener.port == allowed_port) continue;
    EXPECT_TRUE(listener.loopback) << process.Describe();
    // Open MPI's IPv6 listeners are not opened at all.
    EXPECT_FALSE(listener.ipv6) << process.Describe();
  }
}

// The pool's processes: the gateway, one orted, `workers` workers, each with a task runner.
void ExpectPoolShape(const std::vector<PoolProcess>& processes, int workers) {
  ASSERT_EQ(Named(processes, "mpigate-server").size(), 1u);
  ASSERT_EQ(Named(processes, "orted").size(), 1u);
  ASSERT_EQ(Named(processes, "mpigate-worker").size(), static_cast<size_t>(workers));
  ASSERT_EQ(Named(processes, "mpigate-runner").size(), static_cast<size_t>(workers));
}

// Starts a 2-worker pool, runs tasks through both workers and a gang of both, and checks that
// every process of the pool listens on loopback only.
void ExpectLoopbackPoolRunsTasks() {
  testing::ServerProcess server;
  const absl::Status started = server.Start(
      {.workers = 2,
       .flags = {"--task-lib=" + testing::RunfilePath("tests/testdata/libsample_tasks.so")}});
  ASSERT_TRUE(started.ok()) << started;
  absl::StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Connect({.endpoint = server.target(), .client_name = "mpi_listeners_test"});
  ASSERT_TRUE(executor.ok()) << executor.status();

  // Every pair of processes MPI connects (gateway and workers, workers among themselves) has
  // talked: the tasks go from the gateway to both workers, and a gang of two has the workers meet.
  std::vector<Future> echoes;
  for (int i = 0; i < 16; ++i) echoes.push_back((*executor)->Submit("echo", absl::StrCat(i)));
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(echoes[static_cast<size_t>(i)].Result(kPatience).value_or(""), absl::StrCat(i));
  }
  EXPECT_EQ(
      (*executor)->Submit("sample.gang_info", "", {.gang_size = 2}).Result(kPatience).value_or(""),
      "gang_size=2 workers=0,1");

  const std::vector<PoolProcess> processes = PoolProcesses(server.pid());
  ASSERT_NO_FATAL_FAILURE(ExpectPoolShape(processes, 2));
  for (const PoolProcess& process : processes) {
    ExpectLoopbackOnly(process);
    // Open MPI listens in the gateway, orted and each worker; the runners do not use MPI.
    if (process.command != "mpigate-runner") {
      EXPECT_THAT(process.listeners, Not(IsEmpty())) << process.Describe();
    }
    // Only orted loads the preload library: it takes itself out of LD_PRELOAD for the workers.
    EXPECT_EQ(process.preloaded, process.command == "orted") << process.command;
  }
  // The variable that told the workers is gone from their environment: runners never saw it.
  for (const PoolProcess& runner : Named(processes, "mpigate-runner")) {
    EXPECT_FALSE(absl::StrContains(ReadFile(absl::StrCat("/proc/", runner.pid, "/environ")),
                                   kLoopbackListenersEnv));
  }
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

TEST(MpiListenersTest, OneHostPoolListensOnLoopbackOnlyAndRunsTasks) {
  ExpectLoopbackPoolRunsTasks();
}

// Where loopback has no ::1 (containers often run so), Open MPI binds its IPv6 listeners all the
// same, to ::, and gives up TCP if that fails: the pool must start there too. This thread moves to
// a network namespace of its own, whose loopback has no IPv6, and the server inherits it.
TEST(MpiListenersTest, PoolStartsWhereLoopbackHasNoIpV6) {
  if (geteuid() != 0) GTEST_SKIP() << "making a network namespace needs root";
  const int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(home, 0) << std::strerror(errno);
  if (unshare(CLONE_NEWNET) != 0) {
    close(home);
    GTEST_SKIP() << "cannot make a network namespace: " << std::strerror(errno);
  }
  absl::Cleanup back_home = [home] {
    EXPECT_EQ(setns(home, CLONE_NEWNET), 0) << std::strerror(errno);
    close(home);
  };
  // A new namespace's loopback is down, with IPv6 on unless told otherwise.
  const std::string disable_ipv6 = "/proc/sys/net/ipv6/conf/lo/disable_ipv6";
  if (access(disable_ipv6.c_str(), F_OK) == 0) {
    std::ofstream(disable_ipv6) << "1\n";
    ASSERT_EQ(ReadFile(disable_ipv6), "1\n");
  }
  const int control = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(control, 0) << std::strerror(errno);
  ifreq loopback = {};
  std::strncpy(loopback.ifr_name, "lo", IFNAMSIZ - 1);
  loopback.ifr_flags = IFF_UP;
  ASSERT_EQ(ioctl(control, SIOCSIFFLAGS, &loopback), 0) << std::strerror(errno);
  close(control);

  ExpectLoopbackPoolRunsTasks();
}

// The gateway's own gRPC listener stays where --listen puts it: every interface here (gRPC binds
// one dual-stack socket, [::]).
TEST(MpiListenersTest, GatewayListenerKeepsTheAddressItIsGiven) {
  testing::ServerProcess server;
  const absl::Status started = server.Start({.workers = 1, .flags = {"--listen=0.0.0.0:0"}});
  ASSERT_TRUE(started.ok()) << started;
  const std::vector<std::string> target = absl::StrSplit(server.target(), ':');
  uint32_t grpc_port = 0;
  ASSERT_TRUE(target.size() == 2 && absl::SimpleAtoi(target[1], &grpc_port)) << server.target();

  const std::vector<PoolProcess> processes = PoolProcesses(server.pid());
  ASSERT_NO_FATAL_FAILURE(ExpectPoolShape(processes, 1));
  const PoolProcess gateway = Named(processes, "mpigate-server")[0];
  int grpc_listeners = 0;
  for (const Listener& listener : gateway.listeners) {
    if (listener.port != grpc_port) continue;
    ++grpc_listeners;
    EXPECT_FALSE(listener.loopback) << gateway.Describe();
  }
  EXPECT_EQ(grpc_listeners, 1) << gateway.Describe();
  for (const PoolProcess& process : processes) ExpectLoopbackOnly(process, grpc_port);
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

}  // namespace
}  // namespace mpigate
