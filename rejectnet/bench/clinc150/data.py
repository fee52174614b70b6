"""CLINC150's data and settings: the recipe, the tokenized splits, the loaders."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from rejectnet.bench.augment import SeededShuffle
from rejectnet.bench.errors import BenchError
from rejectnet.evaluation import DatasetScores
from rejectnet.text import Clinc150, TextDataset, load_clinc150, read_utterances, train_tokenizer

__all__ = ["EVAL_BATCH", "POOL_FILE", "RECIPE", "Context", "TextData", "TextRecipe", "loader",
           "prepare_data"]  # fmt: skip

POOL_FILE = "wiki_sentences.txt"
EVAL_BATCH = 256
OOS_SPLITS = ("oos_val", "oos_train", "oos_test")


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
        finetune_lr: AdamW learning rate of stage two (cosine decay) of ``oe`` and
            ``rejectnet-paper`` (dev: 3e-5 cost ``rejectnet-paper`` 2.8 points of
            in-scope val accuracy, 1e-5 kept it within 0.4).
        k: Reject classes of ``rejectnet`` and ``rejectnet-paper``.
        outlier_ratio: Outlier batch over in-scope batch in stage two (the paper's 5).
        n_runs: Equal-size subsamples per out-of-scope set in :func:`rejectnet.evaluate`.
        coverage: Share of in-scope ``val`` accepted by the calibrated threshold.
        lam: ``rejectnet``'s outlier-loss weight (its outliers:
            :func:`rejectnet.outliers.text_recipe`) (``rejectnet-paper`` keeps the paper's 5).
        rejectnet_lr: ``rejectnet``'s stage-two learning rate (dev: of 1e-5, 1.25e-5 and
            1.5e-5, the one that met the out-of-scope targets with the smallest loss of
            in-scope val accuracy, 0.1 point).
        rejectnet_score: ``rejectnet``'s score on the fine-tuned model (dev: ``energy``
            over the C in-scope logits beat ``sum_reject``, ``max_reject``,
            ``weighted_reject`` and ``entropy_reject`` on FPR95 at every lr tried).

    Example:
        >>> from dataclasses import replace
        >>> replace(RECIPE, stage_one_epochs=1).stage_one_epochs, RECIPE.k
        (1, 5)
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
    finetune_lr: float = 1e-5
    k: int = 5
    outlier_ratio: float = 5.0
    n_runs: int = 10
    coverage: float = 0.95
    lam: float = 2.0
    rejectnet_lr: float = 1.25e-5
    rejectnet_score: str = "energy"


RECIPE = TextRecipe()
"""The benchmark's settings."""


@dataclass
class TextData:
    """The tokenized benchmark data of one run (:func:`prepare_data`)."""

    clinc: Clinc150
    tokenizer: Any
    train: TextDataset
    val: TextDataset
    test: TextDataset
    ood: dict[str, TextDataset]
    pool: TextDataset | None
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class Context:
    """What a method gets: the stage-one model, the data, the settings, the seed."""

    model: nn.Module
    data: TextData
    recipe: TextRecipe
    seed: int
    device: torch.device
    progress: bool
    notes: dict[str, str]
    peer_scores: dict[str, dict[str, DatasetScores]] = field(default_factory=dict)
    built_peers: dict[str, Any] = field(default_factory=dict)


def loader(ds: Any, batch_size: int = EVAL_BATCH, seed: int | None = None) -> DataLoader[Any]:
    """Dict batches of ``ds`` (a :class:`~rejectnet.text.TextDataset` or a ``Subset`` of
    one), in order, or shuffled by ``seed`` and the epoch
    (:class:`~rejectnet.bench.augment.SeededShuffle`).

    Example:
        >>> from rejectnet.text import TextDataset, train_tokenizer
        >>> tok = train_tokenizer(["a b", "b c"], vocab_size=40)
        >>> batch = next(iter(loader(TextDataset(["a b", "b c"], tok, [0, 1]))))
        >>> sorted(batch)
        ['attention_mask', 'input_ids', 'labels']
    """
    base: Any = ds.dataset if isinstance(ds, Subset) else ds
    if seed is None:
        return DataLoader(ds, batch_size=batch_size, collate_fn=base.collate)
    order = SeededShuffle(len(ds), seed)
    return DataLoader(
        ds, batch_size=batch_size, sampler=order, generator=order.generator, collate_fn=base.collate
    )


def _dataset(
    texts: list[str], data: tuple[Any, int], labels: Any, what: str, notes: dict[str, str]
) -> TextDataset:
    tokenizer, max_length = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # counted in the notes instead
        ds = TextDataset(texts, tokenizer, labels, max_length=max_length)
    if ds.truncated:
        notes[f"truncated {what}"] = (
            f"{ds.truncated} of {len(ds)} texts longer than {max_length} tokens were cut"
        )
    return ds


def _read(
    data_dir: str | Path, outliers: str, ood: Mapping[str, str | Path] | None
) -> tuple[Clinc150, list[str] | None, dict[str, list[str]]]:
    """The raw texts: CLINC150, the pool (or ``None``) and the extra OOD sets."""
    if outliers not in ("pool", "none"):
        raise BenchError(f"outliers must be 'pool' or 'none', got {outliers!r}")
    clash = sorted(set(ood or {}) & {*OOS_SPLITS, "mixed"})
    if clash:
        raise BenchError(f"--ood names {clash} are taken by CLINC150's splits; rename them")
    try:
        clinc = load_clinc150(data_dir)
        pool = (
            read_utterances(Path(data_dir) / POOL_FILE, what="outlier pool")
            if outliers == "pool"
            else None
        )
        extra = {n: read_utterances(p, what=f"--ood {n}") for n, p in (ood or {}).items()}
    except (FileNotFoundError, ValueError) as e:
        raise BenchError(str(e)) from None
    return clinc, pool, extra


def prepare_data(
    data_dir: str | Path,
    recipe: TextRecipe = RECIPE,
    *,
    outliers: Literal["pool", "none"] = "pool",
    ood: Mapping[str, str | Path] | None = None,
) -> TextData:
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

    Example:
        >>> data = prepare_data("../shared/data/clinc150")  # doctest: +SKIP
        >>> len(data.train), sorted(data.ood)  # doctest: +SKIP
        (15000, ['oos_train', 'oos_val'])
    """
    clinc, pool_texts, extra = _read(data_dir, outliers, ood)
    sp = clinc.splits
    sets = {**{s: sp[s].texts for s in OOS_SPLITS if s in sp}, **extra}
    tokenizer = train_tokenizer(sp["train"].texts, vocab_size=recipe.vocab_size)
    tm = (tokenizer, recipe.max_length)
    notes: dict[str, str] = {}
    split = {s: _dataset(sp[s].texts, tm, sp[s].labels, s, notes) for s in ("train", "val", "test")}
    return TextData(
        clinc=clinc,
        tokenizer=tokenizer,
        **split,
        ood={n: _dataset(t, tm, None, n, notes) for n, t in sets.items()},
        pool=None if pool_texts is None else _dataset(pool_texts, tm, None, "pool", notes),
        notes=notes,
    )
