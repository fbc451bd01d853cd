"""`bundle create` and its folder: one writer, never over another bundle, never over foreign files."""

import subprocess
import sys

import pytest
from conftest import L40S_BF16, VLLM

from nimrunbook.bundle import create, verify
from nimrunbook.errors import InputError, LockedError
from nimrunbook.store import plan_publish


@pytest.fixture
def plans(standin_manifest, downloaded_cache):
    def plan(*profiles):
        return plan_publish(standin_manifest, downloaded_cache, list(profiles))

    return plan


def test_the_same_request_resumes_and_another_is_refused_unless_forced(plans, tmp_path):
    folder = tmp_path / "nim-bundle"
    first = create(folder, plan=plans(VLLM))
    again = create(folder, plan=plans(VLLM))
    assert again.objects_skipped == first.objects_written and again.objects_written == 0
    with pytest.raises(InputError, match="holds an unfinished or earlier bundle, not the one asked for now") as caught:
        create(folder, plan=plans(VLLM, L40S_BF16))
    assert "--force" in str(caught.value)
    (folder / "verification").mkdir()
    (folder / "verification/verification-old.json").write_text("{}")
    forced = create(folder, plan=plans(L40S_BF16), force=True)
    assert forced.objects_skipped == 0
    report = verify(folder, allow_unsigned=True, record_dir=tmp_path / "records")
    assert report.ok, report.table()  # nothing of the first bundle is left behind
    assert (folder / "verification/verification-old.json").exists()  # records are kept


def test_a_bundle_made_before_the_request_was_recorded_is_recognised(plans, tmp_path):
    folder = tmp_path / "nim-bundle"
    create(folder, plan=plans(VLLM))
    (folder / ".nimrunbook/request.json").unlink()  # as an older nimrunbook left it: bundle.json only
    create(folder, plan=plans(VLLM))
    (folder / ".nimrunbook/request.json").unlink()
    with pytest.raises(InputError, match=r"holds another bundle \(made .* objects\)"):
        create(folder, plan=plans(L40S_BF16))


def test_a_folder_with_foreign_files_is_refused(plans, tmp_path):
    (tmp_path / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(InputError, match=r"holds files that are not part of a bundle \(holiday.jpg\)"):
        create(tmp_path, plan=plans(VLLM))
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        create(tmp_path / "file", plan=plans(VLLM))


def test_a_second_create_into_the_same_folder_is_refused(plans, tmp_path):
    folder = tmp_path / "nim-bundle"
    folder.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom nimrunbook.locks import folder_lock\n"
            "with folder_lock(sys.argv[1], 'writing a bundle into'):\n    print('held', flush=True)\n    time.sleep(600)",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"pid {holder.pid}.* is writing a bundle into {folder}"):
            create(folder, plan=plans(VLLM))
        assert not list(folder.iterdir())
    finally:
        holder.kill()
        holder.wait()
