"""The benchmark's methods: a registry, one entry per method.

Every method starts from the same stage-one weights (never modified), reads the same
in-distribution and outlier batches (fresh loaders seeded by the run's seed), and is
built under its own seed derived from the run's seed and its name, so that which
methods or OOD sets a run includes changes nothing in any method's model.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from rejectnet import peers
from rejectnet.finetune import OutlierExposureFinetuner, SelfSupervisedOODFinetuner
from rejectnet.head import RejectHead
from rejectnet.outliers import recommended
from rejectnet.report import DatasetLogits, Report, compute_logits, evaluate
from rejectnet.scores import fit_reject_weights

__all__ = [
    "METHODS",
    "SCORE_ALIASES",
    "Method",
    "MethodContext",
    "method_seed",
]

SCORE_ALIASES = {
    "max": "max_reject",
    "sum": "sum_reject",
    "weighted": "weighted_reject",
    "entropy": "entropy_reject",
    "entropy_diff": "entropy_diff",
}
"""Short reject-score names (``[eval] scores``, ``--score``) -> registry names."""

_EVALUATE_TAKES_GROUPS = "groups" in inspect.signature(evaluate).parameters


@dataclass
class MethodContext:
    """What a method gets: the stage-one model, the data, the schedule, the seed.

    Attributes:
        model: The stage-one classifier (eval mode). Methods copy it before training.
        num_classes: C.
        seed: The run's seed.
        k: Reject classes of rejectnet.
        ks: Extra reject-class counts (ablation rows ``rejectnet-k<k>`` and
            ``rejectnet-paper-k<k>``).
        scores: Reject scores (short names; ``sum`` is the main row).
        finetune_epochs: Fine-tuning epochs.
        lr: Fine-tuning learning rate.
        device: Where to train and evaluate.
        progress: Progress bars in the training loops.
        n_runs: Equal-size subsamples per OOD set.
        in_loader: Makes the fine-tuning in-distribution loader (fresh, same order for
            every method).
        outlier_loader: Makes the outlier loader, or returns ``None`` without a pool.
        train_loader: In-distribution training batches for fitting peers (no shuffle).
        val_loader: Held-out in-distribution batches (calibration, fitted scores).
        pool_sample: A sample of training outliers (fitted weighted score), or ``None``.
        id_test: In-distribution test loader.
        ood_test: OOD test set name -> loader.
        tune_id: Held-out in-distribution inputs for the OOD-tuned peers.
        tune_ood: Small OOD subsamples for the OOD-tuned peers (name -> tensor), held
            out of the evaluated OOD sets.
        peer_names: The post-hoc peers this run evaluates. They are all built when the
            first of them runs (one pass over the fit data, the ``*-tuned`` ones' grid
            searches) and scored together (one forward pass per test batch for the
            predictions and the logit and feature peers; the input-gradient peers add
            their own passes); the others then report what was computed.
        notes: Method name -> why it was skipped or changed; methods append here.
        models: Method name -> fine-tuned RejectHead (kept for saving).
        peer_reports: Peer reports computed ahead of their turn, by peer name.
        weight_decay: SGD weight decay of fine-tuning.
        groups: OOD set name -> ``"near"`` or ``"far"`` (passed to
            :func:`rejectnet.evaluate` when it takes ``groups``).
    """

    model: nn.Module
    num_classes: int
    seed: int
    k: int
    ks: tuple[int, ...]
    scores: tuple[str, ...]
    finetune_epochs: int
    lr: float
    device: torch.device
    progress: bool
    n_runs: int
    in_loader: Callable[[], DataLoader[Any]]
    outlier_loader: Callable[[], DataLoader[Any] | None]
    train_loader: DataLoader[Any]
    val_loader: DataLoader[Any]
    pool_sample: torch.Tensor | None
    id_test: DataLoader[Any]
    ood_test: Mapping[str, DataLoader[Any]]
    tune_id: torch.Tensor
    tune_ood: Mapping[str, torch.Tensor]
    peer_names: tuple[str, ...] = ()
    weight_decay: float = 5e-4
    groups: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    models: dict[str, RejectHead] = field(default_factory=dict)
    peer_reports: dict[str, Report] = field(default_factory=dict)

    def logits(self, model: nn.Module) -> tuple[DatasetLogits, dict[str, DatasetLogits]]:
        """Logits of ``model`` on the test sets (compute once, evaluate many scores).

        Args:
            model: A trained model (put in eval mode).

        Returns:
            In-distribution test logits and OOD set name -> logits.
        """
        model.eval()
        id_logits = compute_logits(model, self.id_test, device=self.device)
        ood = {n: compute_logits(model, v, device=self.device) for n, v in self.ood_test.items()}
        return id_logits, ood

    def evaluate(
        self,
        model: nn.Module,
        name: str,
        score: str | None = None,
        logits: tuple[DatasetLogits, dict[str, DatasetLogits]] | None = None,
    ) -> Report:
        """Evaluate ``model`` with ``score`` on the test sets.

        Args:
            model: A trained model (a RejectHead or a plain classifier).
            name: The row's name in the results.
            score: A score name; ``None`` for the model's calibrated one.
            logits: The model's :meth:`logits`, when several scores share them.

        Returns:
            The report.
        """
        id_logits, ood = logits if logits is not None else self.logits(model)
        extra: dict[str, Any] = {}
        if self.groups and _EVALUATE_TAKES_GROUPS:
            extra["groups"] = self.groups
        return evaluate(
            model, id_logits, ood, score, name=name, n_runs=self.n_runs, seed=self.seed, **extra
        )

    def finetune_options(self) -> dict[str, Any]:
        """Keyword arguments every fine-tuner of the benchmark gets.

        Returns:
            ``epochs``, ``lr``, ``weight_decay``, ``seed``, ``device`` and ``progress``.
        """
        return dict(
            epochs=self.finetune_epochs,
            lr=self.lr,
            weight_decay=self.weight_decay,
            seed=self.seed,
            device=self.device,
            progress=self.progress,
        )


@dataclass(frozen=True)
class Method:
    """One benchmark method.

    Attributes:
        name: The registry name (and the main row's name in the results).
        summary: One line for ``--help`` and the docs.
        uses_outliers: Whether it trains on the outlier pool.
        run: ``context -> reports`` (one or more rows).
        cost: Rough cost for the progress ETA: images through the network per
            fine-tuning image, per test image and per OOD tuning image.
    """

    name: str
    summary: str
    uses_outliers: bool
    run: Callable[[MethodContext], list[Report]]
    cost: tuple[float, float, float] = (0.0, 0.05, 0.0)


def method_seed(seed: int, name: str) -> int:
    """The seed a method is built under: a stable function of the run's seed and its name.

    Args:
        seed: The run's seed.
        name: The method's name.

    Returns:
        A seed in ``[0, 2**31)``; it depends on nothing else (not on the OOD sets, the
        other methods or their order).

    Example:
        >>> method_seed(0, "rejectnet") == method_seed(0, "rejectnet")
        True
        >>> method_seed(0, "rejectnet") != method_seed(1, "rejectnet")
        True
    """
    import zlib

    return (zlib.crc32(name.encode()) + 1_000_003 * seed) % 2**31


def _baseline(score: str) -> Callable[[MethodContext], list[Report]]:
    def run(ctx: MethodContext) -> list[Report]:
        return [ctx.evaluate(ctx.model, score, score)]

    return run


def _peer(name: str) -> Callable[[MethodContext], list[Report]]:
    def run(ctx: MethodContext) -> list[Report]:
        if not peers.is_available():
            if name in ("energy", "max_logit"):  # the same formulas, built in
                ctx.notes[name] = "rejectnet.scores (pytorch-ood is not installed)"
                return [ctx.evaluate(ctx.model, name, name)]
            ctx.notes[name] = (
                'skipped: pytorch-ood is not installed (pip install "rejectnet[peers]")'
            )
            return []
        if name not in ctx.peer_reports:
            group = [n for n in dict.fromkeys((*ctx.peer_names, name)) if n not in ctx.peer_reports]
            tuned = any(n.endswith("-tuned") for n in group)
            built = peers.build_peers(
                ctx.model,
                ctx.train_loader,
                names=group,
                tune_id=ctx.tune_id if tuned else None,
                tune_ood=ctx.tune_ood if tuned else None,
            )
            reports = peers.evaluate_peers(
                built, ctx.id_test, ctx.ood_test, n_runs=ctx.n_runs, seed=ctx.seed
            )
            ctx.peer_reports.update((r.name, r) for r in reports)
            if len(group) > 1:
                ctx.notes.setdefault(
                    "peers", f"built and scored together when {name} ran: {', '.join(group)}"
                )
        return [ctx.peer_reports.pop(name)]

    return run


def _outliers(ctx: MethodContext, name: str, synthesis: bool) -> dict[str, Any]:
    """The outlier arguments of a fine-tuner: the pool, the pool plus the recommended
    synthesis, or (without a pool) the synthesis alone."""
    loader = ctx.outlier_loader()
    if loader is None:
        ctx.notes[name] = "no outlier pool: outliers synthesised from in-distribution images"
        return {"outlier_loader": None, "outlier_signal": recommended(pool=False).signal}
    if synthesis:
        return {"outlier_loader": loader, "outlier_signal": recommended(pool=True).signal}
    return {"outlier_loader": loader, "outlier_signal": None}


def _fit(trainer: Any, ctx: MethodContext, outliers: dict[str, Any]) -> None:
    trainer.fit(ctx.in_loader(), outliers["outlier_loader"], ctx.val_loader)


def _oe_method(synthesis: bool) -> Callable[[MethodContext], list[Report]]:
    name = "oe+synthesis" if synthesis else "oe"

    def run(ctx: MethodContext) -> list[Report]:
        model = copy.deepcopy(ctx.model)
        outliers = _outliers(ctx, name, synthesis)
        opts = ctx.finetune_options()
        if outliers["outlier_signal"] is not None:
            opts["outlier_signal"] = outliers["outlier_signal"]
        _fit(OutlierExposureFinetuner(model, **opts), ctx, outliers)
        return [ctx.evaluate(model, name, "msp")]

    return run


def _reject_rows(ctx: MethodContext, net: RejectHead, name: str, k: int) -> list[Report]:
    """One row per reject score: ``name`` (or ``name-k<k>``) for sum, plus ``-<score>``."""
    reports = []
    logits = ctx.logits(net)  # the scores differ, the logits do not
    for short in ctx.scores:
        row = name if k == ctx.k else f"{name}-k{k}"
        if short != "sum":
            row += f"-{short}"
        if short == "weighted":
            if ctx.pool_sample is None:
                ctx.notes[row] = "skipped: the fitted weighted score needs training outliers"
                continue
            # weights from held-out in-distribution images and TRAINING outliers only
            val = compute_logits(net, ctx.val_loader, device=ctx.device).logits
            out = compute_logits(net, [ctx.pool_sample], device=ctx.device).logits
            ones = net.score_weights.clone()
            net.score_weights.copy_(fit_reject_weights(val, out, net.num_classes))
            net.calibrate(ctx.val_loader, coverage=0.95, score="weighted_reject")
            reports.append(ctx.evaluate(net, row, logits=logits))
            net.score_weights.copy_(ones)  # the other rows (and saved models) keep ones
            continue
        net.calibrate(ctx.val_loader, coverage=0.95, score=SCORE_ALIASES[short])
        reports.append(ctx.evaluate(net, row, logits=logits))
    net.calibrate(ctx.val_loader, coverage=0.95, score="sum_reject")
    return reports


def _rejectnet_finetune(ctx: MethodContext, k: int, name: str, recipe: bool) -> RejectHead:
    """Stage two from the stage-one weights: Algorithm 1 exactly (the paper's arguments:
    lam 5, outlier batches 5x, random pseudo-labels, the pool as it is), or with
    ``recipe`` the recommended outlier signal of :func:`rejectnet.outliers.recommended`."""
    outliers = _outliers(ctx, name, synthesis=recipe)
    net = RejectHead.wrap(ctx.model, k=k)
    opts = ctx.finetune_options()
    labels: Any = "random"
    if outliers["outlier_signal"] is not None:
        opts["outlier_signal"] = outliers["outlier_signal"]
        if recipe:
            labels = recommended(pool=outliers["outlier_loader"] is not None).pseudo_labels
    trainer = SelfSupervisedOODFinetuner(
        net, lam=5.0, outlier_ratio=5.0, pseudo_labels=labels, **opts
    )
    _fit(trainer, ctx, outliers)
    net.eval()
    return net


def _rejectnet_method(name: str, recipe: bool) -> Callable[[MethodContext], list[Report]]:
    def run(ctx: MethodContext) -> list[Report]:
        reports: list[Report] = []
        for k in dict.fromkeys((ctx.k, *ctx.ks)):
            row = name if k == ctx.k else f"{name}-k{k}"
            net = _rejectnet_finetune(ctx, k, name, recipe=recipe)
            ctx.models[row] = net
            reports.extend(_reject_rows(ctx, net, name, k))
        return reports

    return run


_ENTRIES = (
    ("msp", "max-softmax of the stage-one model (Hendrycks & Gimpel 2017)", False,
     _baseline("msp"), (0.0, 0.05, 0.0)),
    ("energy", "energy score -logsumexp of the stage-one logits (Liu et al. 2020)", False,
     _peer("energy"), (0.0, 0.05, 0.0)),
    ("max_logit", "max logit of the stage-one model (Hendrycks et al. 2022)", False,
     _peer("max_logit"), (0.0, 0.05, 0.0)),
    ("odin", "ODIN, T 1000, eps 0.0014, ID-only defaults (Liang et al. 2018)", False,
     _peer("odin"), (0.0, 1.0, 0.0)),
    ("mahalanobis", "Mahalanobis on penultimate features fitted on ID training data "
     "(Lee et al. 2018)", False, _peer("mahalanobis"), (0.0, 0.1, 0.0)),
    ("knn", "deep k-NN, k 50, on normalised ID training features (Sun et al. 2022)", False,
     _peer("knn"), (0.0, 0.2, 0.0)),
    ("vim", "virtual-logit matching on ID training features (Wang et al. 2022)", False,
     _peer("vim"), (0.0, 0.1, 0.0)),
    ("odin-tuned", "ODIN with T and eps chosen on OOD test subsamples (the paper's Figure 1 "
     "protocol)", False, _peer("odin-tuned"), (0.0, 1.0, 12.0)),
    ("mahalanobis-tuned", "Mahalanobis with eps chosen on OOD test subsamples (the paper's "
     "Figure 1 protocol)", False, _peer("mahalanobis-tuned"), (0.0, 1.0, 7.0)),
    ("oe", "Outlier Exposure fine-tuning on the pool, lam 0.5 (Hendrycks et al. 2019)", True,
     _oe_method(False), (1.0, 0.05, 0.0)),
    ("oe+synthesis", "Outlier Exposure with the same outlier synthesis as rejectnet", True,
     _oe_method(True), (1.0, 0.05, 0.0)),
    ("rejectnet-paper", "Algorithm 1 exactly: k reject classes, lam 5, outliers 5x, random "
     "pseudo-labels", True, _rejectnet_method("rejectnet-paper", False), (1.0, 0.05, 0.0)),
    ("rejectnet", "the recommended recipe: k reject classes, lam 5, the pool plus outliers "
     "synthesised from ID images (rejectnet.outliers.recommended)", True,
     _rejectnet_method("rejectnet", True),
     (1.0, 0.05, 0.0)),
)  # fmt: skip


METHODS: dict[str, Method] = {e[0]: Method(*e) for e in _ENTRIES}
"""Method name -> :class:`Method`, in the order rows appear in the results."""
