"""Saving and loading wrapped models as safetensors files (never pickle).

A file holds every tensor of ``net.state_dict()`` (weights, the threshold, the score
weights) plus one JSON metadata entry, ``"rejectnet"``, with the number of classes C,
the number of reject classes k, the head path, the threshold, the score name and the
rejectnet version that wrote it. Loading parses only the safetensors header and raw
tensor bytes; nothing in a file is ever executed.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from rejectnet._locate import find_head, replace_module
from rejectnet._version import __version__
from rejectnet.head import RejectHead
from rejectnet.scores import registry

__all__ = ["FORMAT_VERSION", "load", "read_metadata", "save"]

FORMAT_VERSION = 1
"""The file format :func:`save` writes; :func:`load` refuses files from a newer format."""
_META_KEY = "rejectnet"


def _as_path(path: Any, name: str = "path") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def save(net: RejectHead, path: str | os.PathLike[str]) -> Path:
    """Write a wrapped model to a ``.safetensors`` file, atomically.

    The file is first written to a temporary file in the same folder and then renamed,
    so an interrupted save never leaves a half-written file at ``path``.

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
    meta = {
        "format": FORMAT_VERSION,
        "version": __version__,
        "num_classes": net.num_classes,
        "k": net.k,
        "head": net.head_path,
        "threshold": float(net.threshold) if net.is_calibrated else None,
        "score": net.calibrated_score,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_META_KEY: json.dumps(meta)})
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dest


def _validate_metadata(meta: Any, path: Path) -> dict[str, Any]:
    where = f"metadata of {str(path)!r}"
    if not isinstance(meta, dict):
        raise ValueError(f"{where} is not a JSON object")
    checks: dict[str, Any] = {
        "format": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "num_classes": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "k": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "head": lambda v: isinstance(v, str) and len(v) < 1000,
        "version": lambda v: isinstance(v, str) and len(v) < 100,
        "threshold": lambda v: (
            v is None
            or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
        ),
        "score": lambda v: v is None or (isinstance(v, str) and len(v) <= 32),
    }
    for key, ok in checks.items():
        if key not in meta:
            raise ValueError(f"{where} lacks the field {key!r}; was it written by rejectnet.save?")
        if not ok(meta[key]):
            raise ValueError(f"{where} has an invalid {key!r}: {meta[key]!r}")
    if meta["format"] > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} uses file format {meta['format']}, newer than this rejectnet "
            f"({__version__}, format {FORMAT_VERSION}); upgrade rejectnet to load it"
        )
    if meta["score"] is not None:
        registry.spec(meta["score"])  # unknown score names fail here, with the list of names
    return meta


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate the metadata of a file written by :func:`save`.

    Only the safetensors header is parsed; no tensor is loaded and nothing is executed.

    Args:
        path: A ``.safetensors`` file written by :func:`save`.

    Returns:
        A dict with ``format``, ``version``, ``num_classes``, ``k``, ``head``,
        ``threshold`` (``None`` if uncalibrated) and ``score``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file is not a safetensors file (a pickle, for instance, is
            refused without being opened as one) or its metadata is missing or invalid.

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
    if not src.is_file():
        raise FileNotFoundError(f"path {str(src)!r} does not exist or is not a file")
    try:
        with safe_open(str(src), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(
            f"path {str(src)!r} is not a safetensors file written by rejectnet.save "
            f"({err}); rejectnet never unpickles files, so .pt/.pth/.bin pickles are refused"
        ) from None
    if _META_KEY not in header:
        raise ValueError(
            f"path {str(src)!r} is a safetensors file without rejectnet metadata; "
            "write it with rejectnet.save(net, path)"
        )
    try:
        meta = json.loads(header[_META_KEY])
    except (json.JSONDecodeError, RecursionError) as err:  # RecursionError: nested too deep
        raise ValueError(f"metadata of {str(src)!r} is not valid JSON: {err}") from None
    return _validate_metadata(meta, src)


def _check_map_location(map_location: Any) -> torch.device:
    if not isinstance(map_location, (str, torch.device)):
        raise TypeError(
            "map_location must be a device name such as 'cpu' or 'cuda:0', or a "
            f"torch.device, got {type(map_location).__name__}"
        )
    try:
        return torch.device(map_location)
    except RuntimeError:
        raise ValueError(
            f"map_location={map_location!r} is not a device; use e.g. 'cpu', 'cuda' or 'cuda:0'"
        ) from None


def _read_tensors(src: Path, device: torch.device) -> dict[str, torch.Tensor]:
    try:
        state = load_file(str(src), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(
            f"path {str(src)!r} is truncated or corrupted: its tensors cannot be read ({err})"
        ) from None
    if device.type == "cpu":
        return state
    try:
        return {name: t.to(device) for name, t in state.items()}
    except (RuntimeError, AssertionError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"cannot move the tensors of {str(src)!r} to map_location={str(device)!r} "
            f"({first}); pass map_location='cpu' or an available device"
        ) from None


def _check_state(state: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> None:
    """The buffers that steer decisions must agree with the validated metadata."""
    where = f"{str(path)!r}"
    thr = state.get("threshold")
    if thr is not None:
        if thr.ndim != 0 or not thr.is_floating_point():
            raise ValueError(
                f"{where} holds an invalid 'threshold' tensor (shape {tuple(thr.shape)}, dtype "
                f"{thr.dtype}); it must be a floating-point scalar"
            )
        value = float(thr)
        expected = meta["threshold"]
        same = math.isnan(value) if expected is None else value == float(expected)
        if not same:
            raise ValueError(
                f"{where} holds a 'threshold' tensor ({value!r}) that disagrees with its "
                f"metadata (threshold={expected!r}); the file was altered after rejectnet.save"
            )
    name_buf = state.get("threshold_score")
    if name_buf is not None:
        ok = name_buf.dtype == torch.uint8 and tuple(name_buf.shape) == (registry.MAX_NAME_BYTES,)
        name = bytes(name_buf.tolist()).rstrip(b"\0") if ok else b""
        ok = ok and b"\0" not in name and all(33 <= b <= 126 for b in name)
        if not ok or (name.decode("ascii") or None) != meta["score"]:
            raise ValueError(
                f"{where} holds a 'threshold_score' tensor that is not the score named in its "
                f"metadata (score={meta['score']!r}); the file was altered after rejectnet.save"
            )
    weights = state.get("score_weights")
    if weights is not None:
        if (
            not weights.is_floating_point()
            or weights.shape != (meta["k"],)
            or not bool(torch.isfinite(weights).all())
            or bool((weights < 0).any())
        ):
            raise ValueError(
                f"{where} holds an invalid 'score_weights' tensor; it must hold k={meta['k']} "
                "finite, non-negative weights"
            )


def _fit_error(
    path: Path, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> ValueError | None:
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(n for n in set(own) & set(state) if own[n].shape != state[n].shape)
    if not (missing or unexpected or wrong):
        return None
    parts = []
    if missing:
        parts.append(f"missing {missing[:5]}")
    if unexpected:
        parts.append(f"unexpected {unexpected[:5]}")
    if wrong:
        parts.append(
            "shape mismatch "
            + ", ".join(
                f"{n}: file {tuple(state[n].shape)} vs model {tuple(own[n].shape)}"
                for n in wrong[:5]
            )
        )
    return ValueError(
        f"the tensors in {str(path)!r} do not fit the given model ({'; '.join(parts)}); "
        "pass the same architecture that was saved"
    )


def load(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    map_location: str | torch.device = "cpu",
    inplace: bool = False,
) -> RejectHead:
    """Load a file written by :func:`save` into a fresh copy of the architecture.

    Everything in the file is checked before ``model`` is touched; when the file is
    refused, ``model`` is left exactly as it was (also with ``inplace=True``).

    Args:
        path: A ``.safetensors`` file written by :func:`save`.
        model: The un-wrapped architecture (any weights; they are overwritten), or a
            :class:`~rejectnet.RejectHead` with the same C and k.
        map_location: Device to load the tensors on before copying them into the model.
        inplace: Passed to :meth:`RejectHead.wrap`: when ``False`` (default) ``model``
            itself is left unchanged.

    Returns:
        The wrapped model with the saved weights, threshold and score, in eval mode
        (ready for :meth:`~rejectnet.RejectHead.predict`; call ``.train()`` to fine-tune
        it further).

    Raises:
        TypeError: If ``model`` is not a module, or ``map_location`` or ``inplace`` has
            the wrong type.
        ValueError: If the file is not a rejectnet safetensors file, it is truncated, its
            metadata is invalid or disagrees with its tensors, its C or k differ from the
            model's (the message names both), its tensors do not fit the model, or
            ``map_location`` is not an available device.
        FileNotFoundError: If the file does not exist.

    Example:
        >>> import tempfile, os, torch
        >>> from torch import nn
        >>> import rejectnet
        >>> def make_model():
        ...     return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
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
    device = _check_map_location(map_location)
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be True or False, got {inplace!r}")
    meta = read_metadata(src)
    c_file, k_file = meta["num_classes"], meta["k"]
    if isinstance(model, RejectHead):
        if (model.num_classes, model.k) != (c_file, k_file):
            raise ValueError(
                f"{str(path)!r} holds a model with C={c_file} classes and k={k_file} reject "
                f"classes, but the given model has C={model.num_classes} and k={model.k}"
            )
    else:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        _, layer = find_head(model, meta["head"])
        if layer.out_features != c_file:
            raise ValueError(
                f"{str(path)!r} holds a model with C={c_file} classes (k={k_file} reject "
                f"classes), but the given model's head {meta['head']!r} has "
                f"C={layer.out_features} outputs; build the architecture with "
                f"num_classes={c_file}"
            )
    state = _read_tensors(src, device)
    _check_state(state, meta, src)
    if isinstance(model, RejectHead):
        net = model
        error = _fit_error(src, net.state_dict(), state)
        if error is not None:
            raise error
        net.load_state_dict(state)
        return net.eval()
    net = RejectHead.wrap(model, k=k_file, head=meta["head"], inplace=inplace)
    try:
        error = _fit_error(src, net.state_dict(), state)
        if error is not None:
            raise error
        net.load_state_dict(state)
    except BaseException:
        if inplace and net.head_path:  # put the caller's own head layer back
            replace_module(model, net.head_path, net.head.base)
        raise
    return net.eval()
