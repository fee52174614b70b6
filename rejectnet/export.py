"""Deploying a calibrated model: a plain module with the threshold baked in, and ONNX.

:meth:`rejectnet.RejectHead.deployable` returns a :class:`DeployedModel`: an ordinary
``nn.Module`` that maps a batch of images to ``(labels, ood_score, is_ood)`` with the
decision functions of :mod:`rejectnet.decision` (the ones
:meth:`~rejectnet.RejectHead.predict` uses), and no Python-side state, so that it runs
under ``torch.compile``, goes through ``torch.export.export`` and exports to ONNX with
:func:`export_onnx`.

This module does not import :mod:`rejectnet.head` (the head imports it): it takes the
network by what it provides, the :class:`Calibrated` protocol.
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from rejectnet import decision
from rejectnet._outputs import extract_logits
from rejectnet._safeio import write_atomically

__all__ = ["Calibrated", "DeployedModel", "export_onnx"]


@runtime_checkable
class Calibrated(Protocol):
    """What :class:`DeployedModel` needs of a network (a :class:`~rejectnet.RejectHead`)."""

    model: nn.Module
    head_path: str
    num_classes: int
    k: int
    threshold: torch.Tensor
    temperature: torch.Tensor
    score_weights: torch.Tensor

    @property
    def calibrated_score(self) -> str | None: ...

    @property
    def is_calibrated(self) -> bool: ...

    def deployable(self) -> DeployedModel: ...


class DeployedModel(nn.Module):
    """A frozen, calibrated copy of a :class:`~rejectnet.RejectHead` for inference.

    Create one with :meth:`rejectnet.RejectHead.deployable`. It holds a deep copy of the
    network (later training or re-calibration of the original does not affect it), in
    eval mode, and the threshold as a float64 buffer.

    Its forward is the wrapped model's forward (without the wrapper's Python checks)
    followed by :class:`rejectnet.decision.Decision` (the object
    :meth:`~rejectnet.RejectHead.predict` scores and decides with): ``logits /
    temperature`` only when the temperature is not 1, the fused score, one comparison
    against the threshold rounded down to the score's dtype, the arg-max and the label
    mask. It never raises on bad values: a row whose input (or logits) hold NaN or
    infinity gets a NaN score and is rejected, in eager mode, compiled, exported and in
    ONNX alike.

    Attributes:
        net: The copied network.
        decision: The frozen :class:`~rejectnet.decision.Decision` (the constants).

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

    decision: decision.Decision

    def __init__(self, net: Calibrated) -> None:
        super().__init__()
        if not net.is_calibrated:
            raise RuntimeError(
                "the model has no threshold: call net.calibrate(id_val_loader, coverage=0.95) "
                "on held-out in-distribution data (or net.set_threshold(value, score)) before "
                "net.deployable()"
            )
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a calibrated RejectHead, got {type(net).__name__}")
        self.net = copy.deepcopy(net).eval()
        self.decision = decision.Decision(
            net.calibrated_score or "sum_reject",
            int(net.num_classes),
            int(net.k),
            net.score_weights,
            float(net.threshold),
            float(net.temperature),
            net.threshold.device,
        )
        self.eval()

    @property
    def score(self) -> str:
        """Name of the OOD score."""
        return self.decision.score

    @property
    def num_classes(self) -> int:
        """C."""
        return self.decision.num_classes

    @property
    def threshold(self) -> torch.Tensor:
        """The decision threshold (0-d float64 buffer of :attr:`decision`)."""
        return self.decision.threshold

    @property
    def temperature(self) -> torch.Tensor:
        """The temperature (0-d float32 buffer of :attr:`decision`)."""
        return self.decision.temperature

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Classify a batch and reject what scores above the threshold.

        Args:
            x: A batch of inputs, as the wrapped model expects them.

        Returns:
            ``labels`` (``(N,)`` int64, ``-1`` for rejected inputs), ``ood_score``
            (``(N,)``, higher = more likely OOD; NaN for non-finite inputs) and
            ``is_ood`` (``(N,)`` bool, ``ood_score > threshold`` or NaN).
        """
        modules = self._modules
        out = modules["net"]._modules["model"](x)  # type: ignore[union-attr, misc]
        logits = out if type(out) is torch.Tensor else extract_logits(out)
        dec: decision.Decision = modules["decision"]  # type: ignore[assignment]
        return dec.forward(x, logits)

    def decide_against(
        self, x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The forward deciding against ``threshold`` (a 0-d tensor of the score dtype).

        What :func:`rejectnet.export_aoti` compiles: the threshold is an input there.
        """
        out = self.net.model(x)
        logits = out if type(out) is torch.Tensor else extract_logits(out)
        return self.decision.forward(x, logits, threshold)

    def extra_repr(self) -> str:
        """The score and threshold, for ``repr()``."""
        return self.decision.extra_repr()


def _export_copy(
    net: Calibrated | DeployedModel, example_input: torch.Tensor, dynamic_batch: bool
) -> DeployedModel:
    """The :class:`DeployedModel` an exporter traces (a copy), after checking its inputs.

    Shared by :func:`export_onnx` and :func:`rejectnet.aoti.export_aoti`.
    """
    if isinstance(net, DeployedModel):
        model = copy.deepcopy(net).eval()
    elif isinstance(net, nn.Module) and isinstance(net, Calibrated):
        model = net.deployable().eval()
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
    return model


def _fuse_head(dep: DeployedModel) -> None:
    """Replace the copy's widened head (class layer + reject layer + concat) by one linear.

    One ``Gemm`` instead of two ``Gemm`` and a ``Concat`` in the graph; the outputs are
    the same C + k logits up to the float rounding of one matrix product instead of two.
    Heads with hooks or of other types than plain ``nn.Linear`` are left as they are.
    """
    inner = dep.net.model
    path = str(dep.net.head_path)
    layer = inner.get_submodule(path)
    base, reject = getattr(layer, "base", None), getattr(layer, "reject", None)
    plain = [m for m in (layer, base, reject) if isinstance(m, nn.Module)]
    if (
        type(base) is not nn.Linear
        or type(reject) is not nn.Linear
        or any(m._forward_hooks or m._forward_pre_hooks for m in plain)
    ):
        return
    if base.bias is None or reject.bias is None:
        return
    fused = nn.Linear(
        base.in_features,
        base.out_features + reject.out_features,
        device=base.weight.device,
        dtype=base.weight.dtype,
    )
    with torch.no_grad():
        fused.weight.copy_(torch.cat([base.weight, reject.weight]))
        fused.bias.copy_(torch.cat([base.bias, reject.bias]))
    parent_path, _, name = path.rpartition(".")
    parent = inner.get_submodule(parent_path) if parent_path else inner
    setattr(parent, name, fused)


def export_onnx(
    net: Calibrated | DeployedModel,
    path: str | Path,
    example_input: torch.Tensor,
    *,
    dynamic_batch: bool = True,
    opset_version: int | None = None,
) -> Path:
    """Write a calibrated model as ONNX: images in, ``(labels, ood_score, is_ood)`` out.

    Uses ``torch.onnx.export(..., dynamo=True)`` (needs the ``onnx`` and ``onnxscript``
    packages: ``pip install rejectnet[export]``) on :meth:`~rejectnet.RejectHead.deployable`,
    with the exporter's graph optimisation on, on a copy whose widened head is one
    ``Gemm`` (the class and reject weights side by side). The file is written atomically
    (a temporary file beside it, renamed): an export that fails or is killed midway
    leaves an earlier file at ``path`` intact. The outputs are named ``labels``,
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
    model = _export_copy(net, example_input, dynamic_batch)
    try:
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "export_onnx needs the onnx and onnxscript packages: pip install rejectnet[export]"
        ) from err
    _fuse_head(model)
    out = Path(path)
    kwargs: dict[str, Any] = dict(
        input_names=["images"],
        output_names=["labels", "ood_score", "is_ood"],
        dynamo=True,
        external_data=False,
        optimize=True,
        verbose=False,
    )
    if dynamic_batch:
        kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch")}}
    if opset_version is not None:
        kwargs["opset_version"] = opset_version

    def write(tmp: Path) -> None:
        # the exporter prints its progress to stdout; keep the caller's output clean
        with contextlib.redirect_stdout(io.StringIO()):
            torch.onnx.export(model, (example_input,), str(tmp), **kwargs)

    # a temporary file renamed over `out`: an export that fails or is killed midway
    # leaves a previous file at `out` as it was
    return write_atomically(out, write)
