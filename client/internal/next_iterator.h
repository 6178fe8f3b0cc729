// NextIterator: lets a generator-like class with `std::optional<Value> Next()` (MapResults,
// CompletedFutures) be used in a range-based for loop, as a Python generator is.
//
// An input iterator: it advances the source itself, so only one pass is possible, and iterators
// compare equal only when both are at the end.
//
// Thread-safety: as its source, which is used by one thread at a time.
#ifndef MPIGATE_CLIENT_INTERNAL_NEXT_ITERATOR_H_
#define MPIGATE_CLIENT_INTERNAL_NEXT_ITERATOR_H_

#include <cstddef>
#include <iterator>
#include <optional>

namespace mpigate::internal {

template <typename Source, typename Value>
class NextIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = Value;
  using difference_type = std::ptrdiff_t;
  using pointer = Value*;
  using reference = Value&;

  // The end.
  NextIterator() = default;
  // The first value of `source`, or the end if it has none.
  explicit NextIterator(Source* source) : source_(source) { Advance(); }

  Value& operator*() { return *current_; }
  Value* operator->() { return &*current_; }
  NextIterator& operator++() {
    Advance();
    return *this;
  }

  friend bool operator==(const NextIterator& a, const NextIterator& b) {
    return (a.source_ == nullptr) == (b.source_ == nullptr);
  }
  friend bool operator!=(const NextIterator& a, const NextIterator& b) { return !(a == b); }

 private:
  void Advance() {
    current_ = source_->Next();
    if (!current_.has_value()) source_ = nullptr;
  }

  Source* source_ = nullptr;
  std::optional<Value> current_;
};

}  // namespace mpigate::internal

#endif  // MPIGATE_CLIENT_INTERNAL_NEXT_ITERATOR_H_
