import logging

from nimrunbook.progress import LogProgress, WidgetProgress, human_bytes, make_progress


def test_log_lines_every_few_percent(caplog):
    with (
        caplog.at_level(logging.INFO, logger="nimrunbook.progress"),
        LogProgress("upload", total=1000, every_percent=25) as progress,
    ):
        for _ in range(100):
            progress.advance(10)
    lines = [r.getMessage() for r in caplog.records]
    assert 4 <= len(lines) <= 7 and lines[-1].endswith("(done)") and "100%" in lines[-1]


def test_unknown_total_logs_by_time(caplog):
    with caplog.at_level(logging.INFO, logger="nimrunbook.progress"):
        progress = LogProgress("download", every_seconds=0)
        progress.set(5_000_000)
        progress.close()
    assert "5.0 MB" in caplog.text


def test_widget_bar_tracks_the_work():
    progress = make_progress("widget", "process", 200)
    assert isinstance(progress, WidgetProgress)
    progress.advance(50)
    progress.close()
    assert progress._bar.value == 50 and progress._bar.bar_style == "success"
    assert human_bytes(1_500_000_000) == "1.5 GB" and make_progress("none", "x").summary().startswith("x:")
