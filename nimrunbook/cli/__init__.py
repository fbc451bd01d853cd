"""The ``nimrunbook`` command line: the same steps as the notebooks, for shells and scripts.

A user error prints one paragraph and exits 2 (bad input) or 1 (a failed
step), never a traceback; under the paragraph, one "details:" line names
what caused it (the underlying exception's type and redacted text). A bug of
ours is one paragraph too (exit 70; ``-v`` shows its traceback). SIGTERM,
SIGINT and SIGHUP stop the command after its cleanup (no container, auth file
or child process is left; see :mod:`nimrunbook.leftovers`), exit 128 + the
signal's number.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import traceback
from collections.abc import Sequence

from nimrunbook import __version__
from nimrunbook.cli import bundle, datarobot, images, nim, profiles, runs, smoke, workdir
from nimrunbook.cli.arguments import check_paths
from nimrunbook.errors import NimRunbookError, cause_line
from nimrunbook.leftovers import Interrupted, signals_interrupt
from nimrunbook.redact import RedactingFilter, redact

EXIT_INTERNAL = 70  # EX_SOFTWARE: not the user's fault
_PATH_FIX = "Check the paths given: a folder where a file belongs, or a file where a folder does."
# An OSError no step turned into its own error: exit 2 where a given path has the wrong shape, else 1.
OS_ERRORS = {
    errno.ENOSPC: (1, "Free space or use a larger disk, then run the same command again: it resumes."),
    errno.EDQUOT: (1, "Free space (you are over your quota), then run the same command again: it resumes."),
    errno.EACCES: (1, "Check the permissions of that path, or run as a user who may write it."),
    errno.EROFS: (1, "That file system is read-only: give a path on a writable one."),
    errno.ENOTDIR: (2, _PATH_FIX),
    errno.EISDIR: (2, _PATH_FIX),
    errno.EEXIST: (2, "Something is already there that is not what the command expects: give another path."),
    errno.ENOENT: (2, "Check the path given."),
    errno.ENAMETOOLONG: (2, "Give a shorter path."),
}


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
        with signals_interrupt():
            check_paths(parser, args)
            return args.handler(args)
    except NimRunbookError as error:
        print(f"nimrunbook: error: {redact(str(error))}", file=sys.stderr)
        details = cause_line(error)
        if details:
            print(f"  details: {details}", file=sys.stderr)
        return error.exit_code
    except OSError as error:  # the disk, the filesystem, permissions: say which file and what to do
        where = f" ({error.filename})" if error.filename else ""
        code, fix = OS_ERRORS.get(error.errno or 0, (1, "Fix the cause and run the same command again: it resumes."))
        print(f"nimrunbook: error: {redact(error.strerror or str(error))}{where}. {fix}", file=sys.stderr)
        return code
    except KeyboardInterrupt as interrupt:
        signum = interrupt.signum if isinstance(interrupt, Interrupted) else 2
        print(
            f"nimrunbook: interrupted ({signal_name(signum)}); its containers and credential files are removed. "
            "Re-run the same command to resume.",
            file=sys.stderr,
        )
        return 128 + signum
    except Exception as error:  # noqa: BLE001 - a bug of ours still ends in one paragraph, the traceback on -v
        if args.verbose:
            print(redact(traceback.format_exc()), file=sys.stderr, end="")
        print(
            f"nimrunbook: internal error: {type(error).__name__}: {' '.join(redact(str(error)).split())[:300]}. "
            "This is a bug in nimrunbook, not in what you gave: please report it with the output of the same "
            "command run with -v.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
