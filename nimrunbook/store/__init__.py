"""Publish profiles to S3-compatible storage in the flat layout NIM reads."""

from nimrunbook.store.client import S3Settings, make_client
from nimrunbook.store.keys import object_key
from nimrunbook.store.plan import PlannedObject, PublishPlan, plan_publish
from nimrunbook.store.preflight import PreflightReport, run_preflight
from nimrunbook.store.process import load_processed, process_to_directory, verify_directory
from nimrunbook.store.upload import TransferResult, publish, verify

__all__ = [
    "PlannedObject",
    "PreflightReport",
    "PublishPlan",
    "S3Settings",
    "TransferResult",
    "load_processed",
    "make_client",
    "object_key",
    "plan_publish",
    "process_to_directory",
    "publish",
    "run_preflight",
    "verify",
    "verify_directory",
]
