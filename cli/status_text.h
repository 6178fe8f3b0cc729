// What `mpigate status` prints: a PoolStatus (proto/mpigate/v1/gateway.proto) as a table for
// people, or as JSON for programs. Pure, so the layout is unit tested without a service.
//
//   std::fputs(FormatPoolStatus(status, target).c_str(), stdout);
//
// Thread-safety: pure functions.
#ifndef MPIGATE_CLI_STATUS_TEXT_H_
#define MPIGATE_CLI_STATUS_TEXT_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mpigate/v1/gateway.pb.h"

namespace mpigate::cli {

// The table: endpoint, state (with its reason), workers busy and idle, queued tasks, tasks/s,
// uptime, tasks by end state, then one row per open session (id, client, queued, running, unread
// results, detached) and one per function (name, gang, types, description). Ends with a newline.
std::string FormatPoolStatus(const v1::PoolStatus& status, absl::string_view endpoint);

// "1h02m03s", "5m07s", "42s", "3d04h05m": uptime, whole seconds.
std::string FormatUptime(absl::Duration uptime);

// "512 B", "1.5 KiB", "20.0 MiB".
std::string FormatBytes(uint64_t bytes);

}  // namespace mpigate::cli

#endif  // MPIGATE_CLI_STATUS_TEXT_H_
