"""Hashed reads and copies on every core: the overlapped pump gives what the serial pump gives, never reads past its
limit, raises what its threads met, stops when cancelled; the file pool keeps order, stops the rest on the first
failure and raises that failure; a copy that fails leaves nothing half-written. Real files throughout, a real
small tmpfs for a full disk; a failing read is injected (no real disk fails on demand here)."""

import errno
import hashlib
import io
import os
import subprocess
import threading
import time

import pytest

from nimrunbook import hashing
from nimrunbook.hashing import BUFFER, Cancelled, FilePool, copy_and_hash, overlapped_pump, pump, sha256_file
from nimrunbook.localdisk import atomic_writer, start_writeback
from nimrunbook.progress import Task

SIZES = [0, 1, BUFFER - 1, BUFFER, BUFFER + 1, 3 * BUFFER + 12345]


def _file(path, size):
    path.write_bytes(os.urandom(size))
    return path


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("limit", [None, 0, 7, BUFFER + 3])
def test_overlapped_pump_moves_and_hashes_what_pump_does(tmp_path, size, limit):
    source = _file(tmp_path / "source", size)
    expected = source.read_bytes()[: limit if limit is not None else size]
    task, counted = Task(), hashing.BYTES_HASHED
    two = [hashlib.sha256(), hashlib.sha256()]
    with open(source, "rb", buffering=0) as reader, open(tmp_path / "copy", "wb") as writer:
        moved = overlapped_pump(reader, writer, two, task, limit)
        assert reader.tell() == len(expected)  # never a byte past the limit: the next part starts here
    assert moved == len(expected) == task.done == hashing.BYTES_HASHED - counted
    assert (tmp_path / "copy").read_bytes() == expected
    assert two[0].hexdigest() == two[1].hexdigest() == hashlib.sha256(expected).hexdigest()
    digest = hashlib.sha256()
    with open(source, "rb", buffering=0) as reader:
        assert overlapped_pump(reader, None, [digest], limit=limit) == len(expected)
    assert digest.hexdigest() == hashlib.sha256(expected).hexdigest()


def test_consecutive_limited_pumps_split_one_reader(tmp_path):
    """What parts.write_file does: one reader, several limited pumps, each taking up where the last stopped."""
    source = _file(tmp_path / "source", 3 * BUFFER + 5)
    whole, pieces = hashlib.sha256(), []
    with open(source, "rb", buffering=0) as reader:
        while True:
            piece = io.BytesIO()
            if not overlapped_pump(reader, piece, [whole], limit=BUFFER + 1):
                break
            pieces.append(piece.getvalue())
    assert b"".join(pieces) == source.read_bytes() and [len(p) for p in pieces] == [BUFFER + 1] * 3 + [2]
    assert whole.hexdigest() == hashlib.sha256(source.read_bytes()).hexdigest()


def test_non_file_readers_take_the_serial_path():
    data = os.urandom(2 * BUFFER + 1)
    digest = hashlib.sha256()
    assert overlapped_pump(io.BytesIO(data), None, [digest], limit=BUFFER + 1) == BUFFER + 1
    assert digest.hexdigest() == hashlib.sha256(data[: BUFFER + 1]).hexdigest()


class _FailingReader(io.FileIO):
    """Fault injection: the medium fails after ``good`` bytes (EIO), as a pulled or dying drive does."""

    good = 2 * BUFFER

    def readinto(self, buffer):
        if self.tell() >= self.good:
            raise OSError(errno.EIO, "Input/output error")
        return super().readinto(buffer)


def _threads_settle(before: int) -> bool:
    for _ in range(100):
        if threading.active_count() <= before:
            return True
        time.sleep(0.01)
    return False


def test_a_failing_read_is_raised_and_the_threads_end(tmp_path):
    source = _file(tmp_path / "source", 5 * BUFFER)
    before = threading.active_count()
    with pytest.raises(OSError) as info, _FailingReader(source) as reader:
        overlapped_pump(reader, io.BytesIO(), [hashlib.sha256()])
    assert info.value.errno == errno.EIO and _threads_settle(before)


def test_a_full_disk_is_raised_and_nothing_half_written_is_left(tmp_path):
    small = tmp_path / "small-disk"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        source = _file(tmp_path / "source", 12 * 2**20)  # more than the 8 MiB the disk holds
        before = threading.active_count()
        with pytest.raises(OSError) as info:
            copy_and_hash(source, small / "copy")
        assert info.value.errno == errno.ENOSPC and _threads_settle(before)
        assert list(small.iterdir()) == []  # neither the copy nor its .incomplete
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_cancel_stops_a_copy_within_a_buffer_and_leaves_nothing(tmp_path):
    source = _file(tmp_path / "source", 8 * BUFFER)
    cancel = threading.Event()

    class Stopping(Task):  # the pool sets cancel from another thread; here the first advance does
        def advance(self, amount):
            super().advance(amount)
            cancel.set()

    task = Stopping()
    with pytest.raises(Cancelled):
        copy_and_hash(source, tmp_path / "copy", task, cancel=cancel)
    assert task.done <= 2 * BUFFER and sorted(p.name for p in tmp_path.iterdir()) == ["source"]
    with pytest.raises(Cancelled):
        sha256_file(source, cancel=cancel)  # already set: nothing is read


def test_sha256_file_and_copy_and_hash_agree_with_hashlib(tmp_path):
    source = _file(tmp_path / "source", 2 * BUFFER + 99)
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    assert sha256_file(source) == expected == copy_and_hash(source, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == source.read_bytes()


def test_pool_keeps_the_order_of_its_items_and_does_the_largest_first():
    started = []
    lock = threading.Lock()

    def work(item):
        with lock:
            started.append(item)
        return item * 10

    items = [3, 9, 1, 7]
    assert FilePool(1).map(work, items, size=lambda i: i) == [30, 90, 10, 70]
    assert started == [9, 7, 3, 1]
    assert FilePool(3).map(work, items) == [30, 90, 10, 70]
    assert FilePool(2).map(work, []) == []


def test_pool_raises_the_first_failure_and_starts_nothing_after_it(tmp_path):
    source = _file(tmp_path / "source", 64 * BUFFER)
    out = tmp_path / "out"
    out.mkdir()
    pool = FilePool(2)
    begun, copying = [], threading.Event()

    def work(index):
        begun.append(index)
        if index == 0:
            return copy_and_hash(source, out / "copy", Copying(), cancel=pool.cancel)
        if index == 1:
            copying.wait(10)  # fail while the other copy is under way, so that it is stopped, not finished
            raise OSError(errno.EIO, "Input/output error")
        time.sleep(0.01)
        return index

    class Copying(Task):
        def advance(self, amount):
            super().advance(amount)
            copying.set()

    with pytest.raises(OSError) as info:
        pool.map(work, list(range(50)))
    assert info.value.errno == errno.EIO  # the cause, not the Cancelled it caused
    assert pool.cancel.is_set() and set(begun[:2]) == {0, 1} and len(begun) < 5
    assert list(out.iterdir()) == []  # the stopped copy left no .incomplete


def test_pool_passes_an_interrupt_up_after_stopping_the_others():
    pool = FilePool(2)

    def work(index):
        if index == 0:
            raise KeyboardInterrupt
        while not pool.cancel.is_set():
            time.sleep(0.01)
        raise Cancelled

    with pytest.raises(KeyboardInterrupt):
        pool.map(work, [0, 1])


def test_writeback_advice_is_harmless_where_it_means_nothing(tmp_path):
    with atomic_writer(tmp_path / "file") as writer:
        writer.write(b"x" * 4096)
        writer.flush()
        start_writeback(writer.fileno(), 0, 4096)
    read_end, write_end = os.pipe()
    try:
        start_writeback(write_end, 0, 4096)  # ESPIPE: ignored
    finally:
        os.close(read_end)
        os.close(write_end)
    assert (tmp_path / "file").read_bytes() == b"x" * 4096


def test_pump_and_overlapped_pump_count_the_same(tmp_path):
    source = _file(tmp_path / "source", BUFFER + 1)
    counted = hashing.BYTES_HASHED
    with open(source, "rb", buffering=0) as reader:
        pump(reader, None, [hashlib.sha256()])
    with open(source, "rb", buffering=0) as reader:
        overlapped_pump(reader, None, [hashlib.sha256()])
    assert hashing.BYTES_HASHED - counted == 2 * (BUFFER + 1)
