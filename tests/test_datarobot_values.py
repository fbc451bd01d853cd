"""Writing the DataRobot values file: one writer at a time, and backups that never overwrite each other."""

import subprocess
import sys

import pytest
from ruamel.yaml import YAML

from nimrunbook.datarobot import DataRobotSettings, merge_values
from nimrunbook.errors import LockedError

ORIGINAL = "# the platform team's values\nglobal:\n  domain: datarobot.example.com  # keep\n"
ALLOW = ["nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5"]


def _settings(registry: str) -> DataRobotSettings:
    return DataRobotSettings(registry, "nim-profiles", "us-east-1", "https://minio.example.com", ALLOW)


def _backups(values):
    return sorted(values.parent.glob(values.name + ".bak-*"))


def test_backups_in_the_same_second_are_all_kept(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(ORIGINAL)
    values.chmod(0o600)
    contents = []
    for number in range(5):
        contents.append(values.read_text())
        _, backup = merge_values(values, _settings(f"registry-{number}.example.com"), write=True)
        assert backup.read_text() == contents[-1]
    assert sorted(b.read_text() for b in _backups(values)) == sorted(contents) and contents[0] == ORIGINAL
    assert values.stat().st_mode & 0o777 == 0o600  # the merged file keeps the original's permissions


WORKER = """
import sys
from nimrunbook.datarobot import DataRobotSettings, merge_values
from nimrunbook.errors import LockedError
written = refused = 0
for number in range(int(sys.argv[2])):
    registry = f"registry-{sys.argv[3]}-{number}.example.com"
    settings = DataRobotSettings(registry, "nim-profiles", "us-east-1", None, ["nvcr.io/nim/meta/x:1.0"])
    try:
        written += merge_values(sys.argv[1], settings, write=True)[1] is not None
    except LockedError:
        refused += 1
print(written, refused)
"""


def test_concurrent_merges_never_lose_the_original_or_a_backup(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(ORIGINAL)
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(values), "15", str(n)], stdout=subprocess.PIPE, text=True)
        for n in range(3)
    ]
    outcomes = [tuple(map(int, w.communicate(timeout=300)[0].split())) for w in workers]
    assert all(w.returncode == 0 for w in workers)
    written = sum(o[0] for o in outcomes)
    backups = _backups(values)
    assert len(backups) == written > 0  # every write kept its own backup
    assert sum(b.read_text() == ORIGINAL for b in backups) == 1
    merged = YAML(typ="safe").load(values.read_text())
    assert merged["global"]["domain"] == "datarobot.example.com"  # every merge started from a whole file
    assert not list(tmp_path.glob("*.incomplete"))


def test_a_merge_is_refused_while_another_process_writes(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(ORIGINAL)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom nimrunbook.locks import file_lock\n"
            "with file_lock(sys.argv[1], 'merging DataRobot values into'):\n    print('held', flush=True)\n    time.sleep(600)",
            str(values),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"pid {holder.pid}.*is merging DataRobot values into {values}"):
            merge_values(values, _settings("registry.example.com"), write=True)
        assert values.read_text() == ORIGINAL and not _backups(values)
        diff, backup = merge_values(values, _settings("registry.example.com"))  # a dry run needs no lock
        assert diff and backup is None
    finally:
        holder.kill()
        holder.wait()
