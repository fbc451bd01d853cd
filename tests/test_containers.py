"""nimrunbook.containers.run_tool against the real Docker engine and the stand-in NIM image (busybox inside)."""

import time
import uuid

import pytest

from nimrunbook.containers import TOOL_LABEL, run_tool
from nimrunbook.errors import DockerError

pytestmark = pytest.mark.docker


def _own(docker, token: str) -> list:
    return docker.containers.list(all=True, filters={"label": f"test.token={token}"})


def test_a_run_past_its_timeout_is_killed_once_and_says_so(docker, standin_image):
    token = uuid.uuid4().hex
    polls: list[float] = []
    started = time.monotonic()
    run = run_tool(
        docker,
        standin_image,
        ["sh", "-c", "echo begun; sleep 60"],
        network_mode="none",
        labels={"test.token": token},
        timeout=1,
        poll=lambda: polls.append(time.monotonic()),
        wait_slice=0.5,
    )
    assert run.timed_out and run.exit_code != 0 and "begun" in run.output
    assert time.monotonic() - started < 30  # not the minute the command asked for
    assert polls and _own(docker, token) == []


def test_before_start_sees_the_container_as_created_and_may_refuse_it(docker, standin_image):
    token = uuid.uuid4().hex
    seen: dict = {}

    def refuse(container) -> None:
        seen["env"] = container.attrs["Config"]["Env"]
        seen["labels"] = container.attrs["Config"]["Labels"]
        seen["hosts"] = container.attrs["HostConfig"]["ExtraHosts"]
        raise DockerError("refused before it started")

    with pytest.raises(DockerError, match="refused before it started"):
        run_tool(
            docker,
            standin_image,
            ["true"],
            environment={"GIVEN": "1"},
            network_mode="none",
            extra_hosts={"bucket.s3.example.test": "10.0.0.1"},
            labels={"test.token": token},
            before_start=refuse,
        )
    assert "GIVEN=1" in seen["env"] and any(e.startswith("NIM_CACHE_PATH=") for e in seen["env"])  # the image's too
    assert {"test.token": token, TOOL_LABEL: "true"}.items() <= seen["labels"].items()  # with the image's own
    assert seen["hosts"] == ["bucket.s3.example.test:10.0.0.1"]
    assert _own(docker, token) == []  # removed although it never ran


def test_a_run_within_its_timeout_is_not_marked(docker, standin_image):
    run = run_tool(docker, standin_image, ["sh", "-c", "echo fine"], network_mode="none", timeout=60)
    assert (run.exit_code, run.output.strip(), run.timed_out) == (0, "fine", False)
