"""Dataset-scale runs of the automatic stage (the data engine's third stage) on Ray: inputs
from folders, manifests and object stores, one model per Ray actor, atomic per-image output,
resume, failures, progress, summary and SA-1B-style tar shards.

``anyseg auto INPUTS -o OUT --engine ray`` on the command line; from Python::

    from anyseg.automatic import AmgConfig
    from anyseg.engine import EngineConfig, label_dataset

    summary = label_dataset(["photos/"], "masks/", amg=AmgConfig(points_per_side=16),
                            engine=EngineConfig(workers=2))

Ray is an optional dependency (``pip install 'anyseg[ray]'``), imported only when a run starts.
"""

from anyseg.engine.config import EngineConfig
from anyseg.engine.label import label_dataset
from anyseg.engine.progress import EngineSummary

__all__ = ["EngineConfig", "EngineSummary", "label_dataset"]
