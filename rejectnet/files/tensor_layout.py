"""The safetensors file layout, read with bounds: header first, tensors only once they fit.

A safetensors file is an 8-byte little-endian header length ``n``, ``n`` bytes of JSON
(``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}``) and the raw
tensor bytes. :func:`read_header` reads and checks only the header (at most
:data:`MAX_HEADER_BYTES`), so that a caller can compare the declared shapes with the
model *before* anything of the declared size is allocated; :func:`read_tensors` then reads
the rest, which must be exactly what the header declared, and builds the tensors over one
buffer. :func:`content_digest` is the integrity hash :func:`rejectnet.save` writes in the
metadata: sha256 over every tensor's name and raw bytes, in name order.

Every refusal raises :class:`HeaderError` (a ``ValueError``) with the reason; the caller
adds the file's name. JSON numbers too large for their field (a 5,000-digit integer)
never reach Python's integer conversion limit: they become :class:`HugeNumber` values
that any type check refuses.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from rejectnet.files.bounded_reads import BoundedFile

__all__ = [
    "MAX_HEADER_BYTES",
    "Header",
    "HeaderError",
    "HugeNumber",
    "TensorInfo",
    "content_digest",
    "loads_json",
    "read_header",
    "read_tensors",
]

MAX_HEADER_BYTES = 100_000_000
"""The largest header accepted (the limit of the safetensors library itself)."""

_MAX_INT_DIGITS = 19  # |n| < 10**19 covers every int64

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
for _name, _attr in (("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2")):
    if hasattr(torch, _attr):
        DTYPES[_name] = getattr(torch, _attr)


class HeaderError(ValueError):
    """The header is not a valid safetensors header; the message says why."""


class HugeNumber:
    """A JSON number with more digits than any field allows; never converted to int.

    Attributes:
        digits: How many digits it has.
    """

    def __init__(self, text: str) -> None:
        self.digits = len(text.lstrip("-"))

    def __repr__(self) -> str:
        return f"<an integer of {self.digits} digits>"


def _parse_int(text: str) -> int | HugeNumber:
    return HugeNumber(text) if len(text.lstrip("-")) > _MAX_INT_DIGITS else int(text)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise HeaderError(f"the key {key!r:.60} appears twice")
        out[key] = value
    return out


def loads_json(text: str | bytes) -> Any:
    """``json.loads`` that refuses duplicate keys and keeps huge integers unconverted.

    Raises:
        HeaderError: If ``text`` is not valid JSON, repeats a key or nests too deep.
    """
    try:
        return json.loads(text, parse_int=_parse_int, object_pairs_hook=_no_duplicates)
    except HeaderError:
        raise
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, ...
        raise HeaderError(f"not valid JSON: {str(err)[:200]}") from None


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header declares it."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class Header:
    """A checked header: the tensors it declares and its string metadata."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int
    data_size: int


def _tensor_info(name: str, entry: Any) -> TensorInfo:
    where = f"tensor {name!r:.80}"
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise HeaderError(f"{where} must have exactly 'dtype', 'shape' and 'data_offsets'")
    dtype = DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
    if dtype is None:
        raise HeaderError(f"{where} has an unsupported dtype {entry['dtype']!r:.40}")
    shape = entry["shape"]
    if not (
        isinstance(shape, list)
        and len(shape) <= 16
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise HeaderError(f"{where} has an invalid shape {shape!r:.80}")
    offsets = entry["data_offsets"]
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
        and offsets[0] <= offsets[1]
    ):
        raise HeaderError(f"{where} has invalid data_offsets {offsets!r:.80}")
    nbytes = math.prod(shape) * dtype.itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise HeaderError(
            f"{where} declares shape {tuple(shape)} ({nbytes} bytes of {entry['dtype']}) but "
            f"data_offsets span {offsets[1] - offsets[0]} bytes"
        )
    return TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])


def read_header(f: BoundedFile) -> Header:
    """Read and check the header of an open safetensors file; nothing else is read.

    Checks: the length fits the file and :data:`MAX_HEADER_BYTES`; the header is a JSON
    object without duplicate keys; every tensor has a known dtype and a shape whose byte
    size equals its ``data_offsets`` span; the spans tile the data section exactly (no
    gap, no overlap); the data section ends where the file ends.

    Raises:
        HeaderError: Saying what is wrong.
    """
    if f.size < 8:
        raise HeaderError(f"the file has {f.size} bytes, fewer than a safetensors header")
    (n,) = struct.unpack("<Q", f.read_exact(8))
    if n > MAX_HEADER_BYTES or n > f.size - 8:
        raise HeaderError(
            f"its header length ({n} bytes) exceeds the file ({f.size} bytes) or the "
            f"{MAX_HEADER_BYTES}-byte limit"
        )
    raw = f.read_exact(n)
    if not raw.lstrip().startswith(b"{"):
        raise HeaderError("the header is not a JSON object")
    parsed = loads_json(raw)
    if not isinstance(parsed, dict):
        raise HeaderError("the header is not a JSON object")
    meta = parsed.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise HeaderError("its __metadata__ is not a mapping of strings to strings")
    tensors = {name: _tensor_info(name, entry) for name, entry in parsed.items()}
    end = 0
    for info in sorted(tensors.values(), key=lambda t: (t.start, t.end)):
        if info.start != end:
            raise HeaderError("its tensors' data_offsets overlap or leave gaps")
        end = info.end
    data_start = 8 + n
    if data_start + end != f.size:
        raise HeaderError(
            f"its tensors take {end} bytes but the file holds {f.size - data_start} after the "
            "header (truncated, or bytes were added)"
        )
    return Header(tensors, meta, data_start, end)


def read_tensors(f: BoundedFile, header: Header) -> dict[str, torch.Tensor]:
    """Read the data section after :func:`read_header` and build the tensors (CPU).

    The bytes are read once into one buffer and the tensors are views of it (the file
    is little-endian, as the machines torch runs on).

    Raises:
        UnsafeFileError: If the file shrank since its header was read.
    """
    # torch.empty, not bytearray: the buffer is not zeroed first (it is overwritten).
    buf = torch.empty(header.data_size, dtype=torch.uint8).numpy()
    f.readinto_exact(buf.data)
    out: dict[str, torch.Tensor] = {}
    for name, info in header.tensors.items():
        n = math.prod(info.shape)
        if n == 0:
            out[name] = torch.empty(info.shape, dtype=info.dtype)
            continue
        flat = torch.frombuffer(buf, dtype=info.dtype, count=n, offset=info.start)
        out[name] = flat.view(info.shape)
    return out


def content_digest(tensors: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 (hex) over each tensor's name and raw bytes, in name order.

    This is the ``sha256`` field :func:`rejectnet.save` writes in the metadata; the
    tensors must be CPU tensors (as read from, or about to be written to, a file).
    """
    items = sorted(tensors.items() if isinstance(tensors, Mapping) else tensors)
    h = hashlib.sha256()
    for name, t in items:
        h.update(name.encode("utf-8") + b"\0")
        if t.numel():
            h.update(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()
