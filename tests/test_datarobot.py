import http.server
import threading
from pathlib import Path

import pytest
from conftest import FIXTURES, L40S_BF16, VLLM, s3_settings
from kube_stub import KubeStub
from ruamel.yaml import YAML

from nimrunbook.datarobot import (
    DataRobotSettings,
    check_read_credentials,
    compare_manifests,
    merge_values,
    plan_update,
    refresh_commands,
    run_refresh,
    secure_configuration_steps,
    validate,
    values_yaml,
)
from nimrunbook.datarobot.values import raise_for_problems
from nimrunbook.errors import InputError
from nimrunbook.gpus import inventory_from_cluster
from nimrunbook.profiles import parse_manifest
from nimrunbook.standin import catalog
from nimrunbook.store import S3Settings, plan_publish, publish
from nimrunbook.store.keys import object_key
from nimrunbook.store.plan import PlannedObject

ALLOW = ["nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5", "nvcr.io/nim/meta/llama-3.1-8b-instruct:1.8.4"]
SETTINGS = DataRobotSettings(
    "registry.example.com:5000", "nim-profiles", "us-east-1", "https://minio.example.com", ALLOW
)
MIRRORED = [{"source": ref, "destination": ref.replace("nvcr.io", "registry.example.com:5000")} for ref in ALLOW]


def test_values_parse_back_to_the_guides_keys():
    text = values_yaml(SETTINGS)
    values = YAML(typ="safe").load(text)
    assert values["core"]["config_env_vars"]["SERVE_NIM_MODEL_FROM_LOCAL_ASSETS"] is True
    assert values["custom-templates"] == {
        "custom_model_nim_image_registry": "registry.example.com:5000",
        "custom_model_nim_repository_override": "s3://nim-profiles/",
        "custom_model_nim_aws_endpoint_url": "https://minio.example.com",
        "custom_model_nim_aws_region": "us-east-1",
        "custom_model_nim_image_url_allowlist": ALLOW,
    }
    assert "ignores the tags" in text and "CUSTOM_MODEL_NIM_IMAGE_REGISTRY" in text
    aws = YAML(typ="safe").load(values_yaml(DataRobotSettings("r.example.com", "b-1", "eu-west-1", None, ALLOW)))
    assert "custom_model_nim_aws_endpoint_url" not in aws["custom-templates"]


EXISTING = """\
# DataRobot values for prod -- owned by the platform team
global:
  domain: datarobot.example.com   # keep
core:
  config_env_vars:
    SOME_OTHER_FLAG: "yes"
custom-templates:
  replicas: 2  # unrelated key
  custom_model_nim_aws_region: old-region
"""


def test_merge_keeps_comments_order_and_unrelated_keys(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(EXISTING)
    diff, backup = merge_values(values, SETTINGS)
    assert backup is None and values.read_text() == EXISTING  # a dry run shows the diff only
    assert "-  custom_model_nim_aws_region: old-region" in diff and "+  custom_model_nim_aws_region: us-east-1" in diff
    diff, backup = merge_values(values, SETTINGS, write=True)
    merged = values.read_text()
    assert backup.read_text() == EXISTING
    for kept in (
        "# DataRobot values for prod",
        "domain: datarobot.example.com   # keep",
        'SOME_OTHER_FLAG: "yes"',
        "replicas: 2  # unrelated key",
    ):
        assert kept in merged
    assert merged.index("global:") < merged.index("core:") < merged.index("custom-templates:")
    loaded = YAML(typ="safe").load(merged)
    assert loaded["core"]["config_env_vars"] == {"SOME_OTHER_FLAG": "yes", "SERVE_NIM_MODEL_FROM_LOCAL_ASSETS": True}
    assert loaded["custom-templates"]["custom_model_nim_image_url_allowlist"] == ALLOW
    assert merge_values(values, SETTINGS, write=True) == ("", None)  # idempotent


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"internal_registry": "other.example.com"}, "internal_registry", "not in other.example.com"),
        ({"internal_registry": "https://registry.example.com"}, "internal_registry", "without a scheme"),
        ({"bucket": "NIM_Profiles"}, "bucket", "not a valid bucket name"),
        ({"bucket": "nim.profiles"}, "bucket", "contains dots"),
        ({"bucket": "192.168.1.10"}, "bucket", "IP address"),
        ({"endpoint_url": "http://minio.example.com"}, "endpoint_url", "not HTTPS"),
        ({"region": ""}, "region", "No region"),
        ({"allowlist": []}, "allowlist", "empty"),
        ({"allowlist": ALLOW + ["nvcr.io/nim/meta/llama-3.3-70b-instruct:1.5.2"]}, "allowlist", "was not mirrored"),
    ],
)
def test_every_validation_has_its_own_message(change, field, words):
    settings = DataRobotSettings(**{**SETTINGS.__dict__, **change})
    problems = validate(settings, mirrored=MIRRORED, published_images=settings.allowlist)
    assert any(p.field == field and words in p.message for p in problems), problems
    with pytest.raises(InputError):
        raise_for_problems(problems)


def test_valid_settings_and_unpublished_profiles():
    assert validate(SETTINGS, mirrored=MIRRORED, published_images=ALLOW) == []
    problems = validate(SETTINGS, mirrored=MIRRORED, published_images=ALLOW[:1])
    assert [p.message for p in problems] == [
        f"{ALLOW[1]} is allowlisted but its profiles were not published to s3://nim-profiles/."
    ]


def test_refresh_commands_have_the_namespace():
    text = refresh_commands("datarobot-prod")
    assert "kubectl create job --from=cronjob/custom-templates-cronjob $JOB_NAME -n $NS" in text
    assert "export NS=datarobot-prod" in text and "kubectl logs job/$JOB_NAME -n $NS -f" in text


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_refresh_through_the_kubernetes_client(tmp_path, outcome):
    # No Kubernetes API server can run here: KubeStub answers the calls used (see tests/kube_stub.py).
    with KubeStub(job_outcome=outcome) as stub:
        result = run_refresh("datarobot", kubeconfig=str(stub.kubeconfig(tmp_path)), poll=0.01, timeout=10)
    assert result.succeeded is (outcome == "succeeded")
    assert result.logs == ["refreshed 2 NIM templates"]
    created = next(iter(stub.jobs.values()))
    assert created["spec"]["template"]["spec"]["containers"][0]["name"] == "custom-templates"
    if outcome == "failed":
        assert "BackoffLimitExceeded" in result.reason


def test_gpu_inventory_from_a_live_cluster(tmp_path):
    # No Kubernetes API server can run here: KubeStub serves the node list.
    nodes = [
        {
            "metadata": {
                "name": f"gpu-{i}",
                "labels": {"nvidia.com/gpu.product": "NVIDIA-L40S", "nvidia.com/gpu.count": "2"},
            }
        }
        for i in range(3)
    ]
    with KubeStub(nodes=nodes) as stub:
        inventory = inventory_from_cluster(str(stub.kubeconfig(tmp_path)))
    assert inventory.counts() == {"l40s": 6} and inventory.max_gpus_per_node() == 2


def test_credentials_read_only_passes_read_write_warns(any_s3, standin_manifest, downloaded_cache):
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM])
    publish(plan.objects, s3_settings(any_s3, bucket="nim-direct")).raise_for_failures()
    reader = check_read_credentials(s3_settings(any_s3, bucket="nim-direct", user="reader"), plan.objects)
    if any_s3.enforces_policies:
        assert reader.ok and reader.warnings == [] and reader.can_write is False  # AccessDenied: proven read-only
    else:  # rclone serve s3 has no per-key policies: its "reader" may write, and the check says so
        assert reader.ok and reader.can_write is True and any("WRITE" in w for w in reader.warnings)
    admin = check_read_credentials(s3_settings(any_s3, bucket="nim-direct"), plan.objects)
    assert admin.ok and any("WRITE" in w for w in admin.warnings) and any("DELETE" in w for w in admin.warnings)
    assert admin.can_write is True
    missing = check_read_credentials(
        s3_settings(any_s3, bucket="nim-direct", user="reader"),
        plan_publish(standin_manifest, downloaded_cache, [L40S_BF16]).objects,
    )
    assert not missing.ok and "missing" in set(missing.objects["status"])
    assert "Consumer" in secure_configuration_steps("nim-direct", any_s3.endpoint_url, "us-east-1")


def test_tag_update_plans_the_smallest_transfer():
    old, new = parse_manifest(catalog.manifest_yaml("1.8.5")), parse_manifest(catalog.manifest_yaml("1.8.6"))
    changes = compare_manifests(old, new).set_index("name")
    assert changes.loc["tensorrt_llm-h200-fp8-tp1-pp1-throughput", "change"] == "removed"
    assert changes.loc["tensorrt_llm-h200-bf16-tp1-pp1-throughput", "change"] == "added"
    assert changes.loc["tensorrt_llm-l40s-bf16-tp1-pp1-throughput", "change"] == "changed"
    assert changes.loc["vllm-bf16-tp1-pp1", "change"] == "unchanged"
    in_bucket = {object_key(f.uri) for pid in (VLLM, L40S_BF16) for f in old.profile(pid).files}
    plan = plan_update(
        "nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.6",
        old,
        new,
        [VLLM, L40S_BF16],
        in_bucket,
        supported_images=["nvcr.io/nim/meta/llama-3.1-8b-instruct:1.8.4"],
    )
    assert sorted(plan.keys_to_transfer) == sorted(
        object_key(f.uri) for f in new.profile(L40S_BF16).files if "trtllm_engine" in f.path
    )
    assert any("ImagePullBackOff" in n for n in plan.notes) and any("not supported" in n for n in plan.notes)


def test_manifest_fixture_still_parses_for_updates():
    manifest = parse_manifest((FIXTURES / "manifests/k8snimop-v2-manifest_v2.yaml").read_text())
    assert compare_manifests(manifest, manifest)["change"].eq("unchanged").all()


def test_cli_values_and_refresh_commands():
    import subprocess
    import sys

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "nimrunbook.cli", "datarobot", *a], capture_output=True, text=True, timeout=120
        )  # noqa: E731

    ok = run(
        "values",
        "--registry",
        "registry.example.com:5000",
        "--bucket",
        "nim-profiles",
        "--endpoint-url",
        "https://minio.example.com",
        "--allow",
        ALLOW[0],
    )
    assert ok.returncode == 0 and "custom_model_nim_repository_override: s3://nim-profiles/" in ok.stdout
    bad = run(
        "values",
        "--registry",
        "registry.example.com",
        "--bucket",
        "Bad_Bucket",
        "--endpoint-url",
        "http://x.example.com",
    )
    assert (
        bad.returncode == 2
        and "not a valid bucket name" in bad.stderr
        and "not HTTPS" in bad.stderr
        and "empty" in bad.stderr
    )
    printed = run("refresh", "--namespace", "dr")
    assert "kubectl create job --from=cronjob/custom-templates-cronjob" in printed.stdout


class _HangingOnPut(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that lists and HEADs like one but never answers a PUT. moto cannot be made to hang,
    and a write probe that times out (not a refusal) is exactly the case under test."""

    release = threading.Event()

    def do_GET(self):  # ListObjectsV2: an empty bucket
        body = b'<?xml version="1.0"?><ListBucketResult><Name>b</Name><KeyCount>0</KeyCount></ListBucketResult>'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.send_header("x-amz-meta-sha256", "0" * 64)
        self.end_headers()

    def do_PUT(self):
        self.release.wait(timeout=60)

    def log_message(self, *_args):
        pass


def test_a_write_probe_that_times_out_is_unknown_not_read_only():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HangingOnPut)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = S3Settings(
            "nim-hang",
            endpoint_url=f"http://127.0.0.1:{server.server_port}",
            access_key_id="AKIATESTONLY00000000",
            secret_access_key="test-only-secret",
            path_style=True,
        )
        obj = PlannedObject(object_key("ngc://nim/meta/m:hf?file=config.json"), "ngc://x", Path("/dev/null"), 5)
        check = check_read_credentials(settings, [obj], probe_timeout=1)
    finally:
        _HangingOnPut.release.set()
        server.shutdown()
        server.server_close()
    assert check.ok and check.can_write is None
    (warning,) = check.warnings
    assert "UNKNOWN" in warning and "did not answer in time" in warning
