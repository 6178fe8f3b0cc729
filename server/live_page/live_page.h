// The live page: the pool as it changes, in a browser, served on the metrics port
// (--metrics_listen) by MetricsHttpServer.
//
//   GET /             the page, rendered on the server from a PoolStatus, readable as it is
//                     with JavaScript off; its script then redraws it once a second
//   GET /api/status   the same PoolStatus as JSON (as `mpigate status --json` prints it)
//   GET /live.js      the script and the style: hand-written, built into the binary
//   GET /live.css     (live.js, live.css beside this header), nothing fetched from elsewhere
//
// The first two carry the pool's figures and ask for the metrics token (MetricsHttpServer); a
// browser passes it as `/?token=...`, and the script sends it on as a bearer header. The page
// shows the pool's state and why; each worker (host, pid, busy or idle, the function and session
// of what it runs and for how long, its runner's pid, tasks done and failed); each session
// (client, queued, running, done, failed, tasks/s); tasks/s over the last five minutes as a
// chart; queue wait and run time distributions by function; and recent failures with their
// messages. Client names, function names and messages are the clients' strings: the server
// escapes them into the HTML, and the script only ever sets them as text.
//
// Thread-safety: pure functions; `status` is called on the HTTP server's thread.
#ifndef MPIGATE_SERVER_LIVE_PAGE_LIVE_PAGE_H_
#define MPIGATE_SERVER_LIVE_PAGE_LIVE_PAGE_H_

#include <functional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "mpigate/v1/gateway.pb.h"
#include "server/metrics_http.h"

namespace mpigate::server {

// The page's HTML for `status`, with every figure in it.
std::string RenderLivePage(const v1::PoolStatus& status);

// `text` with & < > " ' replaced by character references: safe in HTML text and quoted attributes.
std::string EscapeHtml(absl::string_view text);

// The four resources above, by path, each asking `status` for the pool at every request.
absl::flat_hash_map<std::string, HttpResource> LivePageResources(
    std::function<v1::PoolStatus()> status);

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_LIVE_PAGE_LIVE_PAGE_H_
