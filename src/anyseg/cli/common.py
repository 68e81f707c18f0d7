"""Options every model-running command shares, defined once: ``--checkpoint``, ``--device``,
``--mode``, and the CLIP of text prompts, ``--clip`` (with ``--clip-activation``,
``--clip-head-width``, ``--clip-allow-torchscript`` for real CLIP files).

Each command adds the ones it uses with :func:`add_model_arguments` and reads them back with
:func:`model_options`; the flags, their help and their defaults come from :class:`ModelOptions`
(which composes :class:`ClipOptions`) through the binder (:mod:`anyseg.settings`); the class
itself lives in :mod:`anyseg.checkpoint`, beside the loader it feeds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection
from typing import TYPE_CHECKING

from anyseg.checkpoint import ModelOptions
from anyseg.clip.loading import ClipOptions
from anyseg.settings import add_arguments, from_arguments

if TYPE_CHECKING:
    from anyseg.modeling import Sam
    from anyseg.predictor import SamPredictor


def add_model_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, exclude: Collection[str] = ()
) -> None:
    """Add ``--checkpoint``, ``--device``, ``--mode`` and the ``--clip`` flags (minus the
    fields named in ``exclude``: ``"clip"`` leaves out all of the CLIP's)."""
    add_arguments(parser, ModelOptions, nested=True, exclude=exclude)


def model_options(args: argparse.Namespace) -> ModelOptions:
    """The :class:`ModelOptions` of parsed arguments (defaults for flags not given)."""
    return from_arguments(ModelOptions, args)


def report_mode(line: str, mode: str) -> None:
    """Say on stderr which arithmetic fast mode took (the predictor's ``describe_mode()``)."""
    if mode == "fast":
        print(f"anyseg: {line}", file=sys.stderr, flush=True)


def load_model(options: ModelOptions) -> Sam:
    """The model ``options`` name, on its device (a bad device is one clear error)."""
    from anyseg.checkpoint import load_model as load

    return load(options.checkpoint, options.device)


def make_predictor(options: ModelOptions) -> SamPredictor:
    """A predictor of the model ``options`` name in its ``--mode``, with the ``--clip`` CLIP for
    its text prompts (loaded at the first text prompt)."""
    from anyseg.predictor import SamPredictor

    return SamPredictor(load_model(options), mode=options.mode, clip=options.clip)


def add_clip_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--clip`` and the options of real CLIP files alone (commands without a SAM)."""
    add_arguments(parser, ClipOptions, marked_only=True)


def clip_options(args: argparse.Namespace) -> ClipOptions:
    """The :class:`ClipOptions` of parsed arguments (defaults for flags not given)."""
    return from_arguments(ClipOptions, args)


__all__ = [
    "ClipOptions",
    "ModelOptions",
    "add_clip_arguments",
    "add_model_arguments",
    "clip_options",
    "load_model",
    "make_predictor",
    "model_options",
    "report_mode",
]
