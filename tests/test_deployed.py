"""Deployment: the deployable module, torch.compile and torch.export (ONNX: tests/files)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import rejectnet
from rejectnet import DeployedModel, RejectHead
from rejectnet.models import SmallCNN


def _net(score: str = "sum_reject") -> RejectHead:
    torch.manual_seed(0)
    model = SmallCNN(num_classes=4, image_size=8, channels=(4, 8), hidden=16)
    net = RejectHead.wrap(model, k=3).eval()
    if score == "weighted_reject":
        net.score_weights.copy_(torch.tensor([0.5, 2.0, 1.0]))
    g = torch.Generator().manual_seed(1)
    net.calibrate([torch.randn(64, 1, 8, 8, generator=g)], coverage=0.6, score=score)
    return net


def _images(n: int, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g) * 1.5


def _assert_matches_predict(
    net: RejectHead, out: tuple[torch.Tensor, ...], x: torch.Tensor
) -> None:
    pred = net.predict(x)
    labels, score, is_ood = out
    assert torch.equal(labels, pred.labels)
    assert torch.equal(score, pred.ood_score)
    assert torch.equal(is_ood, pred.is_ood)
    assert bool(is_ood.any()) and bool((~is_ood).any()), "the test should see both decisions"


@pytest.mark.parametrize(
    "score", ["sum_reject", "max_reject", "weighted_reject", "entropy_reject", "msp", "energy"]
)
def test_deployable_computes_what_predict_computes(score: str) -> None:
    net = _net(score)
    dep = net.deployable()
    x = _images(40)
    with torch.inference_mode():
        out = dep(x)
    assert out[0].dtype == torch.int64 and out[2].dtype == torch.bool
    assert dep.score == score and float(dep.threshold) == float(net.threshold)
    _assert_matches_predict(net, out, x)


def test_deployable_is_a_frozen_copy_in_eval_mode() -> None:
    net = _net()
    net.train()
    dep = net.deployable()
    assert isinstance(dep, DeployedModel) and not dep.training and not dep.net.training
    assert net.training, "making a deployable leaves the original's mode alone"
    thr = float(net.threshold)
    net.set_threshold(thr + 1.0)
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    assert float(dep.threshold) == thr
    assert not torch.equal(next(dep.parameters()), next(net.parameters()))
    assert "threshold=" in repr(dep)


def test_deployable_needs_a_threshold() -> None:
    net = RejectHead.wrap(nn.Linear(8, 3), k=2)
    with pytest.raises(RuntimeError, match="calibrate"):
        net.deployable()


def test_non_finite_inputs_raise_in_predict_and_are_rejected_when_deployed() -> None:
    # predict() refuses non-finite input with a clear error; the deployed module (like the
    # exported graph, which cannot raise) rejects those rows and decides the others as usual
    net = _net()
    x = _images(6)
    x[1] = float("nan")
    x[4, 0, 2, 3] = float("inf")
    with pytest.raises(ValueError, match=r"rows 1, 4"):
        net.predict(x)
    labels, score, is_ood = net.deployable()(x)
    assert bool(score[1].isnan()) and bool(score[4].isnan())
    assert bool(is_ood[1]) and bool(is_ood[4]) and int(labels[1]) == rejectnet.REJECTED
    keep = torch.tensor([0, 2, 3, 5])
    ref = net.predict(x[keep])
    assert torch.equal(labels[keep], ref.labels) and torch.equal(score[keep], ref.ood_score)


@pytest.mark.parametrize("shape", [(5, 6), (5, 2, 3), (5, 1, 2, 3)])
@pytest.mark.parametrize("score", ["sum_reject", "weighted_reject", "max_reject", "energy"])
def test_eager_input_guard_for_every_input_rank(shape: tuple[int, ...], score: str) -> None:
    # the eager forward flattens (or not) each rank its own way for the input guard: a
    # non-finite row is rejected with a NaN score, the others are predict()'s bit for bit,
    # a transposed (non-contiguous) batch and an empty batch included
    torch.manual_seed(0)
    d = math.prod(shape[1:])
    net = RejectHead.wrap(nn.Sequential(nn.Flatten(), nn.Linear(d, 3)), k=2).eval()
    g = torch.Generator().manual_seed(3)
    net.calibrate([torch.randn(64, *shape[1:], generator=g)], coverage=0.6, score=score)
    dep = net.deployable()
    x = torch.randn(*shape, generator=g)
    if len(shape) >= 3:
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)  # same values, other strides
    x[1] = float("nan")
    x[3] = float("-inf")
    labels, s, is_ood = dep(x)
    assert bool(s[1].isnan()) and bool(s[3].isnan()) and bool(is_ood[1]) and bool(is_ood[3])
    assert int(labels[1]) == int(labels[3]) == rejectnet.REJECTED
    keep = torch.tensor([0, 2, 4])
    ref = net.predict(x[keep])
    assert torch.equal(s[keep], ref.ood_score) and torch.equal(labels[keep], ref.labels)
    assert torch.equal(is_ood[keep], ref.is_ood)
    empty = dep(x[:0])
    assert [tuple(t.shape) for t in empty] == [(0,), (0,), (0,)]


def test_deployable_leaves_the_input_untouched() -> None:
    net = _net()
    x = _images(8)
    x[2] = float("nan")
    before, version = x.clone(), x._version
    with torch.inference_mode():
        net.deployable()(x)
    net.deployable()(x)
    assert x._version == version
    assert torch.equal(x.isnan(), before.isnan()) and torch.equal(x[:2], before[:2])


def test_predict_and_ood_score_under_inference_mode() -> None:
    net = _net()
    x = _images(16)
    with torch.no_grad():
        ref = net.predict(x)
        ref_score = net.ood_score(x)
    with torch.inference_mode():
        pred = net.predict(x)
        s = net.ood_score(x)
    assert torch.equal(pred.labels, ref.labels) and torch.equal(pred.probs, ref.probs)
    assert torch.equal(s, ref_score)


def test_torch_compile_of_head_and_deployable() -> None:
    net = _net()
    dep = net.deployable()
    x = _images(12)
    compiled_net = torch.compile(net, backend="aot_eager")
    compiled_dep = torch.compile(dep, backend="aot_eager")

    def scores_of(m: RejectHead, inp: torch.Tensor) -> torch.Tensor:
        return m.ood_score(inp)

    with torch.no_grad():
        assert torch.allclose(compiled_net(x), net(x), rtol=0.0, atol=1e-6)
        got = compiled_dep(x)
        want = dep(x)
        score = torch.compile(scores_of, backend="aot_eager")(net, x)
    assert torch.equal(got[0], want[0]) and torch.equal(got[2], want[2])
    assert torch.allclose(got[1], want[1], rtol=0.0, atol=1e-6)
    assert torch.allclose(score, net.ood_score(x), rtol=0.0, atol=1e-6)


def test_torch_export_with_dynamic_batch() -> None:
    net = _net()
    dep = net.deployable()
    batch = torch.export.Dim("batch")
    program = torch.export.export(dep, (_images(4),), dynamic_shapes={"x": {0: batch}})
    x = _images(9, seed=5)
    got = program.module()(x)
    _assert_matches_predict(net, tuple(got), x)
    # a graph cannot raise: a non-finite input gets a NaN score and is rejected
    x[2] = float("nan")
    labels, score, is_ood = program.module()(x)
    assert bool(score[2].isnan()) and bool(is_ood[2]) and int(labels[2]) == rejectnet.REJECTED
    assert torch.equal(is_ood[3:], got[2][3:])


def test_export_module_does_not_import_the_head() -> None:
    import ast
    import inspect

    import rejectnet.decision
    import rejectnet.deployed
    import rejectnet.export
    import rejectnet.files.onnx_file

    for mod in (
        rejectnet.export,
        rejectnet.deployed,
        rejectnet.files.onnx_file,
        rejectnet.decision,
    ):
        tree = ast.parse(inspect.getsource(mod))
        imported = {
            n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
        } | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "rejectnet.head" not in imported, mod.__name__


def test_deployable_keeps_decision_constants_through_casts() -> None:
    net = _net()
    dep = net.deployable().double()
    assert dep.threshold.dtype == torch.float64 and dep.decision.thr32.dtype == torch.float32
    x = _images(30)
    _, score, is_ood = dep(x.double())
    assert score.dtype == torch.float64
    assert torch.equal(is_ood, score > float(net.threshold))


def test_head_fast_path_keeps_hooks_and_subclasses_working() -> None:
    torch.manual_seed(0)
    base = nn.Linear(8, 3)
    net = RejectHead.wrap(nn.Sequential(base), k=2, inplace=True)
    x = torch.randn(4, 8)
    fast = net(x)
    calls: list[int] = []
    handle = net.head.base.register_forward_hook(lambda m, a, o: calls.append(1))
    assert torch.equal(net(x), fast) and calls == [1]
    handle.remove()
    handle = net.head.base.register_forward_hook(lambda m, a, o: o * 0)
    assert torch.equal(net(x)[:, :3], torch.zeros(4, 3)), "a hook that edits the output applies"
    handle.remove()
    assert torch.equal(net(x)[:, :3], base(x))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    score=st.sampled_from(
        ["sum_reject", "weighted_reject", "max_reject", "entropy_reject", "msp", "max_logit"]
    ),
    temperature=st.sampled_from([1.0, 0.5, 2.5]),
    coverage=st.floats(0.3, 1.0),
    scale=st.sampled_from([0.1, 1.0, 30.0]),
)
def test_deployable_equals_predict_bit_for_bit(
    seed: int, score: str, temperature: float, coverage: float, scale: float
) -> None:
    torch.manual_seed(seed)
    net = RejectHead.wrap(nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)), k=2)
    net.eval()
    net.score_weights.copy_(torch.tensor([0.25, 3.0]))
    net.set_temperature(temperature)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(40, 5, generator=g) * scale
    net.calibrate([x[:20]], coverage=coverage, score=score)
    pred = net.predict(x)
    labels, s, is_ood = net.deployable()(x)
    assert torch.equal(s, pred.ood_score) and torch.equal(is_ood, pred.is_ood)
    assert torch.equal(labels, pred.labels)
    # the decision is exactly the float64 comparison of the returned score
    assert torch.equal(is_ood, s.double() > float(net.threshold))
    # calibration data: the promised coverage, exactly
    kept = (~net.predict(x[:20]).is_ood).double().mean().item()
    assert kept >= coverage - 1e-9
