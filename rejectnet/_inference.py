"""Running a model for inference: one checked batch, or a whole loader, in eval mode."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from rejectnet._batches import BatchKeys, Inputs, inputs_to, logits_of, split_inputs
from rejectnet._validation import check_finite_inputs, check_finite_logits, check_logits_width
from rejectnet.input_spec import ModelInput

__all__ = ["checked_logits", "collect_logits", "eval_mode", "module_device"]


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's first parameter (or buffer), CPU if it has none."""
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


class eval_mode:
    """Context manager: every submodule in eval mode, each one's own mode restored after.

    ``module.train(flag)`` sets one flag for the whole tree; a model whose parts are in
    different modes (a frozen batch-norm backbone in eval mode under a head in training
    mode, say) would lose that. This records each submodule's ``training`` flag on
    entry and puts exactly those back on exit, also when the body raises. When every
    submodule is already in eval mode it changes nothing.

    Example:
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
        >>> _ = m[1].eval()  # the batch norm frozen, the rest training
        >>> with eval_mode(m):
        ...     print([s.training for s in m.modules()])
        [False, False, False]
        >>> [s.training for s in m.modules()]
        [True, True, False]
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.was_training = module.training
        self._saved: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> nn.Module:
        self._saved = [(m, m.training) for m in self.module.modules() if m.training]
        if self._saved:
            self.module.eval()  # through train(False), so that overrides of train() run
        return self.module

    def __exit__(self, *exc: object) -> None:
        for m, flag in self._saved:
            m.training = flag
        self._saved = []


def collect_logits(
    forward: Callable[[Any], torch.Tensor],
    loader: Iterable[Any],
    device: torch.device,
    *,
    name: str = "loader",
    keys: BatchKeys | None = None,
    labels: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``forward`` over every batch of ``loader`` without gradients.

    Args:
        forward: Maps an input batch on ``device`` (a tensor, or a dict of named
            tensors) to logits.
        loader: Yields batches in any form :func:`rejectnet._batches.split_inputs` reads.
        device: Where to move inputs.
        name: What to call the loader in error messages.
        keys: ``(input_key, label_key)`` of mapping batches (see
            :func:`~rejectnet._batches.split_inputs`).
        labels: Whether to read labels; when ``False`` they are ignored, whatever type.

    Returns:
        The concatenated logits on the CPU, and the concatenated labels (``None`` if the
        batches carried none, or ``labels=False``).

    Raises:
        ValueError: If the loader yields no batch.
    """
    outs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    with torch.no_grad():
        for batch in loader:
            x, y = split_inputs(batch, f"{name} batch", keys=keys, labels=labels)
            outs.append(forward(inputs_to(x, device)).detach().to("cpu"))
            if y is not None:
                ys.append(y.detach().to("cpu"))
    if not outs:
        raise ValueError(f"{name} yielded no batches; it needs at least one sample")
    y_all = torch.cat(ys) if ys and len(ys) == len(outs) else None
    return torch.cat(outs), y_all


def checked_logits(
    net: nn.Module, model: nn.Module, x: Inputs, rule: ModelInput, width: int, head_path: str
) -> torch.Tensor:
    """The logits of one batch for a decision: checked, computed in eval mode, checked.

    The path of an input through :meth:`~rejectnet.RejectHead.predict` and
    :meth:`~rejectnet.RejectHead.ood_score`, in one place and in order: the batch
    against ``rule`` (form, rank, dtype, the recorded spec), the wrapped ``model`` (every
    submodule of ``net`` in eval mode, each one's mode restored after), then the batch's
    finiteness (a row with NaN or infinity is refused, naming it, before any decision)
    and the logits' shape and finiteness.

    Raises:
        TypeError, ValueError: As :meth:`ModelInput.check`, or for NaN or infinite
            inputs or logits (naming the rows).
        RuntimeError: If the logits are not ``(N, width)``.
    """
    rule.check(x)
    if any(m.training for m in net.modules()):
        with eval_mode(net):
            logits = logits_of(model, x)
    else:
        logits = logits_of(model, x)
    check_finite_inputs(x, "x")  # after the one model call: the path never climbs back
    check_logits_width(logits, width, head_path)
    check_finite_logits(logits, "x")
    return logits
