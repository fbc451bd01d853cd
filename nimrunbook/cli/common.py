"""Helpers the command groups share: the S3, profile and manifest options, progress, tables.

What the options mean is decided in :mod:`nimrunbook.inputs`, which the notebooks use too.
"""

from __future__ import annotations

import argparse
import os

from nimrunbook import inputs
from nimrunbook.cli.arguments import CertificateFile, InputFile
from nimrunbook.errors import InputError
from nimrunbook.images import RegistryAccess
from nimrunbook.inputs import read_input
from nimrunbook.profiles import Manifest, parse_manifest
from nimrunbook.progress import SILENT, LogReporter, Reporter
from nimrunbook.store import S3Settings


def progress_reporter(args: argparse.Namespace) -> Reporter:
    """Progress as log lines on the terminal; none for the commands whose output is the answer (quiet)."""
    return SILENT if getattr(args, "quiet", False) else LogReporter()


def add_s3_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "object store",
        "credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --aws-profile, never from the command line",
    )
    group.add_argument("--bucket", help="the dedicated bucket (default: $NIM_BUCKET_NAME)")
    group.add_argument(
        "--endpoint-url",
        help="S3 endpoint, e.g. https://minio.example.com (omit for AWS S3; default: $AWS_ENDPOINT_URL)",
    )
    group.add_argument("--region", help="region (default: $AWS_DEFAULT_REGION or us-east-1)")
    group.add_argument("--aws-profile", help="AWS credentials profile")
    group.add_argument(
        "--ca-bundle",
        type=CertificateFile("CA bundle"),
        help="PEM bundle of the CA that signed the endpoint's certificate",
    )
    group.add_argument("--insecure", action="store_true", help="skip TLS verification (loudly recorded; avoid)")
    group.add_argument(
        "--path-style", action="store_true", help="path-style addressing (DataRobot needs virtual-hosted)"
    )


def s3_settings(args: argparse.Namespace) -> S3Settings:
    """The object store options, the environment's variables for those not given (see :func:`inputs.s3_settings`)."""
    return inputs.s3_settings(
        args.bucket or "",
        args.endpoint_url or "",
        args.region or "",
        args.ca_bundle or "",
        args.insecure,
        args.path_style,
        args.aws_profile or "",
        defaults=os.environ,
    )


def add_registry_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--registry-ca", action="append", metavar="HOST=PEM", help="CA bundle for a registry (repeatable)"
    )
    command.add_argument(
        "--registry-insecure",
        action="append",
        metavar="HOST",
        help="do not verify TLS of registry HOST, or use plain http (repeatable)",
    )


def registry_access(args: argparse.Namespace) -> RegistryAccess:
    """The registry options; nvcr.io is logged in to with the environment's NGC key."""
    return inputs.registry_access(inputs.host_files(args.registry_ca or []), args.registry_insecure)


def add_manifest_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", type=InputFile("model manifest"), help="the image's model_manifest.yaml")
    source.add_argument("--image", help="read the manifest from this image (needs the Docker engine)")


def load_manifest(args: argparse.Namespace) -> Manifest:
    if args.manifest:
        return parse_manifest(read_input(args.manifest, "model manifest"))
    from nimrunbook.engine import docker_client
    from nimrunbook.nim import read_manifest

    return read_manifest(docker_client(), args.image)[0]


def profile_ids(args: argparse.Namespace) -> list[str]:
    ids = list(args.profiles or [])
    if args.profiles_from:
        ids += read_input(args.profiles_from, "profile id list").split()
    if not ids:
        raise InputError(
            "No profile ids given.",
            hint="Pass --profiles ID [ID ...] or --profiles-from FILE (from `profiles plan --format ids`).",
        )
    return ids


def add_profile_id_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profiles", nargs="+", metavar="ID", help="profile ids")
    parser.add_argument(
        "--profiles-from",
        metavar="FILE",
        type=InputFile("profile id list", stdin=True),
        help="file of profile ids (profiles plan --format ids), or -",
    )


def print_table(frame, columns: list[str] | None = None) -> None:
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.max_colwidth", 90, "display.width", 250):
        print((frame[columns] if columns else frame).to_string(index=False))
