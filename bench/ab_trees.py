"""Two builds of mpigate side by side: the sequential round trip from C++ (bench/mpigate_bench)
and from mpigate.futures (bench/peers/mpigate_futures_bench.py), and the gateway's CPU time per
C++ round trip, on a fresh 2-worker pool of each tree in turn (A B B A A B ...) so that a shared
machine's drift hits both alike. Prints every pool's figures and then each tree's medians.
With --clients, each pool runs (d) instead: one client's submit loop of 100,000 tasks, then 8
client processes of 4 threads, 12,500 tasks each, let go at once, and their aggregate's ratio to
the submit loop, as bench/compare.py measures them. With --payloads, (c)'s echoes of 1 KiB and
1 MiB instead (as many as bench/compare.py times: 200 and 50).

    /usr/bin/python3 bench/ab_trees.py [--rounds=N] [--samples=N] [--clients | --payloads] \
        TREE_A TREE_B [SERVER_FLAG ...]

Each TREE is a checkout whose bazel-bin holds //server:mpigate-server, //worker:mpigate-worker,
//worker:mpigate-runner, //bench:mpigate_bench and //client/python:mpigate (e.g. the baseline's
commit in a `git worktree` and the branch). Use it when `bench/compare.sh --check` names a latency
figure: if both trees moved alike, the machine did.
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

PYTHON = "/usr/bin/python3"
# (d) as bench/compare.py runs it.
CLIENT_TASKS = 100_000
CLIENT_PROCESSES = 8
CLIENT_THREADS = 4
# (c)'s small and middle echoes as bench/compare.py times them, SIZE:REPS (the larger ones take
# most of a pool's minute and vary less).
PAYLOADS = "1024:200,1048576:50"


def cpu_seconds(pid):
    """User plus system CPU time of process `pid` so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_lines(output, workload):
    """{metric: value} of a bench program's `WORKLOAD,METRIC,VALUE,UNIT` lines."""
    figures = {}
    for line in output.splitlines():
        fields = line.split(",")
        if len(fields) == 4 and fields[0] == workload:
            figures[fields[1]] = float(fields[2])
    return figures


def clients_figures(tree, endpoint):
    """(d) on the pool at `endpoint`: one client's submit loop, then CLIENT_PROCESSES clients of
    CLIENT_THREADS threads let go at once (the aggregate runs from then to the last result)."""
    bench = f"{tree}/bazel-bin/bench/mpigate_bench"
    single = subprocess.run([bench, f"--endpoint={endpoint}", "--workload=throughput",
                             f"--tasks={CLIENT_TASKS}"],
                            capture_output=True, text=True, check=True)
    submit_loop = bench_lines(single.stdout, "throughput")["futures"]
    clients = [subprocess.Popen([bench, f"--endpoint={endpoint}", "--workload=clients",
                                 f"--tasks={CLIENT_TASKS // CLIENT_PROCESSES}",
                                 f"--threads={CLIENT_THREADS}"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for _ in range(CLIENT_PROCESSES)]
    for client in clients:
        if not client.stdout.readline().startswith("gate,clients"):
            raise RuntimeError(f"{tree}'s mpigate_bench did not reach its gate")
    released_at = time.time()
    for client in clients:
        client.stdin.write("go\n")
        client.stdin.flush()
    tasks, done_at = 0, released_at
    for client in clients:
        figures = bench_lines(client.stdout.read(), "clients")
        if client.wait() != 0:
            raise RuntimeError(f"{tree}'s mpigate_bench failed its clients workload")
        tasks += int(figures["tasks"])
        done_at = max(done_at, figures["done_at"])
    aggregate = tasks / (done_at - released_at)
    return {"submit loop, tasks/s": submit_loop, "8x4 aggregate, tasks/s": aggregate,
            "(d) aggregate / submit loop": aggregate / submit_loop}


def payloads_figures(tree, endpoint):
    """(c) on the pool at `endpoint`: {figure: GB/s both ways} of each echoed size."""
    echoes = subprocess.run([f"{tree}/bazel-bin/bench/mpigate_bench", f"--endpoint={endpoint}",
                             "--workload=payload", f"--payloads={PAYLOADS}"],
                            capture_output=True, text=True, check=True)

    def echo(size):
        size = int(size)
        return f"echo {size >> 20} MiB" if size >= 1 << 20 else f"echo {size >> 10} KiB"
    return {f"{echo(size)}, GB/s": value
            for size, value in bench_lines(echoes.stdout, "payload").items()}


def one_pool(tree, samples, workload, server_flags):
    """A fresh pool of `tree`'s build, measured once: {figure: value}."""
    directory = tempfile.mkdtemp(prefix="mpigate-ab-", dir="/tmp")
    endpoint = f"unix:{directory}/s.sock"
    server = subprocess.Popen(
        [f"{tree}/bazel-bin/server/mpigate-server", "--workers=2", "--python=on",
         f"--listen={endpoint}", f"--endpoint-file={directory}/endpoint", *server_flags],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in server.stdout:
            if "ready in" in line:
                break
        else:
            raise RuntimeError(f"{tree}'s mpigate-server exited before it was ready")
        if workload == "clients":
            return clients_figures(tree, endpoint)
        if workload == "payloads":
            return payloads_figures(tree, endpoint)
        before = cpu_seconds(server.pid)
        cpp = subprocess.run([f"{tree}/bazel-bin/bench/mpigate_bench", f"--endpoint={endpoint}",
                              "--workload=latency", f"--samples={samples}"],
                             capture_output=True, text=True, check=True)
        gateway_us = (cpu_seconds(server.pid) - before) / samples * 1e6
        python = subprocess.run(
            [PYTHON, f"{tree}/bench/peers/mpigate_futures_bench.py", f"--endpoint={endpoint}",
             "--workload=latency", f"--samples={samples}"],
            capture_output=True, text=True, check=True,
            env=dict(os.environ,
                     PYTHONPATH=f"{tree}/client/python:{tree}/bazel-bin/client/python"))
        figures = {f"C++ {metric}, us": value
                   for metric, value in bench_lines(cpp.stdout, "latency").items()}
        figures["gateway CPU per C++ round trip, us"] = gateway_us
        figures.update({f"Python {metric}, us": value
                        for metric, value in bench_lines(python.stdout, "latency").items()})
        return figures
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        shutil.rmtree(directory, ignore_errors=True)


def shown(value):
    """`value` as a person reads it: whole thousands with separators, else three digits."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="pools of each tree")
    parser.add_argument("--samples", type=int, default=2000, help="round trips per pool and client")
    measured = parser.add_mutually_exclusive_group()
    measured.add_argument("--clients", action="store_const", dest="workload", const="clients",
                          default="round_trips",
                          help="measure (d), many clients against one, instead of round trips")
    measured.add_argument("--payloads", action="store_const", dest="workload", const="payloads",
                          help="measure (c)'s 1 KiB and 1 MiB echoes instead of round trips")
    parser.add_argument("tree_a")
    parser.add_argument("tree_b")
    args, server_flags = parser.parse_known_args()
    trees = (os.path.abspath(args.tree_a), os.path.abspath(args.tree_b))
    runs = {tree: [] for tree in trees}
    for round_index in range(args.rounds):
        for tree in trees if round_index % 2 == 0 else trees[::-1]:
            figures = one_pool(tree, args.samples, args.workload, server_flags)
            runs[tree].append(figures)
            print(tree, {name: shown(value) for name, value in figures.items()}, flush=True)
    print("medians:")
    for name in runs[trees[0]][0]:
        a, b = (statistics.median(run[name] for run in runs[tree]) for tree in trees)
        print(f"  {name}: A {shown(a)}, B {shown(b)}, B/A {b / a:.3f}")


if __name__ == "__main__":
    main()
