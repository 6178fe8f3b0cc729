"""The live view of a pool end to end: a real mpigate-server with --metrics-listen runs a known
workload from two sessions (one whose client name is hostile markup and terminal escapes), and
then, while one task still runs:

- /api/status (JSON) and the gRPC PoolStatus give its figures: per worker, per session, per
  function, tasks ended per second, the failures with their messages;
- GET / (the page as the server renders it, JavaScript off) shows the same numbers, with the
  hostile strings escaped;
- Debian's headless Chromium loads the page, its script redraws it from /api/status, and the DOM
  it dumps shows the numbers, the chart and the histograms, and no element made of a client's
  string; a screenshot is kept in TEST_UNDECLARED_OUTPUTS_DIR;
- `mpigate top` runs in a tmux pane (tmux's control mode reports its output as it comes, so the
  test reads without polling), its screen is read back and checked, and `q` ends it with 0;
  `mpigate top --once` prints the same frame with no control character from the strings.
"""

import faulthandler
import html.parser
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest
import urllib.error
import urllib.request

import grpc
from google.protobuf import json_format

import mpigate
from mpigate.v1 import gateway_pb2
from mpigate.v1 import gateway_pb2_grpc
from server_process import ServerProcess, runfile

# Markup that would run script if it reached the page as HTML, and escapes that would retitle or
# recolour a terminal.
HOSTILE = "<img src=x onerror=\"document.body.dataset.pwned='name'\">&amp;'\x1b]0;pwned\x07\x1b[31m"
HOSTILE_MESSAGE = "<script>document.body.dataset.pwned='message'</script>"
ECHOES = 20
FAILS = ["bad input 1", "bad input 2", HOSTILE_MESSAGE]


class Cells(html.parser.HTMLParser):
    """Reads a page: the text of elements by id, the cells (data-col) of rows with a data-session
    or data-worker attribute, every tag seen, and the body's attributes."""

    def __init__(self, page):
        super().__init__(convert_charrefs=True)
        self.by_id = {}
        self.sessions = {}
        self.workers = []
        self.function_rows = []
        self.failure_rows = []
        self.tags = []
        self.body = {}
        self._id = None
        self._row = None
        self._column = None
        self._table = None
        self._in_body = False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "body":
            self.body = attrs
        if tag == "table":
            self._table = attrs.get("id")
        if tag == "tbody":
            self._in_body = True
        if (tag == "tr" and self._in_body and
                self._table in ("workers", "sessions", "functions", "failures")):
            self._row = {}
            if "data-session" in attrs:
                self.sessions[attrs["data-session"]] = self._row
            elif "data-worker" in attrs:
                self.workers.append(self._row)
            elif self._table == "functions":
                self.function_rows.append(self._row)
            elif self._table == "failures":
                self.failure_rows.append(self._row)
        if tag == "td" and self._row is not None:
            self._column = attrs.get("data-col")
            self._row[self._column] = ""
        if "id" in attrs and tag in ("dd", "span", "p"):
            self._id = attrs["id"]
            self.by_id[self._id] = ""

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        if tag == "td":
            self._column = None
        if tag == "tr":
            self._row = None
        if tag in ("dd", "span", "p"):
            self._id = None

    def handle_data(self, data):
        if self._column is not None and self._row is not None:
            self._row[self._column] += data
        if self._id is not None:
            self.by_id[self._id] += data


class LiveViewTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        faulthandler.register(signal.SIGTERM)
        cls.server = ServerProcess(workers=2, flags=["--metrics-listen=127.0.0.1:0"])
        cls.server.start()
        with open(cls.server.endpoint_file, encoding="utf-8") as file:
            endpoint = dict(line.strip().split("=", 1) for line in file if "=" in line)
        cls.metrics = endpoint["metrics"]
        cls.token = endpoint["metrics_token"]
        cls.alpha = mpigate.Executor(cls.server.target, client_name="alpha")
        cls.hostile = mpigate.Executor(cls.server.target, client_name=HOSTILE)
        for future in [cls.alpha.submit("echo", b"x%d" % i) for i in range(ECHOES)]:
            future.result()
        for message in FAILS:
            with cls.assertRaises(cls, mpigate.TaskError):
                cls.alpha.submit("fail", message.encode()).result()
        # Keeps a worker busy, on the hostile session's task, while the test looks.
        cls.sleeper = cls.hostile.submit("sleep", b"600000")
        cls.sleeper.wait_started()

    @classmethod
    def tearDownClass(cls):
        cls.sleeper.kill()
        cls.hostile.shutdown()
        cls.alpha.shutdown()
        cls.server.stop_checked()

    def get(self, path, token=True):
        separator = "&" if "?" in path else "?"
        url = f"http://{self.metrics}{path}" + (f"{separator}token={self.token}" if token else "")
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read().decode("utf-8"), response.headers

    def session_ids(self, status):
        by_name = {session["client_name"]: session for session in status["session_list"]}
        return by_name["alpha"], by_name[HOSTILE]

    def check_figures(self, status):
        """The workload's figures in the JSON form of a PoolStatus."""
        self.assertEqual(status["state"], "POOL_STATE_READY")
        self.assertEqual(int(status["tasks_succeeded"]), ECHOES)
        self.assertEqual(int(status["tasks_failed"]), len(FAILS))
        alpha, hostile = self.session_ids(status)
        self.assertEqual((int(alpha["tasks_succeeded"]), int(alpha["tasks_failed"]),
                          int(alpha["queued_tasks"]), int(alpha["running_tasks"])),
                         (ECHOES, len(FAILS), 0, 0))
        self.assertEqual((int(hostile["tasks_succeeded"]), int(hostile["tasks_failed"]),
                          int(hostile["running_tasks"])), (0, 0, 1))
        workers = status["worker_list"]
        self.assertEqual([worker["worker"] for worker in workers], [0, 1])
        self.assertEqual(sum(int(worker["tasks_done"]) for worker in workers),
                         ECHOES + len(FAILS))
        self.assertEqual(sum(int(worker["tasks_failed"]) for worker in workers), len(FAILS))
        for worker in workers:
            self.assertGreater(worker["pid"], 0)
            self.assertGreater(worker["runner_pid"], 0)
            self.assertNotEqual(worker["pid"], worker["runner_pid"])
            self.assertTrue(worker["host"])
        busy = [worker for worker in workers if worker["busy"]]
        self.assertEqual(len(busy), 1)
        self.assertEqual((busy[0]["function"], busy[0]["client_name"], busy[0]["session_id"]),
                         ("sleep", HOSTILE, hostile["session_id"]))
        failures = status["recent_failures"]
        # Newest first.
        self.assertEqual([failure["message"] for failure in failures], FAILS[::-1])
        for failure in failures:
            self.assertEqual((failure["function"], failure["client_name"], failure["code"]),
                             ("fail", "alpha", "UNKNOWN"))
        times = {entry["name"]: entry for entry in status["function_times"]}
        self.assertEqual(int(times["echo"]["succeeded"]), ECHOES)
        self.assertEqual(sum(int(count) for count in times["echo"]["run_time_counts"]), ECHOES)
        self.assertEqual(sum(int(count) for count in times["echo"]["queue_wait_counts"]), ECHOES)
        self.assertEqual(len(times["echo"]["run_time_counts"]),
                         len(status["time_bucket_bounds_us"]) + 1)
        self.assertEqual(int(times["fail"]["failed"]), len(FAILS))
        self.assertEqual(sum(status["tasks_ended_per_second"]), ECHOES + len(FAILS))

    def check_page(self, page, after_script):
        """The page's numbers, as the server rendered them or as the script redrew them."""
        cells = Cells(page)
        self.assertEqual(cells.by_id["s-workers"], "2")
        self.assertEqual(cells.by_id["s-busy"], "1")
        self.assertEqual(cells.by_id["s-succeeded"], str(ECHOES))
        self.assertEqual(cells.by_id["s-failed"], str(len(FAILS)))
        self.assertEqual(cells.by_id["state"], "READY")
        status = json.loads(self.get("/api/status")[0])
        alpha, hostile = self.session_ids(status)
        alpha_row = cells.sessions[alpha["session_id"]]
        self.assertEqual((alpha_row["client"], alpha_row["done"], alpha_row["failed"],
                          alpha_row["running"]), ("alpha", str(ECHOES), str(len(FAILS)), "0"))
        hostile_row = cells.sessions[hostile["session_id"]]
        # The name comes back as the very text it was, not as markup.
        self.assertEqual((hostile_row["client"], hostile_row["running"]), (HOSTILE, "1"))
        # Busiest first: the worker running the sleep heads the table.
        self.assertEqual((cells.workers[0]["state"], cells.workers[0]["function"]),
                         ("busy", "sleep"))
        self.assertEqual(cells.workers[0]["session"], f"{HOSTILE} #{hostile['session_id']}")
        self.assertEqual(cells.workers[1]["state"], "idle")
        self.assertEqual(sum(int(row["done"]) for row in cells.workers), ECHOES + len(FAILS))
        functions = {row["function"]: row for row in cells.function_rows}
        self.assertEqual(functions["echo"]["succeeded"], str(ECHOES))
        self.assertRegex(functions["echo"]["run-p50"], r"^≤\d")
        self.assertEqual([row["message"] for row in cells.failure_rows], FAILS[::-1])
        # No element was made of a client's string, and no script of theirs ran.
        self.assertNotIn("img", cells.tags)
        self.assertEqual(cells.tags.count("script"), 1)
        self.assertNotIn("data-pwned", cells.body)
        if after_script:
            self.assertEqual(cells.body.get("data-live"), "ok")
            self.assertTrue(cells.by_id["updated"].startswith("updated"), cells.by_id["updated"])
            # The chart and a histogram per function and kind, drawn by the script.
            self.assertIn('id="chart-svg"', page)
            self.assertIn("<polyline", page)
            self.assertEqual(page.count('class="histogram"'), 2 * len(cells.function_rows))
        return cells

    def test_json_and_grpc_status_give_the_workloads_figures(self):
        body, headers = self.get("/api/status")
        self.assertEqual(headers["Content-Type"], "application/json")
        self.check_figures(json.loads(body))
        # The gRPC call that `mpigate top` makes says the same.
        with grpc.insecure_channel(self.server.target) as channel:
            status = gateway_pb2_grpc.GatewayStub(channel).GetPoolStatus(
                gateway_pb2.GetPoolStatusRequest(), timeout=30)
        self.check_figures(json_format.MessageToDict(
            status, preserving_proto_field_name=True, including_default_value_fields=True))

    def test_the_page_as_the_server_renders_it(self):
        page, headers = self.get("/")
        self.assertEqual(headers["Content-Type"], "text/html; charset=utf-8")
        self.assertIn("script-src 'self'", headers["Content-Security-Policy"])
        self.assertIn("&lt;img src=x onerror=", page)
        self.assertNotIn("<img", page)
        self.assertIn("&lt;script&gt;document.body", page)
        self.check_page(page, after_script=False)
        # Its assets come from the binary, with no token; the figures need one.
        script, headers = self.get("/live.js", token=False)
        self.assertTrue(headers["Content-Type"].startswith("text/javascript"))
        self.assertIn("textContent", script)
        self.assertNotIn("innerHTML", script)
        self.get("/live.css", token=False)
        for path in ("/", "/api/status", "/metrics"):
            with self.assertRaises(urllib.error.HTTPError) as refused:
                self.get(path, token=False)
            self.assertEqual(refused.exception.code, 401, path)

    def chromium(self, *flags):
        profile = tempfile.mkdtemp(prefix="chromium-", dir=os.environ.get("TEST_TMPDIR"))
        url = f"http://{self.metrics}/?token={self.token}"
        # A virtual time budget: Chromium runs the page's script, its fetch of /api/status and
        # the redraw, and acts (dumps, shoots) once the page has nothing left to do before then.
        return subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={profile}", "--virtual-time-budget=3000", *flags, url],
            capture_output=True, text=True, timeout=120,
            env=dict(os.environ, HOME=profile), check=True)

    def test_the_page_in_a_browser_after_its_script_ran(self):
        dom = self.chromium("--dump-dom").stdout
        self.check_page(dom, after_script=True)
        outputs = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR", tempfile.mkdtemp())
        shot = os.path.join(outputs, "live_page.png")
        self.chromium("--window-size=1280,1000", f"--screenshot={shot}")
        with open(shot, "rb") as file:
            png = file.read()
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        self.assertGreater(len(png), 20_000)

    def check_top_screen(self, lines):
        text = "\n".join(lines)
        self.assertTrue(lines[0].startswith("mpigate top  unix:"), lines[0])
        self.assertIn("READY", lines[0])
        self.assertIn("workers 2: 1 busy, 1 idle, 0 down", text)
        self.assertIn(f"ended: {ECHOES} succeeded, {len(FAILS)} failed, 0 cancelled", text)
        status = json.loads(self.get("/api/status")[0])
        alpha, hostile = self.session_ids(status)
        worker_heading = lines.index(next(line for line in lines if line.startswith("WORKER")))
        busy = lines[worker_heading + 1].split()
        self.assertEqual(busy[4:6], ["busy", "sleep"], lines[worker_heading + 1])
        self.assertEqual(lines[worker_heading + 2].split()[4], "idle")
        session_heading = lines.index(next(line for line in lines if line.startswith("SESSION")))
        # Busiest first: the session with a task running, then alpha with its figures.
        first = lines[session_heading + 1].split()
        second = lines[session_heading + 2].split()
        self.assertEqual(first[:3], [hostile["session_id"], "0", "1"])
        self.assertEqual(second, [alpha["session_id"], "0", "0", str(ECHOES), str(len(FAILS)),
                                  second[5], "alpha"])
        # The hostile name's control characters are shown as '?', never sent to the terminal.
        self.assertIn("&amp;'?]0;pwned??[31m", lines[session_heading + 1])
        failures = lines[lines.index("RECENT FAILURES") + 1:]
        self.assertRegex(failures[0], r"ago  alpha #%s task \d+ fail on worker \d: UNKNOWN: "
                         % alpha["session_id"] + re.escape(HOSTILE_MESSAGE))
        self.assertIn("UNKNOWN: bad input 2", failures[1])
        self.assertIn("UNKNOWN: bad input 1", failures[2])

    def test_top_in_a_terminal(self):
        mpigate_cli = runfile("cli/mpigate")
        tmux_dir = tempfile.mkdtemp(prefix="tmux-", dir="/tmp")
        command = (f"{mpigate_cli} --endpoint={self.server.target} top; "
                   "echo top exited with $?; read line")
        tmux = subprocess.Popen(
            ["tmux", "-L", "top", "-f", "/dev/null", "-C", "new-session", "-x", "130", "-y", "45",
             command],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env=dict(os.environ, TMUX_TMPDIR=tmux_dir, TERM="xterm-256color"))
        try:
            def send(command):
                tmux.stdin.write(command + "\n")
                tmux.stdin.flush()

            def read_until(predicate):
                for line in tmux.stdout:
                    if predicate(line):
                        return line
                self.fail("tmux ended first")

            # A frame ends by clearing the rest of the screen: ESC [ J, which control mode
            # reports in octal.
            read_until(lambda line: line.startswith("%output") and "\\033[J" in line)
            send("capture-pane -p")
            read_until(lambda line: line.startswith("%begin"))
            screen = []
            for line in tmux.stdout:
                if line.startswith("%end"):
                    break
                screen.append(line.rstrip("\n"))
            self.check_top_screen([line.rstrip() for line in screen])
            send("display-message -p '#{pane_title}'")
            read_until(lambda line: line.startswith("%begin"))
            self.assertNotIn("pwned", tmux.stdout.readline())
            send("send-keys q")
            ended = read_until(lambda line: "top exited with" in line)
            self.assertIn("top exited with 0", ended)
            send("kill-server")
        finally:
            tmux.stdin.close()
            tmux.wait(timeout=60)
            tmux.stdout.close()
            shutil.rmtree(tmux_dir, ignore_errors=True)

    def test_top_once_prints_one_frame(self):
        once = subprocess.run([runfile("cli/mpigate"), f"--endpoint={self.server.target}", "top",
                               "--once"], capture_output=True, text=True, timeout=60)
        self.assertEqual(once.returncode, 0, once.stderr)
        self.assertNotIn("\x1b", once.stdout)
        self.assertNotIn("\x07", once.stdout)
        self.check_top_screen(once.stdout.splitlines())


if __name__ == "__main__":
    unittest.main(verbosity=2)
