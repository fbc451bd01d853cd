"""The ``nimrunbook`` command line: the same steps as the notebooks, for shells and scripts.

A user error prints one paragraph and exits 2 (bad input) or 1 (a failed
step), never a traceback; under the paragraph, one "details:" line names
what caused it (the underlying exception's type and redacted text).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from nimrunbook import __version__
from nimrunbook.cli import bundle, datarobot, images, nim, profiles, runs, smoke, workdir
from nimrunbook.errors import NimRunbookError, cause_line
from nimrunbook.redact import RedactingFilter, redact


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nimrunbook",
        description="Get NVIDIA NIM LLM services running in an air-gapped cluster with DataRobot.",
    )
    parser.add_argument("--version", action="version", version=f"nimrunbook {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    commands = parser.add_subparsers(dest="command", required=True)
    nim.add_commands(commands)
    profiles.add_commands(commands)
    images.add_commands(commands)
    bundle.add_commands(commands)
    datarobot.add_commands(commands)
    runs.add_commands(commands)
    smoke.add_commands(commands)
    workdir.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) and not args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[handler],
    )
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "docker"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.handler(args)
    except NimRunbookError as error:
        print(f"nimrunbook: error: {redact(str(error))}", file=sys.stderr)
        details = cause_line(error)
        if details:
            print(f"  details: {details}", file=sys.stderr)
        return error.exit_code
    except OSError as error:  # the disk, the filesystem, permissions: say which file and what to do
        where = f" ({error.filename})" if error.filename else ""
        fix = {
            28: "Free space or use a larger disk, then run the same command again: it resumes.",
            13: "Check the permissions of that path, or run as a user who may write it.",
        }.get(error.errno or 0, "Fix the cause and run the same command again: it resumes.")
        print(f"nimrunbook: error: {redact(error.strerror or str(error))}{where}. {fix}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nimrunbook: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
