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
import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from rejectnet import decision
from rejectnet._outputs import extract_logits
from rejectnet._safeio import write_atomically
from rejectnet._validation import all_finite, is_tracing
from rejectnet.prediction import REJECTED

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

    Its forward is the decision of :meth:`~rejectnet.RejectHead.predict` in as few
    tensor ops as it takes: the wrapped model's forward (without the wrapper's Python
    checks), ``logits / temperature`` only when the temperature is not 1, the fused
    score of :func:`rejectnet.decision.compute_score`, one comparison against the
    threshold rounded down to the score's dtype (:func:`rejectnet.decision.threshold_for`),
    the arg-max and the label mask. It never raises on bad values: a row whose input
    (or logits) hold NaN or infinity gets a NaN score and is rejected, in eager mode,
    compiled, exported and in ONNX alike. For ``sum_reject`` / ``weighted_reject`` the
    input guard is added to the score (``x_flat @ zeros`` is exactly 0 for a finite row
    and NaN otherwise); for the other
    scores, in eager mode, one reduction over the batch checks the input and only when
    it is not finite does the per-row guard
    (:func:`rejectnet.decision.nan_if_nonfinite`) run, which a traced graph always
    contains.

    Attributes:
        net: The copied network.
        score: Name of the OOD score.
        num_classes: C.
        threshold: The decision threshold (0-d float64 buffer).
        temperature: The temperature (0-d float32 buffer).

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
    temperature: torch.Tensor
    weights: torch.Tensor
    thr32: torch.Tensor
    weights32: torch.Tensor
    _score_fn: decision.ScoreFn

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
        self.score = net.calibrated_score or "sum_reject"
        self.num_classes = int(net.num_classes)
        device = net.threshold.device
        thr = float(net.threshold)
        temp = float(net.temperature)
        self.register_buffer("threshold", torch.tensor(thr, dtype=torch.float64, device=device))
        self.register_buffer("thr32", torch.tensor(decision.threshold_for(thr, torch.float32)))
        self.register_buffer("temperature", torch.tensor(temp, dtype=torch.float32))
        w = decision.column_weights(
            self.score, self.num_classes, int(net.k), net.score_weights, torch.float64, device
        )
        empty = torch.empty(0, dtype=torch.float64, device=device)
        self.register_buffer("weights", w if w is not None else empty)
        self.register_buffer("weights32", (w if w is not None else empty).float())
        self._unit_temperature = temp == 1.0
        self._guard_logits = not decision.propagates_nonfinite(self.score)
        self._has_weights = w is not None
        # resolved once: the forward below runs no registry lookups
        self.__dict__["_score_fn"] = decision.score_function(self.score, self.num_classes)
        self.eval()

    def _apply(self, fn: Any, recurse: bool = True) -> DeployedModel:
        # the decision constants keep their dtypes through .half() / .to(dtype)
        names = ("threshold", "thr32", "temperature", "weights", "weights32")
        kept = {n: getattr(self, n).detach().clone() for n in names}
        super()._apply(fn, recurse)
        for n, t in kept.items():
            setattr(self, n, t.to(getattr(self, n).device))
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Classify a batch and reject what scores above the threshold.

        Args:
            x: A batch of inputs, as the wrapped model expects them.

        Returns:
            ``labels`` (``(N,)`` int64, ``-1`` for rejected inputs), ``ood_score``
            (``(N,)``, higher = more likely OOD; NaN for non-finite inputs) and
            ``is_ood`` (``(N,)`` bool, ``ood_score > threshold`` or NaN).
        """
        out = self._modules["net"]._modules["model"](x)  # type: ignore[union-attr, misc]
        logits = out if type(out) is torch.Tensor else extract_logits(out)
        if is_tracing():
            return self._graph_forward(x, logits)
        # eager mode: the fewest tensor ops and Python steps (each op costs a few
        # microseconds of dispatch, which is what batch-1 latency is made of)
        buffers = self._buffers
        f64 = logits.dtype is torch.float64
        z = logits if self._unit_temperature else logits / buffers["temperature"]  # type: ignore[operator]
        if self._has_weights:
            # sum / weighted_reject: exactly decision.score_function's ops
            w = buffers["weights" if f64 else "weights32"]
            p = torch.softmax(z, 1) if f64 or z.dtype is torch.float32 else _softmax32(z)
            score = (p * w).sum(1)  # type: ignore[operator]
            if x.is_floating_point():
                # the input guard: x_flat @ 0 is exactly 0 for a finite row (s + 0 == s,
                # s >= +0) and NaN otherwise; addmv adds it in the same op
                flat = x if x.ndim == 2 else (x.flatten(1) if x.ndim > 2 else x.unsqueeze(1))
                zeros = self._zero_row(flat)
                if flat.dtype is score.dtype:
                    score = torch.addmv(score, flat, zeros)
                else:
                    score = score.add_(torch.mv(flat, zeros).to(score.dtype))
        else:
            score = self._score_fn(z, None)
            if self._guard_logits:
                if not (all_finite(x) and all_finite(logits)):
                    score = decision.nan_if_nonfinite(score, x, logits)
            elif not all_finite(x):
                score = decision.nan_if_nonfinite(score, x)
        is_ood = torch.le(score, buffers["threshold" if f64 else "thr32"]).logical_not_()  # type: ignore[arg-type]
        labels = logits.narrow(1, 0, self.num_classes).argmax(1).masked_fill_(is_ood, REJECTED)
        return labels, score, is_ood

    def decide_against(
        self, x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The traced forward deciding against ``threshold`` (a 0-d tensor of the score dtype).

        What :func:`rejectnet.export_aoti` compiles: the threshold is an input there.
        """
        out = self.net.model(x)
        logits = out if type(out) is torch.Tensor else extract_logits(out)
        return self._graph_forward(x, logits, threshold)

    def _graph_forward(
        self, x: torch.Tensor, logits: torch.Tensor, threshold: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The forward as torch.compile, torch.export and ONNX trace it (branch-free)."""
        z = logits if self._unit_temperature else logits / self.temperature
        f64 = z.dtype == torch.float64
        sdt = torch.float64 if f64 else torch.float32
        w = (self.weights if f64 else self.weights32) if self._has_weights else None
        if w is not None and x.is_floating_point():
            # sum / weighted_reject with the input guard added: x_flat @ 0 is exactly 0 for
            # a finite row and NaN otherwise, and s + 0 == s, so the score has the bits of
            # predict()'s row-wise sum, without host synchronisation
            flat = x.reshape(x.shape[0], math.prod(int(d) for d in x.shape[1:]))
            zeros = torch.zeros(int(flat.shape[1]), dtype=flat.dtype, device=flat.device)
            guard = torch.mv(flat, zeros)
            p = torch.softmax(z, 1, dtype=sdt)
            guard = guard if guard.dtype == sdt else guard.to(sdt)
            if torch.onnx.is_in_onnx_export():
                # in the ONNX graph one MatMul + Add is fewer nodes; onnxruntime's rounding
                # is its own anyway (matched to predict() within 1e-5 in tests)
                score = torch.addmv(guard, p, w)
            else:
                score = (p * w).sum(1).add_(guard)
        else:
            score = self._score_fn(z, w)
            tensors = (x, logits) if self._guard_logits else (x,)
            score = decision.nan_if_nonfinite(score, *tensors)
        thr = (self.threshold if f64 else self.thr32) if threshold is None else threshold
        is_ood = torch.le(score, thr).logical_not_()
        classes = logits.narrow(1, 0, self.num_classes).argmax(1)
        return classes.masked_fill_(is_ood, REJECTED), score, is_ood

    def _zero_row(self, flat: torch.Tensor) -> torch.Tensor:
        """A zero vector as long as one flattened input row (cached; eager mode only)."""
        key = (flat.shape[1], flat.dtype, flat.device)
        cache: dict[Any, torch.Tensor] | None = self.__dict__.get("_zeros_cache")
        if cache is None:
            cache = self.__dict__["_zeros_cache"] = {}
        found = cache.get(key)
        if found is None:
            if len(cache) > 8:
                cache.clear()
            found = cache[key] = torch.zeros(key[0], dtype=key[1], device=key[2])
        return found

    def extra_repr(self) -> str:
        """The score and threshold, for ``repr()``."""
        temp = float(self.temperature)
        return f"score={self.score!r}, threshold={float(self.threshold):.6g}" + (
            f", temperature={temp:.6g}" if temp != 1.0 else ""
        )


def _softmax32(z: torch.Tensor) -> torch.Tensor:
    """``softmax(z, 1)`` in float32 (for half / bfloat16 logits), as predict() computes it."""
    return torch.softmax(z, 1, dtype=torch.float32)


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
