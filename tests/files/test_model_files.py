"""save/load: safetensors only, metadata validated, mismatches refused."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

import rejectnet
from rejectnet import RejectHead
from rejectnet.serialization import ModelFileError, read_metadata
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


# ---------------------------------------------------------------- input spec, temperature, old
def _old_style(src: Path, dest: Path, *, drop: tuple[str, ...] = ("temperature",)) -> Path:
    """The file an older rejectnet wrote: no sha256, no input_spec, no temperature tensor."""
    meta = {
        k: v for k, v in json.loads(_raw_meta(src)).items() if k not in ("sha256", "input_spec")
    }
    state = {n: t for n, t in load_file(str(src)).items() if n not in drop}
    save_file(state, str(dest), metadata={"rejectnet": json.dumps(meta)})
    return dest


def _raw_meta(path: Path) -> str:
    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {})["rejectnet"]


def test_input_spec_round_trip(tmp_path: Path, images: torch.Tensor) -> None:
    net = _net()
    net.calibrate([images], coverage=0.9)
    assert net.input_spec is not None
    path = rejectnet.save(net, tmp_path / "m.safetensors")
    assert json.loads(_raw_meta(path))["input_spec"] == net.input_spec.to_dict()
    assert read_metadata(path)["input_spec"] == net.input_spec
    loaded = rejectnet.load(path, TinyCNN())
    assert loaded.input_spec == net.input_spec
    with pytest.raises(ValueError, match=r"\bx\b"):
        loaded.predict(images[:, :, :5])  # the restored spec names what is wrong
    other = _net(seed=1)
    other.calibrate([images[:, :, :6, :6]], coverage=0.9)
    assert rejectnet.load(path, other).input_spec == net.input_spec  # the file's spec wins


def test_file_without_input_spec_loads_with_none(tmp_path: Path, images: torch.Tensor) -> None:
    net = _net()
    net.calibrate([images], coverage=0.9)
    path = _old_style(rejectnet.save(net, tmp_path / "m.safetensors"), tmp_path / "old.safetensors")
    meta = read_metadata(path)
    assert meta["input_spec"] is None and meta["sha256"] is None
    loaded = rejectnet.load(path, TinyCNN())
    assert loaded.input_spec is None
    assert torch.equal(loaded.predict(images).labels, net.predict(images).labels)


@pytest.mark.parametrize(
    "spec",
    [
        "not a dict",
        {"shape": [1, 8, 8]},
        {"shape": [1, 8, 8], "dtype": "complex64"},
        {"shape": "1,8,8", "dtype": "float32"},
        {"shape": [1, -8, 8], "dtype": "float32"},
        {"shape": [1.5], "dtype": "float32"},
        {"shape": [1] * 17, "dtype": "float32"},
        {"shape": [1, 8, 8], "dtype": "float32", "extra": 1},
    ],
)
def test_invalid_input_spec_is_refused(spec: object, tmp_path: Path) -> None:
    path = rejectnet.save(_net(), tmp_path / "m.safetensors")
    meta = {**json.loads(_raw_meta(path)), "input_spec": spec}
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(str(path)), str(bad), metadata={"rejectnet": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="invalid 'input_spec'") as info:
        rejectnet.load(bad, TinyCNN())
    assert info.value.field == "input_spec" and str(bad) in str(info.value)


def test_temperature_round_trip_and_absent_means_one(tmp_path: Path, images: torch.Tensor) -> None:
    net = _net()
    net.temperature.fill_(0.5)
    path = rejectnet.save(net, tmp_path / "m.safetensors")
    assert float(rejectnet.load(path, TinyCNN()).temperature) == 0.5
    old = _old_style(path, tmp_path / "old.safetensors")
    assert "temperature" not in load_file(str(old))
    warm = _net(seed=2)
    warm.temperature.fill_(2.0)
    for target in (TinyCNN(), warm):
        loaded = rejectnet.load(old, target)
        assert float(loaded.temperature) == 1.0  # absent in the file: 1.0, not the model's
        assert loaded.temperature.dtype == torch.float32


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_temperature_is_refused(value: float, tmp_path: Path) -> None:
    path = rejectnet.save(_net(), tmp_path / "m.safetensors")
    state = {**load_file(str(path)), "temperature": torch.tensor(value)}
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata={"rejectnet": _raw_meta(path)})
    with pytest.raises(ModelFileError, match="temperature") as info:
        rejectnet.load(bad, TinyCNN())
    assert info.value.field == "temperature"


def test_files_of_the_previous_version_load(tmp_path: Path, images: torch.Tensor) -> None:
    """Format 1 as written before this change: no sha256, input_spec or temperature."""
    net = _net()
    net.set_threshold(0.3, "max")
    old = _old_style(rejectnet.save(net, tmp_path / "m.safetensors"), tmp_path / "old.safetensors")
    loaded = rejectnet.load(old, TinyCNN())
    assert torch.equal(loaded(images), net(images))
    assert float(loaded.threshold) == 0.3 and loaded.calibrated_score == "max_reject"
