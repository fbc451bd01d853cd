"""The profile picker: candidate profiles with one checkbox each, pre-ticked by the selection rules.

Core ipywidgets only (they ship with JupyterLab; no CDN-only widget library).
Under papermill nobody clicks, so the picker's state is exactly its initial
ticks, which come from the ``selected_profiles`` parameter: one code path,
:func:`resolve_selection`, serves both.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import pandas as pd

from nimrunbook.progress import human_bytes
from nimrunbook.selection import resolve_profile_ids, wanted_ids

COLUMNS = ["short id", "name", "engine", "gpu", "precision", "tp/pp", "mode", "lora", "size", "reason"]


def initial_ticks(plan: pd.DataFrame, wanted: str | Sequence[str]) -> set[str]:
    """``"auto"``: what the rules selected; otherwise the ids given (one per item, or pasted
    ``<id> (name)`` lines). An unknown or malformed id is an error naming the nearest known ids."""
    if isinstance(wanted, str) and wanted.strip() == "auto":
        return set(plan.loc[plan["selected"], "id"])
    return set(resolve_profile_ids(plan, wanted_ids(wanted)))


def rows(plan: pd.DataFrame, sizes: Mapping[str, int] | None = None) -> pd.DataFrame:
    """The picker's table: one row per profile, as a person reads it."""

    def tp_pp(row) -> str:
        tp, pp = row.get("tp"), row.get("pp")
        return "" if pd.isna(tp) else f"{int(tp)}/{'' if pd.isna(pp) else int(pp)}"

    return pd.DataFrame(
        {
            "short id": plan["id"].str.slice(0, 12),
            "name": plan["name"],
            "engine": plan["engine"].fillna(""),
            "gpu": plan["gpu"].fillna("generic"),
            "precision": plan["precision"].fillna(""),
            "tp/pp": [tp_pp(r) for _, r in plan.iterrows()],
            "mode": plan["mode"].fillna(""),
            "lora": plan["lora"].map(lambda v: "yes" if v is True else ""),
            "size": [human_bytes(sizes[i]) if sizes and i in sizes else "" for i in plan["id"]],
            "reason": plan["reason"],
        }
    )


class ProfilePicker:
    """Checkbox table per image, with filters, a running total and the selected ids."""

    def __init__(
        self,
        plans: Mapping[str, pd.DataFrame],
        initial: Mapping[str, set[str]],
        sizes: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        import ipywidgets as w

        self.plans = dict(plans)
        self.sizes = {k: dict(v) for k, v in (sizes or {}).items()}
        self.boxes: dict[str, list[tuple[str, object, object]]] = {}
        sections = []
        for image, plan in self.plans.items():
            table = rows(plan, self.sizes.get(image))
            cells = [w.HTML(f"<b>{html.escape(c)}</b>") for c in ["use", *COLUMNS]]
            for (_, row), profile_id in zip(table.iterrows(), plan["id"], strict=True):
                box = w.Checkbox(
                    value=profile_id in initial.get(image, set()),
                    indent=False,
                    description="",
                    layout=w.Layout(width="2em"),
                )
                box.observe(self._changed, names="value")
                line = [box, *(w.HTML(html.escape(str(row[c]))) for c in COLUMNS)]
                self.boxes.setdefault(image, []).append((profile_id, box, line))
                cells += line
            grid = w.GridBox(
                cells, layout=w.Layout(grid_template_columns=f"2.5em repeat({len(COLUMNS)}, auto)", grid_gap="0 12px")
            )
            sections.append(w.VBox([w.HTML(f"<h4>{html.escape(image)}</h4>"), grid]))
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
        self.total = w.HTML()
        self.ids = w.Textarea(disabled=True, layout=w.Layout(width="100%", height="8em"), description="selected ids")
        self.widget = w.VBox([w.HBox(list(self.filters.values())), *sections, self.total, self.ids])
        self._changed()

    def _visible(self, image: str, index: int) -> bool:
        row = self.plans[image].iloc[index]
        for column in ("gpu", "engine", "precision"):
            wanted = self.filters[column].value
            value = row[column] if row[column] is not None and not pd.isna(row[column]) else "generic"
            if wanted != "all" and str(value) != wanted:
                return False
        lora = self.filters["lora"].value
        return lora == "all" or (lora == "yes") == (row["lora"] is True)

    def _filter(self, _change=None) -> None:
        for image, entries in self.boxes.items():
            for index, (_, _, line) in enumerate(entries):
                shown = "" if self._visible(image, index) else "none"
                for cell in line:
                    cell.layout.display = shown

    def _changed(self, _change=None) -> None:
        chosen = self.selected()
        count = sum(len(v) for v in chosen.values())
        known = [self.sizes.get(img, {}).get(pid) for img, ids in chosen.items() for pid in ids]
        if known and all(known):
            size = human_bytes(sum(known))
        elif any(known):
            size = human_bytes(sum(s for s in known if s)) + " + sizes not yet known"
        else:
            size = "sizes not yet known"
        self.total.value = f"<b>{count} profiles selected</b> ({size})"
        self.ids.value = "\n".join(f"{image}: {' '.join(ids)}" for image, ids in chosen.items())

    def selected(self) -> dict[str, list[str]]:
        """Image -> ticked profile ids, in listing order."""
        return {image: [pid for pid, box, _ in entries if box.value] for image, entries in self.boxes.items()}

    def untick(self, image: str, profile_id: str) -> None:
        for pid, box, _ in self.boxes[image]:
            if pid == profile_id:
                box.value = False

    def static_html(self) -> str:
        """The picker as a plain table of its ticks: what a report shows where widgets cannot run."""
        from nimrunbook.runbook.display import table_html

        chosen = self.selected()
        parts = []
        for image, plan in self.plans.items():
            table = rows(plan, self.sizes.get(image))
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
