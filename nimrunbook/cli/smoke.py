"""``nimrunbook smoke-test``: the NIM itself, from the inside, reads the profiles as published."""

from __future__ import annotations

import argparse
import json

from nimrunbook import inputs
from nimrunbook.cli.common import (
    add_profile_id_options,
    add_registry_options,
    add_s3_options,
    print_table,
    progress_reporter,
    registry_access,
    s3_settings,
)
from nimrunbook.errors import InputError
from nimrunbook.images import RegistryAccess
from nimrunbook.images.access import NGC_REGISTRY


def _image(args: argparse.Namespace, recorded: list[str]) -> str:
    from nimrunbook.images import ImageRef

    if args.image:
        return str(ImageRef.parse(args.image).moved_to(args.registry)) if args.registry else args.image
    if args.registry and len(recorded) == 1:
        return str(ImageRef.parse(recorded[0]).moved_to(args.registry))
    raise InputError(
        "Which image? Give its ref in the internal registry"
        + (f" (the record names {len(recorded)} images)." if recorded else "."),
        hint="e.g. nimrunbook smoke-test registry.internal:5000/nim/meta/llama-3.2-1b-instruct:1.8.5 ..., or "
        "--registry registry.internal:5000 when the record names one image.",
    )


def _registry_access(args: argparse.Namespace) -> RegistryAccess:
    """The registry options, without the NGC login: the inside has no NGC key (the image is the internal one)."""
    access = registry_access(args)
    access.credentials.pop(NGC_REGISTRY, None)
    return access


def cmd_smoke_test(args: argparse.Namespace) -> int:
    from nimrunbook.engine import docker_client
    from nimrunbook.smoke import load_published, smoke_test

    published = load_published(args.expected)
    ids = list(args.profiles or [])
    if args.profiles_from:
        ids += inputs.read_input(args.profiles_from, "profile id list").split()
    ids = ids or published.profile_ids
    if not ids:
        raise InputError(
            f"No profile ids given, and {args.expected} records none.",
            hint="Pass --profiles ID [ID ...] (the ids published for this image).",
        )
    result = smoke_test(
        docker_client(args.docker_host),
        _image(args, published.images),
        ids,
        published,
        s3_settings(args),
        access=_registry_access(args),
        scratch_dir=args.scratch_dir,
        network=args.network,
        timeout=args.timeout,
        progress=progress_reporter(args),
    )
    if args.format == "json":
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print_table(result.frame(), ["profile", "name", "pulled", "fetched", "identical", "files", "bytes", "cause"])
        for profile in result.profiles:
            if profile.cause:
                print(
                    f"\n{profile.name or profile.profile_id}: {profile.cause}: {profile.detail}\n  fix: {profile.fix}"
                )
        print(f"\n{result.summary()}")
    result.raise_for_failure()
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "smoke-test",
        help="the NIM pulled from the internal registry reads the published profiles (no NGC key, only the bucket)",
        description="Pull the NIM image from the internal registry, run its own download-to-cache with "
        "NIM_REPOSITORY_OVERRIDE=s3://<bucket>/ and the read-only key (no NGC key; a network that reaches only the "
        "object store) into a scratch cache, and compare every file with the sha256 recorded at publish time. "
        "Exit 0 when every profile was pulled, fetched and identical, 1 when not.",
    )
    command.add_argument("image", nargs="?", help="the image's ref in the internal registry")
    command.add_argument(
        "--expected",
        required=True,
        metavar="PATH",
        help="what was published: the processed directory (nim-objects.json), the bundle, or the run directory",
    )
    command.add_argument(
        "--registry", help="the internal registry: the image (or the record's one image) is looked for there"
    )
    add_profile_id_options(command)
    add_s3_options(command)
    add_registry_options(command)
    command.add_argument(
        "--network",
        choices=["isolated", "host"],
        default="isolated",
        help="isolated: a Docker network that reaches only the object store (default); host: this host's network",
    )
    command.add_argument("--scratch-dir", help="where the scratch cache is made (default: the temp directory)")
    command.add_argument("--timeout", type=float, help="stop download-to-cache after this many seconds")
    command.add_argument("--docker-host", help="Docker engine URL (default: DOCKER_HOST or the default socket)")
    command.add_argument("--format", choices=["table", "json"], default="table")
    command.set_defaults(handler=cmd_smoke_test)
