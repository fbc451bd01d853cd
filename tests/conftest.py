"""Shared test fixtures. Samples under tests/fixtures are real (see SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_text(relative: str) -> str:
    return (FIXTURES / relative).read_text(encoding="utf-8")


@pytest.fixture
def guide_listing() -> str:
    return fixture_text("list-model-profiles/datarobot-guide-llama-3.2-1b-instruct-1.8.5-truncated.txt")


# -- real services, started once per test session ------------------------------------------------

import os  # noqa: E402

from nimrunbook.engine import docker_client as _docker_client  # noqa: E402
from nimrunbook.errors import DockerError  # noqa: E402
from nimrunbook.sandbox.registry import LocalRegistry  # noqa: E402
from nimrunbook.standin import build_standin_image  # noqa: E402

# Looks like a real NGC key so that the key-shape redaction is exercised too.
FAKE_NGC_KEY = "nvapi-TESTONLY0123456789abcdefABCDEF-not-a-real-key"


@pytest.fixture(scope="session")
def docker():
    """The real Docker engine that scripts/test started (or the user's own)."""
    try:
        return _docker_client()
    except DockerError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Docker engine: {error}")


@pytest.fixture(scope="session")
def standin_image(docker) -> str:
    return build_standin_image(docker, "1.8.5")


@pytest.fixture(scope="session")
def standin_image_next(docker) -> str:
    return build_standin_image(docker, "1.8.6")


@pytest.fixture(scope="session")
def ngc_registry(tmp_path_factory):
    """A real registry on loopback standing in for nvcr.io."""
    registry = LocalRegistry(root=tmp_path_factory.mktemp("ngc-registry")).start()
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def ngc_image(docker, standin_image, ngc_registry) -> str:
    """The stand-in image, pushed to the nvcr.io stand-in under the real repository path."""
    ref = f"{ngc_registry.host}/nim/meta/llama-3.2-1b-instruct:1.8.5"
    docker.images.get(standin_image).tag(ref)
    for event in docker.api.push(ref, stream=True, decode=True):
        assert "error" not in event, event
    return ref
