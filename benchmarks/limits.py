"""What this machine can do at most: the bounds every operation is measured against.

An operation that reads, writes and hashes every byte once cannot beat the slowest of those
done at full speed, so its limit is the minimum of the primitive rates it needs (e.g. bundle
create: a copy to the media, and sha256 on every core). Primitive rates are measured here, in
the same run and on the same filesystem as the operations, with the same interleaved rounds.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from benchmarks.measure import Contender, Group, Result, Step, interleave, sh

CHUNK = 8 * 1024 * 1024  # the buffer size nimrunbook hashes in
SHA_BYTES = 128 * CHUNK  # at least this much per core (about a second), so that a hiccup does not set the rate

LIMIT = "limit"  # the side of a primitive's measurement
COLD_READ, COPY, WRITE, SHA_CORE, SHA_ALL = "cold read", "copy", "write", "sha256, one core", "sha256, all cores"
READ_SHA_ALL = "cold read + sha256, all cores"

HOW = {
    COLD_READ: "`dd if=FILE of=/dev/null bs=8M`",
    COPY: "`cp FILE COPY && sync COPY`",
    WRITE: "`dd if=/dev/zero of=FILE bs=8M conv=fsync`",
    SHA_CORE: "hashlib sha256 on one thread, 8 MiB buffers",
    SHA_ALL: "hashlib sha256 on every core at once, one thread each, 8 MiB buffers",
    READ_SHA_ALL: "every core reads its share of a cold file (8 MiB `pread`s) and hashes it, one thread each: "
    "the simplest loop that does a hashed read's work; not a limit, a yardstick for one",
}

# The limits operations are held to, derived from the primitives, and why each applies.
HASHED_READ = "min(cold read, cores × sha256)"
HASHED_COPY = "min(copy, cores × sha256)"
FASTEST_CLIENT = "the fastest client on the same server"
WHY = {
    HASHED_READ: "every byte is read from the disk and hashed once; nothing is written but links and small files, "
    "and hashing can use every core",
    HASHED_COPY: "every byte is read, written durably (fsync) and hashed once; hashing can use every core",
    FASTEST_CLIENT: "on loopback the S3 server is the bound, and nothing measures its intake but a client: "
    "the best median of every client in the same rounds",
}


def cores() -> int:
    return len(os.sched_getaffinity(0))


def _cold_read(path: Path) -> None:
    sh(f"dd if={path} of=/dev/null bs=8M status=none")


def _copy(source: Path, target: Path) -> None:
    sh(f"cp {source} {target} && sync {target}")


def _write(target: Path, size: int) -> None:
    sh(f"dd if=/dev/zero of={target} bs=8M count={max(1, size // CHUNK)} conv=fsync status=none")


def _sha256_threads(size: int, threads: int) -> None:
    """Hash ``size`` bytes split over ``threads`` threads, 8 MiB at a time (hashlib releases the GIL)."""
    buffer = os.urandom(CHUNK)

    def work(share: int) -> None:
        digest = hashlib.sha256()
        for _ in range(max(1, share // CHUNK)):
            digest.update(buffer)

    workers = [threading.Thread(target=work, args=(size // threads,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _hashed_cold_read(path: Path, size: int, threads: int) -> None:
    """Read ``path`` from the disk and hash it, split into one contiguous share per thread."""
    share = -(-size // threads // CHUNK) * CHUNK
    descriptor = os.open(path, os.O_RDONLY)

    def work(start: int) -> None:
        digest, offset = hashlib.sha256(), start
        while offset < min(start + share, size):
            data = os.pread(descriptor, CHUNK, offset)
            if not data:
                break
            digest.update(data)
            offset += len(data)

    try:
        workers = [threading.Thread(target=work, args=(i * share,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        os.close(descriptor)


def openssl_sha256_per_core() -> float | None:
    """`openssl speed -evp sha256` on 8 MiB buffers, bytes per second on one core (None if unavailable)."""
    try:
        out = subprocess.run(
            ["openssl", "speed", "-evp", "sha256", "-bytes", str(CHUNK), "-seconds", "2"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    found = re.search(r"^sha256\s+([\d.]+)k\s*$", out, re.MULTILINE)
    return float(found.group(1)) * 1000 if found else None


@dataclass
class Limits:
    """Primitive rates in bytes per second (median of the rounds) and the limits derived from them."""

    cores: int
    results: list[Result]
    openssl_per_core: float | None

    def rate(self, name: str) -> float:
        result = next(r for r in self.results if r.name == name)
        return result.rate() if result.ok else float("nan")

    @property
    def sha_cores(self) -> float:
        """cores × sha256 on one core: what hashing on every core could do on an idle machine."""
        return self.cores * self.rate(SHA_CORE)

    def derived(self) -> dict[str, float]:
        return {
            HASHED_READ: min(self.rate(COLD_READ), self.sha_cores),
            HASHED_COPY: min(self.rate(COPY), self.sha_cores),
        }

    def of(self, limit: str) -> float:
        return self.derived()[limit]


def measure(work: Path, size: int, rounds: int, say=print) -> Limits:
    """Measure the primitives on ``size`` bytes in ``work`` (on the filesystem the operations use)."""
    work.mkdir(parents=True, exist_ok=True)
    size = max(1, size // CHUNK) * CHUNK
    source, copied, written = work / "limit-source.bin", work / "limit-copy.bin", work / "limit-write.bin"
    sh(f"head -c {size} /dev/urandom > {source}")
    n = cores()
    hashed = max(size, SHA_BYTES)

    def remove_outputs() -> None:
        copied.unlink(missing_ok=True)
        written.unlink(missing_ok=True)

    contenders = [
        Contender(COLD_READ, LIMIT, {"read": Step(lambda: _cold_read(source))}, size),
        Contender(COPY, LIMIT, {"copy": Step(lambda: _copy(source, copied))}, size, reset=remove_outputs),
        Contender(WRITE, LIMIT, {"write": Step(lambda: _write(written, size))}, size, reset=remove_outputs),
        Contender(SHA_CORE, LIMIT, {"hash": Step(lambda: _sha256_threads(hashed, 1))}, hashed),
        Contender(SHA_ALL, LIMIT, {"hash": Step(lambda: _sha256_threads(hashed * n, n))}, hashed * n),
        Contender(READ_SHA_ALL, LIMIT, {"read": Step(lambda: _hashed_cold_read(source, size, n))}, size),
    ]
    say(f"machine limits on {size / 1e9:.2f} GB, {n} cores")
    results = interleave(contenders, rounds, say)
    for path in (source, copied, written):
        path.unlink(missing_ok=True)
    return Limits(n, results, openssl_sha256_per_core())


def limit_rate(limits: Limits, group: Group, operation: str) -> float:
    """Bytes per second the operation's limit allows (for the fastest-client limit: that client's rate)."""
    name = group.limits[operation]
    if name == FASTEST_CLIENT:
        return max(r.rate(operation) for r in group.results if r.ok)
    return limits.derived()[name]


def fraction_of_limit(limits: Limits, group: Group, result: Result, operation: str | None = None) -> float | None:
    """The time at the limit over the time taken (1.0: at the limit); for all operations when none is named."""
    operations = [operation] if operation else result.operations
    if not result.ok or not all(op in group.limits for op in operations):
        return None
    ideal = sum(result.size / limit_rate(limits, group, op) for op in operations)
    return ideal / result.median(operation)
