"""``nimrunbook run`` and ``nimrunbook report``: unattended notebook runs and their HTML reports."""

from __future__ import annotations

import argparse
from pathlib import Path

from nimrunbook.cli.arguments import positive_int
from nimrunbook.reports import rebuild_reports, run_notebook
from nimrunbook.reports.execute import load_parameters, raise_for_failure


def cmd_run(args: argparse.Namespace) -> int:
    from_files = load_parameters(args.file, None)
    given = load_parameters(None, args.parameter)
    for notebook in args.notebooks:
        # a parameter file may serve the whole run (each notebook takes its own); -p must match the notebook
        import papermill

        from nimrunbook.reports.execute import find_notebook

        known = papermill.inspect_notebook(str(find_notebook(notebook)))
        parameters = {**{k: v for k, v in from_files.items() if k in known}, **given}
        result = run_notebook(notebook, args.run_dir, parameters, show_code=args.show_code)
        print(
            f"{result.notebook.stem}: {'ok' if result.ok else 'FAILED'} in {result.seconds:.1f} s; report {result.report}"
        )
        raise_for_failure(result)
    print(f"index of the run: {args.run_dir}/index.html")
    return 0


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
        help="a parameter (VALUE read as YAML: 3, true, [a, b], {k: v})",
    )
    run.add_argument("-f", "--file", action="append", help="a YAML file of parameters (repeatable; -p wins)")
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
