"""Step 00: is everything the run needs there, before any large transfer starts?"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from nimrunbook.engine import docker_client
from nimrunbook.errors import NimRunbookError, PreflightError, problems_error
from nimrunbook.images import RegistryAccess
from nimrunbook.images.backend import open_backend
from nimrunbook.images.refs import ImageRef
from nimrunbook.localdisk import free_bytes
from nimrunbook.progress import human_bytes
from nimrunbook.runbook.display import show_record
from nimrunbook.runbook.session import Step
from nimrunbook.store import S3Settings, run_preflight


def _row(check: str, status: str, detail: str, fix: str = "") -> dict:
    return {"check": check, "status": status, "detail": detail, "fix": fix}


def _registry_rows(
    images: Sequence[str], registries: Sequence[str], access: RegistryAccess, docker_host: str
) -> list[dict]:
    """Each image exists, each registry answers (TLS and credentials accepted); a backend that cannot be
    opened (no skopeo and no Docker engine) fails each of these checks, with its reason."""
    checks = [(f"image {ref}", ref, True) for ref in images]
    checks += [(f"registry {registry}", f"{registry}/nimrunbook/preflight:probe", False) for registry in registries]
    if not checks:
        return []
    try:
        engine = open_backend("auto", access, docker_host=docker_host or None)
    except NimRunbookError as error:
        return [
            _row(name, "fail", f"No way to reach registries: {error.message}", error.hint or "") for name, *_ in checks
        ]
    rows = []
    for name, ref, must_exist in checks:
        try:
            digest = engine.digest(ImageRef.parse(ref))
        except NimRunbookError as error:
            rows.append(_row(name, "fail", error.message, error.hint or ""))
            continue
        if not must_exist:
            rows.append(_row(name, "ok", "reachable, TLS and credentials accepted"))
        else:
            rows.append(
                _row(name, "ok" if digest else "fail", digest or "not found", "" if digest else "Check the tag.")
            )
    return rows


def run_checks(
    step: Step,
    *,
    docker_host: str = "",
    cache_dir: str = "",
    min_free_gb: float = 0,
    images: Sequence[str] = (),
    access: RegistryAccess | None = None,
    registries: Sequence[str] = (),
    settings: S3Settings | None = None,
    tools: Sequence[str] = ("skopeo", "ssh-keygen", "sha256sum"),
) -> pd.DataFrame:
    """Run every check that applies to the parameters given; fail at the end, naming each problem."""
    rows = []
    try:
        version = docker_client(docker_host or None).version().get("Version", "?")
        rows.append(_row("Docker engine", "ok", f"answers (version {version})"))
    except NimRunbookError as error:
        rows.append(_row("Docker engine", "fail", error.message, error.hint or ""))
    if cache_dir:
        target = Path(cache_dir)
        target.mkdir(parents=True, exist_ok=True)
        free = free_bytes(target)
        ok = free >= min_free_gb * 1e9
        rows.append(
            _row(
                "disk space",
                "ok" if ok else "fail",
                f"{human_bytes(free)} free at {target}",
                "" if ok else f"Free space: {min_free_gb} GB wanted.",
            )
        )
    for tool in tools:
        found = shutil.which(tool)
        rows.append(
            _row(
                f"tool {tool}",
                "ok" if found else "warn",
                found or "not installed",
                "" if found else f"apt-get install {tool}",
            )
        )
    rows += _registry_rows(images, registries, access or RegistryAccess(), docker_host)
    if settings is not None:
        report = run_preflight(settings)
        rows += [_row(f"object store: {c.name}", c.status, c.detail, c.fix) for c in report.checks]
    frame = pd.DataFrame(rows, columns=["check", "status", "detail", "fix"])
    show_record("preflight", {"checks": rows}, frame, "Preflight")
    step.save(preflight={"checks": rows})
    failed = frame[frame["status"] == "fail"]
    if len(failed):
        raise problems_error(
            PreflightError,
            "Preflight failed",
            [f"{r.check}: {r.detail} {r.fix}".rstrip() for r in failed.itertuples()],
            hint="Fix each check named above, then run this step again.",
        )
    return frame
