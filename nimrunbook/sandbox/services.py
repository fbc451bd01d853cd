"""Every service the sandbox starts, stopped on every way out: an error, Ctrl-C, SIGTERM, a closed terminal.

A service joins the group *before* it starts, so one interrupted half-way
through starting is stopped too. The group writes what runs (pids, ports) to a
JSON file as it goes: ``nimrunbook demo --keep`` turns it into a stop script,
and the tests use it to prove that nothing is left behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)


class Service(Protocol):
    def start(self) -> object: ...

    def stop(self) -> None: ...

    @property
    def pids(self) -> list[int]: ...

    @property
    def ports(self) -> list[int]: ...


S = TypeVar("S", bound=Service)


class ServiceGroup:
    """Services started together and stopped together, last started first stopped."""

    def __init__(self, record: Path | None = None) -> None:
        self.record = record
        self.services: list[Service] = []

    def start(self, service: S) -> S:
        self.services.append(service)
        try:
            service.start()
        finally:
            self._write_record()
        return service

    def adopt(self, service: S) -> S:
        """A service that is already running (and that we own), e.g. a Docker engine we started."""
        self.services.append(service)
        self._write_record()
        return service

    @property
    def pids(self) -> list[int]:
        return [pid for service in self.services for pid in service.pids]

    @property
    def ports(self) -> list[int]:
        return [port for service in self.services for port in service.ports]

    def stop(self) -> None:
        """Stop every service; a second Ctrl-C or SIGTERM does not cut this short."""
        with _signals_ignored():
            while self.services:
                service = self.services.pop()
                try:
                    service.stop()
                except Exception as exc:  # noqa: BLE001 - one that will not stop must not keep the others running
                    log.warning("could not stop %s: %s", type(service).__name__, exc)
            self._write_record()

    def _write_record(self) -> None:
        if self.record is None:
            return
        running = [{"service": type(s).__name__, "pids": s.pids, "ports": s.ports} for s in self.services]
        temporary = self.record.with_name(self.record.name + ".incomplete")
        temporary.write_text(json.dumps(running, indent=1))
        os.replace(temporary, self.record)


class Terminated(SystemExit):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so every ``finally`` runs, and exits 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signal_name = signal.Signals(signum).name


@contextlib.contextmanager
def terminate_gracefully() -> Iterator[None]:
    """Within this block SIGTERM and SIGHUP raise :class:`Terminated` (Python's default is to die on the spot)."""

    def handler(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    watched = (signal.SIGTERM, signal.SIGHUP)
    try:
        previous = {signum: signal.signal(signum, handler) for signum in watched}
    except ValueError:  # not the main thread: signals cannot be handled here, nothing to change
        yield
        return
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    try:
        previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in watched}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
