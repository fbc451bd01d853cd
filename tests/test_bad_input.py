"""Every bad input to every command ends in one paragraph: exit 2, no traceback, no secret.

The commands are enumerated from the argparse parser, so a command added later is covered without editing
this test: each is run with no arguments, and each of its arguments that takes a value is given every class
of bad value its role admits (what the argument is for comes from its ``type``: see
:class:`nimrunbook.cli.arguments.PathArgument`; an argument without one is classified by its name). Every other
required argument gets the same bad value, so whichever the command looks at first, it must refuse it. The
commands run in this process (a subprocess costs seconds of imports per case), each under a deadline, from a
scratch working folder; none gets far enough to need Docker, a registry or an object store.
"""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAKE_NGC_KEY, FIXTURES

from nimrunbook.cli import build_parser, main
from nimrunbook.cli.arguments import PathArgument, positive_float, positive_int

FAKE_AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYTESTONLYKEY"
DEADLINE = 30  # seconds per case: a command that waits (on a FIFO, a network) fails the case instead of hanging

# -- the classes of bad value ----------------------------------------------------------------------

FILE_CONTENTS = {
    "empty": b"",
    "not UTF-8": "café crème\n".encode("latin-1"),
    "binary": bytes(range(256)) * 4,
    "broken JSON/YAML": b'{"unclosed": [1, 2\n',
    "wrong shape": b'["a list", "not a mapping"]\n',
}
BAD_PATHS = ("missing", *FILE_CONTENTS, "a folder", "a FIFO", "under a file")
WRONG_PLACE = ("a folder", "a FIFO", "under a file")  # wrong for a file, whether read or written
NOT_A_FOLDER = ("empty", "a FIFO", "under a file")  # wrong for a folder, whether read or written
CLASSES = {
    "input file": BAD_PATHS,
    "edited file": (*list(FILE_CONTENTS)[1:], *WRONG_PLACE),
    "output file": WRONG_PLACE,
    "input folder": ("missing", *NOT_A_FOLDER),
    "output folder": NOT_A_FOLDER,
    "file": WRONG_PLACE,  # guessed from the name: read or written, we cannot tell
    "folder": NOT_A_FOLDER,
    "count": ("0", "-5", "x", "1.5"),
    "duration": ("0", "-5", "nan", "inf", "x"),
    "number": ("-5", "x"),
    "text": (),
}


def make_bad(name: str, folder: Path) -> str:
    """The bad value ``name``: a path made in ``folder``, or the text itself (numbers)."""
    if name in FILE_CONTENTS:
        path = folder / name.replace(" ", "-").replace("/", "-")
        path.write_bytes(FILE_CONTENTS[name])
        return str(path)
    if name == "missing":
        return str(folder / "absent.txt")
    if name == "a folder":
        (folder / "a-folder").mkdir(exist_ok=True)
        (folder / "a-folder" / "inside.txt").write_text("x\n")
        return str(folder / "a-folder")
    if name == "a FIFO":
        fifo = folder / "a-fifo"
        if not fifo.exists():
            os.mkfifo(fifo)
        return str(fifo)
    if name == "under a file":
        (folder / "plain-file").write_text("x\n")
        return str(folder / "plain-file" / "below")
    return name


# -- what each argument is -----------------------------------------------------------------------


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple, object]]:
    """Every runnable command, as (its words, its parser)."""
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subcommands:
        yield path, parser
        return
    for name, child in subcommands[0].choices.items():
        yield from leaf_commands(child, (*path, name))


def takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0 and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))


def role(action: argparse.Action) -> str:
    if isinstance(action.type, PathArgument):
        return action.type.role
    if action.type is positive_int:
        return "count"
    if action.type is positive_float:
        return "duration"
    if action.type in (int, float):
        return "number"
    if action.choices:
        return "text"  # argparse refuses what is not a choice
    words = set(action.dest.lower().split("_"))
    if words & {"dir", "directory", "folder"}:
        return "folder"
    if words & {"file", "kubeconfig"}:
        return "file"
    return "text"


def filler(action: argparse.Action, bad: str) -> list[str]:
    """A value for a required argument that is not the one under test: the same bad value, unless argparse
    would refuse it first (a choice, a number)."""
    if action.choices:
        value = str(next(iter(action.choices)))
    elif role(action) in ("count", "duration", "number"):
        value = "1"
    else:
        value = bad
    count = action.nargs if isinstance(action.nargs, int) else 1
    return [value] * count


def arguments(words: tuple, parser, target: argparse.Action | None, bad: str) -> list[str]:
    argv = list(words)
    given: set[int] = set()

    def give(action: argparse.Action, values: list[str]) -> None:
        given.add(id(action))
        argv.extend(([action.option_strings[0]] if action.option_strings else []) + values)

    if target is not None:
        count = target.nargs if isinstance(target.nargs, int) else 1
        give(target, [bad] * count if count == 1 else ["x"] * (count - 1) + [bad])
    for action in parser._actions:
        if id(action) not in given and takes_value(action) and (action.required or not action.option_strings):
            give(action, filler(action, bad))
    for group in parser._mutually_exclusive_groups:
        if group.required and not any(id(a) in given for a in group._group_actions):
            give(group._group_actions[0], filler(group._group_actions[0], bad))
    return argv


def cases() -> Iterator:
    for words, parser in leaf_commands(build_parser()):
        name = " ".join(words)
        required = [a for a in parser._actions if takes_value(a) and (a.required or not a.option_strings)]
        if required or any(g.required for g in parser._mutually_exclusive_groups):
            yield pytest.param(words, None, "", id=f"{name}: no arguments")
        for action in parser._actions:
            if takes_value(action):
                for bad in CLASSES[role(action)]:
                    shown = action.option_strings[0] if action.option_strings else action.dest
                    yield pytest.param(words, action.dest, bad, id=f"{name} {shown}: {bad}")


# -- running a command ---------------------------------------------------------------------------


class Deadline(BaseException):
    """Raised by SIGALRM in a case that waits too long (a BaseException: no handler may swallow it)."""


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # a default output folder (`demo`'s ./demo) lands here
    monkeypatch.setenv("NGC_API_KEY", FAKE_NGC_KEY)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTONLYEXAMPLE1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_AWS_SECRET)
    for name in ("NIM_BUCKET_NAME", "AWS_ENDPOINT_URL", "AWS_PROFILE", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return tmp_path


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    def expire(_signum, _frame):
        raise Deadline(f"no answer within {DEADLINE} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(DEADLINE)
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse
        code = exit.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_paragraph(code: int, out: str, err: str, argv: list[str], expected: int = 2) -> None:
    shown = f"nimrunbook {' '.join(argv)}\n--- stdout:\n{out}\n--- stderr:\n{err}"
    assert code == expected, shown
    assert "Traceback" not in out + err, shown
    assert FAKE_NGC_KEY not in out + err and FAKE_AWS_SECRET not in out + err, shown
    lines = err.rstrip("\n").split("\n")
    assert err.strip() and all(line.strip() for line in lines), "not one paragraph:\n" + shown
    assert len([line for line in lines if "error:" in line]) == 1, "not one error:\n" + shown


@pytest.mark.parametrize(("words", "dest", "bad"), list(cases()))
def test_every_command_refuses_every_bad_value_in_one_paragraph(words, dest, bad, scratch, capsys):
    parser = dict(leaf_commands(build_parser()))[words]
    target = next((a for a in parser._actions if a.dest == dest), None)
    argv = arguments(words, parser, target, make_bad(bad, scratch)) if target else list(words)
    code, out, err = run_cli(argv, capsys)
    assert_one_paragraph(code, out, err, argv)


def test_the_enumeration_reaches_every_command():
    names = {" ".join(words) for words, _ in leaf_commands(build_parser())}
    assert {"profiles plan", "nim download", "images mirror", "bundle import", "datarobot merge", "run"} <= names
    assert len(list(cases())) > 200


# -- bad values the roles cannot express: each with the command's other arguments right --------------

GUIDE = FIXTURES / "list-model-profiles/datarobot-guide-llama-3.2-1b-instruct-1.8.5-truncated.txt"
S3 = ["--bucket", "nim-profiles", "--endpoint-url", "https://s3.example.test"]


def _write(folder: Path, name: str, data: str | bytes) -> str:
    path = folder / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


SEMANTIC = {
    "garbage node labels": (
        lambda d: ["profiles", "plan", "--listing", str(GUIDE), "--node-labels", _write(d, "l", "hello\nworld\n")],
        "node labels",
    ),
    "node labels JSON of another kind": (
        lambda d: ["profiles", "plan", "--listing", str(GUIDE), "--node-labels", _write(d, "l", '{"kind": "Pod"}')],
        "not Kubernetes nodes",
    ),
    "an unknown --aws-profile": (
        lambda _: ["profiles", "preflight", *S3, "--aws-profile", "no-such-profile"],
        "no-such-profile",
    ),
    "a bucket name S3 refuses": (
        lambda _: ["profiles", "preflight", "--bucket", "Not_A/Bucket", "--endpoint-url", "https://s3.example.test"],
        "bucket",
    ),
    "a --registry-ca that is no certificate": (
        lambda _: [
            "images",
            "mirror",
            "r.example/nim/x:1",
            "--to",
            "r2.example",
            "--registry-ca",
            f"r.example={GUIDE}",
        ],
        "CA",
    ),
    "a namespace Kubernetes refuses": (
        lambda _: ["datarobot", "refresh", "--namespace", "Not A Namespace!"],
        "namespace",
    ),
    "an inventory that is JSON of another kind": (
        lambda d: [
            "datarobot",
            "plan-update",
            "--image",
            "nvcr.io/nim/meta/x:1.8.6",
            "--old-manifest",
            str(FIXTURES / "manifests/k8snimop-v2-manifest_v2.yaml"),
            "--new-manifest",
            str(FIXTURES / "manifests/k8snimop-v2-manifest_v2.yaml"),
            "--profiles",
            "x",
            "--have",
            _write(d, "have.json", '{"objects": 5}'),
        ],
        "inventory",
    ),
    "a values file that is a YAML list": (
        lambda d: ["datarobot", "merge", _write(d, "v.yaml", "- a\n- b\n"), "--registry", "r.example", "--bucket", "b"],
        "values",
    ),
    "a .ipynb that is not a notebook": (
        lambda d: ["run", _write(d, "x.ipynb", '{"cells": "no"}'), "--run-dir", str(d / "run")],
        "not a Jupyter notebook",
    ),
    "a .ipynb that is binary": (
        lambda d: ["run", _write(d, "y.ipynb", bytes(range(256))), "--run-dir", str(d / "run")],
        "binary",
    ),
    "a parameter file that is not a mapping": (
        lambda d: ["run", "01_plan_profiles", "-f", _write(d, "p.yaml", "- a\n"), "--run-dir", str(d / "run")],
        "parameter",
    ),
}


SEMANTIC["report of a missing folder"] = (lambda d: ["report", str(d / "absent")], "absent")
SEMANTIC["report of a folder with no run"] = (lambda d: ["report", str(d)], "no run")
SEMANTIC_CASES = list(SEMANTIC)


@pytest.mark.parametrize("case", SEMANTIC_CASES)
def test_a_bad_value_in_context_is_named(case, scratch, capsys):
    make, words = SEMANTIC[case]
    argv = make(scratch)
    code, out, err = run_cli(argv, capsys)
    assert_one_paragraph(code, out, err, argv)
    assert words.lower() in err.lower(), err


# -- a full disk under --run-dir -------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A tmpfs mount of a few KiB (we are root in CI; skipped where mounting is not allowed)."""
    import subprocess

    mounts = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk-{size}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("size", ["8k", "64k"])  # full before the first save of the notebook, and during the run
def test_a_full_disk_under_the_run_dir_is_one_paragraph(size, tiny_disk, standin_image, scratch, capsys):
    run_dir = tiny_disk(size) / "run"
    argv = ["run", "01_plan_profiles", "--run-dir", str(run_dir), "-p", "images", f"[{standin_image}]"]
    code, out, err = run_cli([*argv, "-p", "gpus", "L40S"], capsys)
    assert_one_paragraph(code, out, err, argv, expected=1)
    assert "No space left on device" in err
