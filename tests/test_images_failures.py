"""Registry failures read by their structure. The texts are what Docker 27's engine API and skopeo 1.9.3
answered here against Debian's docker-registry (missing tag, password-protected, nothing listening)."""

import pytest

from nimrunbook.errors import DiskSpaceError, DockerError, ImageNotFoundError, RegistryAuthError
from nimrunbook.images.failures import Failure, classify, registry_failure

REF = "127.0.0.1:41869/nim/meta/x:2"
SKOPEO = 'time="2026-11-27T19:19:14Z" level=fatal msg="Error parsing image name \\"docker://{ref}\\": {what}"'


@pytest.mark.parametrize(
    "text, status, exit_code, failure",
    [
        (
            "manifest for 127.0.0.1:41869/nim/meta/x:2 not found: manifest unknown: manifest unknown",
            404,
            None,
            "NOT_FOUND",
        ),
        ('Head "http://127.0.0.1:53887/v2/nim/meta/x/manifests/1": no basic auth credentials', 500, None, "AUTH"),
        (
            'Get "http://127.0.0.1:55541/v2/": dial tcp 127.0.0.1:55541: connect: connection refused',
            500,
            None,
            "UNREACHABLE",
        ),
        ("No such image: nimrunbook/nope:1", 404, None, "NOT_FOUND"),
        (
            SKOPEO.format(
                ref=REF, what="reading manifest 2 in 127.0.0.1:41869/nim/meta/x: manifest unknown: manifest unknown"
            ),
            None,
            1,
            "NOT_FOUND",
        ),
        (
            SKOPEO.format(
                ref=REF, what="reading manifest 1 in 127.0.0.1:53887/nim/meta/x: unauthorized: authentication required"
            ),
            None,
            1,
            "AUTH",
        ),
        (
            SKOPEO.format(
                ref=REF,
                what='pinging container registry 127.0.0.1:55541: Get \\"http://127.0.0.1:55541/v2/\\": '
                "dial tcp 127.0.0.1:55541: connect: connection refused",
            ),
            None,
            1,
            "UNREACHABLE",
        ),
        (
            "pinging container registry r.example.com: Get https://r.example.com/v2/: "
            "x509: certificate signed by unknown authority",
            None,
            1,
            "TLS",
        ),
        (
            "error pinging docker registry r.example.com: invalid status code from registry 403 (Forbidden)",
            None,
            1,
            "AUTH",
        ),
        ("writing blob: storing blob to file: write /media/x: no space left on device", None, 1, "DISK_FULL"),
        ("reading manifest 1.0 in r.example.com/nim/meta/model-denied-401: i/o timeout", None, 1, "UNREACHABLE"),
        ("anything at all", None, 2, "NOT_FOUND"),  # skopeo's exit status for a missing image
        ("registry said something new", 500, None, "OTHER"),
    ],
)
def test_classified_by_status_exit_code_and_spec_codes_first(text, status, exit_code, failure):
    assert classify(text, status=status, exit_code=exit_code) is Failure[failure]


def test_each_kind_becomes_its_error_with_a_fix():
    assert isinstance(registry_failure(REF, "manifest unknown: manifest unknown", status=404), ImageNotFoundError)
    auth = registry_failure("nvcr.io/nim/meta/x:1", "unauthorized: authentication required")
    assert isinstance(auth, RegistryAuthError) and "NGC_API_KEY" in auth.hint
    assert "docker login 127.0.0.1:41869" in registry_failure(REF, "denied: requested access").hint
    assert isinstance(registry_failure(REF, "no space left on device"), DiskSpaceError)
    other = registry_failure(REF, "something new", tool="skopeo")
    assert type(other) is DockerError and other.message.startswith("skopeo failed on")
