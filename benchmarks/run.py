"""Benchmarks: nimrunbook against the guide's own commands, on the same data, machine and servers, in one run.

Every figure is a ratio against a named baseline measured in the same run (seconds vary between
machines; ratios on one machine do not). Writes docs/benchmarks.md. Run through `benchmarks/run`,
which installs and starts what is needed.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nimrunbook import hashing  # noqa: E402
from nimrunbook.bundle import create as create_bundle  # noqa: E402
from nimrunbook.bundle import verify as verify_bundle  # noqa: E402
from nimrunbook.hashing import HashJournal  # noqa: E402
from nimrunbook.images import RegistryAccess, export, import_  # noqa: E402
from nimrunbook.nim import download_profiles  # noqa: E402
from nimrunbook.profiles import parse_manifest  # noqa: E402
from nimrunbook.progress import human_bytes  # noqa: E402
from nimrunbook.sandbox.registry import LocalRegistry  # noqa: E402
from nimrunbook.sandbox.s3 import S3Sandbox  # noqa: E402
from nimrunbook.standin import build_standin_image, catalog  # noqa: E402
from nimrunbook.store import S3Settings, make_client, plan_publish, process_to_directory, publish  # noqa: E402

WEIGHT_FILES = sum(1 for p in catalog.PROFILES_1_8_5 if p.engine_tag) + 1  # engines + the HF checkpoint


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def sh(command: str, **kwargs) -> None:
    subprocess.run(command, shell=True, check=True, stdout=subprocess.DEVNULL, **kwargs)


def drop_caches() -> None:
    """Cold page cache for both sides of a comparison, where we may (root)."""
    subprocess.run("sync; echo 3 > /proc/sys/vm/drop_caches", shell=True, stderr=subprocess.DEVNULL, check=False)


class Results:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, name: str, ours: float, baseline_name: str, baseline: float, target: float, note: str = "") -> None:
        ratio = baseline / ours if ours > 0 else float("inf")
        self.rows.append(
            {
                "name": name,
                "ours": ours,
                "baseline_name": baseline_name,
                "baseline": baseline,
                "ratio": ratio,
                "target": target,
                "met": ratio >= target,
                "note": note,
            }
        )
        print(
            f"{name}: ours {ours:.2f} s, {baseline_name} {baseline:.2f} s -> {ratio:.1f}x (target {target}x)",
            flush=True,
        )


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    fs = subprocess.run(["df", "-T", "/tmp"], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]
    memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3)
    return f"{os.cpu_count()} cores ({cpu}), {memory} GiB, /tmp on {fs}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-gb", type=float, default=2.0, help="profile payload, in GB")
    parser.add_argument(
        "--image-gb", type=float, default=None, help="extra layer of the test image, in GB (default: half the payload)"
    )
    parser.add_argument("--workdir", default=None, help="scratch directory (default: a temporary one under /tmp)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="nimrunbook-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    client = docker.from_env(timeout=600)
    results = Results()
    weight = int(args.size_gb * 1e9 / WEIGHT_FILES)
    try:
        # -- payload: every profile of the stand-in image, incompressible ------------------------
        image = build_standin_image(client, "1.8.5")
        manifest = parse_manifest(catalog.manifest_yaml("1.8.5"))
        ids = [p.id for p in catalog.PROFILES_1_8_5]
        cache = work / "cache"
        print(f"downloading {len(ids)} profiles ({human_bytes(weight * WEIGHT_FILES)}) into {cache}", flush=True)
        download_profiles(
            client,
            image,
            ids,
            cache,
            ngc_api_key="benchmark",
            network_mode="none",
            environment={"NIM_STANDIN_WEIGHT_BYTES": str(weight)},
        )
        plan = plan_publish(manifest, cache, ids)
        payload = plan.total_bytes

        # -- process into the NIM layout vs cp -rL -----------------------------------------------
        drop_caches()
        baseline = timed(lambda: sh(f"cp -rL {cache} {work / 'cp-rL'}"))
        shutil.rmtree(work / "cp-rL")
        drop_caches()
        journal = HashJournal.of_cache(cache)  # the cache's digests, by file identity
        hashed_before = hashing.BYTES_HASHED
        cold = timed(lambda: process_to_directory(plan, work / "processed", workers=2, journal=journal))
        hashed_by_process = hashing.BYTES_HASHED - hashed_before
        warm = timed(
            lambda: process_to_directory(
                plan_publish(manifest, cache, ids),
                work / "processed-again",
                workers=2,
                journal=journal,
            )
        )
        shutil.rmtree(work / "processed-again")
        drop_caches()
        sha_baseline = timed(
            lambda: sh(
                f"cp -rL {cache} {work / 'cp-rL'} && find {work / 'cp-rL'} -type f -exec sha256sum {{}} + > /dev/null"
            )
        )
        shutil.rmtree(work / "cp-rL")
        results.add(
            "process into the NIM layout (hard links; digests already known)",
            max(warm, 1e-4),
            "`cp -rL` of the cache",
            baseline,
            100,
            "layout only: the digests come from the hash journal, as they do once any step hashed the cache",
        )
        results.add(
            "process into the NIM layout, cold (hard links + sha256 of every byte)",
            cold,
            "`cp -rL` + `sha256sum` (the same outputs)",
            sha_baseline,
            1.0,
            "hashing is the whole cost here; the links themselves take milliseconds (the row above)",
        )

        # -- upload vs aws s3 cp --recursive on the same server ----------------------------------
        s3 = S3Sandbox(root=work / "s3").start()
        try:
            for bucket in ("nim-bench", "nim-bench-aws"):
                s3.create_bucket(bucket)
            key = s3.create_user("bench", ["s3:*"])
            s3.enforce_auth()
            settings = S3Settings(
                "nim-bench",
                s3.endpoint_url,
                access_key_id=key[0],
                secret_access_key=key[1],
                ca_bundle=str(s3.certs.ca_bundle),
            )
            objects = plan_publish(manifest, cache, ids).objects
            for obj in objects:
                obj.source = work / "processed" / "objects" / obj.key
            hashed_before = hashing.BYTES_HASHED
            ours = timed(lambda: publish(objects, settings, workers=8, journal=journal).raise_for_failures())
            hashed_by_publish = hashing.BYTES_HASHED - hashed_before
            config = work / "aws-config"
            config.write_text(
                "[default]\nregion = us-east-1\ns3 =\n  addressing_style = virtual\n  max_concurrent_requests = 10\n"
            )
            env = {
                **os.environ,
                "AWS_ACCESS_KEY_ID": key[0],
                "AWS_SECRET_ACCESS_KEY": key[1],
                "AWS_CONFIG_FILE": str(config),
            }
            aws = "/usr/bin/aws" if os.path.exists("/usr/bin/aws") else "aws"
            baseline = timed(
                lambda: sh(
                    f"{aws} --endpoint-url {s3.endpoint_url} --ca-bundle {s3.certs.ca_bundle} s3 cp "
                    f"{work / 'processed' / 'objects'} s3://nim-bench-aws/ --recursive --only-show-errors",
                    env=env,
                )
            )
            count = make_client(settings).list_objects_v2(Bucket="nim-bench-aws").get("KeyCount", 0)
            assert count == len(objects), f"aws s3 cp stored {count} of {len(objects)} objects"
            results.add(
                "upload to S3 (8 workers, sha256 per object, verified after upload)",
                ours,
                "`aws s3 cp --recursive` (awscli, 10 concurrent requests, no verification)",
                baseline,
                1.0,
                "same data, same TLS endpoint (moto behind nginx on loopback)",
            )
        finally:
            s3.stop()

        # -- bundle create + verify vs tar -czf + sha256sum ------------------------------------
        media = work / "media"
        drop_caches()
        ours = timed(
            lambda: (
                create_bundle(media / "bundle", plan=plan_publish(manifest, cache, ids)),
                verify_bundle(media / "bundle", allow_unsigned=True, record_dir=work / "records"),
            )
        )
        drop_caches()
        baseline = timed(
            lambda: sh(
                f"tar -czf {media / 'nim-profiles.tgz'} -C {cache.parent} {cache.name} && "
                f"sha256sum {media / 'nim-profiles.tgz'} > {media / 'checksums.txt'} && sha256sum -c {media / 'checksums.txt'}"
            )
        )
        results.add(
            "bundle create + verify (profiles; copy with hashing, then re-hash)",
            ours,
            "`tar -czf` + `sha256sum` + `sha256sum -c`",
            baseline,
            10,
        )

        # -- image export + import vs docker save | gzip, docker load, docker push -------------
        image_bytes = int((args.image_gb if args.image_gb is not None else args.size_gb / 2) * 1e9)
        big = _big_image(client, image, image_bytes, work)
        source, target, second = (
            LocalRegistry(root=work / name).start() for name in ("reg-src", "reg-dst", "reg-docker")
        )
        try:
            ref = f"{source.host}/nim/meta/llama-3.2-1b-instruct:bench"
            client.images.get(big).tag(ref)
            for event in client.api.push(ref, stream=True, decode=True):
                assert "error" not in event, event
            access = RegistryAccess(insecure={source.host, target.host, second.host})
            ours = timed(
                lambda: (
                    export([ref], work / "oci", access=access, backend="skopeo"),
                    import_(work / "oci", target.host, access=access),
                )
            )
            moved = f"{second.host}/nim/meta/llama-3.2-1b-instruct:bench"
            baseline = timed(
                lambda: sh(
                    f"docker save {ref} | gzip > {work / 'nim-images.tgz'} && docker load -i {work / 'nim-images.tgz'} && "
                    f"docker tag {ref} {moved} && docker push {moved}"
                )
            )
            results.add(
                f"image export + import ({human_bytes(image_bytes)} layer; skopeo, OCI layout, digest kept)",
                ours,
                "`docker save | gzip` + `docker load` + `docker push`",
                baseline,
                2,
            )
        finally:
            for registry in (source, target, second):
                registry.stop()
        _write(args, results, payload, hashed_by_process, hashed_by_publish)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _big_image(client, base: str, size: int, work: Path) -> str:
    """The stand-in image plus one layer of ``size`` incompressible bytes, built with no pulls."""
    blob = work / "blob.bin"
    sh(f"head -c {size} /dev/urandom > {blob}")
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = f"FROM {base}\nCOPY blob.bin /opt/nim/weights.bin\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(str(blob), "blob.bin")
    blob.unlink()
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag="nimrunbook/bench-image:1", rm=True)
    return "nimrunbook/bench-image:1"


def _write(args, results: Results, payload: int, by_process: int, by_publish: int) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/run --size-gb {args.size_gb}` on {machine()}.",
        f"Payload: every profile of the stand-in NIM image, {human_bytes(payload)} of incompressible bytes "
        f"({WEIGHT_FILES} weight files of {human_bytes(payload / WEIGHT_FILES)}). Each ratio is baseline time / our time,",
        "measured in the same run on the same data; page cache dropped before each side where root may.",
        "",
        "| what | ours (s) | baseline | baseline (s) | ratio | target | met |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for row in results.rows:
        baseline_name = row["baseline_name"].replace("|", "\\|")
        lines.append(
            f"| {row['name']} | {row['ours']:.2f} | {baseline_name} | {row['baseline']:.2f} | "
            f"{row['ratio']:.1f}x | {row['target']}x | {'yes' if row['met'] else '**no**'} |"
        )
    lines += ["", "Notes:", ""]
    lines += [f"- {row['name']}: {row['note']}" for row in results.rows if row["note"]]
    once = by_process == payload and by_publish == 0
    lines += [
        f"- Bytes hashed: processing hashed {human_bytes(by_process)} (the payload is {human_bytes(payload)}); the upload hashed "
        f"{human_bytes(by_publish)} more, reusing the digests. "
        + ("Every payload byte was hashed exactly once." if once else "**Some bytes were hashed more than once.**"),
    ]
    for row in results.rows:
        if not row["met"]:
            lines.append(
                f"- Missed: {row['name']} ({row['ratio']:.2f}x against a {row['target']}x target). " + _why(row)
            )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


def _why(row: dict) -> str:
    if "upload" in row["name"]:
        return (
            "Both clients wait on the same single-process S3 server here (moto behind nginx), which bounds throughput; "
            "ours also HEADs every object after the upload to verify it, which the aws CLI does not."
        )
    if "bundle" in row["name"]:
        return (
            "The bundle copies every byte to the media and reads it back to verify, and both are bound by the disk; "
            "tar's gzip is bound by one core. On a small payload fixed costs (the manifest, the README) weigh more."
        )
    if "layout" in row["name"] and "cold" not in row["name"]:
        return (
            "Linking takes milliseconds whatever the size, so on a small payload the fixed cost of writing the manifest "
            "and SHA256SUMS dominates; the ratio grows with the payload."
        )
    if "cold" in row["name"]:
        return "Hashing dominates and both sides hash every byte once; hard links save only the copy."
    return "See the numbers above."


if __name__ == "__main__":
    sys.exit(main())
