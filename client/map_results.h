// mpigate::MapResults: the results of Executor::Map() (and of its seeded form, MapRange()), read
// one at a time, as the iterator that Python's Executor.map() returns.
//
//   for (absl::StatusOr<std::string> result : executor->Map("echo", inputs, {.chunksize = 16})) {
//     if (!result.ok()) return result.status();   // an item's error ends the iteration
//     Use(*result);
//   }
//
// Results come in input order, or with `unordered` as chunks complete (the items of one chunk in
// order). For MapRange() the inputs are the range's items and its batches are the chunks. As in
// Python, an error (an item's, a chunk's, or the map's timeout) is yielded where the iteration
// reaches it and ends the iteration, cancelling the chunks that have not started; so does
// destroying a MapResults before its end. Chunks already running finish on their own.
//
// Thread-safety: movable, not copyable; one thread at a time may read it. May outlive its Executor
// (which waits for every chunk when destroyed).
#ifndef MPIGATE_CLIENT_MAP_RESULTS_H_
#define MPIGATE_CLIENT_MAP_RESULTS_H_

#include <cstddef>
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

  // The next result or error, waiting at most until the map's deadline (its call time plus its
  // timeout: DEADLINE_EXCEEDED then). nullopt after the last result or after an error.
  std::optional<absl::StatusOr<std::string>> Next();

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
             absl::Duration timeout, absl::Time deadline);
  // Behind a pointer so that moves are cheap, and so that the State's destructor, which cancels
  // what is left, runs exactly once whatever moves happened.
  std::unique_ptr<State> state_;
};

}  // namespace mpigate

#endif  // MPIGATE_CLIENT_MAP_RESULTS_H_
