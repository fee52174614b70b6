"""The demo: the whole pipeline on data that ships with the dependencies, in minutes.

Stage one trains a small CNN on scikit-learn's 8x8 digits. From those same weights,
Outlier Exposure and rejectnet (k=5, lam=5, outlier batches 5x, with the recommended
outlier recipe of :func:`rejectnet.outliers.recommended`) are fine-tuned on crops of one
photograph; max-softmax, OE and rejectnet are then evaluated on OOD sets that were
never seen in training (crops of another photograph, rendered letters, uniform noise).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rejectnet._validation import check_seed
from rejectnet.data import demo_data
from rejectnet.finetune import (
    OutlierExposureFinetuner,
    SelfSupervisedOODFinetuner,
    train_classifier,
)
from rejectnet.finetune.rng import seed_everything, seeded_generator
from rejectnet.head import RejectHead
from rejectnet.models import SmallCNN
from rejectnet.outliers import recommended
from rejectnet.report import Report, evaluate

__all__ = ["DemoConfig", "format_table", "run_demo"]


@dataclass
class DemoConfig:
    """Settings of the demo (chosen on validation digits and training outliers only).

    Attributes:
        seed: Seed of the data, the initial weights and the training order.
        stage_one_epochs: Epochs of plain supervised training.
        stage_one_lr: Learning rate of stage one.
        finetune_epochs: Epochs of Outlier Exposure and of rejectnet's stage two.
        finetune_lr: Learning rate of both fine-tunings.
        k: Reject classes.
        lam: Weight of rejectnet's outlier loss.
        oe_lam: Weight of Outlier Exposure's uniform-target loss.
        batch_size: In-distribution batch size.
        outlier_ratio: Outlier batch size over in-distribution batch size.
        n_runs: Subsampling runs of the evaluation.
        progress: Show progress bars and print the table.

    Example:
        >>> quick = DemoConfig(stage_one_epochs=2, finetune_epochs=1, progress=False)
        >>> quick.k, quick.lam, quick.outlier_ratio
        (5, 5.0, 5.0)
    """

    seed: int = 0
    stage_one_epochs: int = 30
    stage_one_lr: float = 0.05
    finetune_epochs: int = 10
    finetune_lr: float = 0.005
    k: int = 5
    lam: float = 5.0
    oe_lam: float = 0.5
    batch_size: int = 64
    outlier_ratio: float = 5.0
    n_runs: int = 5
    progress: bool = True


def format_table(reports: list[Report]) -> str:
    """One plain-text table: ID accuracy, then AUROC and FPR@95%TPR per OOD set (%).

    Args:
        reports: Reports with the same OOD sets, one row each.

    Returns:
        The table, a header line, a rule and one line per report.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead, evaluate
        >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
        >>> report = evaluate(net, [torch.randn(20, 4)], {"far": [torch.randn(20, 4) + 5]})
        >>> print(format_table([report]).splitlines()[0])
        method        ID acc      far AUROC   FPR95
    """
    sets = list(reports[0].ood)
    head = f"{'method':<12}{'ID acc':>8}" + "".join(f"{s + ' AUROC':>15}{'FPR95':>8}" for s in sets)
    lines = [head, "-" * len(head)]
    for r in reports:
        acc = f"{100 * r.id_accuracy:.2f}" if r.id_accuracy is not None else "-"
        cells = "".join(
            f"{100 * r.ood[s].mean['auroc']:>15.2f}{100 * r.ood[s].mean['fpr95']:>8.2f}"
            for s in sets
        )
        lines.append(f"{r.name:<12}{acc:>8}{cells}")
    return "\n".join(lines)


def run_demo(config: DemoConfig | None = None) -> list[Report]:
    """Run the demo and return one report per method (msp, oe, rejectnet).

    Args:
        config: Settings; the defaults take about a minute on a 2-core CPU.

    Returns:
        Reports for ``"msp"``, ``"oe"`` and ``"rejectnet"``, in that order.

    Example:
        >>> reports = run_demo(DemoConfig(progress=False))  # doctest: +SKIP
        >>> print(format_table(reports))  # doctest: +SKIP
    """
    cfg = config or DemoConfig()
    t0 = time.perf_counter()
    check_seed(cfg.seed)
    seed_everything(cfg.seed)
    data = demo_data(cfg.seed)
    loaders = _loaders(data, cfg)
    model, oe_model, net = _train(cfg, loaders)
    test_loader, ood = loaders["test"], loaders["ood"]
    kw: dict[str, Any] = dict(n_runs=cfg.n_runs, seed=cfg.seed)
    reports = [
        evaluate(model.eval(), test_loader, ood, "msp", name="msp", **kw),
        evaluate(oe_model.eval(), test_loader, ood, "msp", name="oe", **kw),
        evaluate(net, test_loader, ood, name="rejectnet", **kw),
    ]
    if cfg.progress:
        print(
            f"rejectnet demo: {len(data.train)} train / {len(data.val)} val / "
            f"{len(data.test)} test digits (8x8), {len(data.outliers)} training outliers "
            "(crops of china.jpg); OOD test sets never seen in training; "
            f"{cfg.n_runs} equal-size subsamples, % below"
        )
        print(format_table(reports))
        print(f"({time.perf_counter() - t0:.0f} s)")
    return reports


def _loaders(data: Any, cfg: DemoConfig) -> dict[str, Any]:
    """The training loaders (one seeded shuffle order for both), validation, test and OOD."""
    g = seeded_generator(cfg.seed)
    out_batch = int(cfg.batch_size * cfg.outlier_ratio)
    return {
        "in": DataLoader(data.train, batch_size=cfg.batch_size, shuffle=True, generator=g),
        "out": DataLoader(
            TensorDataset(data.outliers), batch_size=out_batch, shuffle=True, generator=g
        ),
        "val": DataLoader(data.val, batch_size=256),
        "test": DataLoader(data.test, batch_size=256),
        "ood": {k: DataLoader(TensorDataset(v), batch_size=256) for k, v in data.ood_test.items()},
    }


def _train(cfg: DemoConfig, loaders: dict[str, Any]) -> tuple[nn.Module, nn.Module, RejectHead]:
    """Stage one, then Outlier Exposure and rejectnet from its weights (in that order)."""
    model = SmallCNN(num_classes=10, image_size=8, channels=(16, 32), hidden=64, dropout=0.1)
    common: dict[str, Any] = dict(seed=cfg.seed, progress=cfg.progress)
    in_loader, out_loader = loaders["in"], loaders["out"]
    train_classifier(
        model,
        in_loader,
        epochs=cfg.stage_one_epochs,
        lr=cfg.stage_one_lr,
        val_loader=loaders["val"],
        **common,
    )
    oe_model = copy.deepcopy(model)
    finetune = dict(
        epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, outlier_ratio=cfg.outlier_ratio, **common
    )  # the same schedule for Outlier Exposure and rejectnet
    OutlierExposureFinetuner(oe_model, lam=cfg.oe_lam, **finetune).fit(in_loader, out_loader)
    net = RejectHead.wrap(model, k=cfg.k)
    recipe = recommended(pool=True)  # the dev-chosen outlier recipe (rejectnet.outliers)
    SelfSupervisedOODFinetuner(
        net,
        lam=cfg.lam,
        pseudo_labels=recipe.pseudo_labels,
        outlier_signal=recipe.signal,
        **finetune,
    ).fit(in_loader, out_loader)
    net.eval().calibrate(loaders["val"], coverage=0.95)
    return model, oe_model, net
