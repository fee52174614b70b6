"""The methods of the benchmark: ``msp``, the post-hoc peers, ``oe``, ``rejectnet-paper``
and ``rejectnet`` (the recipe for text), each from the stage-one weights."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from rejectnet import peers
from rejectnet.bench.clinc150.data import RECIPE, Context, loader
from rejectnet.bench.clinc150.metric import model_report, with_metric
from rejectnet.bench.clinc150.training import finetune_options, fit_stage_two
from rejectnet.evaluation import Report, evaluate
from rejectnet.finetune import OutlierExposureFinetuner, SelfSupervisedOODFinetuner
from rejectnet.head import RejectHead

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


def text_outlier_signal(
    tokenizer: Any,
    *,
    pool: bool,
    shares: tuple[float, float, float, float] | None = None,
) -> Any:
    """The ``rejectnet`` recipe's outlier signal for text, or ``None`` where
    :mod:`rejectnet.outliers.text` is not available.

    Each outlier batch is split by ``shares`` between pool sentences and outliers made
    from the step's in-scope utterances by span shuffling, by mixing two utterances of
    different intents, and by replacing half of the tokens with random vocabulary ids
    (without a pool, the pool's share goes to the others). Mask-token outliers are left
    out (a ``[MASK]`` token never occurs in real queries, so the model could learn it as
    a shortcut).

    Args:
        tokenizer: The tokenizer of the model (its special ids are never changed and its
            vocabulary size bounds the random tokens).
        pool: Whether the fine-tuning has an outlier pool.
        shares: ``(pool, span_shuffle, mix_utterances, random_tokens)``; default
            ``RECIPE.outlier_shares``.

    Returns:
        A :class:`rejectnet.outliers.ComposedSignal`, or ``None``.
    """
    import importlib

    from rejectnet.outliers import ComposedSignal, PoolRows
    from rejectnet.text import SPECIAL_TOKENS

    try:
        text = importlib.import_module("rejectnet.outliers.text")
    except ImportError:
        return None
    p_pool, p_span, p_mix, p_rand = shares or RECIPE.outlier_shares
    special = [int(tokenizer.token_to_id(t)) for t in SPECIAL_TOKENS]
    parts: list[tuple[Any, float]] = [
        (text.SpanShuffle(special), p_span),
        (text.MixUtterances(special), p_mix),
        (text.RandomTokens(special, tokenizer.get_vocab_size(), 0.5), p_rand),
    ]
    if pool:
        parts.insert(0, (PoolRows(), p_pool))
    return ComposedSignal([(src, share) for src, share in parts if share > 0])


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
    ctx: Context, name: str, signal: Any, lam: float = 5.0, lr: float | None = None
) -> list[Report]:
    """Wrap a copy with k reject classes, fine-tune (random pseudo-labels), calibrate on
    val, evaluate."""
    net = RejectHead.wrap(ctx.model, k=ctx.recipe.k)
    opts = finetune_options(ctx, lr)
    if signal is not None:
        opts["outlier_signal"] = signal
    trainer = SelfSupervisedOODFinetuner(net, lam=lam, pseudo_labels="random", **opts)
    fit_stage_two(ctx, trainer, with_pool=signal is None or signal.uses_pool)
    net.eval()
    net.calibrate(loader(ctx.data.val), coverage=ctx.recipe.coverage, score="sum_reject")
    return [model_report(ctx, net, name, "sum_reject")]


def _rejectnet_paper(ctx: Context, name: str) -> list[Report]:
    """Algorithm 1 exactly: the pool as it is, random pseudo-labels, lam 5, ratio 5."""
    if not _needs_pool(ctx, name):
        return []
    return _reject(ctx, name, None)


def _rejectnet(ctx: Context, name: str) -> list[Report]:
    """The recipe: the pool (when there is one) plus token-level synthesised outliers."""
    signal = text_outlier_signal(
        ctx.data.tokenizer, pool=ctx.data.pool is not None, shares=ctx.recipe.outlier_shares
    )
    if signal is None:
        ctx.notes[name] = "skipped: rejectnet.outliers.text (text outlier synthesis) is missing"
        return []
    if ctx.data.pool is None:
        ctx.notes[name] = "no outlier pool: outliers synthesised from in-scope utterances"
    return _reject(ctx, name, signal, lam=ctx.recipe.lam, lr=ctx.recipe.rejectnet_lr)


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
