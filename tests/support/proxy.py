"""A TCP proxy the test owns, to cut the stack off from RabbitMQ or Redis and give it back.

Every process of the stack reaches the shared server through the proxy's port, so a
test can break the connections of the whole stack at once without touching the server
the other test sessions use:

* :meth:`TcpProxy.drop_connections` closes every proxied connection and goes on
  accepting new ones (a server that closed its connections, e.g. a RabbitMQ node
  restarting or a load balancer failing over: clients reconnect at once);
* :meth:`TcpProxy.stop` closes the listening socket too (clients see their connections
  drop, and new ones are refused: the server is down); :meth:`TcpProxy.start` listens
  again on the same port.
"""

from __future__ import annotations

import logging
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

from tests.support.processes import free_port

__all__ = ["TcpProxy", "via_proxy"]

logger = logging.getLogger(__name__)

CHUNK = 65536


class TcpProxy:
    def __init__(self, target: tuple[str, int], *, name: str = "proxy") -> None:
        self.target = target
        self.name = name
        self.port = free_port()
        self.connections = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self) -> TcpProxy:
        assert self._listener is None, f"{self.name} is already running"
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name=f"{self.name}-accept", daemon=True).start()
        return self

    def stop(self) -> None:
        """Refuse new connections and drop every open one."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone may not.
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        self.drop_connections()

    def drop_connections(self) -> int:
        """Close every open proxied connection (both ends); new ones are accepted as
        before while the proxy runs. Returns how many connections were dropped."""
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)
        return len(sockets) // 2

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError as exc:
                logger.warning("%s: cannot reach %s:%d: %s", self.name, *self.target, exc)
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    _close(client)
                    _close(upstream)
                    return
                self._sockets |= {client, upstream}
                self.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), name=f"{self.name}-pump",
                                 daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        # One side ended or failed: end the whole pair.
        with self._lock:
            self._sockets -= {source, sink}
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def via_proxy(url: str, proxy: TcpProxy) -> str:
    """``url`` (amqp://, redis://...) with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@127.0.0.1:{proxy.port}" if auth else f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))
