"""``nimrunbook run`` and ``nimrunbook report``: unattended notebook runs and their HTML reports."""

from __future__ import annotations

import argparse
from pathlib import Path

from nimrunbook.cli.arguments import positive_int
from nimrunbook.reports import rebuild_reports, run_notebook
from nimrunbook.reports.execute import find_notebook, next_step, notebook_values, raise_for_failure, templates
from nimrunbook.runbook import parameters as params
from nimrunbook.workdir import PARAMS_FILE


def run_parameters(files: list[str] | None, run_dir: str) -> dict:
    """The params files given (else the run folder's own params.yaml, when it was prepared with one), each
    checked against every notebook: a name none has is an error naming the nearest."""
    prepared = Path(run_dir) / PARAMS_FILE
    chosen = files or ([str(prepared)] if prepared.is_file() else [])
    if not files and chosen:
        print(f"parameters from {prepared}")
    merged: dict = {}
    every = params.catalog(templates())
    for file in chosen:
        values = params.read_params_file(file)
        params.check_params_file(values, every, where=file)
        merged.update(values)
    return merged


def cmd_run(args: argparse.Namespace) -> int:
    from_files = run_parameters(args.file, args.run_dir)
    given = params.read_pairs(args.parameter)
    sources = [find_notebook(notebook) for notebook in args.notebooks]
    shares = _share(given, sources)
    checked = [notebook_values(s, from_files, share) for s, share in zip(sources, shares, strict=True)]  # all, first
    for source, values in zip(sources, checked, strict=True):
        result = run_notebook(source, args.run_dir, values, show_code=args.show_code)
        print(
            f"{result.notebook.stem}: {'ok' if result.ok else 'FAILED'} in {result.seconds:.1f} s; report {result.report}"
        )
        raise_for_failure(result)
    print(f"index of the run: {args.run_dir}/index.html")
    following = next_step(sources[-1])
    if following:
        print(f"next: {following}")
    return 0


def _share(given: dict, sources: list[Path]) -> list[dict]:
    """Each notebook's part of the ``-p`` values: those it declares. A name that none of the named notebooks
    declares goes to the first, whose check names it (and the nearest) once."""
    if len(sources) == 1:
        return [given]
    declared = [params.notebook_parameters(source) for source in sources]
    unclaimed = {name: value for name, value in given.items() if not any(name in names for names in declared)}
    shares = [{name: value for name, value in given.items() if name in names} for names in declared]
    shares[0].update(unclaimed)
    return shares


def cmd_demo(args: argparse.Namespace) -> int:
    from nimrunbook.sandbox.demo import run_demo

    run_demo(Path(args.dir), keep=args.keep, weight_bytes=args.weight_bytes)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    for path in rebuild_reports(args.run_dir, show_code=args.show_code):
        print(path)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="execute runbook notebooks with papermill, then write their HTML reports")
    run.add_argument(
        "notebooks",
        nargs="+",
        help="names (01_plan_profiles: the installed template) or paths (./01_plan_profiles.ipynb: that file); "
        "run in the order given",
    )
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="a parameter, for the notebooks named that declare it (VALUE read as YAML: 3, true, [a, b], {k: v})",
    )
    run.add_argument(
        "-f",
        "--file",
        action="append",
        help=f"a YAML file of parameters (repeatable; -p wins; default: the run folder's {PARAMS_FILE} if any); "
        "relative paths in it are relative to its folder",
    )
    run.add_argument("--run-dir", required=True, help="the run directory (record, executed notebooks, reports)")
    run.add_argument("--show-code", action="store_true", help="keep code cells in the HTML reports")
    run.set_defaults(handler=cmd_run)
    demo = commands.add_parser(
        "demo", help="run the whole runbook against a local sandbox (needs root or a Docker engine)"
    )
    demo.add_argument("--dir", default="demo", help="where the sandbox state, cache and reports go (default: ./demo)")
    demo.add_argument(
        "--keep",
        action="store_true",
        help="after a successful run, leave the sandbox running to open the notebooks in JupyterLab "
        "(a failed or interrupted run always stops it)",
    )
    demo.add_argument(
        "--weight-bytes", type=positive_int, default=4 * 1024 * 1024, help="size of each stand-in weight file"
    )
    demo.set_defaults(handler=cmd_demo)
    report = commands.add_parser("report", help="rebuild every HTML report of a run and its index page")
    report.add_argument("run_dir")
    report.add_argument("--show-code", action="store_true")
    report.set_defaults(handler=cmd_report)
