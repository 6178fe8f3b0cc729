#include "worker/task_environment.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/string_view.h"

extern char** environ;

namespace mpigate::worker {
namespace {

std::vector<std::string> CurrentEnvironment() {
  std::vector<std::string> variables;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    variables.emplace_back(*entry);
  }
  return variables;
}

// The name of "NAME=VALUE", with its '='.
absl::string_view NameOf(absl::string_view variable) {
  const size_t equals = variable.find('=');
  return equals == absl::string_view::npos ? variable : variable.substr(0, equals + 1);
}

}  // namespace

TaskEnvironment::TaskEnvironment() : pool_(CurrentEnvironment()) {
  Install(google::protobuf::RepeatedPtrField<std::string>());
}

TaskEnvironment::~TaskEnvironment() {
  const std::vector<std::string> current = CurrentEnvironment();
  clearenv();
  for (const std::string& variable : current) {
    const size_t equals = variable.find('=');
    if (equals == std::string::npos) continue;
    setenv(variable.substr(0, equals).c_str(), variable.c_str() + equals + 1, 1);
  }
}

bool TaskEnvironment::Apply(const google::protobuf::RepeatedPtrField<std::string>& variables) {
  if (environ == installed_.data() &&
      std::equal(installed_.begin(), installed_.end(), expected_.begin(), expected_.end()) &&
      std::equal(variables.begin(), variables.end(), variables_.begin(), variables_.end())) {
    return false;
  }
  Install(variables);
  return true;
}

void TaskEnvironment::Install(const google::protobuf::RepeatedPtrField<std::string>& variables) {
  variables_.assign(variables.begin(), variables.end());
  installed_.clear();
  installed_.reserve(pool_.size() + variables_.size() + 1);
  for (const std::string& variable : pool_) {
    const absl::string_view name = NameOf(variable);
    const bool replaced =
        std::any_of(variables_.begin(), variables_.end(), [name](const std::string& own) {
          return absl::string_view(own).substr(0, name.size()) == name;
        });
    // The array is the process's `environ`, whose type is not const; nothing here writes to it.
    if (!replaced) installed_.push_back(const_cast<char*>(variable.c_str()));
  }
  for (std::string& variable : variables_) installed_.push_back(variable.data());
  installed_.push_back(nullptr);
  expected_ = installed_;
  environ = installed_.data();
}

}  // namespace mpigate::worker
