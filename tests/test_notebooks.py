"""Every notebook executed with papermill in a real Jupyter kernel, end to end against the local stack:
the real Docker engine and stand-in NIM image, a registry standing in for nvcr.io, the internal registry
over TLS, and S3 (moto) behind TLS. Results are asserted through the run record and the JSON records."""

import json
import os
import shutil
import subprocess

import nbformat
import pytest
from conftest import FAKE_NGC_KEY

from nimrunbook.reports import run_notebook
from nimrunbook.runbook.display import RECORD_MIMETYPE
from nimrunbook.runbook.record import RunRecord

pytestmark = pytest.mark.notebooks


def _records(executed, kind: str) -> list[dict]:
    notebook = nbformat.read(executed, as_version=4)
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            payload = output.get("data", {}).get(RECORD_MIMETYPE)
            if payload and payload["kind"] == kind:
                found.append(payload)
    return found


@pytest.fixture(scope="module")
def stack(s3, internal_registry, ngc_registry, ngc_images, certs, tmp_path_factory):
    """Parameters naming the local stack, and the environment the kernels inherit (secrets only there)."""
    work = tmp_path_factory.mktemp("notebooks")
    admin_id, admin_secret = s3.credentials["admin"]
    reader_id, reader_secret = s3.credentials["reader"]
    credentials = work / "aws-credentials"
    credentials.write_text(f"[reader]\naws_access_key_id = {reader_id}\naws_secret_access_key = {reader_secret}\n")
    keys = work / "signer"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys)], check=True)
    environment = {
        "NGC_API_KEY": FAKE_NGC_KEY,
        "AWS_ACCESS_KEY_ID": admin_id,
        "AWS_SECRET_ACCESS_KEY": admin_secret,
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
    }
    saved = {k: os.environ.get(k) for k in environment}
    os.environ.update(environment)
    s3_params = {"s3_endpoint_url": s3.endpoint_url, "s3_ca_bundle": str(s3.certs.ca_bundle)}
    registries = {
        "registry_ca": {internal_registry.host: str(certs.ca_bundle)},
        "registry_insecure": [ngc_registry.host],
    }
    yield {
        "work": work,
        "images": ngc_images,
        "s3": s3_params,
        "registries": registries,
        "secrets": [FAKE_NGC_KEY, admin_secret, reader_secret],
        "internal": f"{internal_registry.host}/nb",
        "cache": str(work / "nim-cache"),
        "key": keys,
        "public_key": keys.with_suffix(".pub"),
    }
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _record(run_dir) -> dict:
    """run.json as a reader sees it: the run's facts at the top, each step's attempts under steps."""
    return json.loads((run_dir / "run.json").read_text())


def _run(name, run_dir, **parameters):
    result = run_notebook(name, run_dir, parameters)
    assert result.ok, result.error
    return result


@pytest.fixture(scope="module")
def online(stack):
    run = stack["work"] / "online"
    values = stack["work"] / "values.yaml"
    values.write_text("# prod values\nglobal:\n  domain: dr.example.com  # keep\n")
    results = {
        "00": _run(
            "00_preflight",
            run,
            images=stack["images"][:1],
            cache_dir=stack["cache"],
            internal_registry=stack["internal"],
            s3_bucket="nim-nb",
            **stack["s3"],
            **stack["registries"],
        ),
        "01": _run("01_plan_profiles", run, images=stack["images"], gpus="L40S, A10G", lora=False),
        "02": _run("02_mirror_images", run, internal_registry=stack["internal"], **stack["registries"]),
        "03": _run(
            "03_download_profiles",
            run,
            cache_dir=stack["cache"],
            network_mode="none",
            container_environment={"NIM_STANDIN_WEIGHT_BYTES": "65536"},
            download_size_gb=0.01,  # the stand-in's weights are tiny; the estimate is for a real 1B model
        ),
        "04": _run("04_publish_profiles", run, cache_dir=stack["cache"], s3_bucket="nim-nb", **stack["s3"]),
        "05": _run(
            "05_create_bundle",
            run,
            bundle_dir=str(stack["work"] / "media" / "bundle"),
            cache_dir=stack["cache"],
            sign_key=str(stack["key"]),
            inside_registry=stack["internal"] + "-inside",
            inside_bucket="nim-nb-inside",
            inside_endpoint_url=stack["s3"]["s3_endpoint_url"],
            wheelhouse="no",  # tests/test_bundle_wheelhouse.py makes one (it needs the package index)
            **stack["registries"],
        ),
        "07": _run(
            "07_configure_datarobot",
            run,
            values_file=str(values),
            write_values=True,
            namespace="datarobot",
            readonly_aws_profile="reader",
        ),
        "08": _run("08_update_nim_tags", run, old_image=stack["images"][0], new_image=stack["images"][1]),
    }
    return run, results, values


def test_online_path_record(online, stack):
    run, results, values = online
    record = _record(run)
    assert all(
        record["steps"][name]["status"] == "ok"
        for name in (
            "00_preflight",
            "01_plan_profiles",
            "02_mirror_images",
            "03_download_profiles",
            "04_publish_profiles",
            "05_create_bundle",
            "07_configure_datarobot",
            "08_update_nim_tags",
        )
    )
    assert record["inventory"]["counts"] == {"l40s": 1, "a10g": 1}
    names = [p["name"] for p in record["selection"][stack["images"][0]]]
    assert names == [
        "vllm-bf16-tp1-pp1",
        "tensorrt_llm-trtllm_buildable-bf16-tp1-pp1",
        "tensorrt_llm-l40s-bf16-tp1-pp1-throughput",
        "tensorrt_llm-l40s-fp8-tp1-pp1-throughput",
        "tensorrt_llm-a10g-bf16-tp1-pp1-throughput",
    ]
    assert all(c["status"] == "copied" and c["digest"].startswith("sha256:") for c in record["mirror"]["images"])
    assert sum(s["files"] for s in record["download"]["summaries"]) > 0
    assert all(v["failed"] == 0 for v in record["publish"]["images"].values())
    assert record["bundle"]["signed"] is True
    assert record["credentials"]["ok"] is True and record["credentials"]["warnings"] == []
    assert (
        "custom_model_nim_repository_override: s3://nim-nb/" in record["datarobot"]["values"]
        and "# keep" in values.read_text()
    )
    # both tags were published by this run, so the update needs no object: the smallest transfer is empty
    assert record["update"]["to_transfer"] == [] and any("ImagePullBackOff" in n for n in record["update"]["notes"])
    assert record["tools"]["nimrunbook"]
    for step in record["steps"].values():
        attempt = step["attempts"][-1]
        assert attempt["operator"] and attempt["host"] and attempt["finished"] >= attempt["started"]
        assert attempt["parameters"]["run_dir"] == str(run)  # every parameter as used, not a chosen few
    planned = record["steps"]["01_plan_profiles"]["attempts"][-1]["parameters"]
    assert planned["gpus"] == "L40S, A10G" and planned["lora"] is False and "list_with_gpus" in planned
    assert all(entry["digest"].startswith("sha256:") for entry in record["images"].values())  # the registry's
    assert record["bundle"]["key_fingerprint"].startswith("SHA256:")
    every = record["profiles"][stack["images"][0]]
    assert {e["rules"] for e in every} == {"selected", "skipped"} and all(e["rules_reason"] for e in every)
    (selection,) = _records(results["01"].executed, "selection")
    assert [e["name"] for e in selection["selection"][stack["images"][0]]] == names


def test_offline_path_inside(online, stack):
    run = stack["work"] / "inside"
    bundle = str(stack["work"] / "media" / "bundle")
    _run(
        "06_verify_and_import_bundle",
        run,
        bundle_dir=bundle,
        public_key=str(stack["public_key"]),
        s3_ca_bundle=stack["s3"]["s3_ca_bundle"],
        **stack["registries"],
    )
    _run("07_configure_datarobot", run, namespace="datarobot", readonly_aws_profile="reader")
    record = _record(run)
    assert record["verification"]["ok"] and record["verification"]["signature"] == "verified"
    assert record["verification"]["key_fingerprint"] == _fingerprint(stack["public_key"])
    assert os.path.exists(record["verification"]["record"])
    assert record["mirror"]["registry"] == stack["internal"] + "-inside"
    assert record["datarobot"]["values"].count("custom_model_nim_image_url_allowlist") == 1
    assert "s3://nim-nb-inside/" in record["datarobot"]["values"]


def _fingerprint(public_key) -> str:
    line = subprocess.run(["ssh-keygen", "-lf", str(public_key)], capture_output=True, text=True, check=True).stdout
    return f"{line.split()[1]} (ssh-{line.split()[-1].strip('()').lower()})"


def test_failing_step_gives_a_failed_run_with_the_error_cell_on_top(stack, tmp_path):
    run = tmp_path / "failing"
    result = run_notebook("01_plan_profiles", run, {"images": stack["images"][:1], "gpus": "L40S, Voodoo5"})
    assert not result.ok and "Voodoo5" in result.error
    attempt = RunRecord(run).read().step("01_plan_profiles").latest
    assert attempt.status == "failed" and "Voodoo5" in attempt.error
    notebook = nbformat.read(result.executed, as_version=4)
    assert (
        "papermill-error-cell-tag" in notebook.cells[0].metadata.get("tags", [])
        or "An Exception was encountered" in notebook.cells[0].source
    )
    assert "failed" in (run / "index.html").read_text()


def test_a_failed_rerun_leaves_the_earlier_results_in_force(online, stack, tmp_path):
    """01 again with a tag that does not exist: the step is failed, its attempt keeps what it tried, and the
    run's facts (which 02-05 use) are still the earlier successful attempt's."""
    run = tmp_path / "rerun"
    shutil.copytree(online[0], run)
    before = _record(run)
    missing = stack["images"][0].rsplit(":", 1)[0] + ":0.0.0-does-not-exist"
    result = run_notebook("01_plan_profiles", run, {"images": [missing], "gpus": "L40S"})
    assert not result.ok
    after = _record(run)
    step = after["steps"]["01_plan_profiles"]
    assert step["status"] == "failed" and [a["status"] for a in step["attempts"]] == ["ok", "failed"]
    failed = step["attempts"][-1]
    assert failed["parameters"]["images"] == [missing] and failed["error"] and failed["finished"] >= failed["started"]
    for section in ("images", "selection", "profiles", "inventory"):
        assert after[section] == before[section], section  # the run's facts: the successful attempt's
    assert missing not in json.dumps(after["images"]) and missing not in json.dumps(after["selection"])
    report = (run / "reports/01_plan_profiles.html").read_text()
    assert "01_plan_profiles: FAILED" in report


def test_no_secret_in_any_notebook_log_or_report(online, stack):
    run, _, _ = online
    for root in (run, stack["work"] / "inside"):
        for path in root.rglob("*"):
            if path.is_file() and path.suffix in (".ipynb", ".html", ".json", ".txt", ".log", ".yaml"):
                text = path.read_text(errors="replace")
                for secret in stack["secrets"]:
                    assert secret not in text, f"secret in {path}"


def test_reports_open_offline_in_chromium_and_show_the_selection(online, tmp_path):
    run, results, _ = online
    chromium = "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.skip("chromium is not installed") if not os.environ.get("CI") else pytest.fail("chromium missing in CI")
    for report in sorted((run / "reports").glob("*.html")):
        dom = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--proxy-server=127.0.0.1:9",
                "--virtual-time-budget=3000",
                "--dump-dom",
                f"file://{report}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        assert "nimrunbook-table" in dom, report.name
        if report.stem == "01_plan_profiles":
            assert "Final selection: " in dom and "tensorrt_llm-l40s-fp8-tp1-pp1-throughput" in dom
        assert "Traceback" not in dom
