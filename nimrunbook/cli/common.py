"""Helpers the command groups share: the S3, profile and manifest options, progress, tables.

What the options mean is decided in :mod:`nimrunbook.inputs`, which the notebooks use too.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

from nimrunbook import inputs, userfiles
from nimrunbook.errors import InputError
from nimrunbook.images import RegistryAccess
from nimrunbook.inputs import read_input
from nimrunbook.profiles import Manifest, parse_manifest
from nimrunbook.progress import SILENT, LogReporter, Reporter
from nimrunbook.store import S3Settings

# -- what an argument is: checked once for every command (check_paths), and read by the bad-input test --------


class PathArgument:
    """An argparse ``type`` for a path, saying what the command does with it (``role``); :func:`check_paths`
    checks every such path before the command starts, so a wrong one ends in one paragraph before any work."""

    role = "path"

    def __init__(self, what: str, *, stdin: bool = False) -> None:
        self.what = what
        self.stdin = stdin
        self.__name__ = self.role  # argparse names a type by it in its messages

    def __call__(self, text: str) -> str:
        return text

    def check(self, text: str) -> None:
        raise NotImplementedError


class InputFile(PathArgument):
    """A file the command reads (its content is checked when read, by :mod:`nimrunbook.userfiles`)."""

    role = "input file"

    def check(self, text: str) -> None:
        if not (self.stdin and text == userfiles.STDIN):
            userfiles.check_file(text, self.what)


class CertificateFile(InputFile):
    """A PEM bundle of CA certificates, checked to hold one before any connection is made."""

    def check(self, text: str) -> None:
        userfiles.check_certificates(text, self.what)


class EditedFile(PathArgument):
    """A file the command reads if it exists, and rewrites."""

    role = "edited file"

    def check(self, text: str) -> None:
        userfiles.check_output_file(text, self.what)


class OutputFile(PathArgument):
    """A file the command writes."""

    role = "output file"

    def check(self, text: str) -> None:
        userfiles.check_output_file(text, self.what)


class InputFolder(PathArgument):
    """A folder that must exist."""

    role = "input folder"

    def check(self, text: str) -> None:
        userfiles.check_folder(text, self.what)


class OutputFolder(PathArgument):
    """A folder the command writes into, made if absent."""

    role = "output folder"

    def check(self, text: str) -> None:
        userfiles.check_folder(text, self.what, may_be_absent=True)


def _number(parse: Callable[[str], float], noun: str, text: str) -> float:
    try:
        value = parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from exc
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    """A count: 1 or more (workers, parts, bytes)."""
    value = int(_number(int, "a whole number", text))
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def positive_float(text: str) -> float:
    """A duration in seconds: more than 0."""
    value = _number(float, "a number", text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not more than 0")
    return value


def leaf_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the command ``args`` were parsed for (``profiles plan``, not ``profiles``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices:
            return leaf_parser(action.choices[getattr(args, action.dest)], args)
    return parser


def check_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check every path argument of the command (see :class:`PathArgument`) before it starts."""
    for action in leaf_parser(parser, args)._actions:
        if isinstance(action.type, PathArgument):
            value = getattr(args, action.dest, None)
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str):
                    action.type.check(text)


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
