"""Training inputs refused up front, with nothing updated (issue 22 items 5, 6, 11).

The probe's failures: ``outlier_ratio=1e9`` (fine-tuner) and ``OutlierPairs(ratio=1e9)``
allocated without bound; ``RejectNetModule(coverage=1.5)`` / ``score="nope"`` were
accepted and refused after several steps; an outlier batch of another shape was caught
at step 2, after one weight update; a one-shot generator as ``in_loader`` gave a silently
empty second epoch, and as ``outlier_loader`` was told it "yielded no outliers" after
yielding batches; a plain ``(x, y)`` loader given to ``RejectNetModule`` raised "too
many values to unpack". Each case below asserts what a user should see instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rejectnet import RejectHead, SelfSupervisedOODFinetuner
from rejectnet.finetune.options import MAX_OUTLIER_RATIO, MAX_OUTLIER_ROWS
from rejectnet.finetune.streams import OutlierStream
from rejectnet.integrations import OutlierPairs
from tests.conftest import ReliabilityCounts
from tests.reliability._helpers import bit_equal, snapshot

D, C = 4, 3


def _net() -> RejectHead:
    torch.manual_seed(0)
    return RejectHead.wrap(nn.Sequential(nn.Linear(D, 8), nn.ReLU(), nn.Linear(8, C)), k=2)


def _in(n_batches: int = 3, size: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(size, D, generator=g), torch.randint(0, C, (size,), generator=g))
        for _ in range(n_batches)
    ]


def _refused_fit(
    net: RejectHead, error: type[Exception], match: str, in_loader: Any, out_loader: Any, **kw: Any
) -> None:
    before = snapshot(net)
    ft = SelfSupervisedOODFinetuner(net, epochs=1, progress=False, **kw)
    with pytest.raises(error, match=match):
        ft.fit(in_loader, out_loader)
    assert bit_equal(snapshot(net), before), "refused before any weight changed"
    assert ft.step == 0


# ---------------------------------------------------------------- item 5: unbounded ratios
@pytest.mark.parametrize("ratio", [1e9, MAX_OUTLIER_RATIO * 1.5, float("inf")])
def test_an_outlier_ratio_beyond_the_bound_is_refused_at_construction(
    ratio: float, reliability: ReliabilityCounts
) -> None:
    reliability.case()
    with pytest.raises(ValueError, match=r"outlier_ratio must be a .*number.*1000|finite"):
        SelfSupervisedOODFinetuner(_net(), outlier_ratio=ratio)
    with pytest.raises(ValueError, match=r"ratio must be a .*number"):
        OutlierPairs(_in(), [torch.randn(10, D)], ratio=ratio)


def test_a_ratio_times_the_batch_beyond_the_row_bound_is_refused_before_training(
    reliability: ReliabilityCounts,
) -> None:
    """1000 outliers per row of a 2,000-row batch: 2e6 rows > MAX_OUTLIER_ROWS."""
    reliability.case()
    big = [(torch.randn(2000, D), torch.randint(0, C, (2000,)))]
    assert MAX_OUTLIER_RATIO * 2000 > MAX_OUTLIER_ROWS
    _refused_fit(
        _net(), ValueError, r"outlier_ratio=1000 .* 2000 rows .*at most 1,048,576",
        big, [torch.randn(10, D)], outlier_ratio=MAX_OUTLIER_RATIO,
    )  # fmt: skip
    pairs = OutlierPairs(big, [torch.randn(10, D)], ratio=MAX_OUTLIER_RATIO)
    with pytest.raises(ValueError, match=r"ratio=1000 .* at most 1,048,576"):
        next(iter(pairs))
    assert pairs.passes == 0, "no outlier was read"


# ---------------------------------------------------------------- item 6: validate before step 1
def test_rejectnet_module_refuses_coverage_and_score_at_construction(
    reliability: ReliabilityCounts,
) -> None:
    pytest.importorskip("lightning")
    from rejectnet.integrations.lightning import RejectNetModule

    model = nn.Linear(D, C)
    for kw, error, match in (
        ({"coverage": 1.5}, ValueError, "coverage"),
        ({"coverage": 0.0}, ValueError, "coverage"),
        ({"coverage": "0.9"}, TypeError, "coverage"),
        ({"score": "nope"}, ValueError, "unknown score 'nope'; available scores: .*sum_reject"),
        ({"score": 3}, TypeError, "score"),
        ({"calibration_loader": iter(_in())}, TypeError, "calibration_loader is a one-shot"),
    ):
        reliability.case()
        with pytest.raises(error, match=match):
            RejectNetModule(model, k=2, **kw)


@pytest.mark.parametrize("where", ["second_outlier_batch", "second_in_batch"])
def test_a_batch_of_another_shape_is_caught_before_the_first_step(
    where: str, reliability: ReliabilityCounts
) -> None:
    reliability.case()
    in_loader = _in()
    out_loader = [torch.randn(40, D), torch.randn(40, D)]
    if where == "second_outlier_batch":
        out_loader[1] = torch.randn(40, D + 1)
        match = r"\(4,\) .*outlier_loader inputs have \(5,\) \(batch 1, found before"
    else:
        in_loader[1] = (torch.randn(8, D + 1), in_loader[1][1])
        match = r"\(4,\) .*in_loader inputs have \(5,\) \(batch 1, found before"
    _refused_fit(_net(), ValueError, match, in_loader, out_loader)
    pairs = OutlierPairs(in_loader, out_loader)
    with pytest.raises(ValueError, match=match):
        next(iter(pairs))


def test_lightning_catches_an_outlier_batch_of_another_shape_before_any_update(
    reliability: ReliabilityCounts,
) -> None:
    pytest.importorskip("lightning")
    import lightning

    from rejectnet.integrations.lightning import RejectNetModule

    reliability.case()
    module = RejectNetModule(nn.Linear(D, C), k=2)
    before = snapshot(module.net)
    pairs = OutlierPairs(_in(), [torch.randn(40, D), torch.randn(40, D + 1)])
    trainer = lightning.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with warnings.catch_warnings(), pytest.raises(ValueError, match="found before the first"):
        warnings.simplefilter("ignore")
        trainer.fit(module, pairs)
    assert bit_equal(snapshot(module.net), before) and trainer.global_step == 0


# ---------------------------------------------------------------- item 11: one-shot loaders
def _generator(batches: list[Any]) -> Iterator[Any]:
    yield from batches


def test_one_shot_generators_are_refused_with_the_fix(reliability: ReliabilityCounts) -> None:
    for make in (
        lambda: OutlierPairs(_generator(_in()), [torch.randn(40, D)]),
        lambda: OutlierPairs(_in(), _generator([torch.randn(40, D)])),
    ):
        reliability.case()
        with pytest.raises(TypeError, match=r"one-shot iterator .*list\(generator\)"):
            make()
    reliability.case()
    _refused_fit(_net(), TypeError, "in_loader is a one-shot", _generator(_in()), None)
    reliability.case()
    _refused_fit(
        _net(), TypeError, "outlier_loader is a one-shot", _in(), _generator([torch.randn(9, D)])
    )


def test_an_exhausted_generator_is_never_told_it_yielded_no_outliers(
    reliability: ReliabilityCounts,
) -> None:
    """The stream underneath: a generator that yielded two batches, then restarted."""
    reliability.case()
    stream = OutlierStream(_generator([torch.randn(5, D), torch.randn(5, D)]))
    assert stream.take(10).shape == (10, D)
    with pytest.raises(ValueError, match="yielded batches in its first pass but none") as info:
        stream.take(5)
    assert "yielded no outliers" not in str(info.value)
    assert "one-shot iterator" in str(info.value)


def test_a_plain_xy_loader_given_to_rejectnet_module_says_what_to_do(
    reliability: ReliabilityCounts,
) -> None:
    pytest.importorskip("lightning")
    import lightning

    from rejectnet.integrations.lightning import RejectNetModule

    reliability.case()
    module = RejectNetModule(nn.Linear(D, C), k=2)
    with pytest.raises(TypeError, match=r"\(x_in, y, x_out\).*tuple of 2 items.*OutlierPairs"):
        module.step_terms(_in()[0])
    x, y = (torch.cat(parts) for parts in zip(*_in(), strict=True))
    plain = DataLoader(TensorDataset(x, y), batch_size=8)
    trainer = lightning.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    before = snapshot(module.net)
    with warnings.catch_warnings(), pytest.raises(TypeError, match="OutlierPairs"):
        warnings.simplefilter("ignore")
        trainer.fit(module, plain)
    assert bit_equal(snapshot(module.net), before)
