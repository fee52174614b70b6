"""Whether this checkout's RejectHead takes Hugging Face dict batches (issue 21)."""

from __future__ import annotations

import torch


def dict_batches_supported() -> bool:
    """``True`` when ``RejectHead`` calls a wrapped model with named tensors."""
    from rejectnet import RejectHead
    from rejectnet.text import small_bert

    net = RejectHead.wrap(small_bert(2, 20, hidden_size=16, num_layers=1, num_heads=2), k=1)
    ids = torch.randint(5, 20, (2, 4))
    try:
        net({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    except TypeError:
        return False
    return True


NEEDS_DICTS = "needs RejectHead and the fine-tuners to take dict batches (issue 21: core, train)"
