"""AnnotationService without HTTP: the model lock under concurrent clicks, thread settings,
and pre-fill with the real automatic generator."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from anyseg.ops.rle import decode_rle


def test_concurrent_clicks_on_two_images(service: Any) -> None:
    """Clicks on different images from several threads get the answers of sequential calls
    (the predictor's embedding is switched under the model lock)."""
    ids = [i.id for i in service.list_images()]
    jobs = [(ids[k % 2], [20.0 + 7 * k, 30.0 + 3 * k]) for k in range(6)]

    def click(job: tuple[int, list[float]]) -> list[str]:
        image_id, xy = job
        pred = service.predict(image_id, [xy], [1])
        return [c.segmentation["counts"] for c in pred.candidates]

    sequential = [click(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(click, jobs))
    assert concurrent == sequential
    assert sequential[0] != sequential[1]  # the two images really differ


def test_decode_threads_is_scoped(service: Any) -> None:
    image_id = service.list_images()[0].id
    before = torch.get_num_threads()
    reference = service.predict(image_id, [[40, 45]], [1])
    service.config = dataclasses.replace(service.config, decode_threads=1)
    single = service.predict(image_id, [[40, 45]], [1])
    assert torch.get_num_threads() == before
    for a, b in zip(reference.candidates, single.candidates, strict=True):
        assert np.array_equal(decode_rle(a.segmentation), decode_rle(b.segmentation))


def test_prefill_with_the_automatic_generator(config: Any, test_model: Any) -> None:
    from anyseg.automatic import AmgConfig
    from anyseg.server.config import PrefillConfig
    from anyseg.server.service import AnnotationService

    # Thresholds at zero so the random test model proposes something to review.
    prefill = PrefillConfig(
        amg=AmgConfig(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    )
    svc = AnnotationService(dataclasses.replace(config, prefill=prefill), model=test_model)
    try:
        image = svc.list_images()[0]
        proposals = svc.prefill(image.id)
        assert proposals, "the generator proposed nothing"
        for p in proposals:
            assert p.status == "proposal" and p.source == "prefill"
            assert p.segmentation["size"] == [image.height, image.width]
            assert p.area == int(decode_rle(p.segmentation).sum()) > 0
            assert p.predicted_iou is not None and p.stability_score is not None
            assert p.crop_box == [0.0, 0.0, float(image.width), float(image.height)]
        accepted, listed = svc.list_masks(image.id)
        assert accepted == [] and [p.id for p in listed] == [p.id for p in proposals]
    finally:
        svc.close()
