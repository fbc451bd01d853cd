"""The command line, run as a user runs it: a real subprocess on real samples."""

import json
import subprocess
import sys

from conftest import FIXTURES

GUIDE = FIXTURES / "list-model-profiles/datarobot-guide-llama-3.2-1b-instruct-1.8.5-truncated.txt"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nimrunbook.cli", *args], input=stdin, capture_output=True, text=True, timeout=120
    )


def test_plan_ids_are_ready_for_download_to_cache():
    result = run("profiles", "plan", "--listing", str(GUIDE), "--gpus", "L40S,A10G", "--no-lora", "--format", "ids")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "4f904d571fe60ff24695b5ee2aa42da58cb460787a968f1e8a09f5a7e862728d",
        "ac34857f8dcbd174ad524974248f2faf271bd2a0355643b2cf1490d0fe7787c2",
        "ac5071bbd91efcc71dc486fcd5210779570868b3b8328b4abf7a408a58b5e57c",
        "ad17776f4619854fccd50354f31132a558a1ca619930698fd184d6ccf5fe3c99",
    ]


def test_plan_table_from_stdin_and_nvidia_smi():
    result = run(
        "profiles",
        "plan",
        "--listing",
        "-",
        "--nvidia-smi",
        str(FIXTURES / "nvidia-smi/L40S-csv.txt"),
        stdin=GUIDE.read_text(),
    )
    assert result.returncode == 0, result.stderr
    assert "matches NVIDIA L40S" in result.stdout
    assert "6 of 10 profiles selected for 4x NVIDIA L40S." in result.stdout


def test_plan_json_with_manifest_and_node_labels():
    result = run(
        "profiles",
        "plan",
        "--listing",
        str(FIXTURES / "list-model-profiles/llama3-8b-instruct-1.0.3-2xL40S.txt"),
        "--node-labels",
        str(FIXTURES / "k8s-node-labels.txt"),
        "--format",
        "json",
        "--manifest",
        str(FIXTURES / "manifests/k8snimop-v2-manifest_v2.yaml"),
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert {"inventory", "profiles"} <= set(document)
    assert all("reason" in row for row in document["profiles"])


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    for args in (
        ["--listing", str(empty), "--gpus", "L40S"],
        ["--listing", str(GUIDE), "--gpus", "Voodoo5"],
        ["--listing", str(tmp_path / "missing.txt"), "--gpus", "L40S"],
        ["--listing", str(FIXTURES / "nvidia-smi/L4-L.txt"), "--gpus", "L4"],
    ):
        result = run("profiles", "plan", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("nimrunbook: error:")
        assert "Traceback" not in result.stderr


def test_plan_checks_itself_against_the_listings_own_verdict():
    listing = FIXTURES / "list-model-profiles/llama-3.1-405b-instruct-1.3.0-8xA100-SXM4-80GB.txt"
    model = "nvcr.io/nim/meta/llama-3.1-405b-instruct:1.3.0"
    args = ("profiles", "plan", "--listing", str(listing), "--gpus", "8x A100", "--check-against-listing")
    agreed = run(*args, "--model", model)
    assert agreed.returncode == 0, agreed.stderr
    assert "405B parameters in fp16 are ~810 GB" in agreed.stdout
    assert "agree with NIM's own verdict for 8x NVIDIA A100-SXM4-80GB on every profile" in agreed.stdout
    unsized = run(*args)  # without the model's size the rules keep the 405B fp16 profile NIM refuses
    assert unsized.returncode == 0, unsized.stderr
    assert "extra" in unsized.stdout and "cannot run on 8x NVIDIA A100-SXM4-80GB" in unsized.stdout


def test_check_exits_1_when_the_rules_would_leave_out_what_nim_runs():
    listing = FIXTURES / "list-model-profiles/llama-3.1-70b-instruct-1.3.3-2xA100-80GB-PCIe-truncated.txt"
    result = run(
        "profiles",
        "plan",
        "--listing",
        str(listing),
        "--gpus",
        "2x A100 80GB PCIe",
        "--check-against-listing",
        "--format",
        "json",
    )
    assert result.returncode == 1, result.stderr
    check = json.loads(result.stdout)["check"]
    assert [(d["name"], d["risk"]) for d in check["disagreements"]] == [("70b-trt-engine", "missing")]
    assert check["disagreements"][0]["rules_reason"].startswith("name not understood")


def test_check_of_a_listing_without_system_info_needs_the_hosts_gpus():
    listing = FIXTURES / "list-model-profiles/llama-3.1-8b-instruct-1.3.3-L4-truncated.txt"
    base = ("profiles", "plan", "--listing", str(listing), "--gpus", "L4", "--check-against-listing")
    missing = run(*base)
    assert missing.returncode == 2 and "--listing-gpus" in missing.stderr
    stated = run(*base, "--listing-gpus", "NVIDIA L4")
    assert stated.returncode == 0, stated.stderr
    assert "agree with NIM's own verdict for 1x NVIDIA L4" in stated.stdout


def test_an_error_keeps_its_cause_in_one_details_line(tmp_path):
    missing = tmp_path / "missing.txt"
    result = run("profiles", "plan", "--listing", str(missing), "--gpus", "L40S")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message, details = result.stderr.rstrip("\n").split("\n")
    assert message.startswith("nimrunbook: error: Cannot read the profile listing file")
    assert details == f"  details: FileNotFoundError: [Errno 2] No such file or directory: '{missing}'"


def test_s3_options_are_validated_like_the_notebooks():
    result = run("profiles", "preflight", "--bucket", "nim-profiles", "--endpoint-url", "minio.example.com:9000")
    assert result.returncode == 2 and "has no scheme" in result.stderr and "Traceback" not in result.stderr


def test_a_bug_of_ours_is_one_paragraph_too_and_its_traceback_is_on_request(monkeypatch, capsys):
    from nimrunbook.cli import main, profiles

    def broken(_args):
        raise KeyError("a bug")

    monkeypatch.setattr(profiles, "cmd_plan", broken)
    argv = ["profiles", "plan", "--listing", str(GUIDE), "--gpus", "L40S"]
    assert main(argv) == 70
    err = capsys.readouterr().err
    assert err.startswith("nimrunbook: internal error: KeyError: 'a bug'. This is a bug in nimrunbook")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["-v", *argv]) == 70
    assert "Traceback (most recent call last)" in capsys.readouterr().err
