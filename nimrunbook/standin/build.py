"""Build the stand-in NIM image with no pulls: ``FROM scratch`` plus Debian's static busybox.

The build context is assembled in memory (busybox, its applet links, the
tools in ``bin/``, the manifest and catalog), so nothing is fetched and the
same image builds on any engine, for the tests and for the demo.
"""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path

from nimrunbook.errors import DockerError
from nimrunbook.standin import catalog

log = logging.getLogger(__name__)

BUSYBOX = Path("/bin/busybox")
IMAGE_REPOSITORY = "nimrunbook/standin-nim/llama-3.2-1b-instruct"
APPLETS = (
    "sh",
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
    "test",
    "true",
    "false",
    "id",
    "env",
    "du",
)
_BIN = Path(__file__).parent / "bin"

DOCKERFILE = """\
FROM scratch
COPY rootfs/ /
ENV NIM_CACHE_PATH=/opt/nim/.cache PATH=/usr/local/bin:/bin
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


def _add_dir(tar: tarfile.TarFile, path: str, uid: int = 0, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(path)
    info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, uid, uid
    tar.addfile(info)


def build_context(version: str) -> bytes:
    """The build context (a tar with the Dockerfile and ``rootfs/``) for a stand-in version."""
    if not BUSYBOX.exists():
        raise DockerError(
            f"{BUSYBOX} is missing, so the stand-in NIM image cannot be built.",
            hint="Install Debian's static busybox: `apt-get install busybox-static`.",
        )
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
            "rootfs/opt",
            "rootfs/opt/nim",
            "rootfs/opt/nim/etc",
            "rootfs/opt/nim/etc/default",
            "rootfs/opt/nim/standin",
        ):
            _add_dir(tar, directory)
        _add_dir(tar, "rootfs/tmp", mode=0o1777)
        _add_dir(tar, "rootfs/opt/nim/.cache", uid=1000, mode=0o775)
        tar.add(str(BUSYBOX), "rootfs/bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"rootfs/bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        for tool in sorted(_BIN.iterdir()):
            _add_bytes(tar, f"rootfs/usr/local/bin/{tool.name}", tool.read_bytes(), 0o755)
        _add_bytes(tar, "rootfs/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnim:x:1000:1000:nim:/opt/nim:/bin/sh\n")
        _add_bytes(tar, "rootfs/etc/group", b"root:x:0:\nnim:x:1000:\n")
        _add_bytes(tar, "rootfs/opt/nim/etc/default/model_manifest.yaml", catalog.manifest_yaml(version).encode())
        _add_bytes(tar, "rootfs/opt/nim/standin/profiles.tsv", catalog.profiles_tsv(version).encode())
        _add_bytes(tar, "rootfs/opt/nim/standin/files.tsv", catalog.files_tsv(version).encode())
        _add_bytes(tar, "rootfs/opt/nim/standin/version", version.encode())
        _add_bytes(tar, "rootfs/opt/nim/standin/model", catalog.MODEL.encode())
    return buffer.getvalue()


def build_standin_image(client, version: str = "1.8.5", repository: str = IMAGE_REPOSITORY) -> str:
    """Build (or reuse, by the engine's layer cache) the stand-in image; returns its ref."""
    if version not in catalog.VERSIONS:
        raise ValueError(f"unknown stand-in version {version!r}; known: {sorted(catalog.VERSIONS)}")
    ref = f"{repository}:{version}"
    log.info("building the stand-in NIM image %s", ref)
    client.images.build(fileobj=io.BytesIO(build_context(version)), custom_context=True, tag=ref, rm=True)
    return ref
