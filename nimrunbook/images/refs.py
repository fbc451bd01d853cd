"""Image references (the one parser and the one rule every step applies), and where a mirrored image lands.

The rule: a reference names its registry host, its path and its tag
(``nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5``), optionally pinned to a
digest (``...:1.8.5@sha256:...``). An untagged reference is an input error in
every step, never an implicit ``latest``: the tag is the NIM version, it must
be the same in the plan (step 01), the mirror (step 02) and DataRobot's
allowlist, and ``latest`` moves.

DataRobot's ``custom_model_nim_image_registry`` replaces only the registry
host: ``nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5`` must be found at
``<internal>/nim/meta/llama-3.2-1b-instruct:1.8.5``. So mirroring keeps the
repository path and the tag, and changes nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nimrunbook.errors import InputError

_REF_RE = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::\d+)?|\[[0-9a-fA-F:]+\](?::\d+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


@dataclass(frozen=True)
class ImageRef:
    registry: str
    path: str  # nim/meta/llama-3.2-1b-instruct
    tag: str
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        match = _REF_RE.match(text.strip())
        registry = match.group("registry") if match else None
        if not match or not registry or ("." not in registry and ":" not in registry and registry != "localhost"):
            raise InputError(
                f"{text!r} is not a full image reference.",
                hint="Write registry/path:tag, e.g. nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5.",
            )
        if not match.group("tag"):
            raise InputError(
                f"{text!r} names no tag.",
                hint="Name the NIM version, e.g. nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5 (never rely on latest; "
                "add @sha256:... after the tag to pin a digest).",
            )
        return cls(registry, match.group("path"), match.group("tag"), match.group("digest"))

    def __str__(self) -> str:
        text = f"{self.registry}/{self.path}:{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.path}"

    def moved_to(self, registry: str) -> ImageRef:
        """The same path and tag in another registry (a host, optionally with a path prefix)."""
        host, _, prefix = registry.strip().rstrip("/").partition("/")
        if not host:
            raise InputError(
                "No destination registry given.", hint="Name the internal registry, e.g. registry.example.com:5000."
            )
        path = f"{prefix}/{self.path}" if prefix else self.path
        return ImageRef(host, path, self.tag, None)
