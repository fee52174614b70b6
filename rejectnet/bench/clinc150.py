"""``rejectnet bench clinc150``: out-of-scope detection for intent classification.

CLINC150 (Larson et al., EMNLP 2019): 150 in-scope intents of a task-oriented assistant
and out-of-scope queries. A small Hugging Face ``BertForSequenceClassification`` (built
from a config, random weights) is trained from scratch on the training utterances with a
WordPiece tokenizer trained on the same utterances (nothing is downloaded). Every method
then starts from those weights: ``msp``; the post-hoc peers on the pooled ``[CLS]``
features (``energy``, ``max_logit``, ``mahalanobis``, ``knn``, ``vim``, via
:mod:`rejectnet.peers`); ``oe`` (Outlier Exposure) and ``rejectnet-paper`` (Algorithm 1
exactly: k = 5 reject classes, lam 5, outlier batches 5x, random pseudo-labels) on the
Wikipedia sentence pool; and ``rejectnet``, the recipe for text (the pool plus token-level
outliers synthesised from the training utterances, :mod:`rejectnet.outliers.text`).
With ``outliers="none"`` there is no pool: the methods that need one are skipped and
``rejectnet`` trains on the synthesised outliers alone.

Batches are the Hugging Face dicts ``{"input_ids", "attention_mask", "labels"}``,
right-padded per batch; the model is called with named inputs.

Reported, on the in-scope ``test`` split against every out-of-scope set (``oos_val``,
``oos_train``, ``oos_test`` when the file has it, and any ``ood`` file): in-scope
accuracy, AUROC / FPR@95%TPR / AUPR (:func:`rejectnet.evaluate`, out-of-scope positive),
and the dataset's own metric at the threshold calibrated on the in-scope ``val`` split
only (95% of it accepted): out-of-scope recall and in-scope accuracy (a rejected
in-scope query counts as an error). Every setting was chosen on ``val`` and the dev
out-of-scope splits, never on ``test``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from rejectnet import peers
from rejectnet.bench.errors import BenchError
from rejectnet.bench.methods import method_seed
from rejectnet.bench.runner import _mean_reports
from rejectnet.bench.tables import seeds_markdown, summary_table
from rejectnet.evaluation import (
    DatasetLogits,
    DatasetScores,
    Report,
    compute_logits,
    evaluate,
    reports_to_markdown,
)
from rejectnet.finetune import (
    OutlierExposureFinetuner,
    SelfSupervisedOODFinetuner,
    train_classifier,
)
from rejectnet.head import RejectHead
from rejectnet.scores import registry, threshold_for_coverage
from rejectnet.text import (
    Clinc150,
    TextDataset,
    load_clinc150,
    read_utterances,
    small_bert,
    train_tokenizer,
)

__all__ = [
    "CLINC150_METHODS",
    "RECIPE",
    "TextRecipe",
    "add_clinc150_parser",
    "clinc150_metric",
    "prepare_data",
    "run_clinc150",
    "run_clinc150_command",
    "text_outlier_signal",
    "train_stage_one",
]

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
POOL_FILE = "wiki_sentences.txt"
EVAL_BATCH = 256
POOL_METHODS = frozenset({"oe", "rejectnet-paper"})


@dataclass(frozen=True)
class TextRecipe:
    """Every setting of the benchmark (chosen on ``val`` and the dev out-of-scope splits).

    Attributes:
        vocab_size: WordPiece vocabulary, trained on the training utterances.
        max_length: Longest token sequence; longer texts are cut (counted in the notes).
        hidden_size: BERT width.
        num_layers: BERT layers.
        num_heads: Attention heads.
        batch_size: In-scope batch size (stage one and stage two).
        stage_one_epochs: Epochs of stage one.
        stage_one_lr: Peak AdamW learning rate of stage one (10% linear warm-up, then
            linear decay to 0).
        weight_decay: AdamW weight decay (both stages).
        finetune_epochs: Epochs of stage two (every fine-tuned method).
        finetune_subset: In-scope training utterances per stage-two epoch (a random
            subset; ``None`` for all).
        finetune_lr: AdamW learning rate of stage two (cosine decay).
        k: Reject classes of ``rejectnet`` and ``rejectnet-paper``.
        outlier_ratio: Outlier batch over in-scope batch in stage two (the paper's 5).
        n_runs: Equal-size subsamples per out-of-scope set in :func:`rejectnet.evaluate`.
        coverage: Share of in-scope ``val`` accepted by the calibrated threshold.
        outlier_shares: ``rejectnet``'s outlier batch: shares of pool sentences, span
            shuffles, mixed utterances and random-token utterances
            (:func:`text_outlier_signal`).
        lam: ``rejectnet``'s outlier-loss weight (``rejectnet-paper`` keeps the paper's 5).
    """

    vocab_size: int = 8000
    max_length: int = 32
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    batch_size: int = 64
    stage_one_epochs: int = 10
    stage_one_lr: float = 1e-3
    weight_decay: float = 0.01
    finetune_epochs: int = 1
    finetune_subset: int | None = 6000
    finetune_lr: float = 3e-5
    k: int = 5
    outlier_ratio: float = 5.0
    n_runs: int = 10
    coverage: float = 0.95
    outlier_shares: tuple[float, float, float, float] = (0.5, 0.0, 0.0, 0.5)
    lam: float = 5.0


RECIPE = TextRecipe()
"""The benchmark's settings."""


@dataclass
class _Data:
    """The tokenized benchmark data of one run."""

    clinc: Clinc150
    tokenizer: Any
    train: TextDataset
    val: TextDataset
    test: TextDataset
    ood: dict[str, TextDataset]
    pool: TextDataset | None
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class _Context:
    """What a method gets: the stage-one model, the data, the settings, the seed."""

    model: nn.Module
    data: _Data
    recipe: TextRecipe
    seed: int
    device: torch.device
    progress: bool
    notes: dict[str, str]
    peer_scores: dict[str, dict[str, DatasetScores]] = field(default_factory=dict)
    built_peers: dict[str, Any] = field(default_factory=dict)


def _loader(ds: Any, batch_size: int = EVAL_BATCH, seed: int | None = None) -> DataLoader[Any]:
    base: Any = ds.dataset if isinstance(ds, Subset) else ds
    g = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(
        ds, batch_size=batch_size, shuffle=seed is not None, generator=g, collate_fn=base.collate
    )


def _dataset(
    texts: list[str], data: tuple[Any, int], labels: Any, what: str, notes: dict[str, str]
) -> TextDataset:
    import warnings

    tokenizer, max_length = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # counted in the notes instead
        ds = TextDataset(texts, tokenizer, labels, max_length=max_length)
    if ds.truncated:
        notes[f"truncated {what}"] = (
            f"{ds.truncated} of {len(ds)} texts longer than {max_length} tokens were cut"
        )
    return ds


def prepare_data(
    data_dir: str | Path,
    recipe: TextRecipe = RECIPE,
    *,
    outliers: Literal["pool", "none"] = "pool",
    ood: Mapping[str, str | Path] | None = None,
) -> _Data:
    """Read CLINC150 (and the pool and OOD files), train the tokenizer, tokenize.

    Args:
        data_dir: Folder with ``clinc150.json`` (and ``wiki_sentences.txt`` for the pool).
        recipe: The settings (vocabulary size, max length).
        outliers: ``"pool"`` reads the Wikipedia sentences; ``"none"`` uses no pool.
        ood: Extra out-of-scope sets, name -> ``.txt`` / ``.json`` file.

    Returns:
        The tokenized splits.

    Raises:
        BenchError: For a missing or malformed file (naming it), or a bad OOD name.
    """
    if outliers not in ("pool", "none"):
        raise BenchError(f"outliers must be 'pool' or 'none', got {outliers!r}")
    clash = sorted(set(ood or {}) & {"oos_val", "oos_train", "oos_test", "mixed"})
    if clash:
        raise BenchError(f"--ood names {clash} are taken by CLINC150's splits; rename them")
    try:
        clinc = load_clinc150(data_dir)
        pool_texts = (
            read_utterances(Path(data_dir) / POOL_FILE, what="outlier pool")
            if outliers == "pool"
            else None
        )
        extra = {n: read_utterances(p, what=f"--ood {n}") for n, p in (ood or {}).items()}
    except (FileNotFoundError, ValueError) as e:
        raise BenchError(str(e)) from None
    sp = clinc.splits
    oos: dict[str, list[str]] = {
        s: sp[s].texts for s in ("oos_val", "oos_train", "oos_test") if s in sp
    }
    tokenizer = train_tokenizer(sp["train"].texts, vocab_size=recipe.vocab_size)
    tm = (tokenizer, recipe.max_length)
    sets: dict[str, list[str]] = {**oos, **extra}
    notes: dict[str, str] = {}
    return _Data(
        clinc=clinc,
        tokenizer=tokenizer,
        train=_dataset(sp["train"].texts, tm, sp["train"].labels, "train", notes),
        val=_dataset(sp["val"].texts, tm, sp["val"].labels, "val", notes),
        test=_dataset(sp["test"].texts, tm, sp["test"].labels, "test", notes),
        ood={n: _dataset(t, tm, None, n, notes) for n, t in sets.items()},
        pool=None if pool_texts is None else _dataset(pool_texts, tm, None, "pool", notes),
        notes=notes,
    )


def _adamw(lr: float, weight_decay: float) -> Callable[[Any], torch.optim.Optimizer]:
    def make(params: Any) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    return make


def _warmup_linear(optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    """10% linear warm-up to the optimizer's lr, then linear decay to 0."""
    lr = optimizer.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=max(total_steps, 2), pct_start=0.1,
        anneal_strategy="linear",
    )  # fmt: skip


def train_stage_one(
    data: _Data, recipe: TextRecipe, seed: int, device: torch.device, progress: bool
) -> tuple[nn.Module, float | None]:
    """Train the small BERT from scratch on the training utterances.

    Returns:
        The model (eval mode) and its in-scope ``val`` accuracy.
    """
    torch.manual_seed(method_seed(seed, "stage-one"))
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
        _loader(data.train, recipe.batch_size, seed=seed),
        epochs=recipe.stage_one_epochs,
        val_loader=_loader(data.val),
        optimizer=_adamw(recipe.stage_one_lr, recipe.weight_decay),
        scheduler=_warmup_linear,
        seed=seed,
        device=device,
        progress=progress,
    )
    model.eval()
    return model, (hist[-1].val_accuracy if hist else None)


def clinc150_metric(
    s_val: npt.ArrayLike,
    s_test: npt.ArrayLike,
    correct: npt.ArrayLike,
    s_oos: Mapping[str, npt.ArrayLike],
    coverage: float = 0.95,
) -> dict[str, Any]:
    """CLINC150's own metric at a threshold calibrated on in-scope ``val`` scores only.

    The threshold accepts ``coverage`` of the in-scope validation queries
    (:func:`rejectnet.scores.threshold_for_coverage`); a query scoring above it is
    predicted out-of-scope.

    Args:
        s_val: In-scope validation scores (higher = more out-of-scope).
        s_test: In-scope test scores.
        correct: Per in-scope test query, whether its intent was predicted right.
        s_oos: Out-of-scope set name -> scores.
        coverage: Share of ``s_val`` accepted.

    Returns:
        ``{"threshold", "coverage", "in_scope_accuracy", "oos_recall": {set: recall}}``:
        in-scope accuracy counts a rejected in-scope query as an error.

    Example:
        >>> m = clinc150_metric([0.1, 0.2, 0.3, 0.9], [0.1, 0.5, 0.95], [True, True, True],
        ...                     {"oos": [0.95, 0.2]}, coverage=0.75)
        >>> m["threshold"], round(m["in_scope_accuracy"], 3), m["oos_recall"]
        (0.3, 0.333, {'oos': 0.5})
    """
    thr = threshold_for_coverage(np.asarray(s_val, dtype=np.float64), coverage).value
    s_in = np.asarray(s_test, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if ok.shape != s_in.shape:
        raise ValueError(f"correct has shape {ok.shape}, s_test {s_in.shape}; give one each")
    return {
        "threshold": thr,
        "coverage": coverage,
        "in_scope_accuracy": float(np.mean(ok & (s_in <= thr))),
        "oos_recall": {k: float(np.mean(np.asarray(v) > thr)) for k, v in s_oos.items()},
    }


def _with_metric(ctx: _Context, report: Report, s_val: npt.ArrayLike) -> Report:
    """Attach the dataset's metric to ``report.selective`` (``clinc150_*`` keys)."""
    assert report.correct is not None
    oos = {k: v for k, v in report.scores_out.items() if k != "mixed"}
    m = clinc150_metric(s_val, report.scores_in, report.correct, oos, ctx.recipe.coverage)
    report.selective["clinc150_threshold"] = m["threshold"]
    report.selective["clinc150_in_scope_accuracy"] = m["in_scope_accuracy"]
    for k, v in m["oos_recall"].items():
        report.selective[f"clinc150_oos_recall_{k}"] = v
    return report


def _model_report(ctx: _Context, model: nn.Module, name: str, score: str) -> Report:
    """Evaluate ``model`` with ``score``: logits once per split, then the metrics."""
    dev = ctx.device

    def logits(ds: TextDataset, what: str) -> DatasetLogits:
        return compute_logits(model, _loader(ds), device=dev, name=what)

    val = logits(ctx.data.val, "val")
    if isinstance(model, RejectHead):
        s_val = model.score_logits(val.logits, score)
    else:
        s_val = registry.compute(score, val.logits)
    report = evaluate(
        model,
        logits(ctx.data.test, "test"),
        {n: logits(ds, n) for n, ds in ctx.data.ood.items()},
        score,
        name=name,
        n_runs=ctx.recipe.n_runs,
        seed=ctx.seed,
    )
    return _with_metric(ctx, report, s_val.double().cpu().numpy())


def _msp(ctx: _Context, name: str) -> list[Report]:
    return [_model_report(ctx, ctx.model, name, "msp")]


def _peer(ctx: _Context, name: str) -> list[Report]:
    """A post-hoc peer; all peers are built and scored together when the first runs."""
    if not peers.is_available():
        if name in ("energy", "max_logit"):
            ctx.notes[name] = "rejectnet.scores (pytorch-ood is not installed)"
            return [_model_report(ctx, ctx.model, name, name)]
        ctx.notes[name] = "skipped: pytorch-ood is not installed (pip install rejectnet[peers])"
        return []
    if name not in ctx.peer_scores:
        names = [n for n in CLINC150_METHODS if n in peers.PEER_NAMES]
        built = peers.build_peers(ctx.model, _loader(ctx.data.train, seed=ctx.seed), names=names)
        splits = {"val": ctx.data.val, "test": ctx.data.test, **ctx.data.ood}
        per_split = {s: peers.score_peers(built, _loader(ds), name=s) for s, ds in splits.items()}
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
    return [_with_metric(ctx, report, sc["val"].scores.double().numpy())]


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


def _finetune_options(ctx: _Context) -> dict[str, Any]:
    r = ctx.recipe
    return dict(
        epochs=r.finetune_epochs,
        optimizer=_adamw(r.finetune_lr, r.weight_decay),
        scheduler="cosine",
        outlier_ratio=r.outlier_ratio,
        seed=ctx.seed,
        device=ctx.device,
        progress=ctx.progress,
    )


def _fit(ctx: _Context, trainer: Any, with_pool: bool) -> None:
    """Stage two on a seeded random subset of the training utterances (same for all)."""
    r, data = ctx.recipe, ctx.data
    n = len(data.train)
    rows = np.random.default_rng(ctx.seed).permutation(n)[: r.finetune_subset or n]
    in_loader = _loader(Subset(data.train, rows.tolist()), r.batch_size, seed=ctx.seed)
    pool = None
    if with_pool and data.pool is not None:
        pool = _loader(data.pool, int(r.batch_size * r.outlier_ratio), seed=ctx.seed + 1)
    trainer.fit(in_loader, pool, _loader(data.val))


def _needs_pool(ctx: _Context, name: str) -> bool:
    if ctx.data.pool is None:
        ctx.notes[name] = "skipped: it needs an outlier pool (run with outliers='pool')"
        return False
    return True


def _oe(ctx: _Context, name: str) -> list[Report]:
    if not _needs_pool(ctx, name):
        return []
    model = copy.deepcopy(ctx.model)
    _fit(ctx, OutlierExposureFinetuner(model, **_finetune_options(ctx)), with_pool=True)
    model.eval()
    return [_model_report(ctx, model, name, "msp")]


def _reject(ctx: _Context, name: str, signal: Any, labels: str, lam: float = 5.0) -> list[Report]:
    """Wrap a copy with k reject classes, fine-tune, calibrate on val, evaluate."""
    net = RejectHead.wrap(ctx.model, k=ctx.recipe.k)
    opts = _finetune_options(ctx)
    if signal is not None:
        opts["outlier_signal"] = signal
    trainer = SelfSupervisedOODFinetuner(net, lam=lam, pseudo_labels=labels, **opts)
    _fit(ctx, trainer, with_pool=signal is None or signal.uses_pool)
    net.eval()
    net.calibrate(_loader(ctx.data.val), coverage=ctx.recipe.coverage, score="sum_reject")
    return [_model_report(ctx, net, name, "sum_reject")]


def _rejectnet_paper(ctx: _Context, name: str) -> list[Report]:
    """Algorithm 1 exactly: the pool as it is, random pseudo-labels, lam 5, ratio 5."""
    if not _needs_pool(ctx, name):
        return []
    return _reject(ctx, name, None, "random")


def _rejectnet(ctx: _Context, name: str) -> list[Report]:
    """The recipe: the pool (when there is one) plus token-level synthesised outliers."""
    signal = text_outlier_signal(
        ctx.data.tokenizer, pool=ctx.data.pool is not None, shares=ctx.recipe.outlier_shares
    )
    if signal is None:
        ctx.notes[name] = "skipped: rejectnet.outliers.text (text outlier synthesis) is missing"
        return []
    if ctx.data.pool is None:
        ctx.notes[name] = "no outlier pool: outliers synthesised from in-scope utterances"
    return _reject(ctx, name, signal, "random", lam=ctx.recipe.lam)


_RUNNERS: dict[str, Callable[[_Context, str], list[Report]]] = {
    "msp": _msp,
    **{n: _peer for n in ("energy", "max_logit", "mahalanobis", "knn", "vim")},
    "oe": _oe,
    "rejectnet-paper": _rejectnet_paper,
    "rejectnet": _rejectnet,
}


def _check_methods(methods: Sequence[str] | None) -> tuple[str, ...]:
    if methods is None:
        return CLINC150_METHODS
    if isinstance(methods, str):
        raise TypeError("methods must be a sequence of method names, not one str")
    unknown = [m for m in methods if m not in _RUNNERS]
    if unknown or not methods:
        raise ValueError(
            f"methods must name at least one of {list(CLINC150_METHODS)}; unknown: {unknown}"
        )
    return tuple(dict.fromkeys(methods))


def _log(progress: bool, t0: float, message: str) -> None:
    if progress:
        print(f"[clinc150 {time.perf_counter() - t0:6.0f} s] {message}", file=sys.stderr)


def _run_seed(
    data: _Data, recipe: TextRecipe, seed: int, methods: Sequence[str], opts: dict[str, Any]
) -> tuple[list[Report], dict[str, float], dict[str, str]]:
    """Stage one and every method for one seed."""
    t0, progress, device = opts["t0"], opts["progress"], opts["device"]
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        model, acc = train_stage_one(data, recipe, seed, device, opts["bars"])
    seconds = {"stage-one": time.perf_counter() - started}
    notes: dict[str, str] = {}
    if acc is not None:
        notes["stage-one"] = f"seed {seed}: in-scope val accuracy {100 * acc:.2f}%"
    _log(progress, t0, f"seed {seed}: stage one done ({notes.get('stage-one', '')})")
    ctx = _Context(model, data, recipe, seed, device, opts["bars"], notes)
    reports: list[Report] = []
    for m in methods:
        started = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(method_seed(seed, m))
            rows = _RUNNERS[m](ctx, m)
        seconds[m] = time.perf_counter() - started
        reports.extend(rows)
        shown = ctx.notes.get(m, "")
        if rows and "mixed" in rows[0].ood:
            shown = f"mixed AUROC {100 * rows[0].ood['mixed'].mean['auroc']:.2f}%"
        _log(progress, t0, f"seed {seed}: {m} done in {seconds[m]:.0f} s {shown}")
    return reports, seconds, notes


def run_clinc150(
    data_dir: str | Path,
    out: str | Path,
    *,
    seeds: int = 1,
    outliers: Literal["pool", "none"] = "pool",
    ood: Mapping[str, str | Path] | None = None,
    methods: Sequence[str] | None = None,
    recipe: TextRecipe = RECIPE,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the CLINC150 out-of-scope benchmark; write ``results.json``, ``.md``, ``.html``.

    Args:
        data_dir: Folder with ``clinc150.json`` (and ``wiki_sentences.txt`` for the pool).
        out: Output folder (created if missing).
        seeds: Seeds (stage one and every method once per seed; results are means).
        outliers: ``"pool"`` (the Wikipedia sentences) or ``"none"`` (no pool: ``oe`` and
            ``rejectnet-paper`` are skipped, ``rejectnet`` synthesises its outliers).
        ood: Extra out-of-scope sets, name -> ``.txt`` (one a line) or ``.json`` list.
        methods: A subset of :data:`CLINC150_METHODS` (default: all).
        recipe: The settings (:data:`RECIPE`).
        device: Where to train; default CUDA when available.
        progress: One line per stage on stderr (and bars on a terminal).

    Returns:
        The content of ``results.json`` (the schema of ``rejectnet bench run``: method ->
        ``{"id_accuracy", "score", "ood", "selective", ...}``, fractions; ``selective``
        adds the dataset's metric as ``clinc150_in_scope_accuracy`` and
        ``clinc150_oos_recall_<set>``), plus ``"_meta"``.

    Raises:
        BenchError: For missing or malformed data (one line naming the file).

    Example:
        >>> from rejectnet.bench.clinc150 import run_clinc150
        >>> r = run_clinc150("../shared/data/clinc150", "runs/clinc150")  # doctest: +SKIP
        >>> r["rejectnet"]["ood"]["oos_val"]["auroc"]  # doctest: +SKIP
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an int >= 1, got {seeds!r}")
    names = _check_methods(methods)
    t0 = time.perf_counter()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = prepare_data(data_dir, recipe, outliers=outliers, ood=ood)
    _log(progress, t0, f"data ready: {len(data.train)} train, {len(data.test)} test utterances")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    opts = {"t0": t0, "progress": progress, "device": dev, "bars": progress and _tty()}
    per_method: dict[str, list[Report]] = {}
    seconds: dict[str, float] = {}
    notes = dict(data.notes)
    last: list[Report] = []
    for seed in range(seeds):
        last, secs, seed_notes = _run_seed(data, recipe, seed, names, opts)
        for r in last:
            per_method.setdefault(r.name, []).append(r)
        for k, v in secs.items():
            seconds[k] = seconds.get(k, 0.0) + v
        for k, note in seed_notes.items():
            notes[k] = f"{notes[k]}; {note}" if k == "stage-one" and k in notes else note
    if not per_method:
        raise BenchError("no method produced results: " + "; ".join(notes.values()))
    meta = {
        "benchmark": "clinc150",
        "recipe": asdict(recipe),
        "seeds": seeds,
        "outliers": outliers,
        "ood_sets": list(data.ood),
        "notes": notes,
        "method_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "seconds": round(time.perf_counter() - t0, 1),
        "device": str(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    return _write(out_dir, per_method, last, meta, progress)


def _tty() -> bool:
    return sys.stderr.isatty()


def _write(
    out_dir: Path,
    per_method: dict[str, list[Report]],
    last: list[Report],
    meta: dict[str, Any],
    progress: bool,
) -> dict[str, Any]:
    """results.json (``bench run``'s schema), results.md and report.html."""
    from rejectnet.report_html import reports_to_html

    results: dict[str, Any] = {name: _mean_reports(rs) for name, rs in per_method.items()}
    (out_dir / "results.json").write_text(json.dumps({**results, "_meta": meta}, indent=2))
    intro = (
        "In-scope: CLINC150 test (150 intents); out-of-scope sets: "
        f"{', '.join(meta['ood_sets'])}; outlier pool: {meta['outliers']}. Percentages; "
        "the dataset's metric (in-scope accuracy and out-of-scope recall at the threshold "
        "calibrated on in-scope val) is below."
    )
    shown = f"seed {meta['seeds'] - 1} of {meta['seeds']} shown"
    header = f"# rejectnet bench clinc150 ({shown})\n\n{intro}\n\n"
    md = header + reports_to_markdown(last) + "\n\n" + _metric_table(results) + "\n"
    if meta["seeds"] > 1:
        md += f"\n## Mean ± std over the {meta['seeds']} seeds\n\n" + seeds_markdown(results)
    md += "\nNotes:\n\n" + "".join(f"- `{k}`: {v}\n" for k, v in meta["notes"].items())
    (out_dir / "results.md").write_text(md)
    page = reports_to_html(last, title="rejectnet bench: CLINC150", intro=intro)
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    if progress:
        print(summary_table(results))
        print(f"wrote {out_dir}/results.md, results.json, report.html ({meta['seconds']:.0f} s)")
    return {**results, "_meta": meta}


def _metric_table(results: Mapping[str, Any]) -> str:
    """The dataset's own metric, one row per method (mean over seeds)."""
    rows = [
        "| method | in-scope acc. | in-scope acc. at threshold | out-of-scope recall |",
        "|---|---|---|---|",
    ]
    for name, entry in results.items():
        sel = entry["selective"]
        recall = ", ".join(
            f"{k.removeprefix('clinc150_oos_recall_')} {100 * v:.1f}"
            for k, v in sel.items()
            if k.startswith("clinc150_oos_recall_")
        )
        acc = entry["id_accuracy"]
        rows.append(
            f"| {name} | {100 * acc:.2f} | "
            f"{100 * sel.get('clinc150_in_scope_accuracy', float('nan')):.2f} | {recall} |"
        )
    return "\n".join(rows)


def add_clinc150_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``clinc150`` to the ``rejectnet bench`` subcommands.

    Args:
        subparsers: The ``bench`` command's ``add_subparsers()`` object.

    Returns:
        The new parser (its handler is ``args.clinc150_handler``).

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser()
        >>> _ = add_clinc150_parser(p.add_subparsers(dest="benchmark"))
        >>> a = p.parse_args(["clinc150", "--data-dir", "d", "--out", "o", "--ood", "x=y.txt"])
        >>> a.data_dir, a.seeds, a.outliers, a.ood
        ('d', 1, 'pool', ['x=y.txt'])
    """
    p: argparse.ArgumentParser = subparsers.add_parser(
        "clinc150",
        help="out-of-scope detection for intent classification (CLINC150, text)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--data-dir", required=True, help="folder with clinc150.json")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seeds", type=int, default=1, help="seeds (default 1)")
    p.add_argument("--outliers", choices=["pool", "none"], default="pool", help="outlier pool")
    p.add_argument(
        "--ood", action="append", default=[], metavar="NAME=PATH",
        help="extra out-of-scope set: a .txt (one a line) or .json list of strings",
    )  # fmt: skip
    p.add_argument("--methods", help=f"comma-separated subset of {','.join(CLINC150_METHODS)}")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(clinc150_handler=run_clinc150_command)
    return p


def run_clinc150_command(args: argparse.Namespace) -> int:
    """Run ``rejectnet bench clinc150`` from parsed arguments; returns the exit status."""
    ood: dict[str, str] = {}
    for item in args.ood:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            print(f"rejectnet bench clinc150: error: --ood wants NAME=PATH, got {item!r}",
                  file=sys.stderr)  # fmt: skip
            return 2
        ood[name] = path
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    try:
        run_clinc150(
            args.data_dir,
            args.out,
            seeds=args.seeds,
            outliers=args.outliers,
            ood=ood,
            methods=methods,
            device=args.device,
            progress=not args.quiet,
        )
    except (BenchError, FileNotFoundError, ValueError, TypeError) as err:
        print(f"rejectnet bench clinc150: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0
