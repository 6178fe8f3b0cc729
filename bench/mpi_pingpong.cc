// mpi_pingpong: the MPI floor of a round trip, for bench/compare.py's table. Two processes of the
// MPI library the build links, and nothing else: one sends a small message, the other sends it
// back, one at a time; the first times each round trip and prints compare.py's lines
// `floor_mpi,p50,VALUE,us` and `floor_mpi,p99,VALUE,us`. The two are connected as a pool's
// gateway and workers are: a world of two, as in world mode (MPICH's pools), or, with --spawn, a
// process and the one it spawned, over their intercommunicator, as Open MPI's pools are made
// (Open MPI 4.1 joins processes of different jobs with its TCP transport, not shared memory):
//
//   mpiexec -n 2 bazel-bin/bench/mpi_pingpong --pings=2000
//   mpiexec -n 1 bazel-bin/bench/mpi_pingpong --spawn --pings=2000
//
// `bazel-bin/server/mpigate-server --mpi_launcher` names the launcher. Both wait in blocking
// calls, which Open MPI and MPICH busy-poll: the floor of a hop between two processes that each
// have a core, what mpigate's gateway and workers pay at least per message between them.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "mpi.h"

ABSL_FLAG(int, pings, 2000, "Round trips timed (after --warmup untimed ones).");
ABSL_FLAG(int, warmup, 1000, "Round trips before the timed ones.");
ABSL_FLAG(int, bytes, 8, "The message's size.");
ABSL_FLAG(bool, spawn, false,
          "Run as a job of one process that spawns its partner (MPI_Comm_spawn), as an Open MPI "
          "pool's gateway spawns its workers; else a job of two.");

namespace {

constexpr int kTag = 1;

double Percentile(std::vector<double> values, double fraction) {
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(fraction * static_cast<double>(values.size() - 1))];
}

// This program's own path, for MPI_Comm_spawn (argv[0] may be relative to another directory).
std::string SelfPath() {
  std::string path(4096, '\0');
  const ssize_t length = readlink("/proc/self/exe", path.data(), path.size());
  path.resize(length > 0 ? static_cast<size_t>(length) : 0);
  return path;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  absl::ParseCommandLine(argc, argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int pings = absl::GetFlag(FLAGS_pings);
  const int warmup = absl::GetFlag(FLAGS_warmup);
  const int bytes = absl::GetFlag(FLAGS_bytes);
  MPI_Comm parent = MPI_COMM_NULL;
  MPI_Comm_get_parent(&parent);
  const bool spawn = absl::GetFlag(FLAGS_spawn) && parent == MPI_COMM_NULL;
  if (size != (spawn || parent != MPI_COMM_NULL ? 1 : 2) || pings < 1 || warmup < 0 || bytes < 0) {
    if (rank == 0) {
      std::fprintf(stderr,
                   "mpi_pingpong: needs exactly 2 processes (1 with --spawn; got %d), --pings >= "
                   "1, --warmup >= 0 and --bytes >= 0\n",
                   size);
    }
    MPI_Finalize();
    return 2;
  }
  // The partner: the other rank of the world, or the other end of the spawn's intercommunicator.
  MPI_Comm comm = MPI_COMM_WORLD;
  int partner = 1 - rank;
  if (spawn) {
    const std::string self = SelfPath();
    std::vector<std::string> flags = {absl::StrCat("--pings=", pings),
                                      absl::StrCat("--warmup=", warmup),
                                      absl::StrCat("--bytes=", bytes)};
    std::vector<char*> child_argv;
    for (std::string& flag : flags) child_argv.push_back(flag.data());
    child_argv.push_back(nullptr);
    MPI_Comm_spawn(self.c_str(), child_argv.data(), 1, MPI_INFO_NULL, 0, MPI_COMM_SELF, &comm,
                   MPI_ERRCODES_IGNORE);
    partner = 0;
  } else if (parent != MPI_COMM_NULL) {
    comm = parent;
    partner = 0;
  }
  const bool pinger = parent == MPI_COMM_NULL && rank == 0;
  std::vector<char> message(static_cast<size_t>(bytes), 'p');
  std::vector<double> us;
  us.reserve(static_cast<size_t>(pings));
  for (int i = -warmup; i < pings; ++i) {
    if (pinger) {
      const absl::Time start = absl::Now();
      MPI_Send(message.data(), bytes, MPI_CHAR, partner, kTag, comm);
      MPI_Recv(message.data(), bytes, MPI_CHAR, partner, kTag, comm, MPI_STATUS_IGNORE);
      if (i >= 0) us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    } else {
      MPI_Recv(message.data(), bytes, MPI_CHAR, partner, kTag, comm, MPI_STATUS_IGNORE);
      MPI_Send(message.data(), bytes, MPI_CHAR, partner, kTag, comm);
    }
  }
  if (pinger) {
    std::printf("floor_mpi,p50,%.2f,us\nfloor_mpi,p99,%.2f,us\n", Percentile(us, 0.5),
                Percentile(us, 0.99));
  }
  if (comm != MPI_COMM_WORLD) MPI_Comm_disconnect(&comm);
  MPI_Finalize();
  return 0;
}
