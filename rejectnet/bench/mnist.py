"""``rejectnet bench mnist``: the paper's MNIST row, a preset of the general runner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rejectnet.bench.config import config_from_dict
from rejectnet.bench.errors import BenchError
from rejectnet.bench.runner import run_bench

__all__ = ["mnist_config", "run_mnist"]


def mnist_config(
    data_dir: str | Path,
    *,
    preset: str = "quick",
    outliers: str | Path | None = None,
    ood: Mapping[str, Any] | None = None,
    seeds: int = 1,
    ks: Sequence[int] = (5,),
    scores: Sequence[str] = ("sum",),
    methods: Sequence[str] | None = None,
    plots: bool = True,
    val_size: int | None = None,
) -> dict[str, Any]:
    """The config dict of the MNIST row (the shape of a TOML file).

    Args:
        data_dir: Folder with ``mnist.npz`` (and, by default, ``photo_patches.npz`` and
            ``fashion_mnist.npz``).
        preset: ``"quick"``, ``"paper"`` or ``"smoke"``.
        outliers: The training outlier pool (default ``data_dir/photo_patches.npz``),
            ``"emnist"`` (``data_dir/emnist_letters.npz``, the paper's own pool), a path,
            or ``"none"``.
        ood: Extra OOD test sets, name -> path or ``{"path": ..., "group": "near"}``;
            ``fashion`` (``data_dir/fashion_mnist.npz``) is included when present.
        seeds: Independent runs.
        ks: Reject-class counts; ``5`` (else the first) is the main row, the others
            add ``rejectnet-k<k>`` rows.
        scores: Reject scores; ``sum`` is the main row, others add ``rejectnet-<score>``.
        methods: Methods to run (default all).
        plots: Write plots.
        val_size: ``[train] val_size`` (default: the preset's, scaled to the data).

    Returns:
        The config as nested dicts, with absolute paths.

    Raises:
        BenchError: If no OOD set is found.
    """
    root = Path(data_dir).resolve()
    sets: dict[str, Any] = {}
    if (root / "fashion_mnist.npz").exists():
        sets["fashion"] = str(root / "fashion_mnist.npz")
    sets.update(dict(ood or {}))
    if not sets:
        raise BenchError(f"no OOD test set: {root / 'fashion_mnist.npz'} is missing and no --ood")
    if outliers is None:
        pool = str(root / "photo_patches.npz")
    elif str(outliers).strip().lower() == "emnist":
        pool = str(root / "emnist_letters.npz")
        if not Path(pool).is_file():
            raise BenchError(f"--outliers emnist: {pool!r} is missing (EMNIST letters, x_train)")
    elif str(outliers).strip().lower() == "none":
        pool = "none"
    else:
        pool = str(Path(outliers).resolve())
    main_k = 5 if 5 in ks or not ks else ks[0]
    cfg: dict[str, Any] = {
        "data": {"id": str(root / "mnist.npz"), "outliers": pool, "ood": sets},
        "model": {"name": "small_cnn"},
        "train": {"preset": preset, "seeds": seeds, "k": main_k},
        "eval": {"ks": [k for k in ks if k != main_k], "scores": list(scores)},
        "output": {"plots": plots},
    }
    if methods is not None:
        cfg["eval"]["methods"] = list(methods)
    if val_size is not None:
        cfg["train"]["val_size"] = val_size
    return cfg


def run_mnist(
    data_dir: str | Path,
    *,
    preset: str = "quick",
    outliers: str | Path | None = None,
    ood: Mapping[str, Any] | None = None,
    seeds: int = 1,
    out: str | Path | None = None,
    ks: Sequence[int] = (5,),
    scores: Sequence[str] = ("sum",),
    methods: Sequence[str] | None = None,
    progress: bool = True,
    plots: bool = True,
    val_size: int | None = None,
) -> dict[str, Any]:
    """Run the MNIST benchmark (see :func:`mnist_config` for the arguments).

    Args:
        data_dir: Folder with ``mnist.npz`` etc.
        preset: ``"quick"``, ``"paper"`` or ``"smoke"``.
        outliers: The training outlier pool, or ``"none"``.
        ood: Extra OOD test sets, name -> path.
        seeds: Independent runs (averaged).
        out: Output folder (default ``runs/mnist-<preset>``).
        ks: Reject-class counts (ablation rows).
        scores: Reject scores (ablation rows).
        methods: Methods to run (default all).
        progress: Progress lines with an ETA.
        plots: Write plots.
        val_size: ``[train] val_size``.

    Returns:
        The content of ``results.json``.

    Raises:
        BenchError: For a bad argument or data file (one line).

    Example:
        >>> results = run_mnist("../shared/data", preset="quick")  # doctest: +SKIP
        >>> results["rejectnet"]["ood"]["fashion"]["auroc"]  # doctest: +SKIP
    """
    raw = mnist_config(
        data_dir,
        preset=preset,
        outliers=outliers,
        ood=ood,
        seeds=seeds,
        ks=ks,
        scores=scores,
        methods=methods,
        plots=plots,
        val_size=val_size,
    )
    cfg = config_from_dict(raw, Path(data_dir))
    return run_bench(cfg, out or Path("runs") / f"mnist-{preset}", progress=progress)
