"""Outlier signals: every option's value is fingerprinted, every bad option refused up front.

Issue 22's probes, outliers side: a resume with ``Rotate()`` for ``Jigsaw(2)``,
``Blend(0.45)`` for ``Blend(0.1)`` or ``ClusterLabeler(temperature=20)`` for
``temperature=1`` went unnoticed because the run fingerprint saw non-primitive options
by type name only (item 2; :func:`rejectnet.outliers.signal.fingerprint` describes every
option's value). ``Warp(knots=100000)`` and ``VirtualOutliers(queue_size=10**9)`` ran
into the allocator (item 5); ``Stitch(cut=0.5)`` said "'float' object is not iterable"
and ``Overlay(weight=(3 values))`` "too many values to unpack" (item 12);
``sinkhorn_assign`` with a NaN returned all zeros without a word (item 13). Every
public constructor of ``rejectnet.outliers`` is probed with a wrong type (``TypeError``)
and a wrong value (``ValueError``); each message names the argument and what is valid.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch

from rejectnet.outliers import (
    Blend,
    ClusterLabeler,
    ComposedSignal,
    Jigsaw,
    MaskTokens,
    MixUtterances,
    Overlay,
    Rotate,
    SpanShuffle,
    Stitch,
    VirtualOutliers,
    Warp,
    recommended,
    sinkhorn_assign,
    split_counts,
    text_recipe,
)
from rejectnet.outliers.signal import fingerprint
from tests.conftest import ReliabilityCounts

# (what a user changed between two runs): these must fingerprint differently
_CHANGED: list[tuple[Callable[[], Any], Callable[[], Any]]] = [
    (lambda: Jigsaw(2), lambda: Rotate()),
    (lambda: Blend(0.1), lambda: Blend(0.45)),
    (lambda: ClusterLabeler(temperature=1), lambda: ClusterLabeler(temperature=20)),
    (lambda: Warp(strength=0.4), lambda: Warp(strength=0.5)),
    (lambda: Stitch((0.3, 0.6)), lambda: Stitch((0.3, 0.7))),
    (lambda: Overlay((0.4, 0.6)), lambda: Overlay((0.45, 0.55))),
    (lambda: VirtualOutliers(shell=(1.0, 1.5)), lambda: VirtualOutliers(shell=(1.0, 2.0))),
    (lambda: recommended().signal, lambda: ComposedSignal([(Jigsaw(2), 1.0)])),
    (
        lambda: ComposedSignal([(Blend(0.1), 1.0)]),
        lambda: ComposedSignal([(Blend(0.1), 1.0)], VirtualOutliers()),
    ),
]


@pytest.mark.parametrize(
    "pair",
    _CHANGED,
    ids=[
        "jigsaw-to-rotate", "blend-alpha", "cluster-temperature", "warp-strength", "stitch-cut",
        "overlay-weight", "virtual-shell", "recommended-to-jigsaw", "virtual-added",
    ],
)  # fmt: skip
def test_a_changed_option_changes_the_fingerprint(
    pair: tuple[Callable[[], Any], Callable[[], Any]], reliability: ReliabilityCounts
) -> None:
    reliability.case()
    old, new = pair
    a, b = fingerprint(old()), fingerprint(new())
    assert a != b
    assert fingerprint(old()) == a, "the same options fingerprint equal"
    assert json.loads(json.dumps(a, allow_nan=False)) == a


def test_unbounded_sizes_are_refused_before_any_allocation(
    reliability: ReliabilityCounts,
) -> None:
    reliability.case(4)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"knots must be an int in \[2, 64\], got 100000"):
        Warp(knots=100000)
    with pytest.raises(ValueError, match=r"queue_size must be an int in \[2, 262144\]"):
        VirtualOutliers(queue_size=10**9)
    with pytest.raises(ValueError, match=r"iters must be an int in \[1, 1000\]"):
        ClusterLabeler(iters=10**9)
    with pytest.raises(ValueError, match=r"ratio must be a finite number in \[0, 100\]"):
        VirtualOutliers(ratio=1e9)
    assert time.perf_counter() - t0 < 1.0


# (constructor, kwargs, exception, words the message must hold)
_BAD: list[tuple[Callable[..., Any], dict[str, Any], type[Exception], str]] = [
    (Stitch, {"cut": 0.5}, TypeError, r"cut must be a range \(lo, hi\)"),
    (Stitch, {"cut": "0.3,0.6"}, TypeError, r"cut must be a range"),
    (Stitch, {"cut": (0.3, "a")}, TypeError, r"cut\[1\]"),
    (Stitch, {"cut": (0.6, 0.3)}, ValueError, r"cut must be a range .*lo <= hi"),
    (Stitch, {"cut": (0.3, 1.0)}, ValueError, r"cut\[1\] must be a fraction in \(0, 1\)"),
    (Overlay, {"weight": (0.3, 0.5, 0.6)}, ValueError, r"weight must be a range .*3 values"),
    (Overlay, {"weight": 0.5}, TypeError, r"weight must be a range"),
    (Overlay, {"weight": (0.4, float("nan"))}, ValueError, r"weight\[1\]"),
    (Blend, {"alpha": (0.1, 0.2, 0.3)}, ValueError, r"alpha must be a range .*3 values"),
    (Blend, {"alpha": "0.1"}, TypeError, r"alpha"),
    (Blend, {"alpha": 1.5}, ValueError, r"alpha must be a fraction in \[0, 1\]"),
    (Jigsaw, {"grid": 2.0}, TypeError, r"grid must be an int >= 2"),
    (Jigsaw, {"grid": 1}, ValueError, r"grid must be an int >= 2"),
    (Rotate, {"angles": 90}, TypeError, r"angles must be a non-empty sequence"),
    (Rotate, {"angles": (90.0,)}, TypeError, r"angles .* among 90, 180, 270"),
    (Rotate, {"angles": (45,)}, ValueError, r"angles .* among 90, 180, 270"),
    (Rotate, {"angles": ()}, ValueError, r"angles must be a non-empty"),
    (Warp, {"strength": "strong"}, TypeError, r"strength must be a number"),
    (Warp, {"strength": 3.0}, ValueError, r"strength must be a finite number in \[0, 2\]"),
    (Warp, {"knots": 5.5}, TypeError, r"knots must be an int"),
    (VirtualOutliers, {"queue_size": 2048.0}, TypeError, r"queue_size must be an int"),
    (VirtualOutliers, {"shell": 1.5}, TypeError, r"shell must be a range"),
    (VirtualOutliers, {"shell": (0.0, 1.5)}, ValueError, r"shell\[0\] must be .*\(0, 100\]"),
    (VirtualOutliers, {"refresh": 0}, ValueError, r"refresh must be a positive int"),
    (VirtualOutliers, {"warmup": "1"}, TypeError, r"warmup must be a positive int"),
    (VirtualOutliers, {"ridge": -1.0}, ValueError, r"ridge must be a finite number"),
    (VirtualOutliers, {"nonnegative": 1}, TypeError, r"nonnegative must be True or False"),
    (VirtualOutliers, {"generator": 0}, TypeError, r"generator must be a torch.Generator"),
    (ClusterLabeler, {"temperature": 0.0}, ValueError, r"temperature must be .*\(0, 1e\+06\]"),
    (ClusterLabeler, {"temperature": "hot"}, TypeError, r"temperature must be a number"),
    (ClusterLabeler, {"iters": 3.0}, TypeError, r"iters must be an int"),
    (ComposedSignal, {"parts": [(Jigsaw(), "1")]}, TypeError, r"parts\[0\] share"),
    (ComposedSignal, {"parts": [(Jigsaw(), -1.0)]}, ValueError, r"parts\[0\] share"),
    (ComposedSignal, {"generator": 1}, TypeError, r"generator must be a torch.Generator"),
    (recommended, {"generator": "seed"}, TypeError, r"generator must be a torch.Generator"),
    (recommended, {"pool": "yes"}, TypeError, r"pool must be True or False"),
    (ComposedSignal, {"parts": 5}, TypeError, r"parts must be a list of \(source, share\)"),
    (split_counts, {"total": 10, "shares": []}, ValueError, r"shares must hold at least one"),
    (split_counts, {"total": 2.5, "shares": [1]}, TypeError, r"total must be an int >= 0"),
    (split_counts, {"total": 4, "shares": [1, -1]}, ValueError, r"shares\[1\] must be"),
    (VirtualOutliers().sample, {"m": -1}, ValueError, r"m must be an int >= 0"),
    (text_recipe, {"special_ids": 101, "vocab_size": 9}, TypeError, r"special_ids must be a"),
    (text_recipe, {"special_ids": (), "vocab_size": 1}, ValueError, r"vocab_size must be"),
    (SpanShuffle, {"special_ids": (), "spans": 10**9}, ValueError, r"spans must be an int in"),
    (MixUtterances, {"special_ids": (), "cut": 0.5}, TypeError, r"cut must be a range"),
    (MaskTokens, {"special_ids": (), "mask_id": -3}, ValueError, r"mask_id must be an int >= 0"),
]


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "match"),
    _BAD,
    ids=[f"{getattr(m, '__name__', m)}-{next(iter(k))}-{e.__name__}" for m, k, e, _ in _BAD],
)
def test_every_constructor_names_the_argument_and_the_valid_range(
    make: Callable[..., Any],
    kwargs: dict[str, Any],
    error: type[Exception],
    match: str,
    reliability: ReliabilityCounts,
) -> None:
    reliability.case()
    with pytest.raises(error, match=match) as info:
        make(**kwargs)
    assert type(info.value) is error  # not a subclass standing in for the rule


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_sinkhorn_refuses_non_finite_scores(bad: float, reliability: ReliabilityCounts) -> None:
    reliability.case()
    scores = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    scores[2, 1] = bad
    before = scores.clone()
    with pytest.raises(ValueError, match=r"scores holds 1 NaN or infinite value\(s\) of 18"):
        sinkhorn_assign(scores)
    with pytest.raises(ValueError, match="finite"):
        ClusterLabeler()(torch.cat([torch.zeros(6, 2), scores], dim=1), 2)
    assert torch.equal(scores, before) or bad != bad  # NaN != NaN: compare the rest
    assert torch.equal(scores[torch.isfinite(scores)], before[torch.isfinite(before)])


@pytest.mark.parametrize(
    "source",
    [Jigsaw(), Stitch(), Overlay(), Rotate(), Warp(), SpanShuffle((0,)), MaskTokens((0,), 1)],
    ids=lambda s: type(s).__name__,
)
def test_a_source_asked_for_no_rows_or_a_negative_count(
    source: Any, reliability: ReliabilityCounts
) -> None:
    reliability.case(2)
    if isinstance(source, (SpanShuffle, MaskTokens)):
        x: Any = {"input_ids": torch.randint(2, 50, (4, 6)), "attention_mask": torch.ones(4, 6)}
        rows = lambda out: out["input_ids"].shape[0]  # noqa: E731
    else:
        x = torch.rand(4, 1, 8, 8)
        rows = lambda out: out.shape[0]  # noqa: E731
    y = torch.arange(4)
    assert rows(source(x, y, None, 0)) == 0
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        source(x, y, None, -1)
    with pytest.raises(TypeError, match="n must be an int >= 0"):
        source(x, y, None, 2.0)
