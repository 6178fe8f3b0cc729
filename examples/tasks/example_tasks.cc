// The example task library: functions a pool gains with `mpigate-server --task-lib
// libmpigate_examples.so`. Typed functions take and return the messages of
// examples/tasks/examples.proto; examples_client.cc calls them.
//
//   examples.pi               Monte Carlo estimate of pi (seeded; interruptible; reports progress)
//   examples.trajectories     a seeded batch of Langevin oscillator trajectories, summed per step
//   examples.trajectory       one such trajectory per item of a seeded range map
//   examples.allreduce_sum    gang: each rank sums its own share, MPI_Allreduce adds them
//   examples.power_iteration  gang: largest eigenvalue, each rank owning rows, MPI_Allgatherv
//                             (interruptible; reports progress)
//   examples.integrate        a definite integral by the trapezoid or Simpson rule
//   examples.word_count       bytes in, bytes out; throws a C++ exception on input that isn't UTF-8
//
// Gang functions (worker/gang.h) run on several workers at once with a communicator of their own:
// submit them with a gang size (SubmitOptions::gang_size).
//
// Every name starts with "examples.": names are unique across the pool's libraries.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "examples/tasks/examples.pb.h"
#include "worker/gang.h"
#include "worker/task.h"

namespace mpigate::examples {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Work done between two looks at the cancellation flag and two progress reports: a few
// milliseconds, so that an interrupt is heard at once and progress costs nothing.
constexpr uint64_t kPiSamplesPerChunk = uint64_t{1} << 20;
constexpr int64_t kIntegrandPointsPerChunk = int64_t{1} << 20;

constexpr uint32_t kMaxSteps = 1000000;

// Bounds that keep a gang example's arithmetic exact and its memory small: a sum of 0 .. n - 1
// below 2^63, and a vector of 80 MB on each rank.
constexpr uint64_t kMaxSumLength = uint64_t{1} << 32;
constexpr uint64_t kMaxMatrixSize = 10000000;
// Iterations between two progress reports of examples.power_iteration.
constexpr uint32_t kIterationsPerProgressReport = 256;

// A uniform number in [0, 1) from the top 53 bits of one draw. Written out, as is Normal below,
// because the standard distributions' algorithms are the library's choice: results for a seed
// would differ between standard libraries.
double Uniform(std::mt19937_64& generator) {
  return static_cast<double>(generator() >> 11) * 0x1.0p-53;
}

// Standard normal numbers by the Box-Muller transform, two per pair of uniform draws.
class Normal {
 public:
  explicit Normal(std::mt19937_64& generator) : generator_(generator) {}

  double Next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double radius = std::sqrt(-2.0 * std::log(1.0 - Uniform(generator_)));  // 1 - u > 0.
    const double angle = 2.0 * kPi * Uniform(generator_);
    spare_ = radius * std::sin(angle);
    has_spare_ = true;
    return radius * std::cos(angle);
  }

 private:
  std::mt19937_64& generator_;
  double spare_ = 0;
  bool has_spare_ = false;
};

// The generator of trajectory `index` of the ensemble `seed`: its numbers depend on the pair
// alone, not on the batch the trajectory runs in (QC Lab's seeds per trajectory).
std::mt19937_64 TrajectoryGenerator(uint64_t seed, uint64_t index) {
  std::seed_seq sequence{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                         static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32)};
  return std::mt19937_64(sequence);
}

absl::StatusOr<PiResponse> EstimatePi(const TaskContext& context, const PiRequest& request) {
  const uint64_t samples = request.samples();
  if (samples == 0) return absl::InvalidArgumentError("examples.pi: samples must be at least 1");
  std::mt19937_64 generator(request.seed());
  uint64_t inside = 0;
  for (uint64_t done = 0; done < samples;) {
    if (context.cancelled()) {
      return absl::CancelledError(
          absl::StrCat("examples.pi: interrupted after ", done, " of ", samples, " samples"));
    }
    const uint64_t chunk_end = done + std::min(kPiSamplesPerChunk, samples - done);
    for (; done < chunk_end; ++done) {
      const double x = Uniform(generator);
      const double y = Uniform(generator);
      if (x * x + y * y < 1.0) ++inside;
    }
    context.ReportProgress(static_cast<double>(done) / static_cast<double>(samples),
                           absl::StrCat(done, " of ", samples, " samples"));
  }
  PiResponse response;
  response.set_estimate(4.0 * static_cast<double>(inside) / static_cast<double>(samples));
  response.set_inside(inside);
  response.set_samples(samples);
  return response;
}

// What a trajectory is made of, shared by examples.trajectories and examples.trajectory.
struct Oscillator {
  uint32_t steps = 0;
  double dt = 0;
  double frequency = 0;
  double friction = 0;
  double temperature = 0;
  double initial_position = 0;
};

// From a TrajectoriesRequest or a TrajectoryRequest, which name the fields alike.
template <typename Request>
Oscillator OscillatorOf(const Request& request) {
  return {request.steps(),    request.dt(),          request.frequency(),
          request.friction(), request.temperature(), request.initial_position()};
}

absl::Status Validate(const Oscillator& oscillator) {
  if (oscillator.steps < 1 || oscillator.steps > kMaxSteps) {
    return absl::InvalidArgumentError(absl::StrCat("steps must be 1 to ", kMaxSteps));
  }
  if (!(oscillator.dt > 0) || !std::isfinite(oscillator.dt)) {
    return absl::InvalidArgumentError("dt must be positive");
  }
  if (!(oscillator.frequency > 0) || !std::isfinite(oscillator.frequency)) {
    return absl::InvalidArgumentError("frequency must be positive");
  }
  if (!(oscillator.friction >= 0) || !std::isfinite(oscillator.friction)) {
    return absl::InvalidArgumentError("friction must be zero or positive");
  }
  if (!(oscillator.temperature >= 0) || !std::isfinite(oscillator.temperature)) {
    return absl::InvalidArgumentError("temperature must be zero or positive");
  }
  if (!std::isfinite(oscillator.initial_position)) {
    return absl::InvalidArgumentError("initial_position must be finite");
  }
  return absl::OkStatus();
}

// Runs one trajectory of underdamped Langevin dynamics, dv = -w^2 x dt - gamma v dt +
// sqrt(2 gamma kT) dW, drawing from `generator`, and adds its position and energy at step k to
// position_sum[k] and energy_sum[k] (steps + 1 entries each). Integrated with the BAOAB splitting
// (Leimkuhler and Matthews), which samples the thermal distribution accurately at large steps:
// half kick, half drift, exact friction and noise, half drift, half kick.
void AddTrajectory(const Oscillator& oscillator, std::mt19937_64& generator,
                   std::vector<double>& position_sum, std::vector<double>& energy_sum) {
  const double dt = oscillator.dt;
  const double w2 = oscillator.frequency * oscillator.frequency;
  const double damping = std::exp(-oscillator.friction * dt);
  const double noise = std::sqrt((1.0 - damping * damping) * oscillator.temperature);
  Normal normal(generator);
  double x = oscillator.initial_position;
  double v = std::sqrt(oscillator.temperature) * normal.Next();
  for (uint32_t k = 0;; ++k) {
    position_sum[k] += x;
    energy_sum[k] += 0.5 * v * v + 0.5 * w2 * x * x;
    if (k == oscillator.steps) break;
    v -= 0.5 * dt * w2 * x;
    x += 0.5 * dt * v;
    v = damping * v + noise * normal.Next();
    x += 0.5 * dt * v;
    v -= 0.5 * dt * w2 * x;
  }
}

absl::StatusOr<TrajectoriesResponse> RunTrajectories(const TaskContext& context,
                                                     const TrajectoriesRequest& request) {
  const Oscillator oscillator = OscillatorOf(request);
  absl::Status valid = request.count() < 1 ? absl::InvalidArgumentError("count must be at least 1")
                                           : Validate(oscillator);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("examples.trajectories: ", valid.message()));
  }
  std::vector<double> position_sum(oscillator.steps + 1, 0.0);
  std::vector<double> energy_sum(oscillator.steps + 1, 0.0);
  for (uint32_t n = 0; n < request.count(); ++n) {
    if (context.cancelled()) {
      return absl::CancelledError(absl::StrCat("examples.trajectories: interrupted after ", n,
                                               " of ", request.count(), " trajectories"));
    }
    std::mt19937_64 generator = TrajectoryGenerator(request.seed(), request.first_index() + n);
    AddTrajectory(oscillator, generator, position_sum, energy_sum);
    context.ReportProgress((n + 1.0) / request.count(),
                           absl::StrCat("trajectory ", n + 1, " of ", request.count()));
  }
  TrajectoriesResponse response;
  response.set_first_index(request.first_index());
  response.set_count(request.count());
  response.mutable_position_sum()->Add(position_sum.begin(), position_sum.end());
  response.mutable_energy_sum()->Add(energy_sum.begin(), energy_sum.end());
  return response;
}

// One item of a seeded range map: its generator is seeded with the item's seed alone (QC Lab's
// seed per trajectory), which the map derives from its base seed and the item's index.
absl::StatusOr<TrajectoriesResponse> RunTrajectory(const TaskContext& context,
                                                   const TrajectoryRequest& request) {
  const Oscillator oscillator = OscillatorOf(request);
  if (absl::Status valid = Validate(oscillator); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("examples.trajectory: ", valid.message()));
  }
  std::vector<double> position(oscillator.steps + 1, 0.0);
  std::vector<double> energy(oscillator.steps + 1, 0.0);
  std::mt19937_64 generator(context.item_seed());
  AddTrajectory(oscillator, generator, position, energy);
  TrajectoriesResponse response;
  response.set_first_index(context.item_index());
  response.set_count(1);
  response.mutable_position_sum()->Add(position.begin(), position.end());
  response.mutable_energy_sum()->Add(energy.begin(), energy.end());
  return response;
}

double Evaluate(const IntegrateRequest& request, double x) {
  switch (request.integrand()) {
    case IntegrateRequest::INTEGRAND_SIN:
      return std::sin(x);
    case IntegrateRequest::INTEGRAND_GAUSSIAN:
      return std::exp(-0.5 * x * x) / std::sqrt(2.0 * kPi);
    case IntegrateRequest::INTEGRAND_POLYNOMIAL: {
      double value = 0;  // Horner's rule, highest power first.
      for (int i = request.coefficients_size() - 1; i >= 0; --i) {
        value = value * x + request.coefficients(i);
      }
      return value;
    }
    default:
      return 0;  // Refused by Integrate before it gets here.
  }
}

absl::StatusOr<IntegrateResponse> Integrate(const TaskContext& context,
                                            const IntegrateRequest& request) {
  const auto invalid = [](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("examples.integrate: ", why));
  };
  if (!IntegrateRequest::Integrand_IsValid(request.integrand()) ||
      request.integrand() == IntegrateRequest::INTEGRAND_UNSPECIFIED) {
    return invalid("no integrand");
  }
  if (request.integrand() == IntegrateRequest::INTEGRAND_POLYNOMIAL &&
      request.coefficients_size() == 0) {
    return invalid("a polynomial needs at least one coefficient");
  }
  if (request.method() != IntegrateRequest::METHOD_TRAPEZOID &&
      request.method() != IntegrateRequest::METHOD_SIMPSON) {
    return invalid("no method");
  }
  if (!std::isfinite(request.a()) || !std::isfinite(request.b())) {
    return invalid("the bounds must be finite");
  }
  const int64_t n = request.intervals();
  if (n < 1) return invalid(absl::StrCat("intervals must be at least 1, not ", n));
  const bool simpson = request.method() == IntegrateRequest::METHOD_SIMPSON;
  if (simpson && n % 2 != 0) {
    return invalid(absl::StrCat("Simpson's rule needs an even number of intervals, not ", n));
  }

  // Composite rules: end points weigh 1; inner points 2 (trapezoid) or 4 and 2 in turn (Simpson).
  const double a = request.a();
  const double h = (request.b() - a) / static_cast<double>(n);
  double sum = Evaluate(request, a) + Evaluate(request, request.b());
  for (int64_t i = 1; i < n; ++i) {
    if (i % kIntegrandPointsPerChunk == 0) {
      if (context.cancelled()) return absl::CancelledError("examples.integrate: interrupted");
      context.ReportProgress(static_cast<double>(i) / static_cast<double>(n));
    }
    const double weight = simpson ? (i % 2 == 1 ? 4.0 : 2.0) : 2.0;
    sum += weight * Evaluate(request, a + static_cast<double>(i) * h);
  }
  IntegrateResponse response;
  response.set_value(simpson ? sum * h / 3.0 : sum * h / 2.0);
  response.set_intervals(n);
  return response;
}

// The share of [0, n) that gang rank `rank` of `size` owns: contiguous, and at most one longer than
// another rank's.
struct Share {
  uint64_t first = 0;
  uint64_t last = 0;  // One past the end.
};

Share ShareOf(uint64_t n, int rank, int size) {
  return {n * static_cast<uint64_t>(rank) / static_cast<uint64_t>(size),
          n * static_cast<uint64_t>(rank + 1) / static_cast<uint64_t>(size)};
}

// Every rank gets the same request, so every rank refuses a bad one before any collective call.
absl::StatusOr<AllreduceSumResponse> AllreduceSum(const GangContext& gang,
                                                  const AllreduceSumRequest& request) {
  if (request.n() > kMaxSumLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("examples.allreduce_sum: n must be at most ", kMaxSumLength));
  }
  // This rank's slice of the array 0, 1, ..., n - 1, made here rather than sent: only the sums
  // travel.
  const Share share = ShareOf(request.n(), gang.gang_rank(), gang.gang_size());
  uint64_t mine = 0;
  for (uint64_t value = share.first; value < share.last; ++value) mine += value;
  uint64_t total = 0;
  if (const int rc = MPI_Allreduce(&mine, &total, 1, MPI_UINT64_T, MPI_SUM, gang.comm());
      rc != MPI_SUCCESS) {
    return absl::InternalError(
        absl::StrCat("examples.allreduce_sum: MPI_Allreduce failed with code ", rc));
  }
  AllreduceSumResponse response;
  response.set_total(total);
  response.set_n(request.n());
  response.set_gang_size(static_cast<uint32_t>(gang.gang_size()));
  return response;
}

// Rows `share` of the n x n matrix tridiag(-1, 2, -1) in compressed sparse row form: built from
// the formula by the rank that owns them, never shipped.
struct Rows {
  Share share;
  std::vector<size_t> starts;  // Row r's entries are starts[r] .. starts[r + 1] - 1.
  std::vector<uint64_t> columns;
  std::vector<double> values;
};

Rows LaplacianRows(uint64_t n, Share share) {
  Rows rows;
  rows.share = share;
  rows.starts.push_back(0);
  for (uint64_t i = share.first; i < share.last; ++i) {
    if (i > 0) {
      rows.columns.push_back(i - 1);
      rows.values.push_back(-1.0);
    }
    rows.columns.push_back(i);
    rows.values.push_back(2.0);
    if (i + 1 < n) {
      rows.columns.push_back(i + 1);
      rows.values.push_back(-1.0);
    }
    rows.starts.push_back(rows.columns.size());
  }
  return rows;
}

// MPI_Allreduce with MPI_SUM of `count` doubles over the gang.
absl::Status SumOverGang(const GangContext& gang, const double* mine, double* total, int count) {
  const int rc = MPI_Allreduce(mine, total, count, MPI_DOUBLE, MPI_SUM, gang.comm());
  return rc == MPI_SUCCESS ? absl::OkStatus()
                           : absl::InternalError(absl::StrCat(
                                 "examples.power_iteration: MPI_Allreduce failed with code ", rc));
}

absl::StatusOr<PowerIterationResponse> PowerIteration(const GangContext& gang,
                                                      const PowerIterationRequest& request) {
  // Every rank gets the same request, so every rank refuses a bad one before any collective call.
  const auto invalid = [](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("examples.power_iteration: ", why));
  };
  const uint64_t n = request.n();
  if (n < 1 || n > kMaxMatrixSize) return invalid(absl::StrCat("n must be 1 to ", kMaxMatrixSize));
  if (request.max_iterations() < 1) return invalid("max_iterations must be at least 1");
  if (!(request.tolerance() > 0) || !std::isfinite(request.tolerance())) {
    return invalid("tolerance must be positive");
  }
  const int size = gang.gang_size();
  std::vector<int> counts(static_cast<size_t>(size));
  std::vector<int> offsets(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) {
    const Share share = ShareOf(n, r, size);
    offsets[r] = static_cast<int>(share.first);
    counts[r] = static_cast<int>(share.last - share.first);
  }
  const Rows rows = LaplacianRows(n, ShareOf(n, gang.gang_rank(), size));
  const uint64_t first = rows.share.first;
  const size_t owned = rows.share.last - first;

  // Every rank holds the whole vector, which its rows need. The start, 1, 2, ..., n, is not
  // symmetric about the middle, so it has a part along the top eigenvector whatever n's parity.
  std::vector<double> x(n);
  double start_norm = 0;
  for (uint64_t i = 0; i < n; ++i) {
    x[i] = static_cast<double>(i + 1);
    start_norm += x[i] * x[i];
  }
  for (double& value : x) value /= std::sqrt(start_norm);

  std::vector<double> y(owned);
  PowerIterationResponse response;
  response.set_gang_size(static_cast<uint32_t>(size));
  response.set_exact(2.0 + 2.0 * std::cos(kPi / static_cast<double>(n + 1)));
  for (uint32_t iteration = 1; iteration <= request.max_iterations(); ++iteration) {
    if (gang.AnyCancelled()) {
      return absl::CancelledError(absl::StrCat("examples.power_iteration: interrupted after ",
                                               iteration - 1, " iterations"));
    }
    // y = Ax on the owned rows, then sums over the ranks: x'Ax and |Ax|^2 in one call, and once
    // x'Ax is known |Ax - x'Ax x|^2 in another. (Computed as |Ax|^2 - (x'Ax)^2 it would cancel
    // to rounding noise just when it matters.)
    double local[2] = {0, 0};
    for (size_t r = 0; r < owned; ++r) {
      double sum = 0;
      for (size_t e = rows.starts[r]; e < rows.starts[r + 1]; ++e) {
        sum += rows.values[e] * x[rows.columns[e]];
      }
      y[r] = sum;
      local[0] += x[first + r] * sum;
      local[1] += sum * sum;
    }
    double global[2] = {0, 0};
    if (absl::Status status = SumOverGang(gang, local, global, 2); !status.ok()) return status;
    const double eigenvalue = global[0];
    const double norm = std::sqrt(global[1]);
    double local_residual = 0;
    for (size_t r = 0; r < owned; ++r) {
      const double difference = y[r] - eigenvalue * x[first + r];
      local_residual += difference * difference;
    }
    double residual = 0;
    if (absl::Status status = SumOverGang(gang, &local_residual, &residual, 1); !status.ok()) {
      return status;
    }
    residual = std::sqrt(residual);
    response.set_eigenvalue(eigenvalue);
    response.set_residual(residual);
    response.set_iterations(iteration);
    if (residual <= request.tolerance() * eigenvalue) {
      response.set_converged(true);
      break;
    }
    for (double& value : y) value /= norm;
    if (const int rc = MPI_Allgatherv(y.data(), static_cast<int>(owned), MPI_DOUBLE, x.data(),
                                      counts.data(), offsets.data(), MPI_DOUBLE, gang.comm());
        rc != MPI_SUCCESS) {
      return absl::InternalError(
          absl::StrCat("examples.power_iteration: MPI_Allgatherv failed: ", rc));
    }
    if (gang.gang_rank() == 0 && iteration % kIterationsPerProgressReport == 0) {
      gang.ReportProgress(static_cast<double>(iteration) / request.max_iterations(),
                          absl::StrCat("iteration ", iteration, ", residual ", residual));
    }
  }
  return response;
}

// The first byte of `text` that does not start a well-formed UTF-8 sequence (lead byte and its
// continuation bytes), or npos.
size_t FirstInvalidUtf8(absl::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const size_t length = lead < 0x80           ? 1
                          : (lead >> 5) == 0x6  ? 2
                          : (lead >> 4) == 0xE  ? 3
                          : (lead >> 3) == 0x1E ? 4
                                                : 0;
    if (length == 0 || length > text.size() - i) return i;
    for (size_t k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return i;
    }
    i += length;
  }
  return absl::string_view::npos;
}

// A function of bytes: text in, its number of words (runs of non-space characters) out, in
// decimal. It throws on input that is not UTF-8, to show what an escaping exception does: the
// task fails with code UNKNOWN, the exception's message, and its type (std::invalid_argument).
// Returning absl::InvalidArgumentError would be the better manners; the worker survives either.
absl::StatusOr<std::string> CountWords(const TaskContext&, absl::string_view text) {
  if (const size_t bad = FirstInvalidUtf8(text); bad != absl::string_view::npos) {
    throw std::invalid_argument(
        absl::StrCat("examples.word_count: the input is not UTF-8 text (byte ", bad, ")"));
  }
  uint64_t words = 0;
  bool in_word = false;
  for (const char c : text) {
    const bool space = absl::ascii_isspace(static_cast<unsigned char>(c));
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return absl::StrCat(words);
}

}  // namespace
}  // namespace mpigate::examples

MPIGATE_TASK("examples.pi",
             "Monte Carlo estimate of pi from `samples` points drawn with `seed`; interruptible.",
             mpigate::examples::EstimatePi);
MPIGATE_TASK("examples.trajectories",
             "A batch of seeded Langevin trajectories of a damped oscillator: per-step sums of "
             "position and energy, so batches combine by addition.",
             mpigate::examples::RunTrajectories);
MPIGATE_TASK("examples.trajectory",
             "One seeded Langevin trajectory of the oscillator, as an item of a seeded range map: "
             "the same for the same base seed and index whatever the batches.",
             mpigate::examples::RunTrajectory);
MPIGATE_GANG_TASK("examples.allreduce_sum",
                  "Gang: every rank adds its own share of 0 .. n - 1 and MPI_Allreduce sums them: "
                  "n (n - 1) / 2.",
                  mpigate::examples::AllreduceSum);
MPIGATE_GANG_TASK(
    "examples.power_iteration",
    "Gang: the largest eigenvalue of the n x n 1-D Laplacian by power iteration, each "
    "rank building and multiplying its own rows; interruptible.",
    mpigate::examples::PowerIteration);
MPIGATE_TASK("examples.integrate",
             "Integral of sin, the normal density or a polynomial over [a, b] by the trapezoid or "
             "Simpson rule.",
             mpigate::examples::Integrate);
MPIGATE_TASK("examples.word_count",
             "Bytes: UTF-8 text in, its number of words in decimal out; throws "
             "std::invalid_argument on input that is not UTF-8.",
             mpigate::examples::CountWords);
