"""Datasets of tokenized texts that a ``DataLoader`` turns into dict batches.

A :class:`TextDataset` tokenizes its texts once; its :meth:`~TextDataset.collate` pads a
list of items to the longest one, giving the Hugging Face style batch rejectnet reads as
named model inputs plus a label: ``{"input_ids", "attention_mask", "labels"}`` (without
``"labels"`` for unlabeled texts such as an outlier pool).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from rejectnet.text.tokenize import Tokenizer, _pad_id, encode_ids, pad_ids

__all__ = ["TextDataset"]


class TextDataset(Dataset[dict[str, Any]]):
    """Texts (and optional int labels), tokenized once, batched as dicts.

    Args:
        texts: The texts.
        tokenizer: A tokenizer from :func:`~rejectnet.text.train_tokenizer`.
        labels: One class index per text, or ``None`` for unlabeled texts.
        max_length: Cut longer texts to this many tokens (``truncated`` counts them, and
            a ``UserWarning`` says so); ``None`` never cuts.

    Attributes:
        ids: The token ids of every text (unpadded).
        labels: int64 ``(N,)`` labels or ``None``.
        pad_id: The tokenizer's ``[PAD]`` id.
        truncated: How many texts were cut to ``max_length``.

    Raises:
        TypeError: If ``texts`` is not a sequence of str.
        ValueError: If ``labels`` does not hold one int per text.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> from rejectnet.text import train_tokenizer
        >>> tok = train_tokenizer(["play jazz", "stop the music now"], vocab_size=100)
        >>> ds = TextDataset(["play jazz", "stop the music now"], tok, labels=[0, 1])
        >>> batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=ds.collate)))
        >>> sorted(batch), batch["input_ids"].shape, batch["labels"].tolist()
        (['attention_mask', 'input_ids', 'labels'], torch.Size([2, 6]), [0, 1])
    """

    def __init__(
        self,
        texts: Sequence[str],
        tokenizer: Tokenizer,
        labels: Sequence[int] | torch.Tensor | None = None,
        *,
        max_length: int | None = None,
    ) -> None:
        self.ids, self.truncated = encode_ids(tokenizer, texts, max_length)
        self.pad_id = _pad_id(tokenizer)
        self.labels = None if labels is None else _as_labels(labels, len(self.ids))
        if self.truncated:
            warnings.warn(
                f"TextDataset: {self.truncated} of {len(self.ids)} texts were longer than "
                f"max_length={max_length} tokens and were cut",
                UserWarning,
                stacklevel=2,
            )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"input_ids": self.ids[i]}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad ``items`` to the longest: ``{"input_ids", "attention_mask"[, "labels"]}``.

        Args:
            items: Items of this dataset.

        Returns:
            The batch, int64 tensors.
        """
        batch = pad_ids([it["input_ids"] for it in items], pad_id=self.pad_id)
        if self.labels is not None:
            batch["labels"] = torch.stack([it["labels"] for it in items])
        return batch


def _as_labels(labels: Sequence[int] | torch.Tensor, n: int) -> torch.Tensor:
    y = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(list(labels))
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.dim() != 1:
        raise ValueError(f"labels must be a 1-d sequence of int class indices, got {y.dtype}")
    if len(y) != n:
        raise ValueError(f"labels holds {len(y)} values for {n} texts; give one per text")
    return y.to(torch.int64)
