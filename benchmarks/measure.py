"""Timing, the page cache, shell commands and interleaved rounds: what every measurement shares.

A benchmark on a shared machine is noisy, so no contender is timed in one block: every round runs
each contender once, in alternating order (A B C, then C B A), and the report shows the best and
the median of the rounds. Every timed step starts from a cold page cache where we may drop it
(root), because profiles of tens of GB never sit in memory on the real machines.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

OURS, FAIR, GUIDE = "ours", "fair", "guide"  # who a contender is; the report groups and compares by it


class CommandFailed(RuntimeError):
    """A baseline's shell command failed; carries the end of its stderr."""


def sh(command: str, env: dict[str, str] | None = None) -> None:
    """Run a shell command (keys go in ``env``, never in the command line, which `ps` shows to everyone)."""
    done = subprocess.run(command, shell=True, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise CommandFailed(f"`{command}` exited with {done.returncode}: {done.stderr.strip()[-1500:]}")


def can_drop_caches() -> bool:
    return os.access("/proc/sys/vm/drop_caches", os.W_OK)


def drop_caches() -> None:
    """Write dirty pages out, then drop the page cache, so that the next step reads from the disk."""
    os.sync()
    if can_drop_caches():
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


@dataclass
class Step:
    """One timed operation of a contender; ``before`` and ``after`` run untimed (prepare, check the outcome)."""

    action: Callable[[], object]
    before: Callable[[], object] | None = None
    after: Callable[[], object] | None = None


@dataclass
class Contender:
    """One way to do an operation: nimrunbook, a fair alternative, or the guide's commands."""

    name: str  # shown in the report: a command in backticks, or what nimrunbook call it is
    side: str  # OURS, FAIR or GUIDE
    steps: dict[str, Step]  # operation name -> step, run in this order
    size: int  # bytes each step moves: throughput is size / seconds
    files: int | None = None  # for a cost per file
    reset: Callable[[], object] | None = None  # untimed, before each round
    counter: Callable[[], int] | None = None  # e.g. bytes hashed so far; its growth per step is recorded


@dataclass
class Result:
    """A contender's rounds: seconds per operation, or why it could not run."""

    name: str
    side: str
    size: int
    files: int | None = None
    seconds: dict[str, list[float]] = field(default_factory=dict)
    counted: dict[str, int] = field(default_factory=dict)  # the counter's growth in the last round, per operation
    failure: str | None = None

    @property
    def operations(self) -> list[str]:
        return list(self.seconds)

    def rounds(self, operation: str | None = None) -> list[float]:
        """Seconds per round for one operation, or for all of them together."""
        if operation is not None:
            return self.seconds[operation]
        return [sum(values) for values in zip(*self.seconds.values(), strict=True)] if self.seconds else []

    def median(self, operation: str | None = None) -> float:
        return statistics.median(self.rounds(operation))

    def best(self, operation: str | None = None) -> float:
        return min(self.rounds(operation))

    def spread(self, operation: str | None = None) -> float:
        """(slowest - fastest) / fastest over the rounds: how much this machine's noise moved the figure."""
        values = self.rounds(operation)
        return (max(values) - min(values)) / min(values) if values and min(values) > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None and bool(self.seconds)

    def rate(self, operation: str | None = None) -> float:
        """Bytes per second at the median."""
        return self.size / self.median(operation)


@dataclass
class Group:
    """The contenders for one operation and what bounds it: one section of the report."""

    key: str  # how targets find it, e.g. "bundle"
    title: str
    noun: str  # what the targets call it, before an operation: "Bundle" (create), "Cold" (process)
    results: list[Result]
    limits: dict[str, str] = field(default_factory=dict)  # operation -> the limit that applies (see limits.py)
    notes: list[str] = field(default_factory=list)

    def result(self, name: str) -> Result | None:
        return next((r for r in self.results if r.name == name), None)

    @property
    def ours(self) -> Result:
        """The first of nimrunbook's contenders: what the baselines are compared with."""
        return next(r for r in self.results if r.side == OURS)


def interleave(contenders: list[Contender], rounds: int, say: Callable[[str], None] = print) -> list[Result]:
    """Run every contender ``rounds`` times, alternating the order each round; a failing contender is recorded
    with its error and left out of later rounds, and the others go on."""
    results = {c.name: Result(c.name, c.side, c.size, c.files) for c in contenders}
    for index in range(rounds):
        order = contenders if index % 2 == 0 else list(reversed(contenders))
        for contender in order:
            result = results[contender.name]
            if result.failure is not None:
                continue
            try:
                _run_round(contender, result)
            except Exception as error:  # noqa: BLE001 - recorded in the report; the other contenders go on
                say(f"  {contender.name}: FAILED: {type(error).__name__}: {error}")
                result.failure = _summary(error)
                continue
            timings = ", ".join(f"{op} {values[-1]:.2f} s" for op, values in result.seconds.items())
            say(f"  round {index + 1}: {contender.name}: {timings}")
    return [results[c.name] for c in contenders]


def _summary(error: Exception, limit: int = 300) -> str:
    """The error in one line short enough for a table cell (the console has it whole)."""
    lines = str(error).strip().splitlines() or [""]
    text = f"{type(error).__name__}: {lines[0]}" + (f" (and {len(lines) - 1} more lines)" if len(lines) > 1 else "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _run_round(contender: Contender, result: Result) -> None:
    if contender.reset:
        contender.reset()
    for operation, step in contender.steps.items():
        if step.before:
            step.before()
        drop_caches()
        counted = contender.counter() if contender.counter else 0
        result.seconds.setdefault(operation, []).append(timed(step.action))
        if contender.counter:
            result.counted[operation] = contender.counter() - counted
        if step.after:
            step.after()
