"""Process trees from /proc, for bench/compare.py: who belongs to a service, how much CPU it used,
and how to stop all of it.

A pool's processes are not all in one process group or session (Open MPI's orted calls setsid,
mpigate's workers and runners take groups of their own), but they are all descendants of the
process that started the pool, so they are found by walking parent links.
"""

import ctypes
import os
import signal

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
_PR_SET_CHILD_SUBREAPER = 36


def _stat_fields(pid):
    """The fields of /proc/PID/stat after the command name, or None if the process is gone.

    Field 3 of proc(5) (the state) is element 0.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            # The command name, in parentheses, may itself contain spaces and parentheses.
            return stat.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _live_parents():
    """{pid: parent pid} of every process that has not exited (zombies left out)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    return parents


def descendants(root):
    """The live processes of the tree rooted at `root`, root included (if alive)."""
    parents = _live_parents()
    children = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    tree, pending = [], [root] if root in parents else []
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def alive(pids):
    """Those of `pids` that have not exited."""
    live = _live_parents()
    return [pid for pid in pids if pid in live]


def cpu_seconds(pids):
    """{pid: user + system CPU seconds so far} of those of `pids` that are still there."""
    seconds = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            # utime and stime are fields 14 and 15 of proc(5): all of the process's threads.
            seconds[pid] = (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND
    return seconds


def voluntary_switches(pids):
    """{pid: voluntary context switches so far, of all its threads} of those of `pids` that are
    still there: how often the process blocked (a wake-up each, once it goes on)."""
    switches = {}
    for pid in pids:
        try:
            total = 0
            for thread in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{thread}/status", encoding="utf-8") as status:
                    total += sum(int(line.split()[1]) for line in status
                                 if line.startswith("voluntary_ctxt_switches"))
            switches[pid] = total
        except (FileNotFoundError, ProcessLookupError):
            pass
    return switches


def command_line(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError):
        return "?"


def kill(pids):
    """SIGKILL to each of `pids`; ones already gone are skipped."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def become_subreaper():
    """Makes this process adopt its orphaned descendants instead of init, so that a process that
    outlives the one that started it is still found among this process's descendants."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_adopted(own_children):
    """Collects the exit status of exited orphans adopted as subreaper, so that they do not linger
    as zombies; `own_children` (whose status subprocess collects) are left alone."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in own_children:
            fields = _stat_fields(int(entry))
            if fields and fields[0] == "Z" and int(fields[1]) == me:
                try:
                    os.waitpid(int(entry), os.WNOHANG)
                except ChildProcessError:
                    pass
