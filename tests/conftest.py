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
