"""What a bundle holds, and where (relative to the bundle's root)."""

from __future__ import annotations

MANIFEST = "bundle.json"
SUMS = "SHA256SUMS"
README = "README.txt"
IMAGES_DIR = "images"
OBJECTS_DIR = "profiles/objects"
STATE_DIR = ".nimrunbook"  # write record; never verified, never shipped as payload
VERIFICATION_DIR = "verification"
FORMAT = "nimrunbook.bundle"
VERSION = 1
SIGNED_FILES = (SUMS, MANIFEST)
NOT_PAYLOAD = (SUMS, f"{SUMS}.sig", f"{MANIFEST}.sig")
