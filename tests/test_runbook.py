"""The runbook's own pieces, without a kernel: the picker, the parameters, the run record."""

import json

import numpy as np
import pandas as pd
import pytest

from nimrunbook.errors import InputError, UnknownProfileError
from nimrunbook.gpus import inventory_from_text
from nimrunbook.profiles import parse_listing
from nimrunbook.runbook.inputs import image_entries, recorded_s3_settings
from nimrunbook.runbook.picker import ProfilePicker, forget_ticks, initial_ticks, resolve_selection, rows
from nimrunbook.runbook.planning import wanted_selection
from nimrunbook.runbook.record import RunRecord
from nimrunbook.selection import select_profiles


@pytest.fixture
def plan(guide_listing):
    return select_profiles(parse_listing(guide_listing), inventory_from_text("L40S, A10G"), lora=False)


def test_resolve_selection_from_parameters(plan):
    plans = {"img": plan}
    auto = resolve_selection(plans, "auto")["img"]
    assert auto == list(plan.loc[plan.selected, "id"])
    explicit = [plan.id[5], plan.id[0]]
    assert resolve_selection(plans, explicit)["img"] == [plan.id[0], plan.id[5]]  # listing order
    assert resolve_selection(plans, {"img": explicit})["img"] == [plan.id[0], plan.id[5]]
    with pytest.raises(InputError, match="neither 'auto'"):
        resolve_selection(plans, "everything")


def test_per_image_entries_win_over_the_shared_parameter(plan):
    images = [{"ref": "img", "profiles": [plan.id[1]]}, "other"]
    wanted = wanted_selection({"img": plan, "other": plan}, images, "auto")
    assert wanted == {"img": [plan.id[1]], "other": "auto"}


def test_picker_ticks_filters_and_static_record(plan):
    forget_ticks()
    picker = ProfilePicker({"img": plan}, {"img": initial_ticks(plan, "auto")})
    assert picker.selected()["img"] == list(plan.loc[plan.selected, "id"])
    assert "4 profiles selected" in picker.total.value and plan.id[0] in picker.ids.value
    picker.untick("img", plan.id[0])
    assert plan.id[0] not in picker.ids.value and "3 profiles selected" in picker.total.value
    picker.filters["gpu"].value = "l40s"
    hidden = [pid for pid, _, line in picker.boxes["img"] if line[0].layout.display == "none"]
    assert plan.id[0] in hidden and plan.id[2] not in hidden  # generic hidden, l40s shown
    html = picker.static_html()
    assert "profile picker" in html and "tensorrt_llm-l40s-bf16-tp1-pp1-throughput" in html


def _shown(picker, image="img") -> list[str]:
    return [pid for pid, _, line in picker.boxes[image] if line[0].layout.display != "none"]


def test_the_lora_filter_shows_what_it_says_and_an_empty_view_says_so(plan):
    forget_ticks()
    lora = plan.copy()
    lora["lora"] = lora["lora"].astype(object).map(lambda v: np.bool_(v))  # numpy bools, as a merge can leave them
    picker = ProfilePicker({"img": lora}, {"img": initial_ticks(lora, "auto")})
    picker.filters["lora"].value = "yes"
    assert {plan.name[plan.id == pid].iloc[0] for pid in _shown(picker)} == {n for n in plan.name if "lora" in n}
    assert picker.empty["img"].layout.display == "none"
    picker.filters["lora"].value = "no"
    assert all("lora" not in plan.name[plan.id == pid].iloc[0] for pid in _shown(picker))
    picker.filters["gpu"].value = "b200"  # b200 profiles here are all LoRA variants: none left with LoRA "no"
    assert _shown(picker) == [] and picker.empty["img"].layout.display == ""
    assert "no profiles match" in picker.empty["img"].value


def test_sizes_when_known_and_a_running_total_in_gb(plan):
    forget_ticks()
    sized = plan.copy()
    sized["size"] = pd.array([2_500_000_000 if i == 0 else None for i in range(len(plan))], dtype="Int64")
    picker = ProfilePicker({"img": sized}, {"img": {plan.id[0], plan.id[1]}})
    assert "2 profiles selected</b>: 2.5 GB + 1 of size unknown until downloaded" in picker.total.value
    assert list(rows(sized)["size"][:2]) == ["2.5 GB", "unknown until downloaded"]
    picker.untick("img", plan.id[1])
    assert picker.total.value.endswith(": 2.5 GB")


def test_ticks_survive_a_rerun_of_the_cell_until_the_rules_are_asked_for_again(plan):
    forget_ticks()
    rules = initial_ticks(plan, "auto")
    skipped = next(pid for pid in plan.id if pid not in rules)
    picker = ProfilePicker({"img": plan}, {"img": rules}, operator="alice")
    picker.set_tick("img", skipped, True)
    again = ProfilePicker({"img": plan}, {"img": rules}, operator="alice")  # the cell run again
    assert skipped in again.selected()["img"] and again.changes["img"][skipped].by == "alice"
    again.back_to_rules()
    assert set(again.selected()["img"]) == rules and again.changes["img"] == {}
    assert set(ProfilePicker({"img": plan}, {"img": rules}).selected()["img"]) == rules


def test_overrides_are_recorded_with_who_and_when(plan, tmp_path):
    from nimrunbook import runbook

    forget_ticks()
    plans = {"img": plan}
    step = runbook.begin("01_plan_profiles", tmp_path, "none", operator="alice")
    picker = runbook.make_picker(step, plans, ["img"], "auto")
    rules = initial_ticks(plan, "auto")
    skipped = next(pid for pid in plan.id if pid not in rules)
    dropped = sorted(rules)[0]
    picker.set_tick("img", skipped, True)
    picker.untick("img", dropped)
    runbook.confirm_selection(step, plans, picker, ["img"], "auto")
    step.done()
    facts = RunRecord(tmp_path).facts()
    every = {e["id"]: e for e in facts["profiles"]["img"]}
    assert len(every) == len(plan)  # every candidate, with the rules' verdict and reason
    assert every[skipped]["rules"] == "skipped" and every[skipped]["final"] == "selected"
    assert every[skipped]["override"]["by"] == "alice" and every[skipped]["override"]["via"] == "picker"
    assert every[dropped]["rules"] == "selected" and every[dropped]["final"] == "not selected"
    untouched = next(pid for pid in rules if pid != dropped)
    assert every[untouched]["override"] is None and every[untouched]["rules_reason"]
    chosen = {e["id"]: e for e in facts["selection"]["img"]}
    assert dropped not in chosen and chosen[skipped]["reason"].startswith("ticked by alice at ")
    assert "the rules: skipped:" in chosen[skipped]["reason"]


def test_a_selection_given_as_a_parameter_is_an_override_too(plan, tmp_path):
    from nimrunbook import runbook

    step = runbook.begin("01_plan_profiles", tmp_path, "none", operator="bob")
    skipped = next(pid for pid in plan.id if pid not in initial_ticks(plan, "auto"))
    runbook.confirm_selection(step, {"img": plan}, None, ["img"], [skipped])
    step.done()
    entry = next(e for e in RunRecord(tmp_path).facts()["profiles"]["img"] if e["id"] == skipped)
    assert entry["override"]["via"] == "parameter selected_profiles" and entry["override"]["by"] == "bob"


def test_image_entries_from_a_plan_file(tmp_path):
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text("images:\n  - ref: nvcr.io/nim/meta/a:1\n    profiles: [x]\n  - nvcr.io/nim/meta/b:2\n")
    assert image_entries(str(plan_file)) == [("nvcr.io/nim/meta/a:1", ["x"]), ("nvcr.io/nim/meta/b:2", "auto")]
    with pytest.raises(InputError):
        image_entries([])
    with pytest.raises(InputError):
        image_entries([{"name": "x"}])


def test_recorded_s3_settings_fall_back_to_the_record():
    facts = {
        "publish": {
            "settings": {"bucket": "nim-profiles", "endpoint_url": "https://minio.example.com", "region": "eu-1"}
        }
    }
    settings = recorded_s3_settings(facts)
    assert (settings.bucket, settings.endpoint_url, settings.region) == (
        "nim-profiles",
        "https://minio.example.com",
        "eu-1",
    )
    assert recorded_s3_settings(facts, bucket="other").bucket == "other"
    with pytest.raises(InputError, match="No bucket"):
        recorded_s3_settings({})
    assert json.dumps(settings.record())  # the record never holds keys


def test_pasted_lines_and_ids_from_a_person(plan):
    first, fifth = plan.id[0], plan.id[5]
    pasted = [f"{first} ({plan.name[0]})", f"  {fifth.upper()}: {plan.name[5]}  "]
    assert initial_ticks(plan, pasted) == {first, fifth}
    assert initial_ticks(plan, f"{first} ({plan.name[0]})\n{fifth}") == {first, fifth}
    assert resolve_selection({"img": plan}, [fifth, first])["img"] == [first, fifth]


@pytest.mark.parametrize(
    "given, nearest",
    [
        ("ac5071bbd91e…", "ac5071bbd91efcc71dc486fcd5210779570868b3b8328b4abf7a408a58b5e57c"),  # cut short
        ("vllm-bf16-tp1-pp1", "4f904d571fe60ff24695b5ee2aa42da58cb460787a968f1e8a09f5a7e862728d"),  # a name
        ("4f904d571fe60ff24695b5ee2aa42da58cb460787a968f1e8a09f5a7e862728e", "4f904d571fe60ff2"),  # one digit off
    ],
)
def test_unknown_or_malformed_ids_are_errors_naming_the_nearest(plan, given, nearest):
    with pytest.raises(UnknownProfileError) as info:
        initial_ticks(plan, [given])
    assert repr(given) in str(info.value) and nearest in str(info.value)


UNTAGGED = "nvcr.io/nim/meta/llama-3.2-1b-instruct"


def test_one_tag_rule_in_steps_01_and_02(tmp_path):
    """An untagged ref is refused the same way by the plan (01), the mirror (02) and a pull: never `latest`."""
    from nimrunbook import runbook
    from nimrunbook.images import RegistryAccess, mirror
    from nimrunbook.nim import pull_image

    step = runbook.begin("01_plan_profiles", tmp_path, "none")
    with pytest.raises(InputError) as planned:
        runbook.plan_images(step, [UNTAGGED], inventory_from_text("L40S"))  # refused before any engine is asked
    step = runbook.begin("01_plan_profiles", tmp_path, "none")
    step.save(images={UNTAGGED: {"folder": str(tmp_path)}}, selection={UNTAGGED: [{"id": "x", "name": "x"}]})
    step.done()
    with pytest.raises(InputError) as mirrored:
        runbook.mirror_images(
            runbook.begin("02_mirror_images", tmp_path, "none"), "registry.example.com", RegistryAccess()
        )
    with pytest.raises(InputError) as library:
        mirror([UNTAGGED], "registry.example.com")
    with pytest.raises(InputError) as pulled:
        pull_image(None, UNTAGGED)
    assert "names no tag" in str(planned.value) and "never rely on latest" in str(planned.value)
    assert str(planned.value) == str(mirrored.value) == str(library.value) == str(pulled.value)


def test_preflight_with_a_broken_image_backend_fails_its_checks_instead_of_crashing(tmp_path, monkeypatch):
    from nimrunbook import runbook
    from nimrunbook.errors import PreflightError

    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # no skopeo: the Docker engine would be the backend
    step = runbook.begin("00_preflight", tmp_path / "run", "none")
    with pytest.raises(PreflightError) as info:  # the step's own verdict, after every check ran and was recorded
        runbook.run_checks(
            step,
            docker_host="unix:///tmp/nimrunbook-no-engine-here.sock",  # and no engine answers
            images=["nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5"],
            registries=["registry.example.com"],
            tools=(),
        )
    step.fail(info.value)
    rows = {
        row["check"]: row
        for row in RunRecord(tmp_path / "run").read().step("00_preflight").latest.results["preflight"]["checks"]
    }
    for check in ("image nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5", "registry registry.example.com"):
        assert rows[check]["status"] == "fail" and "No Docker engine answers" in rows[check]["detail"]
    assert rows["Docker engine"]["status"] == "fail" and len(info.value.problems) == 3
