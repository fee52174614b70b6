"""``rejectnet bench mnist``: the MNIST row of the paper's Table 1, three methods, one run.

The paper's MNIST CNN is trained once (stage one); from the same weights Outlier Exposure
and rejectnet (k reject classes, lam 5, outlier batches 5x) are fine-tuned on the same
unlabeled outlier pool; max-softmax (on the stage-one model), OE and rejectnet are
evaluated on the same in-distribution test set and OOD test sets with
:func:`rejectnet.evaluate`. Calibration and every setting use held-out training digits
and training outliers only; the OOD test sets are never looked at before evaluation.
"""

from __future__ import annotations

import copy
import gzip
import json
import logging
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from rejectnet.data import images_to_tensor, load_npz
from rejectnet.evaluation import Report, compute_logits, evaluate, reports_to_markdown
from rejectnet.finetune import (
    OutlierExposureFinetuner,
    SelfSupervisedOODFinetuner,
    train_classifier,
)
from rejectnet.head import RejectHead
from rejectnet.models import SmallCNN

__all__ = ["PRESETS", "MnistPreset", "load_images", "run_mnist"]

logger = logging.getLogger("rejectnet")

SCORE_ALIASES = {
    "max": "max_reject",
    "sum": "sum_reject",
    "weighted": "weighted_reject",
    "entropy": "entropy_reject",
    "entropy_diff": "entropy_diff",
}


@dataclass(frozen=True)
class MnistPreset:
    """Training schedule of the MNIST benchmark.

    Attributes:
        stage_one_epochs: Supervised epochs over the training digits.
        finetune_epochs: Fine-tuning epochs (OE and rejectnet alike).
        finetune_subset: Fine-tuning epochs run over a random subset of this many training
            digits (``None``: all of them), which shortens an epoch.
        batch_size: In-distribution batch size (outlier batches are 5x).
        lr: Learning rate of both stages (SGD, momentum 0.9, per-step cosine decay).
        val_size: Training digits held out for calibration and model selection.
        outlier_pool: Outliers drawn from the pool (``None``: all).
        n_runs: Equal-size subsamples per OOD set in the evaluation.

    Example:
        >>> PRESETS["paper"].stage_one_epochs, PRESETS["paper"].finetune_epochs
        (10, 10)
        >>> MnistPreset(stage_one_epochs=2, finetune_epochs=1, finetune_subset=None).batch_size
        64
    """

    stage_one_epochs: int
    finetune_epochs: int
    finetune_subset: int | None
    batch_size: int = 64
    lr: float = 0.01
    val_size: int = 5000
    outlier_pool: int | None = None
    n_runs: int = 10


PRESETS: dict[str, MnistPreset] = {
    # The paper: 10 epochs of stage one, 10 more of stage two, batch 64, lr 0.01 cosine.
    "paper": MnistPreset(stage_one_epochs=10, finetune_epochs=10, finetune_subset=None),
    # Under 10 minutes on an idle 2-core CPU: three stage-one epochs; fine-tuning for one
    # pass over 19,200 random training digits (300 steps of 64 digits + 320 outliers).
    "quick": MnistPreset(stage_one_epochs=3, finetune_epochs=1, finetune_subset=19_200),
    # For tests only: seconds on tiny data, numbers meaningless.
    "smoke": MnistPreset(
        stage_one_epochs=1,
        finetune_epochs=1,
        finetune_subset=None,
        batch_size=16,
        val_size=32,
        n_runs=2,
    ),
}
"""The training schedules by name: ``"paper"``, ``"quick"`` and ``"smoke"`` (tests only)."""


def _read_idx(path: Path) -> npt.NDArray[np.uint8]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{str(path)!r} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{str(path)!r} is truncated: expected shape {dims}")
    return arr.reshape(dims)


def load_images(path: str | Path, split: str = "test") -> npt.NDArray[np.uint8]:
    """Images of one split from an ``.npz`` file or a torchvision-format dataset folder.

    Args:
        path: An ``.npz`` with ``x_<split>`` (uint8 ``(N, H, W)``), or a folder holding
            the IDX files torchvision's MNIST-style datasets use
            (``t10k-images-idx3-ubyte[.gz]`` for test, ``train-images-idx3-ubyte[.gz]``
            for train), searched recursively (e.g. ``KMNIST/raw``).
        split: ``"test"`` or ``"train"``.

    Returns:
        uint8 images ``(N, H, W)``.

    Raises:
        FileNotFoundError: If the path or the IDX file does not exist.
        ValueError: If the file holds no such split.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "letters.npz")
        >>> np.savez(path, x_test=np.zeros((3, 28, 28), np.uint8))
        >>> load_images(path).shape
        (3, 28, 28)
    """
    p = Path(path)
    if p.is_dir():
        stem = "t10k-images-idx3-ubyte" if split == "test" else "train-images-idx3-ubyte"
        found = sorted(p.rglob(f"{stem}*"))
        if not found:
            raise FileNotFoundError(f"no {stem}[.gz] under the folder {str(p)!r}")
        return _read_idx(found[0])
    key = f"x_{split}"
    return np.asarray(load_npz(p, keys=(key,))[key])


def _parse_list(values: Sequence[str] | None, default: Sequence[str]) -> list[str]:
    if not values:
        return list(default)
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _loader(x: torch.Tensor, y: torch.Tensor | None = None, batch: int = 512) -> DataLoader[Any]:
    ds = TensorDataset(x) if y is None else TensorDataset(x, y)
    return DataLoader(ds, batch_size=batch)


def _mean_reports(reports: Sequence[Report]) -> dict[str, Any]:
    """Average several seeds' reports into the results.json entry of one method."""
    first = reports[0]
    acc = [r.id_accuracy for r in reports if r.id_accuracy is not None]
    ood: dict[str, dict[str, float]] = {}
    for name in first.ood:
        ood[name] = {
            m: float(np.mean([r.ood[name].mean[m] for r in reports]))
            for m in ("auroc", "aupr_in", "aupr_out", "fpr95")
        }
    return {
        "id_accuracy": float(np.mean(acc)) if acc else None,
        "score": first.score,
        "seeds": len(reports),
        "ood": ood,
        "selective": {
            k: float(np.mean([r.selective.get(k, np.nan) for r in reports]))
            for k in first.selective
        },
    }


def run_mnist(
    data_dir: str | Path,
    *,
    preset: str = "quick",
    outliers: str | Path | None = None,
    ood: Mapping[str, str | Path] | None = None,
    seeds: int = 1,
    out: str | Path | None = None,
    ks: Sequence[int] = (5,),
    scores: Sequence[str] = ("sum",),
    progress: bool = True,
    plots: bool = True,
) -> dict[str, Any]:
    """Run the MNIST benchmark and write ``results.md``, ``results.json`` and plots.

    Args:
        data_dir: Folder with ``mnist.npz`` (and, by default, ``photo_patches.npz`` and
            ``fashion_mnist.npz``).
        preset: ``"quick"``, ``"paper"`` (10 + 10 epochs) or ``"smoke"`` (tests).
        outliers: The unlabeled training outlier pool (``x_train`` of an ``.npz``);
            default ``data_dir/photo_patches.npz``.
        ood: Extra OOD test sets, name -> ``.npz`` (``x_test``) or torchvision folder.
            ``fashion`` (``data_dir/fashion_mnist.npz``) is always included when present.
        seeds: Independent runs (different seeds); results are averaged.
        out: Output folder (default ``runs/mnist-<preset>``).
        ks: Numbers of reject classes; ``5`` gives the ``"rejectnet"`` row, others add
            ``"rejectnet-k<k>"`` ablation rows.
        scores: Reject scores (``max, sum, weighted, entropy, entropy_diff``); ``sum``
            gives the main row, others add ``"rejectnet-<score>"`` rows (paper Table 2).
        progress: Progress bars and logs.
        plots: Write PNG plots (needs matplotlib).

    Returns:
        The content of ``results.json``: method -> ``{"id_accuracy", "ood": {set:
        {"auroc", "aupr_in", "aupr_out", "fpr95"}}, ...}``, fractions.

    Raises:
        ValueError: For an unknown preset or score, or ``seeds < 1``.
        FileNotFoundError: If a data file is missing.

    Example:
        >>> results = run_mnist("../shared/data", preset="quick")  # doctest: +SKIP
        >>> results["rejectnet"]["ood"]["fashion"]["auroc"]  # doctest: +SKIP
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    unknown = [s for s in scores if s not in SCORE_ALIASES]
    if unknown:
        raise ValueError(f"scores {unknown} unknown; choose from {sorted(SCORE_ALIASES)}")
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be reject-class counts >= 1, got {list(ks)}")
    cfg = PRESETS[preset]
    root = Path(data_dir)
    out_dir = Path(out) if out is not None else Path("runs") / f"mnist-{preset}"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    mnist = load_npz(root / "mnist.npz", keys=("x_train", "y_train", "x_test", "y_test"))
    pool = load_images(outliers if outliers is not None else root / "photo_patches.npz", "train")
    ood_paths: dict[str, Path] = {}
    if (root / "fashion_mnist.npz").exists():
        ood_paths["fashion"] = root / "fashion_mnist.npz"
    for name, path in (ood or {}).items():
        ood_paths[name] = Path(path)
    if not ood_paths:
        raise FileNotFoundError(f"no OOD test set: {root}/fashion_mnist.npz missing and no --ood")
    ood_x = {name: images_to_tensor(load_images(p, "test")) for name, p in ood_paths.items()}
    shape = tuple(mnist["x_train"].shape[1:])
    for name, x in ood_x.items():
        if tuple(x.shape[2:]) != shape:
            raise ValueError(
                f"OOD set {name!r} has images of shape {tuple(x.shape[2:])}, not {shape}"
            )

    x_all = images_to_tensor(mnist["x_train"])
    y_all = torch.from_numpy(mnist["y_train"].astype(np.int64))
    x_test = images_to_tensor(mnist["x_test"])
    y_test = torch.from_numpy(mnist["y_test"].astype(np.int64))
    x_pool = images_to_tensor(pool)

    per_method: dict[str, list[Report]] = {}
    last: list[Report] = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        perm = torch.from_numpy(rng.permutation(len(y_all)))
        val_idx, train_idx = perm[: cfg.val_size], perm[cfg.val_size :]
        train = TensorDataset(x_all[train_idx], y_all[train_idx])
        val_loader = _loader(x_all[val_idx], y_all[val_idx])
        pool_idx = rng.permutation(len(x_pool))[: cfg.outlier_pool or len(x_pool)]
        g = torch.Generator().manual_seed(seed)
        out_loader = DataLoader(
            TensorDataset(x_pool[torch.from_numpy(pool_idx)]),
            batch_size=cfg.batch_size * 5,
            shuffle=True,
            generator=g,
        )
        ft_train: Any = train
        if cfg.finetune_subset is not None and cfg.finetune_subset < len(train):
            ft_train = Subset(train, rng.permutation(len(train))[: cfg.finetune_subset].tolist())
        in_loader = DataLoader(train, batch_size=cfg.batch_size, shuffle=True, generator=g)
        ft_loader = DataLoader(ft_train, batch_size=cfg.batch_size, shuffle=True, generator=g)
        common: dict[str, Any] = dict(seed=seed, progress=progress, lr=cfg.lr)

        model = SmallCNN(num_classes=10, image_size=shape[0], dropout=0.1)
        train_classifier(
            model, in_loader, epochs=cfg.stage_one_epochs, val_loader=val_loader, **common
        )
        test_loader = _loader(x_test, y_test)
        ood_loaders = {k: _loader(v) for k, v in ood_x.items()}
        kw: dict[str, Any] = dict(n_runs=cfg.n_runs, seed=seed)
        base_logits = compute_logits(model, test_loader)
        base_ood = {k: compute_logits(model, v) for k, v in ood_loaders.items()}
        reports = [evaluate(model, base_logits, base_ood, "msp", name="msp", **kw)]

        oe_model = copy.deepcopy(model)
        OutlierExposureFinetuner(oe_model, epochs=cfg.finetune_epochs, **common).fit(
            ft_loader, out_loader
        )
        reports.append(evaluate(oe_model, test_loader, ood_loaders, "msp", name="oe", **kw))

        for k in ks:
            net = RejectHead.wrap(model, k=k)
            SelfSupervisedOODFinetuner(net, k=None, epochs=cfg.finetune_epochs, **common).fit(
                ft_loader, out_loader, val_loader
            )
            net.eval()
            id_logits = compute_logits(net, test_loader)
            ood_logits = {n: compute_logits(net, v) for n, v in ood_loaders.items()}
            for score in scores:
                name = "rejectnet"
                if k != 5:
                    name += f"-k{k}"
                if score != "sum":
                    name += f"-{score}"
                if score == "weighted":
                    from rejectnet.scores import fit_reject_weights

                    # weights from held-out digits and TRAINING outliers, never test sets
                    val_logits = compute_logits(net, val_loader).logits
                    tr_out = compute_logits(
                        net, _loader(x_pool[torch.from_numpy(pool_idx[:5000])])
                    ).logits
                    net.score_weights.copy_(fit_reject_weights(val_logits, tr_out, net.num_classes))
                net.calibrate(val_loader, coverage=0.95, score=SCORE_ALIASES[score])
                reports.append(evaluate(net, id_logits, ood_logits, name=name, **kw))
        for r in reports:
            per_method.setdefault(r.name, []).append(r)
        last = reports

    results = {name: _mean_reports(rs) for name, rs in per_method.items()}
    meta = {
        "preset": preset,
        "schedule": asdict(cfg),
        "seeds": seeds,
        "ood_sets": sorted(ood_x),
        "outlier_pool": str(outliers or root / "photo_patches.npz"),
        "seconds": round(time.perf_counter() - t0, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    (out_dir / "results.json").write_text(json.dumps({**results, "_meta": meta}, indent=2))
    table = reports_to_markdown(last)
    header = (
        f"# MNIST benchmark ({preset} preset, seed {seeds - 1} of {seeds} shown)\n\n"
        f"In-distribution: MNIST test (10,000); training outliers: {meta['outlier_pool']}; "
        f"mean ± std over {cfg.n_runs} equal-size subsamples; percentages.\n\n"
    )
    (out_dir / "results.md").write_text(header + table + "\n")
    if plots:
        from rejectnet.plotting import plot_reports

        main = [r for r in last if r.name in ("msp", "oe", "rejectnet")]
        plot_reports(main or last, out_dir)
    if progress:
        print(_summary_table(results))
        print(
            f"wrote {out_dir}/results.md, results.json{', plots' if plots else ''} "
            f"({meta['seconds']:.0f} s)"
        )
    return results


def _summary_table(results: Mapping[str, Any]) -> str:
    sets = list(next(iter(results.values()))["ood"])
    head = f"{'method':<24}{'ID acc':>8}" + "".join(
        f"{s[:10] + ' AUROC':>17}{'FPR95':>8}" for s in sets
    )
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        acc = f"{100 * r['id_accuracy']:.2f}" if r["id_accuracy"] is not None else "-"
        cells = "".join(
            f"{100 * r['ood'][s]['auroc']:>17.2f}{100 * r['ood'][s]['fpr95']:>8.2f}" for s in sets
        )
        lines.append(f"{name:<24}{acc:>8}{cells}")
    return "\n".join(lines)
