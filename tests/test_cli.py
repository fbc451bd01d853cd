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
