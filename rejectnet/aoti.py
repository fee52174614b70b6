"""Ahead-of-time compiled deployment: the decision as native code with AOTInductor.

:func:`export_aoti` compiles :meth:`rejectnet.RejectHead.deployable` with PyTorch's
AOTInductor (``torch.export.export``, then ``torch._inductor.aoti_compile_and_package``)
into a ``.pt2`` package: a shared library that runs the whole network and the decision
(score, threshold test, arg-max, label mask) without the Python interpreter or eager
dispatch between ops. Inductor fuses the decision's small ops into one generated kernel,
so at batch size 1 the decision costs what the bare model costs when compiled the same
way (see the inference-latency table in the benchmarks).

A ``.pt2`` package holds compiled native code: loading one runs that code. Load only
packages you built yourself, as you would any shared library.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

import torch

from rejectnet.export import Calibrated, DeployedModel, _export_copy, _fuse_head

__all__ = ["export_aoti"]

_COMPILERS = ("c++", "g++", "clang++")


def _find_compiler() -> str | None:
    """The C++ compiler inductor would use: ``$CXX`` if set, else the first on PATH."""
    env = os.environ.get("CXX")
    if env:
        return shutil.which(env)
    for name in _COMPILERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def export_aoti(
    net: Calibrated | DeployedModel,
    path: str | Path,
    example_input: torch.Tensor,
    *,
    dynamic_batch: bool = True,
) -> Path:
    """Compile a calibrated model with AOTInductor: images in, ``(labels, ood_score, is_ood)`` out.

    Traces :meth:`~rejectnet.RejectHead.deployable` (on a copy whose widened head is one
    linear layer, the class and reject weights side by side, as in :func:`export_onnx`)
    with ``torch.export.export`` and compiles it ahead of time into a ``.pt2`` package.
    Load it in the serving process with ``torch._inductor.aoti_load_package(path)``; the
    loaded model takes the image batch and returns the three tensors. Decisions agree
    with :meth:`~rejectnet.RejectHead.predict` up to float rounding (scores within 1e-5;
    labels and ``is_ood`` equal except for scores that close to the threshold), and a row
    whose input holds NaN or infinity is rejected with a NaN score, as in the deployed
    module.

    Compiling needs a C++ compiler (``g++`` or ``clang++`` on ``PATH``, or ``$CXX``) and
    takes seconds to a minute; running the package needs only ``torch`` of the same
    version. The package is compiled for the device of ``example_input`` and the model.

    Warning:
        A ``.pt2`` package holds compiled native code, and loading it runs that code.
        Load only packages you built yourself; ship weights between parties with
        :func:`rejectnet.save` (safetensors), which holds data only.

    Args:
        net: A calibrated :class:`~rejectnet.RejectHead` (its :meth:`deployable` is
            compiled) or a :class:`~rejectnet.export.DeployedModel`.
        path: Where to write the package; must end in ``.pt2``.
        example_input: A batch of at least two inputs of the right shape and dtype, on
            the model's device, used to trace the model.
        dynamic_batch: Let the package accept any batch size (otherwise only the
            example's).

    Returns:
        The path written.

    Raises:
        RuntimeError: If the model is not calibrated, or no C++ compiler is found.
        TypeError: If ``net`` is neither a RejectHead nor a DeployedModel.
        ValueError: If ``path`` does not end in ``.pt2``, or ``example_input`` is not a
            tensor batch of at least two samples.

    Example:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> import rejectnet
        >>> net = rejectnet.RejectHead.wrap(nn.Linear(8, 3), k=2).eval()
        >>> _ = net.calibrate([torch.randn(64, 8)])
        >>> out = rejectnet.export_aoti(net, tempfile.mkdtemp() + "/m.pt2", torch.randn(4, 8))
        >>> compiled = torch._inductor.aoti_load_package(str(out))
        >>> labels, ood_score, is_ood = compiled(torch.randn(5, 8))
        >>> labels.shape, is_ood.dtype
        (torch.Size([5]), torch.bool)
    """
    out = Path(path)
    if out.suffix != ".pt2":
        raise ValueError(f"path must end in .pt2 (an AOTInductor package), got {str(path)!r}")
    model = _export_copy(net, example_input, dynamic_batch)
    if _find_compiler() is None:
        raise RuntimeError(
            "export_aoti needs a C++ compiler: install g++ or clang++, or set $CXX "
            "(export_onnx needs none)"
        )
    _fuse_head(model)
    shapes = {"x": {0: torch.export.Dim("batch")}} if dynamic_batch else None
    with torch.no_grad():
        program = torch.export.export(model, (example_input,), dynamic_shapes=shapes)
    out.parent.mkdir(parents=True, exist_ok=True)
    from torch._inductor import aoti_compile_and_package  # heavy: only when compiling

    # inductor prints compiler progress on some platforms; keep the caller's output clean
    with contextlib.redirect_stdout(io.StringIO()):
        written = aoti_compile_and_package(program, package_path=str(out))
    return Path(written)
