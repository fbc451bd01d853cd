"""Loopback services: free ports, starting a service's process, waiting for it to answer, stopping it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``check`` (bounded by ``timeout``) until it returns true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # closed while we look
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:  # the process is gone
        pass
    return inodes


def listening_ports(pids: Iterable[int]) -> set[int]:
    """The TCP ports these processes listen on: their sockets' inodes, found in /proc/net/tcp and tcp6."""
    inodes = set().union(*(_socket_inodes(pid) for pid in pids))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_for_port(process: subprocess.Popen, port: int, what: str, log_file: Path, timeout: float = 30.0) -> None:
    """Wait until ``process`` itself listens on ``port``; if it exits first, say so at once with the end of its log.

    Itself: a free port can be taken by someone else between choosing it and binding it, and then a server
    that answers there is not ours.
    """

    def listening() -> bool:
        if process.poll() is not None:
            tail = log_file.read_text(errors="replace")[-1500:].strip() if log_file.exists() else ""
            raise RuntimeError(f"{what} exited with code {process.returncode}; the end of {log_file}:\n{tail}")
        return port in listening_ports([process.pid])

    wait_until(listening, what, timeout)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to send SIGTERM to this child when the process that started it dies, even by SIGKILL."""
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def launch(
    argv: Sequence[str], log_file: Path, *, detach: bool = False, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start a service's process with its output appended to ``log_file``.

    By default the service is bound to us: it gets SIGTERM when this process dies, however it dies, so a
    killed demo or test session leaves nothing behind. ``detach`` is for services meant to outlive us
    (``nimrunbook demo --keep``): their own session, so no signal aimed at our terminal reaches them.
    """
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=detach,
            preexec_fn=None if detach else _die_with_parent,  # only a prctl call: safe between fork and exec
        )


def stop_process(process: subprocess.Popen | None, timeout: float = 10) -> None:
    """Terminate a service we started, and kill it if it does not go within ``timeout``."""
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    else:
        process.wait()
