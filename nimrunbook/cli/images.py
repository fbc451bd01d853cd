"""``nimrunbook images ...``: mirror, export, import."""

from __future__ import annotations

import argparse

import pandas as pd

from nimrunbook.cli.arguments import InputFolder, OutputFolder, positive_int
from nimrunbook.cli.common import add_registry_options, print_table, progress_reporter, registry_access
from nimrunbook.images import export, import_, mirror


def _show(results) -> int:
    print_table(pd.DataFrame([r.as_dict() for r in results]), ["source", "destination", "digest", "status", "backend"])
    return 0


def cmd_mirror(args: argparse.Namespace) -> int:
    return _show(
        mirror(
            args.images,
            args.to,
            access=registry_access(args),
            backend=args.backend,
            workers=args.workers,
            progress=progress_reporter(args),
        )
    )


def cmd_export(args: argparse.Namespace) -> int:
    return _show(
        export(
            args.images, args.dir, access=registry_access(args), backend=args.backend, progress=progress_reporter(args)
        )
    )


def cmd_import(args: argparse.Namespace) -> int:
    return _show(
        import_(
            args.dir,
            args.to,
            access=registry_access(args),
            workers=args.workers,
            staging_dir=args.staging_dir,
            progress=progress_reporter(args),
        )
    )


def add_commands(commands: argparse._SubParsersAction) -> None:
    images = commands.add_parser("images", help="mirror NIM container images (NGC_API_KEY logs in to nvcr.io)")
    sub = images.add_subparsers(dest="action", required=True)
    specs = (
        ("mirror", cmd_mirror, "registry to registry, keeping paths, tags and digests"),
        ("export", cmd_export, "into one OCI image layout (or docker archive) for removable media"),
        ("import", cmd_import, "from an export into the internal registry"),
    )
    for name, handler, text in specs:
        command = sub.add_parser(name, help=text)
        if name != "import":
            command.add_argument(
                "images", nargs="+", help="full refs, e.g. nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5"
            )
        if name != "mirror":
            kind = OutputFolder("export folder") if name == "export" else InputFolder("export folder")
            command.add_argument("--dir", required=True, type=kind, help="the export directory")
        if name != "export":
            command.add_argument("--to", required=True, help="destination registry (host[:port][/prefix])")
            command.add_argument("--workers", type=positive_int, default=2, help="images copied in parallel")
        if name == "import":
            command.add_argument(
                "--staging-dir",
                type=OutputFolder("staging folder"),
                help="where skopeo's views of the images are built (default: the system's temporary folder); "
                "never inside the export, which may be read-only media",
            )
        else:
            command.add_argument("--backend", choices=["auto", "skopeo", "docker"], default="auto")
        add_registry_options(command)
        command.set_defaults(handler=handler)
