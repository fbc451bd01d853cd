"""The run record: attempts, facts from the latest successful attempt only, one clock, old and new versions,
one writer per run folder (a second process is refused), and no secret in it."""

import json
import subprocess
import sys
import textwrap

import pytest

from nimrunbook.errors import InputError, LockedError
from nimrunbook.runbook.record import (
    FAILED,
    OK,
    RUNNING,
    RecordVersionError,
    RunRecord,
    attempt_fields,
    parse_time,
    public_parameters,
)


def _attempt(record: RunRecord, step: str, status: str, **sections):
    attempt = record.begin(step, attempt_fields({"images": ["img:1"]}, operator="alice"))
    if sections:
        record.save(step, attempt.number, sections)
    return record.finish(step, attempt.number, status, error="it broke" if status == FAILED else None)


def test_only_the_latest_successful_attempt_feeds_later_steps(tmp_path):
    record = RunRecord(tmp_path)
    _attempt(record, "01_plan_profiles", OK, selection={"img:1": ["a"]}, images={"img:1": {"digest": "sha256:1"}})
    _attempt(record, "01_plan_profiles", FAILED, selection={"img:2": ["b"]}, images={"img:2": {}})
    run = record.read()
    step = run.step("01_plan_profiles")
    assert [a.status for a in step.attempts] == [OK, FAILED] and step.status == FAILED
    assert run.facts()["selection"] == {"img:1": ["a"]} and run.facts()["images"] == {"img:1": {"digest": "sha256:1"}}
    assert step.attempts[1].results["selection"] == {"img:2": ["b"]}  # kept in the failed attempt, for the audit
    data = json.loads(record.path.read_text())
    assert data["steps"]["01_plan_profiles"]["status"] == FAILED  # readers of version 1 see the status ...
    assert data["selection"] == {"img:1": ["a"]}  # ... and the run's facts at the top, from the successful attempt
    for attempt in step.attempts:
        assert parse_time(attempt.finished) >= parse_time(attempt.started) and attempt.seconds >= 0
    assert parse_time(step.attempts[1].started) >= parse_time(step.attempts[0].finished)


def test_a_later_success_of_another_step_wins_and_a_step_sees_its_own_results(tmp_path):
    record = RunRecord(tmp_path)
    _attempt(record, "02_mirror_images", OK, mirror={"registry": "outside"})
    _attempt(record, "06_verify_and_import_bundle", OK, mirror={"registry": "inside"})
    assert record.facts()["mirror"] == {"registry": "inside"}
    running = record.begin("07_configure_datarobot", attempt_fields({}))
    record.save("07_configure_datarobot", running.number, {"datarobot": {"values": "x"}})
    run = record.read()
    assert "datarobot" not in run.facts()  # not finished: not the run's
    mine = run.step("07_configure_datarobot").latest
    assert run.facts(current=("07_configure_datarobot", mine))["datarobot"] == {"values": "x"}


def test_an_abandoned_attempt_is_closed_when_the_next_one_begins(tmp_path):
    record = RunRecord(tmp_path)
    first = record.begin("03_download_profiles", attempt_fields({}))
    assert record.read().step("03_download_profiles").status == RUNNING
    record.begin("03_download_profiles", attempt_fields({}))
    closed = record.read().step("03_download_profiles").attempt(first.number)
    assert closed.status == FAILED and "abandoned" in closed.error


def test_a_finished_attempt_takes_nothing_more(tmp_path):
    record = RunRecord(tmp_path)
    done = _attempt(record, "00_preflight", OK)
    with pytest.raises(Exception, match="already ended"):
        record.save("00_preflight", done.number, {"preflight": {}})


def test_a_continuing_attempt_starts_from_the_finished_ones_results(tmp_path):
    record = RunRecord(tmp_path)
    first = _attempt(record, "01_plan_profiles", OK, inventory={"counts": {"l40s": 1}}, selection={"i": ["a"]})
    second = record.begin("01_plan_profiles", attempt_fields({"other": 1}), continues=first)
    assert second.continues == first.number and second.results["inventory"] == {"counts": {"l40s": 1}}
    assert second.parameters == first.parameters  # what was in force when those results were found


def test_version_1_records_are_read_and_never_written(tmp_path):
    old = {
        "format": "nimrunbook.run",
        "version": 1,
        "created": "2026-01-01T00:00:00Z",
        "user": "bob",
        "host": "staging",
        "tools": {"nimrunbook": "0.0.9"},
        "steps": {
            "01_plan_profiles": {"status": "started", "started": "2026-01-01T00:01:00Z", "parameters": {"lora": False}},
            "02_mirror_images": {"status": "ok", "started": "2026-01-01T00:02:00Z", "finished": "2026-01-01T00:03:00Z"},
        },
        "selection": {"img:1": [{"id": "a", "name": "x"}]},
    }
    (tmp_path / "run.json").write_text(json.dumps(old))
    record = RunRecord(tmp_path)
    run = record.read()
    assert run.version == 1 and run.facts()["selection"] == old["selection"]
    planned = run.step("01_plan_profiles").latest
    assert planned.status == FAILED and "never finished" in planned.error and planned.operator == "bob"
    assert run.step("02_mirror_images").status == OK
    with pytest.raises(RecordVersionError, match="version 1") as refused:
        record.begin("03_download_profiles", attempt_fields({}))
    assert "new run folder" in str(refused.value)
    assert json.loads((tmp_path / "run.json").read_text()) == old  # untouched


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"format": "nimrunbook.run", "version": 3, "steps": {}}', "version 3"),
        ("{not json", "is not JSON"),
        ('{"format": "something.else", "steps": {}}', "not a nimrunbook run record"),
        ("[1, 2]", "not a nimrunbook run record"),
    ],
)
def test_records_it_cannot_read_are_refused_clearly(tmp_path, text, message):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(InputError, match=message):
        RunRecord(tmp_path).read()


def test_a_second_writer_process_is_refused(tmp_path):
    record = RunRecord(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from nimrunbook.runbook.record import RunRecord
                from nimrunbook.runbook.record import attempt_fields
                record = RunRecord({str(tmp_path)!r})
                with record.lock():
                    record.begin("03_download_profiles", attempt_fields({{}}, operator="carol"))
                    print("held", flush=True)
                    time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError) as refused:
            record.begin("04_publish_profiles", attempt_fields({}))
        message = str(refused.value)
        assert (
            f"pid {holder.pid}" in message and "It is running step 03_download_profiles (attempt 1 by carol" in message
        )
        assert "04_publish_profiles" not in record.path.read_text()  # nothing written by the refused writer
    finally:
        holder.kill()
        holder.wait()
    record.begin("04_publish_profiles", attempt_fields({}))  # the lock went with its holder


def test_no_secret_in_the_record(tmp_path, monkeypatch):
    monkeypatch.setenv("NGC_API_KEY", "nvapi-recordtest-secret-0123456789")
    record = RunRecord(tmp_path)
    parameters = {"aws_secret_key": "x", "ngc_api_key_env": "NGC_API_KEY", "note": "nvapi-recordtest-secret-0123456789"}
    attempt = record.begin("01", attempt_fields(parameters))
    record.save("01", attempt.number, {"selection": {"said": "key nvapi-recordtest-secret-0123456789"}})
    record.finish("01", attempt.number, FAILED, error="failed with nvapi-recordtest-secret-0123456789")
    saved = record.read().step("01").latest
    assert saved.parameters["aws_secret_key"] == "(secret, not recorded)"
    assert saved.parameters["ngc_api_key_env"] == "NGC_API_KEY" and saved.secrets_present == ["NGC_API_KEY"]
    assert "nvapi-recordtest-secret" not in record.path.read_text()
    assert public_parameters({"password": ""}) == {"password": ""}  # an empty secret name says nothing
    key_files = {"sign_key": "/home/op/.ssh/bundle_ed25519", "public_key": "signer.pub"}
    assert public_parameters(key_files) == key_files  # which key file signed or checked: a path, no secret


def test_reserved_names_are_no_sections(tmp_path):
    record = RunRecord(tmp_path)
    attempt = record.begin("01", attempt_fields({}))
    with pytest.raises(Exception, match="reserved"):
        record.save("01", attempt.number, {"steps": {}})
