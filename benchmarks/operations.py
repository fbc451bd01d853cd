"""One function per measured operation: its contenders (ours, the fair alternatives, the guide's) and its limit.

Each function prepares what its contenders need (untimed), has them run interleaved, and returns
a :class:`Group` for the report. Every contender starts each round from the same state: outputs
of the last round removed, an empty bucket, an empty destination registry, a cold page cache.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import baselines, ours
from benchmarks.limits import FASTEST_CLIENT, HASHED_COPY, HASHED_READ
from benchmarks.measure import FAIR, GUIDE, OURS, Contender, Group, Step, interleave


@dataclass
class Run:
    """What the operations share: scratch space, rounds, sizes, and things made once (the profiles)."""

    work: Path
    rounds: int
    size: int
    cores: int
    say: Callable[[str], None] = print
    _profiles: ours.Profiles | None = None
    _processed: Path | None = None
    notes: list[str] = field(default_factory=list)  # what was left out, and why
    payload: list[str] = field(default_factory=list)  # what the operations moved, for the report

    @property
    def profiles(self) -> ours.Profiles:
        """Every profile of the stand-in image, downloaded once by its own download-to-cache."""
        if self._profiles is None:
            self.say(f"downloading the stand-in image's profiles ({self.size / 1e9:.2f} GB)")
            self._profiles = ours.download_standin_profiles(self.work / "nim-cache", self.size)
            self.payload.append(
                f"Profiles: every profile of the stand-in NIM image, downloaded by its own download-to-cache: "
                f"{self._profiles.describe()}, nearly all of it in {ours.weight_files()} incompressible weight files."
            )
        return self._profiles

    @property
    def processed(self) -> Path:
        """The profiles processed into the NIM layout once (hard links): what is uploaded from inside."""
        if self._processed is None:
            self._processed = self.work / "processed"
            ours.process_cold(self.profiles, self._processed, self.work / "processed-journal.jsonl")
        return self._processed

    def scratch(self, name: str) -> Path:
        return self.work / name

    def group(self, key: str, title: str, noun: str, contenders: list[Contender], limits: dict[str, str]) -> Group:
        self.say(f"{title}: {', '.join(c.name for c in contenders)}")
        return Group(key, title, noun, interleave(contenders, self.rounds, self.say), limits)


def remove(*paths: Path) -> Callable[[], None]:
    def clean() -> None:
        for path in paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    return clean


def process(run: Run) -> Group:
    """Cache -> flat NIM layout with every digest: nothing known yet, so every byte is read and hashed."""
    profiles = run.profiles
    out, journal, sums = run.scratch("process-out"), run.scratch("process-journal.jsonl"), run.scratch("sums")
    reset = remove(out, journal, sums)
    contenders = [
        Contender(
            "`process_to_directory` (empty hash journal)",
            OURS,
            {"process": Step(lambda: ours.process_cold(profiles, out, journal))},
            profiles.total_bytes,
            reset=reset,
            counter=ours.bytes_hashed,
        ),
        Contender(
            f"`cp -al` + `xargs -P{run.cores} sha256sum`",
            FAIR,
            {"process": Step(lambda: baselines.link_and_hash(profiles.cache, out, sums, run.cores))},
            profiles.total_bytes,
            reset=reset,
        ),
        Contender(
            "`cp -rL` + `sha256sum`",
            GUIDE,
            {"process": Step(lambda: baselines.copy_and_hash(profiles.cache, out, sums))},
            profiles.total_bytes,
            reset=reset,
        ),
    ]
    group = run.group(
        "process", "Process the cache into the NIM layout, cold", "Cold", contenders, {"process": HASHED_READ}
    )
    group.notes.append(
        "The guide's `process_nim_cache.py --process` is not public; `cp -rL` + `sha256sum` stands for a "
        "script that makes a separate, hashed copy (shared blobs are copied once per link)."
    )
    return group


def bundle(run: Run) -> Group:
    """Profiles onto the media as a signed bundle, then verified from the media (cold), as inside."""
    profiles = run.profiles
    media, records = run.scratch("media"), run.scratch("verification-records")
    key, public = ours.signing_key(run.scratch("keys"))
    archive, sums = media / "nim-profiles.tar", media / "checksums.txt"
    tgz = media / "nim-profiles.tgz"
    reset = remove(media, records)
    contenders = [
        Contender(
            "`bundle.create` (signed) + `bundle.verify`",
            OURS,
            {
                "create": Step(lambda: ours.bundle_create(profiles, media / "bundle", key)),
                "verify": Step(lambda: ours.bundle_verify(media / "bundle", public, records)),
            },
            profiles.total_bytes,
            reset=reset,
            counter=ours.bytes_hashed,
        ),
        Contender(
            "`tar -cf` + `sync` + `sha256sum`; `sha256sum -c`",
            FAIR,
            {
                "create": Step(lambda: baselines.tar_and_hash(profiles.cache, archive, sums, gzip=False)),
                "verify": Step(lambda: baselines.check_sums(sums)),
            },
            profiles.total_bytes,
            reset=reset,
        ),
        Contender(
            "`tar -czf` + `sha256sum`; `sha256sum -c`",
            GUIDE,
            {
                "create": Step(lambda: baselines.tar_and_hash(profiles.cache, tgz, sums, gzip=True)),
                "verify": Step(lambda: baselines.check_sums(sums)),
            },
            profiles.total_bytes,
            reset=reset,
        ),
    ]
    limits = {"create": HASHED_COPY, "verify": HASHED_READ}
    group = run.group("bundle", "Bundle the profiles onto the media and verify them", "Bundle", contenders, limits)
    group.notes.append(
        "The media is a directory on the same filesystem. Ours fsyncs every file it writes, so the fair `tar` is "
        "followed by `sync` of the archive; the guide's commands are run as written."
    )
    return group


def publish(run: Run, server: ours.S3Server) -> Group:
    """The processed profiles uploaded to one S3 server, by nimrunbook (digests known or not) and by two CLIs."""
    profiles, processed = run.profiles, run.processed
    journal = run.scratch("publish-journal.jsonl")
    expected = profiles.files

    def uploaded() -> None:
        stored = server.count_objects()
        if stored != expected:
            raise RuntimeError(f"the bucket holds {stored} objects after the upload, expected {expected}")

    def step(action: Callable[[], object]) -> Step:
        return Step(action, after=uploaded)

    reset = server.empty_bucket
    objects = processed / "objects"
    contenders = [
        Contender(
            "`publish`, digests known (processed manifest)",
            OURS,
            {"upload": step(lambda: ours.publish_objects(ours.digests_known(processed), server, None))},
            profiles.total_bytes,
            reset=reset,
            counter=ours.bytes_hashed,
        ),
        Contender(
            "`publish`, digests not yet known (empty hash journal)",
            OURS,
            {"upload": step(lambda: ours.publish_objects(profiles.plan().objects, server, journal))},
            profiles.total_bytes,
            reset=lambda: (reset(), remove(journal)()),
            counter=ours.bytes_hashed,
        ),
        Contender(
            f"`rclone copy --transfers {baselines.TRANSFERS}`",
            FAIR,
            {"upload": step(lambda: baselines.rclone_copy(objects, server, run.work))},
            profiles.total_bytes,
            reset=reset,
        ),
        Contender(
            "`aws s3 cp --recursive`",
            GUIDE,
            {"upload": step(lambda: baselines.aws_copy(objects, server, run.work))},
            profiles.total_bytes,
            reset=reset,
        ),
    ]
    key = "publish-" + ("rclone" if "rclone" in server.name else "moto")
    group = run.group(key, f"Publish to S3: {server.name}", "Publish", contenders, {"upload": FASTEST_CLIENT})
    group.notes += server.notes
    group.notes.append(
        f"Every client sends the processed directory's {profiles.files} objects to the same empty bucket; the "
        "object count is checked after each upload (untimed). The S3 CLIs send checksums only when required, as "
        "nimrunbook does for endpoints other than AWS's."
    )
    return group


@dataclass
class Image:
    """A test image in a source registry, and registries to copy it to."""

    ref: str
    size: int
    registries: ours.Registries


def images(run: Run, image: Image) -> Group:
    """The image onto the media and, inside, into an empty registry: ours, `docker save`/`load`/`push`, the guide's."""
    media, inside = run.scratch("image-media"), run.scratch("image-inside")
    archive, tgz = media / "nim-images.tar", media / "nim-images.tgz"
    destination: dict[str, str] = {}

    def fresh_destination() -> None:
        destination["host"] = image.registries.fresh_destination()

    def forget_then_fresh() -> None:
        baselines.docker_forget(image.ref)
        fresh_destination()

    reset = remove(media, inside)
    contenders = [
        Contender(
            "`images.export` (skopeo, OCI layout) + `images.import_`",
            OURS,
            {
                "export": Step(lambda: ours.image_export(image.ref, media / "oci", image.registries)),
                "import": Step(
                    lambda: ours.image_import(media / "oci", destination["host"], image.registries),
                    before=fresh_destination,
                ),
            },
            image.size,
            reset=reset,
        ),
        Contender(
            "`docker save`; `docker load` + `docker push`",
            FAIR,
            {
                "export": Step(lambda: baselines.docker_save(image.ref, archive)),
                "import": Step(
                    lambda: baselines.docker_load_push(archive, image.ref, destination["host"]),
                    before=forget_then_fresh,
                ),
            },
            image.size,
            reset=reset,
        ),
        Contender(
            "`skopeo copy` to OCI + `tar -czf`; `tar -xzf` + `skopeo copy`",
            GUIDE,
            {
                "export": Step(lambda: baselines.oci_tgz_export(image.ref, media, tgz)),
                "import": Step(
                    lambda: baselines.oci_tgz_import(tgz, inside, image.ref, destination["host"]),
                    before=fresh_destination,
                ),
            },
            image.size,
            reset=reset,
        ),
    ]
    limits = {"export": HASHED_COPY, "import": HASHED_COPY}
    group = run.group(
        "images", "Image: export onto the media, import into the registry inside", "Image", contenders, limits
    )
    group.notes.append(
        "The guide names `crane cp` to an OCI layout then `tar -czf`, or `docker save -o nim-images.tgz` (which "
        "writes an uncompressed tar whatever the name says; that is the fair Docker path here). crane has no "
        "package, so `skopeo copy` stands for it. Before `docker load` the image is removed from the engine "
        "(untimed), as the engine inside does not have it; every import goes to an empty registry."
    )
    group.notes.append(
        "Why every skopeo path stays far below the limit: skopeo checks each blob's sha256 as it copies, and "
        "Debian 12's skopeo 1.9 is built with Go 1.19, whose sha256 does not use the CPU's SHA extensions "
        "(`perf record` on `skopeo copy` in development: about three quarters of its samples in Go's AVX2 sha256 "
        "block, some 0.4 GB/s on one core); on import the registry hashes every blob it receives once more. "
        "nimrunbook adds no hashing of its own to either step (the bundle's image files are named by their "
        "digest and not hashed again when it is sealed), and starts the writeback of the blobs skopeo writes "
        "as they grow, so that its fsync at the end of each blob finds little left."
    )
    return group


def mirror(run: Run, image: Image) -> Group:
    """Registry to registry, when a network path exists: ours (digest kept and checked) against `skopeo copy`."""
    destination: dict[str, str] = {}

    def fresh_destination() -> None:
        destination["host"] = image.registries.fresh_destination()

    contenders = [
        Contender(
            "`images.mirror` (skopeo)",
            OURS,
            {
                "copy": Step(
                    lambda: ours.image_mirror(image.ref, destination["host"], image.registries), fresh_destination
                )
            },
            image.size,
        ),
        Contender(
            "`skopeo copy` registry to registry",
            FAIR,
            {"copy": Step(lambda: baselines.skopeo_copy(image.ref, destination["host"]), fresh_destination)},
            image.size,
        ),
    ]
    return run.group(
        "mirror",
        "Image: registry to registry (the network path)",
        "Registry-to-registry image",
        contenders,
        {"copy": HASHED_COPY},
    )


def many_files(run: Run, count: int, file_bytes: int = 4096) -> Group:
    """Plan and process a profile of many small files, at ``count`` and a tenth of it: the cost per file."""
    contenders = []
    for files in (max(1, count // 10), count):
        profiles = ours.many_file_profiles(run.scratch(f"cache-{files}-files"), files, file_bytes)
        out, journal = run.scratch(f"process-{files}-files"), run.scratch(f"journal-{files}-files.jsonl")
        planned: dict[str, object] = {}
        contenders.append(
            Contender(
                f"{files} files",
                OURS,
                {
                    "plan": Step(lambda p=profiles, s=planned: s.update(plan=p.plan())),
                    "process": Step(lambda s=planned, o=out, j=journal: ours.process(s["plan"], o, j)),
                },
                profiles.total_bytes,
                files=files,
                reset=remove(out, journal),
            )
        )
    group = run.group("files", "Plan and process a profile of many small files", "Many-file", contenders, {})
    group.notes.append(
        f"One profile whose files are {file_bytes} bytes each (a checkpoint in many shards), in the stand-in's "
        "manifest format and cache layout; `plan` parses the manifest and resolves every file in the cache, "
        "`process` links and hashes them. Flat means the cost per file does not grow with the number of files."
    )
    return group
