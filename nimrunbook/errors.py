"""Every error a user can cause, in one place.

Each error carries a one-paragraph message that says what went wrong *and what
to do next*: the runbook is stepped through by people on two sides of an air
gap who cannot ask the author, and read afterwards by auditors. Messages never
contain secrets: anything that might (a container's log, a server's reply)
passes through :func:`nimrunbook.redact.redact` before it is put here.
"""

from __future__ import annotations


class NimRunbookError(Exception):
    """Base class: a failure the user can understand and act on.

    The command line prints ``str(error)`` and exits with :attr:`exit_code`
    instead of showing a traceback.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} {hint}")


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
