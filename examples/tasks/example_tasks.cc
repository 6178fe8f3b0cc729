// The example task library: functions a pool gains with `mpigate-server --task-lib
// libmpigate_examples.so`. Typed functions take and return the messages of
// examples/tasks/examples.proto; examples_client.cc calls them.
//
//   examples.pi            Monte Carlo estimate of pi (seeded; interruptible; reports progress)
//   examples.trajectories  a seeded batch of Langevin oscillator trajectories, summed per step
//   examples.integrate     a definite integral by the trapezoid or Simpson rule
//   examples.word_count    bytes in, bytes out; throws a C++ exception on input that isn't UTF-8
//
// Every name starts with "examples.": names are unique across the pool's libraries.
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
#include "worker/task.h"

namespace mpigate::examples {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Work done between two looks at the cancellation flag and two progress reports: a few
// milliseconds, so that an interrupt is heard at once and progress costs nothing.
constexpr uint64_t kPiSamplesPerChunk = uint64_t{1} << 20;
constexpr int64_t kIntegrandPointsPerChunk = int64_t{1} << 20;

constexpr uint32_t kMaxSteps = 1000000;

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

absl::Status ValidateTrajectories(const TrajectoriesRequest& request) {
  if (request.count() < 1) return absl::InvalidArgumentError("count must be at least 1");
  if (request.steps() < 1 || request.steps() > kMaxSteps) {
    return absl::InvalidArgumentError(absl::StrCat("steps must be 1 to ", kMaxSteps));
  }
  if (!(request.dt() > 0) || !std::isfinite(request.dt())) {
    return absl::InvalidArgumentError("dt must be positive");
  }
  if (!(request.frequency() > 0) || !std::isfinite(request.frequency())) {
    return absl::InvalidArgumentError("frequency must be positive");
  }
  if (!(request.friction() >= 0) || !std::isfinite(request.friction())) {
    return absl::InvalidArgumentError("friction must be zero or positive");
  }
  if (!(request.temperature() >= 0) || !std::isfinite(request.temperature())) {
    return absl::InvalidArgumentError("temperature must be zero or positive");
  }
  if (!std::isfinite(request.initial_position())) {
    return absl::InvalidArgumentError("initial_position must be finite");
  }
  return absl::OkStatus();
}

// Underdamped Langevin dynamics, dv = -w^2 x dt - gamma v dt + sqrt(2 gamma kT) dW, integrated
// with the BAOAB splitting (Leimkuhler and Matthews), which samples the thermal distribution
// accurately at large steps: half kick, half drift, exact friction and noise, half drift, half
// kick.
absl::StatusOr<TrajectoriesResponse> RunTrajectories(const TaskContext& context,
                                                     const TrajectoriesRequest& request) {
  if (absl::Status valid = ValidateTrajectories(request); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("examples.trajectories: ", valid.message()));
  }
  const uint32_t steps = request.steps();
  const double dt = request.dt();
  const double w2 = request.frequency() * request.frequency();
  const double damping = std::exp(-request.friction() * dt);
  const double noise = std::sqrt((1.0 - damping * damping) * request.temperature());
  const double thermal_speed = std::sqrt(request.temperature());

  std::vector<double> position_sum(steps + 1, 0.0);
  std::vector<double> energy_sum(steps + 1, 0.0);
  for (uint32_t n = 0; n < request.count(); ++n) {
    if (context.cancelled()) {
      return absl::CancelledError(absl::StrCat("examples.trajectories: interrupted after ", n,
                                               " of ", request.count(), " trajectories"));
    }
    std::mt19937_64 generator = TrajectoryGenerator(request.seed(), request.first_index() + n);
    Normal normal(generator);
    double x = request.initial_position();
    double v = thermal_speed * normal.Next();
    for (uint32_t k = 0;; ++k) {
      position_sum[k] += x;
      energy_sum[k] += 0.5 * v * v + 0.5 * w2 * x * x;
      if (k == steps) break;
      v -= 0.5 * dt * w2 * x;
      x += 0.5 * dt * v;
      v = damping * v + noise * normal.Next();
      x += 0.5 * dt * v;
      v -= 0.5 * dt * w2 * x;
    }
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
MPIGATE_TASK("examples.integrate",
             "Integral of sin, the normal density or a polynomial over [a, b] by the trapezoid or "
             "Simpson rule.",
             mpigate::examples::Integrate);
MPIGATE_TASK("examples.word_count",
             "Bytes: UTF-8 text in, its number of words in decimal out; throws "
             "std::invalid_argument on input that is not UTF-8.",
             mpigate::examples::CountWords);
