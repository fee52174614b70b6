"""A small Hugging Face text classifier built from a config (random weights, no download)."""

from __future__ import annotations

from typing import Any

from torch import nn

from rejectnet._validation import check_int, check_number

__all__ = ["small_bert"]


def small_bert(
    num_labels: int,
    vocab_size: int,
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int | None = None,
    max_length: int = 64,
    pad_token_id: int = 0,
    dropout: float = 0.1,
) -> nn.Module:
    """A ``transformers.BertForSequenceClassification`` from a ``BertConfig`` (random
    weights, to train from scratch): its forward takes ``input_ids`` and
    ``attention_mask`` as keywords and returns ``(N, num_labels)`` ``logits``; its last
    layer, ``classifier``, is what :meth:`rejectnet.RejectHead.wrap` widens, and its
    input, the pooled ``[CLS]`` vector, is the post-hoc peers' feature.

    Args:
        num_labels: Classes.
        vocab_size: The tokenizer's vocabulary size (``tokenizer.get_vocab_size()``).
        hidden_size: Width of the encoder (a multiple of ``num_heads``).
        num_layers: Transformer layers.
        num_heads: Attention heads.
        intermediate_size: Feed-forward width; default ``4 * hidden_size``.
        max_length: The longest sequence the position embeddings cover.
        pad_token_id: The tokenizer's ``[PAD]`` id (``model.config.pad_token_id``).
        dropout: Hidden and attention dropout.

    Returns:
        The model, in training mode.

    Raises:
        TypeError: If a count is not an int or ``dropout`` not a number.
        ValueError: If a count is below 1 (``pad_token_id`` below 0), ``hidden_size`` is
            not a multiple of ``num_heads`` or ``dropout`` is outside ``[0, 1)``.

    Example:
        >>> import torch
        >>> model = small_bert(num_labels=3, vocab_size=50, hidden_size=32, num_layers=1)
        >>> ids = torch.randint(5, 50, (2, 7))
        >>> model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.shape
        torch.Size([2, 3])
    """
    from transformers import BertConfig, BertForSequenceClassification

    counts = dict(num_labels=num_labels, vocab_size=vocab_size, hidden_size=hidden_size,
                  num_layers=num_layers, num_heads=num_heads, max_length=max_length)  # fmt: skip
    p = _check_settings(counts, intermediate_size, pad_token_id, dropout)
    settings: dict[str, Any] = dict(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=intermediate_size or 4 * hidden_size,
        max_position_embeddings=max_length, hidden_dropout_prob=p,
        attention_probs_dropout_prob=p, num_labels=num_labels, pad_token_id=pad_token_id,
    )  # fmt: skip
    model: nn.Module = BertForSequenceClassification(BertConfig(**settings))
    return model


def _check_settings(
    counts: dict[str, int], intermediate_size: int | None, pad_token_id: int, dropout: float
) -> float:
    """Check :func:`small_bert`'s arguments (raising as it documents); return the dropout."""
    for name, v in counts.items():
        check_int(v, name)
    check_int(intermediate_size, "intermediate_size", allow_none=True)
    check_int(pad_token_id, "pad_token_id", minimum=0)
    p = check_number(dropout, "dropout")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    hidden, heads = counts["hidden_size"], counts["num_heads"]
    if hidden % heads:
        raise ValueError(f"hidden_size={hidden} must be a multiple of num_heads={heads}")
    if pad_token_id >= counts["vocab_size"]:
        raise ValueError(
            f"pad_token_id={pad_token_id} must be below vocab_size={counts['vocab_size']}"
        )
    return p
