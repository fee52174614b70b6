"""What the paper's experiments share: a preset's config dict (the shape of a TOML file).

``rejectnet bench mnist`` (:mod:`rejectnet.bench.mnist`) and ``rejectnet bench cifar10``
(:mod:`rejectnet.bench.cifar10`) each choose the data files, the network and the
schedule; :func:`preset_config` adds what every preset takes alike (seeds, reject-class
counts, scores, methods, plots, held-out size), :func:`outlier_pool` reads the
``outliers`` argument and :func:`ood_sets` the OOD test sets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

from rejectnet.bench.errors import BenchError

__all__ = ["RunOptions", "ood_sets", "outlier_pool", "preset_config"]


class RunOptions(TypedDict, total=False):
    """The keyword arguments every preset takes (see :func:`preset_config`)."""

    seeds: int
    ks: Sequence[int]
    scores: Sequence[str]
    methods: Sequence[str] | None
    plots: bool
    val_size: int | None


def preset_config(
    data: dict[str, Any],
    model: dict[str, Any],
    train: dict[str, Any],
    *,
    seeds: int = 1,
    ks: Sequence[int] = (5,),
    scores: Sequence[str] = ("sum",),
    methods: Sequence[str] | None = None,
    plots: bool = True,
    val_size: int | None = None,
) -> dict[str, Any]:
    """A preset's config dict: its ``[data]``, ``[model]`` and ``[train]`` plus the options.

    Args:
        data: The ``[data]`` table (absolute paths).
        model: The ``[model]`` table.
        train: The preset's ``[train]`` table (at least ``preset``).
        seeds: Independent runs.
        ks: Reject-class counts; ``5`` (else the first) is the main row, the others add
            ``rejectnet-k<k>`` rows.
        scores: Reject scores; ``sum`` is the main row, others add ``rejectnet-<score>``.
        methods: Methods to run (default all).
        plots: Write plots.
        val_size: ``[train] val_size`` (default: the preset's, scaled to the data).

    Returns:
        The config as nested dicts.

    Example:
        >>> cfg = preset_config({"id": "/d/id.npz"}, {"name": "small_cnn"},
        ...                     {"preset": "smoke"}, ks=(2, 5))
        >>> cfg["train"], cfg["eval"]
        ({'preset': 'smoke', 'seeds': 1, 'k': 5}, {'ks': [2], 'scores': ['sum']})
    """
    main_k = 5 if 5 in ks or not ks else ks[0]
    train = {**train, "seeds": seeds, "k": main_k}
    if val_size is not None:
        train["val_size"] = val_size
    evals: dict[str, Any] = {"ks": [k for k in ks if k != main_k], "scores": list(scores)}
    if methods is not None:
        evals["methods"] = list(methods)
    return {"data": data, "model": model, "train": train, "eval": evals, "output": {"plots": plots}}


def outlier_pool(outliers: str | Path, named: Mapping[str, Callable[[], Path]]) -> str:
    """The ``[data] outliers`` value of an ``outliers`` argument.

    Args:
        outliers: A name of ``named`` (any case), ``"none"`` or a path.
        named: Name -> the file it stands for (a function, so that it can check the
            file and say how to get it).

    Returns:
        The absolute path, or ``"none"``.

    Example:
        >>> outlier_pool(" None", {}), outlier_pool("pool", {"pool": lambda: Path("/d/p.npz")})
        ('none', '/d/p.npz')
    """
    key = str(outliers).strip().lower()
    if key in named:
        return str(named[key]())
    if key == "none":
        return "none"
    return str(Path(outliers).resolve())


def ood_sets(
    found: dict[str, Any], extra: Mapping[str, Any] | None, missing: str
) -> dict[str, Any]:
    """The OOD test sets: the preset's files that were found, then the user's.

    Args:
        found: Name -> path (or ``{"path", "group"}``) of the preset's sets present.
        extra: The user's sets (they win over a preset's set of the same name).
        missing: What was missing, for the error.

    Returns:
        Name -> set.

    Raises:
        BenchError: If there is no set at all.
    """
    sets = {**found, **dict(extra or {})}
    if not sets:
        raise BenchError(f"no OOD test set: {missing} and no --ood")
    return sets
