"""Verify a bundle and write a record a security officer can keep.

Proof before use, in this order. SHA256SUMS and bundle.json are read once,
through the confinement module, and their signatures are checked over those
bytes; a signature that fails stops verification before any listed path is
opened. Then both are parsed strictly and tied to each other (every file,
object and part of bundle.json listed in SHA256SUMS with the same digest), every
listed file is hashed through a descriptor the confinement module opened (so a
symbolic link, a device, a FIFO or a name leading out of the bundle is refused,
never read), and the media is walked for anything unlisted, any link and any
special file. Without a public key a bundle is refused unless the caller allows
an unsigned bundle, and then the report and the record say UNSIGNED.

The record (JSON and a plain table) says who checked what, where and when,
with which tool. It is created under a fresh name (never overwriting an
earlier record), written completely before it gets its name, and never through
a symbolic link: a ``verification`` link in the bundle is refused.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import hashlib
import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from nimrunbook import __version__
from nimrunbook.bundle import layout, signing
from nimrunbook.bundle.confine import BundleDir, sha256_stream
from nimrunbook.bundle.contents import cross_check, parse_manifest, parse_sums
from nimrunbook.errors import ConfinementError, InputError, VerificationError, problems_error, require_bool
from nimrunbook.hashing import FilePool
from nimrunbook.localdisk import INCOMPLETE_SUFFIX
from nimrunbook.locks import FALLBACK_LOCK_NAME
from nimrunbook.progress import SILENT, Reporter, Task

MAX_SIGNATURE = 64 * 1024
UNSIGNED = "UNSIGNED"
_UNSIGNED_NOTE = (
    "UNSIGNED: no signature was checked, so nothing proves who made this bundle or that it was not changed on "
    "the way; the checksums prove only that the copy is complete and consistent."
)
_RECORD_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class FileCheck:
    path: str
    status: str  # ok, missing, truncated, size differs, corrupt, extra, unlisted, unsafe, not a file, unreadable
    detail: str = ""


@dataclass
class VerifiedBundle:
    """What an import may use, and nothing else: the verified bundle.json and the digest of each file that
    hashed to its SHA256SUMS line."""

    root: Path
    manifest: dict
    digests: dict[str, str]

    def digest(self, name: str) -> str:
        if name not in self.digests:
            raise VerificationError(
                f"The bundle uses {name}, which verification did not hash: refused.",
                hint="Do not import this bundle; it was not made by nimrunbook bundle create, or was altered.",
            )
        return self.digests[name]


@dataclass
class VerificationReport:
    bundle: str
    bundle_id: str | None
    signature: str  # verified, failed, UNSIGNED: ..., not checked
    checks: list[FileCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked_at: str = ""
    host: str = ""
    user: str = ""
    tool: str = f"nimrunbook {__version__}"
    record_json: str | None = None
    record_text: str | None = None
    unsigned: bool = False
    verified: VerifiedBundle | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and self.signature != "failed"
            and bool(self.checks)
            and all(c.status == "ok" for c in self.checks)
        )

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for check in self.checks:
            counts[check.status] = counts.get(check.status, 0) + 1
        return counts

    def as_dict(self) -> dict:
        document = asdict(replace(self, verified=None))
        del document["verified"]
        return {**document, "ok": self.ok, "counts": self.counts()}

    def headline(self) -> str:
        verdict = "PASSED" if self.ok else "FAILED"
        return f"Bundle verification: {verdict}" + (
            ", UNSIGNED (the signature was NOT checked)" if self.unsigned else ""
        )

    def table(self) -> str:
        width = max([len(c.path) for c in self.checks] + [4])
        lines = [
            self.headline(),
            f"bundle:    {self.bundle}",
            f"bundle id: {self.bundle_id} (sha256 of {layout.SUMS})",
            f"signature: {self.signature}",
            f"checked:   {self.checked_at} on {self.host} by {self.user} with {self.tool}",
            f"files:     {self.counts()}",
            "",
            *(f"problem: {p}" for p in self.problems),
            *(f"note: {n}" for n in self.notes),
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


def require_key(public_key: str | Path | None, allow_unsigned: bool, path: str | Path) -> str | None:
    """The public key's text; refuses (before anything is read) a bundle to be checked without one, unless the
    caller allows an unsigned bundle."""
    require_bool("allow_unsigned", allow_unsigned)
    if public_key:
        return signing.read_public_key(public_key)
    if not allow_unsigned:
        raise InputError(
            f"No public key was given to check the signature of the bundle {path}, so it is refused.",
            hint="Give the signer's public key (--public-key signer.pub, handed over apart from the media). Only if "
            "your security officer accepts a bundle whose origin nothing proves, pass --allow-unsigned "
            "(allow_unsigned=True): the record then says UNSIGNED.",
        )
    return None


def verify(
    path: str | Path,
    *,
    public_key: str | Path | None = None,
    allow_unsigned: bool = False,
    record_dir: str | Path | None = None,
    progress: Reporter = SILENT,
) -> VerificationReport:
    """Verify the bundle at ``path``; see the module docstring.

    Raises :class:`InputError` only for what the caller gave: no such folder, a folder that is no bundle, a
    public key that is not one (or lies on the media), no public key without ``allow_unsigned``. Never raises
    for a bad bundle: read ``ok``. ``verified`` is set only when the bundle passed.
    """
    key_text = require_key(public_key, allow_unsigned, path)
    with BundleDir(path) as root:
        if public_key and Path(os.path.realpath(public_key)).is_relative_to(root.path):
            raise InputError(
                f"The public key {public_key} lies inside the bundle: whoever wrote the media chose it too, so it "
                "proves nothing.",
                hint="Use the signer's public key that was handed over apart from the media.",
            )
        report = VerificationReport(
            bundle=str(root.path),
            bundle_id=None,
            signature="not checked",
            checked_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            host=socket.gethostname(),
            user=getpass.getuser(),
        )
        _check(root, report, key_text, public_key, progress)
        _write_record(report, root, record_dir)
    return report


def _check(root: BundleDir, report: VerificationReport, key_text: str | None, key_name, progress: Reporter) -> None:
    if key_text is None:
        _mark_unsigned(root, report, None)  # said before anything can stop the check, refined once bundle.json is read
    try:
        sums_data = root.read(layout.SUMS)
    except ConfinementError as error:
        if error.status == "missing":
            raise InputError(
                f"{root.given} has no {layout.SUMS}: it is not a nimrunbook bundle, or the copy is incomplete.",
                hint="Give the bundle's top folder (the one holding bundle.json and SHA256SUMS).",
            ) from error
        report.problems.append(error.message)
        return
    report.bundle_id = hashlib.sha256(sums_data).hexdigest()
    try:
        manifest_data = root.read(layout.MANIFEST)
    except ConfinementError as error:
        report.problems.append(error.message)
        return
    if key_text is not None and not _signature_verifies(root, report, key_text, key_name, sums_data, manifest_data):
        return  # proof before use: no listed path is opened
    sums, problems = parse_sums(sums_data)
    report.problems += problems
    document, problems = parse_manifest(manifest_data)
    report.problems += problems
    if key_text is None:
        _mark_unsigned(root, report, document)
    if layout.MANIFEST in sums:
        manifest_ok = hashlib.sha256(manifest_data).hexdigest() == sums[layout.MANIFEST]
        report.checks.append(
            FileCheck(
                layout.MANIFEST,
                "ok" if manifest_ok else "corrupt",
                "" if manifest_ok else "sha256 differs from SHA256SUMS",
            )
        )
    if document is None:
        return
    report.problems += cross_check(document, sums)
    sizes = {f["path"]: f["size"] for f in document["files"]}
    digests = {layout.MANIFEST: sums[layout.MANIFEST]} if layout.MANIFEST in sums else {}
    total = sum(sizes[name] for name in sums if name in sizes)
    listed = [name for name in sorted(sums) if name != layout.MANIFEST]
    pool = FilePool()
    with progress.task("verify bundle", total or None) as reporter:
        hashed = pool.map(
            lambda name: _hash(root, name, sums[name], sizes[name], reporter, pool.cancel),
            [name for name in listed if name in sizes],
            size=lambda name: sizes[name],
        )
    checks = {check.path: check for check in hashed}
    for name in listed:
        check = checks.get(name) or FileCheck(name, "unlisted", "in SHA256SUMS but not in bundle.json: not read")
        report.checks.append(check)
        if check.status == "ok":
            digests[name] = sums[name]
    _walk(root, report, set(sums))
    if report.ok:
        report.verified = VerifiedBundle(root.path, document, digests)


def _signature_verifies(
    root: BundleDir, report: VerificationReport, key_text: str, key_name, sums_data: bytes, manifest_data: bytes
) -> bool:
    try:
        for name, data in ((layout.SUMS, sums_data), (layout.MANIFEST, manifest_data)):
            try:
                signature = root.read(f"{name}.sig", MAX_SIGNATURE)
            except ConfinementError as error:
                if error.status != "missing":
                    raise
                raise VerificationError(
                    f"{name}.sig is missing: the bundle is not signed, so the public key given cannot vouch for it."
                ) from error
            signing.verify_bytes(data, signature, key_text, name, key_name)
    except VerificationError as error:
        report.signature = "failed"
        report.problems.append(error.message)
        report.notes.append("verification stopped at the signature: no listed file was opened")
        return False
    report.signature = "verified"
    return True


def _mark_unsigned(root: BundleDir, report: VerificationReport, document: dict | None) -> None:
    def present(name: str) -> bool:
        try:
            os.stat(name, dir_fd=root.fd, follow_symlinks=False)
            return True
        except OSError:
            return False

    claims = (document or {}).get("signed") is True or any(present(sig) for sig in layout.SIGNATURES)
    if not report.unsigned:
        report.notes.append(_UNSIGNED_NOTE)
    report.unsigned = True
    report.signature = (
        f"{UNSIGNED}: the bundle says it is signed, but no public key was given, so its signature was NOT checked"
        if claims
        else f"{UNSIGNED}: the bundle is not signed"
    ) + " (accepted with allow-unsigned)"


def _hash(root: BundleDir, name: str, digest: str, size: int, progress: Task, cancel: threading.Event) -> FileCheck:
    """Hash one listed file through the descriptor the confinement module opened (several at once, on a
    :class:`FilePool`)."""
    try:
        with root.open(name) as reader:
            actual = os.fstat(reader.fileno()).st_size
            if actual < size:
                return FileCheck(name, "truncated", f"{actual} of {size} bytes")
            if actual != size:
                return FileCheck(name, "size differs", f"{actual} bytes, expected {size}")
            got, read = sha256_stream(reader, size, progress, cancel=cancel)
    except ConfinementError as error:
        return FileCheck(name, error.status, error.message)
    except OSError as exc:  # a failing medium
        return FileCheck(name, "unreadable", exc.strerror or str(exc))
    if read != size:
        return FileCheck(name, "size differs", "the file changed while it was read")
    if got != digest:
        return FileCheck(name, "corrupt", "sha256 differs from SHA256SUMS")
    return FileCheck(name, "ok")


def _ignored(relative: str) -> bool:
    first = relative.split("/", 1)[0]
    return (
        first in (layout.STATE_DIR, layout.VERIFICATION_DIR)
        or relative in layout.NOT_PAYLOAD
        or relative == FALLBACK_LOCK_NAME
        or relative.endswith(INCOMPLETE_SUFFIX)
    )


def _walk(root: BundleDir, report: VerificationReport, listed: set[str]) -> None:
    """Name what is on the media unlisted, and every link or special file anywhere (even where records go)."""
    try:
        entries = list(root.walk())
    except OSError as exc:
        report.problems.append(f"the bundle's folders cannot be listed: {exc.strerror}")
        return
    for relative, kind in entries:
        if relative in listed or kind == "folder":
            continue
        if kind != "file":
            detail = {"too deep": "folders nested too deep: not walked", "changed": "changed while it was listed"}
            refusal = f"a {kind} on the media: refused (a bundle holds only folders and files)"
            report.checks.append(FileCheck(relative, "unsafe", detail.get(kind, refusal)))
        elif not _ignored(relative):
            report.checks.append(FileCheck(relative, "extra", "on the media but not in SHA256SUMS"))


def _record_directory(root: BundleDir, record_dir: str | Path | None) -> int:
    """A descriptor of the folder the record goes to; inside the bundle, never through a symbolic link."""
    if record_dir is not None:
        Path(record_dir).mkdir(parents=True, exist_ok=True)
        return os.open(record_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    with contextlib.suppress(FileExistsError):
        os.mkdir(layout.VERIFICATION_DIR, 0o755, dir_fd=root.fd)
    return os.open(layout.VERIFICATION_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root.fd)


def _reserve(directory: int, stem: str, suffixes: tuple[str, ...]) -> dict[str, tuple[str, int]]:
    """Fresh names ``<stem>[-N]<suffix>`` (never an earlier record's), each with its partial file created
    exclusively and without following a link."""
    for attempt in range(1000):
        names = {suffix: f"{stem}{f'-{attempt}' if attempt else ''}{suffix}" for suffix in suffixes}
        if any(_exists(directory, name) for name in names.values()):
            continue
        reserved: dict[str, tuple[str, int]] = {}
        try:
            for suffix, name in names.items():
                reserved[suffix] = (name, os.open(name + INCOMPLETE_SUFFIX, _RECORD_FLAGS, 0o644, dir_fd=directory))
        except FileExistsError:
            for name, fd in reserved.values():
                os.close(fd)
                os.unlink(name + INCOMPLETE_SUFFIX, dir_fd=directory)
            continue
        return reserved
    raise FileExistsError(errno.EEXIST, f"no free name for {stem}")


def _exists(directory: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=directory, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _write_record(report: VerificationReport, root: BundleDir, record_dir: str | Path | None) -> None:
    shown = Path(record_dir) if record_dir is not None else root.path / layout.VERIFICATION_DIR
    try:
        directory = _record_directory(root, record_dir)
    except OSError as exc:  # read-only media, or a verification link (ELOOP): the report is still returned
        reason = "it is a symbolic link, refused" if exc.errno == errno.ELOOP else exc.strerror
        report.notes.append(f"the verification record was not written to {shown}: {reason}")
        return
    try:
        stamp = report.checked_at.replace(":", "").replace("-", "")
        reserved = _reserve(directory, f"verification-{stamp}-{os.getpid()}", (".json", ".txt"))
        report.record_json = str(shown / reserved[".json"][0])
        report.record_text = str(shown / reserved[".txt"][0])
        texts = {".json": json.dumps(report.as_dict(), indent=2) + "\n", ".txt": report.table()}
        for suffix, (name, fd) in reserved.items():
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(texts[suffix])
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(name + INCOMPLETE_SUFFIX, name, src_dir_fd=directory, dst_dir_fd=directory)
    except OSError as exc:
        report.record_json = report.record_text = None
        report.notes.append(f"the verification record was not written to {shown}: {exc.strerror or exc}")
    finally:
        os.close(directory)
