"""Running a model over a data loader and collecting its outputs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from rejectnet._batches import split_batch

__all__ = ["collect_logits", "eval_mode", "module_device"]


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's first parameter (or buffer), CPU if it has none."""
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


class eval_mode:
    """Context manager: put a module in eval mode and restore its previous mode after."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.was_training = module.training

    def __enter__(self) -> nn.Module:
        self.module.eval()
        return self.module

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.was_training)


def collect_logits(
    forward: Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable[Any],
    device: torch.device,
    *,
    name: str = "loader",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``forward`` over every batch of ``loader`` without gradients.

    Args:
        forward: Maps an input batch on ``device`` to logits.
        loader: Yields batches in any form :func:`rejectnet._batches.split_batch` reads.
        device: Where to move inputs.
        name: What to call the loader in error messages.

    Returns:
        The concatenated logits on the CPU, and the concatenated labels (``None`` if the
        batches carried none).

    Raises:
        ValueError: If the loader yields no batch.
    """
    outs: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    with torch.no_grad():
        for batch in loader:
            x, y = split_batch(batch, f"{name} batch")
            outs.append(forward(x.to(device)).detach().to("cpu"))
            if y is not None:
                labels.append(y.detach().to("cpu"))
    if not outs:
        raise ValueError(f"{name} yielded no batches; it needs at least one sample")
    y_all = torch.cat(labels) if labels and len(labels) == len(outs) else None
    return torch.cat(outs), y_all
