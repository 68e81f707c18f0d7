"""``anyseg segment``: masks for point, box and text prompts on one image."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, cast

from anyseg.cli.common import add_model_arguments, model_options
from anyseg.errors import InvalidInputError
from anyseg.io import atomic_write_json


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "segment",
        help="segment an object from point, box and/or text prompts",
        description=(
            "Segment one image from point, box and text prompts. Writes the mask PNG(s), an "
            "overlay PNG (mask tinted over the image, prompts drawn, the phrase written) and a "
            "JSON with scores and COCO RLE into the output folder. Coordinates are pixels of "
            "the original image."
        ),
        epilog=(
            "examples: anyseg segment examples/scene.png --point 300,200 --multimask -o out/ ; "
            'anyseg segment examples/scene.png --text "the yellow star" -o out/'
        ),
    )
    p.add_argument("image", help="image file (PNG, JPEG, ...)")
    p.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="X,Y[,LABEL]",
        help="a point prompt; LABEL 1 = foreground (default), 0 = background; repeatable",
    )
    p.add_argument("--box", metavar="X0,Y0,X1,Y1", help="a box prompt (XYXY pixels)")
    p.add_argument(
        "--text",
        metavar="PHRASE",
        help='a text prompt, e.g. "the yellow star" (models with a text path; alone or with '
        "points and a box; --clip for another CLIP)",
    )
    p.add_argument(
        "--multimask",
        action="store_true",
        help="return three candidate masks for an ambiguous prompt (e.g. a single point)",
    )
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    add_model_arguments(p)
    p.set_defaults(run=run)


def parse_point(text: str) -> tuple[float, float, int]:
    """'X,Y' or 'X,Y,LABEL' -> (x, y, label)."""
    parts = text.split(",")
    try:
        values = [float(v) for v in parts]
    except ValueError:
        raise InvalidInputError(f"--point {text!r}: expected X,Y or X,Y,LABEL numbers") from None
    if len(values) not in (2, 3):
        raise InvalidInputError(f"--point {text!r}: expected X,Y or X,Y,LABEL")
    label = int(values[2]) if len(values) == 3 else 1
    if len(values) == 3 and values[2] not in (0.0, 1.0):
        raise InvalidInputError(f"--point {text!r}: LABEL must be 1 (foreground) or 0 (background)")
    return values[0], values[1], label


def parse_box(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InvalidInputError(f"--box {text!r}: expected X0,Y0,X1,Y1 numbers") from None
    if len(values) != 4:
        raise InvalidInputError(f"--box {text!r}: expected four numbers X0,Y0,X1,Y1")
    return values


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from anyseg.cli.common import make_predictor, report_mode
    from anyseg.io import read_image
    from anyseg.ops.rle import encode_mask
    from anyseg.visualize import distinct_colors, draw_labels, draw_prompts, overlay_masks

    points = [parse_point(t) for t in args.point]
    box = parse_box(args.box) if args.box else None
    if not points and box is None and args.text is None:
        raise InvalidInputError(
            'give at least one --point X,Y, a --box X0,Y0,X1,Y1 or a --text "PHRASE"'
        )
    image = read_image(args.image)
    options = model_options(args)
    predictor = make_predictor(options)
    report_mode(predictor.describe_mode(), options.mode)
    if args.text is not None:
        predictor.clip  # noqa: B018 - a model without a text path fails before encoding the image
    predictor.set_image(image)
    coords = np.array([[x, y] for x, y, _ in points]) if points else None
    labels = np.array([lab for _, _, lab in points]) if points else None
    box_arr = np.array(box) if box is not None else None
    masks, scores, _ = predictor.predict(
        coords, labels, box_arr, multimask_output=args.multimask, text=args.text
    )

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).stem
    order = np.argsort(-scores, kind="stable")  # best first
    colors = distinct_colors(len(masks))
    records = []
    for rank, i in enumerate(order):
        name = f"{stem}_mask{rank}.png" if len(masks) > 1 else f"{stem}_mask.png"
        _save_png(out / name, (masks[i] * 255).astype(np.uint8))
        ys, xs = np.nonzero(masks[i])
        bbox = (
            [
                int(xs.min()),
                int(ys.min()),
                int(xs.max() - xs.min() + 1),
                int(ys.max() - ys.min() + 1),
            ]
            if len(xs)
            else [0, 0, 0, 0]
        )
        records.append(
            {
                "rank": rank,
                "output_index": int(i),
                "predicted_iou": float(scores[i]),
                "area": int(masks[i].sum()),
                "bbox": bbox,
                "segmentation": encode_mask(masks[i]),
                "file": name,
            }
        )
    best = masks[order[0]]
    overlay = overlay_masks(image, best[None], colors[:1])
    overlay = draw_prompts(overlay, coords, labels, box_arr)
    if args.text is not None:
        best_box = cast(list[float], records[0]["bbox"])  # rank 0: the best mask
        overlay = draw_labels(overlay, [best_box], [args.text], colors[:1])
    overlay_name = f"{stem}_overlay.png"
    _save_png(out / overlay_name, overlay)
    if len(masks) > 1:  # the candidates side by side, best first
        panels = [
            draw_prompts(
                overlay_masks(image, masks[i][None], colors[r : r + 1]), coords, labels, box_arr
            )
            for r, i in enumerate(order)
        ]
        _save_png(out / f"{stem}_candidates.png", np.concatenate(panels, axis=1))
    result = {
        "image": {"file_name": str(args.image), "height": image.shape[0], "width": image.shape[1]},
        "checkpoint": str(options.checkpoint or "bundled default model"),
        "prompts": {
            "points": [[x, y] for x, y, _ in points],
            "labels": [lab for _, _, lab in points],
            "box": box,
            "text": args.text,
        },
        "multimask_output": bool(args.multimask),
        "mode": predictor.describe_mode(),
        "overlay": overlay_name,
        "masks": records,
    }
    atomic_write_json(out / f"{stem}.json", result)
    for r in records:
        iou, area = r["predicted_iou"], r["area"]
        print(
            f"mask {r['rank']}: predicted IoU {iou:.3f}, area {area} px -> {out / str(r['file'])}"
        )
    print(f"overlay -> {out / overlay_name}")
    return 0


def _save_png(path: Path, array: Any) -> None:
    from PIL import Image

    from anyseg.io import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
