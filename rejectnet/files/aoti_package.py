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
packages you built yourself, as you would any shared library. The loader still defends
the process against a damaged or crafted archive: before anything is extracted it refuses
entries that would land outside the extraction folder (absolute paths, ``..``, links)
and archives whose extracted size exceeds a bound; after loading it runs the compiled
program once, with AOTInductor's own input checks switched on, on a batch of the
recorded input, and refuses a package whose metadata disagrees with the program. The
threshold is an input of the compiled program, passed from the metadata on every call,
so ``AOTIDeployedModel.threshold`` is the value the compiled decision uses.

The layout rule for compiled inputs: the compiled code reads a batch with the strides
of a contiguous tensor of its shape (every dimension, including those of size 1, which
``is_contiguous()`` ignores). A batch with any other strides (an NHWC tensor permuted to
NCHW, ``channels_last``, a slice, an expanded tensor) is given to it as a view with those
exact strides when its memory already has that layout, and as a contiguous copy otherwise.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from rejectnet import decision
from rejectnet._validation import check_int
from rejectnet._version import __version__
from rejectnet.deployed import Calibrated, DeployedModel, traceable_copy
from rejectnet.files.atomic_writes import write_atomically
from rejectnet.input_spec import InputSpec, check_input_against_spec

__all__ = ["MAX_PACKAGE_BYTES", "AOTIDeployedModel", "export_aoti", "load_aoti"]

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
            compiled) or a :class:`~rejectnet.deployed.DeployedModel`.
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
    out = _check_package_arguments(path, example_input)
    model = traceable_copy(net, example_input, dynamic_batch)
    if _find_compiler() is None:
        raise RuntimeError(
            "export_aoti needs a C++ compiler: install g++ or clang++, or set $CXX "
            "(export_onnx needs none)"
        )
    program, score_dtype = _program(model, example_input, dynamic_batch)
    meta = _package_meta(model, example_input, dynamic_batch, score_dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    return _compile(program, out, meta)


def _check_package_arguments(path: Any, example_input: Any) -> Path:
    """The path (``.pt2``) and example (one tensor) of :func:`export_aoti`; the path."""
    out = Path(path)
    if out.suffix != ".pt2":
        raise ValueError(f"path must end in .pt2 (an AOTInductor package), got {str(path)!r}")
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(
            "export_aoti takes one input tensor as example_input (models with named "
            f"inputs: use export_onnx), got {type(example_input).__name__}"
        )
    return out


def _package_meta(
    model: DeployedModel, example_input: torch.Tensor, dynamic_batch: bool, score_dtype: torch.dtype
) -> dict[str, Any]:
    """The metadata entry :func:`load_aoti` checks every batch and the program against."""
    return {
        "version": __version__,
        "input_spec": InputSpec.of(example_input).to_dict(),
        "batch": None if dynamic_batch else int(example_input.shape[0]),
        "device": str(example_input.device),
        "score": model.decision.score,
        "threshold": float(model.threshold),
        "threshold_dtype": str(score_dtype).removeprefix("torch."),
    }


def _program(
    model: DeployedModel, example_input: torch.Tensor, dynamic_batch: bool
) -> tuple[torch.export.ExportedProgram, torch.dtype]:
    """The exported :class:`_ThresholdInput` program of ``model``, and its score dtype."""
    with torch.no_grad():
        score_dtype = model(example_input)[1].dtype
    threshold = torch.tensor(
        decision.threshold_for(float(model.threshold), score_dtype),
        dtype=score_dtype,
        device=example_input.device,
    )
    shapes = {"x": {0: torch.export.Dim("batch")}, "threshold": None} if dynamic_batch else None
    with torch.no_grad():
        program = torch.export.export(
            _ThresholdInput(model), (example_input, threshold), dynamic_shapes=shapes
        )
    return program, score_dtype


def _compile(program: torch.export.ExportedProgram, out: Path, meta: dict[str, Any]) -> Path:
    """Compile ``program`` into the package ``out`` with rejectnet's metadata entry."""
    from torch._inductor import aoti_compile_and_package  # heavy: only when compiling

    configs: dict[str, Any] = {
        "aot_inductor.metadata": {_KEY: json.dumps(meta)},
        # the compiled input checks (switched on by load_aoti's probe) accept batch 1
        "aot_inductor.check_lowerbound": False,
    }

    def write(tmp: Path) -> None:  # inductor prints progress on some platforms: keep it quiet
        with contextlib.redirect_stdout(io.StringIO()), open(tmp, "wb") as f:
            aoti_compile_and_package(program, package_path=f, inductor_configs=configs)

    return write_atomically(out, write)  # a failed or killed export keeps the old package


class _ThresholdInput(torch.nn.Module):
    """The program export_aoti compiles: the deployed decision with the threshold as an input.

    The threshold is passed on every call by :class:`AOTIDeployedModel` from the
    package's metadata, so the value it reports is the value the compiled code compares
    with (a constant baked into the code could silently disagree with the metadata).
    """

    def __init__(self, deployed: DeployedModel) -> None:
        super().__init__()
        self.deployed = deployed

    def forward(
        self, x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(labels, ood_score, is_ood)`` of ``x``, deciding against ``threshold``."""
        return self.deployed.decide_against(x, threshold)


class AOTIDeployedModel:
    """A package written by :func:`export_aoti`, loaded: a checked call into compiled code.

    Create one with :func:`load_aoti`. Calling it with a batch returns ``(labels,
    ood_score, is_ood)``, as :class:`~rejectnet.deployed.DeployedModel` does. Before the
    compiled code runs, the batch is checked against what the package was compiled for
    (the compiled code does not check: it reads the memory a tensor of the compiled shape
    would occupy), and a batch whose strides are not those of a contiguous tensor is
    given to the compiled code in that layout (a view when its memory already is, a
    copy otherwise; the caller's tensor is never changed).

    Attributes:
        input_spec: The shape of one sample and the dtype the package takes.
        batch_size: The only batch size accepted (``export_aoti(dynamic_batch=False)``),
            or ``None`` for any.
        device: The device the package runs on.
        score: Name of the OOD score.
        threshold: The decision threshold: the value the compiled decision compares
            with (an input of the compiled program, passed on every call).
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
        self._strides = _contiguous_strides(self._sample_shape)
        self._on_cpu = self.device.type == "cpu"
        dtype = meta["threshold_dtype"]
        # the compiled decision compares with this input (see _ThresholdInput)
        self._threshold = torch.tensor(
            decision.threshold_for(self.threshold, dtype), dtype=dtype, device=self.device
        )

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Classify a batch and reject what scores above the threshold.

        Args:
            x: A batch of the recorded shape and dtype, on the package's device, in any
                memory layout.

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
        if x.stride() != self._strides:
            x = self._compiled_layout(x)
        labels, score, is_ood = self._run([x, self._threshold])
        return labels, score, is_ood

    def _compiled_layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with exactly the strides the compiled code reads (never ``x`` changed).

        ``is_contiguous()`` ignores the strides of size-1 dimensions (an NHWC batch of
        one channel permuted to NCHW, ``channels_last`` with C = 1): such a tensor's
        memory already has the compiled layout and gets a view with the exact strides;
        any other layout gets a contiguous copy.
        """
        if x.is_contiguous():
            return x.as_strided(x.shape, self._strides, x.storage_offset())
        return torch.empty(x.shape, dtype=x.dtype, device=x.device).copy_(x)

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


MAX_PACKAGE_BYTES = 4 << 30
"""The default bound on what :func:`load_aoti` extracts from one package (4 GiB)."""

_MAX_ENTRIES = 10_000
_MAX_RATIO = 200
"""An entry more than this many times smaller compressed than extracted is refused."""


def load_aoti(path: str | Path, *, max_bytes: int = MAX_PACKAGE_BYTES) -> AOTIDeployedModel:
    """Load a package written by :func:`export_aoti`.

    Before anything is extracted, the archive's table of contents is checked: an entry
    that would be written outside the extraction folder (an absolute path, a ``..``
    component, a drive, a link) is refused, and so is an archive that would extract to
    more than ``max_bytes`` in all or in one entry, more than 10,000 entries, or an entry
    compressed more than 200-fold (a zip bomb). After loading, the compiled program runs
    once (on a load of its own, discarded) on a batch of zeros of the recorded input with
    AOTInductor's own input checks switched on, so that metadata describing another
    input than the one the code was compiled for is refused rather than read out of
    bounds.

    Warning:
        Loading runs the package's compiled native code. Load only packages you built
        yourself.

    Args:
        path: The ``.pt2`` file.
        max_bytes: The most bytes the package may extract to (in all, and per entry).

    Returns:
        The loaded package, a callable :class:`AOTIDeployedModel`.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        TypeError: If ``max_bytes`` is not an int.
        ValueError: If ``path`` is not a ``.pt2`` file, the package was not written by
            :func:`export_aoti` (no rejectnet metadata), holds an entry outside its
            folder or more than ``max_bytes``, or its metadata does not match its
            compiled program.
        RuntimeError: If the package was compiled for CPU instructions this machine lacks.

    Example:
        >>> import tempfile, zipfile
        >>> import rejectnet
        >>> path = tempfile.mkdtemp() + "/crafted.pt2"
        >>> with zipfile.ZipFile(path, "w") as archive:
        ...     archive.writestr("m/../../escaped", "x")
        >>> rejectnet.load_aoti(path)
        Traceback (most recent call last):
        ...
        ValueError: '...crafted.pt2' holds an entry that would be extracted outside ...
    """
    check_int(max_bytes, "max_bytes")
    p = Path(path)
    if p.suffix != ".pt2":
        raise ValueError(f"path must be a .pt2 package written by export_aoti, got {str(path)!r}")
    if not p.is_file():
        raise FileNotFoundError(f"no package at {str(p)!r}")
    meta = _rejectnet_metadata(p, max_bytes)  # from the archive, before any code is loaded
    from torch._inductor import aoti_load_package  # heavy: only when loading

    with _compiled_input_checks():  # on a load of its own: the checks would stay on
        _probe(AOTIDeployedModel(aoti_load_package(str(p)), meta), p)
    return AOTIDeployedModel(aoti_load_package(str(p)), meta)


def _rejectnet_metadata(p: Path, max_bytes: int) -> dict[str, Any]:
    """The metadata export_aoti wrote, checked, after the archive's entries and CPU ISA."""
    found = _package_metadata(p, max_bytes)
    if _KEY not in found:
        raise ValueError(
            f"{str(p)!r} was not written by rejectnet.export_aoti (no rejectnet metadata); "
            "load other packages with torch._inductor.aoti_load_package"
        )
    _check_cpu_isa(str(found.get("AOTI_CPU_ISA", "")), p)
    return _parse_meta(found[_KEY], p)


@contextlib.contextmanager
def _compiled_input_checks() -> Iterator[None]:
    """Switch on AOTInductor's generated input checks for the packages first run inside.

    The generated code reads ``AOTI_RUNTIME_CHECK_INPUTS`` once, at its first run, and
    keeps the answer for that load. The probe runs on a load of its own, discarded: the
    generated checks also bound the batch dimension by a size inductor infers (15 for a
    small CNN compiled with a batch of 4), which refuses larger batches the code runs
    correctly.
    """
    key = "AOTI_RUNTIME_CHECK_INPUTS"
    before = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ[key]
        else:
            os.environ[key] = before


def _probe(model: AOTIDeployedModel, path: Path) -> None:
    """Run the compiled program once on zeros of the recorded input (ValueError if refused)."""
    spec = model.input_spec
    n = model.batch_size or 2
    x = torch.zeros((n, *model._sample_shape), dtype=spec.dtype, device=model.device)
    try:
        out = model._run([x, model._threshold])
    except RuntimeError as err:
        raise ValueError(
            f"{str(path)!r}: its metadata (input {spec.describe()}, threshold as "
            f"{model._threshold.dtype}) does not match its compiled program: "
            f"{str(err).strip()}"
        ) from None
    if (
        not isinstance(out, (list, tuple))
        or len(out) != 3
        or any(not isinstance(t, torch.Tensor) or t.shape != (n,) for t in out)
    ):
        raise ValueError(
            f"{str(path)!r}: its compiled program does not return (labels, ood_score, is_ood)"
        )


def _parse_meta(text: Any, path: Path) -> dict[str, Any]:
    """export_aoti's metadata entry, validated (a ValueError naming the file otherwise)."""
    try:
        meta = json.loads(text)
        if not isinstance(meta, dict):
            raise TypeError("not an object")
        if "threshold_dtype" not in meta:
            raise ValueError(
                f"written by rejectnet {meta.get('version')!s} with the threshold compiled "
                "in; compile it again with export_aoti"
            )
        dtype = {"float32": torch.float32, "float64": torch.float64}[meta["threshold_dtype"]]
        batch = meta["batch"]
        return {
            "input_spec": InputSpec.from_dict(meta["input_spec"]),
            "batch": None if batch is None else int(batch),
            "device": torch.device(str(meta["device"])),
            "score": str(meta["score"]),
            "threshold": float(meta["threshold"]),
            "threshold_dtype": dtype,
            "version": str(meta["version"]),
        }
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        raise ValueError(f"{str(path)!r} has malformed rejectnet metadata: {err}") from None


_MAX_METADATA_BYTES = 1 << 20


def _package_metadata(path: Path, max_bytes: int) -> dict[str, Any]:
    """The metadata AOTInductor stores beside the compiled model, read as JSON only.

    The archive's entries are checked first (:func:`_check_entries`).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_entries(infos, path, max_bytes)
            names = [
                i.filename
                for i in infos
                if "/data/aotinductor/" in i.filename
                and i.filename.endswith(".wrapper_metadata.json")
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


def _check_entries(infos: list[zipfile.ZipInfo], path: Path, max_bytes: int) -> None:
    """Refuse entries that would extract outside the folder or past the size bounds."""
    if len(infos) > _MAX_ENTRIES:
        raise ValueError(f"{str(path)!r} holds {len(infos)} entries (at most {_MAX_ENTRIES})")
    total = 0
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if (
            name.startswith(("/", "\\"))
            or "\\" in name
            or "\0" in name
            or ".." in parts
            or ":" in parts[0]
            or stat.S_ISLNK(info.external_attr >> 16)
        ):
            raise ValueError(
                f"{str(path)!r} holds an entry that would be extracted outside its folder: "
                f"{name!r}; refusing to extract it"
            )
        if info.file_size > max_bytes:
            raise ValueError(
                f"{str(path)!r}: entry {name!r} extracts to {info.file_size} bytes, more than "
                f"max_bytes={max_bytes}"
            )
        if info.file_size > (1 << 20) and info.file_size > _MAX_RATIO * max(info.compress_size, 1):
            raise ValueError(
                f"{str(path)!r}: entry {name!r} is compressed {info.file_size} -> "
                f"{info.compress_size} bytes (more than {_MAX_RATIO}-fold, a zip bomb?)"
            )
        total += info.file_size
        if total > max_bytes:
            raise ValueError(
                f"{str(path)!r} extracts to more than max_bytes={max_bytes} bytes in all"
            )


def _contiguous_strides(sample_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The strides of a contiguous ``(N, *sample_shape)`` tensor (the same for every N)."""
    strides = [1]
    for d in reversed(sample_shape):
        strides.append(strides[-1] * max(int(d), 1))
    return tuple(reversed(strides))


def _check_cpu_isa(package_isa: str, path: Path) -> None:
    """Refuse a package built with AVX-512 on a CPU without it (it would crash, not raise)."""
    if "AVX512" in package_isa.split() and torch.backends.cpu.get_cpu_capability() != "AVX512":
        raise RuntimeError(
            f"{str(path)!r} was compiled for AVX-512 CPUs and this CPU runs "
            f"{torch.backends.cpu.get_cpu_capability()}: compile it again on this machine "
            "with export_aoti"
        )
