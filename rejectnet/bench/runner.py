"""The benchmark runner: stage one once per seed, then every method from the same weights.

Stage one trains the configured network on the in-distribution training images (minus a
held-out share for calibration). Every method of :data:`~rejectnet.bench.METHODS` then
starts from those weights, reads the same batches, is built under its own derived seed
(see :func:`~rejectnet.bench.methods.method_seed`), and is evaluated with
:func:`rejectnet.evaluate` on the same test samples. Calibration, fitted scores and
every setting use held-out training images and training outliers only; the OOD test
sets are looked at only by the methods named ``*-tuned`` (the paper's Figure 1 protocol).
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from rejectnet.bench.config import BenchConfig
from rejectnet.bench.errors import BenchError
from rejectnet.bench.methods import METHODS, MethodContext, method_seed
from rejectnet.bench.networks import build_model
from rejectnet.bench.progress import StageProgress
from rejectnet.bench.sources import InDistribution, load_in_distribution, load_unlabeled
from rejectnet.bench.tables import seeds_markdown, summary_table
from rejectnet.evaluation import Report, reports_to_markdown
from rejectnet.finetune import train_classifier
from rejectnet.peers import PEER_NAMES, TUNED_PEER_NAMES
from rejectnet.serialization import save

__all__ = ["load_data", "run_bench"]

EVAL_BATCH = 512
PEERS = frozenset((*PEER_NAMES, *TUNED_PEER_NAMES))
TUNE_SAMPLES = 1000  # per OOD set, for the *-tuned peers (the paper's Figure 1 protocol)
PLOTTED = ("msp", "odin", "mahalanobis", "oe", "rejectnet-paper", "rejectnet")


def load_data(
    cfg: BenchConfig,
) -> tuple[InDistribution, torch.Tensor | None, dict[str, torch.Tensor]]:
    """Read and convert every data source of ``cfg``.

    Args:
        cfg: A validated configuration.

    Returns:
        The in-distribution data, the outlier pool (``None`` for none) and the OOD test
        sets (name -> images), all ``(N, channels, image_size, image_size)``.

    Raises:
        BenchError: For any bad source (one line naming the field).
    """
    data = load_in_distribution(cfg.data.id, cfg.data.image_size, cfg.data.channels)
    size, ch = data.image_size, data.channels
    pool = None
    if cfg.data.outliers is not None:
        pool = load_unlabeled(cfg.data.outliers, size, ch, "[data] outliers", prefer="x_train")
    ood = {
        name: load_unlabeled(path, size, ch, f"[data.ood] {name}")
        for name, path in cfg.data.ood.items()
    }
    for name, x in {"outliers": pool, **ood}.items():
        if x is not None and len(x) == 0:
            raise BenchError(f"[data] {name}: holds no images")
    return data, pool, ood


def _mean_reports(reports: Sequence[Report]) -> dict[str, Any]:
    """Average several seeds' reports into the results.json entry of one method."""
    first = reports[0]
    acc = [r.id_accuracy for r in reports if r.id_accuracy is not None]
    metrics = ("auroc", "aupr_in", "aupr_out", "fpr95")
    ood = {
        name: {m: float(np.mean([r.ood[name].mean[m] for r in reports])) for m in metrics}
        for name in first.ood
    }
    entry: dict[str, Any] = {
        "id_accuracy": float(np.mean(acc)) if acc else None,
        "score": first.score,
        "seeds": len(reports),
        "ood": ood,
        "selective": {
            k: float(np.mean([r.selective.get(k, np.nan) for r in reports]))
            for k in first.selective
        },
    }
    if len(reports) > 1:
        entry["id_accuracy_std"] = float(np.std(acc)) if acc else None
        entry["ood_std"] = {
            name: {m: float(np.std([r.ood[name].mean[m] for r in reports])) for m in metrics}
            for name in first.ood
        }
    return entry


def _costs(cfg: BenchConfig, n_train: int, n_eval: int, n_tune: int) -> dict[str, float]:
    """Estimated cost of every stage, in images through a forward + backward pass."""
    s = cfg.schedule
    ft_images = min(s.finetune_subset or n_train, n_train) * s.finetune_epochs * 6
    costs: dict[str, float] = {}
    for seed in range(cfg.seeds):
        costs[f"seed {seed}: stage one"] = s.stage_one_epochs * n_train + n_eval / 3
        for name in cfg.methods:
            per_ft, per_eval, per_tune = METHODS[name].cost
            copies = len(dict.fromkeys((cfg.k, *cfg.ks))) if name.startswith("rejectnet") else 1
            cost = copies * (per_ft * ft_images + per_eval * n_eval) + per_tune * n_tune
            costs[f"seed {seed}: {name}"] = max(cost, 1.0)
    return costs


def _loader(x: torch.Tensor, y: torch.Tensor | None = None) -> DataLoader[Any]:
    ds = TensorDataset(x) if y is None else TensorDataset(x, y)
    return DataLoader(ds, batch_size=EVAL_BATCH)


def _header(cfg: BenchConfig, data: InDistribution, reports: Sequence[Report]) -> str:
    sizes = []
    for r in reports[:1]:
        for name, res in r.ood.items():
            how = (
                "no subsampling"
                if res.n == res.n_ood and res.n == len(data.y_test)
                else (f"{r.n_runs} subsamples of {res.n}")
            )
            sizes.append(f"{name}: {res.n_ood} images, {how}")
    return (
        f"# rejectnet bench ({cfg.preset} preset, seed {cfg.seeds - 1} of {cfg.seeds} shown)\n\n"
        f"In-distribution: {cfg.data.id.name} test ({len(data.y_test)} images, "
        f"{data.num_classes} classes, {data.channels}x{data.image_size}x{data.image_size}); "
        f"training outliers: {cfg.data.outliers.name if cfg.data.outliers else 'none'}; "
        f"model: {cfg.model.name}. Percentages, mean ± std over equal-size subsamples "
        f"({'; '.join(sizes)}).\n\n"
    )


def run_bench(cfg: BenchConfig, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Run the benchmark and write ``results.json``, ``results.md``, plots and HTML.

    Args:
        cfg: A validated configuration (:func:`~rejectnet.bench.load_config`).
        out: Output folder (created if missing).
        progress: One line per stage with an ETA on stderr (and tqdm bars in the
            training loops when stderr is a terminal).

    Returns:
        The content of ``results.json``: method -> ``{"id_accuracy", "score", "ood":
        {set: {"auroc", "aupr_in", "aupr_out", "fpr95"}}, "selective", ...}`` (fractions),
        plus ``"_meta"`` (configuration, timings, notes on skipped methods).

    Raises:
        BenchError: For bad data (one line naming the field).

    Example:
        >>> from rejectnet.bench import load_config, run_bench
        >>> results = run_bench(load_config("fashion.toml"), "runs/fashion")  # doctest: +SKIP
        >>> results["rejectnet"]["ood"]["mnist"]["auroc"]  # doctest: +SKIP
    """
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data, pool, ood_x = load_data(cfg)
    s = cfg.schedule
    n_all = len(data.y_train)
    if s.val_size >= n_all // 2:
        raise BenchError(
            f"[train] val_size = {s.val_size} must be below half the {n_all} training images"
        )
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # The OOD-tuned peers choose their settings on a small subsample of each OOD set (the
    # paper's Figure 1 protocol); those samples are held out of the evaluated sets for
    # every method, so that no method is evaluated on samples that chose settings.
    tune_ood: dict[str, torch.Tensor] = {}
    for n, v in list(ood_x.items()):
        order = torch.from_numpy(np.random.default_rng(zlib.crc32(n.encode())).permutation(len(v)))
        m = min(TUNE_SAMPLES, len(v) // 10)
        if m == 0:
            raise BenchError(f"[data.ood] {n}: {len(v)} images are too few (at least 10)")
        tune_ood[n], ood_x[n] = v[order[:m]], v[order[m:]]
    n_eval = len(data.y_test) + sum(len(v) for v in ood_x.values())
    n_tune = sum(len(v) for v in tune_ood.values()) + TUNE_SAMPLES
    stages = StageProgress(_costs(cfg, n_all - s.val_size, n_eval, n_tune), enabled=progress)
    bars = stages.interactive

    per_method: dict[str, list[Report]] = {}
    seconds: dict[str, float] = {}
    notes: dict[str, str] = {}
    last: list[Report] = []
    with torch.random.fork_rng(devices=[]):
        for seed in range(cfg.seeds):
            rng = np.random.default_rng(seed)
            perm = torch.from_numpy(rng.permutation(n_all))
            val_idx, train_idx = perm[: s.val_size], perm[s.val_size :]
            x_tr, y_tr = data.x_train[train_idx], data.y_train[train_idx]
            train = TensorDataset(x_tr, y_tr)
            val_loader = _loader(data.x_train[val_idx], data.y_train[val_idx])
            ft_train: Any = train
            if s.finetune_subset is not None and s.finetune_subset < len(train):
                ft_train = Subset(train, rng.permutation(len(train))[: s.finetune_subset].tolist())
            pool_idx = None
            if pool is not None:
                pool_idx = torch.from_numpy(
                    rng.permutation(len(pool))[: s.outlier_pool or len(pool)]
                )

            def in_loader(ds: Any = ft_train, seed: int = seed) -> DataLoader[Any]:
                g = torch.Generator().manual_seed(seed)
                return DataLoader(ds, batch_size=s.batch_size, shuffle=True, generator=g)

            def outlier_loader(
                idx: torch.Tensor | None = pool_idx, seed: int = seed
            ) -> DataLoader[Any] | None:
                if pool is None or idx is None:
                    return None
                g = torch.Generator().manual_seed(seed + 1)
                return DataLoader(
                    TensorDataset(pool[idx]), batch_size=s.batch_size * 5, shuffle=True, generator=g
                )

            name = f"seed {seed}: stage one"
            stages.start(name)
            torch.manual_seed(method_seed(seed, "stage-one"))
            model = build_model(
                cfg.model, data.num_classes, data.channels, data.image_size, cfg.base_dir
            )
            model.to(device)
            note = ""
            if s.stage_one_epochs > 0:
                g = torch.Generator().manual_seed(seed)
                hist = train_classifier(
                    model,
                    DataLoader(train, batch_size=s.stage_one_batch_size, shuffle=True, generator=g),
                    epochs=s.stage_one_epochs,
                    val_loader=val_loader,
                    lr=s.stage_one_lr,
                    seed=seed,
                    device=device,
                    progress=bars,
                )
                if hist and hist[-1].val_accuracy is not None:
                    note = f"held-out accuracy {100 * hist[-1].val_accuracy:.2f}%;"
            model.eval()
            stages.done(name, note.rstrip(";"))
            ctx = MethodContext(
                model=model,
                num_classes=data.num_classes,
                seed=seed,
                k=cfg.k,
                ks=cfg.ks,
                scores=cfg.scores,
                finetune_epochs=s.finetune_epochs,
                lr=s.lr,
                device=device,
                progress=bars,
                n_runs=s.n_runs,
                in_loader=in_loader,
                outlier_loader=outlier_loader,
                train_loader=DataLoader(train, batch_size=EVAL_BATCH),
                val_loader=val_loader,
                pool_sample=None if pool is None or pool_idx is None else pool[pool_idx[:5000]],
                id_test=_loader(data.x_test, data.y_test),
                ood_test={n: _loader(v) for n, v in ood_x.items()},
                tune_id=data.x_train[val_idx[:TUNE_SAMPLES]],
                tune_ood=tune_ood,
                peer_names=tuple(m for m in cfg.methods if m in PEERS),
            )
            reports: list[Report] = []
            for method in cfg.methods:
                name = f"seed {seed}: {method}"
                stages.start(name)
                started = time.perf_counter()
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(method_seed(seed, method))
                    rows = METHODS[method].run(ctx)
                seconds[method] = seconds.get(method, 0.0) + time.perf_counter() - started
                reports.extend(rows)
                main = next((r for r in rows if r.name == method), rows[0] if rows else None)
                shown = ""
                if main is not None and "mixed" in main.ood:
                    shown = f"mixed AUROC {100 * main.ood['mixed'].mean['auroc']:.2f}%"
                stages.done(name, shown or ctx.notes.get(method, ""))
            if cfg.save_models:
                (out_dir / "models").mkdir(exist_ok=True)
                for mname, net in ctx.models.items():
                    save(net, out_dir / "models" / f"{mname}-seed{seed}.safetensors")
            notes.update(ctx.notes)
            for r in reports:
                per_method.setdefault(r.name, []).append(r)
            last = reports

    if not per_method:
        raise BenchError(
            "no method produced results: " + "; ".join(f"{k}: {v}" for k, v in notes.items())
        )
    results: dict[str, Any] = {name: _mean_reports(rs) for name, rs in per_method.items()}
    meta = {
        "preset": cfg.preset,
        "schedule": asdict(s),
        "seeds": cfg.seeds,
        "k": cfg.k,
        "model": cfg.model.name,
        "in_distribution": str(cfg.data.id),
        "image_size": data.image_size,
        "channels": data.channels,
        "ood_sets": list(ood_x),
        "outlier_pool": str(cfg.data.outliers) if cfg.data.outliers else "none",
        "notes": notes,
        "method_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "seconds": round(time.perf_counter() - t0, 1),
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    (out_dir / "results.json").write_text(json.dumps({**results, "_meta": meta}, indent=2))
    notes_md = "".join(f"- `{k}`: {v}\n" for k, v in notes.items())
    md = _header(cfg, data, last) + reports_to_markdown(last) + "\n"
    if cfg.seeds > 1:
        md += f"\n## Mean ± std over the {cfg.seeds} seeds\n\n" + seeds_markdown(results) + "\n"
    if notes_md:
        md += "\nNotes:\n\n" + notes_md
    (out_dir / "results.md").write_text(md)
    if cfg.plots:
        from rejectnet.plotting import plot_reports

        main_rows = [r for r in last if r.name in PLOTTED]
        plot_reports(main_rows or last, out_dir)
    from rejectnet.report_html import reports_to_html

    page = reports_to_html(
        last,
        title=f"rejectnet bench: {cfg.data.id.name} ({cfg.preset} preset)",
        intro=" ".join(_header(cfg, data, last).split("\n", 2)[-1].split()),
        plots=cfg.plots,
    )
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    if progress:
        print(summary_table(results))
        print(f"wrote {out_dir}/results.md, results.json, report.html ({meta['seconds']:.0f} s)")
    return {**results, "_meta": meta}
