"""ONNX files (rejectnet.files.onnx_file, public as ``rejectnet.export_onnx``): the graph
decides like ``predict()`` and stays small; bad arguments are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import rejectnet
from rejectnet import RejectHead
from tests.test_deployed import _images, _net


@pytest.mark.parametrize(
    "score", ["sum_reject", "weighted_reject", "max_reject", "entropy_diff", "msp", "energy"]
)
def test_export_onnx_matches_torch(score: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    net = _net(score)
    path = rejectnet.export_onnx(net, tmp_path / "model.onnx", _images(4))
    assert path.exists()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["labels", "ood_score", "is_ood"]
    for n in (1, 7, 33):  # other batch sizes than the example's
        x = _images(n, seed=10 + n)
        labels, s, is_ood = (torch.from_numpy(a) for a in session.run(None, {"images": x.numpy()}))
        want = net.predict(x)
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert torch.allclose(s, want.ood_score, rtol=0.0, atol=1e-5)
        clear = (want.ood_score.double() - float(net.threshold)).abs() > 1e-5
        assert torch.equal(is_ood[clear], want.is_ood[clear])
        assert torch.equal(labels[clear], want.labels[clear])
    # non-finite inputs are rejected by the graph, like by the deployed module
    x = _images(5, seed=3)
    x[1, 0, 7, 7] = float("nan")
    x[3, 0, 0, 0] = float("-inf")
    labels, s, is_ood = (torch.from_numpy(a) for a in session.run(None, {"images": x.numpy()}))
    d_labels, d_score, d_ood = net.deployable()(x)
    assert is_ood.tolist() == d_ood.tolist() and bool(is_ood[1]) and bool(is_ood[3])
    assert torch.equal(labels, d_labels) and torch.equal(s.isnan(), d_score.isnan())


def test_exported_graph_has_few_nodes(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    net = _net()
    path = rejectnet.export_onnx(net, tmp_path / "model.onnx", _images(4))
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    last_gemm = len(ops) - 1 - ops[::-1].index("Gemm")
    tail = ops[last_gemm + 1 :]
    # one Gemm for the C + k logits (no Concat); then the input guard (Reshape, MatMul by
    # zeros), Softmax, the score's MatMul plus the guard (Add), the comparison
    # (LessOrEqual, Not), the arg-max over the classes (Slice, ArgMax) and the mask (Where)
    assert ops.count("Gemm") == 2 and "Concat" not in ops, ops
    assert "ReduceLogSumExp" not in ops and "Exp" not in ops and "Cast" not in tail, ops
    assert len(tail) <= 10, tail


def test_export_onnx_arguments(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    with pytest.raises(RuntimeError, match="calibrate"):
        rejectnet.export_onnx(
            RejectHead.wrap(nn.Linear(8, 3), k=2), tmp_path / "m.onnx", torch.randn(4, 8)
        )
    with pytest.raises(TypeError, match="RejectHead or a DeployedModel"):
        rejectnet.export_onnx(nn.Linear(8, 3), tmp_path / "m.onnx", torch.randn(4, 8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2"):
        rejectnet.export_onnx(_net(), tmp_path / "m.onnx", _images(1))
