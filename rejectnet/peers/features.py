"""Penultimate features and logits of any classifier, from one forward pass.

The features are the input of the final ``nn.Linear`` (found by the same locator that
:meth:`rejectnet.RejectHead.wrap` uses), captured with a forward hook, so no model needs
a ``features()`` method. For a Hugging Face ``BertForSequenceClassification`` that is
the pooled output (its ``classifier``'s input; the dropout before it is off in eval
mode). Inputs are one tensor or a dict of named tensors (``model(**x)``), by the rule of
:mod:`rejectnet._batches`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from rejectnet._batches import (
    Inputs,
    batch_size,
    call_model,
    extract_logits,
    inputs_to,
    split_inputs,
    take_rows,
)
from rejectnet._inference import module_device
from rejectnet._locate import find_head
from rejectnet.head import RejectHead

__all__ = ["ClassifierTap", "FeatureModule", "LogitsModule", "collect_outputs"]


class ClassifierTap:
    """A plain classifier with its final linear layer located.

    Calling it runs the model once and returns the head's input (the penultimate
    features, flattened to ``(N, D)``) and the logits ``(N, C)``. Gradients flow as the
    caller's autograd mode allows.

    Args:
        model: The C-class classifier (stage one), not a :class:`~rejectnet.RejectHead`.
        head: Dotted path of the final ``nn.Linear``; found automatically when ``None``.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module`` or is a ``RejectHead``.
    """

    def __init__(self, model: nn.Module, head: str | None = None) -> None:
        if isinstance(model, RejectHead):
            raise TypeError(
                "model is a RejectHead; the post-hoc peers score the plain C-class "
                "classifier (the stage-one model before RejectHead.wrap)"
            )
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.head_path, self.head = find_head(model, head)

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        return module_device(self.model)

    def __call__(self, x: Inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(N, D)`` and logits ``(N, C)`` of a batch.

        Args:
            x: Inputs on the model's device: one tensor, or named tensors passed as
                keyword arguments.

        Returns:
            The head's input, flattened, and the model's logits.

        Raises:
            RuntimeError: If the final layer did not run exactly once.
        """
        captured: list[torch.Tensor] = []

        def hook(_module: nn.Module, inputs: tuple[Any, ...], _output: Any) -> None:
            captured.append(inputs[0])

        handle = self.head.register_forward_hook(hook)
        try:
            logits = extract_logits(call_model(self.model, x))
        finally:
            handle.remove()
        if len(captured) != 1:
            raise RuntimeError(
                f"the final layer {self.head_path!r} ran {len(captured)} times in one forward "
                "pass; pass head='dotted.path' to name the classifier's final nn.Linear"
            )
        return captured[0].flatten(1), logits


class FeatureModule(nn.Module):
    """``x -> features`` as an ``nn.Module`` (an encoder for pytorch-ood detectors).

    Args:
        tap: The located classifier.
    """

    def __init__(self, tap: ClassifierTap) -> None:
        super().__init__()
        self.model = tap.model
        self._tap = tap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features of ``x``.

        Args:
            x: Inputs.

        Returns:
            ``(N, D)`` features.
        """
        return self._tap(x)[0]


class LogitsModule(nn.Module):
    """``x -> logits`` as an ``nn.Module``, whatever form the model's output takes.

    Args:
        model: The classifier.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x``.

        Args:
            x: Inputs.

        Returns:
            ``(N, C)`` logits.
        """
        return extract_logits(self.model(x))


def collect_outputs(
    tap: ClassifierTap,
    loader: Iterable[Any],
    *,
    name: str,
    limit: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Features, logits and labels over a loader, on the CPU, without gradients.

    Args:
        tap: The located classifier (already in the mode the caller wants).
        loader: Batches in any form :func:`rejectnet._batches.split_inputs` reads.
        name: What to call the loader in error messages.
        limit: Stop after this many samples (the first batches of the loader).

    Returns:
        ``(features, logits, labels)``; ``labels`` is ``None`` without labels.

    Raises:
        ValueError: If the loader yields no batch.
    """
    device = tap.device
    feats: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    seen = 0
    with torch.no_grad():
        for batch in loader:
            x, y = split_inputs(batch, f"{name} batch")
            n = batch_size(x, f"{name} batch inputs")
            if limit is not None and n > limit - seen:
                n = limit - seen
                x = take_rows(x, slice(0, n))
                y = y[:n] if y is not None else None
            f, z = tap(inputs_to(x, device))
            feats.append(f.detach().to("cpu"))
            logits.append(z.detach().to("cpu"))
            if y is not None:
                labels.append(y.detach().to("cpu"))
            seen += n
            if limit is not None and seen >= limit:
                break
    if not feats:
        raise ValueError(f"{name} yielded no batches; it needs at least one sample")
    y_all = torch.cat(labels) if labels and len(labels) == len(feats) else None
    return torch.cat(feats), torch.cat(logits), y_all
