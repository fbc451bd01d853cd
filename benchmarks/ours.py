"""nimrunbook as the benchmarks call it: the one module here that imports the package.

Every other module in benchmarks/ works with paths, commands and the small types below, so
a change of the package's API is mended here alone. What is called: the stand-in image
(``build_standin_image``, ``catalog``), ``download_profiles``, ``parse_manifest``,
``plan_publish``, ``process_to_directory``, ``load_processed``, ``publish``, ``bundle.create``,
``bundle.verify``, ``images.export`` / ``import_`` / ``mirror``, ``HashJournal``,
``hashing.BYTES_HASHED``, and the sandbox's ``S3Sandbox``, ``LocalRegistry`` and ``RcloneS3Sandbox``.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import yaml
from botocore.config import Config

from benchmarks.measure import sh
from nimrunbook import hashing, progress
from nimrunbook.bundle import create as create_bundle
from nimrunbook.bundle import verify as verify_bundle
from nimrunbook.engine import docker_client
from nimrunbook.hashing import HashJournal
from nimrunbook.images import RegistryAccess, export, import_, mirror
from nimrunbook.nim import download_profiles
from nimrunbook.profiles import parse_manifest
from nimrunbook.sandbox.rclone import RcloneS3Sandbox
from nimrunbook.sandbox.registry import LocalRegistry
from nimrunbook.sandbox.s3 import S3Sandbox
from nimrunbook.standin import build_standin_image, catalog
from nimrunbook.store import S3Settings, load_processed, plan_publish, process_to_directory, publish

# boto3 >= 1.36 sends aws-chunked uploads with checksums, which rclone serve s3 (like older MinIO and Ceph)
# refuses: the baselines' own boto3 clients ask for checksums only when required, as nimrunbook does.
os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")

# Progress: silent (the library's default reporter), said explicitly where it is passed.
QUIET: dict = {"progress": progress.SILENT}

BUCKET = "nim-bench"  # has an /etc/hosts line (nimrunbook.sandbox.s3.BUCKETS): buckets are virtual hosts


def bytes_hashed() -> int:
    """Bytes nimrunbook hashed so far in this process (the package counts every hashed read)."""
    return hashing.BYTES_HASHED


# -- profiles --------------------------------------------------------------------------------------


@dataclass
class Profiles:
    """A NIM cache with every profile of the stand-in image downloaded, and its manifest."""

    cache: Path
    manifest_yaml: str
    ids: list[str]
    total_bytes: int  # distinct bytes the profiles need (what is processed, bundled, uploaded)
    files: int

    def describe(self) -> str:
        return f"{len(self.ids)} profiles, {self.files} objects, {self.total_bytes / 1e9:.2f} GB"

    def plan(self):
        """A fresh plan each time: a plan remembers digests once something hashed its objects."""
        return plan_publish(parse_manifest(self.manifest_yaml), self.cache, self.ids)


def weight_files() -> int:
    """How many incompressible weight files the stand-in writes for all its profiles (engines + checkpoint)."""
    return sum(1 for p in catalog.PROFILES_1_8_5 if p.engine_tag) + 1


def download_standin_profiles(cache: Path, size: int) -> Profiles:
    """Every profile of the stand-in image, ``size`` bytes in all, downloaded by its own download-to-cache."""
    client = docker_client()
    image = build_standin_image(client, "1.8.5")
    ids = [p.id for p in catalog.PROFILES_1_8_5]
    download_profiles(
        client,
        image,
        ids,
        cache,
        ngc_api_key="benchmark",
        network_mode="none",
        environment={"NIM_STANDIN_WEIGHT_BYTES": str(max(1, size // weight_files()))},
        expected_bytes=size + 2**20,
        **QUIET,
    )
    profiles = Profiles(cache, catalog.manifest_yaml("1.8.5"), ids, 0, 0)
    plan = profiles.plan()
    profiles.total_bytes, profiles.files = plan.total_bytes, len(plan.objects)
    return profiles


def many_file_profiles(cache: Path, count: int, file_bytes: int) -> Profiles:
    """A cache and manifest with one profile of ``count`` files (a sharded checkpoint), in the stand-in's layout.

    The manifest is the stand-in's (schema v2, real ids and URIs) with the HF profile's file list grown;
    the cache is the Hugging-Face-hub layout download-to-cache writes (snapshot links to blobs).
    """
    document = yaml.safe_load(catalog.manifest_yaml("1.8.5"))
    profile = document["profiles"][0]
    document["profiles"] = [profile]
    tag, model = catalog.HF_TAG, cache / "ngc" / "hub" / f"models--{catalog.REPO.replace('/', '--')}"
    (model / "blobs").mkdir(parents=True, exist_ok=True)
    files = {}
    for index in range(count):
        name = f"model-{index + 1:05d}-of-{count:05d}.safetensors"
        data = os.urandom(file_bytes)
        blob = hashlib.md5(data).hexdigest()  # the cache names blobs by md5, as the stand-in does
        (model / "blobs" / blob).write_bytes(data)
        link = model / "snapshots" / tag / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(f"../../blobs/{blob}")
        files[name] = {"uri": f"ngc://{catalog.REPO}:{tag}?file={name}"}
    profile["workspace"]["files"] = files
    return Profiles(cache, yaml.safe_dump(document, sort_keys=False), [profile["id"]], count * file_bytes, count)


def process(plan, destination: Path, journal: Path) -> None:
    """Process ``plan`` into the flat NIM layout, with the digests journalled in ``journal``."""
    process_to_directory(plan, destination, journal=HashJournal(journal), **QUIET)


def process_cold(profiles: Profiles, destination: Path, journal: Path) -> None:
    """Parse, plan and process into the flat NIM layout with an empty hash journal: every byte is hashed."""
    process(profiles.plan(), destination, journal)


def bundle_create(profiles: Profiles, media: Path, sign_key: Path) -> None:
    create_bundle(media, plan=profiles.plan(), sign_key=sign_key, **QUIET)


def bundle_verify(media: Path, public_key: Path, records: Path) -> None:
    report = verify_bundle(media, public_key=public_key, record_dir=records, **QUIET)
    if not report.ok:
        raise RuntimeError(f"the bundle did not verify:\n{report.table()}")


def signing_key(directory: Path) -> tuple[Path, Path]:
    """An ssh key pair for signing bundles, as a person makes one (ssh-keygen)."""
    key = directory / "bundle-key"
    if not key.exists():
        directory.mkdir(parents=True, exist_ok=True)
        sh(f"ssh-keygen -q -t ed25519 -N '' -C nimrunbook-benchmark -f {key}")
    return key, key.with_name(key.name + ".pub")


# -- S3 --------------------------------------------------------------------------------------------


@dataclass
class S3Server:
    """An S3 server behind TLS with one bucket and one key; what both publish and the S3 CLIs are pointed at."""

    name: str
    endpoint_url: str
    ca_bundle: Path
    key: tuple[str, str]
    stop: Callable[[], None]
    bucket: str = BUCKET
    notes: list[str] = field(default_factory=list)

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.key[0],
            aws_secret_access_key=self.key[1],
            verify=str(self.ca_bundle),
            config=Config(s3={"addressing_style": "virtual"}),
        )

    def empty_bucket(self) -> None:
        client = self.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=self.bucket, Key=item["Key"])

    def count_objects(self) -> int:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sum(page.get("KeyCount", 0) for page in pages)


def start_moto(root: Path) -> S3Server:
    """moto behind nginx's TLS: the sandbox the tests use; one Python process serves every request."""
    sandbox = S3Sandbox(root=root).start()
    try:
        sandbox.create_bucket(BUCKET)
        key = sandbox.create_user("bench", ["s3:*"])
        sandbox.enforce_auth()
    except BaseException:
        sandbox.stop()
        raise
    return S3Server("moto behind nginx (TLS)", sandbox.endpoint_url, sandbox.certs.ca_bundle, key, sandbox.stop)


def start_rclone(root: Path) -> S3Server:
    """`rclone serve s3` (Go, TLS itself, virtual-hosted buckets): closer to MinIO than moto is."""
    sandbox = RcloneS3Sandbox(root=root).start()
    try:
        key = sandbox.create_user("bench", ["s3:*"])
        sandbox.create_bucket(BUCKET)
    except BaseException:
        sandbox.stop()
        raise
    return S3Server("`rclone serve s3` (TLS)", sandbox.endpoint_url, sandbox.certs.ca_bundle, key, sandbox.stop)


def publish_objects(objects, server: S3Server, journal: Path | None) -> None:
    settings = S3Settings(
        server.bucket,
        server.endpoint_url,
        access_key_id=server.key[0],
        secret_access_key=server.key[1],
        ca_bundle=str(server.ca_bundle),
    )
    publish(objects, settings, journal=HashJournal(journal) if journal else None, **QUIET).raise_for_failures()


def digests_known(processed: Path) -> list:
    """The objects of a processed directory with the digests its manifest records (the inside's case)."""
    return load_processed(processed)[1]


# -- images ----------------------------------------------------------------------------------------

IMAGE_PATH = "nim/meta/llama-3.2-1b-instruct:bench"


def big_image(size: int, work: Path) -> tuple[str, int]:
    """The stand-in image plus one layer of ``size`` incompressible bytes, built with no pulls; (tag, bytes)."""
    client = docker_client()
    base = build_standin_image(client, "1.8.5")
    blob = work / "blob.bin"
    sh(f"head -c {size} /dev/urandom > {blob}")
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = f"FROM {base}\nCOPY blob.bin /opt/nim/weights.bin\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(str(blob), "blob.bin")
    blob.unlink()
    context.seek(0)
    tag = "nimrunbook/bench-image:1"
    client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    return tag, client.images.get(tag).attrs["Size"]


class Registries:
    """docker-registry servers on loopback: one source, and a fresh destination whenever asked."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.source = LocalRegistry(root=root / "source").start()
        self._destinations: list[LocalRegistry] = []

    def fresh_destination(self) -> str:
        """Stop the last destination and start an empty one, so that no copy finds blobs already there."""
        self._stop_destinations()
        registry = LocalRegistry(root=self.root / f"destination-{os.urandom(4).hex()}").start()
        self._destinations.append(registry)
        return registry.host

    def _stop_destinations(self) -> None:
        for registry in self._destinations:
            registry.stop()
            shutil.rmtree(registry.root, ignore_errors=True)
        self._destinations.clear()

    def push_source(self, tag: str) -> str:
        """Put the image into the source registry; returns its reference there."""
        client = docker_client()
        ref = f"{self.source.host}/{IMAGE_PATH}"
        client.images.get(tag).tag(ref)
        for event in client.api.push(ref, stream=True, decode=True):
            if "error" in event:
                raise RuntimeError(f"docker push {ref}: {event['error']}")
        return ref

    def access(self):
        return RegistryAccess(insecure={r.host for r in [self.source, *self._destinations]})

    def stop(self) -> None:
        self._stop_destinations()
        self.source.stop()


def image_export(ref: str, directory: Path, registries: Registries) -> None:
    export([ref], directory, access=registries.access(), backend="skopeo", **QUIET)


def image_import(directory: Path, destination: str, registries: Registries) -> None:
    import_(directory, destination, access=registries.access(), **QUIET)


def image_mirror(ref: str, destination: str, registries: Registries) -> None:
    mirror([ref], destination, access=registries.access(), backend="skopeo", **QUIET)
