"""The run record: ``<run_dir>/run.json``, the one account of a run that notebooks, the CLI and reports share.

An auditor reads it, later steps build on it, and two ways of running a step
(a person in JupyterLab, ``nimrunbook run`` under papermill) write it through
this module alone, so it has one shape. Schema, version 2::

    {
      "format": "nimrunbook.run", "version": 2,
      "created": "2026-11-27T10:00:00.123Z", "updated": "...",    # UTC, milliseconds
      "tools": {"nimrunbook": "0.1.0", "python": "3.11.2", ...},  # of the process that created the record
      "steps": {
        "01_plan_profiles": {
          "status": "ok",                      # the latest attempt's status (derived)
          "attempts": [                        # oldest first; never rewritten once finished
            {"number": 1, "status": "failed",  # running | ok | failed
             "started": "...", "finished": "...", "seconds": 12.3,   # from one clock: finished >= started
             "operator": "alice", "host": "staging-1", "pid": 4242,
             "change_id": "CHG-1234" | null, "nimrunbook": "0.1.0", "runbook_commit": "<git commit>" | null,
             "parameters": {...},              # every parameter as used, secrets never
             "secrets_present": ["NGC_API_KEY"],   # names only
             "continues": null | 1,            # cells re-run after a finished attempt: it went on from that one
             "results": {"selection": ..., ...},   # the sections this attempt recorded
             "summary": {...},                 # what the step reported when it finished
             "error": "..." | null}
          ]
        }
      },
      "selection": ..., "mirror": ..., ...     # the run's facts (derived, read-only)
    }

The run's facts at the top level are derived on every write: each section as
the latest *successful* attempt that recorded it left it (later finishes win).
A failed or unfinished attempt keeps its results inside itself, so its inputs
never look like the run's, and later steps only ever build on finished work.
Readers of version 1 (the facts at the top, one status per step) keep working.

Version 1 records (no attempts) are read: each step becomes one attempt and
the top-level sections stay the facts. They are never written to: a new run
folder is the way on (:class:`RecordVersionError` says so).
"""

from __future__ import annotations

import getpass
import json
import os
import platform
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from nimrunbook import __version__
from nimrunbook.errors import InputError, LockedError, NimRunbookError
from nimrunbook.localdisk import write_text_atomic
from nimrunbook.locks import folder_lock
from nimrunbook.redact import SECRET_ENV_VARS, redact

RECORD_NAME = "run.json"
FORMAT = "nimrunbook.run"
VERSION = 2
RUNNING, OK, FAILED = "running", "ok", "failed"
META = ("format", "version", "created", "updated", "tools", "steps")  # never the name of a section of facts
SECRET_WORDS = ("key", "secret", "password", "token")


class RecordVersionError(InputError):
    """A run record this version of nimrunbook does not write (an older one) or cannot read (a newer one)."""


def now() -> str:
    """UTC with milliseconds: every timestamp of a record comes from here, so they order."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def tool_versions() -> dict[str, str]:
    versions = {"nimrunbook": __version__, "python": platform.python_version()}
    for package in ("pandas", "boto3", "docker", "papermill", "nbconvert", "ipywidgets", "jupyterlab"):
        with suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


def operator_name(given: str = "") -> str:
    """Who runs a step: the ``operator`` parameter, else NIMRUNBOOK_OPERATOR, else the OS user."""
    return given.strip() or os.environ.get("NIMRUNBOOK_OPERATOR", "").strip() or getpass.getuser()


def runbook_commit() -> str | None:
    """The git commit of the runbook's own code and notebooks when it runs from a checkout (None from a wheel).

    Read from ``.git`` without running git (HEAD, a loose ref or packed-refs).
    """
    package = Path(__file__).resolve().parents[2]
    git = package / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = Path(git.read_text().split(":", 1)[1].strip())
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        common = Path((git / "commondir").read_text().strip()) if (git / "commondir").exists() else Path(".")
        for folder in (git, (git / common).resolve()):
            loose = folder / ref
            if loose.exists():
                return loose.read_text().strip()
            packed = folder / "packed-refs"
            if packed.exists():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
    except OSError:
        return None
    return None


# Parameters that name a key *file* (the signer's private key, its public half): an auditor needs to see which
# file signed or checked a bundle, and the path is no secret.
KEY_FILES = ("sign_key", "public_key")


def public_parameters(parameters: dict) -> dict:
    """Parameters fit for the record: values of secret-looking names are dropped, the rest redacted."""
    clean = {}
    for name, value in parameters.items():
        lowered = name.lower()
        if (
            any(word in lowered for word in SECRET_WORDS)
            and not lowered.endswith(("_env", "_file", "_path"))
            and lowered not in KEY_FILES
        ):
            clean[name] = "(secret, not recorded)" if value else value
        elif isinstance(value, str):
            clean[name] = redact(value)
        else:
            clean[name] = json.loads(redact(json.dumps(value, default=str)))
    return clean


def secrets_in_environment() -> list[str]:
    """Names (never values) of the secret variables set, for the record."""
    return [name for name in SECRET_ENV_VARS if os.environ.get(name)]


@dataclass
class Attempt:
    """One try at a step: what it was given, who ran it, when, how it ended, what it found."""

    number: int
    started: str
    operator: str
    host: str
    status: str = RUNNING
    finished: str | None = None
    seconds: float | None = None
    pid: int | None = None
    change_id: str | None = None
    nimrunbook: str = __version__
    runbook_commit: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    secrets_present: list[str] = field(default_factory=list)
    continues: int | None = None
    results: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def close(self, status: str, error: str | None = None, summary: dict | None = None) -> None:
        self.status = status
        self.finished = now()
        self.seconds = round((parse_time(self.finished) - parse_time(self.started)).total_seconds(), 3)
        self.error = redact(error) if error else None
        if summary:
            self.summary = summary

    @classmethod
    def from_dict(cls, data: dict) -> Attempt:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class StepRecord:
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def latest(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def latest_ok(self) -> Attempt | None:
        return next((a for a in reversed(self.attempts) if a.status == OK), None)

    @property
    def status(self) -> str:
        return self.latest.status if self.latest else "not run"

    def attempt(self, number: int) -> Attempt:
        for attempt in self.attempts:
            if attempt.number == number:
                return attempt
        raise KeyError(number)


@dataclass
class Run:
    """A whole record. ``legacy_facts``: a version 1 record's sections (read, never written)."""

    created: str = field(default_factory=now)
    updated: str = ""
    tools: dict[str, str] = field(default_factory=tool_versions)
    steps: dict[str, StepRecord] = field(default_factory=dict)
    version: int = VERSION
    legacy_facts: dict[str, Any] = field(default_factory=dict)

    def step(self, name: str) -> StepRecord:
        return self.steps.get(name) or StepRecord()

    def facts(self, *, current: tuple[str, Attempt] | None = None) -> dict[str, Any]:
        """The sections later steps build on: each from the latest successful attempt that recorded it.

        ``current`` (step name, attempt): a running step sees its own results on top, and none of its own
        earlier attempts' (it is redoing them).
        """
        finished = [
            (attempt.finished or "", name, attempt)
            for name, step in self.steps.items()
            if (attempt := step.latest_ok) is not None and (current is None or name != current[0])
        ]
        facts = dict(self.legacy_facts)
        for _, _, attempt in sorted(finished, key=lambda item: (item[0], item[1])):
            facts.update(attempt.results)
        if current is not None:
            facts.update(current[1].results)
        return facts

    def as_dict(self) -> dict:
        steps = {
            name: {"status": step.status, "attempts": [asdict(a) for a in step.attempts]}
            for name, step in self.steps.items()
        }
        header = {"format": FORMAT, "version": VERSION, "created": self.created, "updated": self.updated}
        return {**header, "tools": self.tools, "steps": steps, **self.facts()}

    @classmethod
    def from_dict(cls, data: dict, source: Path) -> Run:
        if (
            not isinstance(data, dict)
            or data.get("format", FORMAT) != FORMAT
            or not isinstance(data.get("steps"), dict)
        ):
            raise InputError(
                f"{source} is not a nimrunbook run record.",
                hint="Give the run folder that `nimrunbook run` or the notebooks wrote (its run.json).",
            )
        version = data.get("version", 1)
        if version == 1:
            return cls._from_version_1(data)
        if version != VERSION:
            raise RecordVersionError(
                f"{source} is a version {version} run record; this nimrunbook ({__version__}) reads versions 1 and "
                f"{VERSION}.",
                hint="Use the nimrunbook that wrote it, or a newer one.",
            )
        steps = {
            name: StepRecord([Attempt.from_dict(a) for a in step.get("attempts", [])])
            for name, step in data["steps"].items()
        }
        return cls(data.get("created", ""), data.get("updated", ""), data.get("tools", {}), steps)

    @classmethod
    def _from_version_1(cls, data: dict) -> Run:
        """Each step one attempt; a step that says "started" never finished (version 1 did not record failures)."""
        steps = {}
        for name, old in data["steps"].items():
            status = old.get("status")
            attempt = Attempt(
                1,
                old.get("started") or data.get("created", ""),
                data.get("user", "?"),
                data.get("host", "?"),
                status=status if status in (OK, FAILED) else FAILED,
                finished=old.get("finished"),
                seconds=old.get("seconds"),
                parameters=old.get("parameters", {}),
                secrets_present=old.get("secrets_present", []),
                summary=old.get("results", {}),
                error=old.get("error")
                or (None if status in (OK, FAILED) else "recorded as started and never finished (version 1 record)"),
            )
            steps[name] = StepRecord([attempt])
        legacy = {k: v for k, v in data.items() if k not in (*META, "user", "host")}
        return cls(data.get("created", ""), data.get("updated", ""), data.get("tools", {}), steps, 1, legacy)


class RunRecord:
    """``<run_dir>/run.json``: read it, and change it under the run folder's lock, atomically."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RECORD_NAME

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> Run:
        """The record (an empty run when there is none yet)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Run()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"Cannot read the run record {self.path}: {exc}.") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"The run record {self.path} is not JSON ({exc.msg} at line {exc.lineno}).",
                hint="It is only ever replaced whole, so it was changed by hand: restore it, or start a new run "
                "folder.",
            ) from exc
        return Run.from_dict(data, self.path)

    def facts(self) -> dict:
        return self.read().facts()

    def writable(self) -> Run:
        """The record, if this nimrunbook may add to it (an older version's is only read)."""
        run = self.read()
        if run.version != VERSION:
            raise RecordVersionError(
                f"{self.path} is a version {run.version} run record (from an older nimrunbook); it is kept as it is.",
                hint="Start a new run folder for new steps (nimrunbook init NEW_FOLDER -f params.yaml); "
                "`nimrunbook report` still reads this one.",
            )
        return run

    @contextmanager
    def lock(self, doing: str = "working in the run folder") -> Iterator[None]:
        """The run folder, exclusively: a second writer is refused at once, told who holds it and which step of
        the record it is running."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            try:
                stack.enter_context(folder_lock(self.run_dir, doing))
            except LockedError as refused:
                running = [
                    f"step {name} (attempt {a.number} by {a.operator} on {a.host}, pid {a.pid}, since {a.started})"
                    for name, step in self._quietly_read().steps.items()
                    for a in step.attempts
                    if a.status == RUNNING
                ]
                if not running:
                    raise
                raise LockedError(f"{refused.message} It is running {'; '.join(running)}.", hint=refused.hint) from None
            yield

    def _quietly_read(self) -> Run:
        try:
            return self.read()
        except InputError:
            return Run()

    def change(self, edit: Callable[[Run], Any], doing: str = "working in the run folder") -> Any:
        """Read, ``edit``, write atomically, under the lock; returns what ``edit`` returned."""
        with self.lock(doing):
            run = self.writable()
            result = edit(run)
            run.updated = now()
            write_text_atomic(self.path, redact(json.dumps(run.as_dict(), indent=2, default=str)) + "\n")
            return result

    def begin(self, step: str, attempt_fields: dict, *, continues: Attempt | None = None) -> Attempt:
        """A new attempt of ``step``, running. Any other attempt still "running" was abandoned (its process held
        the lock we now hold, so it has gone): it is closed as failed, saying so."""

        def edit(run: Run) -> Attempt:
            for other in run.steps.values():
                for stale in other.attempts:
                    if stale.status == RUNNING:
                        stale.close(FAILED, "abandoned: its kernel or process stopped before the step finished")
            record = run.steps.setdefault(step, StepRecord())
            number = (record.latest.number if record.latest else 0) + 1
            attempt = Attempt(number, now(), **attempt_fields)
            if continues is not None:
                attempt.continues = continues.number
                attempt.parameters = dict(continues.parameters)
                attempt.results = json.loads(json.dumps(continues.results))
            record.attempts.append(attempt)
            return attempt

        return self.change(edit)

    def save(self, step: str, number: int, sections: dict) -> None:
        """Record sections of facts in a running attempt (replaced whole: a re-run leaves nothing stale)."""
        clash = sorted(set(sections) & set(META))
        if clash:
            raise NimRunbookError(f"{', '.join(clash)} cannot be a section of the run record: the name is reserved.")

        def edit(run: Run) -> None:
            attempt = self._running(run, step, number)
            attempt.results.update(json.loads(redact(json.dumps(sections, default=str))))

        self.change(edit)

    def finish(self, step: str, number: int, status: str, *, error: str | None = None, summary: dict | None = None):
        def edit(run: Run) -> Attempt:
            attempt = self._running(run, step, number)
            clean = json.loads(redact(json.dumps(summary or {}, default=str)))
            attempt.close(status, error, clean)
            return attempt

        return self.change(edit)

    def _running(self, run: Run, step: str, number: int) -> Attempt:
        try:
            attempt = run.steps[step].attempt(number)
        except KeyError:
            raise NimRunbookError(f"The run record {self.path} has no attempt {number} of {step}.") from None
        if attempt.status != RUNNING:
            raise NimRunbookError(
                f"Attempt {number} of {step} has already ended ({attempt.status}); nothing more is recorded in it.",
                hint="Run the notebook again from its first code cell: a new attempt starts.",
            )
        return attempt


def attempt_fields(parameters: dict, operator: str = "", change_id: str = "") -> dict:
    """Who, where and with what an attempt runs, for :meth:`RunRecord.begin`."""
    return {
        "operator": operator_name(operator),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "change_id": change_id or None,
        "runbook_commit": runbook_commit(),
        "parameters": public_parameters(parameters),
        "secrets_present": secrets_in_environment(),
    }
