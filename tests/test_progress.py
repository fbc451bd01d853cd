import logging

from nimrunbook.progress import SILENT, LogReporter, human_bytes
from nimrunbook.runbook.progress_bar import WidgetReporter, WidgetTask, reporter_for


def test_log_lines_every_few_percent(caplog):
    with (
        caplog.at_level(logging.INFO, logger="nimrunbook.progress"),
        LogReporter(every_percent=25).task("upload", total=1000) as task,
    ):
        for _ in range(100):
            task.advance(10)
    lines = [r.getMessage() for r in caplog.records]
    assert 4 <= len(lines) <= 7 and lines[-1].endswith("(done)") and "100%" in lines[-1]


def test_unknown_total_logs_by_time(caplog):
    with caplog.at_level(logging.INFO, logger="nimrunbook.progress"):
        task = LogReporter(every_seconds=0).task("download")
        task.set(5_000_000)
        task.close()
    assert "5.0 MB" in caplog.text


def test_silent_tasks_count_but_say_nothing(caplog):
    with caplog.at_level(logging.INFO), SILENT.task("images", 3, unit="images") as task:
        task.advance(2)
    assert caplog.text == "" and task.summary() == "images: 67%, 2 images of 3 images"


def test_widget_bar_tracks_the_work():
    reporter = reporter_for("widget")
    assert isinstance(reporter, WidgetReporter)
    task = reporter.task("process", 200)
    assert isinstance(task, WidgetTask)
    task.advance(50)
    task.close()
    assert task._bar.value == 50 and task._bar.bar_style == "success"
    assert human_bytes(1_500_000_000) == "1.5 GB" and reporter_for("none") is SILENT
    assert isinstance(reporter_for("log"), LogReporter)
