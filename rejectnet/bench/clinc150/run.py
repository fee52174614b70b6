"""``rejectnet bench clinc150``: the run (stage one, then every method), its outputs, the CLI."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch

from rejectnet.bench.clinc150.data import RECIPE, Context, TextData, TextRecipe, prepare_data
from rejectnet.bench.clinc150.methods import CLINC150_METHODS, RUNNERS, check_methods
from rejectnet.bench.clinc150.training import train_stage_one
from rejectnet.bench.errors import BenchError
from rejectnet.bench.methods import method_seed
from rejectnet.bench.runner import _flag_drops, _json_safe, _mean_reports, _write_one
from rejectnet.bench.tables import seeds_markdown, summary_table
from rejectnet.evaluation import Report, reports_to_markdown
from rejectnet.finetune.progress import is_terminal
from rejectnet.finetune.rng import seed_everything

__all__ = ["add_clinc150_parser", "run_clinc150", "run_clinc150_command"]

FINETUNED = frozenset({"oe", "rejectnet-paper", "rejectnet"})


def _log(progress: bool, t0: float, message: str) -> None:
    if progress:
        print(f"[clinc150 {time.perf_counter() - t0:6.0f} s] {message}", file=sys.stderr)


def _run_seed(
    data: TextData, recipe: TextRecipe, seed: int, methods: Sequence[str], opts: dict[str, Any]
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
    ctx = Context(model, data, recipe, seed, device, opts["bars"], notes)
    reports: list[Report] = []
    for m in methods:
        started = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            seed_everything(method_seed(seed, m))
            rows = RUNNERS[m](ctx, m)
        seconds[m] = time.perf_counter() - started
        reports.extend(rows)
        shown = ctx.notes.get(m, "")
        if rows and "mixed" in rows[0].ood:
            shown = f"mixed AUROC {100 * rows[0].ood['mixed'].mean['auroc']:.2f}%"
        _log(progress, t0, f"seed {seed}: {m} done in {seconds[m]:.0f} s {shown}")
    return reports, seconds, notes


def _run_seeds(
    data: TextData, recipe: TextRecipe, seeds: int, names: Sequence[str], opts: dict[str, Any]
) -> tuple[dict[str, list[Report]], list[Report], dict[str, float], dict[str, str]]:
    """Every seed: the reports per method, the last seed's, seconds and notes summed up."""
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
    return per_method, last, seconds, notes


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
        ``clinc150_oos_recall_<set>``; fine-tuned methods add ``id_acc_drop`` against
        ``msp``, the stage-one model), plus ``"_meta"``.

    Raises:
        BenchError: For missing or malformed data (one line naming the file).

    Example:
        >>> from rejectnet.bench.clinc150 import run_clinc150
        >>> r = run_clinc150("../shared/data/clinc150", "runs/clinc150")  # doctest: +SKIP
        >>> r["rejectnet"]["ood"]["oos_val"]["auroc"]  # doctest: +SKIP
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an int >= 1, got {seeds!r}")
    names = check_methods(methods)
    t0 = time.perf_counter()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = prepare_data(data_dir, recipe, outliers=outliers, ood=ood)
    _log(progress, t0, f"data ready: {len(data.train)} train, {len(data.test)} test utterances")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    opts = {
        "t0": t0,
        "progress": progress,
        "device": dev,
        "bars": progress and is_terminal(sys.stderr),
    }
    per_method, last, seconds, notes = _run_seeds(data, recipe, seeds, names, opts)
    meta = _meta(recipe, seeds, outliers, data, notes, seconds, t0, dev)
    return _write(out_dir, per_method, last, meta, progress)


def _meta(
    recipe: TextRecipe,
    seeds: int,
    outliers: str,
    data: TextData,
    notes: dict[str, str],
    seconds: dict[str, float],
    t0: float,
    device: torch.device,
) -> dict[str, Any]:
    """``results.json``'s ``_meta``: the settings, notes, timings and the machine."""
    return {
        "benchmark": "clinc150",
        "recipe": asdict(recipe),
        "seeds": seeds,
        "outliers": outliers,
        "ood_sets": list(data.ood),
        "notes": notes,
        "method_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "seconds": round(time.perf_counter() - t0, 1),
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def _markdown(results: Mapping[str, Any], last: list[Report], meta: Mapping[str, Any]) -> str:
    """results.md: the last seed's tables, the dataset's metric, the seeds' means, notes."""
    shown = f"seed {meta['seeds'] - 1} of {meta['seeds']} shown"
    md = f"# rejectnet bench clinc150 ({shown})\n\n{_intro(meta)}\n\n"
    md += reports_to_markdown(last) + "\n\n" + _metric_table(results) + "\n"
    if meta["seeds"] > 1:
        md += f"\n## Mean ± std over the {meta['seeds']} seeds\n\n" + seeds_markdown(results)
    return md + "\nNotes:\n\n" + "".join(f"- `{k}`: {v}\n" for k, v in meta["notes"].items())


def _intro(meta: Mapping[str, Any]) -> str:
    return (
        "In-scope: CLINC150 test (150 intents); out-of-scope sets: "
        f"{', '.join(meta['ood_sets'])}; outlier pool: {meta['outliers']}. Percentages; "
        "the dataset's metric (in-scope accuracy and out-of-scope recall at the threshold "
        "calibrated on in-scope val) is below."
    )


def _write(
    out_dir: Path,
    per_method: dict[str, list[Report]],
    last: list[Report],
    meta: dict[str, Any],
    progress: bool,
) -> dict[str, Any]:
    """results.json (``bench run``'s schema, strict JSON), results.md and report.html,
    each written atomically and on its own (a failure is listed in ``_meta.output_errors``)."""
    from rejectnet.report_html import reports_to_html

    results: dict[str, Any] = {name: _mean_reports(rs) for name, rs in per_method.items()}
    stage_one = results.get("msp", {}).get("id_accuracy")
    for line in _flag_drops(results, stage_one, set(FINETUNED & set(results))):
        meta["notes"][f"{line.split()[1]} accuracy"] = line.removeprefix("warning: ")
    errors: list[str] = []
    _write_one(out_dir, "results.md", lambda: _markdown(results, last, meta), errors)
    page = lambda: reports_to_html(last, title="rejectnet bench: CLINC150", intro=_intro(meta))  # noqa: E731
    _write_one(out_dir, "report.html", page, errors)
    meta["output_errors"] = errors
    full: dict[str, Any] = _json_safe({**results, "_meta": meta})
    _write_one(out_dir, "results.json", lambda: json.dumps(full, indent=2, allow_nan=False), errors)
    if progress:
        print(summary_table(results))
        print(f"wrote {out_dir}/results.md, results.json, report.html ({meta['seconds']:.0f} s)")
        for err in errors:
            print(f"rejectnet bench clinc150: could not write {err}", file=sys.stderr)
    return full


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
    from rejectnet.bench import clinc150 as package

    p: argparse.ArgumentParser = subparsers.add_parser(
        "clinc150",
        help="out-of-scope detection for intent classification (CLINC150, text)",
        description=(package.__doc__ or "").split("\n\n")[1],
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
