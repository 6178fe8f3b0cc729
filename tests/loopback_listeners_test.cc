// common/loopback_listeners: which pools count as one-host, and the bind() and socket() this test
// binary gets from the library, on real sockets.
#include "common/loopback_listeners.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace mpigate {
namespace {

// An environment of `variables` only.
std::function<const char*(const char*)> Environment(std::map<std::string, std::string> variables) {
  return [variables = std::move(variables)](const char* name) -> const char* {
    const auto it = variables.find(name);
    return it == variables.end() ? nullptr : it->second.c_str();
  };
}

TEST(OneHostPoolTest, PlainSpawnIsOneHost) {
  EXPECT_TRUE(OneHostPool({}, Environment({})));
  EXPECT_TRUE(OneHostPool({{"wdir", "/tmp"}}, Environment({{"SLURM_JOB_ID", ""}})));
}

TEST(OneHostPoolTest, SpawnInfoNamingHostsIsNot) {
  for (const char* key : {"host", "hostfile", "add-host", "add-hostfile"}) {
    EXPECT_FALSE(OneHostPool({{"wdir", "/tmp"}, {key, "nodeB"}}, Environment({}))) << key;
  }
}

TEST(OneHostPoolTest, LaunchersAndResourceManagersAreNot) {
  for (const char* variable :
       {"OMPI_COMM_WORLD_SIZE", "PMIX_NAMESPACE", "SLURM_JOB_ID", "SLURM_JOBID", "PBS_JOBID",
        "PBS_NODEFILE", "LSB_JOBID", "PE_HOSTFILE", "OMPI_MCA_orte_default_hostfile"}) {
    EXPECT_FALSE(OneHostPool({}, Environment({{variable, "1"}}))) << variable;
  }
}

TEST(TakeLoopbackListenersRequestTest, ReadsAndRemovesTheVariable) {
  setenv(kLoopbackListenersEnv, "1", /*overwrite=*/1);
  EXPECT_TRUE(TakeLoopbackListenersRequest());
  EXPECT_EQ(std::getenv(kLoopbackListenersEnv), nullptr);
  EXPECT_FALSE(TakeLoopbackListenersRequest());
  setenv(kLoopbackListenersEnv, "0", /*overwrite=*/1);
  EXPECT_FALSE(TakeLoopbackListenersRequest());
  EXPECT_EQ(std::getenv(kLoopbackListenersEnv), nullptr);
}

// Binds a new socket of `type` to 0.0.0.0:0 and returns the address it got ("" on failure).
std::string BindToAnyAddress(int type) {
  const int fd = socket(AF_INET, type, 0);
  if (fd < 0) return "";
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t length = sizeof(address);
  std::string bound;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0 &&
      address.sin_port != 0) {
    char text[INET_ADDRSTRLEN] = {};
    bound = inet_ntop(AF_INET, &address.sin_addr, text, sizeof(text));
  }
  close(fd);
  return bound;
}

TEST(ScopedLoopbackListenersTest, WildcardTcpBindsGoToLoopbackWhileOpen) {
  EXPECT_EQ(BindToAnyAddress(SOCK_STREAM), "0.0.0.0");
  {
    ScopedLoopbackListeners loopback(/*active=*/true);
    EXPECT_EQ(BindToAnyAddress(SOCK_STREAM), "127.0.0.1");
    EXPECT_EQ(BindToAnyAddress(SOCK_STREAM | SOCK_CLOEXEC), "127.0.0.1");
    // Not TCP: unchanged.
    EXPECT_EQ(BindToAnyAddress(SOCK_DGRAM), "0.0.0.0");
  }
  EXPECT_EQ(BindToAnyAddress(SOCK_STREAM), "0.0.0.0");
  {
    ScopedLoopbackListeners inactive(/*active=*/false);
    EXPECT_EQ(BindToAnyAddress(SOCK_STREAM), "0.0.0.0");
  }
}

TEST(ScopedLoopbackListenersTest, IpV6TcpIsRefusedWhileOpen) {
  {
    ScopedLoopbackListeners loopback(/*active=*/true);
    errno = 0;
    EXPECT_EQ(socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0), -1);
    EXPECT_EQ(errno, EAFNOSUPPORT);
    const int datagram = socket(AF_INET6, SOCK_DGRAM, 0);
    if (datagram >= 0) close(datagram);
    EXPECT_TRUE(datagram >= 0 || errno == EAFNOSUPPORT);
  }
  const int stream = socket(AF_INET6, SOCK_STREAM, 0);
  if (stream < 0 && errno == EAFNOSUPPORT) GTEST_SKIP() << "this host has no IPv6";
  EXPECT_GE(stream, 0);
  close(stream);
}

}  // namespace
}  // namespace mpigate
