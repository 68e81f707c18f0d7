"""Shard assembly: which image goes where, exactly once, and only stale shards rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

from anyseg.data.shards import find_shard_dataset
from anyseg.engine.inputs import ImageSource
from anyseg.engine.output import OutputStore
from anyseg.engine.shards import ShardSpec, assemble_shards, build_shard, plan_shards


def labelled_output(tmp_path: Path, n: int) -> tuple[list[ImageSource], OutputStore]:
    """n images and an output where each has a (stand-in) JSON."""
    sources = []
    store = OutputStore(tmp_path / "out")
    store.create()
    for i in range(n):
        image = tmp_path / "in" / f"sa_{i}.jpg"
        image.parent.mkdir(exist_ok=True)
        image.write_bytes(f"jpeg {i}".encode())
        sources.append(ImageSource(str(image)))
        store.write_bytes(f"sa_{i}.json", json.dumps({"image": i}).encode())
    return sources, store


def serial(calls: list[list[str]], output: str):  # type: ignore[no-untyped-def]
    def run(specs: list[ShardSpec]) -> None:
        calls.append([s.name for s in specs])
        for spec in specs:
            build_shard(spec, output)

    return run


def test_plan_splits_the_input_order_into_contiguous_shards(tmp_path: Path) -> None:
    sources, store = labelled_output(tmp_path, 7)
    specs = plan_shards(sources, 3, store.stamps())
    assert [s.name for s in specs] == ["sa_000000.tar", "sa_000001.tar", "sa_000002.tar"]
    assert [[Path(loc).stem for loc in s.locations] for s in specs] == [
        ["sa_0", "sa_1"],
        ["sa_2", "sa_3"],
        ["sa_4", "sa_5", "sa_6"],
    ]
    assert len(plan_shards(sources[:2], 5, store.stamps())) == 2  # no empty shards
    store.remove("sa_3.json")  # not done: in no shard yet
    assert plan_shards(sources, 3, store.stamps())[1].locations == (sources[2].location,)


def test_assembly_is_exactly_once_and_rebuilds_only_what_changed(tmp_path: Path) -> None:
    sources, store = labelled_output(tmp_path, 6)
    store.remove("sa_4.json")  # failed so far
    calls: list[list[str]] = []
    run = serial(calls, store.location)
    assert assemble_shards(sources, store, 3, set(), run) == (3, 3)
    shards = tmp_path / "out" / "shards"
    members = find_shard_dataset(shards).pairs
    assert [(i.name, j.name) for i, j in members] == [
        (f"sa_{k}.jpg", f"sa_{k}.json") for k in (0, 1, 2, 3, 5)
    ]
    assert members[0][0].read_bytes() == b"jpeg 0"
    # Nothing changed: nothing rebuilt, the index untouched.
    index = (shards / "index.json").stat().st_mtime_ns
    assert assemble_shards(sources, store, 3, set(), run) == (3, 0)
    assert (shards / "index.json").stat().st_mtime_ns == index
    # The failed image done later, one image relabelled: only their shards.
    store.write_bytes("sa_4.json", b'{"image": 4}')
    assert assemble_shards(sources, store, 3, {sources[0].location}, run) == (3, 2)
    assert calls[-1] == ["sa_000000.tar", "sa_000002.tar"]
    # Fewer shards asked for: the extra file goes, every image is in exactly one shard.
    assert assemble_shards(sources, store, 2, set(), run) == (2, 2)
    assert sorted(p.name for p in shards.glob("*.tar")) == ["sa_000000.tar", "sa_000001.tar"]
    stems = [i.stem for i, _ in find_shard_dataset(shards).pairs]
    assert stems == [f"sa_{k}" for k in range(6)]
    # A crash between a shard and the index: the next run rebuilds, the bytes are the same.
    before = (shards / "sa_000000.tar").read_bytes()
    (shards / "index.json").write_text("{")
    assert assemble_shards(sources, store, 2, set(), run) == (2, 2)
    assert (shards / "sa_000000.tar").read_bytes() == before
