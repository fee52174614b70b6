"""Outliers for text, synthesised at the token level from in-distribution utterances.

The text counterpart of :mod:`rejectnet.outliers.synthesis`: each transform takes the
step's labeled utterances as named tensors (``{"input_ids": (N, L), "attention_mask":
(N, L), ...}``, right-padded, as a Hugging Face tokenizer returns them) and makes outlier
utterances that keep the vocabulary, length and layout of the training text while
destroying its intent: *near* outliers, the kind a pool of unrelated sentences never
shows the model. They need no pool, so ``outlier_loader=None`` works for text too, and
they plug into :class:`~rejectnet.outliers.ComposedSignal` like the image sources
(:func:`~rejectnet.outliers.text_recipe` is a ready mix).

What every transform guarantees: only *real* tokens change (positions whose attention
mask is non-zero and whose id is not one of ``special_ids``, e.g. ``[CLS]``, ``[SEP]``,
``[PAD]``); special tokens and padding stay where they are, so ``attention_mask``,
``token_type_ids`` and every other named tensor are copied unchanged and stay consistent;
the caller's tensors are never edited; the same ``torch.Generator`` state gives the same
output. Rows with no real token come back unchanged. A batch without an
``attention_mask`` counts every position as attended: then the pad id must be among
``special_ids`` (it should be anyway).

Every transform rests on an assumption about the data; check it for yours:

* :func:`span_shuffle` (cut the real tokens into spans, permute the spans): the intent
  depends on word order and phrase structure. It fails where the class is carried by
  keywords alone: "to paris book a flight" is still about flights, and training it as an
  outlier teaches the model to reject reordered real requests. Keep its share modest,
  and prefer it for long utterances.
* :func:`mix_utterances` (the start of one utterance, the rest from one of another
  intent): half a request of one intent followed by half of another is a request of
  neither. It fails when one half alone carries an intent ("cancel my card | what's the
  weather": the first half *is* a cancel request), which is common for short, front-
  loaded intents. Partners are drawn from a different label where the batch has one.
* :func:`random_tokens` (a fraction of the real tokens replaced by uniform random
  vocabulary ids): an utterance with half its words replaced by random subwords has no
  intent. At small fractions it is a typo, i.e. *augmentation*, not an outlier; and
  uniform ids are mostly rare subwords, which makes these outliers easier (farther) than
  real out-of-scope text.
* :func:`mask_tokens` (a fraction of the real tokens replaced by a mask id): with most
  content words hidden the intent is unrecoverable. The model can learn the shortcut
  "a mask token means outlier", which real out-of-scope text never shows; mix it with the
  other transforms, never use it alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from rejectnet._batches import batch_size, take_rows
from rejectnet._validation import check_fraction, check_int
from rejectnet.outliers._base import Options, check_labels, check_range, partners, randint

__all__ = [
    "MAX_SPANS",
    "MaskTokens",
    "MixUtterances",
    "RandomTokens",
    "SpanShuffle",
    "check_special_ids",
    "mask_tokens",
    "mix_utterances",
    "random_tokens",
    "span_shuffle",
]

TokenBatch = dict[str, torch.Tensor]
"""Named tensors of a text model: ``input_ids`` ``(N, L)`` and friends."""

MAX_SPANS = 64
"""The most spans :func:`span_shuffle` cuts an utterance into (more spans than tokens
leave spans empty; a permutation of 64 spans is already a shuffle of single tokens in
any utterance of up to 64 tokens)."""


# ---------------------------------------------------------------- checks and helpers
def check_special_ids(special_ids: object, name: str = "special_ids") -> tuple[int, ...]:
    """The ids never to change, as a sorted tuple of distinct ints >= 0.

    Raises:
        TypeError: If ``special_ids`` is not a sequence of ints.
        ValueError: If an id is negative.

    Example:
        >>> check_special_ids([102, 101, 0, 101])
        (0, 101, 102)
    """
    if isinstance(special_ids, (str, bytes)) or not isinstance(special_ids, Sequence):
        raise TypeError(
            f"{name} must be a sequence of token ids (ints >= 0) never to change, e.g. "
            f"(tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id); "
            f"got {type(special_ids).__name__}"
        )
    for i, v in enumerate(special_ids):
        check_int(v, f"{name}[{i}]", minimum=0)
    return tuple(sorted(set(special_ids)))


def _check_tokens(x: object, name: str = "x") -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and the (bool) attention mask of a token batch, or a clear error."""
    if not isinstance(x, Mapping) or "input_ids" not in x:
        raise TypeError(
            f"{name} must be a dict of named tensors with 'input_ids' (N, L) (and "
            f"'attention_mask'), as a tokenizer returns them; got {type(x).__name__}"
            + (f" with keys {list(x)}" if isinstance(x, Mapping) else "")
        )
    batch_size(dict(x), name)
    ids = x["input_ids"]
    if ids.ndim != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(
            f"{name}['input_ids'] must be an integer tensor (N, L), got {ids.dtype} "
            f"{tuple(ids.shape)}"
        )
    mask = x.get("attention_mask")
    if mask is None:
        return ids, torch.ones_like(ids, dtype=torch.bool)
    if mask.shape != ids.shape:
        raise ValueError(
            f"{name}['attention_mask'] {tuple(mask.shape)} must have the shape of "
            f"input_ids {tuple(ids.shape)}"
        )
    return ids, mask != 0


def _editable(ids: torch.Tensor, mask: torch.Tensor, special: tuple[int, ...]) -> torch.Tensor:
    """``(N, L)`` bool: the real tokens (attended, not special) a transform may change."""
    if not special:
        return mask
    return mask & ~torch.isin(ids, torch.tensor(special, device=ids.device, dtype=ids.dtype))


def _compact(ids: torch.Tensor, editable: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's real tokens moved to the front, in order, and each position's slot.

    Returns:
        ``compact`` ``(N, L)`` (the first ``m_i`` entries of row ``i`` are its real
        tokens in order) and ``slot`` ``(N, L)`` (a real token's index among its row's
        real tokens; 0 elsewhere).
    """
    length = ids.shape[1]
    pos = torch.arange(length, device=ids.device).expand_as(ids)
    order = torch.where(editable, pos, pos + length).argsort(dim=1)
    slot = (editable.cumsum(dim=1) - 1).clamp_min(0)
    return ids.gather(1, order), slot


def _scatter_back(
    ids: torch.Tensor, editable: torch.Tensor, slot: torch.Tensor, new: torch.Tensor
) -> torch.Tensor:
    """``ids`` with each real token replaced by ``new[row, slot]`` (a new tensor)."""
    return torch.where(editable, new.gather(1, slot), ids)


def _with_ids(x: Mapping[str, torch.Tensor], ids: torch.Tensor) -> TokenBatch:
    """A new token batch: ``ids`` as input_ids, every other tensor copied."""
    out = {k: v.clone() for k, v in x.items() if k != "input_ids"}
    out["input_ids"] = ids
    return {k: out[k] for k in x}  # the caller's key order


def _choose(
    editable: torch.Tensor, fraction: float, generator: torch.Generator | None
) -> torch.Tensor:
    """``round(fraction * m_i)`` (at least 1) random real positions per row, as a mask."""
    keys = torch.rand(editable.shape, device=editable.device, generator=generator)
    keys = torch.where(editable, keys, 2.0)
    rank = keys.argsort(dim=1).argsort(dim=1)
    m = editable.sum(dim=1)
    k = torch.where(m > 0, (fraction * m).round().long().clamp_min(1), 0)
    return editable & (rank < k[:, None])


# ---------------------------------------------------------------- the transforms
def span_shuffle(
    x: Mapping[str, torch.Tensor],
    special_ids: Sequence[int],
    spans: int = 3,
    generator: torch.Generator | None = None,
) -> TokenBatch:
    """Cut each utterance's real tokens into ``spans`` spans and permute the spans.

    The cut points are spread evenly with a random jitter of up to a quarter span; the
    permutation is never the identity (so an utterance of at least ``spans`` distinct
    real tokens always changes).

    Args:
        x: Token batch ``{"input_ids": (N, L), "attention_mask": (N, L), ...}``.
        special_ids: Ids never moved (``[CLS]``, ``[SEP]``, ``[PAD]``, ...).
        spans: Spans per utterance, in ``[2, MAX_SPANS]``.
        generator: RNG on the tokens' device (``None``: torch's global RNG).

    Returns:
        A new token batch (the same keys and shapes); ``x`` unchanged.

    Raises:
        TypeError: If ``x`` is not a token batch or an argument has the wrong type.
        ValueError: If the shapes disagree or ``spans`` is out of range.

    Example:
        >>> import torch
        >>> x = {"input_ids": torch.tensor([[101, 5, 6, 7, 8, 9, 10, 102, 0]]),
        ...      "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1, 0]])}
        >>> out = span_shuffle(x, (0, 101, 102), spans=3,
        ...                    generator=torch.Generator().manual_seed(0))
        >>> out["input_ids"][0, [0, 7, 8]].tolist(), sorted(out["input_ids"][0, 1:7].tolist())
        ([101, 102, 0], [5, 6, 7, 8, 9, 10])
    """
    ids, mask = _check_tokens(x)
    special = check_special_ids(special_ids)
    spans = check_int(spans, "spans", minimum=2, maximum=MAX_SPANS)
    editable = _editable(ids, mask, special)
    compact, slot = _compact(ids, editable)
    n, length = ids.shape
    dev = ids.device
    m = editable.sum(dim=1, keepdim=True).clamp_min(1)
    jitter = (torch.rand(n, spans - 1, device=dev, generator=generator) - 0.5) / 2
    bounds = (torch.arange(1, spans, device=dev) + jitter) / spans  # (N, S-1), increasing
    k = torch.arange(length, device=dev).expand(n, length)
    frac = (k + 0.5) / m
    span_of = (frac[:, :, None] >= bounds[:, None, :]).sum(dim=2)  # (N, L) in [0, S)
    perm = torch.rand(n, spans, device=dev, generator=generator).argsort(dim=1)
    identity = (perm == torch.arange(spans, device=dev)).all(dim=1, keepdim=True)
    perm = torch.where(identity, perm.roll(1, dims=1), perm)
    place = perm.argsort(dim=1)  # where each span goes
    key = torch.where(k < m, place.gather(1, span_of) * length + k, spans * length + k)
    shuffled = compact.gather(1, key.argsort(dim=1))
    return _with_ids(x, _scatter_back(ids, editable, slot, shuffled))


def mix_utterances(
    x: Mapping[str, torch.Tensor],
    y: torch.Tensor | None,
    special_ids: Sequence[int],
    cut: tuple[float, float] = (0.3, 0.7),
    generator: torch.Generator | None = None,
) -> TokenBatch:
    """The start of each utterance, continued by the end of a partner of another label.

    Row ``i`` keeps its first ``a = round(f * m_i)`` real tokens (``f`` uniform in
    ``cut``, ``a`` within ``[1, m_i - 1]``); its remaining real positions take the
    partner's real tokens from the partner's own cut (fraction uniform in ``cut``) on,
    wrapping round to the partner's start when the partner is too short. Row ``i``'s
    layout (special tokens, padding, masks) is kept, so no length changes.

    Args:
        x: Token batch ``{"input_ids": (N, L), "attention_mask": (N, L), ...}``.
        y: Labels ``(N,)``; partners are drawn from other labels where possible.
        special_ids: Ids never changed.
        cut: Range of the kept fraction, ``0 < lo <= hi < 1``.
        generator: RNG on the tokens' device (``None``: torch's global RNG).

    Returns:
        A new token batch; inputs unchanged.

    Raises:
        TypeError: If ``x`` is not a token batch or ``cut`` not a pair of numbers.
        ValueError: If ``y`` does not match or ``cut`` is not a range inside ``(0, 1)``.

    Example:
        >>> import torch
        >>> x = {"input_ids": torch.tensor([[1, 11, 12, 13, 14, 2], [1, 21, 22, 23, 24, 2]]),
        ...      "attention_mask": torch.ones(2, 6, dtype=torch.long)}
        >>> out = mix_utterances(x, torch.tensor([0, 1]), (1, 2), cut=(0.5, 0.5))
        >>> out["input_ids"].tolist()
        [[1, 11, 12, 23, 24, 2], [1, 21, 22, 13, 14, 2]]
    """
    ids, mask = _check_tokens(x)
    y = check_labels(y, ids.shape[0], "utterance")
    special = check_special_ids(special_ids)
    lo, hi = check_range(cut, "cut", lambda v, n: check_fraction(v, n, high_open=True))
    editable = _editable(ids, mask, special)
    compact, slot = _compact(ids, editable)
    n, length = ids.shape
    dev = ids.device
    j = partners(y, n, dev, generator)
    m = editable.sum(dim=1)
    f = lo + (hi - lo) * torch.rand(2, n, device=dev, generator=generator)
    a = torch.minimum((f[0] * m).round().long().clamp_min(1), (m - 1).clamp_min(1))
    m_j = m[j].clamp_min(1)
    b = (f[1] * m[j]).round().long().clamp(max=m_j - 1)
    k = torch.arange(length, device=dev).expand(n, length)
    from_partner = (b[:, None] + k - a[:, None]) % m_j[:, None]
    theirs = compact[j].gather(1, from_partner)
    own = (k < a[:, None]) | (m[j] == 0)[:, None]
    return _with_ids(x, _scatter_back(ids, editable, slot, torch.where(own, compact, theirs)))


def random_tokens(
    x: Mapping[str, torch.Tensor],
    special_ids: Sequence[int],
    vocab_size: int,
    fraction: float = 0.5,
    generator: torch.Generator | None = None,
) -> TokenBatch:
    """Replace ``round(fraction * m)`` real tokens of each row by random vocabulary ids.

    The ids are uniform over ``[0, vocab_size)`` without ``special_ids``, so a special
    token is never introduced either. At least one token per row is replaced.

    Args:
        x: Token batch ``{"input_ids": (N, L), "attention_mask": (N, L), ...}``.
        special_ids: Ids never changed and never drawn.
        vocab_size: The model's vocabulary size (``config.vocab_size``).
        fraction: Share of each row's real tokens replaced, in ``(0, 1]``.
        generator: RNG on the tokens' device (``None``: torch's global RNG).

    Returns:
        A new token batch; ``x`` unchanged.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``fraction`` is outside ``(0, 1]``, or the vocabulary has no id
            left besides the special ones.

    Example:
        >>> import torch
        >>> x = {"input_ids": torch.tensor([[1, 5, 6, 7, 8, 2]])}
        >>> out = random_tokens(x, (0, 1, 2), vocab_size=1000, fraction=0.5,
        ...                     generator=torch.Generator().manual_seed(0))
        >>> int((out["input_ids"] != x["input_ids"]).sum()) <= 2, out["input_ids"][0, 0].item()
        (True, 1)
    """
    ids, mask = _check_tokens(x)
    special = check_special_ids(special_ids)
    vocab_size = _check_vocab(vocab_size, special)
    fraction = check_fraction(fraction, "fraction")
    editable = _editable(ids, mask, special)
    chosen = _choose(editable, fraction, generator)
    draw = _draw_ids(tuple(ids.shape), vocab_size, special, ids.device, generator)
    return _with_ids(x, torch.where(chosen, draw.to(ids.dtype), ids))


def _check_vocab(vocab_size: object, special: tuple[int, ...]) -> int:
    vocab: int = check_int(vocab_size, "vocab_size", minimum=2, maximum=2**31 - 1)
    if sum(s < vocab for s in special) >= vocab:
        raise ValueError(f"vocab_size={vocab} leaves no id to draw besides special_ids {special}")
    return vocab


def _draw_ids(
    shape: tuple[int, ...],
    vocab_size: int,
    special: tuple[int, ...],
    device: torch.device,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Uniform ids in ``[0, vocab_size)`` without ``special`` (no host synchronisation).

    A uniform index among the allowed ids is shifted past each special id at or below it,
    in ascending order, which maps it onto the allowed ids one to one.
    """
    banned = [s for s in special if s < vocab_size]  # special is sorted
    ids = randint(vocab_size - len(banned), shape, device, generator)
    for b in banned:
        ids = ids + (ids >= b).long()
    return ids


def mask_tokens(
    x: Mapping[str, torch.Tensor],
    special_ids: Sequence[int],
    mask_id: int,
    fraction: float = 0.5,
    generator: torch.Generator | None = None,
) -> TokenBatch:
    """Replace ``round(fraction * m)`` real tokens of each row by ``mask_id``.

    Args:
        x: Token batch ``{"input_ids": (N, L), "attention_mask": (N, L), ...}``.
        special_ids: Ids never changed.
        mask_id: The id written (``tokenizer.mask_token_id``, or any id the model knows).
        fraction: Share of each row's real tokens masked, in ``(0, 1]``.
        generator: RNG on the tokens' device (``None``: torch's global RNG).

    Returns:
        A new token batch; ``x`` unchanged.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``fraction`` is outside ``(0, 1]`` or ``mask_id`` is negative.

    Example:
        >>> import torch
        >>> x = {"input_ids": torch.tensor([[1, 5, 6, 7, 8, 2]])}
        >>> mask_tokens(x, (1, 2), mask_id=3, fraction=1.0)["input_ids"].tolist()
        [[1, 3, 3, 3, 3, 2]]
    """
    ids, mask = _check_tokens(x)
    special = check_special_ids(special_ids)
    mask_id = check_int(mask_id, "mask_id", minimum=0)
    fraction = check_fraction(fraction, "fraction")
    chosen = _choose(_editable(ids, mask, special), fraction, generator)
    return _with_ids(x, ids.masked_fill(chosen, mask_id))


# ---------------------------------------------------------------- the sources
class _FromUtterances(Options):
    """Base of the text sources: transform ``n`` random rows of the labeled batch."""

    needs_pool = False

    def __init__(self, special_ids: Sequence[int]) -> None:
        self.special_ids = check_special_ids(special_ids)

    def _apply(
        self, x: TokenBatch, y: torch.Tensor | None, generator: torch.Generator | None
    ) -> TokenBatch:
        raise NotImplementedError

    def __call__(
        self,
        x_in: Any,
        y: torch.Tensor,
        x_out: Any,
        n: int,
        generator: torch.Generator | None = None,
    ) -> TokenBatch:
        """``n`` synthesised utterances from random rows of ``x_in`` (a token batch).

        See :class:`~rejectnet.outliers.OutlierSource`; ``x_out`` is ignored.
        """
        ids, _ = _check_tokens(x_in, "x_in")
        y = check_labels(y, ids.shape[0], "utterance")  # type: ignore[assignment]
        n = check_int(n, "n", minimum=0)
        if ids.shape[0] == 0:
            raise ValueError("x_in must hold at least one utterance")
        idx = randint(ids.shape[0], (n,), ids.device, generator)
        rows = take_rows(dict(x_in), idx)
        assert isinstance(rows, dict)
        return self._apply(rows, None if y is None else y[idx], generator)


class SpanShuffle(_FromUtterances):
    """Utterances whose spans are permuted; see :func:`span_shuffle`.

    Args:
        special_ids: Ids never moved (``[CLS]``, ``[SEP]``, ``[PAD]``, ...).
        spans: Spans per utterance, in ``[2, MAX_SPANS]``.

    Example:
        >>> import torch
        >>> x = {"input_ids": torch.randint(3, 50, (4, 9)), "attention_mask": torch.ones(4, 9)}
        >>> SpanShuffle((0, 1, 2))(x, torch.tensor([0, 1, 2, 3]), None, 6)["input_ids"].shape
        torch.Size([6, 9])
    """

    _options = ("special_ids", "spans")

    def __init__(self, special_ids: Sequence[int], spans: int = 3) -> None:
        super().__init__(special_ids)
        self.spans = check_int(spans, "spans", minimum=2, maximum=MAX_SPANS)

    def _apply(
        self, x: TokenBatch, y: torch.Tensor | None, generator: torch.Generator | None
    ) -> TokenBatch:
        return span_shuffle(x, self.special_ids, self.spans, generator)


class MixUtterances(_FromUtterances):
    """The start of one utterance with the end of another intent's; see :func:`mix_utterances`.

    Args:
        special_ids: Ids never changed.
        cut: Range of the kept fraction, ``0 < lo <= hi < 1``.

    Example:
        >>> import torch
        >>> x = {"input_ids": torch.randint(3, 50, (4, 9)), "attention_mask": torch.ones(4, 9)}
        >>> MixUtterances((0, 1, 2))(x, torch.tensor([0, 1, 2, 3]), None, 5)["input_ids"].shape
        torch.Size([5, 9])
    """

    _options = ("special_ids", "cut")

    def __init__(self, special_ids: Sequence[int], cut: tuple[float, float] = (0.3, 0.7)) -> None:
        super().__init__(special_ids)
        self.cut = check_range(cut, "cut", lambda v, n: check_fraction(v, n, high_open=True))

    def _apply(
        self, x: TokenBatch, y: torch.Tensor | None, generator: torch.Generator | None
    ) -> TokenBatch:
        return mix_utterances(x, y, self.special_ids, self.cut, generator)


class RandomTokens(_FromUtterances):
    """Utterances with a fraction of their tokens randomised; see :func:`random_tokens`.

    Args:
        special_ids: Ids never changed and never drawn.
        vocab_size: The model's vocabulary size.
        fraction: Share of the real tokens replaced, in ``(0, 1]``.

    Example:
        >>> import torch
        >>> x = {"input_ids": torch.randint(3, 50, (4, 9)), "attention_mask": torch.ones(4, 9)}
        >>> src = RandomTokens((0, 1, 2), vocab_size=50)
        >>> src(x, torch.tensor([0, 1, 2, 3]), None, 3)["input_ids"].shape
        torch.Size([3, 9])
    """

    _options = ("special_ids", "vocab_size", "fraction")

    def __init__(self, special_ids: Sequence[int], vocab_size: int, fraction: float = 0.5) -> None:
        super().__init__(special_ids)
        self.vocab_size = _check_vocab(vocab_size, self.special_ids)
        self.fraction = check_fraction(fraction, "fraction")

    def _apply(
        self, x: TokenBatch, y: torch.Tensor | None, generator: torch.Generator | None
    ) -> TokenBatch:
        return random_tokens(x, self.special_ids, self.vocab_size, self.fraction, generator)


class MaskTokens(_FromUtterances):
    """Utterances with a fraction of their tokens masked; see :func:`mask_tokens`.

    Args:
        special_ids: Ids never changed.
        mask_id: The id written in place of the chosen tokens.
        fraction: Share of the real tokens masked, in ``(0, 1]``.

    Example:
        >>> import torch
        >>> x = {"input_ids": torch.randint(3, 50, (4, 9)), "attention_mask": torch.ones(4, 9)}
        >>> MaskTokens((0, 1, 2), mask_id=2)(x, torch.tensor([0, 1, 2, 3]), None, 3)[
        ...     "input_ids"].shape
        torch.Size([3, 9])
    """

    _options = ("special_ids", "mask_id", "fraction")

    def __init__(self, special_ids: Sequence[int], mask_id: int, fraction: float = 0.5) -> None:
        super().__init__(special_ids)
        self.mask_id = check_int(mask_id, "mask_id", minimum=0)
        self.fraction = check_fraction(fraction, "fraction")

    def _apply(
        self, x: TokenBatch, y: torch.Tensor | None, generator: torch.Generator | None
    ) -> TokenBatch:
        return mask_tokens(x, self.special_ids, self.mask_id, self.fraction, generator)
