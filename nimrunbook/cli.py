"""The ``nimrunbook`` command line: the same steps as the notebooks, for shells and scripts.

A user error prints one paragraph and exits 2 (bad input) or 1 (a failed
step), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from nimrunbook import __version__
from nimrunbook.errors import InputError, NimRunbookError
from nimrunbook.gpus import Inventory, inventory_from_node_labels, inventory_from_nvidia_smi, inventory_from_text
from nimrunbook.profiles import enrich, parse_listing, parse_manifest
from nimrunbook.redact import redact
from nimrunbook.selection import select_profiles, selected_ids

Handler = Callable[[argparse.Namespace], int]


def read_input(path: str, what: str) -> str:
    """Text of a file, or of standard input for ``-``, with a clear error when absent or empty."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"Cannot read the {what} file {path!r}: {exc.strerror}.") from None
    if not text.strip():
        raise InputError(f"The {what} {'on standard input' if path == '-' else repr(path)} is empty.")
    return text


def _inventory(args: argparse.Namespace) -> Inventory:
    if args.gpus:
        return inventory_from_text(args.gpus)
    if args.nvidia_smi:
        return inventory_from_nvidia_smi(read_input(args.nvidia_smi, "nvidia-smi output"))
    return inventory_from_node_labels(read_input(args.node_labels, "node labels"))


PLAN_TABLE_COLUMNS = ["id", "name", "section", "selected", "reason"]


def _cmd_profiles_plan(args: argparse.Namespace) -> int:
    listing = parse_listing(read_input(args.listing, "profile listing"))
    manifest = parse_manifest(read_input(args.manifest, "model manifest")) if args.manifest else None
    inventory = _inventory(args)
    for note in inventory.notes:
        print(f"note: {note}", file=sys.stderr)
    plan = select_profiles(enrich(listing, manifest), inventory, lora=not args.no_lora)
    if args.format == "ids":
        print("\n".join(selected_ids(plan)))
    elif args.format == "json":
        records = json.loads(plan.to_json(orient="records"))
        print(json.dumps({"inventory": inventory.to_records(), "profiles": records}, indent=2))
    else:
        table = plan[PLAN_TABLE_COLUMNS].copy()
        table["id"] = table["id"].str.slice(0, 12)
        with pd.option_context("display.max_rows", None, "display.max_colwidth", 70, "display.width", 250):
            print(table.to_string(index=False))
        print(f"\n{int(plan['selected'].sum())} of {len(plan)} profiles selected for {inventory.describe()}.")
    return 0


def _add_profiles(commands: argparse._SubParsersAction) -> None:
    profiles = commands.add_parser("profiles", help="plan which model profiles the cluster needs")
    sub = profiles.add_subparsers(dest="action", required=True)
    plan = sub.add_parser(
        "plan",
        help="select profiles for a GPU inventory",
        description="Select the profiles a cluster needs from list-model-profiles output and its GPUs.",
    )
    plan.add_argument("--listing", required=True, help="list-model-profiles output (file, or - for stdin)")
    plan.add_argument("--manifest", help="model_manifest.yaml of the image (adds PCI-id matching)")
    source = plan.add_mutually_exclusive_group(required=True)
    source.add_argument("--gpus", help='typed inventory, one item per node: "L40S, 2xA10G"')
    source.add_argument("--nvidia-smi", help="nvidia-smi -L or --query-gpu CSV output of a cluster node")
    source.add_argument("--node-labels", help="kubectl get nodes -o json, or label=value lines")
    plan.add_argument("--no-lora", action="store_true", help="leave out LoRA variants")
    plan.add_argument("--format", choices=["table", "json", "ids"], default="table")
    plan.set_defaults(handler=_cmd_profiles_plan)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nimrunbook",
        description="Get NVIDIA NIM LLM services running in an air-gapped cluster with DataRobot.",
    )
    parser.add_argument("--version", action="version", version=f"nimrunbook {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_profiles(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.handler(args)
    except NimRunbookError as error:
        print(f"nimrunbook: error: {redact(str(error))}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("nimrunbook: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
