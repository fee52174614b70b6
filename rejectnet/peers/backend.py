"""The optional pytorch-ood dependency, imported only when a peer is built."""

from __future__ import annotations

import importlib.util
from typing import Any

__all__ = ["detectors", "is_available"]

_HINT = 'the post-hoc peer detectors need pytorch-ood: pip install "rejectnet[peers]"'


def is_available() -> bool:
    """Whether pytorch-ood (the ``peers`` extra) is installed.

    Returns:
        ``True`` when ``import pytorch_ood`` would succeed.
    """
    return importlib.util.find_spec("pytorch_ood") is not None


def detectors() -> Any:
    """The ``pytorch_ood.detector`` module.

    Returns:
        The module.

    Raises:
        ImportError: If pytorch-ood is not installed (the message says how to install it).
    """
    try:
        import pytorch_ood.detector as found
    except ImportError as err:
        raise ImportError(_HINT) from err
    return found
