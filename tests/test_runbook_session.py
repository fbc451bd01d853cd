"""A notebook step's session in a real IPython shell: its parameters checked as the kernel holds them, its
attempt recorded, a failing cell failing it, re-run cells continuing a finished attempt, and our errors shown
as a short box instead of a traceback."""

import re

import pytest

from nimrunbook.reports.execute import templates
from nimrunbook.runbook import parameters as params
from nimrunbook.runbook import session
from nimrunbook.runbook.record import FAILED, OK, RunRecord

PLAN = next(t for t in templates() if t.stem == "01_plan_profiles")


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_cell("from nimrunbook import runbook", store_history=False)
    yield shell
    if session._active is not None and session._active.status == "running":
        session._active.fail("test ended")
    session._active = None


def _cells(shell, run_dir, **values):
    """The notebook's parameters cell as written, then the values a prepared run folder injects."""
    cell = params.parameters_cell(params.read_notebook(PLAN))
    assert shell.run_cell(cell.source).success
    injected = {"run_dir": str(run_dir), "progress": "none", "images": ["nvcr.io/nim/meta/x:1"], "gpus": "L40S"}
    for name, value in {**injected, **values}.items():
        shell.user_ns[name] = value


def test_a_step_in_a_kernel_from_start_to_failure_to_a_new_attempt(shell, tmp_path, capsys):
    _cells(shell, tmp_path, operator="alice", change_id="CHG-7")
    assert shell.run_cell('step = runbook.start("01_plan_profiles", globals())').success
    record = RunRecord(tmp_path)
    first = record.read().step("01_plan_profiles").latest
    assert first.status == "running" and first.operator == "alice" and first.change_id == "CHG-7"
    assert first.parameters["gpus"] == "L40S" and first.parameters["run_dir"] == str(tmp_path)
    assert shell.run_cell('step.save(inventory={"counts": {"l40s": 1}})').success
    failed = shell.run_cell("raise RuntimeError('the listing broke')")  # any cell that raises fails the step
    assert not failed.success
    first = record.read().step("01_plan_profiles").latest
    assert first.status == FAILED and "RuntimeError: the listing broke" in first.error
    assert "inventory" not in record.facts()  # the failed attempt's results are not the run's
    capsys.readouterr()
    refused = shell.run_cell('step.save(selection={"x": []})')  # a later cell of the failed attempt
    assert not refused.success and "Run the notebook again from its first code cell" in capsys.readouterr().out
    assert shell.run_cell('step = runbook.start("01_plan_profiles", globals())').success
    assert shell.run_cell('step.save(selection={"img": [{"id": "a"}]}); step.done(selected=1)').success
    assert shell.run_cell('step.save(selection={"img": [{"id": "b"}]}); step.done(selected=1)').success  # re-run
    attempts = record.read().step("01_plan_profiles").attempts
    assert [(a.number, a.status, a.continues) for a in attempts] == [(1, FAILED, None), (2, OK, None), (3, OK, 2)]
    assert record.facts()["selection"] == {"img": [{"id": "b"}]}


def test_parameters_are_checked_as_the_kernel_holds_them(shell, tmp_path, capsys):
    _cells(shell, tmp_path, lora="maybe", images=[])
    capsys.readouterr()
    result = shell.run_cell('step = runbook.start("01_plan_profiles", globals())')
    assert not result.success
    shown = capsys.readouterr().out
    assert "lora must be true or false, not 'maybe'" in shown and "01_plan_profiles needs images" in shown
    assert "Traceback" not in shown and "File " not in shown  # our error: a box, not the package's insides
    attempt = RunRecord(tmp_path).read().step("01_plan_profiles").latest
    assert attempt.status == FAILED and "lora must be true or false" in attempt.error


def test_our_errors_are_a_box_with_what_to_do_and_others_keep_their_traceback(shell, capsys):
    shell.run_cell("from nimrunbook.errors import InputError")
    capsys.readouterr()
    shell.run_cell("raise InputError('The bucket nim-x does not exist', hint='Create it, or fix s3_bucket.')")
    box = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    assert "InputError (nimrunbook)" in box and "The bucket nim-x does not exist" in box
    assert "What to do: Create it, or fix s3_bucket." in box and "Traceback" not in box
    shell.run_cell("def broken():\n    return 1 / 0\nbroken()")
    assert "ZeroDivisionError" in capsys.readouterr().out  # an unexpected error: its traceback, as ever


def test_a_hint_is_a_sentence_of_its_own():
    from nimrunbook.errors import NimRunbookError

    assert str(NimRunbookError("manifest unknown: manifest unknown", hint="Check the image name.")).startswith(
        "manifest unknown: manifest unknown. Check"
    )
    listed = NimRunbookError("Preflight failed:\n  a: broken", hint="Fix each check named above.")
    assert str(listed).endswith("  a: broken\nFix each check named above.")


def test_one_timestamp_per_line_and_progress_lines_marked():
    import logging

    formatter = session._LineFormatter()

    def line(name: str, message: str, level: int = logging.INFO) -> str:
        return formatter.format(logging.LogRecord(name, level, __file__, 1, message, None, None))

    relayed = "[download-to-cache] 2026-11-27T21:36:38.000000Z  INFO nim_hub_ngc: Downloaded filename: config.json"
    assert line("nimrunbook.nim", relayed) == relayed  # the container's own time, not a second one
    assert re.fullmatch(r"\d\d:\d\d:\d\d step 01: ok", line("nimrunbook", "step 01: ok"))
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING careful", line("nimrunbook", "careful", logging.WARNING))
    assert re.fullmatch(r"\d\d:\d\d:\d\d progress pull x:1: 4.0 MB", line(session.PROGRESS_LOGGER, "pull x:1: 4.0 MB"))
