// mpi_pingpong: the MPI floor of a round trip, for bench/compare.py's table. Two processes of the
// MPI library the build links, and nothing else: rank 0 sends a small message, rank 1 sends it
// back, one at a time; rank 0 times each round trip and prints compare.py's lines
// `floor_mpi,p50,VALUE,us` and `floor_mpi,p99,VALUE,us`. Run under that library's launcher:
//
//   mpiexec -n 2 bazel-bin/bench/mpi_pingpong --pings=2000
//
// `bazel-bin/server/mpigate-server --mpi_launcher` names the launcher. Both ranks wait in blocking
// calls, which Open MPI and MPICH busy-poll: the floor of a hop between two processes that each
// have a core, what mpigate's gateway and workers pay at least per message between them.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "mpi.h"

ABSL_FLAG(int, pings, 2000, "Round trips timed (after --warmup untimed ones).");
ABSL_FLAG(int, warmup, 1000, "Round trips before the timed ones.");
ABSL_FLAG(int, bytes, 8, "The message's size.");

namespace {

constexpr int kTag = 1;

double Percentile(std::vector<double> values, double fraction) {
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(fraction * static_cast<double>(values.size() - 1))];
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
  if (size != 2 || pings < 1 || warmup < 0 || bytes < 0) {
    if (rank == 0) {
      std::fprintf(stderr,
                   "mpi_pingpong: needs exactly 2 processes (got %d), --pings >= 1, "
                   "--warmup >= 0 and --bytes >= 0\n",
                   size);
    }
    MPI_Finalize();
    return 2;
  }
  std::vector<char> message(static_cast<size_t>(bytes), 'p');
  std::vector<double> us;
  us.reserve(static_cast<size_t>(pings));
  for (int i = -warmup; i < pings; ++i) {
    if (rank == 0) {
      const absl::Time start = absl::Now();
      MPI_Send(message.data(), bytes, MPI_CHAR, 1, kTag, MPI_COMM_WORLD);
      MPI_Recv(message.data(), bytes, MPI_CHAR, 1, kTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (i >= 0) us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    } else {
      MPI_Recv(message.data(), bytes, MPI_CHAR, 0, kTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(message.data(), bytes, MPI_CHAR, 0, kTag, MPI_COMM_WORLD);
    }
  }
  if (rank == 0) {
    std::printf("floor_mpi,p50,%.2f,us\nfloor_mpi,p99,%.2f,us\n", Percentile(us, 0.5),
                Percentile(us, 0.99));
  }
  MPI_Finalize();
  return 0;
}
