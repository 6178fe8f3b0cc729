"""The keeper of a private mpigate-server: `python3 _watchdog.py SERVER ARG...`.

_private.PrivateService starts this script (stdlib only, so any python3 runs it) with a pipe as
its stdin; the script starts the server as its child and
- forwards the server's stdout lines to its own stdout (the client waits for the ready line) and
  keeps reading them, so that the server never blocks on a full pipe;
- once its stdin reaches end of file, which happens when the client closes the pipe to stop the
  service and also when the client process dies in any way (SIGKILL included), sends the server
  SIGTERM (a clean stop: the server drains and stops its workers), waits for it, and exits;
- exits with the server's status should the server end first.
The server gets PR_SET_PDEATHSIG(SIGTERM): if this script is killed, the server stops too. (The
client cannot ask for that itself: the signal follows the exit of the *thread* that started the
child, and a client's executor may be made on a short-lived thread; this script has one thread.)

It runs in a session of its own (PrivateService starts it so), so that Ctrl-C in the client's
terminal reaches the client only, which then shuts its executor down. Single-threaded.
"""

import ctypes
import os
import selectors
import signal
import subprocess
import sys

_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def main(argv):
    server = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              preexec_fn=_die_with_parent)
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin.buffer, selectors.EVENT_READ, "client")
    selector.register(server.stdout, selectors.EVENT_READ, "server")
    while True:
        for key, _ in selector.select():
            if key.data == "server":
                line = server.stdout.readline()
                if not line:  # The server is gone (or closed its stdout): report how it ended.
                    return server.wait()
                sys.stdout.buffer.write(line)
                sys.stdout.buffer.flush()
            elif not os.read(sys.stdin.fileno(), 4096):
                server.send_signal(signal.SIGTERM)
                server.stdout.close()
                return server.wait()


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]) & 0xFF)
    except BrokenPipeError:  # The client went away while we forwarded its ready line.
        sys.exit(1)
