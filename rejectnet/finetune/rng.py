"""Capturing and restoring every RNG a training run draws from (for exact resume)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["rng_state", "seed_everything", "seeded_generator", "set_rng_state"]


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and every CUDA device), numpy's legacy global RNG and Python's.

    Args:
        seed: A non-negative int.
    """
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - user transforms draw from the legacy RNG
    random.seed(seed)


def seeded_generator(seed: int) -> torch.Generator:
    """A new CPU ``torch.Generator`` seeded with ``seed`` (a loader's shuffle order).

    Example:
        >>> seeded_generator(3).initial_seed()
        3
    """
    return torch.Generator().manual_seed(seed)


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    return {
        "name": name,
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def rng_state() -> dict[str, Any]:
    """The state of torch's CPU (and CUDA) generators, numpy's global RNG and Python's.

    Returns:
        A dict of tensors and plain Python values, safe for a checkpoint.
    """
    state: dict[str, Any] = {
        "torch": torch.random.get_rng_state(),
        "numpy": _numpy_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured.

    Args:
        state: A dict from :func:`rng_state`.
    """
    torch.random.set_rng_state(state["torch"])
    s = state["numpy"]
    keys = s["keys"].numpy().astype(np.uint32)
    np.random.set_state((s["name"], keys, s["pos"], s["has_gauss"], s["cached"]))  # noqa: NPY002
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
