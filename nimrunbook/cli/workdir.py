"""``nimrunbook init`` and ``nimrunbook lab``: a working folder of the notebooks, and JupyterLab opened on it."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from nimrunbook.cli.arguments import port_number
from nimrunbook.workdir import PARAMS_FILE, Workdir, init_workdir


def _report(workdir: Workdir) -> None:
    for path in workdir.written:
        print(f"wrote {path}")
    if workdir.kept:
        names = ", ".join(p.name for p in workdir.kept)
        print(f"kept what was there (your copies; --force replaces them): {names}")
    if workdir.unknown_parameters:
        print(
            f"note: no notebook has the parameter(s) {', '.join(workdir.unknown_parameters)} of the params file; "
            f"check their spelling against the commented list that `nimrunbook init` writes without -f."
        )


def lab_command(directory: Path, args: argparse.Namespace) -> list[str]:
    """JupyterLab with ``directory`` as its root; --allow-root when root, since JupyterLab refuses root otherwise."""
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={directory}"]
    if args.ip:
        command.append(f"--ServerApp.ip={args.ip}")
    if args.port:
        command.append(f"--ServerApp.port={args.port}")
    if args.no_browser:
        command.append("--no-browser")
    if os.geteuid() == 0:
        command.append("--allow-root")
    return command


def start_lab(directory: Path, args: argparse.Namespace) -> int:
    command = lab_command(directory, args)
    if "--allow-root" in command:
        print(
            "Running as root: JupyterLab refuses root unless told, so it starts with --allow-root. Its notebooks "
            "run as root too; prefer a user of your own where you can."
        )
    print(
        f"JupyterLab on {directory}: your copies of the notebooks and {PARAMS_FILE}. Stop it with Ctrl-C.", flush=True
    )
    os.chdir(directory)
    os.execv(command[0], command)  # JupyterLab takes over this process: its Ctrl-C, its exit code
    return 0  # pragma: no cover - execv does not return


def _quiet_papermill() -> None:
    """Reading the notebooks' parameters is not news: papermill would log a line per notebook."""
    logging.getLogger("papermill").setLevel(logging.WARNING)


def cmd_init(args: argparse.Namespace) -> int:
    _quiet_papermill()
    workdir = init_workdir(args.directory, args.file, force=args.force)
    _report(workdir)
    if args.lab:
        return start_lab(workdir.path, args)
    print(f"next: edit {workdir.path / PARAMS_FILE}, then `nimrunbook lab {args.directory}` (or nimrunbook run ...)")
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    _quiet_papermill()
    workdir = init_workdir(args.directory, args.file)  # writes only what is missing
    _report(workdir)
    return start_lab(workdir.path, args)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="the working folder (created if missing)")
    parser.add_argument(
        "-f", "--file", help=f"a parameters YAML to copy in as {PARAMS_FILE} (default: a commented template)"
    )
    jupyter = parser.add_argument_group("JupyterLab (more in its own config: jupyter lab --generate-config)")
    jupyter.add_argument("--ip", help="address to listen on (JupyterLab's default: localhost)")
    jupyter.add_argument(
        "--port", type=port_number, help="port to listen on (JupyterLab's default: 8888 or the next free)"
    )
    jupyter.add_argument("--no-browser", action="store_true", help="do not open a browser (a headless host)")


def add_commands(commands: argparse._SubParsersAction) -> None:
    init = commands.add_parser(
        "init",
        help="write a working folder: copies of the runbook's notebooks and a commented params.yaml",
        description="Write a working folder with copies of the runbook's notebooks and a params.yaml. The installed "
        "notebooks stay untouched templates; files already in the folder are kept unless --force.",
    )
    _add_common(init)
    init.add_argument("--force", action="store_true", help="replace notebooks and params.yaml already in the folder")
    init.add_argument("--lab", action="store_true", help="then start JupyterLab there (as `nimrunbook lab`)")
    init.set_defaults(handler=cmd_init)
    lab = commands.add_parser(
        "lab",
        help="start JupyterLab on a working folder (written first if missing; --allow-root when root)",
    )
    _add_common(lab)
    lab.set_defaults(handler=cmd_lab)
