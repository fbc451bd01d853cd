"""nimrunbook's own wheel, for the wheelhouse: the code that runs here is the code the inside gets.

Three ways nimrunbook can be installed, three ways to get its wheel:

- from a source tree (the imported package has a ``pyproject.toml`` beside it: an editable install, or a checkout
  on ``sys.path``): built from that tree with
  ``pip wheel``, from a clean copy (setuptools reuses a stale ``build/`` folder, which would carry modules since
  deleted) and with ``SOURCE_DATE_EPOCH`` fixed, so that an unchanged tree gives the same bytes on a re-run;
- from a wheel file that is still where pip installed it from (PEP 610's ``direct_url.json``, same sha256): that
  file, copied;
- otherwise (from an index, or the wheel file is gone): repacked from the installed files listed in the
  distribution's ``RECORD``, each checked against the sha256 recorded there at install time, so that an
  installation changed since is refused rather than carried into the air gap.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from nimrunbook.errors import NimRunbookError
from nimrunbook.hashing import sha256_file
from nimrunbook.localdisk import atomic_writer

log = logging.getLogger(__name__)

DISTRIBUTION = "nimrunbook"
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the oldest time a zip holds: reproducible wheels
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".nimrunbook", "runs", "demo", ".*cache"
)
_INSTALLER_FILES = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}  # written by the installer, not the wheel
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _distribution() -> metadata.Distribution | None:
    try:
        return metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def _direct_url(dist: metadata.Distribution) -> dict:
    try:
        return json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return {}


def _source_tree() -> Path | None:
    """The source tree the running nimrunbook is imported from, when it is one (a pyproject.toml above it)."""
    import nimrunbook

    tree = Path(nimrunbook.__file__).resolve().parents[1]
    return tree if (tree / "pyproject.toml").is_file() else None


def _build_from_source(tree: Path, directory: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="nimrunbook-wheel-") as scratch:
        copy = Path(scratch) / "source"
        shutil.copytree(tree, copy, symlinks=True, ignore=_NOT_SOURCE)
        out = Path(scratch) / "out"
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(copy)]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH},
            timeout=1800,
            check=False,
        )
        built = sorted(out.glob("*.whl")) if result.returncode == 0 else []
        if len(built) != 1:
            raise NimRunbookError(
                f"nimrunbook's own wheel could not be built from its source tree {tree} with pip wheel: "
                f"{(result.stderr or result.stdout).strip()[-800:]}",
                hint="The build needs setuptools from the package index (or its build isolation turned off with "
                "setuptools>=77 installed). Or install nimrunbook from its wheel and run bundle create from there.",
            )
        target = directory / built[0].name
        shutil.copyfile(built[0], target)
        return target


def _installed_wheel_file(dist: metadata.Distribution, directory: Path) -> Path | None:
    """The wheel file pip installed this distribution from, copied, when it is still there unchanged."""
    info = _direct_url(dist)
    url = urlparse(info.get("url", ""))
    if url.scheme != "file" or not url.path.endswith(".whl") or "archive_info" not in info:
        return None
    source = Path(unquote(url.path))
    recorded = (info["archive_info"].get("hashes") or {}).get("sha256")
    if not source.is_file() or (recorded and sha256_file(source) != recorded):
        return None
    target = directory / source.name
    shutil.copyfile(source, target)
    return target


def _wheel_name(dist: metadata.Distribution) -> str:
    tags = [
        line.split(":", 1)[1].strip()
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]
    tag = ".".join(sorted({t.split("-")[0] for t in tags})) + "-none-any" if tags else "py3-none-any"
    return f"{DISTRIBUTION}-{dist.version}-{tag}.whl"


def repack(dist: metadata.Distribution, directory: Path) -> Path:
    """A wheel of the installed ``dist``, rebuilt from the files its RECORD lists (each checked against it)."""
    dist_info = f"{DISTRIBUTION}-{dist.version}.dist-info"
    rows = list(csv.reader(io.StringIO(dist.read_text("RECORD") or "")))
    entries: list[tuple[str, bytes]] = []
    changed = []
    for row in rows:
        if len(row) < 2 or row[0].startswith("..") or "__pycache__/" in row[0]:
            continue  # scripts (written by the installer from entry_points.txt) and compiled files
        name = row[0]
        if name.startswith(f"{dist_info}/") and name.split("/", 1)[1] in _INSTALLER_FILES:
            continue
        data = Path(dist.locate_file(name)).read_bytes()
        if row[1] and _record_hash(data) != row[1]:
            changed.append(name)
        entries.append((name, data))
    if changed or not entries:
        raise NimRunbookError(
            f"The installed nimrunbook differs from what was installed ({', '.join(changed[:5]) or 'no files'}), so "
            "it is not carried into the air gap.",
            hint="Reinstall nimrunbook from its wheel (pip install --force-reinstall nimrunbook-*.whl) and run bundle "
            "create again.",
        )
    entries.sort(key=lambda entry: (entry[0].startswith(dist_info), entry[0]))  # the .dist-info last, as wheels do
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries) + f"{dist_info}/RECORD,,\n"
    target = directory / _wheel_name(dist)
    with atomic_writer(target) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in [*entries, (f"{dist_info}/RECORD", record.encode())]:
            info = zipfile.ZipInfo(name, _ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)
    return target


def own_wheel(directory: str | Path) -> Path:
    """nimrunbook's wheel for the running code, written into ``directory``; see the module docstring."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tree = _source_tree()
    if tree is not None:  # an editable install or a checkout: the code that runs is the tree's
        log.info("building nimrunbook's wheel from its source tree %s", tree)
        return _build_from_source(tree, directory)
    dist = _distribution()
    if dist is None:
        raise NimRunbookError(
            "nimrunbook is neither installed nor run from its source tree, so its wheel cannot be carried.",
            hint="Install it (pip install nimrunbook-*.whl) and run bundle create from that installation.",
        )
    copied = _installed_wheel_file(dist, directory)
    if copied is not None:
        log.info("carrying the wheel nimrunbook was installed from, %s", copied.name)
        return copied
    log.info("repacking the installed nimrunbook %s into a wheel", dist.version)
    return repack(dist, directory)
