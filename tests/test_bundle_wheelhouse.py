"""The bundle carries the tool: a wheelhouse of nimrunbook and its dependencies, and install.sh.

The central test installs from the bundle alone in a network namespace with no network (tests/airgap_inside.py),
then verifies and imports the bundle with what it installed, into a registry and an S3 server on that
namespace's loopback. The wheelhouse download itself needs the package index (outside): it is made once per
session, with a tiny image and one small profile, and reused by the other tests here.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import VLLM, pushed

from nimrunbook import __version__
from nimrunbook.bundle import create, verify
from nimrunbook.bundle import debs as debs_module
from nimrunbook.bundle import wheelhouse as wheelhouse_module
from nimrunbook.bundle.contents import parse_manifest
from nimrunbook.bundle.install_script import render
from nimrunbook.bundle.inventory import parse_inventory
from nimrunbook.bundle.own_wheel import own_wheel
from nimrunbook.bundle.wheel_target import WheelhouseTarget, host_platform
from nimrunbook.bundle.wheelhouse import WheelhouseRequest, wheelhouse_request
from nimrunbook.cli import main
from nimrunbook.errors import InputError, NimRunbookError
from nimrunbook.images import RegistryAccess
from nimrunbook.store import plan_publish

HERE = Path(__file__).parent
NEEDS_UNSHARE = pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0, reason="needs unshare(1) and root for a network namespace"
)

# -- the target: Python version and platform tags, as pip takes them ------------------------------------------------


def test_a_manylinux_target_expands_to_every_older_glibc_and_the_legacy_names():
    target = WheelhouseTarget.parse("3.12.4", "manylinux_2_28_aarch64")
    assert (target.python_version, target.abi, target.arch) == ("3.12", "cp312", "aarch64")
    tags = target.platforms()
    assert tags[0] == "manylinux_2_28_aarch64" and tags[-4] == "manylinux_2_5_aarch64"
    assert tags[-3:] == ["manylinux1_aarch64", "manylinux2010_aarch64", "manylinux2014_aarch64"]
    assert WheelhouseTarget.parse("3.11", "manylinux2014_x86_64").platforms()[0] == "manylinux_2_17_x86_64"
    options = target.pip_options()
    assert options[:5] == ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.12"]
    assert options.count("--platform") == len(tags)


@pytest.mark.parametrize(
    ("version", "platform", "wrong"),
    [("3", "manylinux_2_28_x86_64", "is not a Python version"), ("3.11", "many linux!", "is not a wheel platform tag")],
)
def test_a_bad_target_is_an_input_error(version, platform, wrong):
    with pytest.raises(InputError, match=wrong):
        WheelhouseTarget.parse(version, platform)


def test_the_target_is_what_was_given_else_the_inventorys_else_this_hosts():
    inventory = {"nimrunbook": {"version": "0.0.9", "python": "3.12", "platform": "manylinux_2_28_x86_64"}}
    assert WheelhouseTarget.choose("3.13", None, inventory).as_dict()["python_version"] == "3.13"
    assert WheelhouseTarget.choose(None, None, inventory).platform == "manylinux_2_28_x86_64"
    here = WheelhouseTarget.choose(None, None, None)
    assert here.is_this_python() and here.platform == host_platform()


def test_install_script_is_valid_shell_with_every_value_filled_in():
    text = render(
        WheelhouseTarget.parse("3.11", "manylinux_2_28_x86_64"), version="9.9", pip_wheel="pip.whl", glibc=(2, 17)
    )
    assert "@" not in text.replace("$@", "").replace("@<", "")
    assert 'WANT_GLIBC="2.17"' in text and 'WANT_MACHINE="x86_64"' in text and "--require-hashes" in text
    assert subprocess.run(["sh", "-n"], input=text, text=True).returncode == 0


def test_inventory_facts_of_the_inside_tool_are_checked():
    base = {"format": "nimrunbook.inventory", "objects": {}, "images": {}}
    assert parse_inventory(json.dumps(base), "old.json")["objects"] == {}  # older inventories have no facts
    facts = {"version": "0.1.0", "python": "3.11", "platform": None}
    assert parse_inventory(json.dumps({**base, "nimrunbook": facts}), "new.json")["nimrunbook"] == facts
    with pytest.raises(InputError):
        parse_inventory(json.dumps({**base, "nimrunbook": {"version": 1}}), "bad.json")


def test_a_wheelhouse_entry_naming_a_file_the_bundle_does_not_list_is_a_problem():
    document = {
        "format": "nimrunbook.bundle",
        "version": 1,
        "files": [{"path": "wheelhouse/install.sh", "size": 1, "sha256": "0" * 64}],
        "objects": [],
        "images": [],
        "signed": False,
        "inside": {},
        "wheelhouse": {
            "python_version": "3.11",
            "platform": "manylinux_2_28_x86_64",
            "nimrunbook": "0.1.0",
            "wheel": "../etc/passwd",
            "install": "wheelhouse/install.sh",
            "requirements": "wheelhouse/requirements.txt",
        },
    }
    parsed, problems = parse_manifest(json.dumps(document).encode())
    assert parsed is None and len(problems) == 2
    assert "'wheel' path (it climbs out" in problems[0] and "'wheelhouse/requirements.txt', which is not" in problems[1]


def test_the_cli_refuses_a_bad_wheelhouse_choice_before_writing(tmp_path, capsys):
    assert main(["bundle", "create", str(tmp_path / "b"), "--python-version", "three"]) == 2
    assert "is not a Python version such as 3.11" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    with pytest.raises(InputError, match="say auto, yes or no"):
        wheelhouse_request("maybe")


# -- a real bundle with a wheelhouse, made once per session -----------------------------------------------------


@pytest.fixture(scope="session")
def tiny_image(docker, ngc_registry):
    """A one-file image in the nvcr.io stand-in: the images path of the bundle, at a few hundred bytes."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM scratch\nCOPY hello.txt /hello.txt\n"), ("hello.txt", b"inside\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    local = "nimrunbook/test-airgap-tiny:1.0"
    docker.images.build(fileobj=context, custom_context=True, tag=local, rm=True)
    ref = pushed(docker, local, f"{ngc_registry.host}/nim/test/airgap-tiny:1.0")
    yield ref
    for name in (ref, local):
        docker.images.remove(name, force=True)


@pytest.fixture(scope="session")
def signer(tmp_path_factory):
    key = tmp_path_factory.mktemp("signer") / "signer"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "signer", "-f", str(key)], check=True)
    return key, key.with_suffix(".pub")


@pytest.fixture(scope="session")
def airgap_bundle(tmp_path_factory, tiny_image, ngc_registry, standin_manifest, downloaded_cache, signer):
    """A signed bundle with a tiny image, one small profile and the wheelhouse for this host (the index is used)."""
    media = tmp_path_factory.mktemp("airgap-media") / "nim-bundle"
    result = create(
        media,
        images=[tiny_image],
        plan=plan_publish(standin_manifest, downloaded_cache, [VLLM]),
        sign_key=signer[0],
        access=RegistryAccess(insecure={ngc_registry.host}),
        image_backend="skopeo",
        wheelhouse=WheelhouseRequest(WheelhouseTarget.of_this_host()),
    )
    assert result.signed
    return media


def _sums(bundle: Path) -> dict[str, str]:
    return {line[66:]: line[:64] for line in (bundle / "SHA256SUMS").read_text().splitlines()}


def test_the_wheelhouse_is_listed_signed_pinned_and_explained(airgap_bundle, signer):
    document = json.loads((airgap_bundle / "bundle.json").read_text())
    house = document["wheelhouse"]
    assert (house["python_version"], house["nimrunbook"]) == (
        f"{sys.version_info[0]}.{sys.version_info[1]}",
        __version__,
    )
    folder = airgap_bundle / "wheelhouse"
    on_media = {f"wheelhouse/{p.name}" for p in folder.iterdir()}
    sums = _sums(airgap_bundle)
    assert on_media <= set(sums) and {house["wheel"], house["install"], house["requirements"]} <= on_media
    wheels = sorted(p.name for p in folder.glob("*.whl"))
    assert len(wheels) == house["wheels"] > 50 and any(w.startswith("pip-") for w in wheels)
    assert not any(w.endswith(".tar.gz") for w in os.listdir(folder))  # wheels only: nothing to build inside
    pins = [line for line in (folder / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert len(pins) == len(wheels) and all("==" in pin and " --hash=sha256:" in pin for pin in pins)
    assert {pin.rsplit(":", 1)[1] for pin in pins} == {sums[f"wheelhouse/{w}"] for w in wheels}
    readme = (airgap_bundle / "README.txt").read_text()
    assert "sh wheelhouse/install.sh /opt/nimrunbook" in readme and "grep '  wheelhouse/' SHA256SUMS" in readme
    report = verify(airgap_bundle, public_key=signer[1], record_dir=airgap_bundle.parent / "records")
    assert report.ok and report.signature == "verified", report.table()
    assert not (airgap_bundle / ".nimrunbook" / "wheelhouse-download").exists()


def test_the_readmes_commands_check_the_signature_and_the_wheelhouse_by_hand(airgap_bundle, signer, tmp_path):
    readme = (HERE.parent / "README.md").read_text()
    section = readme[readme.index("## Inside the air gap: install from the bundle") :]
    block = section[section.index("```bash\n") + 8 : section.index("```", section.index("```bash\n") + 8)]
    lines = block.splitlines()
    by_hand = lines[: next(i for i, line in enumerate(lines) if "install.sh" in line)]
    assert by_hand[0] == "B=/media/usb/nim-bundle" and "sha256sum -c" in by_hand[-1]
    shutil.copy(signer[1], tmp_path / "signer.pub")
    script = "\n".join([f"B={airgap_bundle}", *by_hand[1:]])
    result = subprocess.run(["sh", "-e", "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Good "nimrunbook-bundle" signature' in result.stdout + result.stderr
    assert result.stdout.count(": OK") == len([n for n in _sums(airgap_bundle) if n.startswith("wheelhouse/")])


def test_bundle_verify_refuses_a_link_in_the_wheelhouse(airgap_bundle, signer, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(airgap_bundle, copy, copy_function=os.link, ignore=shutil.ignore_patterns("verification"))
    wheel = next((copy / "wheelhouse").glob("pip-*.whl"))
    wheel.unlink()
    wheel.symlink_to(next((airgap_bundle / "wheelhouse").glob("pip-*.whl")))  # the same bytes, but a link
    report = verify(copy, public_key=signer[1], record_dir=tmp_path / "records")
    assert not report.ok and report.signature == "verified"
    assert [(c.path, c.status) for c in report.checks if c.status != "ok"] == [(f"wheelhouse/{wheel.name}", "unsafe")]


@NEEDS_UNSHARE
def test_inside_a_network_namespace_the_bundle_installs_its_tool_then_verifies_and_imports(
    airgap_bundle, signer, tiny_image, tmp_path
):
    work = tmp_path / "inside"
    work.mkdir()
    settings = {"work": str(work), "bundle": str(airgap_bundle), "public_key": str(signer[1]), "images": [tiny_image]}
    (work / "settings.json").write_text(json.dumps(settings))
    driver = subprocess.run(
        ["unshare", "-n", sys.executable, str(HERE / "airgap_inside.py"), str(work / "settings.json")],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=tmp_path,
    )
    assert driver.returncode == 0, driver.stderr[-3000:]
    report = json.loads(driver.stdout)
    network = report["network"]
    assert network["interfaces"] == ["lo"], network
    assert network["resolve_pypi"] and network["connect_pypi"] and network["pip_download_rc"] != 0, network
    install = report["install"]
    assert install["rc"] == 0, install["stdout"] + install["stderr"]
    assert "the wheelhouse matches SHA256SUMS" in install["stdout"] and f"nimrunbook {__version__}" in install["stdout"]
    assert report["installed_from"]["stdout"].startswith(str(work / "venv")), report["installed_from"]
    assert report["verify"]["rc"] == 0 and "signature: verified" in report["verify"]["stdout"], report["verify"]
    assert report["import"]["rc"] == 0, report["import"]["stdout"] + report["import"]["stderr"]
    document = json.loads((airgap_bundle / "bundle.json").read_text())
    inventory = report["inventory"]
    assert inventory["images"] == {tiny_image: document["images"][0]["digest"]}
    assert {k: v["sha256"] for k, v in inventory["objects"].items()} == {
        o["key"]: o["sha256"] for o in document["objects"]
    }
    assert inventory["nimrunbook"]["version"] == __version__
    # that inventory, carried out, makes the next bundle leave the wheelhouse out
    request = WheelhouseRequest(WheelhouseTarget.choose(None, None, inventory))
    assert wheelhouse_module.left_out_because(request, inventory)


# -- resuming, leaving out, removing -----------------------------------------------------------------------------


def _must_not_run(*arguments):
    raise AssertionError(f"pip or apt was run again: {arguments}")


def _wheelhouse_only_copy(bundle: Path, target: Path) -> Path:
    """A new bundle folder holding only an earlier run's wheelhouse and its record (hard links, not copies)."""
    shutil.copytree(bundle / "wheelhouse", target / "wheelhouse", copy_function=os.link)
    (target / ".nimrunbook").mkdir()
    os.link(bundle / ".nimrunbook" / "wheelhouse.json", target / ".nimrunbook" / "wheelhouse.json")
    return target


def test_a_rerun_for_the_same_target_does_not_run_pip_and_a_bundle_without_one_removes_it(
    airgap_bundle, standin_manifest, downloaded_cache, tmp_path, monkeypatch
):
    media = _wheelhouse_only_copy(airgap_bundle, tmp_path / "media")

    monkeypatch.setattr(wheelhouse_module, "_Pip", _must_not_run)
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM])
    create(media, plan=plan, wheelhouse=WheelhouseRequest(WheelhouseTarget.of_this_host()))
    assert sorted(os.listdir(media / "wheelhouse")) == sorted(os.listdir(airgap_bundle / "wheelhouse"))
    assert verify(media, allow_unsigned=True, record_dir=tmp_path / "records").ok
    create(media, plan=plan_publish(standin_manifest, downloaded_cache, [VLLM]))  # no wheelhouse asked for
    assert not (media / "wheelhouse").exists() and json.loads((media / "bundle.json").read_text())["wheelhouse"] is None
    assert verify(media, allow_unsigned=True, record_dir=tmp_path / "records").ok
    assert (airgap_bundle / "wheelhouse").is_dir()  # the links were removed, not the files behind them


def test_an_incremental_bundle_leaves_the_wheelhouse_out_when_the_inside_runs_this_version(
    standin_manifest, downloaded_cache, tmp_path
):
    have = {"objects": {}, "images": {}, "nimrunbook": {"version": __version__, "python": "3.11"}}
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM])
    result = create(tmp_path / "b", plan=plan, have=have, wheelhouse=WheelhouseRequest(WheelhouseTarget.of_this_host()))
    assert result.left_out["wheelhouse"] == f"the inside runs nimrunbook {__version__} already (its inventory says so)"
    assert not (tmp_path / "b" / "wheelhouse").exists()
    assert "No wheelhouse: the inside runs nimrunbook" in (tmp_path / "b" / "README.txt").read_text()
    older = {**have, "nimrunbook": {"version": "0.0.1"}}
    assert wheelhouse_module.left_out_because(WheelhouseRequest(WheelhouseTarget.of_this_host()), older) is None
    assert wheelhouse_module.left_out_because(WheelhouseRequest(WheelhouseTarget.of_this_host(), True), have) is None


def _host_release() -> str | None:
    try:
        facts = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    except OSError:
        return None
    return facts.get("VERSION_CODENAME", "").strip('"') or None


@pytest.mark.skipif(shutil.which("apt-get") is None or _host_release() is None, reason="needs a Debian or Ubuntu host")
def test_debian_packages_of_the_tools_are_carried_when_asked(airgap_bundle, tmp_path, monkeypatch):
    media = _wheelhouse_only_copy(airgap_bundle, tmp_path / "media")
    monkeypatch.setattr(wheelhouse_module, "_Pip", _must_not_run)
    release = _host_release()
    request = WheelhouseRequest(WheelhouseTarget.of_this_host(), debs=release)
    create(media, wheelhouse=request)
    folder = media / "wheelhouse" / "debs"
    names = sorted(p.name for p in folder.glob("*.deb"))
    assert any(n.startswith("skopeo_") for n in names) and any(n.startswith("openssh-client_") for n in names)
    sums = _sums(media)
    assert {f"wheelhouse/debs/{n}" for n in [*names, "install.sh"]} <= set(sums)
    house = json.loads((media / "bundle.json").read_text())["wheelhouse"]
    assert house["debs"] == {
        "release": release,
        "packages": ["skopeo", "openssh-client"],
        "files": len(names),
        "install": "wheelhouse/debs/install.sh",
    }
    assert "sh wheelhouse/debs/install.sh" in (media / "README.txt").read_text()
    assert "this bundle's packages, as root: sh $here/debs/install.sh" in (media / "wheelhouse/install.sh").read_text()
    # apt reads the folder alone as a repository: on this host (skopeo installed) it finds what the tools need there
    simulated = subprocess.run(["sh", str(folder / "install.sh"), "--simulate"], capture_output=True, text=True)
    assert simulated.returncode == 0, simulated.stdout + simulated.stderr
    assert "skopeo is already the newest version" in simulated.stdout or "Inst skopeo " in simulated.stdout
    assert "Packages" in [p.name for p in folder.iterdir()] and "wheelhouse/debs/Packages" in sums
    monkeypatch.setattr(debs_module, "_apt", _must_not_run)
    create(media, wheelhouse=request)  # resumed: neither pip nor apt
    assert sorted(p.name for p in folder.glob("*.deb")) == names
    assert verify(media, allow_unsigned=True, record_dir=tmp_path / "records").ok


def test_debian_packages_are_for_a_release_and_machine_nimrunbook_knows():
    with pytest.raises(InputError, match="not a Debian or Ubuntu release"):
        debs_module._sources("windows11", "amd64")
    with pytest.raises(InputError, match="cannot be chosen for the machine riscv64"):
        debs_module.architecture("riscv64")
    with pytest.raises(InputError, match="it was left out"):
        wheelhouse_request("no", debs="bookworm")
    with pytest.raises(InputError, match="not a Debian or Ubuntu release"):
        wheelhouse_request("auto", debs="windows11")  # refused before anything is downloaded


# -- install.sh refuses what it must not install -----------------------------------------------------------------


@pytest.fixture
def house(airgap_bundle, tmp_path) -> Path:
    """The wheelhouse and SHA256SUMS in a folder of their own (hard links: change a file by replacing it)."""
    copy = _wheelhouse_only_copy(airgap_bundle, tmp_path / "copy")
    shutil.copy(airgap_bundle / "SHA256SUMS", copy / "SHA256SUMS")
    return copy


def _install(house: Path, tmp_path: Path, python: str = "python3") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": python}
    return subprocess.run(
        ["sh", str(house / "wheelhouse/install.sh"), str(tmp_path / "venv")], capture_output=True, text=True, env=env
    )


def _fake_python(tmp_path: Path, facts: str) -> str:
    """An interpreter that reports ``facts`` (version, machine, glibc) and is the real one otherwise."""
    fake = tmp_path / "fakepython"
    fake.write_text(f'#!/bin/sh\ncase "$2" in *platform.machine*) echo "{facts}";; *) exec python3 "$@";; esac\n')
    fake.chmod(0o755)
    return str(fake)


def test_install_sh_refuses_a_wheelhouse_that_differs_from_sha256sums(house, tmp_path):
    (house / "wheelhouse/requirements.txt").unlink()
    (house / "wheelhouse/requirements.txt").write_text("nimrunbook==0.1.0 --hash=sha256:" + "0" * 64 + "\n")
    result = _install(house, tmp_path)
    assert result.returncode == 1 and "the wheelhouse does not match" in result.stderr
    assert "wheelhouse/requirements.txt: FAILED" in result.stderr and not (tmp_path / "venv").exists()


def test_install_sh_refuses_a_link_in_the_wheelhouse(house, tmp_path):
    wheel = next((house / "wheelhouse").glob("pip-*.whl"))
    wheel.unlink()
    wheel.symlink_to("/etc/passwd")
    result = _install(house, tmp_path)
    assert result.returncode == 1 and "holds links or special files" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("facts", "said"),
    [
        ("3.99 x86_64 2.36", "holds wheels for Python {python}, but {fake} is Python 3.99"),
        ("{python} riscv64 2.36", "holds wheels for x86_64 machines"),
        ("{python} x86_64 2.3", "need glibc"),
    ],
)
def test_install_sh_says_what_to_do_when_the_host_does_not_fit(house, tmp_path, facts, said):
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    fake = _fake_python(tmp_path, facts.format(python=python))
    result = _install(house, tmp_path, fake)
    assert result.returncode == 1 and said.format(python=python, fake=fake) in result.stderr, result.stderr
    assert "nimrunbook bundle create ... --python-version" in result.stderr and not (tmp_path / "venv").exists()


# -- nimrunbook's own wheel ----------------------------------------------------------------------------------------


def test_own_wheel_copies_the_installed_wheel_or_repacks_the_installed_files_and_refuses_changed_ones(
    airgap_bundle, tmp_path
):
    original = next((airgap_bundle / "wheelhouse").glob("nimrunbook-*.whl"))
    source = tmp_path / "dist" / original.name
    source.parent.mkdir()
    shutil.copy(original, source)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin/python")
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True, text=True
        ).stdout.strip()
    )
    install = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", str(source)]
    subprocess.run(install, check=True, capture_output=True)
    # the dependencies from this test venv, by a path line only (its own .pth, the editable nimrunbook, is not read)
    (site / "test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    def own(directory: Path) -> subprocess.CompletedProcess:
        code = "import sys; from nimrunbook.bundle.own_wheel import own_wheel; print(own_wheel(sys.argv[1]))"
        return subprocess.run([python, "-c", code, str(directory)], capture_output=True, text=True, cwd=tmp_path)

    copied = own(tmp_path / "copied")
    assert copied.returncode == 0, copied.stderr
    assert Path(copied.stdout.strip()).read_bytes() == original.read_bytes()  # the very file pip installed from

    source.unlink()  # gone: repacked from the installed files
    repacked = own(tmp_path / "repacked")
    assert repacked.returncode == 0, repacked.stderr
    with zipfile.ZipFile(original) as before, zipfile.ZipFile(repacked.stdout.strip()) as after:
        assert sorted(before.namelist()) == sorted(after.namelist())
        record = next(n for n in before.namelist() if n.endswith(".dist-info/RECORD"))
        assert all(before.read(n) == after.read(n) for n in before.namelist() if n != record)

    with open(site / "nimrunbook" / "notebooks" / "00_preflight.ipynb", "a") as notebook:
        notebook.write("changed after the install\n")
    changed = own(tmp_path / "changed")
    assert changed.returncode != 0 and "The installed nimrunbook differs from what was installed" in changed.stderr
    assert "nimrunbook/notebooks/00_preflight.ipynb" in changed.stderr


def test_own_wheel_of_this_checkout_is_built_reproducibly(tmp_path):
    first, second = own_wheel(tmp_path / "a"), own_wheel(tmp_path / "b")
    assert first.name == f"nimrunbook-{__version__}-py3-none-any.whl"
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as wheel:
        assert "nimrunbook/bundle/install.sh.in" in wheel.namelist()


def test_a_wheelhouse_failure_is_one_paragraph_with_pips_words(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no configured index or mirror but this unreachable one
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://user:s3cret@127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    request = WheelhouseRequest(WheelhouseTarget.parse("3.11", "manylinux_2_17_x86_64"))
    pip = wheelhouse_module._Pip(request.target)
    with pytest.raises(NimRunbookError) as caught:
        pip.run(
            ["download", "--dest", str(tmp_path), "--no-deps", *request.target.pip_options(), "six"],
            "download the wheels",
            request.target,
            wheelhouse_module.SILENT,
        )
    message = str(caught.value)
    assert message.startswith("pip could not download the wheels (Python 3.11 (cp311) on manylinux_2_17_x86_64)")
    assert "s3cret" not in message and "PIP_INDEX_URL" in message
