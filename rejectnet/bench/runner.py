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
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from rejectnet.bench.augment import AugmentCollate, SeededShuffle, channel_stats
from rejectnet.bench.config import BenchConfig, check_device
from rejectnet.bench.errors import BenchError
from rejectnet.bench.methods import METHODS, MethodContext, method_seed
from rejectnet.bench.networks import build_model
from rejectnet.bench.presets import TrainPreset
from rejectnet.bench.progress import StageProgress
from rejectnet.bench.sources import InDistribution, load_in_distribution, load_unlabeled
from rejectnet.bench.tables import seeds_markdown, summary_table
from rejectnet.files.atomic_writes import check_output_path, write_atomic
from rejectnet.files.bounded_reads import UnsafeFileError
from rejectnet.finetune import train_classifier
from rejectnet.finetune.rng import seed_everything
from rejectnet.peers import PEER_NAMES, TUNED_PEER_NAMES
from rejectnet.report import Report, reports_to_markdown
from rejectnet.report.plots import png
from rejectnet.report.results import json_safe
from rejectnet.report.tables import ID_ACC_DROP_FLAG, markdown_cell, markdown_text
from rejectnet.serialization import save

__all__ = [
    "OUTPUT_FILES",
    "Prepared",
    "SeedResult",
    "check_out",
    "load_data",
    "prepare",
    "run_bench",
    "run_seed",
    "scaled_schedule",
    "write_outputs",
]

EVAL_BATCH = 512
PEERS = frozenset((*PEER_NAMES, *TUNED_PEER_NAMES))
TUNE_SAMPLES = 1000  # per OOD set, for the *-tuned peers (the paper's Figure 1 protocol)
PLOTTED = ("msp", "odin", "mahalanobis", "oe", "rejectnet-paper", "rejectnet")
ACC_DROP_WARN = ID_ACC_DROP_FLAG  # the tables' flag: more than one point of ID accuracy lost


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


def _costs(
    cfg: BenchConfig, s: TrainPreset, n_train: int, n_eval: int, n_tune: int
) -> dict[str, float]:
    """Estimated cost of every stage, in images through a forward + backward pass."""
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
    pool = cfg.data.outliers
    sizes = []
    for r in reports[:1]:
        for name, res in r.ood.items():
            how = (
                "no subsampling"
                if res.n == res.n_ood and res.n == len(data.y_test)
                else (f"{r.n_runs} subsamples of {res.n}")
            )
            group = f" ({cfg.data.group(name)}-OOD)" if name in cfg.data.ood else ""
            sizes.append(f"{markdown_text(name)}: {res.n_ood} images{group}, {how}")
    return (
        f"# rejectnet bench ({cfg.preset} preset, seed {cfg.seeds - 1} of {cfg.seeds} shown)\n\n"
        f"In-distribution: {markdown_text(cfg.data.id.name)} test ({len(data.y_test)} images, "
        f"{data.num_classes} classes, {data.channels}x{data.image_size}x{data.image_size}); "
        f"training outliers: {markdown_text(pool.name) if pool else 'none'}; "
        f"model: {markdown_text(cfg.model.name)}. Percentages, mean ± std over equal-size "
        "subsamples "
        f"({'; '.join(sizes)}).\n\n"
    )


OUTPUT_FILES = ("results.json", "results.md", "report.html")
"""The files every run writes into its output folder (plus the plots and ``models/``)."""


def _output_names(cfg: BenchConfig) -> list[str]:
    from rejectnet.plotting import PLOT_NAMES

    names = list(OUTPUT_FILES)
    if cfg.plots:
        names += [f"{n}.png" for n in PLOT_NAMES]
    return names


def check_out(cfg: BenchConfig, out: str | Path) -> Path:
    """Pre-flight of the output folder: create it, check it is writable and that no output
    name is taken by a folder, a symlink or anything but a file.

    Args:
        cfg: The configuration (which outputs it writes).
        out: The output folder.

    Returns:
        The folder.

    Raises:
        BenchError: Naming ``--out`` and the path, before any work is done.
    """
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = write_atomic(out_dir / ".rejectnet-write-test", b"", what="--out probe")
        probe.unlink()
    except (OSError, UnsafeFileError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise BenchError(f"--out {str(out_dir)!r}: not a writable folder ({why})") from None
    names = [*_output_names(cfg), *(["models"] if cfg.save_models else [])]
    for name in names:
        p = out_dir / name
        if name == "models" and p.is_dir() and not p.is_symlink():
            continue
        try:
            check_output_path(p, what=f"--out: {name}")
        except UnsafeFileError as err:
            raise BenchError(str(err)) from None
    return out_dir


def scaled_schedule(cfg: BenchConfig, n_all: int) -> TrainPreset:
    """The schedule with the sizes that depend on the data scaled to ``n_all`` images.

    The rule: unless the config sets ``val_size``, the held-out share is the preset's
    ``val_size`` or a tenth of the training images, whichever is smaller (at least 10).
    A ``val_size`` that leaves fewer than half the images for training is refused.

    Args:
        cfg: The configuration (``cfg.explicit`` says which fields it set).
        n_all: Labeled training images.

    Returns:
        The schedule to run.

    Raises:
        BenchError: If ``val_size`` is at least half the training images.

    Example:
        >>> from pathlib import Path
        >>> from rejectnet.bench.config import BenchConfig, DataConfig
        >>> cfg = BenchConfig(DataConfig(Path("id.npz"), None, {}))
        >>> scaled_schedule(cfg, 2000).val_size, scaled_schedule(cfg, 60000).val_size
        (200, 5000)
    """
    s = cfg.schedule
    if "val_size" not in cfg.explicit:
        s = s.with_overrides({"val_size": min(s.val_size, max(10, n_all // 10))})
    if s.val_size >= n_all // 2:
        raise BenchError(
            f"[train] val_size = {s.val_size} must be below half the {n_all} training images"
        )
    return s


def _split_tuning(ood_x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hold out each OOD set's tuning subsample (in place in ``ood_x``); return them.

    The OOD-tuned peers choose their settings on a small subsample of each OOD set (the
    paper's Figure 1 protocol); those samples are held out of the evaluated sets for
    every method, so that no method is evaluated on samples that chose settings.
    """
    tune_ood: dict[str, torch.Tensor] = {}
    for n, v in list(ood_x.items()):
        order = torch.from_numpy(np.random.default_rng(zlib.crc32(n.encode())).permutation(len(v)))
        m = min(TUNE_SAMPLES, len(v) // 10)
        if m == 0:
            raise BenchError(f"[data.ood] {n}: {len(v)} images are too few (at least 10)")
        tune_ood[n], ood_x[n] = v[order[:m]], v[order[m:]]
    return tune_ood


@dataclass
class Prepared:
    """Everything a run needs, checked before any training starts.

    Attributes:
        cfg: The configuration.
        out_dir: The output folder (checked writable, no output name taken).
        data: In-distribution data.
        pool: The outlier pool, or ``None``.
        ood_x: OOD test sets (tuning subsamples held out).
        tune_ood: The tuning subsamples.
        schedule: The schedule scaled to the data (:func:`scaled_schedule`).
        device: Where to train.
        stages: The progress lines.
        started: ``time.perf_counter()`` at the start.
    """

    cfg: BenchConfig
    out_dir: Path
    data: InDistribution
    pool: torch.Tensor | None
    ood_x: dict[str, torch.Tensor]
    tune_ood: dict[str, torch.Tensor]
    schedule: TrainPreset
    device: torch.device
    stages: StageProgress
    started: float


def prepare(cfg: BenchConfig, out: str | Path, *, progress: bool = True) -> Prepared:
    """The pre-flight: outputs, data, sizes, device and the network, before any training.

    Raises:
        BenchError: For anything that would fail later (one line naming the field).
    """
    t0 = time.perf_counter()
    out_dir = check_out(cfg, out)
    device = torch.device(
        check_device(cfg.device) or ("cuda" if torch.cuda.is_available() else "cpu")
    )
    data, pool, ood_x = load_data(cfg)
    s = scaled_schedule(cfg, len(data.y_train))
    with torch.random.fork_rng(devices=[]):  # the network builds (and loads) before training
        build_model(cfg.model, data.num_classes, data.channels, data.image_size, cfg.base_dir)
    tune_ood = _split_tuning(ood_x)
    n_all = len(data.y_train)
    n_eval = len(data.y_test) + sum(len(v) for v in ood_x.values())
    n_tune = sum(len(v) for v in tune_ood.values()) + TUNE_SAMPLES
    costs = _costs(cfg, s, n_all - s.val_size, n_eval, n_tune)
    return Prepared(
        cfg,
        out_dir,
        data,
        pool,
        ood_x,
        tune_ood,
        s,
        device,
        StageProgress(costs, enabled=progress),
        t0,
    )


def _train_loader(ds: Any, batch_size: int, seed: int, s: TrainPreset) -> DataLoader[Any]:
    """A shuffled training loader, its order a function of (seed, epoch), augmented when
    the schedule says so (:mod:`rejectnet.bench.augment`)."""
    collate = AugmentCollate(s.crop_padding, True) if s.augment else None
    order = SeededShuffle(len(ds), seed)
    return DataLoader(
        ds, batch_size=batch_size, sampler=order, generator=order.generator, collate_fn=collate
    )


def _stage_one(prep: Prepared, seed: int, train: TensorDataset, val: DataLoader[Any]) -> nn.Module:
    cfg, data, s = prep.cfg, prep.data, prep.schedule
    name = f"seed {seed}: stage one"
    prep.stages.start(name)
    seed_everything(method_seed(seed, "stage-one"))
    stats = channel_stats(train.tensors[0]) if cfg.model.normalize else None
    model = build_model(
        cfg.model, data.num_classes, data.channels, data.image_size, cfg.base_dir, stats=stats
    )
    model.to(prep.device)
    note = ""
    if s.stage_one_epochs > 0:
        hist = train_classifier(
            model,
            _train_loader(train, s.stage_one_batch_size, seed, s),
            epochs=s.stage_one_epochs,
            val_loader=val,
            lr=s.stage_one_lr,
            weight_decay=s.weight_decay,
            seed=seed,
            device=prep.device,
            progress=prep.stages.interactive,
        )
        if hist and hist[-1].val_accuracy is not None:
            note = f"held-out accuracy {100 * hist[-1].val_accuracy:.2f}%"
    model.eval()
    prep.stages.done(name, note)
    return model


def _context(prep: Prepared, seed: int, model: nn.Module) -> MethodContext:
    """The methods' context of one seed: its split, loaders and stage-one model."""
    cfg, data, s, pool = prep.cfg, prep.data, prep.schedule, prep.pool
    rng = np.random.default_rng(seed)
    perm = torch.from_numpy(rng.permutation(len(data.y_train)))
    val_idx, train_idx = perm[: s.val_size], perm[s.val_size :]
    train = TensorDataset(data.x_train[train_idx], data.y_train[train_idx])
    ft_train: Any = train
    if s.finetune_subset is not None and s.finetune_subset < len(train):
        ft_train = Subset(train, rng.permutation(len(train))[: s.finetune_subset].tolist())
    pool_idx = None
    if pool is not None:
        pool_idx = torch.from_numpy(rng.permutation(len(pool))[: s.outlier_pool or len(pool)])

    def in_loader() -> DataLoader[Any]:
        return _train_loader(ft_train, s.batch_size, seed, s)

    def outlier_loader() -> DataLoader[Any] | None:
        if pool is None or pool_idx is None:
            return None
        return _train_loader(TensorDataset(pool[pool_idx]), s.batch_size * 5, seed + 1, s)

    return MethodContext(
        model=model,
        num_classes=data.num_classes,
        seed=seed,
        k=cfg.k,
        ks=cfg.ks,
        scores=cfg.scores,
        finetune_epochs=s.finetune_epochs,
        lr=s.lr,
        device=prep.device,
        progress=prep.stages.interactive,
        n_runs=s.n_runs,
        in_loader=in_loader,
        outlier_loader=outlier_loader,
        train_loader=DataLoader(train, batch_size=EVAL_BATCH),
        val_loader=_loader(data.x_train[val_idx], data.y_train[val_idx]),
        pool_sample=None if pool is None or pool_idx is None else pool[pool_idx[:5000]],
        id_test=_loader(data.x_test, data.y_test),
        ood_test={n: _loader(v) for n, v in prep.ood_x.items()},
        tune_id=data.x_train[val_idx[:TUNE_SAMPLES]],
        tune_ood=prep.tune_ood,
        peer_names=tuple(m for m in cfg.methods if m in PEERS),
        weight_decay=s.weight_decay,
        groups={n: cfg.data.group(n) for n in prep.ood_x},
    )


@dataclass
class SeedResult:
    """What one seed produced: its reports, the stage-one ID accuracy, timings, notes."""

    reports: list[Report]
    stage_one_accuracy: float | None
    finetuned_rows: set[str]
    seconds: dict[str, float]
    notes: dict[str, str]


def run_seed(prep: Prepared, seed: int) -> SeedResult:
    """Stage one, then every method from its weights, for one seed."""
    cfg = prep.cfg
    ctx = _context(prep, seed, nn.Identity())
    train = ctx.train_loader.dataset
    ctx.model = _stage_one(prep, seed, train, ctx.val_loader)  # type: ignore[arg-type]
    reports: list[Report] = []
    seconds: dict[str, float] = {}
    finetuned: set[str] = set()
    for method in cfg.methods:
        name = f"seed {seed}: {method}"
        prep.stages.start(name)
        started = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            seed_everything(method_seed(seed, method))
            rows = METHODS[method].run(ctx)
        seconds[method] = time.perf_counter() - started
        reports.extend(rows)
        if METHODS[method].uses_outliers:
            finetuned.update(r.name for r in rows)
        main = next((r for r in rows if r.name == method), rows[0] if rows else None)
        shown = ""
        if main is not None and "mixed" in main.ood:
            shown = f"mixed AUROC {100 * main.ood['mixed'].mean['auroc']:.2f}%"
        prep.stages.done(name, shown or ctx.notes.get(method, ""))
    if cfg.save_models:
        _save_models(prep, ctx, seed)
    acc = next((r.id_accuracy for r in reports if r.name not in finetuned), None)
    if acc is None:
        acc = _accuracy(ctx.model, ctx.id_test, prep.device)
    return SeedResult(reports, acc, finetuned, seconds, dict(ctx.notes))


def _accuracy(model: nn.Module, loader: DataLoader[Any], device: torch.device) -> float:
    from rejectnet.report import compute_logits

    out = compute_logits(model, loader, device=device)
    assert out.labels is not None
    return float((out.logits.argmax(1) == out.labels).float().mean())


def _save_models(prep: Prepared, ctx: MethodContext, seed: int) -> None:
    folder = prep.out_dir / "models"
    check_output_path(folder, what="--out: models")  # never into a planted link
    folder.mkdir(exist_ok=True)
    for mname, net in ctx.models.items():
        save(net, folder / f"{mname}-seed{seed}.safetensors")


def _flag_drops(results: dict[str, Any], stage_one: float | None, finetuned: set[str]) -> list[str]:
    """Add ``id_acc_drop`` (stage one minus the method, fractions) to fine-tuned rows;
    return a warning line for each drop of more than one point."""
    warnings: list[str] = []
    if stage_one is None:
        return warnings
    for name in sorted(finetuned, key=list(results).index):
        acc = results.get(name, {}).get("id_accuracy")
        if acc is None:
            continue
        drop = stage_one - acc
        results[name]["id_acc_drop"] = round(drop, 6)
        if drop > ACC_DROP_WARN:
            warnings.append(
                f"warning: {name} lost {100 * drop:.2f} points of ID accuracy against stage one "
                f"({100 * stage_one:.2f}% -> {100 * acc:.2f}%); see "
                "docs/howto/benchmark-your-data.md"
            )
    return warnings


def _meta(
    prep: Prepared, notes: dict[str, str], seconds: dict[str, float], acc: float | None
) -> dict[str, Any]:
    cfg, data = prep.cfg, prep.data
    return {
        "preset": cfg.preset,
        "schedule": asdict(prep.schedule),
        "seeds": cfg.seeds,
        "k": cfg.k,
        "model": cfg.model.name,
        "in_distribution": str(cfg.data.id),
        "image_size": data.image_size,
        "channels": data.channels,
        "ood_sets": list(prep.ood_x),
        "ood_groups": {n: cfg.data.group(n) for n in prep.ood_x},
        "outlier_pool": str(cfg.data.outliers) if cfg.data.outliers else "none",
        "stage_one_id_accuracy": acc,
        "notes": notes,
        "method_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "seconds": round(time.perf_counter() - prep.started, 1),
        "device": str(prep.device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def _json_safe(obj: Any) -> Any:
    """``obj`` with NaN and infinities as ``null``: results.json stays strict JSON."""
    return json_safe(obj)


def _write_one(out_dir: Path, name: str, make: Any, errors: list[str]) -> None:
    """Build one output and write it atomically; a failure is recorded, never raised."""
    try:
        write_atomic(out_dir / name, make(), what=f"--out: {name}")
    except Exception as err:
        errors.append(f"{name}: {' '.join(str(err).split()) or type(err).__name__}")


def write_outputs(prep: Prepared, results: dict[str, Any], last: list[Report]) -> list[str]:
    """Write results.md, the plots, report.html and results.json, each on its own.

    Returns:
        One line per output that could not be written (the others are written anyway).
    """
    cfg, out_dir = prep.cfg, prep.out_dir
    errors: list[str] = []
    notes = results["_meta"]["notes"]
    header = _header(cfg, prep.data, last)

    def markdown() -> str:
        md = header + reports_to_markdown(last) + "\n"
        if cfg.seeds > 1:
            md += f"\n## Mean ± std over the {cfg.seeds} seeds\n\n" + seeds_markdown(results) + "\n"
        notes_md = "".join(f"- `{k}`: {markdown_cell(v)}\n" for k, v in notes.items())
        return md + ("\nNotes:\n\n" + notes_md if notes_md else "")

    _write_one(out_dir, "results.md", markdown, errors)
    plots = cfg.plots
    if plots:
        try:
            from rejectnet.plotting import figures

            figs = figures([r for r in last if r.name in PLOTTED] or last)
        except Exception as err:
            errors.append(f"plots: {' '.join(str(err).split()) or type(err).__name__}")
            figs, plots = {}, False
        for name, fig in figs.items():
            _write_one(out_dir, f"{name}.png", lambda fig=fig: png(fig), errors)

    def html(with_plots: bool = plots) -> str:
        from rejectnet.report_html import reports_to_html

        return reports_to_html(
            last,
            title=f"rejectnet bench: {cfg.data.id.name} ({cfg.preset} preset)",
            intro=" ".join(header.split("\n", 2)[-1].split()),
            plots=with_plots,
        )

    before = len(errors)
    _write_one(out_dir, "report.html", html, errors)
    if plots and len(errors) > before and "report.html" in errors[-1] and "--out" not in errors[-1]:
        errors.pop()  # the figures broke the page: write it without them
        _write_one(out_dir, "report.html", lambda: html(False), errors)
        if len(errors) == before:
            errors.append("report.html: written without its plots (they could not be drawn)")
    results["_meta"]["output_errors"] = list(errors)
    _write_one(
        out_dir,
        "results.json",
        lambda: json.dumps(results, indent=2, allow_nan=False),
        errors,
    )
    return errors


def run_bench(cfg: BenchConfig, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Run the benchmark and write ``results.json``, ``results.md``, plots and HTML.

    Everything that can be checked is checked first (:func:`prepare`: the output folder,
    every data source, the sizes, the device, the network); then each seed runs
    (:func:`run_seed`); then every output is written on its own (:func:`write_outputs`),
    so one that fails never costs the others: the failures are listed at the end and in
    ``results.json``'s ``_meta.output_errors``.

    Args:
        cfg: A validated configuration (:func:`~rejectnet.bench.load_config`).
        out: Output folder (created if missing).
        progress: One line per stage with an ETA on stderr (and tqdm bars in the
            training loops when stderr is a terminal).

    Returns:
        The content of ``results.json``: method -> ``{"id_accuracy", "score", "ood":
        {set: {"auroc", "aupr_in", "aupr_out", "fpr95"}}, "selective", ...}`` (fractions;
        fine-tuned methods add ``"id_acc_drop"``, stage one's ID accuracy minus theirs),
        plus ``"_meta"`` (configuration, timings, notes on skipped methods).

    Raises:
        BenchError: For bad data or settings (one line naming the field), before training.

    Example:
        >>> from rejectnet.bench import load_config, run_bench
        >>> results = run_bench(load_config("fashion.toml"), "runs/fashion")  # doctest: +SKIP
        >>> results["rejectnet"]["ood"]["mnist"]["auroc"]  # doctest: +SKIP
    """
    prep = prepare(cfg, out, progress=progress)
    runs = _Runs()
    with torch.random.fork_rng(devices=[]):
        for seed in range(cfg.seeds):
            runs.add(run_seed(prep, seed))
    results, warnings = _results(prep, runs)
    errors = write_outputs(prep, results, runs.last)
    if progress:
        print(summary_table({k: v for k, v in results.items() if k != "_meta"}))
        print(f"wrote {prep.out_dir}/ ({results['_meta']['seconds']:.0f} s)")
    for line in warnings:
        print(line, file=sys.stderr)
    for line in errors:
        print(f"error: could not write {line}", file=sys.stderr)
    return results


@dataclass
class _Runs:
    """What the seeds produced so far: reports by method, timings, notes, accuracies."""

    per_method: dict[str, list[Report]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    accs: list[float] = field(default_factory=list)
    finetuned: set[str] = field(default_factory=set)
    last: list[Report] = field(default_factory=list)

    def add(self, res: SeedResult) -> None:
        """Add one seed's result."""
        for k, v in res.seconds.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v
        self.notes.update(res.notes)
        self.finetuned |= res.finetuned_rows
        if res.stage_one_accuracy is not None:
            self.accs.append(res.stage_one_accuracy)
        for r in res.reports:
            self.per_method.setdefault(r.name, []).append(r)
        self.last = res.reports


def _results(prep: Prepared, runs: _Runs) -> tuple[dict[str, Any], list[str]]:
    """The content of results.json (strict JSON) and the accuracy-drop warnings."""
    if not runs.per_method:
        raise BenchError(
            "no method produced results: " + "; ".join(f"{k}: {v}" for k, v in runs.notes.items())
        )
    results: dict[str, Any] = {name: _mean_reports(rs) for name, rs in runs.per_method.items()}
    acc = float(np.mean(runs.accs)) if runs.accs else None
    warnings = _flag_drops(results, acc, runs.finetuned)
    results["_meta"] = _meta(prep, runs.notes, runs.seconds, acc)
    return _json_safe(results), warnings  # what is returned is what results.json holds
