// gang_loss_client: the client side of multihost_spawn_loss_test.sh's gang scenario, run in a
// network namespace of its own against a 2-worker pool whose workers run on two other hosts.
//
//   gang_loss_client --endpoint=HOST:PORT
//
// 1. Runs sample.gang_crash over both workers with input "1": gang rank 1 aborts its worker while
//    rank 0 waits for it in a barrier. The gang must fail ABORTED, saying the worker was lost and
//    how the MPI runtime says it ended (the gateway cannot see its pid nor hear its heartbeats).
// 2. Runs sample.gang_info over both workers: it runs only once both are in service again, in one
//    MPI job, so it passes only if the pool healed (its rank 0 released and both replaced).
// The bearer token, when the service requires one, comes from $MPIGATE_TOKEN (ExecutorOptions).
// Prints what it saw; exits 0 if all matched, 1 otherwise.
#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "client/executor.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "gang_loss_client: FAIL: %s\n", message.c_str());
  return 1;
}

// Far beyond a loss seen within a second and a replacement job spawned within a few.
constexpr absl::Duration kPatience = absl::Seconds(90);

}  // namespace

int main(int argc, char** argv) {
  std::string endpoint;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (!absl::ConsumePrefix(&arg, "--endpoint=")) {
      std::fprintf(stderr, "usage: gang_loss_client --endpoint=HOST:PORT\n");
      return 2;
    }
    endpoint = std::string(arg);
  }
  if (endpoint.empty()) return Fail("--endpoint is required");
  mpigate::ExecutorOptions options;
  options.endpoint = endpoint;
  options.client_name = "gang_loss_client";
  options.connect_timeout = absl::Seconds(30);
  absl::StatusOr<std::unique_ptr<mpigate::Executor>> executor = mpigate::Executor::Connect(options);
  if (!executor.ok()) return Fail(absl::StrCat("connect: ", executor.status().ToString()));
  if (absl::Status up = (*executor)->Bootup(); !up.ok()) {
    return Fail(absl::StrCat("bootup: ", up.ToString()));
  }
  mpigate::SubmitOptions gang;
  gang.gang_size = 2;

  const absl::Status crashed =
      (*executor)->Submit("sample.gang_crash", "1", gang).Exception(kPatience);
  std::printf("gang_loss_client: the gang ended: %s\n", crashed.ToString().c_str());
  if (crashed.code() != absl::StatusCode::kAborted ||
      !absl::StrContains(crashed.message(), "gang rank 1") ||
      !absl::StrContains(crashed.message(), "was lost: the MPI runtime says it")) {
    return Fail("the gang did not fail ABORTED with gang rank 1's loss, as the runtime saw it");
  }

  absl::StatusOr<std::string> info =
      (*executor)->Submit("sample.gang_info", "", gang).Result(kPatience);
  if (!info.ok()) return Fail(absl::StrCat("the next gang: ", info.status().ToString()));
  std::printf("gang_loss_client: the next gang: %s\n", info->c_str());
  if (*info != "gang_size=2 workers=0,1") return Fail("the next gang did not span both workers");
  (*executor)->Shutdown();
  std::printf("gang_loss_client: PASS\n");
  return 0;
}
