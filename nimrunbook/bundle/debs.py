"""Debian packages for the inside, when asked: the tools nimrunbook drives (skopeo, openssh-client), with their
dependencies, for a named Debian or Ubuntu release, for hosts inside that have no package mirror.

apt does the work, in a configuration of its own (never this host's package lists or state): the release's archive
and its updates and security suites, signed by the distribution's keyring on this host, for the inside's
architecture, and an empty dpkg status, so that ``apt-get install --download-only`` fetches the whole closure a bare
system would need. The folder gets a ``Packages`` index (a flat apt repository). The inside installs from it with
``wheelhouse/debs/install.sh``, which points apt at that folder alone (in a configuration of its own again): apt
resolves the tools against what the host has installed and takes from the folder only what is missing or must be
newer, never upgrading what the tools do not need.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from nimrunbook.errors import InputError, NimRunbookError
from nimrunbook.hashing import sha256_file
from nimrunbook.localdisk import INCOMPLETE_SUFFIX, commit, write_text_atomic
from nimrunbook.progress import SILENT, Reporter

log = logging.getLogger(__name__)

PACKAGES = ("skopeo", "openssh-client")
DEBIAN = ("buster", "bullseye", "bookworm", "trixie", "forky", "sid")
UBUNTU = ("focal", "jammy", "noble", "oracular", "plucky", "questing")
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64el", "s390x": "s390x", "i686": "i386"}
INSTALL_NAME = "install.sh"
INDEX_NAME = "Packages"  # the folder as a flat apt repository
_KEYRINGS = {
    "debian": "/usr/share/keyrings/debian-archive-keyring.gpg",
    "ubuntu": "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
}

_INSTALL = r"""#!/bin/sh
# Install @PACKAGES@ (@RELEASE@, @ARCH@) from these Debian packages alone, no mirror needed: apt reads this folder
# as a local repository (its Packages index lists every file with its sha256) and takes from it only what the host
# lacks or needs newer. Run as root: sh wheelhouse/debs/install.sh    (--simulate: show what apt would do, change nothing)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
fail() { printf 'debs/install.sh: %s\n' "$*" >&2; exit 1; }
simulate=""
[ "${1:-}" != "--simulate" ] || simulate="--simulate"
[ -n "$simulate" ] || [ "$(id -u)" = 0 ] || fail "run it as root (or with --simulate to see what it would do)."
. /etc/os-release
[ "${VERSION_CODENAME:-}" = "@RELEASE@" ] || fail "these packages are for @RELEASE@, but this host runs" \
  "${VERSION_CODENAME:-an unknown release}. Make the bundle again outside with --debs ${VERSION_CODENAME:-<release>}."
[ "$(dpkg --print-architecture)" = "@ARCH@" ] || fail "these packages are for @ARCH@, this host is" \
  "$(dpkg --print-architecture)."
apt=$(mktemp -d)
trap 'rm -rf "$apt"' EXIT
mkdir -p "$apt/lists/partial" "$apt/parts"
echo "deb [trusted=yes] file:$here ./" > "$apt/sources.list"  # trusted: SHA256SUMS and its signature vouch for it
set -- -o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/parts" \
  -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" \
  -o APT::Sandbox::User=root -q
[ -z "$simulate" ] || set -- "$@" -o Debug::NoLocking=1
apt-get "$@" update >/dev/null || fail "apt could not read $here as a repository (see above)."
apt-get "$@" install --yes --no-install-recommends $simulate @PACKAGES_LIST@
"""


def architecture(machine: str | None) -> str:
    """Debian's name of the machine ``uname -m`` names (``x86_64`` -> ``amd64``)."""
    if machine not in ARCHITECTURES:
        raise InputError(
            f"Debian packages cannot be chosen for the machine {machine or 'of this platform tag'}.",
            hint=f"Give a Linux --platform of one of {', '.join(ARCHITECTURES)}, or leave --debs out.",
        )
    return ARCHITECTURES[machine]


def require_known(release: str) -> str:
    """``release`` when it is a Debian or Ubuntu release this module can fetch packages of."""
    if release not in DEBIAN + UBUNTU:
        raise InputError(
            f"{release!r} is not a Debian or Ubuntu release nimrunbook knows.",
            hint=f"Name one of {', '.join(DEBIAN + UBUNTU)} (the inside host's VERSION_CODENAME in /etc/os-release).",
        )
    return release


def _sources(release: str, arch: str) -> str:
    if require_known(release) in DEBIAN:
        keyring, suites = (
            _KEYRINGS["debian"],
            [("http://deb.debian.org/debian", release), ("http://deb.debian.org/debian", f"{release}-updates")],
        )
        suites.append(("http://security.debian.org/debian-security", f"{release}-security"))
        components = "main"
    else:
        keyring = _KEYRINGS["ubuntu"]
        archive = (
            "http://archive.ubuntu.com/ubuntu" if arch in ("amd64", "i386") else "http://ports.ubuntu.com/ubuntu-ports"
        )
        suites = [(archive, release), (archive, f"{release}-updates"), (archive, f"{release}-security")]
        components = "main universe"
    if not Path(keyring).is_file():
        raise NimRunbookError(
            f"The archive keyring {keyring} is not on this host, so the packages of {release} cannot be checked.",
            hint="Install it (apt-get install debian-archive-keyring, or ubuntu-keyring), then run bundle create again.",
        )
    return "".join(f"deb [signed-by={keyring}] {url} {suite} {components}\n" for url, suite in suites)


def _apt(options: list[str], arguments: list[str], what: str) -> None:
    result = subprocess.run(["apt-get", *options, *arguments], capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise NimRunbookError(
            f"apt-get could not {what}: {(result.stderr or result.stdout).strip()[-800:]}",
            hint="Check that this host reaches the distribution's archive (or its proxy, set in /etc/apt/apt.conf.d), "
            "or leave --debs out and install skopeo and openssh-client inside by other means.",
        )


def download(folder: Path, release: str, arch: str, state: Path, progress: Reporter = SILENT) -> list[str]:
    """The .deb files of :data:`PACKAGES` and their closure in ``folder``, with its install.sh; resumable: a
    re-run for the same release and architecture (``state`` records it) does not run apt again."""
    if shutil.which("apt-get") is None:
        raise NimRunbookError(
            "Debian packages were asked for, but this host has no apt-get.",
            hint="Make the bundle on a Debian or Ubuntu host, or leave --debs out.",
        )
    key = {"release": release, "arch": arch, "packages": list(PACKAGES)}
    try:
        recorded = json.loads(state.read_text())
    except (OSError, ValueError):
        recorded = {}
    names = recorded.get("files") if recorded.get("key") == key else None
    if not (names and all((folder / name).is_file() for name in names)):
        sources = _sources(release, arch)
        with (
            tempfile.TemporaryDirectory(prefix="nimrunbook-apt-") as scratch,
            progress.task(f"download {', '.join(PACKAGES)} for {release} ({arch})", None, unit="packages"),
        ):
            root = Path(scratch)
            for sub in ("lists/partial", "archives/partial", "parts", "cache"):
                (root / sub).mkdir(parents=True)
            (root / "sources.list").write_text(sources)
            (root / "status").touch()  # a bare system: apt fetches every dependency
            options = [f"-oDir::Etc::SourceList={root / 'sources.list'}", f"-oDir::Etc::SourceParts={root / 'parts'}"]
            options += [
                f"-oDir::Etc::Preferences={root / 'parts' / 'none'}",
                f"-oDir::Etc::PreferencesParts={root / 'parts'}",
            ]
            options += [f"-oDir::State::Lists={root / 'lists'}", f"-oDir::State::Status={root / 'status'}"]
            options += [f"-oDir::Cache={root / 'cache'}", f"-oDir::Cache::Archives={root / 'archives'}"]
            options += [f"-oAPT::Architecture={arch}", f"-oAPT::Architectures::={arch}", "-oDebug::NoLocking=1"]
            options += ["-oAPT::Sandbox::User=root", "-q"]
            _apt(options, ["update"], f"read the package lists of {release}")
            _apt(
                options, ["install", "--yes", "--download-only", "--no-install-recommends", *PACKAGES], "download them"
            )
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("*.deb"):
                old.unlink()
            names = sorted(p.name for p in (root / "archives").glob("*.deb"))
            for name in names:
                shutil.move(root / "archives" / name, folder / f"{name}{INCOMPLETE_SUFFIX}")
                commit(folder / f"{name}{INCOMPLETE_SUFFIX}", folder / name)
        write_text_atomic(state, json.dumps({"key": key, "files": names}) + "\n")
    else:
        log.info(
            "the Debian packages for %s (%s) are complete from an earlier run: apt is not run again", release, arch
        )
    write_text_atomic(folder / INDEX_NAME, _index(folder, names))
    script = _INSTALL.replace("@PACKAGES@", " and ".join(PACKAGES)).replace("@PACKAGES_LIST@", " ".join(PACKAGES))
    write_text_atomic(folder / INSTALL_NAME, script.replace("@RELEASE@", release).replace("@ARCH@", arch))
    return [*names, INDEX_NAME, INSTALL_NAME]


def _index(folder: Path, names: list[str]) -> str:
    """The folder as a flat apt repository: each package's control fields, with its file name, size and sha256."""
    paragraphs = []
    for name in names:
        control = subprocess.run(
            ["dpkg-deb", "--field", str(folder / name)], capture_output=True, text=True, check=False, timeout=120
        )
        if control.returncode != 0:
            raise NimRunbookError(
                f"dpkg-deb cannot read {name}: {control.stderr.strip()[:300]}",
                hint="Run bundle create again: the package is downloaded again.",
            )
        path = folder / name
        fields = f"Filename: ./{name}\nSize: {path.stat().st_size}\nSHA256: {sha256_file(path)}\n"
        paragraphs.append(control.stdout.rstrip("\n") + "\n" + fields)
    return "\n".join(paragraphs)
