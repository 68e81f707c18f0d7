"""Engine inputs: folders as ``anyseg auto`` reads them, manifests, fsspec URIs, collisions."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from anyseg.automatic.job import find_images
from anyseg.engine.inputs import ImageSource, is_uri, resolve_inputs
from anyseg.errors import InvalidInputError


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folders_and_files_are_found_as_anyseg_auto_finds_them(tmp_path: Path) -> None:
    for name in ["b.png", "a.JPG", "notes.txt.bak", "c.webp"]:
        touch(tmp_path / "in" / name)
    touch(tmp_path / "in" / "sub" / "d.png")  # not recursive
    touch(tmp_path / "e.png")
    found = resolve_inputs([tmp_path / "in", tmp_path / "e.png", tmp_path / "in"], None)
    expected = find_images([tmp_path / "in", tmp_path / "e.png"])
    assert [s.location for s in found] == [str(p) for p in expected]
    # Files inside the output folder are never inputs.
    touch(tmp_path / "in" / "out" / "x.png")
    again = resolve_inputs([tmp_path / "in" / "out", tmp_path / "e.png"], tmp_path / "in" / "out")
    assert [s.name for s in again] == ["e.png"]


def test_manifests_name_paths_relative_to_themselves_and_uris(tmp_path: Path) -> None:
    touch(tmp_path / "data" / "a.png")
    manifest = tmp_path / "data" / "list.txt"
    manifest.write_text(
        "# images of the run\n\na.png\n  sub/b.jpg  \n/abs/c.png\ns3://bucket/d.jpg\n"
    )
    found = resolve_inputs([manifest], None)
    assert [s.location for s in found] == [
        str(tmp_path / "data" / "a.png"),
        str(tmp_path / "data" / "sub" / "b.jpg"),  # not checked here: fails when labelled
        "/abs/c.png",
        "s3://bucket/d.jpg",
    ]
    assert [s.stem for s in found] == ["a", "b", "c", "d"] and found[3].remote
    (tmp_path / "data" / "nested.txt").write_text("list.txt\n")
    with pytest.raises(InvalidInputError, match="do not nest"):
        resolve_inputs([tmp_path / "data" / "nested.txt"], None)


def test_fsspec_folders_and_manifests() -> None:
    fs = fsspec.filesystem("memory")
    for name in ["img/b.png", "img/a.jpg", "img/readme.md", "img/deep/c.png"]:
        fs.pipe_file(f"/engine-inputs/{name}", b"x")
    fs.pipe_file("/engine-inputs/list.txt", b"img/a.jpg\nmemory://elsewhere/e.png\n")
    folder = resolve_inputs(["memory://engine-inputs/img"], None)
    assert [s.name for s in folder] == ["a.jpg", "b.png"]
    assert all(s.remote and s.location.startswith("memory://") for s in folder)
    assert folder[0].read_bytes() == b"x"
    listed = resolve_inputs(["memory://engine-inputs/list.txt"], None)
    assert [s.location for s in listed] == [
        "memory://engine-inputs/img/a.jpg",
        "memory://elsewhere/e.png",
    ]
    with pytest.raises(InvalidInputError, match="no such file or folder"):
        resolve_inputs(["memory://engine-inputs/missing/"], None)


def test_clear_errors(tmp_path: Path) -> None:
    touch(tmp_path / "a" / "x.png")
    touch(tmp_path / "b" / "x.jpg")
    with pytest.raises(InvalidInputError, match=r"would both write x\.json"):
        resolve_inputs([tmp_path / "a", tmp_path / "b"], None)
    with pytest.raises(InvalidInputError, match="no such file or folder"):
        resolve_inputs([tmp_path / "missing"], None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no images found"):
        resolve_inputs([tmp_path / "empty"], None)
    touch(tmp_path / "c" / "summary.png")
    with pytest.raises(InvalidInputError, match="engine's own file"):
        resolve_inputs([tmp_path / "c"], None)
    with pytest.raises(InvalidInputError, match="s3fs"):  # the filesystem's package is named
        resolve_inputs(["s3://bucket/images/"], None)


def test_locations() -> None:
    assert is_uri("s3://b/k") and is_uri("gs://b") and not is_uri("file:///x") and not is_uri("a/b")
    source = ImageSource("gs://bucket/photos/sa_12.jpg")
    assert (source.name, source.stem, source.parent) == ("sa_12.jpg", "sa_12", "gs://bucket/photos")
