"""What a bundle holds, and where (relative to the bundle's root)."""

from __future__ import annotations

from nimrunbook.images.exports import ARCHIVE_NAME, INDEX_NAME, OCI_DIR
from nimrunbook.localdisk import STATE_DIR as _STATE_DIR

MANIFEST = "bundle.json"
SUMS = "SHA256SUMS"
README = "README.txt"
IMAGES_DIR = "images"
IMAGES_INDEX = f"{IMAGES_DIR}/{INDEX_NAME}"
OCI_LAYOUT = f"{IMAGES_DIR}/{OCI_DIR}"
DOCKER_ARCHIVE = f"{IMAGES_DIR}/{ARCHIVE_NAME}"
OBJECTS_DIR = "profiles/objects"
WHEELHOUSE_DIR = "wheelhouse"  # nimrunbook and its dependencies as wheels, for the inside (bundle/wheelhouse.py)
WHEELHOUSE_INSTALL_NAME = "install.sh"
WHEELHOUSE_REQUIREMENTS_NAME = "requirements.txt"
WHEELHOUSE_DEBS_NAME = "debs"  # Debian packages of the tools, when asked (bundle/debs.py)
WHEELHOUSE_INSTALL = f"{WHEELHOUSE_DIR}/{WHEELHOUSE_INSTALL_NAME}"
WHEELHOUSE_REQUIREMENTS = f"{WHEELHOUSE_DIR}/{WHEELHOUSE_REQUIREMENTS_NAME}"
STATE_DIR = _STATE_DIR  # write record; never verified, never shipped as payload
VERIFICATION_DIR = "verification"
FORMAT = "nimrunbook.bundle"
VERSION = 1
SIGNED_FILES = (SUMS, MANIFEST)
SIGNATURES = tuple(f"{name}.sig" for name in SIGNED_FILES)
NOT_PAYLOAD = (SUMS, *SIGNATURES)
# Everything `bundle create` may put at the top of its folder; anything else there is not ours.
TOP_LEVEL = (MANIFEST, SUMS, README, *SIGNATURES, IMAGES_DIR, "profiles", WHEELHOUSE_DIR, STATE_DIR, VERIFICATION_DIR)
