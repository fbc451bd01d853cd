"""``nimrunbook nim ...``: the NIM container's own tools, driven through Docker."""

from __future__ import annotations

import argparse
import sys

from nimrunbook.cli.arguments import OutputFolder, positive_float
from nimrunbook.cli.common import add_profile_id_options, print_table, profile_ids, progress_reporter
from nimrunbook.engine import docker_client
from nimrunbook.nim import download_profiles, list_profiles, pull_image, read_manifest


def cmd_pull(args: argparse.Namespace) -> int:
    print(pull_image(docker_client(), args.image, progress=progress_reporter(args)))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    frame, raw = list_profiles(docker_client(), args.image, gpus=args.gpus)
    if args.raw:
        sys.stdout.write(raw)
    else:
        print_table(frame[["id", "name", "section", "engine", "gpu", "precision", "tp", "pp", "lora"]])
    return 0


def cmd_manifest(args: argparse.Namespace) -> int:
    _, text = read_manifest(docker_client(), args.image)
    sys.stdout.write(text)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    client = docker_client()
    manifest, _ = read_manifest(client, args.image)
    summary = download_profiles(
        client,
        args.image,
        profile_ids(args),
        args.cache,
        manifest=manifest,
        network_mode=args.network,
        expected_bytes=int(args.size_gb * 1e9) if args.size_gb else None,
        progress=progress_reporter(args),
    )
    print(f"{summary.files} files, {summary.bytes} bytes in {summary.cache_dir} ({summary.seconds:.1f} s)")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    nim = commands.add_parser("nim", help="run the NIM container's own tools (NGC_API_KEY from the environment)")
    sub = nim.add_subparsers(dest="action", required=True)
    pull = sub.add_parser("pull", help="pull the image (nvcr.io: user $oauthtoken, NGC_API_KEY)")
    pull.add_argument("image")
    pull.set_defaults(handler=cmd_pull)
    listing = sub.add_parser("list-profiles", help="run list-model-profiles in a throwaway container")
    listing.add_argument("image")
    listing.add_argument("--gpus", action="store_true", help="pass the host's GPUs through")
    listing.add_argument("--raw", action="store_true", help="print the tool's own output")
    listing.set_defaults(handler=cmd_list, quiet=True)
    manifest = sub.add_parser("manifest", help="print model_manifest.yaml, read from the image without starting it")
    manifest.add_argument("image")
    manifest.set_defaults(handler=cmd_manifest, quiet=True)
    download = sub.add_parser("download", help="run download-to-cache for profile ids into a cache directory")
    download.add_argument("image")
    add_profile_id_options(download)
    download.add_argument(
        "--cache",
        required=True,
        type=OutputFolder("NIM cache"),
        help="the NIM cache directory (mounted at /opt/nim/.cache)",
    )
    download.add_argument("--network", default="host", help="the container's network (default: host)")
    download.add_argument(
        "--size-gb",
        type=positive_float,
        help="the profiles' total size in GB, for the free-space check (default: estimated from the model's "
        "parameter count)",
    )
    download.set_defaults(handler=cmd_download)
