"""Crafted model files: metadata against the tensors before allocating, bounded reads, integrity.

* A ~1 KB file whose metadata claims ``k = 20000000`` (or 10**9, or another C) is refused
  in milliseconds with :class:`ModelFileError` naming the file and the field, before any
  reject layer is built or any tensor data read.
* ``load`` / ``read_metadata`` refuse a symlink to ``/dev/zero``, a FIFO, a folder, a
  sparse 1 TiB file, without reading them or blocking.
* Numbers too large for a field (a threshold of ``10**400``, a 5,000-digit integer) give
  the same documented error naming the file and the field; ``map_location='meta'`` says
  which devices are valid.
* A flipped bit anywhere in the tensor data is refused (the ``sha256`` in the metadata);
  files without the hash (older versions) still load.
"""

from __future__ import annotations

import json
import os
import random
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import rejectnet
from rejectnet import RejectHead
from rejectnet.serialization import ModelFileError, _expected_shapes, read_metadata
from tests.conftest import ReliabilityCounts, TinyCNN
from tests.reliability._helpers import same_weights, snapshot


def _saved(tmp_path: Path, *, c: int = 4, k: int = 3, threshold: float | None = 0.25) -> Path:
    torch.manual_seed(0)
    net = RejectHead.wrap(TinyCNN(num_classes=c), k=k).eval()
    if threshold is not None:
        net.set_threshold(threshold, "max")
    return rejectnet.save(net, tmp_path / "good.safetensors")


def _rewrite(src: Path, dest: Path, meta: Any, drop: tuple[str, ...] = (), **extra: Any) -> Path:
    state = {n: t for n, t in load_file(str(src)).items() if n not in drop}
    state.update(extra)
    text = meta if isinstance(meta, str) else json.dumps(meta)
    save_file(state, str(dest), metadata={"rejectnet": text})
    return dest


def _refused(
    path: Path, model: nn.Module, field: str | None, *, inplace: bool = True
) -> ModelFileError:
    before = snapshot(model)
    start = time.perf_counter()
    with pytest.raises(ModelFileError) as info:
        rejectnet.load(path, model, inplace=inplace)
    elapsed = time.perf_counter() - start
    assert str(path) in str(info.value)
    assert info.value.field == field and info.value.path == path, (info.value.field, field)
    assert same_weights(model, before) and type(model.fc2) is nn.Linear, "model untouched"
    assert elapsed < 0.5, f"took {elapsed:.3f} s"
    return info.value


# ---------------------------------------------------------------- item 1: k and C first
@pytest.mark.parametrize("k", [20_000_000, 10**9, 10**5, 2, 4])
def test_metadata_k_that_disagrees_with_the_tensors_is_refused_before_allocating(
    k: int, tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    good = _saved(tmp_path)
    meta = read_metadata(good)
    path = _rewrite(good, tmp_path / "bad.safetensors", {**meta, "k": k}, drop=("score_weights",))
    assert path.stat().st_size < 8_000
    err = _refused(path, TinyCNN(), "score_weights")
    assert "k=" in str(err)
    reliability.fault()
    # with score_weights kept, the first tensor that disagrees is named, and the field is k
    path = _rewrite(good, tmp_path / "bad2.safetensors", {**meta, "k": k})
    err = _refused(path, TinyCNN(), "k")
    assert f"k={k}" in str(err) and "k=3" in str(err) and "score_weights" in str(err)
    reliability.fault()


def test_k_lie_on_a_wide_head_costs_nothing(tmp_path: Path, reliability: ReliabilityCounts) -> None:
    """The issue: k = 1e5 on a 2048-feature head used to allocate 0.8 GB before failing."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2048, 10))
    net = RejectHead.wrap(model, k=2)
    good = rejectnet.save(net, tmp_path / "wide.safetensors")
    path = _rewrite(good, tmp_path / "bad.safetensors", {**read_metadata(good), "k": 100_000})
    fresh = nn.Sequential(nn.Flatten(), nn.Linear(2048, 10))
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"k=100000.*k=2") as info:
        rejectnet.load(path, fresh)
    assert info.value.field == "k" and time.perf_counter() - start < 0.5
    reliability.fault()


def test_num_classes_that_disagrees_with_the_tensors_is_refused(
    tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    good = _saved(tmp_path, c=5)
    path = _rewrite(good, tmp_path / "bad.safetensors", {**read_metadata(good), "num_classes": 4})
    err = _refused(path, TinyCNN(num_classes=4), "num_classes")
    assert "num_classes=4" in str(err) and "(5, 16)" in str(err)
    reliability.fault()


def test_declared_shapes_that_do_not_fit_the_model_are_refused_unread(
    tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    """A header declaring a 4 GiB tensor in a 1 TiB sparse file: refused before reading."""
    good = _saved(tmp_path)
    meta = read_metadata(good)
    header = {
        "model.fc1.weight": {"dtype": "F32", "shape": [2**20, 2**10], "data_offsets": [0, 2**32]},
        "__metadata__": {"rejectnet": json.dumps(meta)},
    }
    raw = json.dumps(header).encode()
    path = tmp_path / "sparse.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + 2**32)
    _refused(path, TinyCNN(), "score_weights")
    reliability.fault()


def test_expected_shapes_match_the_real_wrapped_model() -> None:
    """The shapes load compares against (without wrapping) are those wrap produces."""

    class Nested(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6))
            self.cls = nn.Sequential(nn.Dropout(0.1), nn.Linear(6, 3, bias=False))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.cls(self.body(x))

    for make, k in [
        (TinyCNN, 3),
        (lambda: nn.Linear(5, 2), 1),
        (lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), 4),
        (Nested, 2),
    ]:
        model = make()
        net = RejectHead.wrap(make(), k=k)
        real = {n: tuple(t.shape) for n, t in net.state_dict().items()}
        real.pop("temperature", None)  # optional: absent in older files
        assert _expected_shapes(model, net.head_path, net.head.base, k) == real


# ---------------------------------------------------------------- item 2: bounded reads
def _special(kind: str, path: Path) -> None:
    if kind == "symlink_dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
@pytest.mark.parametrize("kind", ["symlink_dev_zero", "fifo", "folder"])
@pytest.mark.parametrize("reader", ["load", "read_metadata"])
def test_special_files_are_refused_without_reading(
    kind: str, reader: str, tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    path = tmp_path / "model.safetensors"
    _special(kind, path)
    call: Callable[[], Any] = (
        (lambda: rejectnet.load(path, TinyCNN()))
        if reader == "load"
        else (lambda: read_metadata(path))
    )
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            call()
        except BaseException as err:  # handed back to the test
            out["error"] = err

    t = threading.Thread(target=target, daemon=True)
    start = time.perf_counter()
    t.start()
    t.join(5.0)
    assert not t.is_alive(), "blocked"
    reliability.fault()
    err = out.get("error")
    assert isinstance(err, ModelFileError), out
    assert "not a regular file" in str(err) and str(path) in str(err)
    assert time.perf_counter() - start < 1.0


def test_symlink_to_a_real_file_loads(tmp_path: Path, images: torch.Tensor) -> None:
    good = _saved(tmp_path)
    link = tmp_path / "link.safetensors"
    link.symlink_to(good)
    assert torch.equal(
        rejectnet.load(link, TinyCNN())(images), rejectnet.load(good, TinyCNN())(images)
    )


def test_sparse_terabyte_file_is_refused_fast(
    tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as f:
        f.truncate(2**40)
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match="not a safetensors file"):
        rejectnet.load(path, TinyCNN())
    with pytest.raises(ModelFileError, match="not a safetensors file"):
        read_metadata(path)
    assert time.perf_counter() - start < 0.5
    reliability.fault()


# ---------------------------------------------------------------- item 8: huge numbers, devices
def _raw_meta(good: Path, field: str, literal: str) -> str:
    meta = read_metadata(good)
    meta[field] = "@@"
    return json.dumps(meta).replace('"@@"', literal)


HUGE: list[tuple[str, str]] = [
    ("threshold", str(10**400)),
    ("threshold", "1e400"),
    ("threshold", "-1e400"),
    ("threshold", "9" * 5000),
    ("k", "9" * 5000),
    ("k", str(10**400)),
    ("num_classes", "1" + "0" * 4999),
    ("format", "9" * 5000),
    ("threshold", "NaN"),
    ("threshold", "Infinity"),
]


@pytest.mark.parametrize(("field", "literal"), HUGE, ids=[f"{f}={v[:8]}" for f, v in HUGE])
def test_numbers_too_large_for_a_field_name_file_and_field(
    field: str, literal: str, tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    good = _saved(tmp_path)
    path = _rewrite(good, tmp_path / "bad.safetensors", _raw_meta(good, field, literal))
    with pytest.raises(ModelFileError, match=f"invalid '{field}'") as info:
        read_metadata(path)
    assert info.value.field == field and str(path) in str(info.value)
    assert len(str(info.value)) < 600, "the number is not echoed in full"
    _refused(path, TinyCNN(), field)
    reliability.fault()


@pytest.mark.parametrize("where", ["shape", "data_offsets"])
def test_huge_numbers_in_the_header_are_refused(
    where: str, tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    meta = read_metadata(_saved(tmp_path))
    entry = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    text = json.dumps({"w": entry, "__metadata__": {"rejectnet": json.dumps(meta)}})
    text = text.replace("[2]" if where == "shape" else "[0, 8]", "[" + "9" * 5000 + "]")
    raw = text.encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(8))
    with pytest.raises(ModelFileError, match=f"not a safetensors file.*invalid {where}"):
        rejectnet.load(path, TinyCNN())
    reliability.fault()


@pytest.mark.parametrize("device", ["meta", "cuda:99", "mps", torch.device("meta")])
def test_unusable_map_location_lists_the_valid_devices(
    device: Any, tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    if device == "mps" and torch.backends.mps.is_available():  # pragma: no cover
        pytest.skip("mps is available here")
    good = _saved(tmp_path)
    model = TinyCNN()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"map_location=.*valid here: 'cpu'"):
        rejectnet.load(good, model, map_location=device, inplace=True)
    assert same_weights(model, before)
    reliability.fault()


# ---------------------------------------------------------------- integrity
def test_every_flipped_bit_in_the_tensor_data_is_refused(
    tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    """The issue: 127 of 150 single-bit flips used to load silently with other weights."""
    good = _saved(tmp_path)
    data = good.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    start = 8 + n
    rng = random.Random(12)
    bad = tmp_path / "flipped.safetensors"
    fields: dict[str | None, int] = {}
    for _ in range(150):
        i = rng.randrange(start, len(data))
        bit = 1 << rng.randrange(8)
        bad.write_bytes(data[:i] + bytes([data[i] ^ bit]) + data[i + 1 :])
        with pytest.raises(ModelFileError) as info:
            rejectnet.load(bad, TinyCNN())
        fields[info.value.field] = fields.get(info.value.field, 0) + 1
        reliability.fault()
    assert set(fields) <= {"sha256", "threshold", "threshold_score", "score_weights"}
    assert fields["sha256"] > 100


def test_files_without_the_hash_still_load(tmp_path: Path, images: torch.Tensor) -> None:
    good = _saved(tmp_path)
    meta = read_metadata(good)
    assert meta["sha256"] is not None and len(meta["sha256"]) == 64
    old = {k: v for k, v in meta.items() if k not in ("sha256", "input_spec")}
    path = _rewrite(good, tmp_path / "old.safetensors", old)
    assert read_metadata(path)["sha256"] is None
    assert torch.equal(
        rejectnet.load(path, TinyCNN())(images), rejectnet.load(good, TinyCNN())(images)
    )


@pytest.mark.parametrize("value", ["abc", "0" * 63, "G" * 64, 5])
def test_malformed_hash_is_refused(
    value: Any, tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    good = _saved(tmp_path)
    path = _rewrite(good, tmp_path / "bad.safetensors", {**read_metadata(good), "sha256": value})
    _refused(path, TinyCNN(), "sha256")
    reliability.fault()


def test_duplicate_keys_in_the_header_are_refused(
    tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    meta = read_metadata(_saved(tmp_path))
    text = json.dumps({"__metadata__": {"rejectnet": json.dumps(meta)}})
    text = text[:-1] + ', "__metadata__": {"rejectnet": "{}"}}'
    raw = text.encode()
    path = tmp_path / "dup.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(ModelFileError, match="appears twice"):
        read_metadata(path)
    reliability.fault()
