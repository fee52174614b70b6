"""save/load: safetensors only, metadata validated, mismatches refused."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import rejectnet
from rejectnet import RejectHead
from rejectnet.serialization import read_metadata
from tests.conftest import TinyCNN


def _net(seed: int = 0) -> RejectHead:
    torch.manual_seed(seed)
    return RejectHead.wrap(TinyCNN(), k=3).eval()


def test_round_trip_identical_outputs(tmp_path: Path, images: torch.Tensor) -> None:
    net = _net()
    net.set_threshold(0.3, "max")
    net.score_weights.copy_(torch.tensor([0.5, 1.0, 2.0]))
    path = rejectnet.save(net, tmp_path / "m.safetensors")
    meta = read_metadata(path)
    assert meta["num_classes"] == 4 and meta["k"] == 3 and meta["head"] == "fc2"
    assert meta["threshold"] == 0.3 and meta["score"] == "max_reject"
    assert meta["version"] == rejectnet.__version__
    fresh = TinyCNN()  # different random weights
    loaded = rejectnet.load(path, fresh).eval()
    assert isinstance(fresh.fc2, nn.Linear), "load must not modify the given model by default"
    assert torch.equal(loaded(images), net(images))
    assert loaded.calibrated_score == "max_reject" and float(loaded.threshold) == 0.3
    assert torch.equal(loaded.score_weights, net.score_weights)
    assert torch.equal(loaded.predict(images).labels, net.predict(images).labels)
    assert not list(tmp_path.glob("*.tmp")), "no temporary file left behind"


def test_load_into_wrapped_model(tmp_path: Path, images: torch.Tensor) -> None:
    net = _net()
    path = rejectnet.save(net, tmp_path / "m.safetensors")
    other = _net(seed=1)
    loaded = rejectnet.load(path, other)
    assert loaded is other and torch.equal(loaded(images), net(images))
    assert not loaded.is_calibrated


def test_num_classes_mismatch_names_both(tmp_path: Path) -> None:
    path = rejectnet.save(_net(), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match=r"C=4 classes.*C=7 outputs"):
        rejectnet.load(path, TinyCNN(num_classes=7))
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=r"C=4 classes and k=3.*C=4 and k=2"):
        rejectnet.load(path, RejectHead.wrap(TinyCNN(), k=2))


def test_architecture_mismatch(tmp_path: Path) -> None:
    path = rejectnet.save(_net(), tmp_path / "m.safetensors")
    model = TinyCNN()
    model.conv2 = nn.Conv2d(4, 8, 5, padding=2)
    with pytest.raises(ValueError, match=r"shape mismatch.*conv2"):
        rejectnet.load(path, model)


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="never unpickles"):
        rejectnet.load(path, TinyCNN())
    torch_file = tmp_path / "weights.safetensors"
    torch.save({"x": torch.zeros(2)}, torch_file)
    with pytest.raises(ValueError, match="not a safetensors file"):
        rejectnet.load(torch_file, TinyCNN())
    assert not marker.exists()


def test_foreign_safetensors_and_bad_metadata(tmp_path: Path) -> None:
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match="without rejectnet metadata"):
        rejectnet.load(plain, TinyCNN())
    good = read_metadata(rejectnet.save(_net(), tmp_path / "m.safetensors"))
    cases = {
        "k": -2,
        "num_classes": "4",
        "threshold": float("nan"),
        "head": 7,
        "score": "rm -rf /",
        "format": 99,
    }
    for field, value in cases.items():
        bad = dict(good, **{field: value})
        path = tmp_path / f"bad_{field}.safetensors"
        save_file({"w": torch.zeros(2)}, path, metadata={"rejectnet": json.dumps(bad)})
        with pytest.raises(ValueError, match=field if field != "score" else "Unknown|unknown"):
            rejectnet.load(path, TinyCNN())
    broken = tmp_path / "broken.safetensors"
    save_file({"w": torch.zeros(2)}, broken, metadata={"rejectnet": "{not json"})
    with pytest.raises(ValueError, match="not valid JSON"):
        read_metadata(broken)


def test_missing_file_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        rejectnet.load(tmp_path / "nope.safetensors", TinyCNN())
    with pytest.raises(FileNotFoundError, match="folder"):
        rejectnet.save(_net(), tmp_path / "no" / "m.safetensors")
    with pytest.raises(TypeError, match="RejectHead"):
        rejectnet.save(TinyCNN(), tmp_path / "m.safetensors")  # type: ignore[arg-type]


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = rejectnet.save(_net(), tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        rejectnet.load(path, TinyCNN())


def test_load_returns_eval_mode(tmp_path: Path, images: torch.Tensor) -> None:
    net = _net()
    net.set_threshold(0.5)
    path = rejectnet.save(net, tmp_path / "m.safetensors")
    fresh = TinyCNN().train()
    loaded = rejectnet.load(path, fresh)
    assert not loaded.training and fresh.training
    again = rejectnet.load(path, RejectHead.wrap(TinyCNN(), k=3).train())
    assert not again.training
