"""The smoke test: the NIM itself, from the inside, reads the profiles as published.

``smoke_test(client, image, profile_ids, load_published(record), settings)``
pulls the image from the internal registry, runs its own ``download-to-cache``
against ``s3://<bucket>/`` with the read-only key and no NGC key on a network
that reaches only the object store, and compares every fetched file with the
sha256 recorded at publish time. :class:`SmokeResult` has the per-profile
table (pulled, fetched, identical, cause, fix).
"""

from nimrunbook.smoke.expected import ExpectedObject, Published, load_published
from nimrunbook.smoke.result import Cause, FileCheck, ProfileCheck, SmokeResult
from nimrunbook.smoke.run import smoke_test

__all__ = [
    "Cause",
    "ExpectedObject",
    "FileCheck",
    "ProfileCheck",
    "Published",
    "SmokeResult",
    "load_published",
    "smoke_test",
]
