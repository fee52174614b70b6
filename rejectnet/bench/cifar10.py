"""``rejectnet bench cifar10``: the paper's CIFAR-10 experiment, a preset of the general runner.

The data are the unpacked files of ``../shared/data`` (``python ../shared/data/unpack.py
DIR``): ``cifar10.npz`` in-distribution, ``tin_pool.npz`` as the training outlier pool,
and, when present, ``tin_near_dev.npz`` (near-OOD), ``mnist.npz`` and
``fashion_mnist.npz`` (far-OOD, converted to 3 x 32 x 32) as the default OOD sets.

The two schedules (:data:`CIFAR_SCHEDULES`) change what natural images need and digits
did not: standard augmentation (random crop with padding 4, horizontal flip) in stage
one and on both sides of stage two, weight decay 5e-4, per-channel normalisation inside
the model (``[model] normalize``), batch 128, lr 0.1 cosine in stage one; ``quick`` is a
CIFAR ResNet-20 for a CPU, ``paper`` the paper's WRN-40-2 (dropout 0.3) for a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rejectnet.bench.config import config_from_dict
from rejectnet.bench.errors import BenchError
from rejectnet.bench.experiment import ood_sets, outlier_pool, preset_config
from rejectnet.bench.runner import run_bench

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from rejectnet.bench.experiment import RunOptions

__all__ = ["CIFAR_MODELS", "CIFAR_SCHEDULES", "DEFAULT_OOD", "cifar10_config", "run_cifar10"]

CIFAR_SCHEDULES: dict[str, dict[str, Any]] = {
    "quick": {
        "preset": "quick",
        "stage_one_epochs": 30,
        "stage_one_batch_size": 128,
        "stage_one_lr": 0.1,
        "finetune_epochs": 2,
        "finetune_subset": 25_600,
        "batch_size": 128,
        "lr": 0.01,
        "weight_decay": 5e-4,
        "augment": True,
        "crop_padding": 4,
    },
    "paper": {
        "preset": "paper",
        "stage_one_epochs": 100,
        "stage_one_batch_size": 128,
        "stage_one_lr": 0.1,
        "finetune_epochs": 10,
        "batch_size": 128,
        "lr": 0.01,
        "weight_decay": 5e-4,
        "augment": True,
        "crop_padding": 4,
    },
    "smoke": {"preset": "smoke", "augment": True},
}
"""``--preset`` -> the ``[train]`` table (a base preset plus its CIFAR overrides)."""

CIFAR_MODELS: dict[str, dict[str, Any]] = {
    "quick": {"name": "cifar_resnet", "kwargs": {"depth": 20, "width": 16}, "normalize": True},
    "paper": {
        "name": "wide_resnet",
        "kwargs": {"depth": 40, "widen_factor": 2, "dropout": 0.3},
        "normalize": True,
    },
    "smoke": {"name": "cifar_resnet", "kwargs": {"depth": 8, "width": 4}, "normalize": True},
}
"""``--preset`` -> the ``[model]`` table."""

DEFAULT_OOD = (
    ("tin_near_dev", "tin_near_dev.npz", "near"),
    ("mnist", "mnist.npz", "far"),
    ("fashion", "fashion_mnist.npz", "far"),
)
"""(name, file, group) of the OOD sets used when their file is in the data folder."""


def _need(root: Path, name: str) -> Path:
    p = root / name
    if not p.is_file():
        raise BenchError(
            f"--data-dir: {str(p)!r} is missing; decode the shared data once with: "
            f"python ../shared/data/unpack.py {root}"
        )
    return p


def cifar10_config(
    data_dir: str | Path,
    *,
    preset: str = "quick",
    outliers: str | Path = "pool",
    ood: Mapping[str, Any] | None = None,
    **options: Unpack[RunOptions],
) -> dict[str, Any]:
    """The config dict of the CIFAR-10 experiment (the shape of a TOML file).

    Args:
        data_dir: Folder with the unpacked ``cifar10.npz`` (and ``tin_pool.npz`` ...).
        preset: ``"quick"`` (ResNet-20, CPU), ``"paper"`` (WRN-40-2, GPU) or ``"smoke"``.
        outliers: ``"pool"`` (``tin_pool.npz``), ``"none"`` (synthesis only) or a path.
        ood: Extra OOD sets, name -> path or ``{"path": ..., "group": "near"|"far"}``.
        **options: ``seeds``, ``ks``, ``scores``, ``methods``, ``plots`` and ``val_size``
            (:func:`~rejectnet.bench.experiment.preset_config`).

    Returns:
        The config as nested dicts, with absolute paths.

    Raises:
        BenchError: For an unknown preset, or a missing file (naming the unpack command).

    Example:
        >>> cifar10_config("/nowhere")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        rejectnet.bench.errors.BenchError: --data-dir: '/nowhere/cifar10.npz' is missing; ...
    """
    if preset not in CIFAR_SCHEDULES:
        raise BenchError(f"--preset must be one of {', '.join(CIFAR_SCHEDULES)}, got {preset!r}")
    root = Path(data_dir).resolve()
    data: dict[str, Any] = {"id": str(_need(root, "cifar10.npz"))}
    data["outliers"] = outlier_pool(outliers, {"pool": lambda: _need(root, "tin_pool.npz")})
    found = {
        name: {"path": str(root / f), "group": group}
        for name, f, group in DEFAULT_OOD
        if (root / f).is_file()
    }
    data["ood"] = ood_sets(found, ood, f"none of the default files is in {root}")
    model = dict(CIFAR_MODELS[preset])
    return preset_config(data, model, dict(CIFAR_SCHEDULES[preset]), **options)


def run_cifar10(
    data_dir: str | Path,
    *,
    out: str | Path | None = None,
    progress: bool = True,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run the CIFAR-10 benchmark (see :func:`cifar10_config` for the arguments).

    Args:
        data_dir: Folder with the unpacked ``cifar10.npz`` etc.
        out: Output folder (default ``runs/cifar10-<preset>``).
        progress: Progress lines with an ETA.
        **kwargs: The keyword arguments of :func:`cifar10_config`.

    Returns:
        The content of ``results.json``.

    Raises:
        BenchError: For a bad argument or data file (one line).

    Example:
        >>> results = run_cifar10("runs/data", preset="quick")  # doctest: +SKIP
        >>> results["_meta"]["ood_groups"]  # doctest: +SKIP
        {'tin_near_dev': 'near', 'mnist': 'far', 'fashion': 'far'}
    """
    raw = cifar10_config(data_dir, **kwargs)
    cfg = config_from_dict(raw, Path(data_dir))
    preset = kwargs.get("preset", "quick")
    return run_bench(cfg, out or Path("runs") / f"cifar10-{preset}", progress=progress)
