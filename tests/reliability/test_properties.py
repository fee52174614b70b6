"""Property tests (hypothesis) that the rest of the suite does not already have.

Already covered elsewhere, and not repeated here:

* the pseudo-label rule of Algorithm 1:
  ``tests/finetune/test_objectives.py::test_pseudo_label_rule``;
* every metric against scikit-learn or brute force: ``tests/metrics/test_ood.py`` and
  ``tests/metrics/test_selective.py``;
* ``threshold_for_coverage`` / ``threshold_at_tpr`` on raw scores:
  ``tests/scores/test_thresholds.py``.

Added here: calibration end to end through ``RejectHead.calibrate`` and ``predict``
(the promised coverage holds on the calibration data, with the smallest threshold
that does), the numbers ``threshold_for_risk`` reports, and save-then-load giving
identical outputs and decisions.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import rejectnet
from rejectnet import RejectHead, scores
from rejectnet.scores.thresholds import _num_tests, _risk_bound
from tests.conftest import ReliabilityCounts
from tests.reliability._helpers import bit_equal, snapshot

SCORE_NAMES = scores.available()


def _mlp(features: int, c: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 12), nn.ReLU(), nn.Linear(12, c))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 120),
    batch=st.integers(1, 50),
    c=st.integers(2, 5),
    k=st.integers(1, 4),
    coverage=st.one_of(st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]), st.floats(0.01, 1.0)),
    score=st.sampled_from(SCORE_NAMES),
    seed=st.integers(0, 1000),
    ties=st.booleans(),
)
def test_calibrate_achieves_its_coverage_end_to_end(
    n: int,
    batch: int,
    c: int,
    k: int,
    coverage: float,
    score: str,
    seed: int,
    ties: bool,
    reliability: ReliabilityCounts,
) -> None:
    net = RejectHead.wrap(_mlp(6, c, seed), k=k).eval()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, 6, generator=g)
    if ties:  # duplicated inputs give tied scores at the threshold
        x = x[torch.randint(0, max(1, n // 3), (n,), generator=g)]
    loader = [x[i : i + batch] for i in range(0, n, batch)]
    result = net.calibrate(loader, coverage=coverage, score=score)
    reliability.case()

    assert net.calibrated_score == scores.spec(score).name
    assert float(net.threshold) == result.value and math.isfinite(result.value)
    s = torch.cat([net.ood_score(b) for b in loader]).double()
    accepted = s <= result.value
    # the promised coverage, achieved and reported
    assert int(accepted.sum()) >= coverage * n - 1e-9
    assert result.coverage == pytest.approx(float(accepted.double().mean()))
    # the smallest such threshold: the next observed score below it falls short
    below = s[s < result.value]
    if below.numel():
        assert int((s <= below.max()).sum()) < coverage * n - 1e-9
    # predict() applies exactly this decision, batch by batch
    pred_ood = torch.cat([net.predict(b).is_ood for b in loader])
    assert torch.equal(pred_ood, ~accepted)
    assert float((~pred_ood).double().mean()) >= coverage - 1e-9


@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(0, 20).map(float) | st.floats(-1e3, 1e3), st.booleans()),
        min_size=1,
        max_size=80,
    ),
    target=st.floats(0.05, 0.95),
    delta=st.sampled_from([0.001, 0.01, 0.1, 0.5]),
)
def test_threshold_for_risk_reports_what_it_achieves(
    data: list[tuple[float, bool]], target: float, delta: float, reliability: ReliabilityCounts
) -> None:
    s = np.array([v for v, _ in data])
    ok = np.array([b for _, b in data])
    reliability.case()
    try:
        r = scores.threshold_for_risk(s, ok, target_risk=target, delta=delta)
    except ValueError as err:
        assert "not achievable" in str(err)
        return
    accepted = s <= r.value
    n_acc = int(accepted.sum())
    errors = int((~ok[accepted]).sum())
    assert r.value in s and n_acc >= 1
    assert r.coverage == n_acc / len(s)
    assert r.risk == errors / n_acc
    assert r.risk_bound is not None and r.risk_bound <= target
    k_tests = _num_tests(len(np.unique(s)))
    assert r.risk_bound == pytest.approx(_risk_bound(errors, n_acc, delta / k_tests))
    assert r.risk <= r.risk_bound and r.delta == delta


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    c=st.integers(1, 6),
    k=st.integers(1, 5),
    threshold=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    score=st.sampled_from(SCORE_NAMES),
    weights_seed=st.none() | st.integers(0, 100),
    seed=st.integers(0, 1000),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_save_then_load_gives_identical_outputs(
    c: int,
    k: int,
    threshold: float | None,
    score: str,
    weights_seed: int | None,
    seed: int,
    dtype: torch.dtype,
    reliability: ReliabilityCounts,
) -> None:
    net = RejectHead.wrap(_mlp(5, c, seed), k=k).to(dtype).eval()
    if threshold is not None:
        net.set_threshold(threshold, score)
    if weights_seed is not None:
        w = torch.rand(k, generator=torch.Generator().manual_seed(weights_seed))
        net.score_weights.copy_(w)
    x = torch.randn(17, 5, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    with tempfile.TemporaryDirectory() as tmp:
        path = rejectnet.save(net, Path(tmp) / "net.safetensors")
        fresh = _mlp(5, c, seed + 1).to(dtype)  # other weights: all must come from the file
        loaded = rejectnet.load(path, fresh).eval()
    reliability.case()
    assert bit_equal(snapshot(loaded), snapshot(net))
    assert torch.equal(loaded(x), net(x))
    assert torch.equal(loaded.ood_score(x, score), net.ood_score(x, score))
    assert loaded.calibrated_score == net.calibrated_score
    assert loaded.is_calibrated == (threshold is not None)
    if threshold is not None:
        assert float(loaded.threshold) == threshold
        p, q = loaded.predict(x), net.predict(x)
        assert torch.equal(p.labels, q.labels) and torch.equal(p.is_ood, q.is_ood)
        assert p.threshold == q.threshold and p.score == q.score
