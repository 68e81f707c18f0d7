"""anyseg: Segment Anything, complete.

Public API (names users of the original ``segment_anything`` know are kept):

- :func:`load` builds the right model from any checkpoint in the official layout.
- :data:`sam_model_registry`, :class:`SamPredictor`, :class:`SamAutomaticMaskGenerator`.
"""

from __future__ import annotations

__version__ = "0.1.0"
