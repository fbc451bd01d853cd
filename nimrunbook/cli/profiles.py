"""``nimrunbook profiles ...``: plan, process, preflight, publish, verify."""

from __future__ import annotations

import argparse
import json
import sys

from nimrunbook.cli.arguments import InputFile, InputFolder, OutputFolder, positive_int
from nimrunbook.cli.common import (
    add_manifest_options,
    add_profile_id_options,
    add_s3_options,
    load_manifest,
    print_table,
    profile_ids,
    progress_reporter,
    read_input,
    s3_settings,
)
from nimrunbook.errors import InputError
from nimrunbook.gpus import listing_host
from nimrunbook.hashing import HashJournal
from nimrunbook.inputs import gpu_inventory
from nimrunbook.profiles import enrich, model_parameters_b, parse_listing, parse_manifest
from nimrunbook.selection import (
    CHECK_COLUMNS,
    ListingCheck,
    check_listing,
    plan_warnings,
    select_profiles,
    selected_ids,
)
from nimrunbook.store import load_processed, plan_publish, process_to_directory, publish, run_preflight, verify
from nimrunbook.store.upload import require_verified

PLAN_TABLE_COLUMNS = ["id", "name", "section", "selected", "reason"]


def _print_check(check: ListingCheck, out) -> None:
    print(f"\nSelf-check against the listing's own verdict: {check.summary()}", file=out)
    if len(check.disagreements):
        table = check.disagreements[CHECK_COLUMNS].copy()
        table["id"] = table["id"].str.slice(0, 12)
        with_columns = ["risk", "id", "name", "nim_says", "rules_reason"]
        print(table[with_columns].to_string(index=False), file=out)


def cmd_plan(args: argparse.Namespace) -> int:
    listing_text = read_input(args.listing, "profile listing")
    listing = parse_listing(listing_text)
    manifest = parse_manifest(read_input(args.manifest, "model manifest")) if args.manifest else None
    profiles = enrich(listing, manifest)
    parameters = model_parameters_b(args.model or (manifest.model_name() if manifest else None))
    inventory = gpu_inventory(args.gpus or "", args.nvidia_smi or "", args.node_labels or "")
    for note in inventory.notes:
        print(f"note: {note}", file=sys.stderr)
    plan = select_profiles(profiles, inventory, lora=not args.no_lora, parameters_b=parameters)
    check = None
    if args.check_against_listing:
        host = listing_host(listing_text, args.listing_gpus or "")
        check = check_listing(profiles, host, parameters_b=parameters)
    if args.format == "ids":
        print("\n".join(selected_ids(plan)))
    elif args.format == "json":
        document = {"inventory": inventory.to_records(), "profiles": json.loads(plan.to_json(orient="records"))}
        if check is not None:
            document["check"] = {
                "host": check.host.to_records(),
                "summary": check.summary(),
                "disagreements": json.loads(check.disagreements.to_json(orient="records")),
            }
        print(json.dumps(document, indent=2))
    else:
        table = plan[PLAN_TABLE_COLUMNS].copy()
        table["id"] = table["id"].str.slice(0, 12)
        print_table(table)
        print(f"\n{int(plan['selected'].sum())} of {len(plan)} profiles selected for {inventory.describe()}.")
    for warning in plan_warnings(plan):
        print(f"warning: {warning}", file=sys.stderr)
    if check is not None and args.format != "json":
        _print_check(check, sys.stdout if args.format == "table" else sys.stderr)
    return 1 if check is not None and len(check.missing) else 0


def _objects_and_journal(args: argparse.Namespace):
    """The objects to publish: from a processed directory, or planned straight from the cache."""
    if args.from_dir:
        _, objects = load_processed(args.from_dir)
        return objects, HashJournal.of_directory(args.from_dir)
    if not args.cache:
        raise InputError(
            "Say where the profiles are: --from-dir DIR (processed) or --cache DIR with --manifest/--image."
        )
    plan = plan_publish(load_manifest(args), args.cache, profile_ids(args))
    return plan.objects, HashJournal.of_cache(args.cache)


def cmd_process(args: argparse.Namespace) -> int:
    manifest = load_manifest(args)
    plan = plan_publish(manifest, args.cache, profile_ids(args), image=args.image)
    result = process_to_directory(
        plan, args.dest_dir, image=args.image, workers=args.workers, progress=progress_reporter(args)
    )
    print(
        f"{result.objects} objects in {result.directory}/objects: {result.linked} hard-linked, {result.copied} copied, "
        f"{result.skipped} already complete. Check with: cd {result.directory} && sha256sum -c SHA256SUMS"
    )
    return 0


def cmd_preflight(args: argparse.Namespace) -> int:
    report = run_preflight(s3_settings(args), probe=not args.no_probe)
    print_table(report.frame())
    return 0 if report.ok else 1


def cmd_publish(args: argparse.Namespace) -> int:
    objects, journal = _objects_and_journal(args)
    result = publish(
        objects, s3_settings(args), workers=args.workers, journal=journal, progress=progress_reporter(args)
    )
    print_table(result.table, ["key", "size", "status", "detail"])
    print(f"\n{result.counts()} in {result.seconds:.1f} s")
    result.raise_for_failures()
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    objects, _ = _objects_and_journal(args)
    table = verify(objects, s3_settings(args), deep=args.deep, workers=args.workers, progress=progress_reporter(args))
    print_table(table)
    require_verified(table)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    profiles = commands.add_parser("profiles", help="plan, process, publish and verify model profiles")
    sub = profiles.add_subparsers(dest="action", required=True)

    plan = sub.add_parser(
        "plan",
        help="select profiles for a GPU inventory",
        description="Select the profiles a cluster needs from list-model-profiles output and its GPUs.",
    )
    plan.add_argument(
        "--listing",
        required=True,
        type=InputFile("profile listing", stdin=True),
        help="list-model-profiles output (file, or - for stdin)",
    )
    plan.add_argument(
        "--manifest", type=InputFile("model manifest"), help="model_manifest.yaml of the image (adds PCI-id matching)"
    )
    source = plan.add_mutually_exclusive_group(required=True)
    source.add_argument("--gpus", help='typed inventory, one item per node: "L40S, 2xA10G"')
    source.add_argument(
        "--nvidia-smi",
        type=InputFile("nvidia-smi output", stdin=True),
        help="nvidia-smi output of a cluster node: -L, -q, the table, or --query-gpu CSV (- for stdin)",
    )
    source.add_argument(
        "--node-labels",
        type=InputFile("node labels", stdin=True),
        help="kubectl get nodes -o json, or label=value lines",
    )
    plan.add_argument("--no-lora", action="store_true", help="leave out LoRA variants")
    plan.add_argument(
        "--model",
        help="the model or image (meta/llama-3.1-405b-instruct): its parameter count lets the rules "
        "skip profiles whose weights cannot fit in the GPUs (default: from --manifest)",
    )
    plan.add_argument(
        "--check-against-listing",
        action="store_true",
        help="compare the rules, run for the GPUs of the host the listing ran on, with the listing's own "
        "compatible/incompatible sections; exit 1 if the rules would leave out a profile NIM runs",
    )
    plan.add_argument(
        "--listing-gpus",
        help='the GPUs of the host that ran list-model-profiles, when its output names none ("2x A100 80GB PCIe")',
    )
    plan.add_argument("--format", choices=["table", "json", "ids"], default="table")
    plan.set_defaults(handler=cmd_plan, quiet=True)

    process = sub.add_parser(
        "process", help="write profiles from the NIM cache into a directory in the NIM object layout"
    )
    add_manifest_options(process)
    add_profile_id_options(process)
    process.add_argument(
        "--cache", required=True, type=InputFolder("NIM cache"), help="the NIM cache download-to-cache filled"
    )
    process.add_argument(
        "--dest-dir",
        required=True,
        type=OutputFolder("destination"),
        help="destination (hard links when on the cache's filesystem)",
    )
    process.add_argument("--workers", type=positive_int, default=2, help="files placed in parallel")
    process.set_defaults(handler=cmd_process)

    preflight = sub.add_parser("preflight", help="check the object store: DNS, TLS, credentials, bucket, write")
    add_s3_options(preflight)
    preflight.add_argument("--no-probe", action="store_true", help="do not write a probe object")
    preflight.set_defaults(handler=cmd_preflight)

    for name, handler, text in (
        ("publish", cmd_publish, "upload profiles to the bucket root, in parallel, verified, resumable"),
        ("verify", cmd_verify, "check the bucket against the profiles' manifest"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument(
            "--from-dir",
            type=InputFolder("processed profiles folder"),
            help="a directory written by `profiles process`",
        )
        command.add_argument(
            "--cache", type=InputFolder("NIM cache"), help="or: the NIM cache, with --manifest/--image and --profiles"
        )
        group = command.add_mutually_exclusive_group()
        group.add_argument("--manifest", type=InputFile("model manifest"), help="the image's model_manifest.yaml")
        group.add_argument("--image", help="read the manifest from this image")
        add_profile_id_options(command)
        add_s3_options(command)
        command.add_argument("--workers", type=positive_int, default=8, help="parallel transfers")
        if name == "verify":
            command.add_argument("--deep", action="store_true", help="read every object back and hash it")
        command.set_defaults(handler=handler)
