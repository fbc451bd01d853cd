"""The credentials DataRobot will use to read profiles (the guide's §4.2), proven before they are entered."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd

from nimrunbook.errors import StorageError
from nimrunbook.store import S3Settings, make_client
from nimrunbook.store.client import error_code, storage_error
from nimrunbook.store.plan import PlannedObject
from nimrunbook.store.upload import _remote


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
    can_list: bool
    objects: pd.DataFrame
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.can_list and bool((self.objects["status"] == "ok").all())

    def raise_for_failure(self) -> None:
        if not self.ok:
            bad = self.objects[self.objects["status"] != "ok"]
            lines = "\n".join(f"  {r.key}: {r.status}" for r in bad.head(10).itertuples())
            raise StorageError(
                f"These credentials cannot read everything DataRobot needs (list: {self.can_list}):\n{lines}",
                hint="Grant s3:ListBucket on the bucket and s3:GetObject on its objects to this key.",
            )


def check_read_credentials(
    settings: S3Settings, objects: Sequence[PlannedObject], *, workers: int = 8
) -> CredentialCheck:
    """Prove the key can list the bucket and read (HEAD) every object of the run; warn when it can also write or delete."""
    client = make_client(settings, max_connections=workers * 2)
    try:
        client.list_objects_v2(Bucket=settings.bucket, MaxKeys=1)
        can_list = True
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) not in ("AccessDenied", "403"):
            raise storage_error(exc, settings, "listing the bucket") from None
        can_list = False

    def head(obj: PlannedObject) -> dict:
        try:
            remote = _remote(client, settings.bucket, obj.key)
            status = "ok" if remote and remote[0] == obj.size else ("missing" if remote is None else "size differs")
        except Exception as exc:  # noqa: BLE001
            status = f"cannot read ({error_code(exc)})"
        return {"key": obj.key, "status": status}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        table = pd.DataFrame(list(pool.map(head, objects)), columns=["key", "status"])
    warnings = []
    probe = f"nimrunbook-credential-probe-{uuid.uuid4().hex}"
    try:
        client.put_object(Bucket=settings.bucket, Key=probe, Body=b"probe")
        warnings.append("These credentials can WRITE to the bucket. DataRobot only needs to read: use a read-only key.")
        try:
            client.delete_object(Bucket=settings.bucket, Key=probe)
            warnings.append("These credentials can DELETE objects. A read-only key protects the profiles.")
        except Exception:  # noqa: BLE001
            warnings.append(
                f"The probe object {probe} could not be deleted with this key; delete it with an admin key."
            )
    except Exception:  # noqa: BLE001 - denied, as it should be
        pass
    return CredentialCheck(can_list, table, warnings)
