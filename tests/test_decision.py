"""The fused decision functions: same scores as rejectnet.scores, exact threshold test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rejectnet import decision, scores

C, K = 4, 3
REJECT_SCORES = ["sum_reject", "weighted_reject", "max_reject", "entropy_reject", "entropy_diff"]
BASELINES = ["msp", "energy", "max_logit"]

logit_rows = st.lists(
    st.lists(st.floats(-60.0, 60.0, width=32), min_size=C + K, max_size=C + K),
    min_size=1,
    max_size=20,
)


def _reference(z: torch.Tensor, name: str, w: torch.Tensor) -> torch.Tensor:
    if name == "weighted_reject":
        return scores.weighted_reject(z, C, weights=w)
    if name in BASELINES:
        return scores.get(name)(z[:, :C])
    return scores.get(name)(z, C)


@settings(max_examples=60, deadline=None)
@given(rows=logit_rows, name=st.sampled_from(REJECT_SCORES + BASELINES), dbl=st.booleans())
def test_fused_scores_agree_with_the_scores_module(
    rows: list[list[float]], name: str, dbl: bool
) -> None:
    z = torch.tensor(rows, dtype=torch.float64 if dbl else torch.float32)
    sw = torch.tensor([0.5, 2.0, 1.0])
    w = decision.column_weights(name, C, K, sw, decision.score_dtype(z.dtype), z.device)
    got = decision.compute_score(z, name, C, w)
    ref = _reference(z, name, sw)
    assert got.dtype == ref.dtype and got.shape == (z.shape[0],)
    # one kernel per formula: the scores module checks and calls decision's kernels
    assert torch.equal(got, ref), (got, ref)


def test_score_dtypes_follow_the_logits() -> None:
    z = torch.randn(5, C + K)
    for dt in (torch.float16, torch.bfloat16):
        w = decision.column_weights("sum_reject", C, K, torch.ones(K), torch.float32, z.device)
        assert decision.compute_score(z.to(dt), "sum_reject", C, w).dtype == torch.float32


@settings(max_examples=300, deadline=None)
@given(
    s=st.floats(allow_nan=False, width=32),
    t=st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(-1.0, 2.0)
    | st.sampled_from([0.1, 1 / 3, 0.95, 1e-40, -1e-40, 3.5e38, -3.5e38, 1e300]),
)
def test_rounded_threshold_decides_exactly_like_float64(s: float, t: float) -> None:
    t32 = decision.threshold_for(t, torch.float32)
    assert t32 <= t
    score = torch.tensor([s], dtype=torch.float32)
    got = decision.decide(score, torch.tensor(t32, dtype=torch.float32))
    assert bool(got) == (score.double().item() > t)


def test_rounded_threshold_next_float_is_above() -> None:
    for t in (0.1, 0.7, 1 / 3, 2.0**-130, 123.456):
        t32 = decision.threshold_for(t, torch.float32)
        up = float(np.nextafter(np.float32(t32), np.float32(np.inf)))
        assert t32 <= t < up


def test_decide_treats_nan_as_ood() -> None:
    s = torch.tensor([0.1, math.nan, 0.9])
    assert decision.decide(s, torch.tensor(0.5)).tolist() == [False, True, True]


def test_nan_if_nonfinite_is_exact_and_marks_rows() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 5, 5, generator=g) * 1e30  # large but finite: no overflow
    x[2, 1, 4, 4] = math.inf
    x[5, 0, 0, 0] = math.nan
    s = torch.rand(6, generator=g)
    out = decision.nan_if_nonfinite(s, x, torch.arange(6))  # integer tensors are skipped
    assert out.isnan().tolist() == [False, False, True, False, False, True]
    keep = ~out.isnan()
    assert torch.equal(out[keep], s[keep])


def test_user_registered_scores_run_their_own_function() -> None:
    from rejectnet.scores import registry

    def last_logit(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
        return logits[:, -1].float()

    registry.register("last_logit_test", last_logit, kind="reject")
    try:
        z = torch.randn(3, C + K)
        assert torch.equal(decision.compute_score(z, "last_logit_test", C), z[:, -1])
        assert not decision.propagates_nonfinite("last_logit_test")
    finally:
        registry.unregister("last_logit_test")


@pytest.mark.parametrize("name", ["sum_reject", "max_reject", "entropy_reject", "entropy_diff"])
def test_softmax_scores_turn_nonfinite_logits_into_nan(name: str) -> None:
    z = torch.randn(3, C + K)
    z[1, 0] = math.inf
    z[2, 5] = math.nan
    w = decision.column_weights(name, C, K, torch.ones(K), torch.float32, z.device)
    s = decision.compute_score(z, name, C, w)
    assert decision.propagates_nonfinite(name)
    assert s.isnan().tolist() == [False, True, True]


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_need_the_explicit_guard(name: str) -> None:
    assert not decision.propagates_nonfinite(name)


@pytest.mark.parametrize("name", ["sum_reject", "weighted_reject", "max_reject", "msp"])
def test_a_rows_score_does_not_depend_on_the_rest_of_the_batch(name: str) -> None:
    """A score is a function of its row's logits alone: BLAS gemv (addmv) rounds a row
    differently for different batch sizes, so calibrate() (all logits at once) and
    predict() (one batch) would disagree at ties."""
    g = torch.Generator().manual_seed(0)
    c, k = 3, 4
    w = decision.column_weights(
        name, c, k, torch.rand(k, generator=g) + 0.1, torch.float32, torch.device("cpu")
    )
    for n in (2, 7, 33, 97, 250):
        z = torch.randn(n, c + k, generator=g) * 3
        together = decision.compute_score(z, name, c, w)
        alone = torch.cat([decision.compute_score(z[i : i + 1], name, c, w) for i in range(n)])
        assert torch.equal(together, alone), n
