"""Notebook parameters: one rule for what a notebook accepts, wherever a value comes from.

Values reach a notebook three ways: a params file (``-f``, or the one a run
folder was prepared from), ``-p NAME VALUE``, and a person editing the
parameters cell in JupyterLab. The same checks apply to all three, before any
work starts (``nimrunbook run`` and ``init`` check files and ``-p``; the
notebook's first cell, :func:`nimrunbook.runbook.start`, checks what the
kernel holds):

- a name no notebook has is an error naming the nearest one it has (a params
  file serves every notebook, so it is checked against all of them);
- a value must be of the parameter's annotated type (``lora: bool`` takes
  true or false, never "maybe"; an ``int`` is no ``bool``);
- a parameter whose help starts with ``required`` must be given (not empty);
  ``required (or a, b or c)`` is satisfied by any one of them;
- a parameter that names a file or folder (:func:`is_path`) is made absolute
  where it enters: from a params file against that file's folder, from ``-p``
  against the current folder; so the same params file means the same files in
  JupyterLab and on the command line.

The notebooks declare all of it in their parameters cell, one line each:
``name: type = default  # help``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import nbformat
import yaml

from nimrunbook import userfiles
from nimrunbook.errors import InputError, problems_error

PER_RUN = ("run_dir", "progress")  # set for each run folder and way of running, never in a params file
PATH_SUFFIXES = ("_dir", "_file", "_key", "_bundle")  # and kubeconfig; registry_ca maps hosts to files
PATH_NAMES = ("kubeconfig",)
PATH_MAPPINGS = ("registry_ca",)
TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "bool": (bool,),
    "int": (int,),
    "float": (int, float),
    "list": (list, tuple),
    "dict": (dict,),
    "object": (object,),
}
DESCRIBED = {
    "str": "text",
    "bool": "true or false",
    "int": "a whole number",
    "float": "a number",
    "list": "a list ([a, b])",
    "dict": "a mapping ({key: value})",
}
_REQUIRED = re.compile(r"^required\b(?:\s*\(or ([^)]*)\))?")


@dataclass(frozen=True)
class Parameter:
    """One line of a parameters cell: ``name: type_name = default  # help``."""

    name: str
    type_name: str
    default: str  # Python source
    help: str

    @property
    def required_with(self) -> tuple[str, ...] | None:
        """None when optional; else the names any one of which satisfies it (itself first)."""
        match = _REQUIRED.match(self.help)
        if not match:
            return None
        others = re.findall(r"[a-z_][a-z0-9_]*", match.group(1) or "")
        return (self.name, *(o for o in others if o != "or"))


def is_path(name: str) -> bool:
    """Does the parameter name a file or folder? By the naming rule the notebooks follow (tested over all)."""
    return name.endswith(PATH_SUFFIXES) or name in PATH_NAMES


def parameters_cell(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode | None:
    return next((c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)


def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    return userfiles.read_notebook(path)


def parse_cell(source: str) -> dict[str, Parameter]:
    """The parameters declared in a parameters cell, as papermill reads them (``--help-notebook``)."""
    from papermill.translators import papermill_translators

    cell = nbformat.v4.new_code_cell(source)
    translator = papermill_translators.find_translator("python3", "python")
    return {p.name: Parameter(p.name, p.inferred_type_name, p.default, p.help or "") for p in translator.inspect(cell)}


@cache
def _specs_of(path: str, _mtime: float) -> dict[str, Parameter]:
    cell = parameters_cell(read_notebook(path))
    return parse_cell(cell.source) if cell is not None else {}


def notebook_parameters(path: str | Path) -> dict[str, Parameter]:
    """A notebook's parameters, in cell order."""
    return dict(_specs_of(str(path), os.path.getmtime(path)))


def catalog(notebooks: list[Path]) -> dict[str, dict[str, Parameter]]:
    """Notebook stem -> its parameters, for every notebook given."""
    return {path.stem: notebook_parameters(path) for path in notebooks}


def empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | tuple | dict) and len(value) == 0)


def type_problem(parameter: Parameter, value: Any) -> str | None:
    """Why ``value`` is not of the parameter's type (None when it is, or when the annotation is not one we check)."""
    expected = TYPES.get(parameter.type_name)
    if expected is None or parameter.type_name == "object":
        return None
    numeric_bool = parameter.type_name in ("int", "float") and isinstance(value, bool)  # True is an int to Python
    if isinstance(value, expected) and not numeric_bool:
        return None
    meaning = f" ({parameter.name}: {parameter.help})" if parameter.help else ""
    return f"{parameter.name} must be {DESCRIBED[parameter.type_name]}, not {value!r}{meaning}"


def nearest(name: str, known: list[str]) -> str | None:
    found = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not found:  # a prefix or a piece: "gpu" for "gpus", "bucket" for "s3_bucket"
        found = [k for k in known if name and (k.startswith(name) or name in k.split("_"))][:1]
    return found[0] if found else None


def unknown_names(given: Mapping[str, Any], known: list[str], where: str) -> list[str]:
    """One line per name not in ``known``, with the nearest known name."""
    lines = []
    for name in given:
        if name in known:
            continue
        near = nearest(name, known)
        lines.append(f"{where}: no parameter {name!r}" + (f"; did you mean {near!r}?" if near else ""))
    return lines


def check_values(
    notebook: str, parameters: Mapping[str, Parameter], values: Mapping[str, Any], *, where: str
) -> list[str]:
    """Problems of ``values`` for one notebook: unknown names, wrong types, required ones missing."""
    problems = unknown_names(values, list(parameters), where)
    for name, value in values.items():
        if name in parameters:
            problem = type_problem(parameters[name], value)
            if problem:
                problems.append(f"{where}: {problem}")
    for names in missing_required(parameters, values):
        meaning = parameters[names[0]].help.split(":", 1)[-1].strip()
        problems.append(f"{notebook} needs {' or '.join(names)}: {meaning}")
    return problems


def missing_required(parameters: Mapping[str, Parameter], values: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """The required parameters (each with its alternatives) that ``values`` leaves empty."""
    return [
        names
        for parameter in parameters.values()
        if (names := parameter.required_with) and all(empty(values.get(name)) for name in names)
    ]


def raise_problems(problems: list[str], hint: str) -> None:
    if problems:
        summary = "A parameter is wrong" if len(problems) == 1 else f"{len(problems)} parameters are wrong"
        raise problems_error(InputError, summary, problems, hint=hint)


def absolute_paths(values: dict[str, Any], base: Path) -> dict[str, Any]:
    """``values`` with every relative file or folder made absolute against ``base`` (``~`` expanded)."""

    def fix(text: Any) -> Any:
        if not isinstance(text, str) or not text:
            return text
        path = Path(os.path.expanduser(text))
        return str(path if path.is_absolute() else Path(os.path.normpath(base / path)))

    fixed = dict(values)
    for name, value in values.items():
        if is_path(name):
            fixed[name] = fix(value)
        elif name in PATH_MAPPINGS and isinstance(value, dict):
            fixed[name] = {key: fix(item) for key, item in value.items()}
    return fixed


def read_params_file(path: str | Path) -> dict[str, Any]:
    """A params file: a YAML mapping of parameter names to values, its paths made absolute against its folder."""
    source = Path(path)
    text = userfiles.read_text(source, "parameter file", allow_empty=True)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(
            f"The parameter file {source} is not valid YAML: {' '.join(str(exc).split())}.",
            hint="Each line is `name: value`; quote values holding a colon or a #.",
        ) from exc
    document = {} if document is None else document
    if not isinstance(document, dict) or not all(isinstance(k, str) for k in document):
        raise InputError(
            f"The parameter file {source} is not a mapping of parameter names to values.",
            hint='Write one `name: value` per line, e.g. `gpus: "L40S, A10G"`.',
        )
    misplaced = [name for name in PER_RUN if name in document]
    if misplaced:
        raise InputError(
            f"The parameter file {source} sets {', '.join(misplaced)}, which belong to each run, not to a site.",
            hint="Remove them: `--run-dir` (or the run folder that `nimrunbook init` prepares) sets run_dir, and "
            "progress is set by the way a notebook runs.",
        )
    return absolute_paths(document, source.resolve().parent)


def read_pairs(pairs: list[tuple[str, str]] | None) -> dict[str, Any]:
    """``-p NAME VALUE`` pairs, each VALUE read as YAML, paths made absolute against the current folder."""
    values: dict[str, Any] = {}
    for name, text in pairs or []:
        try:
            values[name] = yaml.safe_load(text) if text else text
        except yaml.YAMLError:
            values[name] = text  # not YAML: taken as the text it is, and type-checked like any value
    return absolute_paths(values, Path.cwd())


def check_params_file(values: Mapping[str, Any], notebooks: Mapping[str, Mapping[str, Parameter]], where: str):
    """A params file against every notebook: unknown names (nearest named), and each value's type wherever the
    name is a parameter. Required parameters are checked per notebook, when one runs or is prepared."""
    every: dict[str, Parameter] = {}
    for parameters in notebooks.values():
        for name, parameter in parameters.items():
            every.setdefault(name, parameter)
    problems = unknown_names(values, [n for n in every if n not in PER_RUN], where)
    for name, value in values.items():
        for notebook, parameters in notebooks.items():
            if name in parameters:
                problem = type_problem(parameters[name], value)
                if problem:
                    problems.append(f"{where}: {problem} (in {notebook})")
                    break
    raise_problems(problems, hint="Fix the names and values in the parameter file, then run the command again.")


def kernel_values(parameters: Mapping[str, Parameter], namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The values a kernel holds for the notebook's parameters (what its cells will use)."""
    return {name: namespace[name] for name in parameters if name in namespace}


def annotations_of(namespace: Mapping[str, Any]) -> dict[str, Parameter]:
    """Parameters from the kernel's own annotations (``name: type = ...`` cells), for a notebook that is not one
    of the runbook's: types are checked, nothing is known to be required."""
    found = {}
    for name, annotation in dict(namespace.get("__annotations__", {})).items():
        type_name = getattr(annotation, "__name__", str(annotation))
        found[name] = Parameter(name, type_name, "", "")
    return found
