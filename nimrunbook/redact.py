"""Keep secrets out of everything a person or an auditor reads.

Secrets (the NGC API key, AWS keys, registry passwords) reach us through the
environment and parameters; they must never appear in notebook outputs,
reports, logs or exception text. Known secret *values* are replaced wherever
they occur, and well-known key *shapes* are replaced even when we were never
told the value (a container may echo a key we did not pass).
"""

from __future__ import annotations

import logging
import os
import re

MASK = "***"
SECRET_ENV_VARS = (
    "NGC_API_KEY",
    "NGC_CLI_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "REGISTRY_PASSWORD",
)
_PATTERNS = (
    re.compile(r"nvapi-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"(?i)(aws_secret_access_key|secret_key|password|api_key|token)(\s*[=:]\s*)[^\s'\",]+"),
)
_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that :func:`redact` masks it from now on."""
    if value and len(value) >= 4:
        _registered.add(value)


def _known_values() -> list[str]:
    values = set(_registered)
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            values.add(value)
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every known secret value and key-shaped string masked."""
    if not text:
        return text
    for value in _known_values():
        text = text.replace(value, MASK)
    for pattern in _PATTERNS:
        keep_name = pattern.groups >= 2  # "password=xyz" keeps "password=", masks the value
        text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text) if keep_name else pattern.sub(MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True
