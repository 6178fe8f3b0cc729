// The items of `mpigate map`: the lines of its input. Pure, so the edge cases (a last line with or
// without its newline, empty lines, bytes that are not text) are unit tested.
//
// Thread-safety: pure functions.
#ifndef MPIGATE_CLI_LINES_H_
#define MPIGATE_CLI_LINES_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace mpigate::cli {

// Splits `text` at every '\n', without the '\n' (a '\r' before it stays: items are bytes). A last
// line without a newline is an item; the newline that ends the text makes none. "" has no items,
// "\n" one empty item.
std::vector<std::string> SplitLines(absl::string_view text);

}  // namespace mpigate::cli

#endif  // MPIGATE_CLI_LINES_H_
