"""``nimrunbook init``: a run folder prepared for JupyterLab and the command line alike.

The folder is one run's home::

    RUN/params.yaml               the run's parameters: the file given (its relative paths made absolute), or a
                                  commented template listing every parameter of every notebook
    RUN/notebooks/NN_*.ipynb      each runbook notebook, parameterised from params.yaml (papermill's injected
                                  parameters cell, not executed), run_dir set to RUN
    RUN/run.json, RUN/reports/    written as steps run

A person opens the notebooks in JupyterLab (``nimrunbook lab RUN``), runs and
saves them there; ``nimrunbook run NAME --run-dir RUN`` reads RUN/params.yaml
and writes its executed notebook to the same place; so ``nimrunbook report
RUN`` sees every step however it ran. The params file is checked like ``-p``
before anything is written (:mod:`nimrunbook.runbook.parameters`). The
installed notebooks stay templates. A notebook that has run is the run's
evidence and is never replaced; one that has not is kept unless ``force``.
"""

from __future__ import annotations

import ast
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook
from ruamel.yaml import YAML

from nimrunbook.errors import InputError
from nimrunbook.localdisk import write_text_atomic
from nimrunbook.reports.execute import templates
from nimrunbook.reports.html import NOTEBOOKS, executed
from nimrunbook.runbook import parameters as params
from nimrunbook.runbook.record import now

PARAMS_FILE = "params.yaml"
PER_RUN = params.PER_RUN


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
    ran: list[Path] = field(default_factory=list)  # executed notebooks: the run's, never replaced
    needs: dict[str, list[str]] = field(default_factory=dict)  # notebook -> required parameters not set


def parameter_catalog() -> dict[str, Parameter]:
    """Every parameter of every notebook, in notebook order; the first notebook's default and help."""
    catalog: dict[str, Parameter] = {}
    for notebook in templates():
        for name, spec in params.notebook_parameters(notebook).items():
            if name in PER_RUN:
                continue
            entry = catalog.setdefault(name, Parameter(name, spec.default, spec.help))
            entry.defaults[notebook.stem] = spec.default
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
        "# Parameters of this run. Each notebook takes the names it has; the others pass it by.",
        "# Uncomment and set what your site needs, then prepare the notebooks again: nimrunbook init <run folder> --force",
        "# (or run steps unattended: nimrunbook run 01_plan_profiles ... --run-dir <run folder>, which reads this file).",
        "# Each line shows a default and (in brackets) the notebooks that use it. Relative paths are relative to this file.",
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


def params_copy(source: Path, values: dict) -> str:
    """The text of ``source`` for the run folder: the same file, comments kept, relative paths made absolute
    (they were relative to the source's folder, and the copy lives elsewhere)."""
    text = source.read_text(encoding="utf-8")
    yaml = YAML()
    yaml.preserve_quotes = True
    document = yaml.load(text) or {}
    paths = [name for name in document if params.is_path(name) or name in params.PATH_MAPPINGS]
    changed = [name for name in paths if document[name] != values.get(name)]
    if not changed:
        return text
    for name in changed:
        document[name] = values[name]
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    return buffer.getvalue()


def prepared_notebook(template: Path, values: dict, run_dir: Path, params_path: Path) -> nbformat.NotebookNode:
    """The template with its parameters injected (as papermill would before executing), not executed."""
    declared = params.notebook_parameters(template)
    mine = {name: value for name, value in values.items() if name in declared}
    notebook = load_notebook_node(str(template))  # with the per-cell metadata papermill's injection expects
    comment = (
        f"Parameters from {params_path}, prepared by nimrunbook init: edit them here, or edit that file and run "
        f"`nimrunbook init {run_dir} --force`"
    )
    notebook = parameterize_notebook(notebook, {**mine, "run_dir": str(run_dir), "progress": "widget"}, comment=comment)
    notebook.metadata["nimrunbook"] = {"prepared": now(), "params_file": str(params_path)}
    return notebook


def _read_values(params_path: Path) -> dict:
    values = params.read_params_file(params_path)
    params.check_params_file(values, params.catalog(templates()), where=str(params_path))
    return values


def init_workdir(directory: str | Path, params_file: str | Path | None = None, *, force: bool = False) -> Workdir:
    """Prepare the run folder ``directory`` (see the module docstring).

    A params file that cannot be read, that has a name no notebook has or a value of the wrong type, or that
    would replace a different one without ``force``, stops it before anything is written.
    """
    result = Workdir(Path(directory).resolve())
    params_path = result.path / PARAMS_FILE
    source = Path(params_file).resolve() if params_file is not None else None
    if source is not None:
        values = _read_values(source)
        copy = params_copy(source, values)
        if params_path.exists() and params_path != source and not force and params_path.read_text() != copy:
            raise InputError(
                f"{params_path} exists and differs from {source}.",
                hint="Edit the one in the run folder, or pass --force to replace it with the given file.",
            )
    elif params_path.exists():
        values = _read_values(params_path)
    else:
        values = {}
    result.path.mkdir(parents=True, exist_ok=True)
    if source is not None and params_path != source and (force or not params_path.exists()):
        write_text_atomic(params_path, copy)
        result.written.append(params_path)
    elif not params_path.exists():
        write_text_atomic(params_path, params_template())
        result.written.append(params_path)
    else:
        result.kept.append(params_path)
    (result.path / NOTEBOOKS).mkdir(exist_ok=True)
    for template in templates():
        destination = result.path / NOTEBOOKS / template.name
        present = params.read_notebook(destination) if destination.exists() else None
        if present is not None and executed(present):
            result.ran.append(destination)
        elif present is not None and not force:
            result.kept.append(destination)
        else:
            notebook = prepared_notebook(template, values, result.path, params_path)
            write_text_atomic(destination, nbformat.writes(notebook))
            result.written.append(destination)
        missing = params.missing_required(params.notebook_parameters(template), values)
        if missing:
            result.needs[template.stem] = [" or ".join(names) for names in missing]
    return result
