"""rejectnet.bench.clinc150.training: the schedules and the shared stage-two settings."""

from __future__ import annotations

import dataclasses

import torch

from rejectnet.bench.clinc150 import prepare_data
from rejectnet.bench.clinc150.data import Context
from rejectnet.bench.clinc150.training import adamw, finetune_options, fit_stage_two, warmup_linear
from tests.text._support import tiny_recipe


def _lrs(total: int, steps: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_linear(opt, total)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_linear_decay_and_short_runs():
    lrs = _lrs(100, 100)
    peak = max(range(100), key=lrs.__getitem__)
    assert peak == 9 and lrs[peak] == 1.0 and lrs[0] < 0.1 and lrs[-1] < 0.02
    assert all(a >= b for a, b in zip(lrs[peak:-1], lrs[peak + 1 :], strict=True))
    assert len(_lrs(10, 10)) == 10 and len(_lrs(1, 1)) == 1  # no division by zero


def test_finetune_options_lr_override():
    ctx = Context(torch.nn.Linear(2, 2), None, tiny_recipe(), 3, torch.device("cpu"), False, {})  # type: ignore[arg-type]
    p = [torch.nn.Parameter(torch.zeros(1))]
    opts = finetune_options(ctx)
    assert opts["seed"] == 3 and opts["outlier_ratio"] == 5.0
    assert opts["optimizer"](p).param_groups[0]["lr"] == ctx.recipe.finetune_lr
    assert finetune_options(ctx, 0.5)["optimizer"](p).param_groups[0]["lr"] == 0.5
    assert adamw(0.1, 0.0)(p).param_groups[0]["weight_decay"] == 0.0


def test_stage_two_reads_a_seeded_subset(clinc_dir):
    recipe = dataclasses.replace(tiny_recipe(), finetune_subset=10, batch_size=4)
    data = prepare_data(clinc_dir, recipe)
    seen: dict[str, int] = {}

    class Trainer:
        def fit(self, in_loader, pool, val):
            seen["in"] = sum(len(b["labels"]) for b in in_loader)
            seen["pool"] = 0 if pool is None else len(next(iter(pool))["input_ids"])
            seen["val"] = sum(len(b["labels"]) for b in val)

    ctx = Context(torch.nn.Linear(2, 2), data, recipe, 0, torch.device("cpu"), False, {})
    fit_stage_two(ctx, Trainer(), with_pool=True)
    assert seen == {"in": 10, "pool": 20, "val": len(data.val)}
    fit_stage_two(ctx, Trainer(), with_pool=False)
    assert seen["pool"] == 0 and seen["in"] == 10
