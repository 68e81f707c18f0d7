"""SA-1B-style tar shards of a run's output, assembled exactly once from its finished images.

Shards are built at the end of a run, from the per-image JSON files (the only record of what is
done), never by the workers while they label: a worker that is lost and retried can therefore
never put an image into two shards or half of one into a shard. The images are split into
``count`` contiguous runs of the input order (shard ``k`` holds images ``k*n//count`` to
``(k+1)*n//count - 1``), so which shard an image belongs to depends only on the inputs and
``count``. Each shard (``shards/sa_000000.tar``: every image file beside its ``<stem>.json``) is
written all-or-nothing and byte-reproducibly (:func:`anyseg.data.shards.write_shard`), so a
shard rebuilt after a crash is the one that was there.

``shards/index.json`` records a digest of each shard's members (names, and the size and time of
each JSON); a later run rebuilds only the shards whose digest changed (images finished or
relabelled since), and removes shard files the current ``count`` no longer makes. Failed
images are in no shard until a later run labels them.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from anyseg.data.shards import SHARD_NAME, write_shard
from anyseg.engine.inputs import ImageSource
from anyseg.engine.output import OutputStore
from anyseg.io import to_json

SHARDS_FOLDER = "shards"
INDEX_NAME = "index.json"
_SHARD_FILE = re.compile(r"^sa_\d{6}\.tar$")


@dataclass(frozen=True)
class ShardSpec:
    """One shard to build.

    Attributes:
        name: its file name in ``shards/`` (``sa_000000.tar``).
        locations: its images (finished ones only), in order.
        digest: SHA-256 of its members' names and JSON stamps.
    """

    name: str
    locations: tuple[str, ...]
    digest: str


def plan_shards(
    sources: Sequence[ImageSource], count: int, stamps: Mapping[str, str]
) -> list[ShardSpec]:
    """The ``count`` shards of ``sources`` (fewer when there are fewer images), each with the
    images among its share whose JSON is in ``stamps`` (JSON name -> size and time)."""
    n = len(sources)
    specs = []
    for k in range(min(count, n)):
        share = sources[k * n // count : (k + 1) * n // count]
        done = [s for s in share if f"{s.stem}.json" in stamps]
        digest = hashlib.sha256()
        for s in done:
            digest.update(f"{s.name}\0{stamps[s.stem + '.json']}\n".encode())
        name = SHARD_NAME.format(index=k)
        specs.append(ShardSpec(name, tuple(s.location for s in done), digest.hexdigest()))
    return specs


def build_shard(spec: ShardSpec, output: str) -> str:
    """Write one shard from its images and their JSON; returns its name."""
    store = OutputStore(output)

    def members() -> Iterator[tuple[str, bytes]]:
        for location in spec.locations:
            source = ImageSource(location)
            yield source.name, source.read_bytes()
            yield f"{source.stem}.json", store.read_bytes(f"{source.stem}.json")

    if store.local is not None:
        write_shard(store.local / SHARDS_FOLDER / spec.name, members())
    else:
        with tempfile.TemporaryDirectory(prefix="anyseg-shard-") as tmp:
            local = Path(tmp) / spec.name
            write_shard(local, members())
            store.put_file(local, f"{SHARDS_FOLDER}/{spec.name}")
    return spec.name


def assemble_shards(
    sources: Sequence[ImageSource],
    store: OutputStore,
    count: int,
    relabelled: set[str],
    run: Callable[[list[ShardSpec]], None],
) -> tuple[int, int]:
    """Bring ``store``'s shards up to date with its finished images.

    Args:
        sources: every image of the run, in input order.
        store: the output.
        count: shards asked for.
        relabelled: locations labelled in this run (their shards are rebuilt).
        run: builds the given shards (:func:`build_shard` each; in parallel on Ray).

    Returns:
        (shards there are, shards written now).
    """
    stamps = store.stamps()
    specs = [s for s in plan_shards(sources, count, stamps) if s.locations]
    index_name = f"{SHARDS_FOLDER}/{INDEX_NAME}"
    previous: dict[str, str] = {}
    if store.exists(index_name):
        try:
            previous = dict(json.loads(store.read_bytes(index_name))["digests"])
        except (ValueError, KeyError, TypeError):
            previous = {}  # unreadable: rebuild everything
    present = set(store.names(SHARDS_FOLDER))
    stale = [
        s
        for s in specs
        if previous.get(s.name) != s.digest
        or s.name not in present
        or any(loc in relabelled for loc in s.locations)
    ]
    store.remove_temporaries(SHARDS_FOLDER)
    if stale:
        run(stale)
    wanted = {s.name for s in specs}
    for name in present:
        if _SHARD_FILE.match(name) and name not in wanted:
            store.remove(f"{SHARDS_FOLDER}/{name}")  # a shard an earlier, larger count made
    digests = {s.name: s.digest for s in specs}
    if stale or digests != previous:
        index = {"count": count, "digests": digests}
        store.write_bytes(index_name, (to_json(index, indent=1) + "\n").encode())
    return len(specs), len(stale)
