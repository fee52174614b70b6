"""Writing a calibrated model as an ONNX file (``rejectnet.export_onnx``).

The graph is :class:`~rejectnet.deployed.DeployedModel`'s (the decision of
:mod:`rejectnet.decision`), traced by ``torch.onnx.export(..., dynamo=True)`` and written
through the one atomic writer (:func:`~rejectnet.files.atomic_writes.write_atomically`).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rejectnet.deployed import (
    Calibrated,
    DeployedModel,
    dynamic_shapes_for,
    named_program,
    traceable_copy,
)
from rejectnet.files.atomic_writes import write_atomically

__all__ = ["export_onnx"]


def _onnx_call(
    model: DeployedModel,
    example_input: torch.Tensor | Mapping[str, torch.Tensor],
    dynamic_batch: bool,
) -> tuple[nn.Module, tuple[Any, ...], dict[str, Any]]:
    """What ``torch.onnx.export`` is called with: the module, its inputs, the options.

    One tensor is the input ``images``; named inputs keep their names (through
    :func:`named_program`), with dynamic batch and sequence axes.
    """
    named = isinstance(example_input, Mapping)
    kwargs: dict[str, Any] = dict(
        input_names=list(example_input) if named else ["images"],
        output_names=["labels", "ood_score", "is_ood"],
        dynamo=True,
        external_data=False,
        optimize=True,
        verbose=False,
    )
    if isinstance(example_input, Mapping):
        if dynamic_batch:
            kwargs["dynamic_shapes"] = dynamic_shapes_for(example_input)
        traced = named_program(model, list(example_input))
        return traced, tuple(example_input.values()), kwargs
    if dynamic_batch:
        kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch")}}
    return model, (example_input,), kwargs


def export_onnx(
    net: Calibrated | DeployedModel,
    path: str | Path,
    example_input: torch.Tensor | Mapping[str, torch.Tensor],
    *,
    dynamic_batch: bool = True,
    opset_version: int | None = None,
) -> Path:
    """Write a calibrated model as ONNX: images in, ``(labels, ood_score, is_ood)`` out.

    Uses ``torch.onnx.export(..., dynamo=True)`` (needs the ``onnx`` and ``onnxscript``
    packages: ``pip install rejectnet[export]``) on :meth:`~rejectnet.RejectHead.deployable`,
    with the exporter's graph optimisation on, on a copy whose widened head is one
    ``Gemm`` (the class and reject weights side by side). For a model that takes named
    inputs (a dict ``example_input``, e.g. ``input_ids`` and ``attention_mask``), the
    ONNX inputs carry the model's input names, with dynamic batch and sequence axes
    (see :func:`dynamic_shapes_for`); a single-tensor model's input stays ``images``.
    The file is written atomically
    (a temporary file beside it, renamed): an export that fails or is killed midway
    leaves an earlier file at ``path`` intact. The outputs are named ``labels``,
    ``ood_score`` and ``is_ood``; the input is ``images``, with a dynamic batch
    dimension unless ``dynamic_batch=False``.

    Args:
        net: A calibrated :class:`~rejectnet.RejectHead` (its :meth:`deployable` is
            exported) or a :class:`DeployedModel`.
        path: Where to write the ``.onnx`` file.
        example_input: A batch of at least two inputs of the right shape and dtype, on
            the model's device, used to trace the model: a tensor, or a dict of named
            tensors.
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
    model = traceable_copy(net, example_input, dynamic_batch)
    _require_exporter()
    out = Path(path)
    traced, args, kwargs = _onnx_call(model, example_input, dynamic_batch)
    if opset_version is not None:
        kwargs["opset_version"] = opset_version

    def write(tmp: Path) -> None:
        # the exporter prints its progress to stdout; keep the caller's output clean
        with contextlib.redirect_stdout(io.StringIO()):
            torch.onnx.export(traced, args, str(tmp), **kwargs)

    # a temporary file renamed over `out`: an export that fails or is killed midway
    # leaves a previous file at `out` as it was
    return write_atomically(out, write)


def _require_exporter() -> None:
    """ImportError naming the extra to install when the ONNX exporter's packages are missing."""
    try:
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "export_onnx needs the onnx and onnxscript packages: pip install rejectnet[export]"
        ) from err
