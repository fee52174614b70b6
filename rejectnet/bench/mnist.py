"""``rejectnet bench mnist``: the paper's MNIST row, a preset of the general runner."""

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

__all__ = ["mnist_config", "run_mnist"]


def mnist_config(
    data_dir: str | Path,
    *,
    preset: str = "quick",
    outliers: str | Path | None = None,
    ood: Mapping[str, Any] | None = None,
    **options: Unpack[RunOptions],
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
        **options: ``seeds``, ``ks``, ``scores``, ``methods``, ``plots`` and ``val_size``
            (:func:`~rejectnet.bench.experiment.preset_config`).

    Returns:
        The config as nested dicts, with absolute paths.

    Raises:
        BenchError: If no OOD set is found, or ``emnist`` is asked for and missing.

    Example:
        >>> cfg = mnist_config("/d", ood={"x": "/d/x.npz"}, seeds=2)
        >>> cfg["data"]["outliers"], cfg["model"], cfg["train"]["seeds"]
        ('/d/photo_patches.npz', {'name': 'small_cnn'}, 2)
    """
    root = Path(data_dir).resolve()
    fashion = root / "fashion_mnist.npz"
    found = {"fashion": str(fashion)} if fashion.exists() else {}
    sets = ood_sets(found, ood, f"{fashion} is missing")
    pool = str(root / "photo_patches.npz")
    if outliers is not None:
        pool = outlier_pool(outliers, {"emnist": lambda: _emnist(root)})
    data = {"id": str(root / "mnist.npz"), "outliers": pool, "ood": sets}
    return preset_config(data, {"name": "small_cnn"}, {"preset": preset}, **options)


def _emnist(root: Path) -> Path:
    pool = root / "emnist_letters.npz"
    if not pool.is_file():
        raise BenchError(f"--outliers emnist: {str(pool)!r} is missing (EMNIST letters, x_train)")
    return pool


def run_mnist(
    data_dir: str | Path,
    *,
    preset: str = "quick",
    outliers: str | Path | None = None,
    ood: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    **options: Unpack[RunOptions],
) -> dict[str, Any]:
    """Run the MNIST benchmark (see :func:`mnist_config` for the arguments).

    Args:
        data_dir: Folder with ``mnist.npz`` etc.
        preset: ``"quick"``, ``"paper"`` or ``"smoke"``.
        outliers: The training outlier pool, or ``"none"``.
        ood: Extra OOD test sets, name -> path.
        out: Output folder (default ``runs/mnist-<preset>``).
        progress: Progress lines with an ETA.
        **options: ``seeds`` (averaged), ``ks`` and ``scores`` (ablation rows),
            ``methods``, ``plots`` and ``val_size``, as for :func:`mnist_config`.

    Returns:
        The content of ``results.json``.

    Raises:
        BenchError: For a bad argument or data file (one line).

    Example:
        >>> results = run_mnist("../shared/data", preset="quick")  # doctest: +SKIP
        >>> results["rejectnet"]["ood"]["fashion"]["auroc"]  # doctest: +SKIP
    """
    raw = mnist_config(data_dir, preset=preset, outliers=outliers, ood=ood, **options)
    cfg = config_from_dict(raw, Path(data_dir))
    return run_bench(cfg, out or Path("runs") / f"mnist-{preset}", progress=progress)
