"""A TCP relay from an isolated container network to exactly one host:port: the object store.

The smoke test's container sits on an internal Docker network with no route
anywhere. The only thing it can open is this relay, listening on the
network's gateway address (an address of this host), which passes bytes to
the object store's endpoint as this host resolves it. TLS runs end to end
between the NIM and the object store: the relay sees ciphertext only, so
certificate and host-name checks are the NIM's own.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024


class EndpointRelay:
    """Accept on ``(listen_host, port)``; connect each client to ``(target_host, target_port)`` and pipe both ways."""

    def __init__(self, listen_host: str, port: int, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.connections = 0
        self._closing = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        try:
            self._server = socket.create_server((listen_host, port))
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EADDRINUSE):
                raise
            # A privileged port as non-root, or taken on this host: any port does, the container is told which.
            log.info("relay: port %d unavailable on %s (%s); using another", port, listen_host, exc.strerror)
            self._server = socket.create_server((listen_host, 0))
        self._server.settimeout(0.5)  # wake up to notice close(): closing does not interrupt accept() on Linux
        self.address: tuple[str, int] = self._server.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept, name="nimrunbook-smoke-relay", daemon=True)

    def __enter__(self) -> EndpointRelay:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            client.settimeout(None)
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=30)
            upstream.settimeout(None)
        except OSError as exc:
            log.info("relay: cannot reach %s:%d: %s", *self.target, exc)
            client.close()
            return
        self._track(upstream)
        with self._lock:
            self.connections += 1
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._server.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            self._sockets.clear()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
