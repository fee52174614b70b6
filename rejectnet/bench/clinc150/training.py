"""Stage one (the small BERT from scratch) and the stage-two settings shared by every method."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from rejectnet.bench.clinc150.data import Context, TextData, TextRecipe, loader
from rejectnet.bench.methods import method_seed
from rejectnet.finetune import train_classifier
from rejectnet.finetune.rng import seed_everything
from rejectnet.text import small_bert

__all__ = ["adamw", "finetune_options", "fit_stage_two", "train_stage_one", "warmup_linear"]


def adamw(lr: float, weight_decay: float) -> Callable[[Any], torch.optim.Optimizer]:
    """An optimizer factory: AdamW over the given parameters.

    Example:
        >>> opt = adamw(1e-3, 0.01)([torch.nn.Parameter(torch.zeros(2))])
        >>> type(opt).__name__, opt.param_groups[0]["lr"]
        ('AdamW', 0.001)
    """

    def make(params: Any) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    return make


def warmup_linear(optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    """10% linear warm-up to the optimizer's lr, then linear decay to 0 (stage one).

    The schedule spans at least 20 steps (``OneCycleLR`` divides by zero when 10% of the
    run is a single step); a shorter run stops before the decay ends.

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = warmup_linear(opt, 100)
        >>> for _ in range(9):
        ...     opt.step(); sched.step()
        >>> round(opt.param_groups[0]["lr"], 3)  # the peak after 10% of the run
        1.0
        >>> _ = warmup_linear(opt, 10)  # short runs too
    """
    lr = optimizer.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=max(total_steps, 20), pct_start=0.1,
        anneal_strategy="linear",
    )  # fmt: skip


def train_stage_one(
    data: TextData, recipe: TextRecipe, seed: int, device: torch.device, progress: bool
) -> tuple[nn.Module, float | None]:
    """Train the small BERT from scratch on the training utterances.

    Returns:
        The model (eval mode) and its in-scope ``val`` accuracy.

    Example:
        >>> model, val_acc = train_stage_one(data, RECIPE, 0, "cpu", False)  # doctest: +SKIP
    """
    seed_everything(method_seed(seed, "stage-one"))
    model = small_bert(
        data.clinc.num_classes,
        data.tokenizer.get_vocab_size(),
        hidden_size=recipe.hidden_size,
        num_layers=recipe.num_layers,
        num_heads=recipe.num_heads,
        max_length=max(64, recipe.max_length),
        pad_token_id=data.train.pad_id,
    ).to(device)
    hist = train_classifier(
        model,
        loader(data.train, recipe.batch_size, seed=seed),
        epochs=recipe.stage_one_epochs,
        val_loader=loader(data.val),
        optimizer=adamw(recipe.stage_one_lr, recipe.weight_decay),
        scheduler=warmup_linear,
        seed=seed,
        device=device,
        progress=progress,
    )
    model.eval()
    return model, (hist[-1].val_accuracy if hist else None)


def finetune_options(ctx: Context, lr: float | None = None) -> dict[str, Any]:
    """The fine-tuner keywords every stage-two method shares (AdamW, cosine, ratio, seed);
    ``lr`` replaces ``recipe.finetune_lr``."""
    r = ctx.recipe
    return dict(
        epochs=r.finetune_epochs,
        optimizer=adamw(r.finetune_lr if lr is None else lr, r.weight_decay),
        scheduler="cosine",
        outlier_ratio=r.outlier_ratio,
        seed=ctx.seed,
        device=ctx.device,
        progress=ctx.progress,
    )


def fit_stage_two(ctx: Context, trainer: Any, with_pool: bool) -> None:
    """Stage two on a seeded random subset of the training utterances (same for all)."""
    r, data = ctx.recipe, ctx.data
    n = len(data.train)
    rows = np.random.default_rng(ctx.seed).permutation(n)[: r.finetune_subset or n]
    in_loader = loader(Subset(data.train, rows.tolist()), r.batch_size, seed=ctx.seed)
    pool = None
    if with_pool and data.pool is not None:
        pool = loader(data.pool, int(r.batch_size * r.outlier_ratio), seed=ctx.seed + 1)
    trainer.fit(in_loader, pool, loader(data.val))
