"""Amazon ECR as a destination: one repository per image path, and a login from ECR's token."""

from __future__ import annotations

import base64
import re

from nimrunbook.images.access import RegistryAccess

_ECR_RE = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


def is_ecr(host: str) -> bool:
    return bool(_ECR_RE.match(host))


def prepare_ecr(host: str, repositories: list[str], access: RegistryAccess, ecr_client=None) -> list[str]:
    """Create the repositories ECR lacks (it needs one per image path) and log in; returns those created."""
    if ecr_client is None:
        import boto3

        ecr_client = boto3.client("ecr", region_name=_ECR_RE.match(host).group("region"))
    existing: set[str] = set()
    for page in ecr_client.get_paginator("describe_repositories").paginate():
        existing.update(r["repositoryName"] for r in page["repositories"])
    created = []
    for name in sorted(set(repositories) - existing):
        ecr_client.create_repository(repositoryName=name)
        created.append(name)
    token = ecr_client.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    access.login(host, user, password)
    return created
