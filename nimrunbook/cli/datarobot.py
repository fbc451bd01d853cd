"""``nimrunbook datarobot ...``: values, merge, refresh, check-credentials, plan-update."""

from __future__ import annotations

import argparse
import re
import sys

from nimrunbook.cli.arguments import EditedFile, InputFile, InputFolder, positive_float
from nimrunbook.cli.common import add_s3_options, print_table, read_input, s3_settings
from nimrunbook.datarobot import (
    DataRobotSettings,
    check_read_credentials,
    merge_values,
    plan_update,
    refresh_commands,
    run_refresh,
    secure_configuration_steps,
    validate,
    values_yaml,
)
from nimrunbook.datarobot.values import raise_for_problems
from nimrunbook.errors import InputError
from nimrunbook.profiles import parse_manifest
from nimrunbook.store import load_processed
from nimrunbook.userfiles import read_json, read_yaml

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def namespace(text: str) -> str:
    """A Kubernetes namespace name (an RFC 1123 label), checked before it is put into commands."""
    if not _DNS_LABEL.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Kubernetes namespace name (lowercase letters, digits and '-', at most 63)"
        )
    return text


def _settings(args: argparse.Namespace) -> DataRobotSettings:
    return DataRobotSettings(args.registry, args.bucket, args.region, args.endpoint_url, list(args.allow or []))


def cmd_values(args: argparse.Namespace) -> int:
    settings = _settings(args)
    raise_for_problems(validate(settings))
    sys.stdout.write(values_yaml(settings))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    settings = _settings(args)
    raise_for_problems(validate(settings))
    diff, backup = merge_values(args.values_file, settings, write=args.write)
    sys.stdout.write(diff or "no change\n")
    if args.write and diff:
        print(f"\nwritten; the previous file is kept as {backup}" if backup else "\nwritten")
    elif diff:
        print("\n(dry run: add --write to apply; a backup is written first)")
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    if not args.kubeconfig and not args.run:
        sys.stdout.write(refresh_commands(args.namespace))
        return 0
    if args.kubeconfig:
        read_yaml(args.kubeconfig, "kubeconfig", hint="Give a kubeconfig file (kubectl config view --raw > FILE).")
    result = run_refresh(args.namespace, kubeconfig=args.kubeconfig, context=args.context, timeout=args.timeout)
    print(f"job/{result.job}: {'succeeded' if result.succeeded else 'FAILED'} ({result.reason})")
    return 0 if result.succeeded else 1


def cmd_check_credentials(args: argparse.Namespace) -> int:
    _, objects = load_processed(args.from_dir)
    settings = s3_settings(args)
    print(secure_configuration_steps(settings.bucket, settings.endpoint_url, settings.region) + "\n")
    check = check_read_credentials(settings, objects)
    for warning in check.warnings:
        print(f"warning: {warning}")
    check.raise_for_failure()
    print(f"these credentials can list s3://{settings.bucket}/ and read all {len(objects)} objects")
    return 0


def _inventory_keys(path: str) -> set[str]:
    """The object keys of an inventory written by ``nimrunbook bundle inventory``."""
    hint = "Give the JSON `nimrunbook bundle inventory` wrote inside the air gap."
    objects = read_json(path, "inventory", hint=hint).get("objects", {})
    if not isinstance(objects, dict | list) or not all(isinstance(key, str) for key in objects):
        raise InputError(f"The inventory {path!r} has no list of objects by key.", hint=hint)
    return set(objects)


def cmd_plan_update(args: argparse.Namespace) -> int:
    old = parse_manifest(read_input(args.old_manifest, "old manifest"))
    new = parse_manifest(read_input(args.new_manifest, "new manifest"))
    have = _inventory_keys(args.have) if args.have else set()
    plan = plan_update(args.image, old, new, args.profiles, have)
    print_table(plan.changes)
    print(f"\nto transfer: {len(plan.keys_to_transfer)} objects; already in the bucket: {len(plan.keys_already_there)}")
    for key in plan.keys_to_transfer:
        print(f"  {key}")
    for note in plan.notes:
        print(f"note: {note}")
    return 0


def _values_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--registry", required=True, help="internal registry (= CUSTOM_MODEL_NIM_IMAGE_REGISTRY)")
    command.add_argument("--bucket", required=True, help="the dedicated profiles bucket")
    command.add_argument("--region", default="us-east-1")
    command.add_argument("--endpoint-url", help="https endpoint (MinIO); omit for AWS S3")
    command.add_argument("--allow", nargs="+", metavar="REF", help="original nvcr.io refs of the mirrored images")


def add_commands(commands: argparse._SubParsersAction) -> None:
    datarobot = commands.add_parser("datarobot", help="configure DataRobot for the mirrored NIMs")
    sub = datarobot.add_subparsers(dest="action", required=True)
    values = sub.add_parser("values", help="print the Helm values")
    _values_options(values)
    values.set_defaults(handler=cmd_values, quiet=True)
    merge = sub.add_parser("merge", help="merge the values into an existing values file (diff first)")
    merge.add_argument("values_file", type=EditedFile("Helm values file"), help="the values file to merge into")
    _values_options(merge)
    merge.add_argument("--write", action="store_true", help="write the merged file (after a backup)")
    merge.set_defaults(handler=cmd_merge, quiet=True)
    refresh = sub.add_parser("refresh", help="run the custom-templates refresh now (or print the kubectl commands)")
    refresh.add_argument("--namespace", required=True, type=namespace, help="where DataRobot runs")
    refresh.add_argument("--kubeconfig", type=InputFile("kubeconfig"))
    refresh.add_argument("--context")
    refresh.add_argument("--run", action="store_true", help="use the default kubeconfig")
    refresh.add_argument("--timeout", type=positive_float, default=900, help="seconds to wait for the job")
    refresh.set_defaults(handler=cmd_refresh)
    creds = sub.add_parser("check-credentials", help="prove DataRobot's read key can read every object")
    creds.add_argument(
        "--from-dir",
        required=True,
        type=InputFolder("processed profiles folder"),
        help="a processed profiles directory (its nim-objects.json)",
    )
    add_s3_options(creds)
    creds.set_defaults(handler=cmd_check_credentials)
    update = sub.add_parser("plan-update", help="what a tag update must transfer")
    update.add_argument("--image", required=True, help="the new image ref")
    update.add_argument("--old-manifest", required=True, type=InputFile("old manifest"))
    update.add_argument("--new-manifest", required=True, type=InputFile("new manifest"))
    update.add_argument("--profiles", nargs="+", required=True, metavar="ID")
    update.add_argument("--have", type=InputFile("inventory"), help="inventory JSON of the bucket (bundle inventory)")
    update.set_defaults(handler=cmd_plan_update, quiet=True)
