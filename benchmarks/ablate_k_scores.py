"""Ablation of the paper's Table 2 and "Multiple Reject Classes" on the MNIST quick preset.

k in {1, 2, 5, 10, 20} reject classes x the reject scores (max, sum, entropy,
entropy_diff and the weighted score fitted on held-out digits and training outliers; with
uniform weights the weighted score is the sum), Algorithm 1 exactly
(``rejectnet-paper``), mean and spread over seeds; stage one is shared by every k of a
seed. Prints one table (AUROC / FPR@95%TPR on the mix of the OOD sets, and per set).

    python benchmarks/make_dev_sets.py --out runs/dev-sets
    python benchmarks/ablate_k_scores.py --data-dir ../shared/data \\
        --ood letters=runs/dev-sets/letters.npz --seeds 3 --out runs/ablate-k-scores
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rejectnet.bench import config_from_dict, mnist_config, run_bench
from rejectnet.report.tables import markdown_table, markdown_text

KS = (1, 2, 5, 10, 20)
SCORES = ("max", "sum", "weighted", "entropy", "entropy_diff")


def table(results: dict[str, Any], ks: tuple[int, ...], sets: list[str]) -> str:
    """Markdown: one row per k, one column per score, mean ± std over seeds (percent).

    Set names are escaped (:mod:`rejectnet.report.tables`): a ``|`` or a newline in a
    name cannot break a table.
    """
    lines = []
    for target in sets:
        title = f"{markdown_text(target)}: AUROC / FPR@95%TPR, mean ± std over seeds (%)"
        rows = []
        for k in ks:
            base = "rejectnet-paper" if k == 5 else f"rejectnet-paper-k{k}"
            r0 = results[base]
            acc = f"{100 * r0['id_accuracy']:.2f} ± {100 * (r0.get('id_accuracy_std') or 0):.2f}"
            cells = []
            for score in SCORES:
                r = results[base if score == "sum" else f"{base}-{score}"]
                m, sd = r["ood"][target], r.get("ood_std", {}).get(target, {})
                cells.append(
                    f"{100 * m['auroc']:.2f} ± {100 * sd.get('auroc', 0):.2f} / "
                    f"{100 * m['fpr95']:.2f} ± {100 * sd.get('fpr95', 0):.2f}"
                )
            rows.append([str(k), acc, *cells])
        lines += [f"\n{title}\n", *markdown_table(["k", "ID acc", *SCORES], rows)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--ood", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="runs/ablate-k-scores")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    ood = dict(item.split("=", 1) for item in args.ood)
    raw = mnist_config(
        args.data_dir, preset=args.preset, ood=ood, seeds=args.seeds, ks=KS, scores=SCORES,
        methods=["rejectnet-paper"], plots=False,
    )  # fmt: skip
    results = run_bench(config_from_dict(raw, Path.cwd()), args.out, progress=not args.quiet)
    sets = list(next(iter(results.values()))["ood"])
    text = table(results, KS, sets)
    print(text)
    (Path(args.out) / "ablation.md").write_text(text + "\n")
    meta = results["_meta"]
    print(f"\n{args.preset} preset, {args.seeds} seeds, {meta['seconds']:.0f} s; "
          f"results in {args.out}/results.json")  # fmt: skip


if __name__ == "__main__":
    main()
