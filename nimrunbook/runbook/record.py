"""The run record: one JSON file in the run directory that every notebook reads and extends.

It holds what an auditor needs and what later steps build on: parameters
(never secrets), GPU inventory, the selection with reasons, digests,
checksums, timings, user, host and tool versions. Inside the air gap the same
facts come from the bundle's manifest, so the inside notebooks can work from
the bundle alone on another machine.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import platform
import socket
import time
from contextlib import contextmanager, suppress
from importlib import metadata
from pathlib import Path

from nimrunbook import __version__
from nimrunbook.localdisk import write_text_atomic
from nimrunbook.redact import SECRET_ENV_VARS, redact

RECORD_NAME = "run.json"
FORMAT = "nimrunbook.run"
SECRET_WORDS = ("key", "secret", "password", "token")


def tool_versions() -> dict[str, str]:
    versions = {"nimrunbook": __version__, "python": platform.python_version()}
    for package in ("pandas", "boto3", "docker", "papermill", "nbconvert", "ipywidgets"):
        with suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


def public_parameters(parameters: dict) -> dict:
    """Parameters fit for the record: values of secret-looking names are dropped, the rest redacted."""
    clean = {}
    for name, value in parameters.items():
        lowered = name.lower()
        if any(word in lowered for word in SECRET_WORDS) and not lowered.endswith(("_env", "_file", "_path")):
            clean[name] = "(secret, not recorded)"
        elif isinstance(value, str):
            clean[name] = redact(value)
        else:
            clean[name] = json.loads(redact(json.dumps(value, default=str)))
    return clean


class RunRecord:
    """``<run_dir>/run.json``, updated atomically under a lock."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RECORD_NAME

    def read(self) -> dict:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text())

    @contextmanager
    def _locked(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / ".run.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def update(self, **sections) -> dict:
        """Set top-level ``sections`` (``steps`` is merged step by step) and write atomically; returns the record.

        A section is replaced whole, so a re-run of a step never leaves entries of an earlier run behind.
        """
        with self._locked():
            record = self.read() or {
                "format": FORMAT,
                "version": 1,
                "created": _now(),
                "user": getpass.getuser(),
                "host": socket.gethostname(),
                "tools": tool_versions(),
                "steps": {},
            }
            for name, value in sections.items():
                if name == "steps":  # merged field by field: a step's later fields keep its earlier ones
                    for step, fields in value.items():
                        record["steps"][step] = {**record["steps"].get(step, {}), **fields}
                else:
                    record[name] = value
            record["updated"] = _now()
            text = redact(json.dumps(record, indent=2, default=str)) + "\n"
            write_text_atomic(self.path, text)
            return json.loads(text)

    def step(self, name: str, **fields) -> dict:
        return self.update(steps={name: fields})


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def secrets_in_environment() -> list[str]:
    """Names (never values) of the secret variables set, for the record."""
    return [name for name in SECRET_ENV_VARS if os.environ.get(name)]
