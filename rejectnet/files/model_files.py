"""Saving and loading wrapped models as safetensors files (never pickle).

A file holds every tensor of ``net.state_dict()`` (weights, the threshold, the score
weights) plus one JSON metadata entry, ``"rejectnet"``, with the number of classes C,
the number of reject classes k, the head path, the threshold, the score name, the
rejectnet version that wrote it, the input spec (``net.input_spec``) and ``sha256``, a
hash of the tensor data. Loading parses only the safetensors header and raw tensor
bytes; nothing in a file is ever executed.

What :func:`load` checks, in this order, and what it costs:

1. The path is a regular file (a symlink to ``/dev/zero``, a FIFO or a folder is refused
   without being read, and nothing blocks); see :mod:`rejectnet.files.bounded_reads`.
2. Only the header is read (at most 100 MB): a JSON object whose tensors tile the rest
   of the file exactly, with known dtypes, and whose metadata has every field with a
   valid value. Numbers too large for a field (a threshold of ``10**400``, a
   5,000-digit integer) are refused like any other invalid value.
3. The metadata's C and k, and every declared tensor name and shape, are compared with
   the model given *before anything is allocated*: a 1 KB file claiming
   ``k = 20000000`` is refused in milliseconds, naming the field ``k`` and the tensor
   that disagrees. The data read next is therefore never larger than the model itself.
4. The tensor data is read (one buffer), the buffers that steer decisions (threshold,
   score, score weights, temperature) are checked against the metadata, and the data's
   ``sha256`` is compared with the metadata (a flipped bit is refused; files written
   before the hash existed load without this check).
5. Only then is the model wrapped and the weights copied in.

Every refusal of a file's contents raises :class:`ModelFileError` (a ``ValueError``)
whose message names the file and whose ``field`` attribute names the field or tensor.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from rejectnet._locate import find_head, replace_module
from rejectnet._version import __version__
from rejectnet.files.atomic_writes import write_atomically
from rejectnet.files.bounded_reads import BoundedFile, UnsafeFileError, open_regular
from rejectnet.files.tensor_layout import (
    Header,
    HeaderError,
    content_digest,
    loads_json,
    read_header,
    read_tensors,
)
from rejectnet.head import RejectHead
from rejectnet.input_spec import spec_from_dict
from rejectnet.scores import registry

__all__ = ["FORMAT_VERSION", "MAX_MODEL_BYTES", "ModelFileError", "load", "read_metadata", "save"]

FORMAT_VERSION = 1
"""The file format :func:`save` writes; :func:`load` refuses files from a newer format."""

MAX_MODEL_BYTES = 2**40
"""The largest model file opened at all (1 TiB). :func:`load` reads no more tensor data
than the model given holds, whatever this limit."""

_META_KEY = "rejectnet"
_HEAD_BUFFERS = ("threshold", "threshold_score", "score_weights")
_OPTIONAL_BUFFERS = {"temperature": 1.0}
"""Buffers of newer RejectHeads that older files lack, with the value they then take."""


class ModelFileError(ValueError):
    """A model file cannot be loaded: what is wrong with it, naming the file and field.

    Raised for a file that is not a rejectnet safetensors file, is truncated, fails its
    ``sha256``, has invalid metadata, metadata that disagrees with its tensors, or
    tensors that do not fit the model given. A ``ValueError``.

    Attributes:
        path: The file.
        field: The metadata field or tensor concerned (``"k"``, ``"threshold"``,
            ``"sha256"``, ``"model.fc.weight"``, ...), or ``None`` when the whole file
            is concerned.

    Example:
        >>> import tempfile, os
        >>> from torch import nn
        >>> import rejectnet
        >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
        >>> _ = open(path, "wb").write(b"not a model")
        >>> try:
        ...     rejectnet.load(path, nn.Linear(4, 3))
        ... except ModelFileError as err:
        ...     print(err.field, "not a safetensors file" in str(err))
        None True
    """

    def __init__(self, message: str, path: Path, field: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.field = field


def _as_path(path: Any, name: str = "path") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def save(net: RejectHead, path: str | os.PathLike[str]) -> Path:
    """Write a wrapped model to a ``.safetensors`` file, atomically.

    The file is first written to a temporary file in the same folder and then renamed,
    so an interrupted save never leaves a half-written file at ``path``. The metadata
    records C, k, the head path, the threshold and its score, ``net.input_spec`` (or
    ``None``) and ``sha256``, a hash of every tensor's name and bytes that :func:`load`
    verifies.

    Args:
        net: The wrapped model.
        path: Destination file (its folder must exist).

    Returns:
        The path written.

    Raises:
        TypeError: If ``net`` is not a :class:`~rejectnet.RejectHead`.
        FileNotFoundError: If the destination folder does not exist.
        IsADirectoryError: If ``path`` is a folder.

    Example:
        >>> import tempfile, os, torch
        >>> from torch import nn
        >>> import rejectnet
        >>> net = rejectnet.RejectHead.wrap(nn.Linear(4, 3), k=2)
        >>> net.set_threshold(0.5)
        >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
        >>> _ = rejectnet.save(net, path)
        >>> net2 = rejectnet.load(path, nn.Linear(4, 3))
        >>> net2.threshold.item(), net2.calibrated_score
        (0.5, 'sum_reject')
    """
    if not isinstance(net, RejectHead):
        raise TypeError(
            f"net must be a RejectHead (from RejectHead.wrap), got {type(net).__name__}; "
            "wrap the model first"
        )
    dest = _as_path(path)
    if not dest.parent.exists():
        raise FileNotFoundError(f"path's folder {str(dest.parent)!r} does not exist")
    if dest.is_dir():
        raise IsADirectoryError(
            f"path {str(dest)!r} is a folder; give a file name such as 'model.safetensors'"
        )
    tensors = {
        name: t.detach().to("cpu").contiguous().clone() for name, t in net.state_dict().items()
    }
    meta = json.dumps(_metadata_of(net, content_digest(tensors)))
    return write_atomically(
        dest, lambda tmp: save_file(tensors, str(tmp), metadata={_META_KEY: meta})
    )


def _metadata_of(net: RejectHead, sha256: str) -> dict[str, Any]:
    """The ``"rejectnet"`` metadata entry :func:`save` writes for ``net``."""
    spec = net.input_spec
    return {
        "format": FORMAT_VERSION,
        "version": __version__,
        "num_classes": net.num_classes,
        "k": net.k,
        "head": net.head_path,
        "threshold": float(net.threshold) if net.is_calibrated else None,
        "score": net.calibrated_score,
        "input_spec": spec.to_dict() if spec is not None else None,
        "sha256": sha256,
    }


def _is_int(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


_FIELDS: dict[str, Any] = {
    "format": lambda v: _is_int(v, 1),
    "num_classes": lambda v: _is_int(v, 1),
    "k": lambda v: _is_int(v, 1),
    "head": lambda v: isinstance(v, str) and len(v) < 1000,
    "version": lambda v: isinstance(v, str) and len(v) < 100,
    "threshold": lambda v: (
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
    ),
    "score": lambda v: v is None or (isinstance(v, str) and len(v) <= 32),
}
_OPTIONAL_FIELDS: dict[str, Any] = {  # absent in files of older rejectnet versions
    "input_spec": lambda v: v is None or isinstance(v, dict),  # checked by InputSpec below
    "sha256": lambda v: (
        v is None
        or (isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v))
    ),
}


def _validate_metadata(meta: Any, path: Path) -> dict[str, Any]:
    where = f"metadata of {str(path)!r}"
    if not isinstance(meta, dict):
        raise ModelFileError(f"{where} is not a JSON object", path)
    for key, ok in _FIELDS.items():
        if key not in meta:
            raise ModelFileError(
                f"{where} lacks the field {key!r}; was it written by rejectnet.save?", path, key
            )
        if not ok(meta[key]):
            raise ModelFileError(f"{where} has an invalid {key!r}: {meta[key]!r:.200}", path, key)
    for key, ok in _OPTIONAL_FIELDS.items():
        if not ok(meta.setdefault(key, None)):
            raise ModelFileError(f"{where} has an invalid {key!r}: {meta[key]!r:.200}", path, key)
    if meta["format"] > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(path)!r} uses file format {meta['format']}, newer than this rejectnet "
            f"({__version__}, format {FORMAT_VERSION}); upgrade rejectnet to load it",
            path,
            "format",
        )
    if meta["input_spec"] is not None:
        try:
            meta["input_spec"] = spec_from_dict(meta["input_spec"])
        except (TypeError, ValueError) as err:
            raise ModelFileError(
                f"{where} has an invalid 'input_spec': {err}", path, "input_spec"
            ) from None
    if meta["score"] is not None:
        try:
            registry.spec(meta["score"])  # unknown score names fail here, with the list
        except (KeyError, ValueError) as err:
            raise ModelFileError(f"{where} has an invalid 'score': {err}", path, "score") from None
    return meta


def _open(src: Path) -> BoundedFile:
    try:
        return open_regular(src, max_bytes=MAX_MODEL_BYTES, what="path")
    except FileNotFoundError:
        raise FileNotFoundError(f"path {str(src)!r} does not exist or is not a file") from None
    except UnsafeFileError as err:
        raise ModelFileError(str(err), src) from None


def _header(f: BoundedFile, src: Path) -> tuple[Header, dict[str, Any]]:
    """The checked header and the validated metadata of an open file."""
    try:
        header = read_header(f)
    except (HeaderError, UnsafeFileError) as err:
        raise ModelFileError(
            f"path {str(src)!r} is not a safetensors file written by rejectnet.save "
            f"({err}); rejectnet never unpickles files, so .pt/.pth/.bin pickles are refused",
            src,
        ) from None
    if _META_KEY not in header.metadata:
        raise ModelFileError(
            f"path {str(src)!r} is a safetensors file without rejectnet metadata; "
            "write it with rejectnet.save(net, path)",
            src,
        )
    try:
        meta = loads_json(header.metadata[_META_KEY])
    except HeaderError as err:
        raise ModelFileError(f"metadata of {str(src)!r} is {err}", src) from None
    return header, _validate_metadata(meta, src)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate the metadata of a file written by :func:`save`.

    Only the safetensors header is read (never more than 100 MB); no tensor is loaded
    and nothing is executed.

    Args:
        path: A ``.safetensors`` file written by :func:`save`.

    Returns:
        A dict with ``format``, ``version``, ``num_classes``, ``k``, ``head``,
        ``threshold`` (``None`` if uncalibrated), ``score``, ``input_spec`` (an
        :class:`~rejectnet.input_spec.InputSpec`, ``None`` if not recorded) and ``sha256``
        (``None`` in files written before it existed).

    Raises:
        FileNotFoundError: If the file does not exist.
        ModelFileError: If the path is not a regular file, the file is not a safetensors
            file (a pickle, for instance, is refused without being opened as one), or its
            metadata is missing or invalid; ``field`` names the field.

    Example:
        >>> import tempfile, os
        >>> from torch import nn
        >>> import rejectnet
        >>> net = rejectnet.RejectHead.wrap(nn.Sequential(nn.Linear(4, 3)), k=2)
        >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
        >>> _ = rejectnet.save(net, path)
        >>> meta = rejectnet.read_metadata(path)
        >>> meta["num_classes"], meta["k"], meta["head"], meta["threshold"], meta["score"]
        (3, 2, '0', None, None)
    """
    src = _as_path(path)
    with _open(src) as f:
        return _header(f, src)[1]


def _valid_devices() -> list[str]:
    out = ["cpu"]
    if torch.cuda.is_available():
        out += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def _check_map_location(map_location: Any) -> torch.device:
    if not isinstance(map_location, (str, torch.device)):
        raise TypeError(
            "map_location must be a device name such as 'cpu' or 'cuda:0', or a "
            f"torch.device, got {type(map_location).__name__}"
        )
    valid = _valid_devices()
    try:
        device = torch.device(map_location)
    except RuntimeError:
        raise ValueError(
            f"map_location={map_location!r} is not a device; valid here: "
            f"{', '.join(repr(d) for d in valid)}"
        ) from None
    if str(device) not in valid:
        raise ValueError(
            f"map_location={str(map_location)!r} is not a device the weights can be loaded on "
            f"(valid here: {', '.join(repr(d) for d in valid)})"
        )
    return device


def _expected_shapes(
    model: nn.Module, head: str, layer: nn.Linear, k: int
) -> dict[str, tuple[int, ...]]:
    """The ``state_dict`` shapes of ``RejectHead.wrap(model, k)``, computed without wrapping.

    The head layer's entries move under ``base``, the reject layer (k rows, with a bias)
    sits beside it, and the RejectHead's own buffers come first. Optional buffers (see
    ``_OPTIONAL_BUFFERS``) are not included.
    """
    out: dict[str, tuple[int, ...]] = {
        "threshold": (),
        "threshold_score": (registry.MAX_NAME_BYTES,),
        "score_weights": (k,),
    }
    prefix = f"{head}." if head else ""
    for key, t in model.state_dict().items():
        if key.startswith(prefix):
            out[f"model.{prefix}base.{key[len(prefix) :]}"] = tuple(t.shape)
        else:
            out[f"model.{key}"] = tuple(t.shape)
    out[f"model.{prefix}reject.weight"] = (k, layer.in_features)
    out[f"model.{prefix}reject.bias"] = (k,)
    return out


def _check_fits(
    header: Header,
    meta: dict[str, Any],
    expected: dict[str, tuple[int, ...]],
    reject_prefix: str,
    path: Path,
) -> None:
    """The header's tensors against the metadata (k, C) and the model, before any read."""
    declared = {name: info.shape for name, info in header.tensors.items()}
    k, c = meta["k"], meta["num_classes"]
    for name in ("score_weights", f"{reject_prefix}reject.weight", f"{reject_prefix}reject.bias"):
        shape = declared.get(name)
        if shape is None:
            raise ModelFileError(
                f"{str(path)!r} lacks the tensor {name!r} that k={k} reject classes need; the "
                "file was altered after rejectnet.save, or is not a rejectnet model file",
                path,
                name,
            )
        if not shape or shape[0] != k:
            raise ModelFileError(
                f"{str(path)!r} has metadata k={k} but its tensor {name!r} has shape "
                f"{shape}" + (f", i.e. k={shape[0]}" if shape else "") + "; the file was "
                "altered after rejectnet.save",
                path,
                "k",
            )
    base = declared.get(f"{reject_prefix}base.weight")
    if base is not None and (len(base) != 2 or base[0] != c):
        raise ModelFileError(
            f"{str(path)!r} has metadata num_classes={c} but its tensor "
            f"{reject_prefix + 'base.weight'!r} has shape {base}; the file was altered after "
            "rejectnet.save",
            path,
            "num_classes",
        )
    _check_shapes(declared, expected, path)


def _check_shapes(
    declared: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], path: Path
) -> None:
    """Every declared tensor's name and shape against the model's (optional ones aside)."""
    optional = {n: () for n in _OPTIONAL_BUFFERS}
    missing = sorted(n for n in expected if n not in declared and n not in optional)
    unexpected = sorted(n for n in declared if n not in expected and n not in optional)
    wrong = sorted(
        n for n in declared if declared[n] != expected.get(n, optional.get(n, declared[n]))
    )
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"missing {missing[:5]}")
    if unexpected:
        parts.append(f"unexpected {unexpected[:5]}")
    if wrong:
        parts.append(
            "shape mismatch "
            + ", ".join(
                f"{n}: file {declared[n]} vs model {expected.get(n, optional.get(n))}"
                for n in wrong[:5]
            )
        )
    first = (missing or unexpected or wrong)[0]
    raise ModelFileError(
        f"the tensors in {str(path)!r} do not fit the given model ({'; '.join(parts)}); "
        "pass the same architecture that was saved",
        path,
        first,
    )


def _check_state(state: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> None:
    """The buffers that steer decisions must agree with the validated metadata."""
    where = f"{str(path)!r}"
    thr = state.get("threshold")
    if thr is not None:
        if thr.ndim != 0 or not thr.is_floating_point():
            raise ModelFileError(
                f"{where} holds an invalid 'threshold' tensor (shape {tuple(thr.shape)}, dtype "
                f"{thr.dtype}); it must be a floating-point scalar",
                path,
                "threshold",
            )
        value = float(thr)
        expected = meta["threshold"]
        same = math.isnan(value) if expected is None else value == float(expected)
        if not same:
            raise ModelFileError(
                f"{where} holds a 'threshold' tensor ({value!r}) that disagrees with its "
                f"metadata (threshold={expected!r}); the file was altered after rejectnet.save",
                path,
                "threshold",
            )
    name_buf = state.get("threshold_score")
    if name_buf is not None:
        ok = name_buf.dtype == torch.uint8 and tuple(name_buf.shape) == (registry.MAX_NAME_BYTES,)
        name = bytes(name_buf.tolist()).rstrip(b"\0") if ok else b""
        ok = ok and b"\0" not in name and all(33 <= b <= 126 for b in name)
        if not ok or (name.decode("ascii") or None) != meta["score"]:
            raise ModelFileError(
                f"{where} holds a 'threshold_score' tensor that is not the score named in its "
                f"metadata (score={meta['score']!r}); the file was altered after rejectnet.save",
                path,
                "threshold_score",
            )
    _check_weights(state, meta, path)


def _check_weights(state: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> None:
    """The score weights and the temperature: finite, non-negative / positive, well shaped."""
    where = f"{str(path)!r}"
    weights = state.get("score_weights")
    if weights is not None:
        if (
            not weights.is_floating_point()
            or weights.shape != (meta["k"],)
            or not bool(torch.isfinite(weights).all())
            or bool((weights < 0).any())
        ):
            raise ModelFileError(
                f"{where} holds an invalid 'score_weights' tensor; it must hold k={meta['k']} "
                "finite, non-negative weights",
                path,
                "score_weights",
            )
    temp = state.get("temperature")
    if temp is not None and (
        temp.ndim != 0
        or not temp.is_floating_point()
        or not math.isfinite(float(temp))
        or float(temp) <= 0
    ):
        raise ModelFileError(
            f"{where} holds an invalid 'temperature' tensor; it must be one finite, positive "
            "floating-point number",
            path,
            "temperature",
        )


def _check_digest(state: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> None:
    if meta["sha256"] is None:
        return  # written before the hash existed
    if content_digest(state) != meta["sha256"]:
        raise ModelFileError(
            f"the tensor data of {str(path)!r} does not match the sha256 in its metadata: the "
            "file was corrupted (a flipped bit, a bad copy) or altered after rejectnet.save; "
            "copy it again from a good source",
            path,
            "sha256",
        )


def _complete(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> None:
    """Give optional buffers that an older file lacks their documented default."""
    for name, default in _OPTIONAL_BUFFERS.items():
        if name in own and name not in state:
            state[name] = torch.full_like(own[name], default, device="cpu")


def _to_device(
    state: dict[str, torch.Tensor], device: torch.device, path: Path
) -> dict[str, torch.Tensor]:
    if device.type == "cpu":
        return state
    try:
        return {name: t.to(device) for name, t in state.items()}
    except (RuntimeError, AssertionError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"cannot move the tensors of {str(path)!r} to map_location={str(device)!r} "
            f"({first}); pass map_location='cpu' or an available device"
        ) from None


def load(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    map_location: str | torch.device = "cpu",
    inplace: bool = False,
) -> RejectHead:
    """Load a file written by :func:`save` into a fresh copy of the architecture.

    Everything in the file is checked before ``model`` is touched, and the metadata and
    the declared tensor shapes are compared with ``model`` before any tensor data is
    read or any layer built (see the module description); when the file is refused,
    ``model`` is left exactly as it was (also with ``inplace=True``). Files written by
    older versions (without ``sha256``, ``input_spec`` or a temperature) still load;
    a missing temperature is 1.0.

    Args:
        path: A ``.safetensors`` file written by :func:`save`.
        model: The un-wrapped architecture (any weights; they are overwritten), or a
            :class:`~rejectnet.RejectHead` with the same C and k.
        map_location: Device to load the tensors on before copying them into the model:
            ``'cpu'``, or an available accelerator (``'cuda'``, ``'cuda:1'``, ``'mps'``).
        inplace: Passed to :meth:`RejectHead.wrap`: when ``False`` (default) ``model``
            itself is left unchanged.

    Returns:
        The wrapped model with the saved weights, threshold, score, temperature and
        ``input_spec`` (``None`` when the file recorded none: any input shape is then
        accepted), in eval mode (ready for :meth:`~rejectnet.RejectHead.predict`; call
        ``.train()`` to fine-tune it further).

    Raises:
        TypeError: If ``model`` is not a module, or ``map_location`` or ``inplace`` has
            the wrong type.
        ModelFileError: If the path is not a regular file, the file is not a rejectnet
            safetensors file, it is truncated, fails its ``sha256``, its metadata is
            invalid or disagrees with its tensors, or its tensors do not fit the model;
            the message names the file and ``field`` the field or tensor.
        ValueError: If C or k differ from the model's (the message names both), or
            ``map_location`` is not an available device (the message lists the valid
            ones).
        FileNotFoundError: If the file does not exist.

    Example:
        >>> import tempfile, os, torch
        >>> from torch import nn
        >>> import rejectnet
        >>> make_model = lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> net = rejectnet.RejectHead.wrap(make_model(), k=2)
        >>> _ = net.calibrate([torch.randn(50, 1, 4, 4)], coverage=0.9)
        >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
        >>> _ = rejectnet.save(net, path)
        >>> net2 = rejectnet.load(path, make_model())  # fresh weights, overwritten
        >>> x = torch.randn(3, 1, 4, 4)
        >>> torch.equal(net2(x), net(x)), net2.threshold.item() == net.threshold.item()
        (True, True)
    """
    src = _as_path(path)
    device = _check_load_arguments(model, map_location, inplace)
    with _open(src) as f:
        header, meta = _header(f, src)
        head, expected = _expected_of(model, meta, src)
        _check_fits(header, meta, expected, f"model.{head}." if head else "model.", src)
        state = _read_state(f, header, src)
    _check_state(state, meta, src)  # first: names the decision field that was altered
    _check_digest(state, meta, src)
    net = _filled(model, _to_device(state, device, src), meta, inplace, src)
    net.input_spec = meta["input_spec"]  # None for files that recorded none
    return net.eval()


def _check_load_arguments(model: Any, map_location: Any, inplace: Any) -> torch.device:
    """The arguments of :func:`load` other than the path; returns the device."""
    device = _check_map_location(map_location)
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be True or False, got {inplace!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return device


def _expected_of(
    model: nn.Module, meta: dict[str, Any], path: Path
) -> tuple[str, dict[str, tuple[int, ...]]]:
    """The head path and the ``state_dict`` shapes the file must have to fit ``model``."""
    c_file, k_file = meta["num_classes"], meta["k"]
    if isinstance(model, RejectHead):
        if (model.num_classes, model.k) != (c_file, k_file):
            raise ValueError(
                f"{str(path)!r} holds a model with C={c_file} classes and k={k_file} "
                f"reject classes, but the given model has C={model.num_classes} and "
                f"k={model.k}"
            )
        expected = {n: tuple(t.shape) for n, t in model.state_dict().items()}
        for name in _OPTIONAL_BUFFERS:
            expected.pop(name, None)
        return model.head_path, expected
    head, layer = find_head(model, meta["head"])
    if layer.out_features != c_file:
        raise ValueError(
            f"{str(path)!r} holds a model with C={c_file} classes (k={k_file} reject "
            f"classes), but the given model's head {meta['head']!r} has "
            f"C={layer.out_features} outputs; build the architecture with "
            f"num_classes={c_file}"
        )
    return head, _expected_shapes(model, head, layer, k_file)


def _read_state(f: BoundedFile, header: Header, path: Path) -> dict[str, torch.Tensor]:
    """The tensor data, read once (a short or damaged file is a :class:`ModelFileError`)."""
    try:
        return read_tensors(f, header)
    except (HeaderError, UnsafeFileError) as err:
        raise ModelFileError(
            f"path {str(path)!r} is truncated or corrupted: its tensors cannot be read ({err})",
            path,
        ) from None


def _filled(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    meta: dict[str, Any],
    inplace: bool,
    path: Path,
) -> RejectHead:
    """``model`` wrapped (unless it is a RejectHead) with the checked ``state`` copied in."""
    if isinstance(model, RejectHead):
        _complete(state, model.state_dict())
        _load_into(model, state, path)
        return model
    net = RejectHead.wrap(model, k=meta["k"], head=meta["head"], inplace=inplace)
    try:
        _complete(state, net.state_dict())
        _load_into(net, state, path)
    except BaseException:
        if inplace and net.head_path:  # put the caller's own head layer back
            replace_module(model, net.head_path, net.head.base)
        raise
    return net


def _load_into(net: RejectHead, state: dict[str, torch.Tensor], path: Path) -> None:
    own = net.state_dict()
    bad = sorted(set(own) ^ set(state)) + sorted(
        n for n in set(own) & set(state) if own[n].shape != state[n].shape
    )
    if bad:  # cannot happen after _check_fits; kept as the last line of defence
        raise ModelFileError(
            f"the tensors in {str(path)!r} do not fit the given model ({bad[:5]}); pass the "
            "same architecture that was saved",
            path,
            bad[0],
        )
    net.load_state_dict(state)
