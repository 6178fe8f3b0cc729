#include "server/pool_metrics.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace mpigate::server {

std::string PoolMetrics::PrometheusText() const {
  std::string out;
  const auto gauge = [&out](absl::string_view name, absl::string_view help, auto value) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " gauge\n", name, " ",
                    value, "\n");
  };
  gauge("mpigate_workers", "Workers in the pool.", workers);
  gauge("mpigate_workers_busy", "Workers running a task.", busy_workers);
  gauge("mpigate_workers_down",
        "Workers out of service: their process was lost and is not replaced yet.", workers_down);
  absl::StrAppend(&out,
                  "# HELP mpigate_workers_lost_total Worker processes lost since the start.\n"
                  "# TYPE mpigate_workers_lost_total counter\nmpigate_workers_lost_total ",
                  workers_lost, "\n");
  gauge("mpigate_tasks_queued", "Tasks accepted and waiting for a worker.", queued_tasks);
  gauge("mpigate_sessions", "Open sessions, detached ones included.", sessions);
  gauge("mpigate_sessions_detached", "Sessions whose stream ended, waiting to be resumed.",
        detached_sessions);
  gauge("mpigate_uptime_seconds", "Seconds since the service started.",
        absl::StrFormat("%.3f", absl::ToDoubleSeconds(uptime)));
  gauge("mpigate_tasks_per_second", "Tasks ended per second over the last 10 s.",
        absl::StrFormat("%.3f", tasks_per_second));
  absl::StrAppend(&out,
                  "# HELP mpigate_pool_state The pool's state: 1 for the current one.\n"
                  "# TYPE mpigate_pool_state gauge\n");
  for (const v1::PoolState each : {v1::POOL_STATE_BOOTING, v1::POOL_STATE_READY,
                                   v1::POOL_STATE_BROKEN, v1::POOL_STATE_DRAINING}) {
    absl::StrAppend(&out, "mpigate_pool_state{state=\"",
                    absl::AsciiStrToLower(v1::PoolState_Name(each).substr(11)), "\"} ",
                    each == state ? 1 : 0, "\n");
  }
  tasks.AppendPrometheusText(out);
  return out;
}

}  // namespace mpigate::server
