"""``nimrunbook bundle ...``: create, verify, import, inventory."""

from __future__ import annotations

import argparse
import json
import sys

from nimrunbook.bundle import create, import_, inventory, verify
from nimrunbook.bundle.inventory import parse_inventory
from nimrunbook.bundle.parts import FAT32_PART_SIZE
from nimrunbook.bundle.wheelhouse import wheelhouse_request
from nimrunbook.cli.arguments import InputFile, InputFolder, OutputFile, OutputFolder, positive_int
from nimrunbook.cli.common import (
    add_profile_id_options,
    add_registry_options,
    add_s3_options,
    profile_ids,
    progress_reporter,
    read_input,
    registry_access,
    s3_settings,
)
from nimrunbook.hashing import HashJournal
from nimrunbook.localdisk import write_text_atomic
from nimrunbook.profiles import parse_manifest
from nimrunbook.store import plan_publish


def cmd_create(args: argparse.Namespace) -> int:
    have = parse_inventory(read_input(args.have, "inventory"), args.have) if args.have else None
    wheelhouse = wheelhouse_request(args.wheelhouse, args.python_version, args.platform, have, args.debs)
    plan = None
    if args.cache:
        if args.manifest:
            manifest = parse_manifest(read_input(args.manifest, "model manifest"))
        else:
            from nimrunbook.engine import docker_client
            from nimrunbook.nim import read_manifest

            manifest = read_manifest(docker_client(), args.manifest_from_image or args.images[0])[0]
        plan = plan_publish(manifest, args.cache, profile_ids(args))
    inside = {
        "bucket": args.bucket,
        "endpoint_url": args.endpoint_url,
        "region": args.region,
        "registry": args.registry,
    }
    result = create(
        args.dest,
        images=args.images or [],
        plan=plan,
        have=have,
        sign_key=args.sign_key,
        part_size=FAT32_PART_SIZE if args.fat32 else args.part_size,
        access=registry_access(args),
        image_backend=args.backend,
        inside={k: v for k, v in inside.items() if v},
        journal=HashJournal.of_cache(args.cache) if args.cache else None,
        force=args.force,
        progress=progress_reporter(args),
        wheelhouse=wheelhouse,
    )
    print(
        f"bundle in {result.path}: {result.files} files, {result.bytes} bytes; signed: {result.signed}; "
        f"left out: {len(result.left_out['images'])} images, {len(result.left_out['objects'])} objects"
        + (f", the wheelhouse ({result.left_out['wheelhouse']})" if result.left_out.get("wheelhouse") else "")
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    report = verify(
        args.path,
        public_key=args.public_key,
        allow_unsigned=args.allow_unsigned,
        record_dir=args.record_dir,
        progress=progress_reporter(args),
    )
    sys.stdout.write(report.table())
    print(f"\nrecord: {report.record_json or 'not written (see the notes above); give --record-dir'}")
    if report.unsigned:
        print(f"\n{report.headline()}: {report.signature}.", file=sys.stderr)
    return 0 if report.ok else 1


def cmd_import(args: argparse.Namespace) -> int:
    settings = s3_settings(args) if (args.bucket or args.endpoint_url) else None
    result = import_(
        args.path,
        registry=args.registry,
        settings=settings,
        access=registry_access(args),
        public_key=args.public_key,
        allow_unsigned=args.allow_unsigned,
        staging_dir=args.staging_dir,
        workers=args.workers,
        record_dir=args.record_dir,
        progress=progress_reporter(args),
    )
    report = result.verification
    print(
        f"{report.headline()}; signature: {report.signature}; images: {[i.status for i in result.images]}; "
        f"profiles: {result.upload.counts() if result.upload else 'none'}"
    )
    print(f"record: {report.record_json or 'not written (' + '; '.join(report.notes[-1:]) + '); give --record-dir'}")
    return 0


def cmd_inventory(args: argparse.Namespace) -> int:
    settings = s3_settings(args) if (args.bucket or args.endpoint_url) else None
    document = inventory(settings, registry=args.registry, images=args.images or [], access=registry_access(args))
    text = json.dumps(document, indent=2) + "\n"
    if args.output:
        write_text_atomic(args.output, text)
        print(f"inventory of {len(document['objects'])} objects and {len(document['images'])} images in {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def add_key_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--public-key",
        type=InputFile("public key"),
        help="the signer's OpenSSH public key, handed over apart from the media",
    )
    command.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="accept a bundle without checking its signature (no public key): refused otherwise; "
        "the record then says UNSIGNED",
    )


def add_commands(commands: argparse._SubParsersAction) -> None:
    bundle = commands.add_parser("bundle", help="the offline bundle for removable media")
    sub = bundle.add_subparsers(dest="action", required=True)

    make = sub.add_parser("create", help="write images and profiles to removable media, with checksums and a signature")
    make.add_argument("dest", type=OutputFolder("bundle folder"), help="folder on the media")
    make.add_argument("--images", nargs="+", metavar="REF", help="images to carry (e.g. nvcr.io/nim/meta/...:1.8.5)")
    make.add_argument("--cache", type=InputFolder("NIM cache"), help="the NIM cache holding the profiles")
    add_profile_id_options(make)
    make.add_argument(
        "--manifest", type=InputFile("model manifest"), help="model_manifest.yaml (default: read from the first image)"
    )
    make.add_argument("--manifest-from-image", metavar="REF", help="read the manifest from this image")
    make.add_argument(
        "--have", type=InputFile("inventory"), help="inventory JSON from the inside: carry only what is missing"
    )
    make.add_argument(
        "--sign-key", type=InputFile("signing key"), help="OpenSSH private key to sign bundle.json and SHA256SUMS"
    )
    size = make.add_mutually_exclusive_group()
    size.add_argument("--part-size", type=positive_int, help="split files larger than this many bytes into parts")
    size.add_argument("--fat32", action="store_true", help="split into parts of 4 GiB - 1 (FAT32 media)")
    make.add_argument("--backend", choices=["auto", "skopeo", "docker"], default="auto")
    make.add_argument(
        "--wheelhouse",
        choices=["auto", "yes", "no"],
        default="auto",
        help="carry nimrunbook and its dependencies as wheels, with install.sh, for the inside: auto (unless the "
        "--have inventory shows the inside runs this version), yes, or no",
    )
    make.add_argument(
        "--python-version",
        metavar="X.Y",
        help="the inside host's Python, for the wheelhouse (default: the --have inventory's, else this host's)",
    )
    make.add_argument(
        "--platform",
        metavar="TAG",
        help="the inside host's wheel platform tag, e.g. manylinux_2_28_x86_64 (default: the --have inventory's, "
        "else this host's)",
    )
    make.add_argument(
        "--debs",
        metavar="RELEASE",
        help="also carry skopeo and openssh-client, with their dependencies, as Debian packages of this Debian or "
        "Ubuntu release (the inside's VERSION_CODENAME, e.g. bookworm), in the wheelhouse",
    )
    make.add_argument(
        "--force", action="store_true", help="replace another bundle in the folder (its verification records stay)"
    )
    for name, text in (
        ("--bucket", "inside bucket"),
        ("--endpoint-url", "inside S3 endpoint"),
        ("--region", "inside region"),
        ("--registry", "inside registry"),
    ):
        make.add_argument(name, help=f"{text}, recorded for the inside")
    add_registry_options(make)
    make.set_defaults(handler=cmd_create)

    check = sub.add_parser("verify", help="check signature and every file; write a verification record")
    check.add_argument("path", type=InputFolder("bundle folder"), help="the bundle folder on the media")
    add_key_options(check)
    check.add_argument(
        "--record-dir",
        type=OutputFolder("record folder"),
        help="where the record goes (default: <bundle>/verification)",
    )
    check.set_defaults(handler=cmd_verify)

    load = sub.add_parser("import", help="verify, then push images and upload profiles inside")
    load.add_argument("path", type=InputFolder("bundle folder"), help="the bundle folder on the media")
    load.add_argument("--registry", help="the internal registry")
    add_key_options(load)
    load.add_argument(
        "--record-dir",
        type=OutputFolder("record folder"),
        help="where the verification record goes (default: <bundle>/verification)",
    )
    load.add_argument(
        "--staging-dir",
        type=OutputFolder("staging folder"),
        help="where split files are joined, outside the bundle (default: the system's temporary folder)",
    )
    load.add_argument("--workers", type=positive_int, default=8, help="parallel uploads")
    add_s3_options(load)
    add_registry_options(load)
    load.set_defaults(handler=cmd_import)

    have = sub.add_parser("inventory", help="what the inside already has, for an incremental bundle")
    have.add_argument("--registry", help="the internal registry")
    have.add_argument("--images", nargs="*", metavar="REF", help="original refs to look up in the registry")
    have.add_argument("--output", "-o", type=OutputFile("inventory"), help="write the JSON here")
    add_s3_options(have)
    add_registry_options(have)
    have.set_defaults(handler=cmd_inventory)
