"""Step 01: list each image's profiles with its own tools, read its manifest, and select for the cluster."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from nimrunbook.engine import docker_client
from nimrunbook.errors import InputError
from nimrunbook.gpus import Inventory, listing_host
from nimrunbook.images import parse_refs
from nimrunbook.localdisk import write_text_atomic
from nimrunbook.nim import list_profiles, pull_image, read_manifest
from nimrunbook.profiles import enrich, model_parameters_b, parse_manifest
from nimrunbook.runbook.display import show_record, show_table
from nimrunbook.runbook.inputs import image_entries, registry_access, slug
from nimrunbook.runbook.picker import ProfilePicker, initial_ticks, resolve_selection
from nimrunbook.runbook.session import Step
from nimrunbook.selection import check_listing, has_host_verdict, plan_warnings, select_profiles

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
    list_with_gpus: bool = False,
) -> dict[str, pd.DataFrame]:
    """For each image: pull it, run list-model-profiles, read the manifest, apply the selection rules.

    With ``list_with_gpus`` the listing runs with this host's GPUs; NIM then sorts the profiles for
    them, and every disagreement with the rules (run for the same GPUs) is shown.
    """
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
        listing, raw_listing = list_profiles(
            client, ref, environment=dict(listing_environment or {}), gpus=list_with_gpus
        )
        manifest, raw_manifest = read_manifest(client, ref)
        write_text_atomic(folder / "list-model-profiles.txt", raw_listing)
        write_text_atomic(folder / "model_manifest.yaml", raw_manifest)
        profiles = enrich(listing, manifest)
        parameters = model_parameters_b(ref) or model_parameters_b(manifest.model_name())
        plan = select_profiles(profiles, inventory, lora=lora, parameters_b=parameters)
        plans[ref] = plan
        recorded[ref] = {
            "image_id": image_id,
            "folder": str(folder),
            "profiles": len(plan),
            "rules_selected": int(plan["selected"].sum()),
            "warnings": plan_warnings(plan),
        }
        show_table(
            plan[["id", "name", "section", "selected", "reason"]].assign(id=plan["id"].str.slice(0, 12)),
            f"{ref}: {int(plan['selected'].sum())} of {len(plan)} profiles selected by the rules",
        )
        for warning in recorded[ref]["warnings"]:
            log.warning("%s: %s", ref, warning)
        if has_host_verdict(listing):
            recorded[ref]["self_check"] = _self_check(ref, profiles, raw_listing, parameters)
    step.save(images=recorded)
    return plans


def _self_check(ref: str, profiles: pd.DataFrame, raw_listing: str, parameters: float | None) -> dict:
    """NIM sorted the profiles for this host's GPUs: show where the rules, for the same GPUs, disagree."""
    try:
        check = check_listing(profiles, listing_host(raw_listing), parameters_b=parameters)
    except InputError as error:
        log.warning("%s: no self-check: %s", ref, error)
        return {"summary": str(error)}
    log.info("%s: %s", ref, check.summary())
    if len(check.disagreements):
        show_table(check.disagreements, f"{ref}: {check.summary()}")
    return check.to_record()


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
