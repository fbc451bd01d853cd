"""``nimrunbook init``: a working folder for one site's runs, so that the installed notebooks stay templates.

The folder gets a copy of every runbook notebook and a ``params.yaml``: the
user's own file, or a commented template listing every parameter of every
notebook with its default and help. People open the copies in JupyterLab and
edit them freely; ``nimrunbook run NAME`` still reads the installed templates.
Existing files are kept (they may hold someone's work) unless ``force``.
"""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import papermill

from nimrunbook.errors import InputError
from nimrunbook.reports.execute import load_parameters, templates

PARAMS_FILE = "params.yaml"
PER_RUN = ("run_dir", "progress")  # set by `nimrunbook run` or in each notebook, never site-wide


@dataclass
class Parameter:
    name: str
    default: str  # the first notebook's default, as Python source
    help: str
    defaults: dict[str, str] = field(default_factory=dict)  # notebook -> its default

    @property
    def notebooks(self) -> list[str]:
        return list(self.defaults)

    def used_by(self) -> str:
        """``00, 01`` or, when the notebooks' defaults differ, ``02: 2; 04, 06: 8``."""
        by_default: dict[str, list[str]] = {}
        for notebook, default in self.defaults.items():
            by_default.setdefault(default, []).append(notebook.split("_", 1)[0])
        if len(by_default) == 1:
            return ", ".join(*by_default.values())
        return "; ".join(f"{', '.join(numbers)}: {_as_yaml(d) or d}" for d, numbers in by_default.items())


@dataclass
class Workdir:
    path: Path
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    unknown_parameters: list[str] = field(default_factory=list)  # in the given params file, in no notebook


def parameter_catalog() -> dict[str, Parameter]:
    """Every parameter of every notebook, in notebook order; the first notebook's default and help."""
    catalog: dict[str, Parameter] = {}
    for notebook in templates():
        for name, spec in papermill.inspect_notebook(str(notebook)).items():
            if name in PER_RUN:
                continue
            entry = catalog.setdefault(name, Parameter(name, spec["default"], spec["help"]))
            entry.defaults[notebook.stem] = spec["default"]
    return catalog


def _as_yaml(default: str) -> str | None:
    """A notebook default (Python source) as YAML, or None when it is not a plain literal."""
    try:
        return json.dumps(ast.literal_eval(default))  # JSON is YAML, and keeps lists and mappings on one line
    except (ValueError, SyntaxError, TypeError):
        return None


def params_template() -> str:
    """The commented ``params.yaml``: every parameter as a line to uncomment, grouped by the notebook that asks first."""
    lines = [
        "# Parameters of this site's runs. Each notebook takes the names it has; the others pass it by:",
        "#   nimrunbook run 00_preflight 01_plan_profiles ... -f params.yaml --run-dir runs/<date>",
        "# Uncomment and set what your site needs. Each line shows a default and (in brackets) the notebooks that use it.",
        "# Secrets are never parameters: export NGC_API_KEY, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead.",
    ]
    group = None
    for parameter in parameter_catalog().values():
        if parameter.notebooks[0] != group:
            group = parameter.notebooks[0]
            lines += ["", f"# -- first asked by {group}"]
        value = _as_yaml(parameter.default)
        used_by = parameter.used_by()
        if value is None:
            lines.append(f"# {parameter.name}:  # {parameter.help} (default: {parameter.default}; {used_by})")
        else:
            lines.append(f"# {parameter.name}: {value}  # {parameter.help} ({used_by})")
    return "\n".join(lines) + "\n"


def _write(destination: Path, content: bytes) -> None:
    """Never a half-written file under the real name."""
    partial = destination.with_name(destination.name + ".incomplete")
    with open(partial, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, destination)


def write_notebook(template: Path, destination: Path) -> None:
    """The user's copy of a template notebook (the place to fill in the params file's values)."""
    _write(destination, template.read_bytes())


def init_workdir(directory: str | Path, params_file: str | Path | None = None, *, force: bool = False) -> Workdir:
    """Write ``directory`` with copies of the notebooks and a ``params.yaml``; keep what is there unless ``force``.

    A params file that cannot be read, or that would replace a different one, stops it before anything is written.
    """
    result = Workdir(Path(directory).resolve())
    params = result.path / PARAMS_FILE
    source = Path(params_file) if params_file is not None else None
    if source is not None:
        given = load_parameters([str(source)], None)  # a clear error for a missing or malformed file
        result.unknown_parameters = sorted(set(given) - set(parameter_catalog()) - set(PER_RUN))
        if params.exists() and not force and params.read_bytes() != source.read_bytes():
            raise InputError(
                f"{params} exists and differs from {source}.",
                hint="Edit the one in the folder, or pass --force to replace it with the given file.",
            )
    result.path.mkdir(parents=True, exist_ok=True)
    for template in templates():
        destination = result.path / template.name
        if destination.exists() and not force:
            result.kept.append(destination)
        else:
            write_notebook(template, destination)
            result.written.append(destination)
    if params.exists() and (not force or (source is not None and params.resolve() == source.resolve())):
        result.kept.append(params)
    else:
        _write(params, source.read_bytes() if source is not None else params_template().encode())
        result.written.append(params)
    return result
