// Typed tasks: submit Protobuf messages to functions registered with request and response types
// (MPIGATE_TASK with a typed function, see worker/task.h), and get decoded responses back.
//
//   mpigate::v1::ExecRequest request;
//   request.add_argv("hostname");
//   mpigate::TypedFuture<mpigate::v1::ExecResponse> future =
//       mpigate::SubmitTyped<mpigate::v1::ExecResponse>(*executor, "exec", request);
//   absl::StatusOr<mpigate::v1::ExecResponse> response = future.Result();
//
//   for (absl::StatusOr<PiResponse> r : mpigate::MapTyped<PiResponse>(*executor, "pi", requests)) {
//     ...
//   }
//
//   // One request for a whole seeded ensemble: item i runs with seed ItemSeed(7, i).
//   mpigate::RangeOptions range = {.count = 1000, .batch_size = 50, .base_seed = 7};
//   for (absl::StatusOr<WalkResponse> r :
//        mpigate::MapRangeTyped<WalkResponse>(*executor, "walk", request, range)) {
//     ...
//   }
//
// Each task carries its request's full type name (TaskSpec.payload_type), so the service rejects
// a request of the wrong type with INVALID_ARGUMENT before it reaches a worker. A result that does
// not parse as the expected response yields INTERNAL "... is not a valid <type>". Everything else
// (states, errors, Cancel, Interrupt, callbacks, progress) is the underlying Future's; see
// client/future.h and client/map_results.h. Executor::ListFunctions() lists each function's types.
//
// Thread-safety: as Future (TypedFuture: cheap to copy, any thread) and MapResults
// (TypedMapResults: movable, one reader at a time).
#ifndef MPIGATE_CLIENT_TYPED_H_
#define MPIGATE_CLIENT_TYPED_H_

#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "client/internal/next_iterator.h"
#include "google/protobuf/message.h"

namespace mpigate {

namespace internal {

template <typename T>
inline constexpr bool kIsMessage = std::is_base_of_v<google::protobuf::Message, T>;

// The non-template halves of the helpers below, compiled once.
// `request` serialized; RESOURCE_EXHAUSTED if it cannot be (above Protobuf's 2 GiB limit).
absl::StatusOr<std::string> SerializeRequest(const google::protobuf::Message& request);
// Submits `request` serialized, with its type name as payload_type; a future failed with
// SerializeRequest's error if it cannot be serialized.
Future SubmitMessage(Executor& executor, absl::string_view function,
                     const google::protobuf::Message& request, SubmitOptions options);
// Parses `bytes` into `response`: INTERNAL "... is not a valid <type>" if they do not parse.
absl::Status ParseResponse(absl::string_view bytes, google::protobuf::Message& response);

}  // namespace internal

template <typename Response>
class TypedMapResults;

// Executor::Map over `requests`, serialized, with payload_type set to Request's full name; see
// TypedMapResults. If a request cannot be serialized, the only result is that error.
template <typename Response, typename Request>
TypedMapResults<Response> MapTyped(Executor& executor, absl::string_view function,
                                   const std::vector<Request>& requests,
                                   const MapOptions& options = {});

// Executor::MapRange with `request` serialized as every item's input, and payload_type set to
// Request's full name; see TypedMapResults. If the request cannot be serialized, the only result
// is that error.
template <typename Response, typename Request>
TypedMapResults<Response> MapRangeTyped(Executor& executor, absl::string_view function,
                                        const Request& request, const RangeOptions& options);

// The future of a typed task: a Future whose result decodes as a `Response`.
template <typename Response>
class TypedFuture {
  static_assert(internal::kIsMessage<Response>, "Response must be a Protobuf message");

 public:
  explicit TypedFuture(Future future) : future_(std::move(future)) {}

  // The untyped future: state, callbacks, progress, task id.
  const Future& future() const { return future_; }

  // Waits as Future::Result() does, then the decoded response; the task's error as it is; or
  // INTERNAL "... is not a valid <type>" if the result does not parse as a `Response`.
  absl::StatusOr<Response> Result(absl::Duration timeout = absl::InfiniteDuration()) const {
    absl::StatusOr<std::string> bytes = future_.Result(timeout);
    if (!bytes.ok()) return bytes.status();
    Response response;
    if (absl::Status parsed = internal::ParseResponse(*bytes, response); !parsed.ok()) {
      return parsed;
    }
    return response;
  }

  bool Done() const { return future_.Done(); }
  bool Cancel() { return future_.Cancel(); }
  // Beyond concurrent.futures: see Future::Interrupt().
  bool Interrupt() { return future_.Interrupt(); }
  // Beyond Interrupt(): see Future::Kill().
  bool Kill() { return future_.Kill(); }
  bool Wait(absl::Duration timeout = absl::InfiniteDuration()) const {
    return future_.Wait(timeout);
  }

 private:
  Future future_;
};

// The results of MapTyped() or MapRangeTyped(), read as MapResults are (input order, or with
// `unordered` by chunk), each decoded as a `Response`. A result that does not parse is yielded as
// INTERNAL and, as any error, ends the iteration and cancels the chunks that have not started;
// with keep_going it is that item's error and the iteration goes on. Thread-safety as MapResults.
template <typename Response>
class TypedMapResults {
  static_assert(internal::kIsMessage<Response>, "Response must be a Protobuf message");

 public:
  using iterator = internal::NextIterator<TypedMapResults, absl::StatusOr<Response>>;

  TypedMapResults(TypedMapResults&&) = default;
  TypedMapResults& operator=(TypedMapResults&&) = default;

  // The next decoded result or error, as MapResults::Next(). A result that does not decode is
  // its item's error (INTERNAL), which ends the iteration unless the map keeps going.
  std::optional<absl::StatusOr<Response>> Next() {
    std::optional<absl::StatusOr<std::string>> next = results_.Next();
    if (!next.has_value()) return std::nullopt;
    if (!next->ok()) return next->status();
    Response response;
    if (absl::Status parsed = internal::ParseResponse(**next, response); !parsed.ok()) {
      if (!keep_going_) results_.Close();
      return parsed;
    }
    return response;
  }

  // The input index of what the last Next() returned (MapResults::index()).
  size_t index() const { return results_.index(); }
  // Stops the map (MapResults::Kill()); from any thread.
  void Kill() { results_.Kill(); }

  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  template <typename R, typename Q>
  friend TypedMapResults<R> MapTyped(Executor&, absl::string_view, const std::vector<Q>&,
                                     const MapOptions&);
  template <typename R, typename Q>
  friend TypedMapResults<R> MapRangeTyped(Executor&, absl::string_view, const Q&,
                                          const RangeOptions&);

  TypedMapResults(MapResults results, bool keep_going)
      : results_(std::move(results)), keep_going_(keep_going) {}

  MapResults results_;
  bool keep_going_;
};

// Submits `function` with `request` serialized and payload_type set to Request's full name.
template <typename Response, typename Request>
TypedFuture<Response> SubmitTyped(Executor& executor, absl::string_view function,
                                  const Request& request, SubmitOptions options = {}) {
  static_assert(internal::kIsMessage<Request>, "Request must be a Protobuf message");
  return TypedFuture<Response>(
      internal::SubmitMessage(executor, function, request, std::move(options)));
}

template <typename Response, typename Request>
TypedMapResults<Response> MapTyped(Executor& executor, absl::string_view function,
                                   const std::vector<Request>& requests,
                                   const MapOptions& options) {
  static_assert(internal::kIsMessage<Request>, "Request must be a Protobuf message");
  std::vector<std::string> inputs;
  inputs.reserve(requests.size());
  for (const Request& request : requests) {
    absl::StatusOr<std::string> bytes = internal::SerializeRequest(request);
    if (!bytes.ok()) return TypedMapResults<Response>(MapResults::Failed(bytes.status()), false);
    inputs.push_back(*std::move(bytes));
  }
  MapOptions typed = options;
  typed.payload_type = Request::descriptor()->full_name();
  return TypedMapResults<Response>(executor.Map(function, std::move(inputs), typed),
                                   options.keep_going);
}

template <typename Response, typename Request>
TypedMapResults<Response> MapRangeTyped(Executor& executor, absl::string_view function,
                                        const Request& request, const RangeOptions& options) {
  static_assert(internal::kIsMessage<Request>, "Request must be a Protobuf message");
  absl::StatusOr<std::string> payload = internal::SerializeRequest(request);
  if (!payload.ok()) {
    return TypedMapResults<Response>(MapResults::Failed(payload.status()), false);
  }
  RangeOptions typed = options;
  typed.payload_type = Request::descriptor()->full_name();
  return TypedMapResults<Response>(executor.MapRange(function, *std::move(payload), typed),
                                   options.keep_going);
}

}  // namespace mpigate

#endif  // MPIGATE_CLIENT_TYPED_H_
