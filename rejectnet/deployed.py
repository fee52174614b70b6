"""The deployable model: a plain module with the calibrated decision baked in.

:meth:`rejectnet.RejectHead.deployable` returns a :class:`DeployedModel`: an ordinary
``nn.Module`` that maps a batch of images to ``(labels, ood_score, is_ood)`` with the
decision functions of :mod:`rejectnet.decision` (the ones
:meth:`~rejectnet.RejectHead.predict` uses), and no Python-side state, so that it runs
under ``torch.compile``, goes through ``torch.export.export`` and exports to ONNX
(:func:`rejectnet.files.onnx_file.export_onnx`) and AOTInductor
(:mod:`rejectnet.files.aoti_package`).

This module does not import :mod:`rejectnet.head` (the head imports it): it takes the
network by what it provides, the :class:`Calibrated` protocol.
"""

from __future__ import annotations

import copy
import keyword
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from rejectnet import decision
from rejectnet._batches import extract_logits

__all__ = ["Calibrated", "DeployedModel", "dynamic_shapes_for", "named_program", "traceable_copy"]


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
        """The decision threshold (0-d float64 buffer of ``decision``)."""
        return self.decision.threshold

    @property
    def temperature(self) -> torch.Tensor:
        """The temperature (0-d float32 buffer of ``decision``)."""
        return self.decision.temperature

    def forward(
        self, x: torch.Tensor | dict[str, torch.Tensor] | None = None, /, **inputs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Classify a batch and reject what scores above the threshold.

        Args:
            x: A batch of inputs, as the wrapped model expects them: a tensor, or a dict
                of named tensors passed to the model as keyword arguments.
            **inputs: Named tensors as keyword arguments instead of ``x`` (what
                ``torch.export`` and the ONNX exporter trace for multi-input models).

        Returns:
            ``labels`` (``(N,)`` int64, ``-1`` for rejected inputs), ``ood_score``
            (``(N,)``, higher = more likely OOD; NaN for non-finite inputs) and
            ``is_ood`` (``(N,)`` bool, ``ood_score > threshold`` or NaN).
        """
        modules = self._modules
        model = modules["net"]._modules["model"]  # type: ignore[union-attr]
        if x is None or not isinstance(x, torch.Tensor):
            x = inputs if x is None else dict(x)
            out = model(**x)  # type: ignore[misc]
        else:
            out = model(x)  # type: ignore[misc]
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


def traceable_copy(
    net: Calibrated | DeployedModel,
    example_input: torch.Tensor | Mapping[str, torch.Tensor],
    dynamic_batch: bool,
) -> DeployedModel:
    """The :class:`DeployedModel` an exporter traces, after checking its inputs: a copy,
    whose widened head is one linear layer where it can be (:func:`_fuse_head`).

    Shared by :func:`rejectnet.export_onnx` and :func:`rejectnet.export_aoti`.
    """
    if isinstance(net, DeployedModel):
        model = copy.deepcopy(net).eval()
    elif isinstance(net, nn.Module) and isinstance(net, Calibrated):
        model = net.deployable().eval()
    else:
        raise TypeError(
            f"net must be a calibrated RejectHead or a DeployedModel, got {type(net).__name__}"
        )
    if isinstance(example_input, Mapping):
        _check_named_example(example_input, dynamic_batch)
    elif not isinstance(example_input, torch.Tensor) or example_input.ndim < 2:
        raise ValueError("example_input must be a tensor batch (N, ...) with N >= 2")
    elif dynamic_batch and example_input.shape[0] < 2:
        raise ValueError(
            "example_input needs a batch of at least 2 samples for a dynamic batch size "
            "(torch.export specialises dimensions of size 0 and 1)"
        )
    _fuse_head(model)
    return model


def _check_named_example(example: Mapping[str, Any], dynamic_batch: bool) -> None:
    """A dict example: named tensors of one batch size, at least 2 for a dynamic batch."""
    if not example:
        raise ValueError("example_input holds no inputs; pass at least one named tensor")
    for key, t in example.items():
        if not isinstance(t, torch.Tensor) or t.ndim < 1:
            raise TypeError(
                f"example_input[{key!r}] must be a tensor batch (N, ...), got {type(t).__name__}"
            )
    sizes = {int(t.shape[0]) for t in example.values()}
    if len(sizes) != 1:
        raise ValueError(f"example_input's tensors differ in batch size: {sorted(sizes)}")
    if dynamic_batch and sizes.pop() < 2:
        raise ValueError(
            "example_input needs a batch of at least 2 samples for a dynamic batch size "
            "(torch.export specialises dimensions of size 0 and 1)"
        )


def dynamic_shapes_for(example: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``dynamic_shapes`` for the module :func:`named_program` returns, by input name.

    The batch dimension of every input is dynamic, and so is the sequence dimension of
    ``(N, L)`` inputs (token ids, masks); ``Dim.AUTO`` lets torch.export bound them as
    the model requires (e.g. at most the model's number of position embeddings).

    Example:
        >>> import torch
        >>> x = {"input_ids": torch.zeros(2, 5, dtype=torch.long)}
        >>> list(dynamic_shapes_for(x)["input_ids"])
        [0, 1]
    """
    dyn = torch.export.Dim.AUTO
    return {name: ({0: dyn, 1: dyn} if t.ndim == 2 else {0: dyn}) for name, t in example.items()}


class _NamedInputs(nn.Module):
    """A :class:`DeployedModel` taking its named inputs as positional parameters."""

    def __init__(self, deployed: DeployedModel) -> None:
        super().__init__()
        self.deployed = deployed


def named_program(deployed: DeployedModel, names: Sequence[str]) -> nn.Module:
    """``deployed`` as a module whose ``forward`` has one parameter per input name.

    What torch.export and the ONNX exporter trace for a model with named inputs (they
    bind inputs by the forward's signature; a ``**inputs`` signature is not traced
    reliably): ``forward(input_ids, attention_mask)`` calls
    ``deployed(input_ids=..., attention_mask=...)``.

    Raises:
        ValueError: If a name is not a Python identifier.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead
        >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
        >>> net.set_threshold(0.5)
        >>> import inspect
        >>> list(inspect.signature(named_program(net.deployable(), ["x"]).forward).parameters)
        ['x']
    """
    for n in names:
        if not (isinstance(n, str) and n.isidentifier() and not keyword.iskeyword(n)):
            raise ValueError(f"input names must be Python identifiers to export, got {n!r}")
    params = ", ".join(names)
    call = ", ".join(f"{n}={n}" for n in names)
    namespace: dict[str, Any] = {}
    # generated source (as dataclasses does): exporters read the parameter names
    exec(f"def forward(self, {params}):\n    return self.deployed.forward(dict({call}))", namespace)
    cls = type("NamedInputs", (_NamedInputs,), {"forward": namespace["forward"]})
    module: nn.Module = cls(deployed).train(deployed.training)
    return module


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
