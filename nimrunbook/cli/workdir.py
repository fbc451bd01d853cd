"""``nimrunbook init`` and ``nimrunbook lab``: a run folder of prepared notebooks, and JupyterLab opened on it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nimrunbook.cli.arguments import port_number
from nimrunbook.errors import InputError
from nimrunbook.workdir import PARAMS_FILE, Workdir, init_workdir


def _report(workdir: Workdir) -> None:
    for path in workdir.written:
        print(f"wrote {path}")
    if workdir.kept:
        names = ", ".join(p.name for p in workdir.kept)
        print(f"kept what was there (not run yet; --force prepares them again from {PARAMS_FILE}): {names}")
    if workdir.ran:
        names = ", ".join(p.name for p in workdir.ran)
        print(f"kept the notebooks that have run (the run's record, never replaced): {names}")
    for notebook, names in workdir.needs.items():
        print(f"note: {notebook} needs {', '.join(names)}: not in {PARAMS_FILE} (set it there, or in the notebook)")


QUIET_LAB = (
    "--KernelManager.transport_encryption=auto",  # kernels' traffic encrypted (CurveZMQ), and no warning that it is not
    "--LabApp.news_url=None",  # an air-gapped site: no news feed, no update check from the browser
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
)


def lab_command(directory: Path, args: argparse.Namespace) -> list[str]:
    """JupyterLab with ``directory`` as its root; --allow-root when root, since JupyterLab refuses root otherwise."""
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={directory}", *QUIET_LAB]
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
        f"JupyterLab on {directory}: open notebooks/ (prepared from {PARAMS_FILE}), run and save them there; "
        f"`nimrunbook report {directory}` writes the reports. Stop it with Ctrl-C.",
        flush=True,
    )
    os.chdir(directory)
    os.execv(command[0], command)  # JupyterLab takes over this process: its Ctrl-C, its exit code
    return 0  # pragma: no cover - execv does not return


def _folder(args: argparse.Namespace) -> str:
    given = [f for f in (args.directory, args.run_dir) if f]
    if not given or (len(given) == 2 and Path(given[0]).resolve() != Path(given[1]).resolve()):
        raise InputError(
            "Name the run folder once: as the argument or as --run-dir.",
            hint="e.g. nimrunbook init runs/2026-11-27 -f params.yaml",
        )
    return given[0]


def cmd_init(args: argparse.Namespace) -> int:
    folder = _folder(args)
    workdir = init_workdir(folder, args.file, force=args.force)
    _report(workdir)
    if args.lab:
        return start_lab(workdir.path, args)
    print(f"next: `nimrunbook lab {folder}` (JupyterLab there), or `nimrunbook run NAME ... --run-dir {folder}`")
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    workdir = init_workdir(_folder(args), args.file, force=args.force)  # writes only what is missing
    _report(workdir)
    return start_lab(workdir.path, args)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", help="the run folder (created if missing)")
    parser.add_argument("--run-dir", help="the run folder, as the other commands name it (or give it as argument)")
    parser.add_argument(
        "-f",
        "--file",
        help=f"a parameters YAML to copy in as {PARAMS_FILE} (checked like -p; relative paths made absolute); "
        "default: the folder's own, else a commented template",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"replace {PARAMS_FILE} with -f, and prepare again every notebook that has not run (those that have "
        "are the run's record and are never replaced)",
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
        help="prepare a run folder: params.yaml and every notebook parameterised from it, for JupyterLab or `run`",
        description=f"Prepare a run folder: {PARAMS_FILE} (the given file, checked like -p, or a commented template) "
        f"and notebooks/ with every runbook notebook parameterised from it (not executed). Open them in JupyterLab "
        f"(`nimrunbook lab`), or run steps with `nimrunbook run NAME --run-dir FOLDER` (which reads {PARAMS_FILE}); "
        "`nimrunbook report FOLDER` reports every step however it ran. The installed notebooks stay templates.",
    )
    _add_common(init)
    init.add_argument("--lab", action="store_true", help="then start JupyterLab there (as `nimrunbook lab`)")
    init.set_defaults(handler=cmd_init)
    lab = commands.add_parser(
        "lab",
        help="start JupyterLab on a run folder (prepared first if missing; --allow-root when root)",
    )
    _add_common(lab)
    lab.set_defaults(handler=cmd_lab)
