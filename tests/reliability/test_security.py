"""Loading never executes code: no pickle anywhere, metadata and buffers validated first.

Every malicious file here carries a pickle whose ``__reduce__`` would create a marker
file when unpickled; each test shows the file is refused and the marker never appears.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import rejectnet
from rejectnet import RejectHead
from rejectnet.data import load_npz
from rejectnet.finetune.checkpoint import (
    CURRENT,
    MAGIC,
    CheckpointError,
    latest_checkpoint,
    read_checkpoint,
)
from rejectnet.serialization import read_metadata
from tests.conftest import ReliabilityCounts, TinyCNN
from tests.reliability._crashjob import TOTAL_STEPS, run, single_thread
from tests.reliability._helpers import same_weights, snapshot


class Evil:
    """Unpickling this creates ``marker`` (``open(marker, "w")``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


class EvilShell:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _pickles(marker: Path) -> dict[str, bytes]:
    """Malicious payloads in every container torch or pickle would accept."""
    zipped = io.BytesIO()
    torch.save({"model": Evil(marker), "w": torch.zeros(2)}, zipped)
    legacy = io.BytesIO()
    torch.save({"model": Evil(marker)}, legacy, _use_new_zipfile_serialization=False)
    return {
        "pickle_protocol_0": pickle.dumps(EvilShell(marker), protocol=0),
        "pickle_protocol_2": pickle.dumps(Evil(marker), protocol=2),
        "pickle_protocol_5": pickle.dumps({"state": Evil(marker)}, protocol=5),
        "torch_save_zip": zipped.getvalue(),
        "torch_save_legacy": legacy.getvalue(),
    }


PAYLOADS = sorted(_pickles(Path("x")))


def test_the_payloads_really_are_malicious(tmp_path: Path, reliability: ReliabilityCounts) -> None:
    """Control: unpickled naively, each payload does create the marker."""
    for name in PAYLOADS:
        marker = tmp_path / f"pwned-{name}"
        data = _pickles(marker)[name]
        if name.startswith("torch_save"):
            torch.load(io.BytesIO(data), weights_only=False)
        else:
            pickle.loads(data)  # on purpose: the control experiment
        assert marker.exists(), name
        reliability.case()


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".bin"])
def test_rejectnet_load_refuses_pickles(
    payload: str, suffix: str, tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / f"model{suffix}"
    path.write_bytes(_pickles(marker)[payload])
    model = TinyCNN()
    before = snapshot(model)
    with pytest.raises(ValueError, match="never unpickles"):
        rejectnet.load(path, model)
    with pytest.raises(ValueError, match="never unpickles"):
        read_metadata(path)
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="never unpickles"):
        rejectnet.load(path, RejectHead.wrap(TinyCNN(), k=2), inplace=True)
    reliability.fault(3)
    assert not marker.exists()
    assert same_weights(model, before)


def _checkpoint_file(payload: bytes) -> bytes:
    """A file with the right magic and a valid checksum around ``payload``."""
    return MAGIC + hashlib.sha256(payload).digest() + payload


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("payload", PAYLOADS)
def test_read_checkpoint_refuses_pickles_with_valid_checksum(
    payload: str, tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / CURRENT
    path.write_bytes(_checkpoint_file(_pickles(marker)[payload]))
    with pytest.raises(CheckpointError, match="refused without executing it"):
        read_checkpoint(path)
    reliability.fault()
    assert not marker.exists()


def test_resume_skips_a_malicious_checkpoint(
    tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    """A tampered checkpoint.pt (valid checksum) is refused; the run resumes from prev."""
    with single_thread():
        reference, _ = run(None)
    folder = tmp_path / "ckpt"
    with single_thread():
        run(folder)  # complete: current = end of epoch 2, prev = step 5
    marker = tmp_path / "pwned"
    (folder / CURRENT).write_bytes(_checkpoint_file(_pickles(marker)["torch_save_zip"]))
    reliability.fault()
    with pytest.warns(UserWarning, match="refused without executing it"):
        state = latest_checkpoint(folder)
    assert state is not None and state["step"] == 5
    steps: list[int] = []

    class Rec(rejectnet.finetune.Callback):
        def on_step_end(self, loop: Any, step: int) -> None:
            steps.append(step)

    with single_thread():
        net, _ = run(folder, resume=True, callbacks=[Rec()])
    assert steps == [TOTAL_STEPS]
    assert same_weights(net, reference)
    assert not marker.exists()


def test_npz_with_a_malicious_object_array_is_refused(
    tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "data.npz"
    np.savez(path, x_test=np.array([Evil(marker), None], dtype=object))
    with pytest.raises(ValueError, match="unpickle"):
        load_npz(path)
    reliability.fault()
    assert not marker.exists()


def test_oversized_safetensors_header_is_refused(
    tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    """A header length of 2**62 must fail fast, not allocate."""
    path = tmp_path / "bomb.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b'{"__metadata__":{}}')
    with pytest.raises(ValueError, match="not a safetensors file"):
        rejectnet.load(path, TinyCNN())
    reliability.fault()


def test_zip_of_json_named_safetensors_is_refused(
    tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    path = tmp_path / "model.safetensors"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("rejectnet.json", json.dumps({"k": 2}))
    with pytest.raises(ValueError, match="not a safetensors file"):
        rejectnet.load(path, TinyCNN())
    reliability.fault()


# ---------------------------------------------------------------- metadata, validated first
def _good_file(tmp_path: Path, *, threshold: float | None = 0.25) -> tuple[Path, dict[str, Any]]:
    torch.manual_seed(0)
    net = RejectHead.wrap(TinyCNN(), k=3).eval()
    if threshold is not None:
        net.set_threshold(threshold, "max")
    path = rejectnet.save(net, tmp_path / "good.safetensors")
    return path, read_metadata(path)


def _rewrite(src: Path, dest: Path, meta: Any, **tensors: torch.Tensor) -> Path:
    state = {**load_file(str(src)), **tensors}
    header = meta if isinstance(meta, str) else json.dumps(meta)
    save_file(state, str(dest), metadata={"rejectnet": header})
    return dest


# Only cases that tests/test_serialization.py does not already cover.
BAD_METADATA: list[tuple[str, Any, str]] = [
    ("k", True, "'k'"),
    ("k", 2.5, "'k'"),
    ("k", 0, "'k'"),
    ("k", None, "'k'"),
    ("num_classes", 0, "'num_classes'"),
    ("num_classes", True, "'num_classes'"),
    ("num_classes", [4], "'num_classes'"),
    ("threshold", "0.25", "'threshold'"),
    ("threshold", True, "'threshold'"),
    ("threshold", float("inf"), "'threshold'"),
    ("threshold", float("-inf"), "'threshold'"),
    ("threshold", {"value": 0.25}, "'threshold'"),
    ("head", None, "'head'"),
    ("head", ["fc2"], "'head'"),
    ("head", "x" * 5000, "'head'"),
    ("head", "__class__", "head="),
    ("head", "fc2.weight", "head="),
    ("head", "conv1", "head="),
    ("head", "", "head="),
    ("version", 3, "'version'"),
    ("version", "v" * 200, "'version'"),
    ("score", 5, "'score'"),
    ("score", "x" * 40, "'score'"),
    ("score", "__import__('os')", "unknown score"),
    ("format", 0, "'format'"),
    ("format", "1", "'format'"),
    ("format", 1.0, "'format'"),
    ("format", True, "'format'"),
]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    BAD_METADATA,
    ids=[f"{f}={str(v)[:12]!r}" for f, v, _ in BAD_METADATA],
)
def test_bad_metadata_is_refused_before_use(
    field: str, value: Any, match: str, tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    good, meta = _good_file(tmp_path)
    path = _rewrite(good, tmp_path / "bad.safetensors", {**meta, field: value})
    model = TinyCNN()
    before = snapshot(model)
    with pytest.raises((ValueError, TypeError), match=match):
        rejectnet.load(path, model, inplace=True)
    reliability.fault()
    assert same_weights(model, before) and type(model.fc2) is torch.nn.Linear


@pytest.mark.parametrize(
    "header",
    [
        "[1, 2]",
        "null",
        "42",
        '"rejectnet"',
        '{"format": 1}',
        "{" * 10_000,
        "[" * 50_000 + "]" * 50_000,
    ],
    ids=["list", "null", "number", "string", "missing_fields", "unclosed", "deeply_nested"],
)
def test_metadata_that_is_not_an_object_is_refused(
    header: str, tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    good, _ = _good_file(tmp_path)
    path = _rewrite(good, tmp_path / "bad.safetensors", header)
    with pytest.raises(ValueError, match="metadata|JSON"):
        read_metadata(path)
    reliability.fault()


TAMPERED_BUFFERS: dict[str, dict[str, torch.Tensor]] = {
    "threshold_inf": {"threshold": torch.tensor(float("inf"), dtype=torch.float64)},
    "threshold_differs": {"threshold": torch.tensor(0.9, dtype=torch.float64)},
    "threshold_not_scalar": {"threshold": torch.zeros(2, dtype=torch.float64)},
    "score_differs": {"threshold_score": torch.tensor(list(b"sum_reject") + [0] * 22).byte()},
    "score_not_ascii": {"threshold_score": torch.full((32,), 200, dtype=torch.uint8)},
    "score_weights_negative": {"score_weights": torch.tensor([1.0, -1.0, 1.0])},
    "score_weights_nan": {"score_weights": torch.tensor([1.0, float("nan"), 1.0])},
}


@pytest.mark.parametrize("case", sorted(TAMPERED_BUFFERS))
def test_buffers_that_disagree_with_metadata_are_refused(
    case: str, tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    """The threshold, its score and the score weights decide; they are checked too."""
    good, meta = _good_file(tmp_path)
    path = _rewrite(
        good,
        tmp_path / "bad.safetensors",
        meta,
        **{f"{k}": v for k, v in TAMPERED_BUFFERS[case].items()},
    )
    model = TinyCNN()
    before = snapshot(model)
    with pytest.raises(ValueError, match="threshold|score_weights|altered"):
        rejectnet.load(path, model, inplace=True)
    reliability.fault()
    assert same_weights(model, before) and type(model.fc2) is torch.nn.Linear


def test_uncalibrated_file_with_a_threshold_tensor_is_refused(
    tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    good, meta = _good_file(tmp_path, threshold=None)
    assert meta["threshold"] is None
    path = _rewrite(
        good,
        tmp_path / "bad.safetensors",
        meta,
        threshold=torch.tensor(0.5, dtype=torch.float64),
    )
    with pytest.raises(ValueError, match="threshold"):
        rejectnet.load(path, TinyCNN())
    reliability.fault()
