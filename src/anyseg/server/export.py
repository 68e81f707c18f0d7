"""Export an annotation project: SA-1B per-image JSON and/or one COCO instances JSON.

Layout written under the output folder (readable by :func:`anyseg.data.sa1b.find_dataset`, so
``anyseg train`` reads it as it is)::

    OUT/images/<stem>.<png|jpg>       the annotated images (copies, never links)
    OUT/annotations/<stem>.json       SA-1B per-image records           (format sa1b or both)
    OUT/coco_instances.json           COCO instances, file_name in images/ (format coco or both)

Only accepted masks are exported (proposals a person has not accepted are not data) and only
images with at least one accepted mask, unless ``include_empty`` is set. A mask is exported only
with the very pixels it was drawn on: the image file is hashed while it is copied, and masks
recorded for another SHA-256 (the file was replaced since) are kept apart and reported instead.
Images are copied byte for byte when their stored pixels are the model's, otherwise written
from :func:`anyseg.io.read_image` (upright, 8-bit), so editing the export never touches the
originals.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from anyseg.data.coco import write_coco
from anyseg.data.sa1b import ImageRecord, MaskAnnotation, write_image_record
from anyseg.errors import InvalidInputError
from anyseg.io import atomic_write_bytes, read_image, write_image
from anyseg.server.config import DATABASE_NAME, DEFAULT_PROJECT_DIRNAME
from anyseg.server.images import link_problem, safe_image_path, stored_as_shown
from anyseg.server.records import ImageRow, MaskRow
from anyseg.server.storage import ProjectStore

ExportFormat = Literal["sa1b", "coco", "both"]
EXPORT_FORMATS: tuple[str, ...] = ("sa1b", "coco", "both")
COCO_FILE_NAME = "coco_instances.json"
_COPYABLE = (".png", ".jpg", ".jpeg")
#: Prefix of the temporary folders of the page's zip exports: ``anyseg-export-<pid>-<random>``.
TEMP_PREFIX = "anyseg-export-"
# Temporary folders without a process id (older versions) older than this are leftovers.
_LEGACY_TEMP_AGE_S = 600.0


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: counts, the paths of its parts (None when not written), and what
    it left out: images no longer in the folder, and images whose file changed since masks were
    drawn on it (file name, number of masks kept apart)."""

    out_dir: Path
    num_images: int
    num_masks: int
    sa1b_dir: Path | None
    coco_json: Path | None
    skipped_missing: tuple[str, ...]
    skipped_changed: tuple[tuple[str, int], ...] = ()


def _annotation(mask: MaskRow) -> MaskAnnotation:
    x, y, w, h = (float(v) for v in mask.bbox)
    crop = None if mask.crop_box is None else tuple(float(v) for v in mask.crop_box)
    points = (
        None
        if not mask.point_coords
        else tuple((float(p[0]), float(p[1])) for p in mask.point_coords)
    )
    return MaskAnnotation(
        id=mask.id,
        segmentation={
            "size": list(mask.segmentation["size"]),
            "counts": mask.segmentation["counts"],
        },
        bbox=(x, y, w, h),
        area=float(mask.area),
        predicted_iou=mask.predicted_iou,
        stability_score=mask.stability_score,
        point_coords=points,
        crop_box=crop,  # type: ignore[arg-type]
        label=mask.label,
    )


def _exported_name(image: ImageRow, taken: set[str]) -> str:
    """Output file name: the original name when copyable, else ``<stem>.png``; unique stems."""
    src = Path(image.file_name)
    suffix = src.suffix.lower() if src.suffix.lower() in _COPYABLE else ".png"
    stem = src.stem
    if stem in taken:
        stem = f"{stem}-{image.id}"
    taken.add(stem)
    return f"{stem}{suffix}"


def _place_image(src: Path, dst: Path) -> str:
    """Write the image at ``dst`` upright as the annotations saw it; returns the SHA-256 of the
    source bytes the written pixels come from (a copy, never a link)."""
    data = src.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if stored_as_shown(src) and src.suffix.lower() == dst.suffix.lower():
        atomic_write_bytes(dst, data)
        return sha
    write_image(dst, read_image(src))
    # The decode read the file again: make sure it still held the hashed bytes.
    return sha if hashlib.sha256(src.read_bytes()).hexdigest() == sha else ""


def export_project(
    store: ProjectStore,
    image_dir: Path,
    out_dir: Path,
    fmt: ExportFormat = "both",
    include_empty: bool = False,
    overwrite: bool = False,
    follow_symlinks: bool = False,
) -> ExportSummary:
    """Write the project's accepted masks to ``out_dir`` (see the module docstring for layout).

    An earlier export in ``out_dir`` (its images/, annotations/ or COCO file) is an error unless
    ``overwrite`` is set, in which case those three are removed first; nothing else is touched.
    """
    if fmt not in EXPORT_FORMATS:
        raise InvalidInputError(f"export format must be one of {EXPORT_FORMATS}, got {fmt!r}")
    image_dir = Path(image_dir).resolve()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInputError(f"export destination {out_dir} exists and is not a folder")
    images_out = out_dir / "images"
    ann_out = out_dir / "annotations"
    earlier = [p for p in (images_out, ann_out, out_dir / COCO_FILE_NAME) if p.exists()]
    if earlier and not overwrite:
        raise InvalidInputError(
            f"{out_dir} already holds an export ({', '.join(p.name for p in earlier)}); "
            "choose another folder or pass --overwrite"
        )
    for path in earlier:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    images_out.mkdir(parents=True, exist_ok=True)
    if fmt in ("sa1b", "both"):
        ann_out.mkdir(parents=True, exist_ok=True)

    records: list[ImageRecord] = []
    missing: list[str] = []
    changed: list[tuple[str, int]] = []
    taken: set[str] = set()
    num_masks = 0
    # Images that keep their own file name come first, so a re-encoded namesake gets the suffix.
    images = sorted(
        store.list_images(include_missing=True),
        key=lambda i: (Path(i.file_name).suffix.lower() not in _COPYABLE, i.file_name),
    )
    for image in images:
        masks = store.list_masks(image.id, "accepted")
        stale = store.list_masks(image.id, "accepted", stale=True)
        if not masks and not include_empty:
            if stale:
                changed.append((image.file_name, len(stale)))
            continue
        src = safe_image_path(image_dir, image.file_name)
        if not src.is_file() or link_problem(image_dir, src, follow_symlinks):
            missing.append(image.file_name)
            continue
        name = _exported_name(image, taken)
        dst = images_out / name
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        if _place_image(src, dst) != image.sha256:
            # Replaced since the project last scanned it: none of its masks fit these pixels.
            dst.unlink()
            taken.discard(Path(name).stem)
            changed.append((image.file_name, len(masks) + len(stale)))
            continue
        if stale:
            changed.append((image.file_name, len(stale)))
        record = ImageRecord(
            image_id=image.id,
            file_name=name,
            width=image.width,
            height=image.height,
            annotations=tuple(_annotation(m) for m in masks),
        )
        if fmt in ("sa1b", "both"):
            write_image_record(ann_out / f"{Path(name).stem}.json", record)
        records.append(record)
        num_masks += len(masks)

    coco_path = None
    if fmt in ("coco", "both"):
        coco_path = out_dir / COCO_FILE_NAME
        write_coco(coco_path, records)
    return ExportSummary(
        out_dir=out_dir,
        num_images=len(records),
        num_masks=num_masks,
        sa1b_dir=out_dir if fmt in ("sa1b", "both") else None,
        coco_json=coco_path,
        skipped_missing=tuple(missing),
        skipped_changed=tuple(changed),
    )


def open_project(path: Path, image_dir: Path | None = None) -> tuple[ProjectStore, Path]:
    """Open a project folder (or the image folder served, holding the default project folder)
    and find its image folder (``image_dir`` if given, else the one recorded when served)."""
    path = Path(path)
    candidates = [path / DATABASE_NAME, path / DEFAULT_PROJECT_DIRNAME / DATABASE_NAME]
    database = next((c for c in candidates if c.is_file()), None)
    if database is None:
        raise InvalidInputError(
            f"no annotation project in {path}: expected {candidates[0]} or {candidates[1]} "
            "(created by `anyseg serve`)"
        )
    store = ProjectStore(database)
    recorded = store.get_meta("image_dir")
    folder = image_dir if image_dir is not None else (Path(recorded) if recorded else None)
    if folder is None or not folder.is_dir():
        store.close()
        raise InvalidInputError(
            f"the project's image folder {folder} is not there; pass the folder with --images"
        )
    return store, folder


def export_zip(
    store: ProjectStore,
    image_dir: Path,
    fmt: ExportFormat = "both",
    include_images: bool = True,
    follow_symlinks: bool = False,
) -> bytes:
    """The export as an in-memory zip (the page's download). Paths inside are relative to OUT.

    It is built in a temporary folder named after this process
    (:func:`remove_stale_export_dirs` removes those of processes that died mid-export).
    """
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
    try:
        root = tmp / "export"
        export_project(store, image_dir, root, fmt, follow_symlinks=follow_symlinks)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(root.rglob("*")):
                if not path.is_file():
                    continue
                rel = path.relative_to(root)
                if rel.parts[0] == "images" and not include_images:
                    continue
                # Images are already compressed: store them as they are.
                kind = zipfile.ZIP_STORED if rel.parts[0] == "images" else zipfile.ZIP_DEFLATED
                zf.write(path, rel.as_posix(), compress_type=kind)
        return buf.getvalue()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def remove_stale_export_dirs(root: Path | None = None) -> list[Path]:
    """Remove the zip-export folders that killed servers left in the temporary folder.

    Only this user's folders are touched: those named after a process that no longer runs, and
    those of older versions (no process id in the name) untouched for ten minutes. Returns the
    folders removed.
    """
    root = Path(tempfile.gettempdir() if root is None else root)
    removed: list[Path] = []
    try:
        entries = list(root.glob(f"{TEMP_PREFIX}*"))
    except OSError:
        return removed
    for path in entries:
        try:
            stat = path.lstat()
            if not path.is_dir() or path.is_symlink() or stat.st_uid != os.getuid():
                continue
            pid_text = path.name[len(TEMP_PREFIX) :].split("-", 1)[0]
            if pid_text.isdigit():
                stale = not _alive(int(pid_text))
            else:
                stale = time.time() - stat.st_mtime > _LEGACY_TEMP_AGE_S
            if stale:
                shutil.rmtree(path)
                removed.append(path)
        except OSError:
            continue  # removed meanwhile, or not ours to remove
    return removed
