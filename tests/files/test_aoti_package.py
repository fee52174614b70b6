"""AOTInductor deployment: `rejectnet.export_aoti` and the package it writes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

import rejectnet
from rejectnet import RejectHead
from rejectnet.files.aoti_package import _find_compiler
from rejectnet.input_spec import InputSpec
from rejectnet.models import SmallCNN

needs_compiler = pytest.mark.skipif(_find_compiler() is None, reason="no C++ compiler")


def _net(score: str, temperature: float = 1.0) -> RejectHead:
    torch.manual_seed(0)
    model = SmallCNN(num_classes=4, image_size=8, channels=(4, 8), hidden=16)
    net = RejectHead.wrap(model, k=3).eval()
    if score == "weighted_reject":
        net.score_weights.copy_(torch.tensor([0.5, 2.0, 1.0]))
    if temperature != 1.0:
        net.set_temperature(temperature)
    g = torch.Generator().manual_seed(1)
    net.calibrate([torch.randn(64, 1, 8, 8, generator=g)], coverage=0.6, score=score)
    return net


def _images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g) * 1.5


@needs_compiler
@pytest.mark.parametrize(
    ("score", "temperature", "dynamic"),
    [("weighted_reject", 1.7, True), ("max_reject", 1.0, False)],
)
def test_package_decides_like_predict(
    score: str, temperature: float, dynamic: bool, tmp_path: Path
) -> None:
    net = _net(score, temperature)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    example = _images(4, seed=0)
    example_copy = example.clone()
    path = rejectnet.export_aoti(
        net, tmp_path / "sub" / "model.pt2", example, dynamic_batch=dynamic
    )
    assert path == tmp_path / "sub" / "model.pt2" and path.is_file()
    # exporting changed neither the network nor the example
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert torch.equal(example, example_copy)
    compiled = rejectnet.load_aoti(path)
    assert compiled.input_spec == InputSpec((1, 8, 8), torch.float32)
    assert compiled.batch_size == (None if dynamic else 4) and compiled.score == score
    assert compiled.threshold == float(net.threshold)
    assert compiled.device == torch.device("cpu")
    seen_both = False
    # other batch sizes than the example's, or six batches of its size
    sizes = [(1, 11), (7, 17), (33, 43)] if dynamic else [(4, 20 + i) for i in range(6)]
    for n, seed in sizes:
        x = _images(n, seed=seed)
        labels, s, is_ood = compiled(x)
        want = net.predict(x)
        assert labels.shape == (n,) and labels.dtype == torch.int64 and is_ood.dtype == torch.bool
        assert torch.allclose(s, want.ood_score, rtol=0.0, atol=1e-5)
        clear = (want.ood_score.double() - float(net.threshold)).abs() > 1e-5
        assert torch.equal(is_ood[clear], want.is_ood[clear])
        assert torch.equal(labels[clear], want.labels[clear])
        seen_both |= bool(want.is_ood.any()) and bool((~want.is_ood).any())
    assert seen_both, "the test should see both decisions"
    # non-finite inputs: rejected with a NaN score, the other rows decided as usual
    x = _images(4, seed=3)
    x[1, 0, 7, 7] = float("nan")
    x[3, 0, 0, 0] = float("-inf")
    labels, s, is_ood = compiled(x)
    assert s.isnan().tolist() == [False, True, False, True]
    assert is_ood[[1, 3]].all() and (labels[[1, 3]] == rejectnet.REJECTED).all()
    d_labels, d_score, d_ood = net.deployable()(x)
    assert torch.equal(is_ood, d_ood) and torch.equal(labels, d_labels)
    assert torch.equal(s.isnan(), d_score.isnan())
    # a non-contiguous batch is decided like its contiguous copy, and left as it is
    x = _images(8, seed=4)[::2]
    held = x.clone()
    assert not x.is_contiguous()
    for got, want_t in zip(compiled(x), compiled(x.contiguous()), strict=True):
        assert torch.equal(got, want_t)
    assert torch.equal(x, held)
    # what the compiled code would read out of bounds is refused, naming x
    with pytest.raises(ValueError, match=r"x .*\(N, 1, 8, 8\)"):
        compiled(torch.zeros(4, 1, 6, 6))
    with pytest.raises(TypeError, match="float32"):
        compiled(torch.zeros(4, 1, 8, 8, dtype=torch.float64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        compiled([[0.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="package runs on cpu"):
        compiled(torch.zeros(4, 1, 8, 8, device="meta"))
    # a tensor subclass takes the full checks and runs
    param = torch.nn.Parameter(_images(4, seed=5), requires_grad=False)
    assert torch.equal(compiled(param)[0], compiled(param.data)[0])
    if not dynamic:
        with pytest.raises(ValueError, match="exactly 4 samples"):
            compiled(torch.zeros(5, 1, 8, 8))
    assert "AOTIDeployedModel(input=" in repr(compiled)


def test_arguments_are_checked_before_compiling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = _net("sum_reject")
    x = _images(4, seed=0)
    with pytest.raises(ValueError, match=r"path must end in \.pt2"):
        rejectnet.export_aoti(net, tmp_path / "model.so", x)
    with pytest.raises(RuntimeError, match="calibrate"):
        rejectnet.export_aoti(RejectHead.wrap(nn.Linear(8, 3), k=2), tmp_path / "m.pt2", x)
    with pytest.raises(TypeError, match="RejectHead or a DeployedModel"):
        rejectnet.export_aoti(nn.Linear(8, 3), tmp_path / "m.pt2", x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2"):
        rejectnet.export_aoti(net, tmp_path / "m.pt2", x[:1])
    monkeypatch.setenv("CXX", "no-such-compiler-rejectnet")
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler"):
        rejectnet.export_aoti(net, tmp_path / "m.pt2", x)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_compiler_lookup_follows_cxx(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "my-cxx"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    assert _find_compiler() == str(fake)
    monkeypatch.delenv("CXX")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert _find_compiler() is None


def _fake_package(path: Path, meta: dict[str, str] | None, isa: str = "AVX2") -> Path:
    """A .pt2-shaped zip holding only AOTInductor's metadata entry (no code)."""
    entry = {"AOTI_DEVICE_KEY": "cpu", "AOTI_CPU_ISA": isa, **(meta or {})}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("m/data/aotinductor/model/abc.wrapper_metadata.json", json.dumps(entry))
    return path


def test_load_refuses_what_export_aoti_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match=r"\.pt2"):
        rejectnet.load_aoti(tmp_path / "model.onnx")
    with pytest.raises(FileNotFoundError, match="no package"):
        rejectnet.load_aoti(tmp_path / "missing.pt2")
    (tmp_path / "text.pt2").write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable .pt2 package"):
        rejectnet.load_aoti(tmp_path / "text.pt2")
    with zipfile.ZipFile(tmp_path / "empty.pt2", "w") as archive:
        archive.writestr("other.txt", "x")
    with pytest.raises(ValueError, match="not an AOTInductor package"):
        rejectnet.load_aoti(tmp_path / "empty.pt2")
    with pytest.raises(ValueError, match="not written by rejectnet.export_aoti"):
        rejectnet.load_aoti(_fake_package(tmp_path / "foreign.pt2", None))
    bad = {"rejectnet": json.dumps({"input_spec": {"shape": [1], "dtype": "float99"}})}
    with pytest.raises(ValueError, match="malformed rejectnet metadata"):
        rejectnet.load_aoti(_fake_package(tmp_path / "bad.pt2", bad))
    # a package built for AVX-512 is refused on a CPU without it (it would crash there)
    good = {
        "rejectnet": json.dumps(
            {
                "version": "0",
                "input_spec": {"shape": [1, 8, 8], "dtype": "float32"},
                "batch": None,
                "device": "cpu",
                "score": "sum_reject",
                "threshold": 0.5,
            }
        )
    }
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    with pytest.raises(RuntimeError, match="AVX-512"):
        rejectnet.load_aoti(_fake_package(tmp_path / "avx512.pt2", good, isa="AVX512 AVX512_VNNI"))
