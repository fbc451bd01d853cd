"""For which host the wheelhouse is made: the inside's Python version and platform, as pip's options say them.

The inside host is rarely the staging host: another distribution (an older glibc), another Python. Wheels with
compiled code (pandas, cryptography, pyzmq) exist per Python version and per platform tag, so the wheelhouse is
downloaded for the inside's, given as ``3.11`` and a platform tag such as ``manylinux_2_28_x86_64``; by default this
host's (or what the inside's inventory says, see :func:`choose`).

A glibc-based Linux runs wheels of its own manylinux tag and of every older one (PEP 600), so a tag is expanded to
that list for pip: older pips match ``--platform`` literally.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import dataclass

from nimrunbook.errors import InputError

_VERSION = re.compile(r"(?P<major>3)\.(?P<minor>\d{1,2})(?:\.\d+)?")
_PEP600 = re.compile(r"manylinux_(?P<major>\d+)_(?P<minor>\d+)_(?P<arch>\w+)")
_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_LEGACY_TAG = re.compile(r"(?P<name>manylinux1|manylinux2010|manylinux2014)_(?P<arch>\w+)")
_MUSL = re.compile(r"musllinux_(?P<major>\d+)_(?P<minor>\d+)_(?P<arch>\w+)")
_PLATFORM_TAG = re.compile(r"[a-z0-9_]+")
OLDEST_GLIBC = (2, 5)  # manylinux1
_HINT = (
    "Give the inside host's, e.g. --python-version 3.11 --platform manylinux_2_28_x86_64 (python_version, platform)."
)


def host_platform() -> str | None:
    """This host's most specific platform tag (``manylinux_2_36_x86_64``), None where there is no glibc."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    match = re.fullmatch(r"glibc (\d+)\.(\d+).*", libc)
    if sys.platform != "linux" or not match:
        return None
    return f"manylinux_{match[1]}_{match[2]}_{platform.machine()}"


def glibc_of(tag: str) -> tuple[int, int] | None:
    """The glibc a wheel of platform tag ``tag`` needs; None when the tag says nothing about glibc."""
    if match := _PEP600.fullmatch(tag):
        return int(match["major"]), int(match["minor"])
    if match := _LEGACY_TAG.fullmatch(tag):
        return _LEGACY[match["name"]]
    return None


def inside_tool(have: dict | None) -> dict[str, str]:
    """What an inventory from the inside says of its nimrunbook (version, python, platform); {} when nothing
    usable (an older inventory, or one not checked by :func:`nimrunbook.bundle.inventory.parse_inventory`)."""
    facts = have.get("nimrunbook") if isinstance(have, dict) else None
    return {k: v for k, v in facts.items() if isinstance(v, str)} if isinstance(facts, dict) else {}


@dataclass(frozen=True)
class WheelhouseTarget:
    """The inside host, as pip sees it: CPython ``python_version`` (``3.11``) on ``platform`` (a wheel tag)."""

    python_version: str
    platform: str
    implementation: str = "cp"

    @classmethod
    def parse(cls, python_version: str, platform_tag: str) -> WheelhouseTarget:
        """Checked and normalised (``3.11.4`` -> ``3.11``); raises :class:`InputError` naming what is wrong."""
        match = _VERSION.fullmatch(python_version.strip())
        if not match:
            raise InputError(
                f"{python_version!r} is not a Python version such as 3.11: the wheelhouse is made for one.",
                hint=_HINT,
            )
        tag = platform_tag.strip().replace("-", "_").replace(".", "_").lower()
        if not _PLATFORM_TAG.fullmatch(tag):
            raise InputError(f"{platform_tag!r} is not a wheel platform tag such as manylinux_2_28_x86_64.", hint=_HINT)
        return cls(f"{match['major']}.{match['minor']}", tag)

    @classmethod
    def of_this_host(cls) -> WheelhouseTarget:
        tag = host_platform()
        if tag is None:
            raise InputError(
                "This host is not a glibc Linux, so its platform cannot stand for the inside host's.", hint=_HINT
            )
        return cls(f"{sys.version_info[0]}.{sys.version_info[1]}", tag)

    @classmethod
    def choose(cls, python_version: str | None, platform_tag: str | None, have: dict | None = None) -> WheelhouseTarget:
        """What was given, else what the inside's inventory says its nimrunbook runs on, else this host's."""
        inside = inside_tool(have)
        version = python_version or inside.get("python")
        tag = platform_tag or inside.get("platform")
        if not (version and tag):
            host = cls.of_this_host() if not (version or tag) or host_platform() else None
            if host is None:
                raise InputError("This host is not a glibc Linux, so the inside's platform must be given.", hint=_HINT)
            version, tag = version or host.python_version, tag or host.platform
        return cls.parse(version, tag)

    @property
    def abi(self) -> str:
        return f"{self.implementation}{self.python_version.replace('.', '')}"

    @property
    def arch(self) -> str | None:
        """The machine (``uname -m``) of a Linux platform tag; None for others."""
        for pattern in (_PEP600, _LEGACY_TAG, _MUSL):
            if match := pattern.fullmatch(self.platform):
                return match["arch"]
        if self.platform.startswith("linux_"):
            return self.platform.removeprefix("linux_")
        return None

    def platforms(self) -> list[str]:
        """Every platform tag a host of ``platform`` runs, newest first (PEP 600: each older glibc too)."""
        glibc = glibc_of(self.platform)
        if glibc is not None and self.arch:
            tags = [f"manylinux_{glibc[0]}_{minor}_{self.arch}" for minor in range(glibc[1], OLDEST_GLIBC[1] - 1, -1)]
            tags += [f"{name}_{self.arch}" for name, needs in _LEGACY.items() if needs <= glibc]
            return tags
        if match := _MUSL.fullmatch(self.platform):
            return [
                f"musllinux_{match['major']}_{minor}_{match['arch']}" for minor in range(int(match["minor"]), -1, -1)
            ]
        return [self.platform]

    def pip_options(self) -> list[str]:
        """pip's options for wheels of this target only (``--only-binary``: nothing is built for another host)."""
        options = ["--only-binary=:all:", "--implementation", self.implementation]
        options += ["--python-version", self.python_version]  # pip adds the abi3 and none wheels of that version
        for tag in self.platforms():
            options += ["--platform", tag]
        return options

    def is_this_python(self) -> bool:
        return self.python_version == f"{sys.version_info[0]}.{sys.version_info[1]}"

    def as_dict(self) -> dict[str, str]:
        return {"python_version": self.python_version, "platform": self.platform, "implementation": self.implementation}

    def __str__(self) -> str:
        return f"Python {self.python_version} ({self.abi}) on {self.platform}"
