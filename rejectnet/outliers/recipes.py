"""The recommended outlier recipe, chosen on dev data (see ``docs/benchmarks.md``).

On the MNIST dev ablation (``benchmarks/ablate_outliers.py``: held-out training digits,
four rendered-letter sets, Fashion-MNIST and held-out photo patches; no test set), the
only levers that improved near-OOD rejection without hurting far-OOD rejection or ID
accuracy were the two input-space sources that turn digits into *other stroke shapes*:
:class:`~rejectnet.outliers.Rotate` (digits on their side) and
:class:`~rejectnet.outliers.Warp` (strokes bent by a strong smooth deformation). Each
alone helped some dev sets and hurt others; together, with half of the outlier batch
still from the pool, they beat Algorithm 1 on every dev set. Jigsaw, Stitch, Overlay,
Blend, VirtualOutliers and ClusterLabeler each made some dev set clearly worse, so the
recipe leaves them out (they stay available).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rejectnet.losses import PseudoLabeler
from rejectnet.outliers._base import OutlierSource
from rejectnet.outliers.blend import PoolRows
from rejectnet.outliers.signal import ComposedSignal
from rejectnet.outliers.synthesis import Rotate, Warp

__all__ = ["Recipe", "recommended"]


class Recipe(NamedTuple):
    """An outlier signal and the pseudo-label rule that goes with it.

    Attributes:
        signal: Pass as the fine-tuner's ``outlier_signal=`` (or drive it from your loop).
        pseudo_labels: Pass as ``SelfSupervisedRejectLoss(..., pseudo_labels=...)`` or the
            fine-tuner's ``pseudo_labels=`` (``"random"`` is Algorithm 1's rule).
    """

    signal: ComposedSignal
    pseudo_labels: str | PseudoLabeler


def recommended(pool: bool = True, generator: torch.Generator | None = None) -> Recipe:
    """rejectnet's recommended outlier recipe for near-OOD generalisation.

    With a pool: each outlier batch is half pool rows, a quarter labeled images turned on
    their side (:class:`~rejectnet.outliers.Rotate`, 90 or 270 degrees) and a quarter
    labeled images strongly warped (:class:`~rejectnet.outliers.Warp`). Without one
    (``outlier_loader=None``): half rotated, half warped. Pseudo-labels stay Algorithm
    1's. Both sources assume your classes have a canonical orientation and shape (true
    for characters, digits, objects; not for textures, aerial or microscopy images):
    see the how-to "When your outliers are not like your data".

    Args:
        pool: Whether the training loop has an outlier pool.
        generator: RNG of the synthesis, on the data's device (``None``: torch's global
            RNG, which the fine-tuners seed and checkpoint).

    Returns:
        A :class:`Recipe` (a fresh signal each call).

    Example:
        >>> recipe = recommended(pool=False)
        >>> recipe.signal.uses_pool, recipe.pseudo_labels
        (False, 'random')
        >>> [(type(s).__name__, w) for s, w in recipe.signal.parts]
        [('Rotate', 0.5), ('Warp', 0.5)]
    """
    synth: list[tuple[OutlierSource, float]] = [(Rotate(), 0.25), (Warp(), 0.25)]
    if pool:
        parts: list[tuple[OutlierSource, float]] = [(PoolRows(), 0.5), *synth]
    else:
        parts = [(s, 2 * w) for s, w in synth]
    return Recipe(ComposedSignal(parts, generator=generator), "random")
