// mpigate::MapResults: the results of Executor::Map() (and of its seeded form, MapRange()), read
// one at a time, as the iterator that Python's Executor.map() returns.
//
//   for (absl::StatusOr<std::string> result : executor->Map("echo", inputs, {.chunksize = 16})) {
//     if (!result.ok()) return result.status();   // an item's error ends the iteration
//     Use(*result);
//   }
//
//   // Beyond Python: every item's outcome, errors included, each with its input's index.
//   MapResults results = executor->Map("getenv", names, {.unordered = true, .keep_going = true});
//   while (std::optional<absl::StatusOr<std::string>> result = results.Next()) {
//     if (results.index() == MapResults::kNoIndex) break;   // the map's timeout
//     Record(names[results.index()], *result);
//   }
//
// Results come in input order, or with `unordered` as chunks complete (the items of one chunk in
// order). For MapRange() the inputs are the range's items and its batches are the chunks. As in
// Python, an error (an item's, a chunk's, or the map's timeout) is yielded where the iteration
// reaches it and ends the iteration, cancelling the chunks that have not started; so does
// destroying a MapResults before its end. Chunks already running finish on their own.
//
// With MapOptions::keep_going (RangeOptions::keep_going), an item's error is yielded at its place
// and the iteration goes on; a chunk that failed as a whole (rejected, cancelled, connection lost)
// yields its error once for each of its items, so that every input has exactly one result. Only
// the map's timeout ends such a map early (DEADLINE_EXCEEDED, unstarted chunks cancelled), and a
// map that could not be submitted at all (e.g. a chunksize below 1) still yields its one error.
//
// Thread-safety: movable, not copyable; one thread at a time may read it, except that Kill() may
// be called from any thread, also while another is waiting in Next(). May outlive its Executor
// (which waits for every chunk when destroyed).
#ifndef MPIGATE_CLIENT_MAP_RESULTS_H_
#define MPIGATE_CLIENT_MAP_RESULTS_H_

#include <cstddef>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/future.h"
#include "client/internal/next_iterator.h"

namespace mpigate {

class Executor;

class MapResults {
 public:
  using iterator = internal::NextIterator<MapResults, absl::StatusOr<std::string>>;

  // Out of line, where State is complete: a move assignment destroys the State it replaces.
  MapResults(MapResults&&);
  MapResults& operator=(MapResults&&);
  ~MapResults();

  // What index() says when the last Next() returned nothing of one item's: before the first
  // Next(), after a Next() that returned nullopt, after the map's timeout, and after the one error
  // of a map that could not be submitted.
  static constexpr size_t kNoIndex = std::numeric_limits<size_t>::max();

  // The next result or error, waiting at most until the map's deadline (its call time plus its
  // timeout: DEADLINE_EXCEEDED then). nullopt after the last result, or after an error that ends
  // the iteration (any error without keep_going; with it, only the timeout's).
  std::optional<absl::StatusOr<std::string>> Next();

  // The input index (0-based) of the result or error the last Next() returned: what an unordered
  // map needs to match results to inputs. For MapRange() the item is RangeOptions::first +
  // index(). The error of a chunk that failed as a whole is its first item's (with keep_going,
  // each of its items' in turn). kNoIndex for what belongs to no one item (see kNoIndex).
  size_t index() const;

  // Ends the iteration where it is, as an error does: Next() returns nullopt from now on, and the
  // chunks that have not started are cancelled (running ones finish on their own); index() keeps
  // what the last Next() set. As closing a Python generator; by the reading thread.
  void Close();

  // Stops the map: cancels its chunks that have not started and kills those that run (as
  // Future::Kill(), in one request, without waiting for the answer). Their items then end
  // CANCELLED: Next() yields that where it reaches them (once per item with keep_going), and a
  // Next() waiting for one of them returns. For a signal handler's thread, say: it may be called
  // from any thread, also while another is in Next(). Chunks already done keep their results.
  void Kill();

  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

  // A map that could not be submitted (e.g. bad options or a request that does not serialize):
  // yields `error`, then ends.
  static MapResults Failed(absl::Status error);

 private:
  friend class Executor;
  struct State;

  // `chunks[i]` runs inputs [i * chunksize, min((i + 1) * chunksize, inputs)). `deadline` is the
  // map's call time plus `timeout`.
  MapResults(std::vector<Future> chunks, size_t inputs, size_t chunksize, bool unordered,
             bool keep_going, absl::Duration timeout, absl::Time deadline);
  // Behind a pointer so that moves are cheap, and so that the State's destructor, which cancels
  // what is left, runs exactly once whatever moves happened.
  std::unique_ptr<State> state_;
};

}  // namespace mpigate

#endif  // MPIGATE_CLIENT_MAP_RESULTS_H_
