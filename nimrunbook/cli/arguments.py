"""What a command-line argument is: its role (a file read, a folder written, a count) as its argparse ``type``.

Every path argument is checked by :func:`check_paths` before its command
starts, so a folder where a file belongs, a FIFO, or a path under a file ends
in one paragraph before any work; what a file holds is checked when it is
read (:mod:`nimrunbook.userfiles`). Counts and durations are ranged while
parsing. The bad-input test reads the roles to know which bad values to try.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from nimrunbook import userfiles


class PathArgument:
    """An argparse ``type`` for a path, saying what the command does with it (``role``); :func:`check_paths`
    checks every such path before the command starts, so a wrong one ends in one paragraph before any work."""

    role = "path"

    def __init__(self, what: str, *, stdin: bool = False) -> None:
        self.what = what
        self.stdin = stdin
        self.__name__ = self.role  # argparse names a type by it in its messages

    def __call__(self, text: str) -> str:
        return text

    def check(self, text: str) -> None:
        raise NotImplementedError


class InputFile(PathArgument):
    """A file the command reads (its content is checked when read, by :mod:`nimrunbook.userfiles`)."""

    role = "input file"

    def check(self, text: str) -> None:
        if not (self.stdin and text == userfiles.STDIN):
            userfiles.check_file(text, self.what)


class CertificateFile(InputFile):
    """A PEM bundle of CA certificates, checked to hold one before any connection is made."""

    def check(self, text: str) -> None:
        userfiles.check_certificates(text, self.what)


class EditedFile(PathArgument):
    """A file the command reads if it exists, and rewrites."""

    role = "edited file"

    def check(self, text: str) -> None:
        userfiles.check_output_file(text, self.what)


class OutputFile(PathArgument):
    """A file the command writes."""

    role = "output file"

    def check(self, text: str) -> None:
        userfiles.check_output_file(text, self.what)


class InputFolder(PathArgument):
    """A folder that must exist."""

    role = "input folder"

    def check(self, text: str) -> None:
        userfiles.check_folder(text, self.what)


class OutputFolder(PathArgument):
    """A folder the command writes into, made if absent."""

    role = "output folder"

    def check(self, text: str) -> None:
        userfiles.check_folder(text, self.what, may_be_absent=True)


def _number(parse: Callable[[str], float], noun: str, text: str) -> float:
    try:
        value = parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from exc
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    """A count: 1 or more (workers, parts, bytes)."""
    value = int(_number(int, "a whole number", text))
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def positive_float(text: str) -> float:
    """A duration in seconds: more than 0."""
    value = _number(float, "a number", text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not more than 0")
    return value


def port_number(text: str) -> int:
    """A TCP port: 1 to 65535."""
    value = int(_number(int, "a whole number", text))
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (1 to 65535)")
    return value


def leaf_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the command ``args`` were parsed for (``profiles plan``, not ``profiles``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices:
            return leaf_parser(action.choices[getattr(args, action.dest)], args)
    return parser


def check_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check every path argument of the command (see :class:`PathArgument`) before it starts."""
    for action in leaf_parser(parser, args)._actions:
        if isinstance(action.type, PathArgument):
            value = getattr(args, action.dest, None)
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str):
                    action.type.check(text)
