"""Steps 07 and 08: tell DataRobot where everything is; plan a NIM tag update."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nimrunbook.datarobot import (
    DataRobotSettings,
    check_read_credentials,
    merge_values,
    plan_update,
    refresh_commands,
    run_refresh,
    secure_configuration_steps,
    validate,
    values_yaml,
)
from nimrunbook.datarobot.values import raise_for_problems
from nimrunbook.engine import docker_client
from nimrunbook.errors import InputError
from nimrunbook.localdisk import write_text_atomic
from nimrunbook.nim import pull_image, read_manifest
from nimrunbook.runbook.display import show_record, show_table, show_text
from nimrunbook.runbook.inputs import registry_access
from nimrunbook.runbook.session import Step
from nimrunbook.store import S3Settings, load_processed
from nimrunbook.store.plan import PlannedObject


def datarobot_settings(step: Step, settings: S3Settings) -> DataRobotSettings:
    """The values, from what this run (or the bundle it imported) mirrored and published."""
    facts = step.facts()
    mirrored = facts.get("mirror", {})
    if not mirrored.get("images"):
        raise InputError(
            f"The run directory {step.run_dir} records no mirrored images.",
            hint="Run 02_mirror_images (online) or 06_verify_and_import_bundle (inside) with the same run_dir first.",
        )
    registry = mirrored["registry"].rstrip("/")
    allowlist = [copy["source"] for copy in mirrored["images"]]
    return DataRobotSettings(registry, settings.bucket, settings.region, settings.endpoint_url, allowlist)


def build_and_check_values(step: Step, dr: DataRobotSettings, values_file: str = "", write: bool = False) -> str:
    facts = step.facts()
    published = list(facts.get("publish", {}).get("images", {}))
    problems = validate(dr, mirrored=facts["mirror"]["images"], published_images=published)
    show_table(
        pd.DataFrame([p.__dict__ for p in problems], columns=["field", "message"]),
        "Validation: " + ("no problems" if not problems else f"{len(problems)} problems"),
    )
    raise_for_problems(problems)
    text = values_yaml(dr)
    show_text(text, "Helm values for DataRobot")
    write_text_atomic(step.run_dir / "datarobot-values.yaml", text)
    record = {"values": text, "values_file": values_file or None}
    if values_file:
        diff, backup = merge_values(values_file, dr, write=write)
        show_text(diff or "no change", f"Merge into {values_file}" + (" (written)" if write and diff else " (dry run)"))
        record.update(diff=diff, backup=str(backup) if backup else None, written=bool(write and diff))
    step.save(datarobot=record)
    return text


def refresh(step: Step, namespace: str, kubeconfig: str = "") -> None:
    show_text(refresh_commands(namespace), "Refresh the NIM templates now (kubectl)")
    if kubeconfig:
        result = run_refresh(namespace, kubeconfig=kubeconfig)
        show_table(
            pd.DataFrame([{"job": result.job, "succeeded": result.succeeded, "reason": result.reason}]), "Refresh job"
        )
        step.save(refresh={"job": result.job, "succeeded": result.succeeded, "reason": result.reason})
        if not result.succeeded:
            raise InputError(f"The refresh job {result.job} failed: {result.reason}", hint="Read its logs above.")


def run_objects(step: Step) -> list[PlannedObject]:
    """Every object this run published (from its processed directories, or the bundle)."""
    facts = step.facts()
    objects: dict[str, PlannedObject] = {}
    for entry in facts.get("publish", {}).get("images", {}).values():
        if entry.get("directory"):
            objects.update({o.key: o for o in load_processed(entry["directory"])[1]})
    if facts.get("bundle", {}).get("path") and not objects:
        from nimrunbook.runbook.inside import bundle_facts

        for o in bundle_facts(facts["bundle"]["path"])["objects"]:
            objects[o["key"]] = PlannedObject(
                o["key"], o["uri"], Path(o["path"]), o["size"], o["profiles"], o["sha256"]
            )
    return list(objects.values())


def check_credentials(step: Step, readonly: S3Settings) -> None:
    show_text(
        secure_configuration_steps(readonly.bucket, readonly.endpoint_url, readonly.region),
        "Secure Configuration in DataRobot",
    )
    check = check_read_credentials(readonly, run_objects(step))
    show_table(
        check.objects.groupby("status").size().reset_index(name="objects"),
        "Read check with the credentials DataRobot will use",
    )
    for warning in check.warnings:
        show_text(warning, "Warning")
    step.save(
        credentials={
            "can_list": check.can_list,
            "ok": check.ok,
            "warnings": check.warnings,
            "settings": readonly.record(),
        }
    )
    check.raise_for_failure()


def update_tag(
    step: Step,
    old_image: str,
    new_image: str,
    bucket_keys: set[str],
    *,
    selected: list[str] | None = None,
    ngc_api_key_env: str = "NGC_API_KEY",
    supported_images: list[str] | None = None,
    docker_host: str = "",
):
    client = docker_client(docker_host or None)
    access = registry_access(None, None, ngc_api_key_env)
    manifests = []
    for ref in (old_image, new_image):
        pull_image(client, ref, access=access, progress=step.progress)
        manifests.append(read_manifest(client, ref)[0])
    old, new = manifests
    chosen = selected or [e["id"] for e in step.facts().get("selection", {}).get(old_image, [])]
    names_before = {p.id: p.name for p in old.profiles}
    by_name = {p.name: p.id for p in new.profiles}
    mapped = [pid if new.profile(pid) else by_name.get(names_before.get(pid, ""), "") for pid in chosen]
    plan = plan_update(new_image, old, new, [m for m in mapped if m], bucket_keys, supported_images=supported_images)
    show_table(
        plan.changes.assign(id=plan.changes["id"].str.slice(0, 12)), f"{old_image} -> {new_image}: profile changes"
    )
    show_record(
        "tag-update",
        {
            "image": new_image,
            "to_transfer": plan.keys_to_transfer,
            "already_there": len(plan.keys_already_there),
            "notes": plan.notes,
        },
        pd.DataFrame({"object to transfer": plan.keys_to_transfer}),
        f"Smallest transfer: {len(plan.keys_to_transfer)} objects",
    )
    for note in plan.notes:
        show_text(note, "Note")
    step.save(update={"from": old_image, "to": new_image, "to_transfer": plan.keys_to_transfer, "notes": plan.notes})
    return plan
