"""Step 01: list each image's profiles with its own tools, read its manifest, and select for the cluster."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from nimrunbook.engine import docker_client
from nimrunbook.gpus import Inventory
from nimrunbook.images import parse_refs
from nimrunbook.localdisk import write_text_atomic
from nimrunbook.nim import list_profiles, pull_image, read_manifest
from nimrunbook.profiles import enrich, parse_manifest
from nimrunbook.runbook.display import show_record, show_table
from nimrunbook.runbook.inputs import image_entries, registry_access, slug
from nimrunbook.runbook.picker import ProfilePicker, initial_ticks, resolve_selection
from nimrunbook.runbook.session import Step
from nimrunbook.selection import select_profiles

log = logging.getLogger(__name__)


def show_inventory(step: Step, inventory: Inventory) -> None:
    frame = pd.DataFrame(inventory.to_records()) if inventory else pd.DataFrame(columns=["product"])
    show_record("gpu-inventory", {"groups": inventory.to_records(), "notes": inventory.notes}, frame, "GPU inventory")
    for note in inventory.notes:
        log.warning(note)
    step.save(inventory={"groups": inventory.to_records(), "notes": inventory.notes, "counts": inventory.counts()})


def plan_images(
    step: Step,
    images,
    inventory: Inventory,
    *,
    lora: bool = True,
    ngc_api_key_env: str = "NGC_API_KEY",
    listing_environment: Mapping[str, str] | None = None,
    docker_host: str = "",
) -> dict[str, pd.DataFrame]:
    """For each image: pull it, run list-model-profiles, read the manifest, apply the selection rules."""
    entries = image_entries(images)
    parse_refs([ref for ref, _ in entries])  # the one rule (step 02 applies it too), before anything is pulled
    client = docker_client(docker_host or None)
    access = registry_access(None, None, ngc_api_key_env)
    plans: dict[str, pd.DataFrame] = {}
    recorded = {}
    for ref, _ in entries:
        folder = step.run_dir / "images" / slug(ref)
        folder.mkdir(parents=True, exist_ok=True)
        image_id = pull_image(client, ref, access=access, progress=step.progress)
        listing, raw_listing = list_profiles(client, ref, environment=dict(listing_environment or {}))
        manifest, raw_manifest = read_manifest(client, ref)
        write_text_atomic(folder / "list-model-profiles.txt", raw_listing)
        write_text_atomic(folder / "model_manifest.yaml", raw_manifest)
        plan = select_profiles(enrich(listing, manifest), inventory, lora=lora)
        plans[ref] = plan
        recorded[ref] = {
            "image_id": image_id,
            "folder": str(folder),
            "profiles": len(plan),
            "rules_selected": int(plan["selected"].sum()),
        }
        show_table(
            plan[["id", "name", "section", "selected", "reason"]].assign(id=plan["id"].str.slice(0, 12)),
            f"{ref}: {int(plan['selected'].sum())} of {len(plan)} profiles selected by the rules",
        )
    step.save(images=recorded)
    return plans


def wanted_selection(plans: Mapping[str, pd.DataFrame], images, selected_profiles) -> dict[str, str | list[str]]:
    """Per image, what the parameters ask for: ``selected_profiles[ref]``, else the image's own entry in
    ``images``, else ``selected_profiles`` itself ("auto" or a list of ids)."""
    per_image = dict(image_entries(images))
    wanted = {}
    for ref in plans:
        if isinstance(selected_profiles, Mapping):
            wanted[ref] = selected_profiles.get(ref, per_image.get(ref, "auto"))
        elif per_image.get(ref, "auto") != "auto":
            wanted[ref] = per_image[ref]
        else:
            wanted[ref] = selected_profiles
    return wanted


def make_picker(plans: Mapping[str, pd.DataFrame], images, selected_profiles) -> ProfilePicker:
    """The picker, pre-ticked from the parameters (see :func:`wanted_selection`)."""
    wanted = wanted_selection(plans, images, selected_profiles)
    return ProfilePicker(plans, {ref: initial_ticks(plan, wanted[ref]) for ref, plan in plans.items()})


def confirm_selection(
    step: Step,
    plans: Mapping[str, pd.DataFrame],
    picker: ProfilePicker | None,
    images=(),
    selected_profiles: str | Sequence[str] | Mapping = "auto",
) -> dict[str, list[str]]:
    """Record the final selection (the picker's ticks, or the parameters') as a static table plus a JSON record."""
    chosen = resolve_selection(plans, wanted_selection(plans, images or list(plans), selected_profiles), picker)
    entries, rows = {}, []
    for ref, ids in chosen.items():
        plan = plans[ref].set_index("id")
        entries[ref] = [{"id": i, "name": plan.loc[i, "name"], "reason": plan.loc[i, "reason"]} for i in ids]
        rows += [{"image": ref, **entry} for entry in entries[ref]]
    frame = pd.DataFrame(rows, columns=["image", "id", "name", "reason"])
    show_record("selection", {"selection": entries}, frame, f"Final selection: {len(rows)} profiles")
    step.save(selection=entries)
    return chosen


def load_plan_facts(step: Step) -> tuple[dict, dict]:
    """(images, selection) that step 01 recorded; a clear error when it has not run."""
    facts = step.facts()
    if not facts.get("selection"):
        from nimrunbook.errors import InputError

        raise InputError(
            f"The run directory {step.run_dir} has no profile selection yet.",
            hint="Run 01_plan_profiles with the same run_dir first.",
        )
    return facts.get("images", {}), facts["selection"]


def manifest_of(step: Step, ref: str):
    folder = Path(step.facts()["images"][ref]["folder"])
    return parse_manifest((folder / "model_manifest.yaml").read_text())
