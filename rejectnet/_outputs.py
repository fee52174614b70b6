"""Extracting logits from whatever a model's forward returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["extract_logits"]


def extract_logits(output: Any) -> torch.Tensor:
    """Return the logits tensor inside a model output.

    Accepts a tensor, a mapping with a ``"logits"`` key, an object with a ``.logits``
    attribute (Hugging Face ``ModelOutput``), or a tuple/list whose first item is the
    logits tensor.

    Raises:
        TypeError: If no logits tensor can be found.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and "logits" in output:
        found = output["logits"]
    elif hasattr(output, "logits"):
        found = output.logits
    elif isinstance(output, (tuple, list)) and output:
        found = output[0]
    else:
        found = None
    if not isinstance(found, torch.Tensor):
        raise TypeError(
            "the model returned a "
            f"{type(output).__name__}; rejectnet needs a logits tensor, a dict with a 'logits' "
            "key, an object with a .logits attribute, or a tuple whose first item is the logits"
        )
    return found
