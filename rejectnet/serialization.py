"""Saving and loading wrapped models (``rejectnet.save``, ``load``, ``read_metadata``).

The public path of :mod:`rejectnet.files.model_files`, where the code lives: a
safetensors file (never pickle), what :func:`load` checks, in which order, and what it
costs.
"""

from __future__ import annotations

from rejectnet.files.model_files import (
    FORMAT_VERSION,
    MAX_MODEL_BYTES,
    ModelFileError,
    _expected_shapes,  # noqa: F401  (tests/reliability import it from here)
    load,
    read_metadata,
    save,
)

__all__ = ["FORMAT_VERSION", "MAX_MODEL_BYTES", "ModelFileError", "load", "read_metadata", "save"]
