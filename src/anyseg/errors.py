"""Exceptions raised at anyseg's user-facing boundaries.

Every entry point validates its input and raises one of these with a message that says what was
expected and what came. They subclass ``ValueError`` so code written against the original
implementation's loose checks keeps working.
"""

from __future__ import annotations


class AnysegError(ValueError):
    """Base class: a user-facing error with a message fit to print on one line."""


class CheckpointError(AnysegError):
    """A checkpoint file is unreadable, not a SAM checkpoint, or does not match the model."""


class InvalidInputError(AnysegError):
    """An image, prompt or option given by the user is malformed."""


class DownloadError(AnysegError):
    """A checkpoint could not be downloaded or failed verification."""
