"""The bundle carries the tool: nimrunbook's wheel, every dependency as a wheel, and ``install.sh``.

Inside the air gap there is no package index, and the tool that verifies and imports a bundle must get there
somehow; air-gap tools people trust (Zarf, Hauler) solve that first: what is carried in unpacks itself. So
``bundle create`` writes a ``wheelhouse/`` folder, listed in SHA256SUMS like every other file (so covered by the
signature, and hashed through the confinement rules by ``bundle verify``):

- nimrunbook's own wheel, of the code running here (:mod:`nimrunbook.bundle.own_wheel`), and pip's;
- every dependency as a wheel for the inside host's Python and platform (:mod:`nimrunbook.bundle.wheel_target`),
  fetched by ``pip download`` with the user's own pip configuration (a mirror or a proxy works);
- ``requirements.txt``: exactly those wheels, pinned with their sha256, from an offline resolution over the
  download folder (``pip install --dry-run --no-index``): proof before anything is carried that the wheelhouse
  installs with no index, and nothing stale from an earlier download is carried;
- ``install.sh`` (:mod:`nimrunbook.bundle.install_script`).

Resumable: pip downloads into the bundle's state folder, where a re-run finds what it fetched (pip skips files
already there; a file cut short by an interruption is removed first). A finished wheelhouse is recorded with
what decided it (the target and nimrunbook's requirements), and a re-run that asks the same does not run pip at
all. Whatever is wanted ends up in ``wheelhouse/`` by rename, never by a second copy.

An incremental bundle (``have=``) leaves the wheelhouse out when the inside's inventory says it runs the same
nimrunbook version already (:func:`left_out_because`); ``always`` carries it anyway (a development build whose
version did not change).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from urllib.parse import unquote, urlparse

from nimrunbook import __version__
from nimrunbook.bundle import debs as deb_packages
from nimrunbook.bundle import install_script, layout
from nimrunbook.bundle.own_wheel import own_wheel
from nimrunbook.bundle.wheel_target import WheelhouseTarget, glibc_of, inside_tool
from nimrunbook.errors import InputError, NimRunbookError
from nimrunbook.hashing import sha256_file
from nimrunbook.localdisk import INCOMPLETE_SUFFIX, commit, write_text_atomic
from nimrunbook.progress import SILENT, Reporter, human_bytes
from nimrunbook.redact import redact

log = logging.getLogger(__name__)

RECORD = f"{layout.STATE_DIR}/wheelhouse.json"
DEBS_RECORD = f"{layout.STATE_DIR}/wheelhouse-debs.json"
DOWNLOADS = f"{layout.STATE_DIR}/wheelhouse-download"
DEBS_DIR = layout.WHEELHOUSE_DEBS_NAME
EXTRA_REQUIREMENTS = ("pip",)  # install.sh bootstraps the environment with the carried pip
MIN_PIP = (22, 3)  # --python (markers of another Python) and install --report
_RECORD_VERSION = 1
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s@]+@")


@dataclass(frozen=True)
class WheelhouseRequest:
    """What ``bundle create`` is asked to carry: a wheelhouse for ``target``; ``always`` even when the inside has
    the same nimrunbook version already."""

    target: WheelhouseTarget
    always: bool = False
    debs: str | None = None  # a Debian or Ubuntu release: skopeo and openssh-client as its packages too


@dataclass
class Wheelhouse:
    """A finished wheelhouse: its files (for SHA256SUMS) and its entry in bundle.json."""

    files: list[dict]
    document: dict
    notes: list[str] = field(default_factory=list)


class _Pip:
    """``python -m pip`` of this host, pointed at the target's interpreter when one is installed here."""

    def __init__(self, target: WheelhouseTarget) -> None:
        self.command = [sys.executable, "-m", "pip"]
        self.notes: list[str] = []
        found = subprocess.run([*self.command, "--version"], capture_output=True, text=True, check=False)
        match = re.match(r"pip (\d+)\.(\d+)", found.stdout)
        if not match or (int(match[1]), int(match[2])) < MIN_PIP:
            raise NimRunbookError(
                f"This Python's pip ({found.stdout.strip() or 'none'}) is too old to make a wheelhouse: it needs pip "
                f"{MIN_PIP[0]}.{MIN_PIP[1]} or newer.",
                hint=f"Upgrade it: {sys.executable} -m pip install --upgrade pip. Or leave the wheelhouse out "
                "(--wheelhouse no) and install nimrunbook inside by other means.",
            )
        if not target.is_this_python():
            interpreter = shutil.which(f"python{target.python_version}")
            if interpreter:
                self.command += ["--python", interpreter]  # environment markers evaluated for the inside's Python
            else:
                self.notes.append(
                    f"python{target.python_version} is not installed on this host, so pip evaluated the dependencies' "
                    f"environment markers for this host's Python {sys.version_info[0]}.{sys.version_info[1]}; if "
                    "install.sh reports a missing package, make the bundle on a host with that Python."
                )

    def run(self, arguments: list[str], what: str, target: WheelhouseTarget, progress: Reporter) -> None:
        """Run pip, counting the wheels it reports; a failure is one paragraph with pip's own last lines."""
        lines: list[str] = []
        with progress.task(what, None, unit="wheels") as task:
            process = subprocess.Popen(
                [*self.command, *arguments, "--progress-bar", "off", "--disable-pip-version-check"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line.rstrip())
                if line.startswith(("Saved ", "File was already downloaded")):
                    task.advance(1)
            process.wait()
        if process.returncode != 0:
            # pip's notes about a configured location that does not exist say nothing about this failure
            shown = [line for line in lines if line.strip() and not line.startswith("WARNING: Location ")]
            tail = _URL_CREDENTIALS.sub("***@", redact("\n".join(shown[-12:])))
            raise NimRunbookError(
                f"pip could not {what} ({target}); it said:\n{tail}",
                hint="Check that this host reaches the package index (or set PIP_INDEX_URL to your mirror). A "
                "package that has no wheel for that Python or platform cannot be carried: choose the inside's "
                "--python-version and --platform, or leave the wheelhouse out (--wheelhouse no) and install "
                "nimrunbook inside by other means. A re-run keeps what was downloaded.",
            )


def wheelhouse_request(
    mode: str,
    python_version: str | None = None,
    platform: str | None = None,
    have: dict | None = None,
    debs: str | None = None,
) -> WheelhouseRequest | None:
    """The request of a "auto" / "yes" / "no" choice (the CLI's --wheelhouse, step 05's wheelhouse parameter)."""
    if mode not in ("auto", "yes", "no"):
        raise InputError(
            f"wheelhouse is {mode!r}: say auto, yes or no.", hint="auto carries it unless the inside has it."
        )
    if mode == "no":
        if debs:
            raise InputError("Debian packages are carried in the wheelhouse, but it was left out (wheelhouse no).")
        return None
    target = WheelhouseTarget.choose(python_version, platform, have)
    if debs:
        deb_packages.require_known(debs)
        deb_packages.architecture(target.arch)
    return WheelhouseRequest(target, always=mode == "yes", debs=debs or None)


def left_out_because(request: WheelhouseRequest, have: dict | None) -> str | None:
    """Why an incremental bundle need not carry the wheelhouse (the inside runs this version already), or None."""
    inside = inside_tool(have)
    if request.always or inside.get("version") != __version__:
        return None
    return f"the inside runs nimrunbook {__version__} already (its inventory says so)"


def remove_wheelhouse(root: Path) -> None:
    """No wheelhouse in this bundle: an earlier run's is removed (every file on the media must be listed)."""
    folder = root / layout.WHEELHOUSE_DIR
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)
    (root / RECORD).unlink(missing_ok=True)
    (root / DEBS_RECORD).unlink(missing_ok=True)
    shutil.rmtree(root / DOWNLOADS, ignore_errors=True)


def _requires(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel: with the target, what decides which dependencies are carried."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        headers = HeaderParser().parsestr(archive.read(name).decode("utf-8"))
    return sorted(headers.get_all("Requires-Dist") or [])


def _key(request: WheelhouseRequest, requires: list[str]) -> str:
    facts = {"version": _RECORD_VERSION, "target": request.target.as_dict(), "requires": requires}
    facts["extra"] = list(EXTRA_REQUIREMENTS)
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _reusable(root: Path, key: str) -> list[dict] | None:
    """The dependencies an earlier run carried for the same key, when they are all still in the wheelhouse."""
    try:
        record = json.loads((root / RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key or not isinstance(record.get("wheels"), list):
        return None
    folder = root / layout.WHEELHOUSE_DIR
    for wheel in record["wheels"]:
        path = folder / wheel["file"]
        if not path.is_file() or path.stat().st_size != wheel["size"]:
            return None
    return record["wheels"]


def _clear_torn_downloads(downloads: Path) -> None:
    """A wheel cut short by an interruption is not a zip: removed, so that pip fetches it again."""
    for path in downloads.iterdir():
        if path.name.endswith(INCOMPLETE_SUFFIX) or (path.suffix == ".whl" and not zipfile.is_zipfile(path)):
            path.unlink()


def _seed(downloads: Path, folder: Path) -> None:
    """Wheels of an earlier run's wheelhouse, linked into the download folder so that pip does not fetch them."""
    for wheel in folder.glob("*.whl") if folder.is_dir() else []:
        target = downloads / wheel.name
        if not target.exists():
            try:
                target.hardlink_to(wheel)
            except OSError:  # media without hard links (FAT32): pip downloads it again
                continue


def _resolve(pip: _Pip, request: WheelhouseRequest, downloads: Path, wheel: Path, progress: Reporter) -> list[dict]:
    """Download, then resolve offline over the download folder: exactly the wheels install.sh will install."""
    target = request.target
    requirements = [str(wheel), *EXTRA_REQUIREMENTS]
    pip.run(
        ["download", "--dest", str(downloads), *target.pip_options(), *requirements],
        "download the wheels",
        target,
        progress,
    )
    with tempfile.TemporaryDirectory(prefix="nimrunbook-wheelhouse-") as scratch:
        report = Path(scratch) / "report.json"
        offline = ["install", "--dry-run", "--ignore-installed", "--target", str(Path(scratch) / "target")]
        offline += ["--isolated", "--no-index", "--find-links", str(downloads), "--report", str(report), "--quiet"]
        pip.run([*offline, *target.pip_options(), *requirements], "resolve the wheelhouse offline", target, progress)
        resolved = json.loads(report.read_text())["install"]
    wheels = []
    for item in resolved:
        path = Path(unquote(urlparse(item["download_info"]["url"]).path))
        if path.parent != downloads.resolve() or path.suffix != ".whl":
            raise NimRunbookError(
                f"pip resolved {item['metadata']['name']} to {path}, outside the wheelhouse's downloads.",
                hint="Run bundle create again; if it happens again, report it.",
            )
        wheels.append({"name": item["metadata"]["name"], "version": item["metadata"]["version"], "file": path.name})
    return wheels


def _place(downloads: Path, folder: Path, wheels: list[dict], keep: set[str]) -> None:
    """Move the chosen wheels into the wheelhouse (a rename on the same media) and drop everything else there
    but ``keep``."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {w["file"] for w in wheels}
    for name in wanted:
        if (downloads / name).exists():
            commit(downloads / name, folder / name)
    for path in folder.iterdir():
        if path.name in wanted | keep:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _requirements(wheels: list[dict]) -> str:
    lines = [
        f"{w['name']}=={w['version']} --hash=sha256:{w['sha256']}"
        for w in sorted(wheels, key=lambda w: w["name"].lower())
    ]
    return (
        "# Exactly the wheels in this folder, each with its sha256 (pip install --require-hashes).\n"
        + "\n".join(lines)
        + "\n"
    )


def _newest_glibc(wheels: list[dict]) -> tuple[int, int] | None:
    """The newest glibc the carried wheels need: for each wheel the oldest its platform tags allow."""
    needs = []
    for wheel in wheels:
        tags = wheel["file"].removesuffix(".whl").split("-")[-1].split(".")
        glibcs = [glibc_of(tag) for tag in tags]
        if glibcs and all(glibcs):
            needs.append(min(g for g in glibcs if g))
    return max(needs) if needs else None


def build_wheelhouse(root: Path, request: WheelhouseRequest, progress: Reporter = SILENT) -> Wheelhouse:
    """Write ``root/wheelhouse`` for ``request`` (see the module docstring); returns its files and document."""
    root = root.absolute()
    folder, downloads = root / layout.WHEELHOUSE_DIR, root / DOWNLOADS
    downloads.mkdir(parents=True, exist_ok=True)
    _clear_torn_downloads(downloads)
    own = own_wheel(downloads)
    key = _key(request, _requires(own))
    notes: list[str] = []
    dependencies = _reusable(root, key)
    if dependencies is None:
        pip = _Pip(request.target)
        notes = pip.notes
        _seed(downloads, folder)
        resolved = _resolve(pip, request, downloads, own, progress)
        dependencies = [w for w in resolved if w["file"] != own.name]
        if len(dependencies) == len(resolved):
            raise NimRunbookError(
                f"pip left nimrunbook's own wheel {own.name} out of the wheelhouse.", hint="Report it."
            )
    else:
        log.info("the wheelhouse for %s is complete from an earlier run: pip is not run again", request.target)
    own_entry = {"name": "nimrunbook", "version": __version__, "file": own.name}
    _place(downloads, folder, [*dependencies, own_entry], {DEBS_DIR} if request.debs else set())
    shutil.rmtree(downloads, ignore_errors=True)
    wheels = [*dependencies, own_entry]
    with progress.task("hash the wheelhouse", sum((folder / w["file"]).stat().st_size for w in wheels)) as task:
        for wheel in wheels:
            path = folder / wheel["file"]
            wheel["size"] = path.stat().st_size
            wheel["sha256"] = sha256_file(path, task)
    write_text_atomic(root / RECORD, json.dumps({"key": key, "wheels": dependencies}, indent=1) + "\n")

    pip_wheel = next(w["file"] for w in dependencies if w["name"].lower() == "pip")
    glibc = _newest_glibc(wheels)
    write_text_atomic(folder / layout.WHEELHOUSE_REQUIREMENTS_NAME, _requirements(wheels))
    script = install_script.render(
        request.target, version=__version__, pip_wheel=pip_wheel, glibc=glibc, debs=bool(request.debs)
    )
    write_text_atomic(folder / layout.WHEELHOUSE_INSTALL_NAME, script)
    carried = [layout.WHEELHOUSE_REQUIREMENTS_NAME, layout.WHEELHOUSE_INSTALL_NAME]
    if request.debs:
        arch = deb_packages.architecture(request.target.arch)
        packages = deb_packages.download(folder / DEBS_DIR, request.debs, arch, root / DEBS_RECORD, progress)
        carried += [f"{DEBS_DIR}/{name}" for name in packages]
    else:
        (root / DEBS_RECORD).unlink(missing_ok=True)
    files = [{"path": f"{layout.WHEELHOUSE_DIR}/{w['file']}", "size": w["size"], "sha256": w["sha256"]} for w in wheels]
    for name in carried:
        path = folder / name
        files.append(
            {"path": f"{layout.WHEELHOUSE_DIR}/{name}", "size": path.stat().st_size, "sha256": sha256_file(path)}
        )
    document = {
        **request.target.as_dict(),
        "nimrunbook": __version__,
        "wheel": f"{layout.WHEELHOUSE_DIR}/{own.name}",
        "install": layout.WHEELHOUSE_INSTALL,
        "requirements": layout.WHEELHOUSE_REQUIREMENTS,
        "wheels": len(wheels),
        "bytes": sum(w["size"] for w in wheels),
        "glibc": f"{glibc[0]}.{glibc[1]}" if glibc else None,
        "debs": {
            "release": request.debs,
            "packages": list(deb_packages.PACKAGES),
            "files": len(carried) - 4,  # the .deb files
            "install": f"{layout.WHEELHOUSE_DIR}/{DEBS_DIR}/{deb_packages.INSTALL_NAME}",
        }
        if request.debs
        else None,
        "notes": notes,
    }
    for note in notes:
        log.warning("wheelhouse: %s", note)
    log.info("wheelhouse for %s: %d wheels, %s", request.target, len(wheels), human_bytes(document["bytes"]))
    return Wheelhouse(files, document, notes)


def wheelhouse_summary(document: dict | None, left_out: str | None) -> str:
    """One line for tables and logs: what the wheelhouse carries, or why there is none."""
    if document:
        return (
            f"nimrunbook {document['nimrunbook']}: {document['wheels']} wheels, {human_bytes(document['bytes'])}, "
            f"for Python {document['python_version']} on {document['platform']}"
        )
    return f"none: {left_out}" if left_out else "none (not asked for)"


def wheelhouse_readme_lines(document: dict | None, left_out: str | None) -> list[str]:
    """The README.txt step that installs nimrunbook inside from the bundle (or says why there is none)."""
    if not document:
        reason = left_out or "this bundle was made without one (--wheelhouse no)"
        return [f"   No wheelhouse: {reason}. Use the nimrunbook installed inside.", ""]
    lines = [
        f"   nimrunbook {document['nimrunbook']} and every dependency are in {layout.WHEELHOUSE_DIR}/, for Python "
        f"{document['python_version']} on {document['platform']}. With SHA256SUMS's signature checked (step 2):",
        "",
        f"     grep '  {layout.WHEELHOUSE_DIR}/' {layout.SUMS} | sha256sum -c -",
        f"     sh {layout.WHEELHOUSE_INSTALL} {install_script.DEFAULT_VENV}      # no package index needed",
        f'     export PATH="{install_script.DEFAULT_VENV}/bin:$PATH"',
        "",
    ]
    if document.get("debs"):
        carried = document["debs"]
        lines += [
            f"   {' and '.join(carried['packages'])} for {carried['release']}, as Debian packages with what they need "
            "(as root; only what the host lacks or has older is installed):",
            "",
            f"     sh {carried['install']}",
            "",
        ]
    return lines
