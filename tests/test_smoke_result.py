"""Reading causes from what a NIM printed, and the verdict's table and error."""

from __future__ import annotations

import pytest

from nimrunbook.errors import VerificationError
from nimrunbook.smoke import Cause, ProfileCheck, SmokeResult
from nimrunbook.smoke.result import classify

KEY = "nim%2Fmeta%2Fllama-3.2-1b-instruct%3Ahf-e9f8eff-nim1.5%2B%3Ffile%3Dconfig.json"


@pytest.mark.parametrize(
    ("output", "cause"),
    [
        # the stand-in's lines
        (
            f"2026-11-27T19:27:01.000000Z  ERROR nim_hub_s3: NoSuchKey: the object does not exist: s3://b/{KEY}",
            "missing",
        ),
        (
            f"2026-11-27T19:27:01.000000Z  ERROR nim_hub_s3: AccessDenied: access to the object was denied: {KEY}",
            "denied",
        ),
        ("ERROR nim_hub_s3: TLS: not trusted: x509: certificate signed by unknown authority", "tls"),
        # wordings other S3 clients use for the same failures
        (
            "botocore.exceptions.ClientError: An error occurred (404) when calling the HeadObject operation: Not Found",
            "missing",
        ),
        ("Error: service error: unhandled error (AccessDenied): Access Denied, status code: 403", "denied"),
        ("ERROR: dispatch failure: SignatureDoesNotMatch", "denied"),
        ("Error: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self signed certificate in chain", "tls"),
        ("ERROR: error trying to connect: tcp connect error: Connection refused (os error 111)", "unreachable"),
        ("ERROR: dns error: failed to lookup address information: Name or service not known", "unreachable"),
        ("ERROR nim_hub_ngc: NGC_API_KEY is not set: cannot authenticate to api.ngc.nvidia.com", "ngc"),
        ("ERROR: checksum mismatch for model.safetensors", "differ"),
        ("something went wrong\nexit 3", "other"),
    ],
)
def test_classify_reads_the_cause_from_error_lines_first(output, cause):
    expected = {
        "missing": Cause.OBJECT_MISSING,
        "denied": Cause.ACCESS_DENIED,
        "tls": Cause.TLS_NOT_TRUSTED,
        "unreachable": Cause.ENDPOINT_UNREACHABLE,
        "ngc": Cause.NGC_WANTED,
        "differ": Cause.BYTES_DIFFER,
        "other": Cause.DOWNLOAD_FAILED,
    }[cause]
    noise = "INFO 2026-11-27 download.py:51] Downloading profile 4f90 (404 bytes so far)\n"  # not an error line
    found, line = classify(output if cause == "other" else noise + output)
    assert found == expected
    assert line == output.splitlines()[-1]


def _result(*profiles: ProfileCheck) -> SmokeResult:
    return SmokeResult("r/x:1", None, "b", None, "us-east-1", "isolated", "environment", [], list(profiles))


def test_the_table_puts_problems_first_and_the_error_names_each_with_its_fix():
    good = ProfileCheck("a" * 64, "vllm", True, True, True, 8, 100)
    bad = ProfileCheck("b" * 64, "engine", True, False, False, 2, 10, Cause.OBJECT_MISSING, "config.json (s3 key k)")
    result = _result(good, bad)
    assert not result.ok and list(result.frame()["name"]) == ["engine", "vllm"]
    assert "Publish the profile again" in result.frame()["fix"][0]
    with pytest.raises(VerificationError) as raised:
        result.raise_for_failure()
    message = str(raised.value)
    assert "1 of 2 profiles" in message and "engine (bbbbbbbbbbbb): object missing: config.json" in message
    assert "vllm" not in message and "Publish the profile again" in message
    assert _result(good).summary().startswith("Smoke test PASSED: 1 of 1")
    assert not _result().ok  # nothing checked is not a pass
