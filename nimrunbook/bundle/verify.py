"""Verify a bundle and write a record a security officer can keep.

Checks the signature (when a public key is given), then re-hashes every file
and part listed in SHA256SUMS, and names exactly what is missing, truncated,
corrupt, or on the media without being listed. The record (JSON and a plain
table) says who checked what, where and when, with which tool.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nimrunbook import __version__
from nimrunbook.bundle import layout, signing
from nimrunbook.errors import InputError, VerificationError, problems_error
from nimrunbook.hashing import sha256_file
from nimrunbook.progress import SILENT, Reporter


@dataclass
class FileCheck:
    path: str
    status: str  # ok, missing, truncated, size differs, corrupt, extra
    detail: str = ""


@dataclass
class VerificationReport:
    bundle: str
    bundle_id: str | None
    signature: str  # verified, failed, absent, not checked
    checks: list[FileCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked_at: str = ""
    host: str = ""
    user: str = ""
    tool: str = f"nimrunbook {__version__}"
    record_json: str | None = None
    record_text: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and self.signature != "failed" and all(c.status == "ok" for c in self.checks)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for check in self.checks:
            counts[check.status] = counts.get(check.status, 0) + 1
        return counts

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok, "counts": self.counts()}

    def table(self) -> str:
        width = max([len(c.path) for c in self.checks] + [4])
        lines = [
            f"Bundle verification: {'PASSED' if self.ok else 'FAILED'}",
            f"bundle:    {self.bundle}",
            f"bundle id: {self.bundle_id} (sha256 of {layout.SUMS})",
            f"signature: {self.signature}",
            f"checked:   {self.checked_at} on {self.host} by {self.user} with {self.tool}",
            f"files:     {self.counts()}",
            "",
            *(f"problem: {p}" for p in self.problems),
            f"{'file'.ljust(width)}  status     detail",
            *(f"{c.path.ljust(width)}  {c.status.ljust(9)}  {c.detail}" for c in self.checks),
        ]
        return "\n".join(lines) + "\n"

    def raise_for_failure(self) -> None:
        if not self.ok:
            bad = [f"{c.path}: {c.status} {c.detail}".strip() for c in self.checks if c.status != "ok"]
            raise problems_error(
                VerificationError,
                "The bundle does not verify",
                self.problems + bad,
                hint="Do not import it. Copy the named files again from the source media (or re-run bundle create there, "
                "which resumes), then verify again.",
                shown=25,
            )


def _listed(root: Path) -> list[tuple[str, str]]:
    sums = root / layout.SUMS
    if not sums.exists():
        raise InputError(
            f"{root} has no {layout.SUMS}: it is not a nimrunbook bundle, or the copy is incomplete.",
            hint="Give the bundle's top folder (the one holding bundle.json and SHA256SUMS).",
        )
    entries = []
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if digest and name:
            entries.append((name, digest))
    return entries


def _expected_sizes(root: Path) -> dict[str, int]:
    try:
        document = json.loads((root / layout.MANIFEST).read_text())
        return {f["path"]: f["size"] for f in document.get("files", [])}
    except (OSError, ValueError):
        return {}


def _ignored(relative: str) -> bool:
    first = relative.split("/", 1)[0]
    return (
        first in (layout.STATE_DIR, layout.VERIFICATION_DIR)
        or relative in layout.NOT_PAYLOAD
        or relative.endswith(".incomplete")
    )


def verify(
    path: str | Path,
    *,
    public_key: str | Path | None = None,
    record_dir: str | Path | None = None,
    progress: Reporter = SILENT,
) -> VerificationReport:
    """Verify the bundle at ``path``; see the module docstring. Never raises for a bad bundle: read ``ok``."""
    root = Path(path)
    listed = _listed(root)
    report = VerificationReport(
        bundle=str(root.resolve()),
        bundle_id=hashlib.sha256((root / layout.SUMS).read_bytes()).hexdigest(),
        signature="absent",
        checked_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        host=socket.gethostname(),
        user=getpass.getuser(),
    )
    signed = any((root / f"{name}.sig").exists() for name in layout.SIGNED_FILES)
    if public_key:
        try:
            for name in layout.SIGNED_FILES:
                signing.verify_signature(root / name, public_key)
            report.signature = "verified"
        except VerificationError as error:
            report.signature = "failed"
            report.problems.append(error.message)
    elif signed:
        report.signature = "not checked (no public key given)"
    sizes = _expected_sizes(root)
    with progress.task("verify bundle", sum(sizes.values()) or None) as reporter:
        for name, digest in listed:
            file = root / name
            expected = sizes.get(name)
            if not file.exists():
                report.checks.append(FileCheck(name, "missing", "not on the media"))
            elif expected is not None and file.stat().st_size < expected:
                report.checks.append(FileCheck(name, "truncated", f"{file.stat().st_size} of {expected} bytes"))
            elif expected is not None and file.stat().st_size != expected:
                report.checks.append(
                    FileCheck(name, "size differs", f"{file.stat().st_size} bytes, expected {expected}")
                )
            elif sha256_file(file, reporter) != digest:
                report.checks.append(FileCheck(name, "corrupt", "sha256 differs from SHA256SUMS"))
            else:
                report.checks.append(FileCheck(name, "ok"))
    names = {name for name, _ in listed}
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root).as_posix()
        if relative not in names and not _ignored(relative):
            report.checks.append(FileCheck(relative, "extra", "on the media but not in SHA256SUMS"))
    _write_record(report, Path(record_dir) if record_dir else root / layout.VERIFICATION_DIR)
    return report


def _write_record(report: VerificationReport, directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        stamp = report.checked_at.replace(":", "").replace("-", "")
        json_path, text_path = directory / f"verification-{stamp}.json", directory / f"verification-{stamp}.txt"
        report.record_json, report.record_text = str(json_path), str(text_path)
        json_path.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        text_path.write_text(report.table())
    except OSError as exc:  # read-only media: the report is still returned
        report.notes.append(f"could not write the verification record to {directory}: {exc.strerror}")
