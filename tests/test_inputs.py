"""The one input layer the command line and the notebooks share."""

import io

import pytest
from conftest import FIXTURES

from nimrunbook.errors import InputError
from nimrunbook.inputs import gpu_inventory, s3_settings
from nimrunbook.store import S3Settings


def test_s3_settings_given_values_win_then_the_defaults_then_aws():
    environment = {"NIM_BUCKET_NAME": "from-env", "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "https://s3.env.test"}
    settings = s3_settings(endpoint_url="https://minio.example.com", defaults=environment)
    assert (settings.bucket, settings.endpoint_url, settings.region) == (
        "from-env",
        "https://minio.example.com",
        "eu-west-1",
    )
    plain = s3_settings("nim-profiles")  # notebooks pass no defaults: empty means AWS S3 in us-east-1
    assert (plain.endpoint_url, plain.region, plain.ca_bundle) == (None, "us-east-1", None)


def test_s3_settings_are_validated_whichever_way_they_come():
    with pytest.raises(InputError, match="no scheme"):
        s3_settings("nim-profiles", "minio.example.com:9000")
    with pytest.raises(InputError, match="no scheme"):
        s3_settings(defaults={"NIM_BUCKET_NAME": "nim-b", "AWS_ENDPOINT_URL": "minio.example.com:9000"})
    with pytest.raises(InputError, match="No bucket"):
        s3_settings(defaults={})
    with pytest.raises(InputError, match="not a valid S3 bucket name"):
        s3_settings("Profiles_Bucket")


def test_a_string_never_turns_a_switch_on(monkeypatch, tmp_path):
    for value in ("no", "false", "maybe", 0, 1, None):
        with pytest.raises(InputError, match="insecure must be true or false"):
            s3_settings("nim-profiles", insecure=value)
        with pytest.raises(InputError, match="insecure must be true or false"):
            S3Settings("nim-profiles", insecure=value)
    assert s3_settings("nim-profiles", insecure=True).insecure is True


def test_an_unknown_aws_profile_is_named_with_the_known_ones(monkeypatch, tmp_path):
    config = tmp_path / "config"
    config.write_text("[default]\nregion = us-east-1\n[profile inside]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent"))
    assert s3_settings("nim-profiles", aws_profile="inside").profile == "inside"
    with pytest.raises(InputError, match="no AWS profile 'insdie'.*Known profiles: default, inside"):
        s3_settings("nim-profiles", aws_profile="insdie")


def test_gpu_inventory_from_the_first_source_given(monkeypatch):
    assert gpu_inventory("L40S, 2xA10G").counts() == {"l40s": 1, "a10g": 2}
    from_file = gpu_inventory(nvidia_smi_file=str(FIXTURES / "nvidia-smi/L40S-csv.txt"))
    monkeypatch.setattr("sys.stdin", io.StringIO((FIXTURES / "nvidia-smi/L40S-csv.txt").read_text()))
    assert gpu_inventory(nvidia_smi_file="-").counts() == from_file.counts() == {"l40s": 4}
    assert gpu_inventory(node_labels_file=str(FIXTURES / "k8s-node-labels.txt")).counts()
    with pytest.raises(InputError, match="Cannot read the node labels file"):
        gpu_inventory(node_labels_file="/nonexistent/labels.json")


@pytest.mark.parametrize(
    "capture, source",
    [
        ("A100-SXM4-80GB-q-i0.txt", "nvidia-smi -q"),
        ("A100-SXM4-80GB-x8-table-truncated-names.txt", "nvidia-smi"),
        ("A100-SXM4-80GB-csv.txt", "nvidia-smi --query-gpu"),
    ],
)
def test_every_nvidia_smi_form_reaches_the_inventory_through_the_one_input(capture, source):
    """`-q` and the table with cut-off names (the GPU rules' newer sources) come in the way the CSV does."""
    inventory = gpu_inventory(nvidia_smi_file=str(FIXTURES / "nvidia-smi" / capture))
    (group,) = inventory.groups
    assert (group.product, group.pci_device_id, group.source) == ("NVIDIA A100-SXM4-80GB", "20b2", source)
