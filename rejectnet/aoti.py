"""Ahead-of-time compiled deployment: the decision as native code with AOTInductor.

:func:`export_aoti` compiles :meth:`rejectnet.RejectHead.deployable` with PyTorch's
AOTInductor (``torch.export.export``, then ``torch._inductor.aoti_compile_and_package``)
into a ``.pt2`` package: a shared library that runs the whole network and the decision
(score, threshold test, arg-max, label mask) without the Python interpreter or eager
dispatch between ops. Inductor fuses the decision's small ops into one generated kernel,
so at batch size 1 the decision adds a few percent to what the bare model costs when
compiled the same way (see the inference-latency table in the benchmarks).

:func:`load_aoti` loads such a package as an :class:`AOTIDeployedModel`, which checks
every batch against the input the package was compiled for (the compiled code itself
checks nothing: a batch of the wrong image size would be read out of bounds) and runs it.

A ``.pt2`` package holds compiled native code: loading one runs that code. Load only
packages you built yourself, as you would any shared library.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from rejectnet._version import __version__
from rejectnet.export import Calibrated, DeployedModel, _export_copy, _fuse_head
from rejectnet.input_spec import InputSpec, check_input_against_spec

__all__ = ["AOTIDeployedModel", "export_aoti", "load_aoti"]

_KEY = "rejectnet"
"""The package metadata entry export_aoti writes (a JSON object)."""

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
    Load it in the serving process with :func:`load_aoti`, which checks each batch
    against the shape, dtype and device recorded here before the compiled code reads it,
    and returns the three tensors. Decisions agree
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
        >>> compiled = rejectnet.load_aoti(out)
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

    meta = {
        "version": __version__,
        "input_spec": InputSpec.of(example_input).to_dict(),
        "batch": None if dynamic_batch else int(example_input.shape[0]),
        "device": str(example_input.device),
        "score": model.score,
        "threshold": float(model.threshold),
    }
    configs: dict[str, Any] = {"aot_inductor.metadata": {_KEY: json.dumps(meta)}}
    # inductor prints compiler progress on some platforms; keep the caller's output clean
    with contextlib.redirect_stdout(io.StringIO()):
        written = aoti_compile_and_package(program, package_path=str(out), inductor_configs=configs)
    return Path(written)


class AOTIDeployedModel:
    """A package written by :func:`export_aoti`, loaded: a checked call into compiled code.

    Create one with :func:`load_aoti`. Calling it with a batch returns ``(labels,
    ood_score, is_ood)``, as :class:`~rejectnet.export.DeployedModel` does. Before the
    compiled code runs, the batch is checked against what the package was compiled for
    (the compiled code does not check: it reads the memory a tensor of the compiled shape
    would occupy), and a non-contiguous batch is copied to a contiguous one (the
    caller's tensor is never changed).

    Attributes:
        input_spec: The shape of one sample and the dtype the package takes.
        batch_size: The only batch size accepted (``export_aoti(dynamic_batch=False)``),
            or ``None`` for any.
        device: The device the package runs on.
        score: Name of the OOD score.
        threshold: The decision threshold.
        rejectnet_version: The rejectnet version that wrote the package.
    """

    def __init__(self, loaded: Any, meta: dict[str, Any]) -> None:
        self._run = loaded.loader.boxed_run  # skips the pytree round trip per call
        self.input_spec: InputSpec = meta["input_spec"]
        self.batch_size: int | None = meta["batch"]
        self.device: torch.device = meta["device"]
        self.score: str = meta["score"]
        self.threshold: float = meta["threshold"]
        self.rejectnet_version: str = meta["version"]
        self._sample_shape = tuple(self.input_spec.shape)  # (export_aoti records no None)
        self._on_cpu = self.device.type == "cpu"

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Classify a batch and reject what scores above the threshold.

        Args:
            x: A batch of the recorded shape and dtype, on the package's device.

        Returns:
            ``labels`` (``(N,)`` int64, ``-1`` for rejected inputs), ``ood_score``
            (``(N,)``; NaN for non-finite inputs) and ``is_ood`` (``(N,)`` bool).

        Raises:
            TypeError: If ``x`` is not a tensor or has another dtype.
            ValueError: If ``x`` has another shape, batch size or device.
        """
        # the common case in a few attribute reads; anything else gets the full checks
        if not (
            type(x) is torch.Tensor
            and x.dtype is self.input_spec.dtype
            and x.shape[1:] == self._sample_shape
            and (self.batch_size is None or x.shape[0] == self.batch_size)
            and (x.is_cpu if self._on_cpu else x.device == self.device)
        ):
            self._check(x)
        labels, score, is_ood = self._run([x if x.is_contiguous() else x.contiguous()])
        return labels, score, is_ood

    def _check(self, x: torch.Tensor) -> None:
        """Raise the error that names what is wrong with ``x`` (nothing, for a fine one)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"x must be a torch.Tensor of shape {self.input_spec.describe()}, "
                f"got {type(x).__name__}"
            )
        if not self.input_spec.matches(x):
            check_input_against_spec(x, self.input_spec)
        if self.batch_size is not None and x.shape[0] != self.batch_size:
            raise ValueError(
                f"x must hold exactly {self.batch_size} samples (the package was compiled "
                f"with dynamic_batch=False), got {x.shape[0]}"
            )
        if x.device != self.device:
            raise ValueError(
                f"x is on {x.device}, but the package runs on {self.device}: "
                f"move it with x.to({str(self.device)!r})"
            )

    def __repr__(self) -> str:
        batch = "N" if self.batch_size is None else str(self.batch_size)
        spec = self.input_spec.describe().replace("(N", f"({batch}", 1)
        return (
            f"AOTIDeployedModel(input={spec}, device={self.device}, score={self.score!r}, "
            f"threshold={self.threshold:.6g})"
        )


def load_aoti(path: str | Path) -> AOTIDeployedModel:
    """Load a package written by :func:`export_aoti`.

    Warning:
        Loading runs the package's compiled native code. Load only packages you built
        yourself.

    Args:
        path: The ``.pt2`` file.

    Returns:
        The loaded package, a callable :class:`AOTIDeployedModel`.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If ``path`` is not a ``.pt2`` file, or the package was not written by
            :func:`export_aoti` (no rejectnet metadata).
        RuntimeError: If the package was compiled for CPU instructions this machine lacks.
    """
    p = Path(path)
    if p.suffix != ".pt2":
        raise ValueError(f"path must be a .pt2 package written by export_aoti, got {str(path)!r}")
    if not p.is_file():
        raise FileNotFoundError(f"no package at {str(p)!r}")
    found = _package_metadata(p)  # read from the archive, before any code is loaded
    if _KEY not in found:
        raise ValueError(
            f"{str(p)!r} was not written by rejectnet.export_aoti (no rejectnet metadata); "
            "load other packages with torch._inductor.aoti_load_package"
        )
    _check_cpu_isa(str(found.get("AOTI_CPU_ISA", "")), p)
    meta = _parse_meta(found[_KEY], p)
    from torch._inductor import aoti_load_package  # heavy: only when loading

    return AOTIDeployedModel(aoti_load_package(str(p)), meta)


def _parse_meta(text: Any, path: Path) -> dict[str, Any]:
    """export_aoti's metadata entry, validated (a ValueError naming the file otherwise)."""
    try:
        meta = json.loads(text)
        if not isinstance(meta, dict):
            raise TypeError("not an object")
        batch = meta["batch"]
        return {
            "input_spec": InputSpec.from_dict(meta["input_spec"]),
            "batch": None if batch is None else int(batch),
            "device": torch.device(str(meta["device"])),
            "score": str(meta["score"]),
            "threshold": float(meta["threshold"]),
            "version": str(meta["version"]),
        }
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        raise ValueError(f"{str(path)!r} has malformed rejectnet metadata: {err}") from None


_MAX_METADATA_BYTES = 1 << 20


def _package_metadata(path: Path) -> dict[str, Any]:
    """The metadata AOTInductor stores beside the compiled model, read as JSON only."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [
                n
                for n in archive.namelist()
                if "/data/aotinductor/" in n and n.endswith(".wrapper_metadata.json")
            ]
            if not names:
                raise ValueError(f"{str(path)!r} is not an AOTInductor package (no model inside)")
            info = archive.getinfo(names[0])
            if info.file_size > _MAX_METADATA_BYTES:
                raise ValueError(f"{str(path)!r} has an oversized metadata entry")
            data = json.loads(archive.read(info))
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not a readable .pt2 package: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} has malformed metadata")
    return data


def _check_cpu_isa(package_isa: str, path: Path) -> None:
    """Refuse a package built with AVX-512 on a CPU without it (it would crash, not raise)."""
    if "AVX512" in package_isa.split() and torch.backends.cpu.get_cpu_capability() != "AVX512":
        raise RuntimeError(
            f"{str(path)!r} was compiled for AVX-512 CPUs and this CPU runs "
            f"{torch.backends.cpu.get_cpu_capability()}: compile it again on this machine "
            "with export_aoti"
        )
