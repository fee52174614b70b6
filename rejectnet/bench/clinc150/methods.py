"""The methods of the benchmark: ``msp``, the post-hoc peers, ``oe``, ``rejectnet-paper``
and ``rejectnet`` (the recipe for text), each from the stage-one weights."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from rejectnet import peers
from rejectnet.bench.clinc150.data import Context, loader
from rejectnet.bench.clinc150.metric import model_report, with_metric
from rejectnet.bench.clinc150.training import finetune_options, fit_stage_two
from rejectnet.evaluation import Report, evaluate
from rejectnet.finetune import OutlierExposureFinetuner, SelfSupervisedOODFinetuner
from rejectnet.head import RejectHead
from rejectnet.outliers import text_recipe
from rejectnet.text import SPECIAL_TOKENS

__all__ = ["CLINC150_METHODS", "POOL_METHODS", "RUNNERS", "check_methods", "text_outlier_signal"]

CLINC150_METHODS = (
    "msp",
    "energy",
    "max_logit",
    "mahalanobis",
    "knn",
    "vim",
    "oe",
    "rejectnet-paper",
    "rejectnet",
)
"""The methods of the benchmark, in the order rows appear."""
POOL_METHODS = frozenset({"oe", "rejectnet-paper"})


def _msp(ctx: Context, name: str) -> list[Report]:
    return [model_report(ctx, ctx.model, name, "msp")]


def _peer(ctx: Context, name: str) -> list[Report]:
    """A post-hoc peer; all peers are built and scored together when the first runs."""
    if not peers.is_available():
        if name in ("energy", "max_logit"):
            ctx.notes[name] = "rejectnet.scores (pytorch-ood is not installed)"
            return [model_report(ctx, ctx.model, name, name)]
        ctx.notes[name] = "skipped: pytorch-ood is not installed (pip install rejectnet[peers])"
        return []
    if name not in ctx.peer_scores:
        names = [n for n in CLINC150_METHODS if n in peers.PEER_NAMES]
        built = peers.build_peers(ctx.model, loader(ctx.data.train, seed=ctx.seed), names=names)
        splits = {"val": ctx.data.val, "test": ctx.data.test, **ctx.data.ood}
        per_split = {s: peers.score_peers(built, loader(ds), name=s) for s, ds in splits.items()}
        for n in names:
            ctx.peer_scores[n] = {s: per_split[s][n] for s in splits}
        ctx.built_peers.update(built)
    sc = ctx.peer_scores.pop(name)
    report = evaluate(
        ctx.built_peers[name],  # never called: its scores are precomputed
        sc["test"],
        {n: sc[n] for n in ctx.data.ood},
        name=name,
        n_runs=ctx.recipe.n_runs,
        seed=ctx.seed,
    )
    return [with_metric(ctx, report, sc["val"].scores.double().numpy())]


def text_outlier_signal(tokenizer: Any, *, pool: bool) -> Any:
    """``rejectnet``'s outlier signal for ``tokenizer``: the signal of
    :func:`rejectnet.outliers.text_recipe` (with a pool: half pool sentences, half
    in-scope utterances with half their tokens random; without: random-token utterances
    alone; no ``[MASK]`` outliers, a token real queries never hold).

    Example:
        >>> from rejectnet.text import train_tokenizer
        >>> sig = text_outlier_signal(train_tokenizer(["a b c"], vocab_size=40), pool=True)
        >>> [type(s).__name__ for s, _ in sig.parts]
        ['PoolRows', 'RandomTokens']
    """
    special = [int(tokenizer.token_to_id(t)) for t in SPECIAL_TOKENS]
    return text_recipe(special, tokenizer.get_vocab_size(), pool=pool).signal


def _needs_pool(ctx: Context, name: str) -> bool:
    if ctx.data.pool is None:
        ctx.notes[name] = "skipped: it needs an outlier pool (run with outliers='pool')"
        return False
    return True


def _oe(ctx: Context, name: str) -> list[Report]:
    if not _needs_pool(ctx, name):
        return []
    model = copy.deepcopy(ctx.model)
    fit_stage_two(ctx, OutlierExposureFinetuner(model, **finetune_options(ctx)), with_pool=True)
    model.eval()
    return [model_report(ctx, model, name, "msp")]


def _reject(
    ctx: Context,
    name: str,
    signal: Any,
    lam: float = 5.0,
    lr: float | None = None,
    score: str = "sum_reject",
) -> list[Report]:
    """Wrap a copy with k reject classes, fine-tune (random pseudo-labels), calibrate
    ``score`` on val, evaluate."""
    net = RejectHead.wrap(ctx.model, k=ctx.recipe.k)
    opts = finetune_options(ctx, lr)
    if signal is not None:
        opts["outlier_signal"] = signal
    trainer = SelfSupervisedOODFinetuner(net, lam=lam, pseudo_labels="random", **opts)
    fit_stage_two(ctx, trainer, with_pool=signal is None or signal.uses_pool)
    net.eval()
    net.calibrate(loader(ctx.data.val), coverage=ctx.recipe.coverage, score=score)
    return [model_report(ctx, net, name, score)]


def _rejectnet_paper(ctx: Context, name: str) -> list[Report]:
    """Algorithm 1 exactly: the pool as it is, random pseudo-labels, lam 5, ratio 5,
    the ``sum_reject`` score."""
    if not _needs_pool(ctx, name):
        return []
    return _reject(ctx, name, None)


def _rejectnet(ctx: Context, name: str) -> list[Report]:
    """The recipe: the pool (when there is one) plus token-level synthesised outliers."""
    signal = text_outlier_signal(ctx.data.tokenizer, pool=ctx.data.pool is not None)
    if ctx.data.pool is None:
        ctx.notes[name] = "no outlier pool: outliers synthesised from in-scope utterances"
    r = ctx.recipe
    return _reject(ctx, name, signal, lam=r.lam, lr=r.rejectnet_lr, score=r.rejectnet_score)


RUNNERS: dict[str, Callable[[Context, str], list[Report]]] = {
    "msp": _msp,
    **{n: _peer for n in ("energy", "max_logit", "mahalanobis", "knn", "vim")},
    "oe": _oe,
    "rejectnet-paper": _rejectnet_paper,
    "rejectnet": _rejectnet,
}


def check_methods(methods: Sequence[str] | None) -> tuple[str, ...]:
    if methods is None:
        return CLINC150_METHODS
    if isinstance(methods, str):
        raise TypeError("methods must be a sequence of method names, not one str")
    unknown = [m for m in methods if m not in RUNNERS]
    if unknown or not methods:
        raise ValueError(
            f"methods must name at least one of {list(CLINC150_METHODS)}; unknown: {unknown}"
        )
    return tuple(dict.fromkeys(methods))
