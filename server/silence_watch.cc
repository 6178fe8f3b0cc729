#include "server/silence_watch.h"

namespace mpigate::server {

void SilenceWatch::Watch(uint64_t id, absl::Time now) { last_heard_[id] = LastHeard{now, false}; }

void SilenceWatch::Heard(uint64_t id, absl::Time now, bool quiet) {
  const auto it = last_heard_.find(id);
  if (it == last_heard_.end()) return;
  it->second = LastHeard{now, quiet};
}

void SilenceWatch::Unwatch(uint64_t id) { last_heard_.erase(id); }

std::vector<uint64_t> SilenceWatch::TakeSilent(absl::Time now) {
  std::vector<uint64_t> silent;
  for (const auto& [id, heard] : last_heard_) {
    if (!heard.quiet && now - heard.at > limit_) silent.push_back(id);
  }
  for (const uint64_t id : silent) last_heard_.erase(id);
  return silent;
}

std::vector<uint64_t> SilenceWatch::Quiet() const {
  std::vector<uint64_t> quiet;
  for (const auto& [id, heard] : last_heard_) {
    if (heard.quiet) quiet.push_back(id);
  }
  return quiet;
}

}  // namespace mpigate::server
