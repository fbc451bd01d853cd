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
from nimrunbook.images.refs import ImageRef
from nimrunbook.localdisk import NimCache, write_text_atomic
from nimrunbook.nim import list_profiles, pull_image, read_manifest
from nimrunbook.profiles import Manifest, enrich, model_parameters_b, parse_manifest
from nimrunbook.runbook.display import show_record, show_table
from nimrunbook.runbook.inputs import image_entries, registry_access, slug
from nimrunbook.runbook.picker import Change, ProfilePicker, flag, initial_ticks, resolve_selection, rows
from nimrunbook.runbook.session import Step
from nimrunbook.selection import check_listing, has_host_verdict, plan_warnings, select_profiles
from nimrunbook.store.keys import NgcUri

log = logging.getLogger(__name__)


def show_inventory(step: Step, inventory: Inventory) -> None:
    frame = pd.DataFrame(inventory.to_records()) if inventory else pd.DataFrame(columns=["product"])
    show_record("gpu-inventory", {"groups": inventory.to_records(), "notes": inventory.notes}, frame, "GPU inventory")
    for note in inventory.notes:
        log.warning(note)
    step.save(inventory={"groups": inventory.to_records(), "notes": inventory.notes, "counts": inventory.counts()})


def registry_digest(client, ref: str) -> str | None:
    """The manifest digest the registry served for ``ref`` (not the engine's local image id, which no registry
    knows); None when the engine has no digest from that repository (an image built or loaded locally)."""
    digests = client.images.get(ref).attrs.get("RepoDigests") or []
    repository = ImageRef.parse(ref).repository
    return next((d.partition("@")[2] for d in digests if d.partition("@")[0] == repository), None)


def profile_sizes(manifest: Manifest, cache_dir: str) -> dict[str, int]:
    """Bytes of each profile whose files are all in the NIM cache (the cache knows sizes; the manifest does not)."""
    if not cache_dir or not Path(cache_dir).is_dir():
        return {}
    cache, sizes = NimCache(cache_dir), {}
    for profile in manifest.profiles:
        total, complete = 0, bool(profile.files)
        for file in profile.files:
            uri = NgcUri.parse(file.uri or "")
            blob = cache.blob_of(uri.model_dirs(), uri.tag, uri.file) if uri and uri.file else None
            if blob is None:
                complete = False
                break
            total += blob.stat().st_size
        if complete:
            sizes[profile.id] = total
    return sizes


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
    cache_dir: str = "",
) -> dict[str, pd.DataFrame]:
    """For each image: pull it, run list-model-profiles, read the manifest, apply the selection rules.

    With ``list_with_gpus`` the listing runs with this host's GPUs; NIM then sorts the profiles for
    them, and every disagreement with the rules (run for the same GPUs) is shown. Profiles whose files
    are already in ``cache_dir`` get their size.
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
        pull_image(client, ref, access=access, progress=step.progress)
        listing, raw_listing = list_profiles(
            client, ref, environment=dict(listing_environment or {}), gpus=list_with_gpus
        )
        manifest, raw_manifest = read_manifest(client, ref)
        write_text_atomic(folder / "list-model-profiles.txt", raw_listing)
        write_text_atomic(folder / "model_manifest.yaml", raw_manifest)
        profiles = enrich(listing, manifest)
        parameters = model_parameters_b(ref) or model_parameters_b(manifest.model_name())
        plan = select_profiles(profiles, inventory, lora=lora, parameters_b=parameters)
        sizes = profile_sizes(manifest, cache_dir)
        plan["size"] = pd.array([sizes.get(i) for i in plan["id"]], dtype="Int64")
        plans[ref] = plan
        recorded[ref] = {
            "digest": registry_digest(client, ref),
            "folder": str(folder),
            "profiles": len(plan),
            "rules_selected": int(plan["selected"].sum()),
            "warnings": plan_warnings(plan),
        }
        shown = rows(plan)[["short id", "name", "size", "the rules"]]
        digest = recorded[ref]["digest"] or "digest unknown: not pulled from a registry"
        show_table(
            shown, f"{ref} ({digest}): {int(plan['selected'].sum())} of {len(plan)} profiles selected by the rules"
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


def make_picker(step: Step, plans: Mapping[str, pd.DataFrame], images, selected_profiles) -> ProfilePicker:
    """The picker, pre-ticked from the parameters (see :func:`wanted_selection`), or with the ticks a person
    made when its cell ran before in this kernel."""
    wanted = wanted_selection(plans, images, selected_profiles)
    initial = {ref: initial_ticks(plan, wanted[ref]) for ref, plan in plans.items()}
    operator = step.attempt.operator if step.attempt else ""
    return ProfilePicker(plans, initial, operator=operator)


def _override(rules: bool, final: bool, change: Change | None, step: Step) -> dict | None:
    """A final verdict that differs from the rules' is a person's decision: who, when, and how."""
    if rules == final:
        return None
    if change is not None:
        return {"by": change.by, "at": change.at, "via": "picker"}
    attempt = step.attempt
    return {"by": attempt.operator, "at": attempt.started, "via": "parameter selected_profiles"}


def candidates(step: Step, ref: str, plan: pd.DataFrame, final: list[str], picker: ProfilePicker | None) -> list[dict]:
    """Every profile the image offers, with the rules' verdict, the final one, and any override."""
    changes = picker.changes.get(ref, {}) if picker is not None else {}
    chosen, entries = set(final), []
    for _, row in plan.iterrows():
        rules, ticked = flag(row["selected"]), row["id"] in chosen
        size = row.get("size")
        entries.append(
            {
                "id": row["id"],
                "name": row["name"],
                "rules": "selected" if rules else "skipped",
                "rules_reason": row["reason"],
                "final": "selected" if ticked else "not selected",
                "override": _override(rules, ticked, changes.get(row["id"]), step),
                "size": None if size is None or pd.isna(size) else int(size),
                "listing_section": row.get("section"),  # NIM's verdict on the listing host, not on the cluster
            }
        )
    return entries


def _reason(entry: dict) -> str:
    override = entry["override"]
    if override is None:
        return entry["rules_reason"]
    verb = "ticked" if entry["final"] == "selected" else "unticked"
    return f"{verb} by {override['by']} at {override['at']} ({override['via']}); the rules: {entry['rules_reason']}"


def confirm_selection(
    step: Step,
    plans: Mapping[str, pd.DataFrame],
    picker: ProfilePicker | None,
    images=(),
    selected_profiles: str | Sequence[str] | Mapping = "auto",
) -> dict[str, list[str]]:
    """Record the final selection (the picker's ticks, or the parameters') as a static table plus a JSON record.

    The record keeps every candidate (``profiles``: the rules' verdict and reason, the final verdict, and who
    changed it when a person did) and the selected ones (``selection``, what later steps use).
    """
    chosen = resolve_selection(plans, wanted_selection(plans, images or list(plans), selected_profiles), picker)
    every, entries, table = {}, {}, []
    for ref, ids in chosen.items():
        every[ref] = candidates(step, ref, plans[ref], ids, picker)
        entries[ref] = [
            {"id": e["id"], "name": e["name"], "reason": _reason(e), "override": e["override"]}
            for e in every[ref]
            if e["final"] == "selected"
        ]
        table += [
            {"image": ref, "id": e["id"], "name": e["name"], "final": e["final"], "why": _reason(e)}
            for e in every[ref]
            if e["final"] == "selected" or e["override"]
        ]
    frame = pd.DataFrame(table, columns=["image", "id", "name", "final", "why"])
    changed = sum(1 for entries_ in every.values() for e in entries_ if e["override"])
    title = f"Final selection: {sum(len(v) for v in entries.values())} profiles" + (
        f", {changed} by hand (differing from the rules)" if changed else ""
    )
    show_record("selection", {"selection": entries}, frame, title)
    step.save(selection=entries, profiles=every)
    return chosen


def load_plan_facts(step: Step) -> tuple[dict, dict]:
    """(images, selection) that step 01 recorded; a clear error when it has not run."""
    facts = step.facts()
    if not facts.get("selection"):
        raise InputError(
            f"The run directory {step.run_dir} has no profile selection yet.",
            hint="Run 01_plan_profiles with the same run_dir first.",
        )
    return facts.get("images", {}), facts["selection"]


def manifest_of(step: Step, ref: str):
    folder = Path(step.facts()["images"][ref]["folder"])
    return parse_manifest((folder / "model_manifest.yaml").read_text())
