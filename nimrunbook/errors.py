"""Every error a user can cause, in one place.

Each error carries a one-paragraph message that says what went wrong *and what
to do next*: the runbook is stepped through by people on two sides of an air
gap who cannot ask the author, and read afterwards by auditors. Messages never
contain secrets: anything that might (a container's log, a server's reply)
passes through :func:`nimrunbook.redact.redact` before it is put here.
"""

from __future__ import annotations

from collections.abc import Sequence


class NimRunbookError(Exception):
    """Base class: a failure the user can understand and act on.

    The command line prints ``str(error)`` and exits with :attr:`exit_code`
    instead of showing a traceback; under it, one "details" line names the
    cause (:func:`cause_line`), which is always kept: raise these ``from exc``.
    ``problems`` holds each problem of an error that lists several (every file
    that failed to verify, every object that failed to upload), for callers
    that act on them one by one; the message shows the first few.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, problems: Sequence[str] = ()) -> None:
        self.message = message
        self.hint = hint
        self.problems = list(problems)
        super().__init__(message if not hint else _with_hint(message, hint))

    def _render_traceback_(self) -> list[str]:
        """What IPython shows for this error in a notebook: a short box (what happened, what to do, the cause)
        instead of a traceback through the package. Errors that are not ours keep their traceback."""
        from nimrunbook.redact import redact

        lines = [f"\x1b[1;31m{type(self).__name__}\x1b[0m (nimrunbook)"]
        lines += [f"  {line}" for line in redact(self.message).splitlines()]
        if self.hint:
            lines += ["", f"\x1b[1mWhat to do:\x1b[0m {redact(self.hint)}"]
        details = cause_line(self)
        if details:
            lines += ["", f"Details: {details}"]
        return lines


def _with_hint(message: str, hint: str) -> str:
    """The hint as a sentence of its own: after a full stop, or on its own line under a list of problems."""
    text = message.rstrip()
    if "\n" in text:
        return f"{text}\n{hint}"
    return f"{text} {hint}" if text.endswith((".", "!", "?", ":")) else f"{text}. {hint}"


class InputError(NimRunbookError):
    """A parameter or input file is wrong (exit code 2, like argparse)."""

    exit_code = 2


class ListingParseError(InputError):
    """Text given as `list-model-profiles` output holds no profile."""


class ManifestParseError(InputError):
    """A `model_manifest.yaml` is not YAML, or of a schema we do not know."""


class UnknownGpuError(InputError):
    """A typed-in GPU name we cannot map to a NIM profile GPU token."""


class UnknownProfileError(InputError):
    """A profile id that the image does not offer."""


class DockerError(NimRunbookError):
    """The Docker engine is unreachable or refused an operation."""


class ImageNotFoundError(DockerError):
    """The image or tag does not exist in the registry (or locally)."""


class RegistryAuthError(DockerError):
    """The registry refused our credentials."""


class NoManifestError(DockerError):
    """The image holds no model manifest (not a NIM LLM image, or a model-free one)."""


class ContainerFailedError(DockerError):
    """A NIM container exited non-zero; carries its (redacted) last lines."""


class CacheNotWritableError(NimRunbookError):
    """The NIM cache directory cannot be written by the container's UID 1000."""


class DiskSpaceError(NimRunbookError):
    """Not enough free space for what is about to be written."""


class CacheIncompleteError(NimRunbookError):
    """Files a profile needs are missing from the NIM cache."""


class StorageError(NimRunbookError):
    """The S3-compatible object store refused or failed an operation."""


class PreflightError(StorageError):
    """A preflight check of the object store failed."""


class VerificationError(NimRunbookError):
    """Stored objects or files do not match their recorded size or checksum."""


class ConfinementError(VerificationError):
    """A path read from a bundle is unsafe (absolute, ``..``, a symlink, not a regular file) or absent.

    ``status`` names the kind for the verification record: ``missing``, ``unsafe``, ``not a file``,
    ``too large`` or ``unreadable``.
    """

    def __init__(self, message: str, *, path: str, status: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.status = status


class LockedError(NimRunbookError):
    """Another nimrunbook process holds the lock of what this one is about to write."""


def problems_error(
    error_class: type[NimRunbookError], summary: str, problems: Sequence[str], *, hint: str | None, shown: int = 20
) -> NimRunbookError:
    """One error for a list of problems: ``summary``, then the first ``shown`` problems, one per line.

    Every "raise if it failed" of a result object goes through here, so they
    read alike and all carry :attr:`NimRunbookError.problems`.
    """
    lines = [f"  {problem}" for problem in problems[:shown]]
    if len(problems) > shown:
        lines.append(f"  ... and {len(problems) - shown} more")
    return error_class(summary + ":\n" + "\n".join(lines), hint=hint, problems=problems)


def cause_line(error: BaseException, width: int = 300) -> str | None:
    """``"<type>: <text>"`` of what caused ``error`` (its ``__cause__``), on one line, redacted; None without one."""
    from nimrunbook.redact import redact

    cause = error.__cause__
    if cause is None:
        return None
    text = " ".join(redact(str(cause)).split())
    if len(text) > width:
        text = text[: width - 3] + "..."
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def require_bool(name: str, value: object) -> bool:
    """``value`` if it is a real boolean; anything else (``"no"``, ``"maybe"``, ``1``) is refused, never read as
    true: a string for a switch such as ``s3_insecure`` must not turn TLS verification off."""
    if isinstance(value, bool):
        return value
    raise InputError(
        f"{name} must be true or false, not {value!r} ({type(value).__name__}).",
        hint=f"Write {name}: true or {name}: false (YAML), or -p {name} true / -p {name} false.",
    )
