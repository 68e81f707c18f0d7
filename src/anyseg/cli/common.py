"""Options every model-running command shares, defined once: ``--checkpoint``, ``--device``,
``--mode``, ``--clip`` (the CLIP of text prompts).

Each command adds the ones it uses with :func:`add_model_arguments` and reads them back with
:func:`model_options`; the flags, their help and their defaults come from :class:`ModelOptions`
through the binder (:mod:`anyseg.settings`); the class itself lives in
:mod:`anyseg.checkpoint`, beside the loader it feeds.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection
from typing import TYPE_CHECKING

from anyseg.checkpoint import ModelOptions
from anyseg.settings import add_arguments, from_arguments

if TYPE_CHECKING:
    from anyseg.modeling import Sam
    from anyseg.predictor import SamPredictor


def add_model_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, exclude: Collection[str] = ()
) -> None:
    """Add ``--checkpoint``, ``--device``, ``--mode`` and ``--clip`` (minus the names in
    ``exclude``)."""
    add_arguments(parser, ModelOptions, exclude=exclude)


def model_options(args: argparse.Namespace) -> ModelOptions:
    """The :class:`ModelOptions` of parsed arguments (defaults for flags not given)."""
    return from_arguments(ModelOptions, args)


def load_model(options: ModelOptions) -> Sam:
    """The model ``options`` name, on its device (a bad device is one clear error)."""
    from anyseg.checkpoint import load_model as load

    return load(options.checkpoint, options.device)


def make_predictor(options: ModelOptions) -> SamPredictor:
    """A predictor of the model ``options`` name, with ``--clip`` for its text prompts (loaded
    at the first text prompt)."""
    from anyseg.predictor import SamPredictor

    return SamPredictor(load_model(options), clip=options.clip)


__all__ = ["ModelOptions", "add_model_arguments", "load_model", "make_predictor", "model_options"]
