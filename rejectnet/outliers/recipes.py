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

:func:`text_recipe` is the same for token batches (text classifiers), chosen on the
CLINC150 dev splits (in-scope val, ``oos_val`` and ``oos_train``): the pool plus
random-token utterances.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from rejectnet._validation import check_flag
from rejectnet.losses import PseudoLabeler
from rejectnet.outliers._base import OutlierSource
from rejectnet.outliers.blend import PoolRows
from rejectnet.outliers.signal import ComposedSignal
from rejectnet.outliers.synthesis import Rotate, Warp
from rejectnet.outliers.text import MaskTokens, RandomTokens

__all__ = ["Recipe", "recommended", "text_recipe"]


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
    check_flag(pool, "pool")
    synth: list[tuple[OutlierSource, float]] = [(Rotate(), 0.25), (Warp(), 0.25)]
    if pool:
        parts: list[tuple[OutlierSource, float]] = [(PoolRows(), 0.5), *synth]
    else:
        parts = [(s, 2 * w) for s, w in synth]
    return Recipe(ComposedSignal(parts, generator=generator), "random")


def text_recipe(
    special_ids: Sequence[int],
    vocab_size: int,
    mask_id: int | None = None,
    pool: bool = False,
    generator: torch.Generator | None = None,
) -> Recipe:
    """Outliers for text classifiers: the mix chosen on CLINC150's dev splits.

    With a pool (sentences of unrelated text, tokenised like the training data): half the
    outlier batch is pool rows, half :class:`~rejectnet.outliers.text.RandomTokens`
    (in-distribution utterances with half their words replaced by random vocabulary).
    Without a pool (``outlier_loader=None``): random-token utterances alone, or, given a
    ``mask_id``, half random-token and half :class:`~rejectnet.outliers.text.MaskTokens`
    utterances. Pseudo-labels stay Algorithm 1's. On the CLINC150 dev ablation
    (``docs/benchmarks.md``) pool plus random tokens beat the pool alone on FPR@95%TPR;
    span shuffles and mixed utterances are left out (not better on dev), as is masking
    with a pool (``[MASK]`` never occurs in real queries: a shortcut to learn).

    Args:
        special_ids: Ids never changed (``[CLS]``, ``[SEP]``, ``[PAD]``, ...: e.g.
            ``tokenizer.all_special_ids``).
        vocab_size: The model's vocabulary size (random tokens are drawn from it).
        mask_id: The tokenizer's mask id, or ``None`` (no masking).
        pool: Whether the training loop has an outlier pool.
        generator: RNG of the synthesis (``None``: torch's global RNG, which the
            fine-tuners seed and checkpoint).

    Returns:
        A :class:`Recipe` (a fresh signal each call).

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an id or ``vocab_size`` is out of range.

    Example:
        >>> recipe = text_recipe(special_ids=(0, 101, 102), vocab_size=1000, mask_id=103)
        >>> [(type(s).__name__, w) for s, w in recipe.signal.parts]
        [('RandomTokens', 0.5), ('MaskTokens', 0.5)]
        >>> [type(s).__name__ for s, _ in text_recipe((0,), 1000, pool=True).signal.parts]
        ['PoolRows', 'RandomTokens']
    """
    check_flag(pool, "pool")
    random_tokens = RandomTokens(special_ids, vocab_size, fraction=0.5)
    parts: list[tuple[OutlierSource, float]]
    if pool:
        parts = [(PoolRows(), 0.5), (random_tokens, 0.5)]
    elif mask_id is not None:
        parts = [(random_tokens, 0.5), (MaskTokens(special_ids, mask_id), 0.5)]
    else:
        parts = [(random_tokens, 1.0)]
    return Recipe(ComposedSignal(parts, generator=generator), "random")
