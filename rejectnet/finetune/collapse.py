"""A warning, with the numbers, when fine-tuning wrecks the in-distribution classifier.

Stage two must keep the classifier: a learning rate that is too high for the model (SGD
at 0.01 on a pretrained transformer, issue 21) destroys its accuracy without an error.
:class:`CollapseWatch` compares every epoch with where the run started and warns
(:class:`CollapseWarning`, and the ``"rejectnet"`` logger) when the in-distribution
accuracy or loss collapsed:

* with a ``val_loader``: its accuracy and cross-entropy over the C classes, measured
  once before the first step and after every epoch;
* without one: the training batches' in-distribution accuracy of the epoch, against
  that of the first optimizer step's batches (their forward ran on the weights as they
  came in, before any update; no extra forward pass is spent).

Collapse means accuracy fell by at least ``ACC_DROP`` (0.2) (absolute) *and* to below
``ACC_KEEP`` (0.75) of the start, or (on ``val_loader``) the cross-entropy over the C
classes grew above ``LOSS_FACTOR * start + LOSS_MARGIN`` nats. Accuracy is watched only
when the start is at least ``ACC_DROP`` above chance (1/C) by two standard errors
of its estimate (``sqrt(a (1 - a) / rows)``): a model trained from scratch or not yet
trained has nothing to lose, and one batch of 16 rows at 62% is not evidence of a
trained model. The training loss is not used:
in stage two it is taken over all C + k outputs and rises by design as the reject units
take probability mass (measured: 0.88 -> 2.15 over two epochs while validation accuracy
stayed at 100%).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rejectnet._batches import BatchKeys, call_model, extract_logits, inputs_to, split_inputs
from rejectnet._inference import eval_mode, module_device

__all__ = ["ACC_DROP", "ACC_KEEP", "CollapseWarning", "CollapseWatch", "Measure", "measure"]

logger = logging.getLogger("rejectnet")

ACC_DROP = 0.2
"""Accuracy must fall by at least this much (absolute) to count as a collapse."""
ACC_KEEP = 0.75
"""... and to below this fraction of the accuracy at the start."""
LOSS_FACTOR = 2.0
LOSS_MARGIN = 0.5
"""The loss collapsed when it exceeds ``LOSS_FACTOR * start + LOSS_MARGIN`` (nats)."""


class CollapseWarning(RuntimeWarning):
    """The in-distribution accuracy or loss collapsed during fine-tuning."""


@dataclass(frozen=True)
class Measure:
    """In-distribution accuracy (fraction) and mean cross-entropy, and where they come from."""

    accuracy: float
    loss: float
    source: str
    loss_counts: bool = True
    rows: int = 0
    """How many rows the accuracy was measured on (0: unknown, no error margin)."""

    @property
    def margin(self) -> float:
        """Two standard errors of ``accuracy`` (0 when ``rows`` is 0)."""
        if self.rows <= 0:
            return 0.0
        return 2.0 * math.sqrt(self.accuracy * (1.0 - self.accuracy) / self.rows)


class CollapseWatch:
    """Warns once per fit when an epoch's measure collapsed against the start.

    Args:
        name: The run's name, for the message.
        hint: What to try (names the optimizer and learning rate in use).
        num_classes: C, for the chance level (``None``: 0).

    Example:
        >>> import warnings
        >>> watch = CollapseWatch("rejectnet", "lower lr")
        >>> watch.start(Measure(1.0, 0.02, "val_loader"))
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _ = watch.check(2, Measure(0.249, 1.9, "val_loader"))
        >>> "100.0% before training to 24.9%" in str(caught[0].message)
        True
    """

    def __init__(self, name: str, hint: str, num_classes: int | None = None) -> None:
        self.name = name
        self.hint = hint
        self.chance = 1.0 / num_classes if num_classes else 0.0
        self.baseline: Measure | None = None
        self.warned = False

    def start(self, measure: Measure) -> None:
        """Record where the run starts (the first call wins)."""
        if self.baseline is None:
            self.baseline = measure

    def collapsed(self, measure: Measure) -> list[str]:
        """What collapsed against the start, as readable phrases (empty: nothing)."""
        base = self.baseline
        if base is None:
            return []
        out: list[str] = []
        if (
            base.accuracy - base.margin >= self.chance + ACC_DROP
            and base.accuracy - measure.accuracy >= ACC_DROP
            and measure.accuracy < ACC_KEEP * base.accuracy
        ):
            out.append(
                f"accuracy fell from {100 * base.accuracy:.1f}% before training to "
                f"{100 * measure.accuracy:.1f}%"
            )
        if measure.loss_counts and measure.loss > LOSS_FACTOR * base.loss + LOSS_MARGIN:
            out.append(f"cross-entropy rose from {base.loss:.3f} to {measure.loss:.3f}")
        return out

    def check(self, epoch: int, measure: Measure) -> bool:
        """Warn (once per fit) if ``measure`` collapsed; returns whether it did."""
        what = self.collapsed(measure)
        if not what:
            return False
        text = (
            f"{self.name}: the in-distribution classifier collapsed at epoch {epoch} "
            f"({measure.source}): {'; '.join(what)}. The optimizer is probably too "
            f"aggressive for this model: {self.hint}"
        )
        logger.warning("%s", text)
        if not self.warned:
            self.warned = True
            warnings.warn(text, CollapseWarning, stacklevel=4)
        return True


def measure(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    num_classes: int | None = None,
    device: torch.device | None = None,
    keys: BatchKeys | None = None,
) -> Measure:
    """Accuracy and cross-entropy over the C classes on a labeled loader (eval mode).

    Torch's CPU RNG is forked, so that a shuffled loader leaves the run's random draws
    as they are. Under torch.distributed every rank evaluates the whole loader.

    Args:
        model: The module (put in eval mode for the pass, its modes restored after).
        loader: Labeled batches.
        num_classes: C (default: the model's ``num_classes``, else every logit).
        device: Where to evaluate (default: the model's device).
        keys: ``(input_key, label_key)`` of dict batches.

    Raises:
        ValueError: If the batches carry no labels, or there are none.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Linear(2, 2)
        >>> m = measure(net, [(torch.randn(8, 2), torch.randint(0, 2, (8,)))])
        >>> m.rows, 0.0 <= m.accuracy <= 1.0
        (8, True)
    """
    dev = device if device is not None else module_device(model)
    outs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    with eval_mode(model), torch.random.fork_rng(devices=[]), torch.no_grad():
        for batch in loader:
            x, yb = split_inputs(batch, "val_loader batch", keys=keys)
            if yb is None:
                raise ValueError("val_loader batches must carry labels")
            outs.append(extract_logits(call_model(model, inputs_to(x, dev))).cpu())
            ys.append(yb.cpu())
    if not outs:
        raise ValueError("val_loader yielded no batches; it needs at least one sample")
    logits, y = torch.cat(outs), torch.cat(ys)
    c = num_classes if num_classes is not None else int(getattr(model, "num_classes", 0))
    c = c or int(logits.shape[1])
    logits_c = logits[:, :c].float()
    accuracy = float((logits_c.argmax(1) == y).double().mean())
    loss = float(torch.nn.functional.cross_entropy(logits_c, y.to(logits_c.device)))
    return Measure(accuracy, loss, "val_loader", rows=int(y.shape[0]))
