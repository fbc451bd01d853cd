"""Local-disk discipline: atomic writes, free space, and the NIM cache read from a real cache tree."""

import errno
import io
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import FIXTURES

from nimrunbook import localdisk
from nimrunbook.errors import DiskSpaceError
from nimrunbook.localdisk import (
    WRITEBACK_STEP,
    NimCache,
    Writeback,
    atomic_writer,
    cache_journal_path,
    free_bytes,
    require_free_space,
    state_journal_path,
    write_text_atomic,
    writeback_while_written,
)

TREE = FIXTURES / "cache-trees/llama-3.1-8b-instruct-1.1.2-L40S-download-to-cache-ngc-hub.txt"


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "record.json"
    write_text_atomic(target, "first\n")
    with pytest.raises(OSError), atomic_writer(target, "w") as handle:
        handle.write("half of the second")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "first\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]  # no .incomplete left behind
    partial = tmp_path / "state" / "x.incomplete"
    partial.parent.mkdir()
    with atomic_writer(tmp_path / "x", partial=partial) as handle:
        handle.write(b"bytes")
        assert partial.exists() and not (tmp_path / "x").exists()
    assert (tmp_path / "x").read_bytes() == b"bytes" and not partial.exists()


def test_free_space_is_checked_on_the_nearest_existing_parent(tmp_path, monkeypatch):
    asked = []  # which folder is measured, not how much is free: others write to this disk meanwhile
    measure = shutil.disk_usage
    monkeypatch.setattr("nimrunbook.localdisk.shutil.disk_usage", lambda path: asked.append(path) or measure(path))
    assert free_bytes(tmp_path / "not" / "yet") > 0 and asked == [tmp_path]
    require_free_space(tmp_path, 1, what="Nothing", hint="-")
    with pytest.raises(DiskSpaceError) as info:
        require_free_space(tmp_path / "later", 10**18, what="The download", hint="Free space, then run again.")
    assert str(info.value).startswith("The download needs 1000000.0 TB in ") and "Free space" in str(info.value)


def _advice_recorded(monkeypatch) -> list[tuple[int, int, int]]:
    """Every writeback advice given, as (inode, offset, length); the advice itself is still given."""
    advised, advise = [], localdisk.start_writeback

    def record(fd, offset, length):
        advised.append((os.fstat(fd).st_ino, offset, length))
        advise(fd, offset, length)

    monkeypatch.setattr(localdisk, "start_writeback", record)
    return advised


def test_writeback_is_advised_as_a_file_grows(tmp_path, monkeypatch):
    advised = _advice_recorded(monkeypatch)
    with atomic_writer(tmp_path / "copy") as writer:
        writeback = Writeback(writer)
        for _ in range(5):
            writer.write(b"x" * (WRITEBACK_STEP // 2))
            writeback.wrote(WRITEBACK_STEP // 2)
        inode = os.fstat(writer.fileno()).st_ino
    assert [(i, o, n) for i, o, n in advised if i == inode] == [
        (inode, 0, WRITEBACK_STEP),
        (inode, WRITEBACK_STEP, WRITEBACK_STEP),
    ]
    assert (tmp_path / "copy").stat().st_size == 5 * WRITEBACK_STEP // 2
    Writeback(io.BytesIO()).wrote(2 * WRITEBACK_STEP)  # not a file on a disk: nothing to advise, no error


def test_writeback_while_another_program_writes(tmp_path, monkeypatch):
    """A child process writes a file slowly, as skopeo writes a blob; a FIFO beside it is never opened."""
    advised = _advice_recorded(monkeypatch)
    os.mkfifo(tmp_path / "fifo")
    size = 3 * WRITEBACK_STEP
    writer = (
        "import sys, time\n"
        "with open(sys.argv[1], 'wb') as out:\n"
        f"    for _ in range({size // 2**20}):\n"
        "        out.write(b'y' * 2**20); out.flush(); time.sleep(0.005)\n"
    )
    with writeback_while_written(tmp_path, every=0.01):
        subprocess.run([sys.executable, "-c", writer, str(tmp_path / "blob")], check=True)
        inode = (tmp_path / "blob").stat().st_ino
        for _ in range(1000):  # until the watcher has seen the file whole (it looks every 10 ms)
            if size - sum(n for i, _, n in advised if i == inode) < WRITEBACK_STEP:
                break
            time.sleep(0.01)
    ranges = [(offset, length) for i, offset, length in advised if i == inode]
    assert ranges and all(length >= WRITEBACK_STEP for _, length in ranges)
    assert [offset for offset, _ in ranges] == [sum(n for _, n in ranges[:k]) for k in range(len(ranges))]  # in turn
    assert size - sum(n for _, n in ranges) < WRITEBACK_STEP  # the tail is left to the writer's own fsync
    assert not any(t.name == "nimrunbook-writeback" for t in threading.enumerate())
    assert (tmp_path / "blob").read_bytes() == b"y" * size
    with writeback_while_written(tmp_path / "not-yet", every=0.01):  # a folder not made yet: nothing happens
        time.sleep(0.05)


def test_journal_locations():
    assert cache_journal_path("/c") == Path("/c/.nimrunbook-sha256.jsonl")
    assert state_journal_path("/d") == Path("/d/.nimrunbook/sha256.jsonl")


def _build_from_tree(listing: str, root: Path) -> None:
    """Recreate the directories and links `tree` printed; blobs get 100 bytes each (the sample has no sizes)."""
    root.mkdir(parents=True)
    parents = [root]
    for line in listing.splitlines()[1:]:
        indent = next(i for i, c in enumerate(line) if c not in "│├└─  \u00a0")
        depth, entry = indent // 4 - 1, line[indent:]
        name, _, link = entry.partition(" -> ")
        path = parents[depth] / name
        del parents[depth + 1 :]
        if link:
            path.symlink_to(link)
        elif parents[depth].name == "blobs" or parents[depth].name == "refs":
            path.write_bytes(b"x" * 100)
        else:
            path.mkdir()
        parents.append(path)


def test_nim_cache_records_from_a_real_cache_tree(tmp_path):
    _build_from_tree(TREE.read_text(), tmp_path / "ngc" / "hub")
    cache = NimCache(tmp_path)
    info = cache.scan()
    (repo,) = info.repos
    assert repo.folder == "models--nim--meta--llama-3_1-8b-instruct"
    assert (info.files, info.bytes) == cache.usage() == (27, 2700)
    tags = {r.tag: r for r in repo.revisions}
    assert set(tags) == {
        "0.11.1+ba20956e-l40sx1-bf16-throughput.1.1.0.17088220",
        "0.11.1+ba20956e-l40sx2-bf16-latency.1.1.0.16792222",
        "hf-8c22764-b",
    }
    engine = tags["0.11.1+ba20956e-l40sx2-bf16-latency.1.1.0.16792222"]
    rank1 = engine.file("rank1.engine")
    assert rank1.blob.name == "e69bb893a99be22626e9851eb9f45b8a-1657" and rank1.size == 100
    assert engine.size == 700
    folders = ["models--nim--meta--llama-3.1-8b-instruct", "models--nim--meta--llama-3_1-8b-instruct"]
    assert cache.revision(folders, "hf-8c22764-b").size == 1400
    assert cache.blob_of(folders, "hf-8c22764-b", "config.json").name == "345ce8cb29fb80a99a92360c273d8ed7"
    assert cache.blob_of(folders, None, "rank1.engine") == rank1.blob
    os.unlink(rank1.blob)  # a broken link is not content
    assert cache.blob_of(folders, None, "rank1.engine") is None
    assert cache.revision(folders, engine.tag).file("rank1.engine").blob is None
    assert cache.revision(folders, "no-such-tag") is None and NimCache(tmp_path / "empty").usage() == (0, 0)
