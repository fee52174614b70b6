"""The safetensors layout (rejectnet.files.tensor_layout), parsed by hand and checked."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rejectnet.files.bounded_reads import open_regular
from rejectnet.files.tensor_layout import (
    HeaderError,
    HugeNumber,
    content_digest,
    loads_json,
    read_header,
    read_tensors,
)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with open_regular(path, max_bytes=1 << 20, what="test file") as f:
        header = read_header(f)
        return read_tensors(f, header), header.metadata


def test_a_file_written_by_safetensors_reads_back_exactly(tmp_path: Path) -> None:
    tensors = {
        "a": torch.arange(6, dtype=torch.float32).view(2, 3),
        "b": torch.tensor([1, -2], dtype=torch.int64),
        "empty": torch.zeros(0, 4, dtype=torch.float16),
    }
    save_file(tensors, str(tmp_path / "t.safetensors"), metadata={"k": "v"})
    back, meta = _read(tmp_path / "t.safetensors")
    assert meta == {"k": "v"}
    assert set(back) == set(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t)
    assert content_digest(back) == content_digest(tensors)


def _raw(path: Path, header: dict[str, object], data: bytes) -> Path:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_headers_that_do_not_tile_the_data_are_refused(tmp_path: Path) -> None:
    entry = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    _read(_raw(tmp_path / "ok.st", {"x": entry}, b"\0" * 8))
    with pytest.raises(HeaderError, match="truncated, or bytes were added"):
        _read(_raw(tmp_path / "short.st", {"x": entry}, b"\0" * 7))
    gap = {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}
    with pytest.raises(HeaderError, match="overlap or leave gaps"):
        _read(_raw(tmp_path / "gap.st", {"x": gap}, b"\0" * 8))
    with pytest.raises(HeaderError, match="not a JSON object"):
        _read(_raw(tmp_path / "list.st", [entry], b""))  # type: ignore[arg-type]


def test_loads_json_refuses_duplicates_and_keeps_huge_numbers() -> None:
    with pytest.raises(HeaderError, match="appears twice"):
        loads_json('{"a": 1, "a": 2}')
    with pytest.raises(HeaderError, match="not valid JSON"):
        loads_json("{")
    assert isinstance(loads_json("[" + "9" * 400 + "]")[0], HugeNumber)
    assert loads_json('{"k": 3}') == {"k": 3}


def test_content_digest_covers_names_and_bytes_in_name_order() -> None:
    a, b = torch.zeros(2), torch.ones(2)
    assert content_digest({"a": a, "b": b}) == content_digest([("b", b), ("a", a)])
    assert content_digest({"a": a, "b": b}) != content_digest({"a": b, "b": a})
    assert content_digest({"a": a}) != content_digest({"c": a})
