"""The profile picker: candidate profiles with one checkbox each, pre-ticked by the selection rules.

Core ipywidgets only (they ship with JupyterLab; no CDN-only widget library).
Under papermill nobody clicks, so the picker's state is exactly its initial
ticks, which come from the ``selected_profiles`` parameter: one code path,
:func:`resolve_selection`, serves both.

A person's ticks are facts for the record: each change is kept with who made
it and when (:class:`Change`), and the picker remembers them for the life of
the kernel, so running its cell again keeps them; the "rules again" button
puts back what the rules (or the parameter) ticked.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from nimrunbook.runbook.record import now
from nimrunbook.selection import resolve_profile_ids, wanted_ids

COLUMNS = ["short id", "name", "engine", "gpu", "precision", "tp/pp", "mode", "lora", "size", "the rules"]
UNKNOWN_SIZE = "unknown until downloaded"


@dataclass(frozen=True)
class Change:
    """A tick or untick by a person."""

    by: str
    at: str


# (image, its profile ids) -> (ticks, changes): what a person picked, kept while the kernel lives
_remembered: dict[tuple[str, tuple[str, ...]], tuple[set[str], dict[str, Change]]] = {}


def flag(value) -> bool:
    """A boolean column's value as a bool: numpy bools are not ``True`` (``is True`` fails), NA is false."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return False
    return bool(value)


def gigabytes(size: float) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e9:.3f} GB"


def size_of(plan: pd.DataFrame, profile_id: str) -> int | None:
    """Bytes of a profile when known (its files all in the cache), else None."""
    if "size" not in plan:
        return None
    value = plan.loc[plan["id"] == profile_id, "size"]
    return None if value.empty or pd.isna(value.iloc[0]) else int(value.iloc[0])


def initial_ticks(plan: pd.DataFrame, wanted: str | Sequence[str]) -> set[str]:
    """``"auto"``: what the rules selected; otherwise the ids given (one per item, or pasted
    ``<id> (name)`` lines). An unknown or malformed id is an error naming the nearest known ids."""
    if isinstance(wanted, str) and wanted.strip() == "auto":
        return set(plan.loc[plan["selected"].map(flag), "id"])
    return set(resolve_profile_ids(plan, wanted_ids(wanted)))


def rows(plan: pd.DataFrame) -> pd.DataFrame:
    """The picker's table: one row per profile, as a person reads it.

    NIM's own compatible/incompatible sections are left out: they are NIM's verdict on the host that ran the
    listing (usually a staging host without the cluster's GPUs), not on the cluster.
    """

    def tp_pp(row) -> str:
        tp, pp = row.get("tp"), row.get("pp")
        return "" if pd.isna(tp) else f"{int(tp)}/{'' if pd.isna(pp) else int(pp)}"

    sizes = plan["size"] if "size" in plan else pd.Series([None] * len(plan), index=plan.index)
    return pd.DataFrame(
        {
            "short id": plan["id"].str.slice(0, 12),
            "name": plan["name"],
            "engine": plan["engine"].fillna(""),
            "gpu": plan["gpu"].fillna("generic"),
            "precision": plan["precision"].fillna(""),
            "tp/pp": [tp_pp(r) for _, r in plan.iterrows()],
            "mode": plan["mode"].fillna(""),
            "lora": plan["lora"].map(lambda v: "yes" if flag(v) else ""),
            "size": [UNKNOWN_SIZE if pd.isna(s) else gigabytes(s) for s in sizes],
            "the rules": plan["reason"],
        },
        index=plan.index,
    )


class ProfilePicker:
    """Checkbox table per image, with filters, a running total, the selected ids and who changed what."""

    def __init__(
        self, plans: Mapping[str, pd.DataFrame], initial: Mapping[str, set[str]], *, operator: str = ""
    ) -> None:
        import ipywidgets as w

        self.plans = {image: plan.reset_index(drop=True) for image, plan in plans.items()}
        self.baseline = {image: set(initial.get(image, set())) for image in self.plans}
        self.operator = operator
        self.changes: dict[str, dict[str, Change]] = {}
        self.boxes: dict[str, list[tuple[str, object, list]]] = {}
        self.empty: dict[str, object] = {}
        self._quiet = False
        sections = []
        for image, plan in self.plans.items():
            ticks, changes = _remembered.get(self._key(image), (self.baseline[image], {}))
            self.changes[image] = dict(changes)
            table = rows(plan)
            cells = [w.HTML(f"<b>{html.escape(c)}</b>") for c in ["use", *COLUMNS]]
            for (_, row), profile_id in zip(table.iterrows(), plan["id"], strict=True):
                box = w.Checkbox(value=profile_id in ticks, indent=False, description="", layout=w.Layout(width="2em"))
                box.observe(self._ticked(image, profile_id), names="value")
                line = [box, *(w.HTML(html.escape(str(row[c]))) for c in COLUMNS)]
                self.boxes.setdefault(image, []).append((profile_id, box, line))
                cells += line
            grid = w.GridBox(
                cells, layout=w.Layout(grid_template_columns=f"2.5em repeat({len(COLUMNS)}, auto)", grid_gap="0 12px")
            )
            self.empty[image] = w.HTML("<i>no profiles match the filters</i>", layout=w.Layout(display="none"))
            sections.append(w.VBox([w.HTML(f"<h4>{html.escape(image)}</h4>"), grid, self.empty[image]]))
        every = pd.concat(self.plans.values()) if self.plans else pd.DataFrame(columns=["gpu", "engine", "precision"])

        def options(column: str) -> list[str]:
            return ["all", *sorted({str(v) if v is not None and not pd.isna(v) else "generic" for v in every[column]})]

        self.filters = {
            "gpu": w.Dropdown(options=options("gpu"), description="GPU"),
            "engine": w.Dropdown(options=options("engine"), description="engine"),
            "precision": w.Dropdown(options=options("precision"), description="precision"),
            "lora": w.Dropdown(options=["all", "yes", "no"], description="LoRA"),
        }
        for control in self.filters.values():
            control.observe(self._filter, names="value")
        self.reset = w.Button(description="rules again", tooltip="tick what the rules (or selected_profiles) ticked")
        self.reset.on_click(lambda _button: self.back_to_rules())
        self.total = w.HTML()
        self.ids = w.Textarea(disabled=True, layout=w.Layout(width="100%", height="8em"), description="selected ids")
        controls = w.HBox([*self.filters.values(), self.reset])
        self.widget = w.VBox([controls, *sections, self.total, self.ids])
        self._changed()

    def _key(self, image: str) -> tuple[str, tuple[str, ...]]:
        return image, tuple(self.plans[image]["id"])

    def _ticked(self, image: str, profile_id: str):
        def handler(_change) -> None:
            if not self._quiet:
                self.changes[image][profile_id] = Change(self.operator, now())
            self._changed()

        return handler

    def _visible(self, image: str, index: int) -> bool:
        row = self.plans[image].iloc[index]
        for column in ("gpu", "engine", "precision"):
            wanted = self.filters[column].value
            value = row[column] if row[column] is not None and not pd.isna(row[column]) else "generic"
            if wanted != "all" and str(value) != wanted:
                return False
        lora = self.filters["lora"].value
        return lora == "all" or (lora == "yes") == flag(row["lora"])

    def _filter(self, _change=None) -> None:
        for image, entries in self.boxes.items():
            shown_any = False
            for index, (_, _, line) in enumerate(entries):
                shown = self._visible(image, index)
                shown_any = shown_any or shown
                for cell in line:
                    cell.layout.display = "" if shown else "none"
            self.empty[image].layout.display = "none" if shown_any else ""

    def _changed(self, _change=None) -> None:
        chosen = self.selected()
        for image, ids in chosen.items():
            _remembered[self._key(image)] = (set(ids), dict(self.changes[image]))
        sizes = [size_of(self.plans[image], pid) for image, ids in chosen.items() for pid in ids]
        known = sum(s for s in sizes if s is not None)
        unknown = sum(1 for s in sizes if s is None)
        total = f"{gigabytes(known)}" + (f" + {unknown} of size {UNKNOWN_SIZE}" if unknown else "")
        self.total.value = f"<b>{len(sizes)} profiles selected</b>: {html.escape(total)}"
        self.ids.value = "\n".join(f"{image}: {' '.join(ids)}" for image, ids in chosen.items())

    def selected(self) -> dict[str, list[str]]:
        """Image -> ticked profile ids, in listing order."""
        return {image: [pid for pid, box, _ in entries if box.value] for image, entries in self.boxes.items()}

    def set_tick(self, image: str, profile_id: str, value: bool) -> None:
        """Tick or untick as a person would (the change is recorded as theirs)."""
        for pid, box, _ in self.boxes[image]:
            if pid == profile_id:
                box.value = value

    def untick(self, image: str, profile_id: str) -> None:
        self.set_tick(image, profile_id, False)

    def back_to_rules(self) -> None:
        """The ticks the rules (or ``selected_profiles``) gave; a person's changes are forgotten."""
        self._quiet = True
        try:
            for image, entries in self.boxes.items():
                self.changes[image] = {}
                for pid, box, _ in entries:
                    box.value = pid in self.baseline[image]
        finally:
            self._quiet = False
        self._changed()

    def static_html(self) -> str:
        """The picker as a plain table of its ticks: what a report shows where widgets cannot run."""
        from nimrunbook.runbook.display import table_html

        chosen = self.selected()
        parts = []
        for image, plan in self.plans.items():
            table = rows(plan)
            table.insert(0, "use", ["yes" if pid in chosen[image] else "" for pid in plan["id"]])
            parts.append(table_html(table, f"{image}: profile picker (as ticked when the cell ran)"))
        return "".join(parts)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        view = {"version_major": 2, "version_minor": 0, "model_id": self.widget.model_id}
        display(
            {
                "application/vnd.jupyter.widget-view+json": view,
                "text/html": self.static_html(),
                "text/plain": "profile picker (interactive in JupyterLab)",
            },
            raw=True,
        )


def resolve_selection(
    plans: Mapping[str, pd.DataFrame],
    selected_profiles: str | Sequence[str] | Mapping[str, str | Sequence[str]],
    picker: ProfilePicker | None = None,
) -> dict[str, list[str]]:
    """The final selection: the picker's ticks when there is a picker, else the parameter's."""
    if picker is not None:
        return picker.selected()
    chosen = {}
    for image, plan in plans.items():
        wanted = selected_profiles.get(image, "auto") if isinstance(selected_profiles, Mapping) else selected_profiles
        ticks = initial_ticks(plan, wanted)
        chosen[image] = [pid for pid in plan["id"] if pid in ticks]
    return chosen


def forget_ticks() -> None:
    """Forget every remembered tick (tests; a kernel forgets when it ends)."""
    _remembered.clear()
