"""Proxies in front of real services, that a test can cut mid-run (or slow down).

The Docker engine is shared with every other test and engineer on the machine
and must never be stopped, so "the engine dies" is played by cutting
:class:`UnixSocketProxy`: its socket goes away and every connection through it
is closed, exactly what a client sees when the engine stops. An S3 server lives
for the whole test session, so "the S3 front end dies mid-upload" is played by
cutting a :class:`TcpProxy` in front of it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from pathlib import Path


class UnixSocketProxy:
    def __init__(self, target: str) -> None:
        self.target = target
        self.path = Path(tempfile.mkdtemp(prefix="nimrunbook-proxy-")) / "docker.sock"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(64)
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._cut:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        """The engine is gone: no socket to connect to, and every open connection closed."""
        with self._lock:
            self._cut = True
            sockets, self._sockets = self._sockets, []
        with contextlib.suppress(OSError):
            self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> UnixSocketProxy:
        return self

    def __exit__(self, *_exc) -> None:
        self.cut()
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()


class TcpProxy:
    """A TCP proxy on loopback in front of a server (TLS passes through untouched), that a test can slow down or cut.

    Plays a network path that is slow (``rate``: bytes per second towards the server) or an S3 front end (a load
    balancer, a proxy) that dies mid-transfer (``cut_after``: bytes towards the server, then :meth:`cut`).
    """

    def __init__(self, target_port: int, *, rate: int | None = None, cut_after: int | None = None) -> None:
        self.target_port, self.rate, self.cut_after = target_port, rate, cut_after
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = False
        self.sent = 0  # bytes forwarded towards the server
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._cut:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, towards_server: bool) -> None:
        try:
            while data := source.recv(16384 if towards_server and self.rate else 65536):
                if towards_server:
                    with self._lock:
                        self.sent += len(data)
                        over = self.cut_after is not None and self.sent > self.cut_after
                    if over:
                        self.cut()
                        return
                    if self.rate:
                        time.sleep(len(data) / self.rate)
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        """The front end is gone: nothing listens any more, and every open connection is closed."""
        with self._lock:
            self._cut = True
            sockets, self._sockets = self._sockets, []
        with contextlib.suppress(OSError):
            self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *_exc) -> None:
        self.cut()
