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

:func:`text_recipe` is the same idea for token batches (text classifiers): the four
token-level sources of :mod:`rejectnet.outliers.text` in fixed shares. Unlike the image
recipe, its shares were not chosen by a dev ablation; measure them on your dev data.
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
from rejectnet.outliers.text import MaskTokens, MixUtterances, RandomTokens, SpanShuffle

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
    """Outliers synthesised from in-distribution utterances, for text classifiers.

    Without a pool (``outlier_loader=None``): 40% :class:`~rejectnet.outliers.text.
    MixUtterances` (the start of one intent's utterance with the end of another's), 20%
    :class:`~rejectnet.outliers.text.SpanShuffle` (three spans permuted), 20%
    :class:`~rejectnet.outliers.text.RandomTokens` (half the words random) and 20%
    :class:`~rejectnet.outliers.text.MaskTokens` (half the words masked; without a
    ``mask_id`` its share goes to :class:`~rejectnet.outliers.text.RandomTokens`). With
    a pool (e.g. sentences of unrelated text, tokenised like the training data): half
    the outlier batch is pool rows, the other half these sources in the same
    proportions. Pseudo-labels stay Algorithm 1's. Mixing mostly utterances of two
    intents keeps the outliers near the training text; the random and masked tokens
    add farther ones. These shares are a starting point, not a dev-chosen optimum: each
    source's assumption (:mod:`rejectnet.outliers.text`) can fail on your data.

    Args:
        special_ids: Ids never changed (``[CLS]``, ``[SEP]``, ``[PAD]``, ...: e.g.
            ``tokenizer.all_special_ids``).
        vocab_size: The model's vocabulary size (random tokens are drawn from it).
        mask_id: The tokenizer's mask id, or ``None`` (no masking).
        pool: Whether the training loop has an outlier pool.
        generator: RNG of the synthesis, on the data's device (``None``: torch's global
            RNG, which the fine-tuners seed and checkpoint).

    Returns:
        A :class:`Recipe` (a fresh signal each call).

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an id or ``vocab_size`` is out of range.

    Example:
        >>> import torch
        >>> recipe = text_recipe(special_ids=(0, 101, 102), vocab_size=1000, mask_id=103)
        >>> recipe.signal.uses_pool, [w for _, w in recipe.signal.parts]
        (False, [0.4, 0.2, 0.2, 0.2])
        >>> [type(s).__name__ for s, _ in recipe.signal.parts]
        ['MixUtterances', 'SpanShuffle', 'RandomTokens', 'MaskTokens']
        >>> x = {"input_ids": torch.randint(103, 1000, (8, 12)),
        ...      "attention_mask": torch.ones(8, 12, dtype=torch.long)}
        >>> recipe.signal.outlier_batch(x, torch.arange(8) % 3, None, 16)["input_ids"].shape
        torch.Size([16, 12])
    """
    check_flag(pool, "pool")
    random_share = 0.2 if mask_id is not None else 0.4
    synth: list[tuple[OutlierSource, float]] = [
        (MixUtterances(special_ids), 0.4),
        (SpanShuffle(special_ids), 0.2),
        (RandomTokens(special_ids, vocab_size), random_share),
    ]
    if mask_id is not None:
        synth.append((MaskTokens(special_ids, mask_id), 0.2))
    if pool:
        parts: list[tuple[OutlierSource, float]] = [(PoolRows(), 0.5)]
        parts += [(s, w / 2) for s, w in synth]
    else:
        parts = synth
    return Recipe(ComposedSignal(parts, generator=generator), "random")
