"""The credentials DataRobot will use to read profiles (the guide's §4.2), proven before they are entered."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd

from nimrunbook.errors import StorageError, problems_error
from nimrunbook.store import S3Settings, make_client
from nimrunbook.store.client import S3_FAILURES, error_code, is_access_denied, stat_object, storage_error
from nimrunbook.store.plan import PlannedObject


def secure_configuration_steps(bucket: str, endpoint_url: str | None, region: str) -> str:
    """What to click in DataRobot, with this run's values filled in."""
    return "\n".join(
        [
            "In DataRobot: Secure Configurations > Add a secure configuration",
            "  1. Type: AWS Credentials.",
            "  2. Name it, e.g. nim-profiles-readonly.",
            "  3. AWS access key id and secret access key: a read-only key of the bucket (the key checked below;",
            "     it needs s3:ListBucket and s3:GetObject, and should have nothing more). Permanent keys: no session token.",
            f"  4. It is used for s3://{bucket}/ at {endpoint_url or 'AWS S3'} in region {region}.",
            "  5. Share it with the users who deploy NIMs, with at least the Consumer role.",
        ]
    )


@dataclass
class CredentialCheck:
    """What the read check found. ``can_write`` is True (a probe object was stored), False (the store
    refused it: AccessDenied, the only answer that proves a read-only key) or None (the probe failed for
    another reason, so whether the key can write is unknown; :attr:`warnings` says why)."""

    can_list: bool
    objects: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    can_write: bool | None = None

    @property
    def ok(self) -> bool:
        return self.can_list and bool((self.objects["status"] == "ok").all())

    def raise_for_failure(self) -> None:
        if not self.ok:
            bad = self.objects[self.objects["status"] != "ok"]
            raise problems_error(
                StorageError,
                f"These credentials cannot read everything DataRobot needs (list: {self.can_list})",
                [f"{r.key}: {r.status}" for r in bad.itertuples()],
                hint="Grant s3:ListBucket on the bucket and s3:GetObject on its objects to this key.",
                shown=10,
            )


def _probe_writes(client, settings: S3Settings) -> tuple[bool | None, list[str]]:
    """Try to store (and then delete) a probe object: (can write, warnings)."""
    probe = f"nimrunbook-credential-probe-{uuid.uuid4().hex}"
    try:
        client.put_object(Bucket=settings.bucket, Key=probe, Body=b"probe")
    except S3_FAILURES as exc:
        if is_access_denied(exc):
            return False, []  # refused, as it should be: the only proof of a read-only key
        reason = storage_error(exc, settings, "writing a probe object").message
        return None, [
            "Whether these credentials can write is UNKNOWN: the write probe failed for another reason than "
            f"access denied ({reason}). Check the key's policy: DataRobot needs only s3:ListBucket and s3:GetObject."
        ]
    warnings = ["These credentials can WRITE to the bucket. DataRobot only needs to read: use a read-only key."]
    try:
        client.delete_object(Bucket=settings.bucket, Key=probe)
        warnings.append("These credentials can DELETE objects. A read-only key protects the profiles.")
    except S3_FAILURES:
        warnings.append(f"The probe object {probe} could not be deleted with this key; delete it with an admin key.")
    return True, warnings


def check_read_credentials(
    settings: S3Settings,
    objects: Sequence[PlannedObject],
    *,
    workers: int = 8,
    probe_timeout: float = 60,
) -> CredentialCheck:
    """Prove the key can list the bucket and read (HEAD) every object of the run; warn when it can also write
    or delete, and say so when that cannot be told (``probe_timeout``: seconds the write probe may take)."""
    client = make_client(settings, max_connections=workers * 2)
    try:
        client.list_objects_v2(Bucket=settings.bucket, MaxKeys=1)
        can_list = True
    except S3_FAILURES as exc:
        if not is_access_denied(exc):
            raise storage_error(exc, settings, "listing the bucket") from exc
        can_list = False

    def head(obj: PlannedObject) -> dict:
        try:
            remote = stat_object(client, settings.bucket, obj.key)
            status = "ok" if remote and remote[0] == obj.size else ("missing" if remote is None else "size differs")
        except S3_FAILURES as exc:
            status = f"cannot read ({error_code(exc)})"
        return {"key": obj.key, "status": status}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        table = pd.DataFrame(list(pool.map(head, objects)), columns=["key", "status"])
    prober = make_client(settings, read_timeout=probe_timeout, retries=0)
    can_write, warnings = _probe_writes(prober, settings)
    return CredentialCheck(can_list, table, warnings, can_write)
