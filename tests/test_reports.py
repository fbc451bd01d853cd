"""Reports an auditor can sign: a header from the run record (with the parameters as used, visible with code
hidden), progress lines collapsed, every step of the run named (those without an executed notebook too), tool
versions as a table; and `report` of a folder that holds no run is an error."""

import json

import nbformat
import pytest

from nimrunbook import cli
from nimrunbook.reports import rebuild_reports
from nimrunbook.reports.html import collapse_progress
from nimrunbook.runbook.display import RECORD_MIMETYPE
from nimrunbook.runbook.record import FAILED, OK, RunRecord, attempt_fields
from nimrunbook.workdir import init_workdir


def _ran(record: RunRecord, step: str, status: str, **parameters):
    attempt = record.begin(step, attempt_fields(parameters, operator="alice", change_id="CHG-42"))
    return record.finish(step, attempt.number, status, error="boom" if status == FAILED else None)


def _executed(path, attempt: int, stream: str = "") -> None:
    """A notebook as a person saves it after running it: its header output, and a stream of log lines."""
    header = nbformat.v4.new_output(
        "display_data", data={RECORD_MIMETYPE: {"kind": "attempt", "attempt": attempt}, "text/plain": "attempt"}
    )
    cells = [nbformat.v4.new_code_cell("step = runbook.start(...)", execution_count=1, outputs=[header])]
    if stream:
        cells.append(
            nbformat.v4.new_code_cell(
                "work()", execution_count=2, outputs=[nbformat.v4.new_output("stream", name="stdout", text=stream)]
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


def test_header_index_and_steps_without_an_executed_notebook(tmp_path):
    run = tmp_path / "run"
    init_workdir(run)  # every notebook prepared, none run
    record = RunRecord(run)
    _ran(record, "01_plan_profiles", OK, gpus="L40S, A10G", lora=False)
    _ran(record, "04_publish_profiles", OK, s3_bucket="nim-profiles")  # ran in JupyterLab, never saved
    _executed(run / "notebooks/01_plan_profiles.ipynb", 1)
    written = rebuild_reports(run)
    assert [p.name for p in written] == ["01_plan_profiles.html", "index.html"]
    report = (run / "reports/01_plan_profiles.html").read_text()
    header = report[report.index('class="nimrunbook-header"') :]
    for fact in ("01_plan_profiles: OK", "alice", "CHG-42", "Parameters as used", "L40S, A10G", "lora"):
        assert fact in header, fact
    assert "step = runbook.start" not in report  # code hidden; the header is not code
    index = (run / "index.html").read_text()
    assert "04_publish_profiles" in index and "no executed notebook" in index  # named, not silently left out
    assert "05_create_bundle" in index and "not run" in index
    assert "<th>papermill</th>" in index  # tool versions as a table


def test_a_notebook_older_than_the_record_says_so(tmp_path):
    run = tmp_path / "run"
    record = RunRecord(run)
    _ran(record, "01_plan_profiles", OK)
    _ran(record, "01_plan_profiles", FAILED)
    _executed(run / "notebooks/01_plan_profiles.ipynb", 1)
    rebuild_reports(run)
    report = (run / "reports/01_plan_profiles.html").read_text()
    assert "01_plan_profiles: OK" in report and "latest attempt of this step is 2 (failed" in report
    assert "failed" in (run / "index.html").read_text()


def test_progress_lines_collapse_to_each_tasks_last_line(tmp_path):
    lines = [
        "10:00:00 step 03: run folder /x\n",
        "10:00:01 progress download img: 10%, 1.0 GB of 10.0 GB, 1.0 GB/s\n",
        "10:00:02 progress pull nvcr.io/nim/meta/x:1.8.5: 4.0 MB\n",
        "10:00:09 progress download img: 90%, 9.0 GB of 10.0 GB, 1.0 GB/s\n",
        "10:00:10 progress download img: 100%, 10.0 GB of 10.0 GB, 1.0 GB/s (done)\n",
        "10:00:11 WARNING something to read\n",
    ]
    kept = collapse_progress("".join(lines))
    assert kept.splitlines() == [line.rstrip("\n") for line in (lines[0], lines[2], lines[4], lines[5])]
    run = tmp_path / "run"
    _ran(RunRecord(run), "03_download_profiles", OK)
    _executed(run / "notebooks/03_download_profiles.ipynb", 1, "".join(lines))
    rebuild_reports(run)
    report = (run / "reports/03_download_profiles.html").read_text()
    assert "100%" in report and "90%" not in report and "something to read" in report


@pytest.mark.parametrize("made", ["missing", "empty", "prepared only"])
def test_report_of_a_folder_with_no_run_is_an_error(tmp_path, capsys, made):
    folder = tmp_path / "run"
    if made == "empty":
        folder.mkdir()
    elif made == "prepared only":
        init_workdir(folder)
    assert cli.main(["report", str(folder)]) == 2
    said = capsys.readouterr().err
    assert "holds no nimrunbook run" in said or "does not exist" in said
    assert "Traceback" not in said and not (folder / "index.html").exists()


def test_the_record_is_linked_and_secret_free(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "reports-test-secret-value-123")
    run = tmp_path / "run"
    _ran(RunRecord(run), "00_preflight", OK, note="reports-test-secret-value-123")
    _executed(run / "notebooks/00_preflight.ipynb", 1, "10:00:00 said reports-test-secret-value-123\n")
    for path in rebuild_reports(run):
        assert "reports-test-secret-value-123" not in path.read_text()
    assert 'href="run.json"' in (run / "index.html").read_text()
    assert json.loads((run / "run.json").read_text())["steps"]["00_preflight"]["status"] == "ok"


def test_run_checks_parameters_before_any_kernel_starts(tmp_path, capsys):
    run = tmp_path / "run"
    code = cli.main(["run", "01_plan_profiles", "-p", "lora", "maybe", "-p", "images", "[x:1]", "--run-dir", str(run)])
    said = capsys.readouterr().err
    assert code == 2 and "lora must be true or false, not 'maybe'" in said and "01_plan_profiles needs gpus" in said
    params = tmp_path / "params.yaml"
    params.write_text("images: [x:1]\ngpu: L40S\n")
    assert cli.main(["run", "01_plan_profiles", "-f", str(params), "--run-dir", str(run)]) == 2
    assert "did you mean 'gpus'?" in capsys.readouterr().err
    assert not run.exists()  # nothing started, nothing written


def test_a_notebook_that_ran_is_kept_when_its_step_runs_again(tmp_path):
    from nimrunbook.reports.execute import _keep_earlier

    notebook = tmp_path / "notebooks/01_plan_profiles.ipynb"
    _executed(notebook, 3)
    _keep_earlier(notebook)
    assert not notebook.exists() and (tmp_path / "notebooks/earlier/01_plan_profiles.attempt-3.ipynb").exists()
    init_workdir(tmp_path / "prepared")
    prepared = tmp_path / "prepared/notebooks/01_plan_profiles.ipynb"
    _keep_earlier(prepared)  # prepared, never run: nothing of a run to keep, papermill replaces it
    assert prepared.exists() and not (prepared.parent / "earlier").exists()
