"""Deploying a calibrated model: a plain module with the threshold baked in, and ONNX.

:meth:`rejectnet.RejectHead.deployable` returns a :class:`DeployedModel`: an ordinary
``nn.Module`` that maps a batch of images to ``(labels, ood_score, is_ood)``, computing
exactly what :meth:`~rejectnet.RejectHead.predict` computes (the same forward, the same
score function, ``is_ood = ood_score > threshold`` in float64, label ``-1`` for rejected
inputs) with no Python-side state, so that it runs under ``torch.compile``, goes
through ``torch.export.export`` and exports to ONNX with :func:`export_onnx`.
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rejectnet.prediction import REJECTED
from rejectnet.scores import registry
from rejectnet.scores.reject import _check_weights, _reject_log_probs

if TYPE_CHECKING:
    from rejectnet.head import RejectHead

__all__ = ["DeployedModel", "export_onnx"]


class DeployedModel(nn.Module):
    """A frozen, calibrated copy of a :class:`~rejectnet.RejectHead` for inference.

    Create one with :meth:`rejectnet.RejectHead.deployable`. It holds a deep copy of the
    network (later training or re-calibration of the original does not affect it), in
    eval mode, and the threshold as a float64 buffer.

    Attributes:
        net: The copied network.
        score: Name of the OOD score.
        num_classes: C.
        threshold: The decision threshold (0-d float64 buffer).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead
        >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2).eval()
        >>> _ = net.calibrate([torch.randn(64, 8)], coverage=0.9)
        >>> labels, score, is_ood = net.deployable()(torch.randn(5, 8))
        >>> labels.dtype, score.shape, is_ood.dtype
        (torch.int64, torch.Size([5]), torch.bool)
    """

    threshold: torch.Tensor
    weights: torch.Tensor

    def __init__(self, net: RejectHead) -> None:
        super().__init__()
        if not net.is_calibrated:
            raise RuntimeError(
                "the model has no threshold: call net.calibrate(id_val_loader, coverage=0.95) "
                "on held-out in-distribution data (or net.set_threshold(value, score)) before "
                "net.deployable()"
            )
        self.net = copy.deepcopy(net).eval()
        self.score = net.calibrated_score or registry.spec("sum_reject").name
        self.num_classes = net.num_classes
        self.register_buffer("threshold", net.threshold.detach().clone().to(torch.float64))
        weights = torch.empty(0, dtype=torch.float64)
        if self.score == "weighted_reject":
            k = net.k
            w = _check_weights(net.score_weights, k, net.num_classes + k, net.num_classes)
            weights = torch.as_tensor(w, dtype=torch.float64)
        self.register_buffer("weights", weights.to(net.threshold.device))
        self.eval()

    def _score(self, logits: torch.Tensor) -> torch.Tensor:
        if self.score == "weighted_reject":
            # weighted_reject with its (already validated) weights, in traceable form
            log_p, c = _reject_log_probs(logits, self.num_classes)
            w = self.weights.to(device=log_p.device, dtype=log_p.dtype)
            return (log_p[:, c:].exp() * w).sum(dim=1)
        return self.net.score_logits(logits, self.score)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Classify a batch and reject what scores above the threshold.

        Args:
            x: A batch of inputs, as the wrapped model expects them.

        Returns:
            ``labels`` (``(N,)`` int64, ``-1`` for rejected inputs), ``ood_score``
            (``(N,)``, higher = more likely OOD) and ``is_ood`` (``(N,)`` bool,
            ``ood_score > threshold``).

        Raises:
            ValueError: In eager mode, like :meth:`~rejectnet.RejectHead.predict`, if
                the model's logits are NaN or infinite. A compiled or exported graph
                cannot raise: there such inputs get a NaN score and count as OOD.
        """
        logits = self.net(x)
        score = self._score(logits)
        classes = logits[:, : self.num_classes].float().argmax(dim=-1)
        s64 = score.double()
        is_ood = (s64 > self.threshold) | torch.isnan(s64)
        labels = torch.where(is_ood, torch.full_like(classes, REJECTED), classes)
        return labels, score, is_ood

    def extra_repr(self) -> str:
        """The score and threshold, for ``repr()``."""
        return f"score={self.score!r}, threshold={float(self.threshold):.6g}"


def export_onnx(
    net: RejectHead | DeployedModel,
    path: str | Path,
    example_input: torch.Tensor,
    *,
    dynamic_batch: bool = True,
    opset_version: int | None = None,
) -> Path:
    """Write a calibrated model as ONNX: images in, ``(labels, ood_score, is_ood)`` out.

    Uses ``torch.onnx.export(..., dynamo=True)`` (needs the ``onnx`` and ``onnxscript``
    packages: ``pip install rejectnet[export]``). The outputs are named ``labels``,
    ``ood_score`` and ``is_ood``; the input is ``images``, with a dynamic batch
    dimension unless ``dynamic_batch=False``.

    Args:
        net: A calibrated :class:`~rejectnet.RejectHead` (its :meth:`deployable` is
            exported) or a :class:`DeployedModel`.
        path: Where to write the ``.onnx`` file.
        example_input: A batch of at least two inputs of the right shape and dtype, on
            the model's device, used to trace the model.
        dynamic_batch: Let the exported graph accept any batch size.
        opset_version: ONNX opset; the exporter's default when ``None``.

    Returns:
        The path written.

    Raises:
        RuntimeError: If the model is not calibrated.
        TypeError: If ``net`` is neither a RejectHead nor a DeployedModel.
        ValueError: If ``example_input`` is not a tensor batch of at least two samples.
        ImportError: If the ONNX exporter's dependencies are missing.

    Example:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> import rejectnet
        >>> net = rejectnet.RejectHead.wrap(nn.Linear(8, 3), k=2).eval()
        >>> _ = net.calibrate([torch.randn(64, 8)])
        >>> out = rejectnet.export_onnx(net, tempfile.mkdtemp() + "/m.onnx", torch.randn(4, 8))
        >>> out.suffix
        '.onnx'
    """
    from rejectnet.head import RejectHead

    if isinstance(net, RejectHead):
        model = net.deployable()
    elif isinstance(net, DeployedModel):
        model = net.eval()
    else:
        raise TypeError(
            f"net must be a calibrated RejectHead or a DeployedModel, got {type(net).__name__}"
        )
    if not isinstance(example_input, torch.Tensor) or example_input.ndim < 2:
        raise ValueError("example_input must be a tensor batch (N, ...) with N >= 2")
    if dynamic_batch and example_input.shape[0] < 2:
        raise ValueError(
            "example_input needs a batch of at least 2 samples for a dynamic batch size "
            "(torch.export specialises dimensions of size 0 and 1)"
        )
    try:
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "export_onnx needs the onnx and onnxscript packages: pip install rejectnet[export]"
        ) from err
    out = Path(path)
    kwargs: dict[str, Any] = dict(
        input_names=["images"],
        output_names=["labels", "ood_score", "is_ood"],
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    if dynamic_batch:
        kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch")}}
    if opset_version is not None:
        kwargs["opset_version"] = opset_version
    # the exporter prints its progress to stdout; keep the caller's output clean
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(model, (example_input,), str(out), **kwargs)
    return out
