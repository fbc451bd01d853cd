"""Before ``bundle create`` writes a byte: one writer per folder, and never over another bundle.

Two creates into one folder interleave their files and index; a create into a
folder that holds another bundle (or an unfinished one) leaves that bundle's
files behind, and the result then fails verification inside the air gap, far
from where it can be fixed. So the folder is locked for the whole create, and
what this create was asked for (images, objects, part size) is recorded in
``.nimrunbook/request.json``: the same request again resumes, a different one
is refused unless forced, and forcing removes the other bundle's files first
(its verification records are kept). A folder holding anything that is not
part of a bundle is refused: every such file would fail verification.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from nimrunbook.bundle import layout
from nimrunbook.errors import InputError
from nimrunbook.images.refs import ImageRef
from nimrunbook.localdisk import write_text_atomic
from nimrunbook.locks import FALLBACK_LOCK_NAME, folder_lock
from nimrunbook.store.plan import PublishPlan

REQUEST = f"{layout.STATE_DIR}/request.json"
Result = TypeVar("Result")


def one_writer(create: Callable[..., Result]) -> Callable[..., Result]:
    """Run ``create(destination, ...)`` holding the lock of ``destination`` (made first if absent)."""

    @functools.wraps(create)
    def locked(destination: str | Path, *args, **kwargs) -> Result:
        root = Path(destination)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InputError(f"{root} is not a folder.", hint="Give a folder on the media for the bundle.") from exc
        with folder_lock(root, "writing a bundle into"):
            return create(destination, *args, **kwargs)

    return locked


def _image_name(ref: object) -> str:
    try:
        return str(ImageRef.parse(str(ref)))
    except InputError:
        return str(ref)


def request_of(images: Sequence[str], plan: PublishPlan | None, part_size: int | None) -> dict:
    """What a create is asked to carry, in a form two creates can compare."""
    return {
        "images": sorted({_image_name(i) for i in images}),
        "objects": sorted({o.key for o in plan.objects} if plan else set()),
        "part_size": part_size,
    }


def _previous(root: Path) -> tuple[dict, str] | None:
    """The request behind what the folder holds, and a description of it; None for an empty folder."""
    request_file, manifest = root / REQUEST, root / layout.MANIFEST
    try:
        if request_file.is_file() and not request_file.is_symlink():
            return json.loads(request_file.read_text(encoding="utf-8")), "an unfinished or earlier bundle"
        if manifest.exists() or manifest.is_symlink():
            document = json.loads(manifest.read_text(encoding="utf-8"))
            left_out = document.get("left_out") or {}
            request = {
                "images": sorted(
                    {_image_name(i.get("source")) for i in document["images"]}
                    | {_image_name(i) for i in left_out.get("images", [])}
                ),
                "objects": sorted({o["key"] for o in document["objects"]} | set(left_out.get("objects", []))),
                "part_size": document.get("part_size"),
            }
            made = f"made {document.get('created')} on {document.get('host')} by {document.get('user')}"
            return (
                request,
                f"another bundle ({made}: {len(request['images'])} images, {len(request['objects'])} objects)",
            )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {"unreadable": True}, "another bundle, whose bundle.json cannot be read"
    return None


def _remove_bundle(root: Path) -> None:
    for name in (layout.MANIFEST, layout.SUMS, layout.README, *layout.SIGNATURES):
        (root / name).unlink(missing_ok=True)
    for name in (layout.IMAGES_DIR, layout.OBJECTS_DIR.split("/")[0], layout.WHEELHOUSE_DIR, layout.STATE_DIR):
        folder = root / name
        if folder.is_symlink() or folder.is_file():
            folder.unlink()
        elif folder.exists():
            shutil.rmtree(folder)


def claim(root: Path, request: dict, *, force: bool) -> None:
    """Refuse a folder this create must not write into; see the module docstring."""
    foreign = sorted(set(os.listdir(root)) - set(layout.TOP_LEVEL) - {FALLBACK_LOCK_NAME})
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise InputError(
            f"{root} holds files that are not part of a bundle ({shown}); the bundle would fail verification inside "
            "the air gap because of them.",
            hint="Give a folder of its own for the bundle, e.g. /media/usb/nim-bundle.",
        )
    previous = _previous(root)
    if previous is not None and previous[0] != request:
        if not force:
            raise InputError(
                f"{root} holds {previous[1]}, not the one asked for now. Writing this one into it would leave the other's "
                "files behind, and the bundle would fail verification inside.",
                hint="Give a new folder, or pass --force (force=True) to remove that bundle first; its verification "
                "records are kept. Asking for the same images and profiles again resumes instead.",
            )
        _remove_bundle(root)
    state = root / layout.STATE_DIR
    state.mkdir(exist_ok=True)
    write_text_atomic(root / REQUEST, json.dumps(request, indent=2) + "\n")
