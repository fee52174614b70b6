"""The composed outlier signal and the training-loop contract."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rejectnet import RejectHead
from rejectnet.losses import SelfSupervisedRejectLoss
from rejectnet.outliers import (
    Blend,
    ClusterLabeler,
    ComposedSignal,
    Jigsaw,
    OutlierSignal,
    PoolRows,
    Stitch,
    VirtualOutliers,
    split_counts,
)


@settings(max_examples=50, deadline=None)
@given(
    total=st.integers(0, 500),
    shares=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=6).filter(lambda s: sum(s) > 0),
)
def test_split_counts_sum_and_stay_close(total: int, shares: list[float]) -> None:
    counts = split_counts(total, shares)
    assert sum(counts) == total and all(c >= 0 for c in counts)
    s = sum(shares)
    assert all(abs(c - total * w / s) < 1 + 1e-9 for c, w in zip(counts, shares, strict=True))


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (
        torch.rand(8, 1, 8, 8, generator=g),
        torch.arange(8) % 4,
        torch.rand(40, 1, 8, 8, generator=g),
    )


def test_default_signal_is_the_pool_batch() -> None:
    x_in, y, x_out = _batch()
    out = ComposedSignal().outlier_batch(x_in, y, x_out, 40)
    assert out is not None and torch.equal(out, x_out) and out is not x_out


def test_rows_by_share_in_order_pool_rows_distinct_and_wrapping() -> None:
    x_in, y, x_out = _batch()
    sig = ComposedSignal([(PoolRows(), 0.5), (Blend(0.0), 0.25), (Jigsaw(2), 0.25)])
    out = sig.outlier_batch(x_in, y, x_out, 40)
    assert out is not None and out.shape == (40, 1, 8, 8)
    assert torch.equal(out[:20], x_out[:20])  # pool share first
    assert torch.equal(out[20:30], x_out[20:30])  # Blend(0) = the NEXT pool rows
    # a short pool batch (the last of an epoch) wraps around
    short = sig.outlier_batch(x_in, y, x_out[:15], 40)
    assert short is not None and short.shape == (40, 1, 8, 8)
    assert torch.equal(short[:15], x_out[:15]) and torch.equal(short[15:20], x_out[:5])


def test_deterministic_for_a_seed_and_inputs_unchanged() -> None:
    x_in, y, x_out = _batch()
    before = [t.clone() for t in (x_in, y, x_out)]
    sig = ComposedSignal([(PoolRows(), 0.5), (Jigsaw(2), 0.25), (Stitch(), 0.25)])
    torch.manual_seed(1)
    a = sig.outlier_batch(x_in, y, x_out, 40)
    torch.manual_seed(1)
    b = sig.outlier_batch(x_in, y, x_out, 40)
    assert a is not None and b is not None and torch.equal(a, b)
    for t, t0 in zip((x_in, y, x_out), before, strict=True):
        assert torch.equal(t, t0)
    g1 = ComposedSignal([(Jigsaw(2), 1.0)], generator=torch.Generator().manual_seed(3))
    g2 = ComposedSignal([(Jigsaw(2), 1.0)], generator=torch.Generator().manual_seed(3))
    assert torch.equal(g1.outlier_batch(x_in, y, None, 9), g2.outlier_batch(x_in, y, None, 9))  # type: ignore[arg-type]


def test_no_pool_synthesis_only_and_virtual_only() -> None:
    x_in, y, _ = _batch()
    synth = ComposedSignal([(Jigsaw(2), 1.0), (Stitch(), 1.0)])
    assert not synth.uses_pool
    synth.validate(has_pool=False)
    out = synth.outlier_batch(x_in, y, None, 13)
    assert out is not None and out.shape == (13, 1, 8, 8)
    assert ComposedSignal([], virtual=VirtualOutliers()).outlier_batch(x_in, y, None, 5) is None


def test_pool_needed_but_absent_names_outlier_loader() -> None:
    x_in, y, _ = _batch()
    sig = ComposedSignal([(Blend(0.1), 1.0), (Jigsaw(), 1.0)])
    assert sig.uses_pool
    with pytest.raises(ValueError, match="outlier_loader=None"):
        sig.validate(has_pool=False)
    with pytest.raises(ValueError, match="outlier_loader=None"):
        sig.outlier_batch(x_in, y, None, 10)


def test_bad_arguments() -> None:
    x_in, y, x_out = _batch()
    with pytest.raises(TypeError, match="OutlierSource"):
        ComposedSignal([("jigsaw", 1.0)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"\(source, share\)"):
        ComposedSignal([Jigsaw()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="share"):
        ComposedSignal([(Jigsaw(), -1.0)])
    with pytest.raises(ValueError, match="at least one share"):
        ComposedSignal([(Jigsaw(), 0.0)])
    with pytest.raises(TypeError, match="virtual"):
        ComposedSignal(virtual="vos")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_outliers"):
        ComposedSignal().outlier_batch(x_in, y, x_out, -1)
    with pytest.raises(ValueError, match="differ"):
        ComposedSignal().outlier_batch(x_in, y, torch.rand(4, 1, 6, 6), 4)


def test_state_dict_round_trip_and_mismatch() -> None:
    assert isinstance(ComposedSignal(), OutlierSignal)
    sig = ComposedSignal(virtual=VirtualOutliers(queue_size=8))
    state = sig.state_dict()
    other = ComposedSignal(virtual=VirtualOutliers(queue_size=8))
    other.load_state_dict(state)
    with pytest.raises(ValueError, match="disagree"):
        ComposedSignal().load_state_dict(state)
    with pytest.raises(ValueError, match="mapping"):
        sig.load_state_dict({"queue": 1})


def test_the_loop_contract_trains_a_wrapped_model() -> None:
    """One forward over cat([x_in, x_out]) plus virtual logits; the loss falls."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
    net = RejectHead.wrap(model, k=3)
    sig = ComposedSignal(
        [(PoolRows(), 0.5), (Jigsaw(2), 0.5)], virtual=VirtualOutliers(queue_size=32)
    )
    loss_fn = SelfSupervisedRejectLoss(4, 1.0, pseudo_labels=ClusterLabeler())
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    y = torch.arange(16) % 4
    x_in = torch.zeros(16, 1, 8, 8)
    for c in range(4):
        x_in[y == c, :, 2 * c : 2 * c + 2] = 1.0
    x_pool = torch.rand(48, 1, 8, 8)
    sig.attach(net)
    losses, widths = [], []
    try:
        for _ in range(40):
            x_out = sig.outlier_batch(x_in, y, x_pool, 48)
            assert x_out is not None
            logits = net(torch.cat([x_in, x_out]))
            lo = logits[16:]
            extra = sig.extra_outlier_logits(16, y)
            if extra is not None:
                widths.append(extra.shape)
                lo = torch.cat([lo, extra])
            loss = loss_fn(logits[:16], y, lo)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        sig.detach()
    assert widths and widths[0] == (16, 7)  # virtual outliers after the 32-row warm-up
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


# ---------------------------------------------------------------- fingerprint


def _every_piece() -> list[object]:
    from rejectnet.outliers import Overlay, Rotate, Warp, recommended

    return [
        PoolRows(),
        Blend(0.1),
        Blend((0.05, 0.2)),
        Jigsaw(2),
        Jigsaw(3),
        Stitch(),
        Overlay(),
        Rotate(),
        Rotate((180,)),
        Warp(),
        Warp(knots=7),
        VirtualOutliers(),
        VirtualOutliers(ridge=0.5),
        ClusterLabeler(),
        ClusterLabeler(temperature=20),
        recommended(),
        recommended(pool=False),
        ComposedSignal([(Jigsaw(2), 1.0)], VirtualOutliers(queue_size=64)),
        ComposedSignal([(Jigsaw(2), 1.0)], VirtualOutliers(queue_size=65)),
        "random",
        None,
    ]


def test_fingerprint_tells_every_option_value_apart_and_round_trips() -> None:
    import json

    from rejectnet.outliers.signal import fingerprint

    prints = [fingerprint(p) for p in _every_piece()]
    texts = [json.dumps(f, sort_keys=True) for f in prints]
    assert len(set(texts)) == len(texts), "two different pieces fingerprint equal"
    for f, t in zip(prints, texts, strict=True):
        assert isinstance(f, dict) and "class" in f and json.loads(t) == f
    # built again with the same options: equal (a fresh object, normalised values)
    again = [json.dumps(fingerprint(p), sort_keys=True) for p in _every_piece()]
    assert again == texts


def test_fingerprint_names_the_class_and_normalises_equal_options() -> None:
    from rejectnet.outliers import Rotate
    from rejectnet.outliers.signal import fingerprint

    assert fingerprint(Rotate()) != fingerprint(Jigsaw(2))
    assert fingerprint(Blend(0.1)) != fingerprint(Blend(0.45))
    assert fingerprint(ClusterLabeler(temperature=1)) != fingerprint(ClusterLabeler(temperature=20))
    assert fingerprint(ClusterLabeler(temperature=1)) == fingerprint(ClusterLabeler(1.0))
    assert fingerprint(Stitch([0.3, 0.6])) == fingerprint(Stitch((0.3, 0.6)))
    assert fingerprint(Jigsaw(2))["class"] == "rejectnet.outliers.synthesis.Jigsaw"
    # a nested option (the virtual outliers' ridge) reaches the top-level fingerprint
    a = ComposedSignal([], VirtualOutliers(ridge=0.01))
    b = ComposedSignal([], VirtualOutliers(ridge=0.02))
    assert fingerprint(a) != fingerprint(b)
    # a generator enters by its seed; the learned queue never enters
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    assert fingerprint(ComposedSignal(generator=g1)) != fingerprint(ComposedSignal(generator=g2))
    vo = VirtualOutliers(queue_size=8)
    before = fingerprint(vo)
    vo.feats = torch.ones(8, 4)
    assert fingerprint(vo) == before


def test_fingerprint_of_user_objects_and_functions() -> None:
    import json

    from rejectnet.outliers.signal import fingerprint

    class MySource:
        needs_pool = False

        def __init__(self, scale: float) -> None:
            self.scale = scale
            self._cache = object()

        def __call__(self, x_in, y, x_out, n, generator=None):  # type: ignore[no-untyped-def]
            return x_in[:n] * self.scale

    def my_labeler(logits: torch.Tensor, c: int) -> torch.Tensor:
        return logits.argmax(1)

    assert fingerprint(MySource(1.0)) != fingerprint(MySource(2.0))
    assert fingerprint(MySource(1.0)) == fingerprint(MySource(1.0))
    f = fingerprint(ComposedSignal([(MySource(2.0), 1.0)]))
    assert json.loads(json.dumps(f)) == f
    assert "my_labeler" in fingerprint(my_labeler)["name"]
    nan = fingerprint(float("nan"))
    assert json.loads(json.dumps(nan, allow_nan=False)) == nan
    t1, t2 = torch.zeros(3), torch.ones(3)
    assert fingerprint(t1) != fingerprint(t2) and fingerprint(t1) == fingerprint(torch.zeros(3))
    import numpy as np

    assert fingerprint([np.int64(3)]) == fingerprint([3])  # numpy numbers as values
    assert fingerprint([np.float32(0.5)]) == fingerprint([0.5])
    assert fingerprint({1, 2}) != fingerprint({1, 3}) and fingerprint({2, 1}) == fingerprint({1, 2})
    assert fingerprint(np.zeros(2)) != fingerprint(np.ones(2))
    assert fingerprint(b"ab") != fingerprint(b"ac")
    for f in (fingerprint({1, 2}), fingerprint(np.zeros(2)), fingerprint(b"ab")):
        assert json.loads(json.dumps(f, allow_nan=False)) == f


def test_repr_shows_every_declared_option() -> None:
    from rejectnet.outliers import Warp

    assert repr(Warp(knots=7)) == "Warp(strength=0.4, knots=7)"
    assert "ridge=0.5" in repr(VirtualOutliers(ridge=0.5))
    assert repr(ComposedSignal([(Jigsaw(2), 1.0)])).startswith(
        "ComposedSignal(parts=[(Jigsaw(grid=2), 1.0)]"
    )
