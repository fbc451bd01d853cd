"""The relay between the smoke test's isolated network and the object store, on loopback."""

from __future__ import annotations

import socket
import threading

from nimrunbook.sandbox.ports import free_port
from nimrunbook.smoke.relay import EndpointRelay


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            with client:
                while data := client.recv(65536):
                    client.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_bytes_go_both_ways_and_close_stops_listening():
    server, port = _echo_server()
    listen = free_port()
    try:
        with EndpointRelay("127.0.0.2", listen, "localhost", port) as relay:
            assert relay.address == ("127.0.0.2", listen)
            for _ in range(3):
                with socket.create_connection(relay.address, timeout=5) as client:
                    payload = b"x" * 3_000_000
                    send = threading.Thread(
                        target=lambda c=client, p=payload: (c.sendall(p), c.shutdown(socket.SHUT_WR))
                    )
                    send.start()
                    received = b""
                    while chunk := client.recv(1 << 20):
                        received += chunk
                    assert received == payload.upper()
            assert relay.connections == 3
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.2", listen)) != 0
    finally:
        server.close()


def test_a_taken_port_falls_back_to_another():
    with socket.create_server(("127.0.0.2", 0)) as taken:
        port = taken.getsockname()[1]
        with EndpointRelay("127.0.0.2", port, "127.0.0.1", 9) as relay:
            assert relay.address[1] != port
