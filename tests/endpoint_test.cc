// The rendezvous between server and clients: listen addresses and the endpoint file.
#include "common/endpoint.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace mpigate {
namespace {

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

TEST(ListenAddressTest, AcceptsUnixHostPortAndBarePort) {
  EXPECT_EQ(ListenAddress("unix:/tmp/x.sock").value(), "unix:/tmp/x.sock");
  EXPECT_EQ(ListenAddress("node7:50051").value(), "node7:50051");
  EXPECT_EQ(ListenAddress(":50051").value(), "0.0.0.0:50051");
  EXPECT_EQ(ListenAddress("[::1]:0").value(), "[::1]:0");
}

TEST(ListenAddressTest, RejectsMalformedValues) {
  for (const char* bad : {"unix:", "node7", "node7:port", "node7:70000", ""}) {
    EXPECT_EQ(ListenAddress(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(UnixSocketPathTest, OnlyForUnixAddresses) {
  EXPECT_EQ(UnixSocketPath("unix:/run/s.sock"), "/run/s.sock");
  EXPECT_EQ(UnixSocketPath("node7:50051"), "");
}

TEST(EndpointFileTest, RoundTripsAndCreatesPrivateDirectories) {
  const std::string dir = TempDir() + "/endpoint_test/a/b";
  const std::string path = dir + "/endpoint";
  ASSERT_TRUE(WriteEndpointFile(path, {"unix:/tmp/s.sock"}).ok());
  EXPECT_EQ(ReadEndpointFile(path).value().target, "unix:/tmp/s.sock");
  struct stat info;
  ASSERT_EQ(stat(dir.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700);
  // Rewriting replaces the content as a whole.
  ASSERT_TRUE(WriteEndpointFile(path, {"node7:50051"}).ok());
  EXPECT_EQ(ReadEndpointFile(path).value().target, "node7:50051");
}

TEST(EndpointFileTest, HoldsTokenTlsAndMetricsAfterTheTargetPrivately) {
  const std::string path = TempDir() + "/endpoint_test/tcp/endpoint";
  ASSERT_TRUE(
      WriteEndpointFile(path, {"node7:50051", "abc123", true, "0.0.0.0:9464", "scrape456"}).ok());
  struct stat info;
  ASSERT_EQ(stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600);
  std::ifstream in(path);
  std::string first_line;
  std::getline(in, first_line);
  // Scripts that read the first line keep finding the target.
  EXPECT_EQ(first_line, "node7:50051");
  const Endpoint endpoint = ReadEndpointFile(path).value();
  EXPECT_EQ(endpoint.target, "node7:50051");
  EXPECT_EQ(endpoint.token, "abc123");
  EXPECT_TRUE(endpoint.tls);
  EXPECT_EQ(endpoint.metrics, "0.0.0.0:9464");
  EXPECT_EQ(endpoint.metrics_token, "scrape456");
  // A file without the keys, as a server on a Unix socket without metrics writes it.
  ASSERT_TRUE(WriteEndpointFile(path, {"unix:/tmp/s.sock"}).ok());
  EXPECT_EQ(ReadEndpointFile(path).value().token, "");
  EXPECT_FALSE(ReadEndpointFile(path).value().tls);
  EXPECT_EQ(ReadEndpointFile(path).value().metrics, "");
  EXPECT_EQ(ReadEndpointFile(path).value().metrics_token, "");
}

TEST(EndpointFileTest, MissingFileIsNotFound) {
  EXPECT_EQ(ReadEndpointFile(TempDir() + "/no/such/endpoint").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ResolveEndpointTest, ExplicitThenEnvironmentThenFile) {
  const std::string file = TempDir() + "/resolve/endpoint";
  ASSERT_TRUE(WriteEndpointFile(file, {"from-file:1", "secret"}).ok());
  setenv("MPIGATE_ENDPOINT_FILE", file.c_str(), 1);
  unsetenv("MPIGATE_ENDPOINT");
  EXPECT_EQ(ResolveEndpoint("explicit:1").value().target, "explicit:1");
  EXPECT_EQ(ResolveEndpoint("explicit:1").value().token, "");
  EXPECT_EQ(ResolveEndpoint("").value().target, "from-file:1");
  EXPECT_EQ(ResolveEndpoint("").value().token, "secret");
  setenv("MPIGATE_ENDPOINT", "from-env:1", 1);
  EXPECT_EQ(ResolveEndpoint("").value().target, "from-env:1");
  EXPECT_EQ(ResolveEndpoint("").value().token, "");
  unsetenv("MPIGATE_ENDPOINT");
  setenv("MPIGATE_ENDPOINT_FILE", (TempDir() + "/none").c_str(), 1);
  absl::StatusOr<Endpoint> none = ResolveEndpoint("");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find("MPIGATE_ENDPOINT"), absl::string_view::npos);
}

}  // namespace
}  // namespace mpigate
