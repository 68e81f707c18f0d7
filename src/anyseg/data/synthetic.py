"""Procedural scenes with exact whole / part / subpart masks, for training and testing SAM models.

A scene is a textured background with objects painted back to front (random polygons, ellipses,
stars, smooth Fourier blobs, rounded rectangles, thin bent bars) filled with solid, gradient,
striped, checker or noise textures, shaded, sometimes with soft edges and a drop shadow, then the
whole image is lit unevenly, blurred and noised. Some objects are made of parts, and parts of
subparts: a body carrying a differently filled panel with a small emblem, or an assembly of
touching components. A point on an emblem is then truly ambiguous between emblem, panel and whole
object, the case SAM's three outputs exist for (Kirillov et al. 2023, sec. 3), so every level is
recorded as its own mask.

Masks are the *visible* pixels after occlusion; a whole object's mask is the union of its visible
elements, so it contains its parts' masks, and a part's mask contains its subparts'. Masks below
``min_area_frac`` of the image (or 4 pixels), and parts that cover (almost) all of their parent,
are dropped; the children of a dropped mask move up to its parent and levels follow the final
tree depth.

Everything derives from one integer seed; image ``i`` of a dataset written with seed ``s`` is
``generate_scene(image_seed(s, i), config)``, whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from anyseg._version import __version__
from anyseg.data.attributes import MaskAttributes, dominant_colour
from anyseg.data.sa1b import ImageRecord, record_from_masks, write_image_record
from anyseg.data.synth_config import SynthConfig
from anyseg.data.synthetic_render import (
    Element,
    background,
    finish,
    object_elements,
    paint_object,
    place_object,
)
from anyseg.errors import InvalidInputError
from anyseg.io import atomic_write_bytes, write_image

LEVEL_NAMES = ("whole", "part", "subpart")


@dataclass(frozen=True, eq=False)  # arrays: compare fields with numpy
class Scene:
    """One generated image and its visible masks.

    Attributes:
        image: RGB uint8 (H, W, 3).
        masks: bool (N, H, W), visible pixels of each instance.
        levels: (N,) ``"whole"``, ``"part"`` or ``"subpart"``.
        parents: (N,) index of the parent instance in ``masks``, -1 for wholes.
        labels: (N,) shape name of a whole, ``"panel"``/``"component"`` for parts, ``"emblem"``.
        attributes: (N,) what each mask shows (shape, fill, colour, role, visible fraction).
    """

    image: np.ndarray
    masks: np.ndarray
    levels: tuple[str, ...]
    parents: tuple[int, ...]
    labels: tuple[str, ...]
    attributes: tuple[MaskAttributes, ...]

    def to_record(self, image_id: int, file_name: str) -> ImageRecord:
        """SA-1B record; annotation ``id`` is the instance index, so ``parent_id`` refers to it."""
        return record_from_masks(
            self.masks,
            image_id,
            file_name,
            labels=list(self.labels),
            levels=list(self.levels),
            parent_ids=[None if p < 0 else p for p in self.parents],
            attributes=[a.to_dict() for a in self.attributes],
        )


def image_seed(seed: int, index: int) -> int:
    """The scene seed of image ``index`` in a dataset generated with ``seed``."""
    if seed < 0 or index < 0:
        raise InvalidInputError(f"seed and index must be >= 0, got {seed}, {index}")
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])


def generate_scene(seed: int, config: SynthConfig | None = None) -> Scene:
    """Generate one scene, deterministically from ``seed`` (a non-negative int)."""
    cfg = config or SynthConfig()
    if seed < 0:
        raise InvalidInputError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    h, w, s = cfg.height, cfg.width, min(cfg.height, cfg.width)
    canvas = background(rng, h, w)
    id_map = np.full((h, w), -1, dtype=np.int32)  # topmost element index per pixel
    owners: list[tuple[int, int]] = []  # per element: (object index, element index in object)
    objects: list[list[Element]] = []
    labels: list[str] = []
    crops: list[tuple[int, int, int, int]] = []
    painted: list[np.ndarray] = []  # per object: its crop of id_map right after painting it

    n = round(math.exp(rng.uniform(math.log(cfg.min_objects), math.log(cfg.max_objects + 1))))
    n = min(max(n, cfg.min_objects), cfg.max_objects)
    r_max = max(cfg.min_radius * 1.5, cfg.max_radius * min(1.0, math.sqrt(16.0 / n)))
    radii = np.exp(rng.uniform(math.log(cfg.min_radius), math.log(r_max), n)) * s
    radii[0] = max(radii[0], rng.uniform(0.6, 1.0) * r_max * s)  # one large anchor object
    # Larger objects mostly lie behind smaller ones, so that small ones stay visible.
    order = np.argsort(-radii * rng.lognormal(0.0, 0.5, n))
    centers: list[tuple[float, float, float]] = []
    for r in radii[order]:
        cx, cy = place_object(rng, float(r), centers, h, w, cfg.touch_prob)
        centers.append((cx, cy, float(r)))
        label, elements = object_elements(rng, cx, cy, float(r), s, cfg)
        crop = paint_object(rng, canvas, id_map, elements, len(owners), cfg, s)
        if crop is None:
            continue
        owners += [(len(objects), k) for k in range(len(elements))]
        objects.append(elements)
        labels.append(label)
        crops.append(crop)
        painted.append(id_map[crop[1] : crop[3], crop[0] : crop[2]].copy())

    image = finish(rng, canvas, cfg, s)
    return Scene(image, *_instances(image, id_map, owners, objects, labels, crops, painted, cfg))


# ---------------------------------------------------------------------------------------------
# Instances


def _instances(
    image: np.ndarray,
    id_map: np.ndarray,
    owners: list[tuple[int, int]],
    objects: list[list[Element]],
    labels: list[str],
    crops: list[tuple[int, int, int, int]],
    painted: list[np.ndarray],
    cfg: SynthConfig,
) -> tuple[
    np.ndarray, tuple[str, ...], tuple[int, ...], tuple[str, ...], tuple[MaskAttributes, ...]
]:
    """Visible masks of every whole/part/subpart from the element map, filtered (module doc),
    and their attributes."""
    h, w = id_map.shape
    # Instance tables: each element maps to the instance of every level it belongs to.
    inst_parent: list[int] = []
    inst_level: list[int] = []
    inst_label: list[str] = []
    inst_obj: list[int] = []
    inst_elem: list[int] = []  # the element whose outline and fill the instance shows, or -1
    elem_inst: list[list[int]] = []  # per object, per element: own instance or -1
    whole_of: list[int] = []
    for o, elements in enumerate(objects):
        whole = len(inst_parent)
        whole_of.append(whole)
        inst_parent.append(-1)
        inst_level.append(0)
        inst_label.append(labels[o])
        inst_obj.append(o)
        # A body with panels shows the object's outline; an assembly's pieces show no one shape.
        body = next(k for k, e in enumerate(elements) if e.is_body)
        inst_elem.append(-1 if elements[body].is_instance else body)
        own: list[int] = []
        for e in elements:
            if e.is_instance:
                parent = own[e.inst_parent] if e.inst_parent >= 0 else -1
                parent = whole if parent < 0 else parent
                own.append(len(inst_parent))
                inst_parent.append(parent)
                inst_level.append(inst_level[parent] + 1)
                inst_label.append(e.label)
                inst_obj.append(o)
                inst_elem.append(len(own) - 1)
            else:
                own.append(-1)
        elem_inst.append(own)
    n_inst = len(inst_parent)
    # One lookup table per level: element -> instance at that level (or -1); index 0 = background.
    luts = np.full((3, len(owners) + 1), -1, dtype=np.int32)
    for g, (o, k) in enumerate(owners):
        i = elem_inst[o][k]
        while i >= 0:
            luts[inst_level[i], g + 1] = i
            i = inst_parent[i]
        luts[0, g + 1] = whole_of[o]
    ids = id_map + 1
    # Each instance lies inside its object's crop: build masks there, paste the kept ones.
    crop_masks = []
    for i in range(n_inst):
        x0, y0, x1, y1 = crops[inst_obj[i]]
        crop_masks.append(luts[inst_level[i]][ids[y0:y1, x0:x1]] == i)
    areas = np.array([np.count_nonzero(m) for m in crop_masks], dtype=np.int64)

    # Drop tiny masks and parts that (almost) equal their parent; re-attach their children.
    min_area = max(4.0, cfg.min_area_frac * h * w)
    keep = areas >= min_area
    up = list(inst_parent)
    for i in range(n_inst):  # parents come before children
        p = up[i]
        while p >= 0 and not keep[p]:
            p = up[p]
        up[i] = p
        if keep[i] and p >= 0 and areas[i] >= 0.95 * areas[p]:
            keep[i] = False
    index = np.cumsum(keep) - 1
    kept = np.flatnonzero(keep).tolist()
    parents = tuple(int(index[up[i]]) if up[i] >= 0 else -1 for i in kept)
    depth: list[int] = []
    for q in parents:
        depth.append(0 if q < 0 else depth[q] + 1)
    levels = tuple(LEVEL_NAMES[min(d, 2)] for d in depth)
    masks = np.zeros((len(kept), h, w), dtype=bool)
    first_id = np.cumsum([0] + [len(e) for e in objects])  # global id of each object's element 0
    attributes = []
    for j, i in enumerate(kept):
        o = inst_obj[i]
        x0, y0, x1, y1 = crops[o]
        masks[j, y0:y1, x0:x1] = crop_masks[i]
        unoccluded = np.count_nonzero(luts[inst_level[i]][painted[o] + 1] == i)
        attributes.append(
            _attributes(
                image[y0:y1, x0:x1],
                ids[y0:y1, x0:x1],
                objects[o],
                inst_elem[i],
                int(first_id[o]),
                inst_level[i],
                inst_label[i],
                areas[i] / max(unoccluded, 1),
            )
        )
    return masks, levels, parents, tuple(inst_label[i] for i in kept), tuple(attributes)


def _attributes(
    image: np.ndarray,
    ids: np.ndarray,
    elements: list[Element],
    k: int,
    first_id: int,
    level: int,
    label: str,
    unoccluded_fraction: float,
) -> MaskAttributes:
    """Attributes of one instance whose defining element is ``elements[k]`` (-1: none), from the
    final image and element map (crops of the object's box; ``ids`` = element id + 1)."""
    role = "object" if level == 0 else label
    if k < 0:
        return MaskAttributes(
            role=role, visible_fraction=round(float(min(unoccluded_fraction, 1.0)), 3)
        )
    e = elements[k]
    own = ids == first_id + k + 1  # the element's own visible pixels (not its children's)
    colour = rgb = margin = fraction = None
    if own.any():
        colour, fraction, mean, margin = dominant_colour(image[own])
        rgb = tuple(np.rint(mean).astype(int).tolist())
        fraction, margin = round(fraction, 3), round(margin, 2)
    visible = min(unoccluded_fraction, 1.0) * e.in_image
    return MaskAttributes(
        role=role,
        shape=e.kind,
        sides=e.sides or None,
        fill=e.fill,
        fill_contrast=None if e.fill is None else round(e.fill_contrast, 1),
        colour=colour,
        colour_fraction=fraction,
        colour_rgb=rgb,  # type: ignore[arg-type]
        colour_margin=margin,
        visible_fraction=round(float(visible), 3),
    )


# ---------------------------------------------------------------------------------------------
# Datasets


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`write_dataset` wrote: image count, masks per level, wall time in seconds."""

    out_dir: Path
    count: int
    masks_per_level: dict[str, int]
    seconds: float

    @property
    def images_per_minute(self) -> float:
        return 60.0 * self.count / max(self.seconds, 1e-9)


def write_dataset(
    out_dir: str | os.PathLike[str],
    count: int,
    seed: int = 0,
    config: SynthConfig | None = None,
    workers: int = 2,
    *,
    overwrite: bool = False,
    progress: bool = True,
    image_format: str = "png",
) -> DatasetSummary:
    """Write ``count`` scenes in the SA-1B layout: ``images/synth_<i>.png``,
    ``annotations/synth_<i>.json`` and ``dataset.json`` (provenance: config, seed, count, version).

    Image ``i`` is ``generate_scene(image_seed(seed, i), config)``, so the output does not depend
    on ``workers``. Refuses a non-empty ``out_dir`` unless ``overwrite``, which first deletes the
    files a previous run wrote there (``synth_*`` images and annotations, ``dataset.json``).
    """
    cfg = config or SynthConfig()
    if count < 1:
        raise InvalidInputError(f"count must be >= 1, got {count}")
    if seed < 0:
        raise InvalidInputError(f"seed must be >= 0, got {seed}")
    if workers < 1:
        raise InvalidInputError(f"workers must be >= 1, got {workers}")
    if image_format not in ("png", "jpg"):
        raise InvalidInputError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise InvalidInputError(f"{root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise InvalidInputError(f"{root} is not empty; pass overwrite (--overwrite) to replace")
        for old in [*root.glob("images/synth_*"), *root.glob("annotations/synth_*")]:
            old.unlink()
        (root / "dataset.json").unlink(missing_ok=True)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)

    digits = max(6, len(str(count - 1)))
    jobs = [(str(root), i, seed, cfg, digits, image_format) for i in range(count)]
    totals = dict.fromkeys(LEVEL_NAMES, 0)
    start = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=count, desc="anyseg synth", unit="img", disable=not progress)
    try:
        if workers == 1:
            results = map(_write_one, jobs)
            for counts in results:
                _add(totals, counts)
                bar.update()
        else:
            # spawn: safe even when the caller has torch or threads running.
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers, initializer=_init_worker) as pool:
                for counts in pool.imap_unordered(_write_one, jobs, chunksize=4):
                    _add(totals, counts)
                    bar.update()
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    meta = {
        "generator": "anyseg.data.synthetic",
        "version": __version__,
        "seed": seed,
        "count": count,
        "image_format": image_format,
        "image_seed": "image i = generate_scene(image_seed(seed, i), SynthConfig(**config))",
        "config": dataclasses.asdict(cfg),
        "masks_per_level": totals,
    }
    atomic_write_bytes(root / "dataset.json", json.dumps(meta, indent=2).encode("utf-8"))
    return DatasetSummary(root, count, totals, seconds)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already


def _write_one(job: tuple[str, int, int, SynthConfig, int, str]) -> tuple[int, ...]:
    root, index, seed, cfg, digits, ext = job
    scene = generate_scene(image_seed(seed, index), cfg)
    stem = f"synth_{index:0{digits}d}"
    write_image(Path(root) / "images" / f"{stem}.{ext}", scene.image, fast_png=True)
    write_image_record(
        Path(root) / "annotations" / f"{stem}.json", scene.to_record(index, f"{stem}.{ext}")
    )
    return tuple(scene.levels.count(level) for level in LEVEL_NAMES)


def _add(totals: dict[str, int], counts: tuple[int, ...]) -> None:
    for level, c in zip(LEVEL_NAMES, counts, strict=True):
        totals[level] += c
