"""TcpProxy: a TCP forwarder for end-to-end tests of dropped connections, as tests/tcp_proxy.h is
for the C++ tests. It listens on 127.0.0.1 (a port the kernel picks) and forwards every connection
to an upstream Unix socket, e.g. a ServerProcess's; drop_all() cuts every open connection at once,
both sides, as a failing network would, and later connections are forwarded again.

    proxy = TcpProxy(server.dir + "/s.sock")
    executor = mpigate.Executor(proxy.target)
    proxy.drop_all()
    proxy.close()

Thread-safety: every method may be called from any thread. Each connection is pumped by two
threads of its own, one per direction, with blocking I/O.
"""

import socket
import threading

_CHUNK = 1 << 16


class TcpProxy:
    """One listening socket and the connections it forwards."""

    def __init__(self, upstream_path):
        self._upstream_path = upstream_path
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.target = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open = []  # (client socket, upstream socket) of the connections not cut
        self._threads = []
        self._sockets = []  # every socket made, closed by close() once no thread uses it
        self._accepted = 0
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._acceptor.start()

    @property
    def accepted(self):
        """Connections accepted so far."""
        with self._lock:
            return self._accepted

    def drop_all(self):
        """Cuts every connection open now; returns how many it cut."""
        with self._lock:
            cut, self._open = self._open, []
        for pair in cut:
            for sock in pair:
                _shut(sock)
        return len(cut)

    def close(self):
        """Stops listening, cuts every connection and joins every thread."""
        _shut(self._listener)  # Wakes the acceptor.
        self._acceptor.join()
        self.drop_all()
        with self._lock:
            threads, self._threads = self._threads, []
            sockets, self._sockets = self._sockets, []
        for thread in threads:
            thread.join()
        for sock in sockets:
            sock.close()
        self._listener.close()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # Closed.
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            with self._lock:
                self._sockets += [client, upstream]
            try:
                upstream.connect(self._upstream_path)
            except OSError:
                _shut(client)
                _shut(upstream)
                continue
            pumps = [threading.Thread(target=_pump, args=pair, daemon=True)
                     for pair in ((client, upstream), (upstream, client))]
            with self._lock:
                self._accepted += 1
                self._open.append((client, upstream))
                self._threads.extend(pumps)
            for pump in pumps:
                pump.start()


def _pump(source, sink):
    """Copies `source` to `sink` until either ends; then ends both."""
    try:
        while True:
            data = source.recv(_CHUNK)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    _shut(source)
    _shut(sink)


def _shut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # Not connected, or already shut.
