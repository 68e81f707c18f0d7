"""Progress lines and the summary: each image counted once, failures reported when they happen."""

from __future__ import annotations

import io

from anyseg.engine.progress import EngineSummary, Progress
from anyseg.engine.worker import ImageResult


def test_progress_counts_each_image_once_and_reports_failures() -> None:
    out = io.StringIO()  # not a terminal: lines, not a bar
    progress = Progress(total=30, already_done=10, stream=out, interval=0.0)
    assert progress.add(ImageResult("/a.png", masks=4, seconds=0.5))
    assert not progress.add(ImageResult("/a.png", masks=4))  # a retried batch's duplicate
    progress.add(ImageResult("/b.png", error="b.png is not a readable image"))
    progress.add(ImageResult("/c.png", masks=0, hint="lower --pred-iou-thresh"))
    assert (progress.labelled, progress.masks, progress.worker_seconds) == (2, 4, 0.5)
    assert progress.failures == {"/b.png": "b.png is not a readable image"}
    text = out.getvalue()
    assert "anyseg auto: skipped /b.png: b.png is not a readable image" in text
    assert "/c.png: 0 masks kept: lower --pred-iou-thresh" in text
    assert "13/30 images (43%)" in text and "2.0 masks/img" in text and "1 failed" in text
    assert "ETA" not in text  # too few results for an estimate
    for i in range(10):
        progress.add(ImageResult(f"/{i}.png", masks=1))
    assert "ETA" in progress.line()
    progress.close()
    progress.close()
    assert out.getvalue().count("23/30 images") == 2  # the last add, and close once


def test_summary_rates() -> None:
    summary = EngineSummary("out", 10, 2, 6, 2, 30, 60.0, 40.0, 50.0, 2, 0.75, 0.0, 4)
    data = summary.to_json_dict()
    assert (data["images_per_minute"], data["masks_per_image"]) == (8.0, 5.0)
    assert data["workers"] == 2 and data["settings"] == {}
