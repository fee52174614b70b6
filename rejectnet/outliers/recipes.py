"""The recommended outlier recipe, chosen on dev data (see ``docs/benchmarks.md``)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from rejectnet.losses import PseudoLabeler
from rejectnet.outliers.blend import PoolRows
from rejectnet.outliers.signal import ComposedSignal
from rejectnet.outliers.synthesis import Jigsaw, Stitch

__all__ = ["Recipe", "recommended"]


class Recipe(NamedTuple):
    """An outlier signal and the pseudo-label rule that goes with it.

    Attributes:
        signal: Pass as the fine-tuner's ``outlier_signal=`` (or drive it from your loop).
        pseudo_labels: Pass as ``SelfSupervisedRejectLoss(..., pseudo_labels=...)``
            (``"random"`` is Algorithm 1).
    """

    signal: ComposedSignal
    pseudo_labels: str | PseudoLabeler


def recommended(pool: bool = True, generator: torch.Generator | None = None) -> Recipe:
    """rejectnet's recommended outlier recipe for near-OOD generalisation.

    Args:
        pool: Whether the training loop has an outlier pool. With one, half of each
            outlier batch are pool rows and half are synthesised from the labeled batch;
            without one (``outlier_loader=None``), all of it is synthesised.
        generator: RNG of the synthesis (``None``: torch's global RNG).

    Returns:
        A :class:`Recipe` (a fresh signal each call: it may hold state).

    Example:
        >>> recipe = recommended(pool=False)
        >>> recipe.signal.uses_pool, recipe.pseudo_labels
        (False, 'random')
    """
    synth: list[tuple[object, float]] = [(Jigsaw(2), 0.25), (Stitch(), 0.25)]
    parts = ([(PoolRows(), 0.5)] if pool else []) + synth
    return Recipe(ComposedSignal(parts, generator=generator), "random")  # type: ignore[arg-type]
