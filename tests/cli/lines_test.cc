// The items of `mpigate map`: its input's lines.
#include "cli/lines.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace mpigate::cli {
namespace {

using Lines = std::vector<std::string>;

TEST(SplitLinesTest, OneItemPerLineWithoutItsNewline) {
  EXPECT_EQ(SplitLines(""), Lines());
  EXPECT_EQ(SplitLines("\n"), Lines({""}));
  EXPECT_EQ(SplitLines("a"), Lines({"a"}));
  EXPECT_EQ(SplitLines("a\n"), Lines({"a"}));
  EXPECT_EQ(SplitLines("a\nb"), Lines({"a", "b"}));
  EXPECT_EQ(SplitLines("a\n\nb\n"), Lines({"a", "", "b"}));
  EXPECT_EQ(SplitLines("a\n\n"), Lines({"a", ""}));
}

TEST(SplitLinesTest, ItemsAreBytes) {
  EXPECT_EQ(SplitLines("dos\r\n"), Lines({"dos\r"}));
  EXPECT_EQ(SplitLines(std::string("a\0b\n\xff\n", 6)), Lines({std::string("a\0b", 3), "\xff"}));
}

}  // namespace
}  // namespace mpigate::cli
