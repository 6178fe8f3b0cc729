// multihost_client: the client side of multihost_test.sh, run in a network namespace of its own.
// Connects to a pool over TCP and checks that its workers run on the hosts it is told of.
//
//   multihost_client --endpoint=HOST:PORT --hosts=h1,h1,h2 [--tasks=N]
//
// The bearer token, when the service requires one, comes from $MPIGATE_TOKEN (ExecutorOptions).
// 1. Broadcasts `exec` of `hostname`: one result per worker; their sorted host names must be
//    --hosts (sorted).
// 2. Submits N `echo` tasks (distinct payloads, some of 64 KiB and more, so that bytes cross the
//    hosts in the messages) and checks every result.
// Prints what it saw; exits 0 if all matched, 1 otherwise.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "mpigate/v1/exec.pb.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "multihost_client: FAIL: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string endpoint;
  std::string hosts;
  int tasks = 300;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, "--endpoint=")) {
      endpoint = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, "--hosts=")) {
      hosts = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, "--tasks=")) {
      tasks = std::atoi(std::string(arg).c_str());
    } else {
      std::fprintf(stderr, "usage: multihost_client --endpoint=HOST:PORT --hosts=H,H,... "
                           "[--tasks=N]\n");
      return 2;
    }
  }
  if (endpoint.empty() || hosts.empty()) return Fail("--endpoint and --hosts are required");

  mpigate::ExecutorOptions options;
  options.endpoint = endpoint;
  options.client_name = "multihost_client";
  options.connect_timeout = absl::Seconds(30);
  absl::StatusOr<std::unique_ptr<mpigate::Executor>> executor =
      mpigate::Executor::Connect(options);
  if (!executor.ok()) return Fail(absl::StrCat("connect: ", executor.status().ToString()));
  if (absl::Status up = (*executor)->Bootup(); !up.ok()) {
    return Fail(absl::StrCat("bootup: ", up.ToString()));
  }

  // 1. Where the workers run.
  mpigate::v1::ExecRequest request;
  request.add_argv("hostname");
  request.set_check(true);
  request.set_time_limit_ms(20000);
  mpigate::SubmitOptions exec_options;
  exec_options.payload_type = "mpigate.v1.ExecRequest";
  mpigate::BroadcastFuture where =
      (*executor)->Broadcast("exec", request.SerializeAsString(), exec_options);
  auto results = where.Results(absl::Seconds(60));
  if (!results.ok()) return Fail(absl::StrCat("broadcast exec: ", results.status().ToString()));
  std::vector<std::string> seen;
  for (size_t i = 0; i < results->size(); ++i) {
    const absl::StatusOr<std::string>& result = (*results)[i];
    if (!result.ok()) {
      return Fail(absl::StrCat("exec hostname on worker ", i, ": ", result.status().ToString()));
    }
    mpigate::v1::ExecResponse response;
    if (!response.ParseFromString(*result)) return Fail("an ExecResponse that does not parse");
    std::string name(absl::StripAsciiWhitespace(response.stdout()));
    std::printf("multihost_client: worker %zu runs on %s\n", i, name.c_str());
    seen.push_back(name);
  }
  std::vector<std::string> expected = absl::StrSplit(hosts, ',');
  std::sort(seen.begin(), seen.end());
  std::sort(expected.begin(), expected.end());
  if (seen != expected) {
    return Fail(absl::StrCat("the workers run on ", absl::StrJoin(seen, ","), ", not on ",
                             absl::StrJoin(expected, ",")));
  }

  // 2. Tasks across the hosts.
  std::vector<std::string> payloads;
  std::vector<mpigate::Future> futures;
  for (int i = 0; i < tasks; ++i) {
    std::string payload = absl::StrCat("task ", i);
    if (i % 50 == 7) payload.append(static_cast<size_t>(64 << 10) + i, static_cast<char>('a' + i % 26));
    futures.push_back((*executor)->Submit("echo", payload));
    payloads.push_back(std::move(payload));
  }
  for (int i = 0; i < tasks; ++i) {
    absl::StatusOr<std::string> result = futures[i].Result(absl::Seconds(60));
    if (!result.ok()) return Fail(absl::StrCat("echo task ", i, ": ", result.status().ToString()));
    if (*result != payloads[i]) return Fail(absl::StrCat("echo task ", i, " came back changed"));
  }
  std::printf("multihost_client: %d echo tasks came back right\n", tasks);
  (*executor)->Shutdown();
  std::printf("multihost_client: PASS: workers on %s\n", absl::StrJoin(seen, ",").c_str());
  return 0;
}
