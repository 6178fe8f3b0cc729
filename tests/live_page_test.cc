// Tests of the live page's server-rendered HTML and JSON (server/live_page/live_page.h): the
// figures of a PoolStatus in their cells, and clients' strings escaped.
#include "server/live_page/live_page.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/pool_figures.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kHostile[] = "<img src=x onerror=\"alert('x')\">&amp;";

v1::PoolStatus KnownStatus() {
  v1::PoolStatus status;
  status.set_workers(2);
  status.set_state(v1::POOL_STATE_READY);
  status.set_tasks_succeeded(20);
  status.set_tasks_failed(3);
  status.set_queued_tasks(7);
  status.set_sessions(1);
  status.set_degraded_reason("worker 1 on <host> was lost");
  v1::WorkerStatus& busy = *status.add_worker_list();
  busy.set_worker(0);
  busy.set_busy(true);
  busy.set_function("sleep</td><script>");
  busy.set_client_name(kHostile);
  busy.set_session_id(4);
  busy.set_running_ms(2500);
  busy.set_tasks_done(13);
  status.add_worker_list()->set_worker(1);
  v1::SessionStatus& session = *status.add_session_list();
  session.set_session_id(4);
  session.set_client_name(kHostile);
  session.set_queued_tasks(7);
  session.set_running_tasks(1);
  session.set_tasks_succeeded(20);
  session.set_tasks_failed(3);
  v1::FailureRecord& failure = *status.add_recent_failures();
  failure.set_message("</table><script>alert(1)</script>");
  failure.set_code("UNKNOWN");
  failure.set_function("fail");
  return status;
}

TEST(LivePageTest, TheFiguresAreInTheirCells) {
  const std::string page = RenderLivePage(KnownStatus());
  EXPECT_THAT(page, HasSubstr("<dd id=\"s-workers\">2</dd>"));
  EXPECT_THAT(page, HasSubstr("<dd id=\"s-busy\">1</dd>"));
  EXPECT_THAT(page, HasSubstr("<dd id=\"s-idle\">1</dd>"));
  EXPECT_THAT(page, HasSubstr("<dd id=\"s-queued\">7</dd>"));
  EXPECT_THAT(page, HasSubstr("<dd id=\"s-succeeded\">20</dd>"));
  EXPECT_THAT(page, HasSubstr("<dd id=\"s-failed\">3</dd>"));
  EXPECT_THAT(page, HasSubstr("<td data-col=\"for\">2.50 s</td>"));
  EXPECT_THAT(page, HasSubstr("<td data-col=\"done\">13</td>"));
  EXPECT_THAT(page, HasSubstr("<tr data-session=\"4\"><td data-col=\"session\">4</td>"));
  EXPECT_THAT(page, HasSubstr("<td data-col=\"queued\">7</td><td data-col=\"running\">1</td>"
                              "<td data-col=\"done\">20</td><td data-col=\"failed\">3</td>"));
  EXPECT_THAT(page, HasSubstr("degraded: worker 1 on &lt;host&gt; was lost"));
  EXPECT_THAT(page, HasSubstr("<script src=\"/live.js\"></script>"));
}

TEST(LivePageTest, ClientsStringsAreEscaped) {
  const std::string page = RenderLivePage(KnownStatus());
  EXPECT_THAT(page, Not(HasSubstr("<img")));
  EXPECT_THAT(page, Not(HasSubstr("<script>")));
  EXPECT_THAT(page, Not(HasSubstr("</td><script>")));
  EXPECT_THAT(page, HasSubstr("&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;amp;"));
  EXPECT_THAT(page, HasSubstr("sleep&lt;/td&gt;&lt;script&gt;"));
  EXPECT_THAT(page, HasSubstr("&lt;/table&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
  // One script element: the page's own.
  size_t scripts = 0;
  for (size_t at = page.find("<script"); at != std::string::npos;
       at = page.find("<script", at + 1)) {
    ++scripts;
  }
  EXPECT_EQ(scripts, 1u);
}

TEST(LivePageTest, JsonHasEveryFieldByItsProtoName) {
  absl::StatusOr<std::string> json = PoolStatusJson(KnownStatus(), JsonLayout::kCompact);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, HasSubstr("\"tasks_succeeded\":\"20\""));
  EXPECT_THAT(*json, HasSubstr("\"running_ms\":\"2500\""));
  // Zeros too, so that the script need not guess.
  EXPECT_THAT(*json, HasSubstr("\"tasks_cancelled\":\"0\""));
  EXPECT_THAT(*json, HasSubstr("\"client_name\":\"\\u003cimg"));
}

TEST(LivePageTest, ResourcesAskForTheTokenButTheAssets) {
  int asked = 0;
  absl::flat_hash_map<std::string, HttpResource> resources = LivePageResources([&asked] {
    ++asked;
    return KnownStatus();
  });
  ASSERT_EQ(resources.size(), 4u);
  EXPECT_FALSE(resources["/"].public_asset);
  EXPECT_FALSE(resources["/api/status"].public_asset);
  EXPECT_TRUE(resources["/live.js"].public_asset);
  EXPECT_TRUE(resources["/live.css"].public_asset);
  EXPECT_THAT(resources["/"].headers, HasSubstr("script-src 'self'"));
  EXPECT_THAT(resources["/live.js"].body(), HasSubstr("textContent"));
  EXPECT_THAT(resources["/live.js"].body(), Not(HasSubstr("innerHTML")));
  EXPECT_THAT(resources["/live.css"].body(), HasSubstr("#summary"));
  EXPECT_EQ(asked, 0);
  EXPECT_THAT(resources["/api/status"].body(), HasSubstr("\"workers\":2"));
  EXPECT_THAT(resources["/"].body(), HasSubstr("<!DOCTYPE html>"));
  EXPECT_EQ(asked, 2);
}

}  // namespace
}  // namespace mpigate::server
