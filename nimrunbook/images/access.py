"""How to reach each registry: credentials and TLS, per registry host.

Credentials come from the Docker config (``docker login`` writes it), from
the NGC API key for nvcr.io (user ``$oauthtoken``; :func:`ngc_api_key` is the
one place that finds it), or from ECR's token. They reach skopeo through a
temporary auth file readable only by us (in our private folder, removed on
every exit path: :mod:`nimrunbook.leftovers`), never through the command line,
where ``ps`` would show them, and the Docker engine through its API.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from nimrunbook.leftovers import secret_file
from nimrunbook.redact import register_secret
from nimrunbook.userfiles import check_certificates

NGC_REGISTRY = "nvcr.io"
NGC_USERNAME = "$oauthtoken"
NGC_KEY_VARIABLES = ("NGC_API_KEY", "NGC_CLI_API_KEY")  # NIM 2.x reads both; NGC's CLI the second


def ngc_api_key(explicit: str | None = None) -> str | None:
    """The NGC API key: ``explicit`` when given, else the first of NGC_API_KEY, NGC_CLI_API_KEY that is set.

    Every use of the key (registry logins, download-to-cache) finds it here,
    and it is registered for redaction before anyone can print it.
    """
    key = explicit or next((os.environ[name] for name in NGC_KEY_VARIABLES if os.environ.get(name)), None)
    register_secret(key)
    return key


@dataclass
class RegistryAccess:
    """TLS settings and credentials of the registries a run talks to."""

    ca_bundles: dict[str, str] = field(default_factory=dict)  # host -> PEM file
    insecure: set[str] = field(default_factory=set)  # hosts whose TLS is not verified (or plain http)
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    docker_config: str | None = None

    def __post_init__(self) -> None:
        for host, bundle in self.ca_bundles.items():
            check_certificates(bundle, f"CA bundle for {host}")
        for _, secret in self.credentials.values():
            register_secret(secret)

    @classmethod
    def from_environment(cls, **settings) -> RegistryAccess:
        """``RegistryAccess(**settings)`` that logs in to nvcr.io with the NGC key of the environment."""
        access = cls(**settings)
        access.add_ngc_key()
        return access

    def add_ngc_key(self, key: str | None = None) -> None:
        """Log in to nvcr.io with ``key``, else the environment's NGC key (see :func:`ngc_api_key`)."""
        key = ngc_api_key(key)
        if key:
            self.credentials.setdefault(NGC_REGISTRY, (NGC_USERNAME, key))

    def login(self, host: str, username: str, password: str) -> None:
        register_secret(password)
        self.credentials[host] = (username, password)

    def verifies(self, host: str) -> bool:
        return host not in self.insecure

    def _docker_config_auths(self) -> dict:
        path = Path(self.docker_config or os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
        try:
            return json.loads(path.read_text()).get("auths", {})
        except (OSError, ValueError):
            return {}

    def auth_document(self) -> dict:
        """A containers-auth.json document: the Docker config's entries, then ours on top."""
        auths = dict(self._docker_config_auths())
        for host, (user, secret) in self.credentials.items():
            auths[host] = {"auth": base64.b64encode(f"{user}:{secret}".encode()).decode()}
        return {"auths": auths}

    def docker_auth(self, host: str) -> dict | None:
        """Credentials for the Docker SDK's pull/push (None: let the engine use its own config)."""
        if host in self.credentials:
            user, secret = self.credentials[host]
            return {"username": user, "password": secret}
        return None

    def auth_file(self):
        """A temporary auth file (mode 0600) for skopeo, in our private folder; removed afterwards, on a signal
        too, or by the next run if this one is killed (see :func:`nimrunbook.leftovers.secret_file`)."""
        return secret_file("auth", json.dumps(self.auth_document()).encode(), ".json")

    @contextmanager
    def cert_dir(self, host: str):
        """A directory holding the host's CA as ``ca.crt`` (skopeo's --cert-dir), or None."""
        bundle = self.ca_bundles.get(host)
        if not bundle:
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="nimrunbook-certs-") as directory:
            Path(directory, "ca.crt").write_bytes(Path(bundle).read_bytes())
            yield directory
