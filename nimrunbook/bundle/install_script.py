"""``install.sh``: installs nimrunbook from the bundle's wheelhouse alone, inside the air gap.

It runs before nimrunbook exists there, so it is a POSIX shell script (run as ``sh wheelhouse/install.sh``: media
are often mounted noexec) that an auditor can read. What it does, in order, each failure one paragraph saying what
to do:

1. checks the wheelhouse against the bundle's SHA256SUMS (whose signature the person checked by hand first), and
   that it holds only regular files and folders;
2. checks the interpreter (``PYTHON``, default ``python3``) is the Python version, machine and glibc the wheels
   were chosen for, and says how to get a matching bundle when it is not;
3. creates the virtual environment without pip (so Debian's python3-venv is not needed), then lets the carried
   pip wheel install itself, nimrunbook and every dependency from the wheelhouse: ``--no-index`` (no network),
   ``--isolated`` (no site pip configuration), ``--require-hashes`` (each wheel's sha256 pinned in
   requirements.txt, itself covered by SHA256SUMS and the signature).

A re-run into the same environment installs nothing twice; an environment of another Python is refused.
"""

from __future__ import annotations

from importlib import resources

from nimrunbook.bundle.wheel_target import WheelhouseTarget

DEFAULT_VENV = "/opt/nimrunbook"

TEMPLATE = "install.sh.in"  # next to this module: a shell script, reviewed as one


def render(
    target: WheelhouseTarget,
    *,
    version: str,
    pip_wheel: str,
    glibc: tuple[int, int] | None,
    debs: bool = False,
) -> str:
    """install.sh for a wheelhouse of ``target``, whose newest glibc need is ``glibc``."""
    values = {
        "VERSION": version,
        "TARGET": str(target),
        "DEFAULT_VENV": DEFAULT_VENV,
        "PYTHON_VERSION": target.python_version,
        "MACHINE": target.arch or "",
        "GLIBC": f"{glibc[0]}.{glibc[1]}" if glibc else "",
        "PLATFORM": target.platform,
        "PIP_WHEEL": pip_wheel,
        "DEBS_HINT": ", or this bundle's packages, as root: sh $here/debs/install.sh" if debs else "",
    }
    text = (resources.files(__package__) / TEMPLATE).read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    return text
