"""Print a ``rejectnet bench`` results.json as the Markdown table of docs/benchmarks.md.

One row per method: score, ID accuracy, AUROC / FPR@95%TPR per OOD set (the "mixed" set
included when present) and the mean AUROC over the sets other than "mixed". With several
seeds each cell is ``mean ± std`` over the seeds. Usage::

    python benchmarks/results_table.py runs/fashion/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _cell(entry: dict[str, Any], name: str, metric: str) -> str:
    mean = 100 * entry["ood"][name][metric]
    std = entry.get("ood_std", {}).get(name, {}).get(metric)
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {100 * std:.2f}"


def table(results: dict[str, Any]) -> str:
    """The Markdown table of one results.json (``_meta`` skipped)."""
    rows = {k: v for k, v in results.items() if not k.startswith("_")}
    sets = list(next(iter(rows.values()))["ood"])
    plain = [s for s in sets if s != "mixed"]
    head = ["method", "score", "ID acc", *sets, "mean AUROC over sets"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for name, r in rows.items():
        acc = "-" if r["id_accuracy"] is None else f"{100 * r['id_accuracy']:.2f}"
        if r.get("id_accuracy_std") is not None:
            acc += f" ± {100 * r['id_accuracy_std']:.2f}"
        cells = [f"{_cell(r, s, 'auroc')} / {_cell(r, s, 'fpr95')}" for s in sets]
        mean_auroc = sum(100 * r["ood"][s]["auroc"] for s in plain) / len(plain)
        lines.append(
            "| " + " | ".join([name, f"`{r['score']}`", acc, *cells, f"{mean_auroc:.2f}"]) + " |"
        )
    meta = results.get("_meta", {})
    if meta:
        secs = meta.get("method_seconds", {})
        lines.append("")
        lines.append(
            f"seeds {meta.get('seeds')}, {meta.get('seconds')} s in all, {meta.get('threads')} "
            f"thread(s); seconds per method: " + ", ".join(f"{k} {v}" for k, v in secs.items())
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, help="a results.json written by rejectnet bench")
    args = p.parse_args()
    print(table(json.loads(args.results.read_text())))


if __name__ == "__main__":
    main()
