"""Tables of a ``results.json``: the terminal summary and the Markdown table over seeds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rejectnet.report.tables import MIXED, markdown_table, one_line

__all__ = ["seeds_markdown", "summary_table"]


def _rows(results: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in results.items() if not k.startswith("_")}


def summary_table(results: Mapping[str, Any]) -> str:
    """A fixed-width text table of ``results.json`` (ID accuracy, AUROC / FPR per set).

    Args:
        results: What :func:`rejectnet.bench.run_bench` returns (``"_meta"`` is skipped).

    Returns:
        The table; names are on one line (:func:`rejectnet.report.tables.one_line`).
    """
    rows = _rows(results)
    sets = list(next(iter(rows.values()))["ood"])
    head = f"{'method':<24}{'ID acc':>8}" + "".join(
        f"{one_line(s)[:10] + ' AUROC':>17}{'FPR95':>8}" for s in sets
    )
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        acc = f"{100 * r['id_accuracy']:.2f}" if r["id_accuracy"] is not None else "-"
        cells = "".join(
            f"{100 * r['ood'][s]['auroc']:>17.2f}{100 * r['ood'][s]['fpr95']:>8.2f}" for s in sets
        )
        lines.append(f"{one_line(name):<24}{acc:>8}{cells}")
    return "\n".join(lines)


def _pct(mean: float, std: float | None) -> str:
    return f"{100 * mean:.2f}" if std is None else f"{100 * mean:.2f} ± {100 * std:.2f}"


def seeds_markdown(results: Mapping[str, Any]) -> str:
    """The Markdown table of ``results.json``: one row per method, ``mean ± std`` over seeds.

    Columns: the score, ID accuracy, AUROC / FPR@95%TPR (%) for every OOD set (the
    ``mixed`` set included when present) and the mean AUROC over the sets other than
    ``mixed``. With one seed the cells carry no ``± std``. Every cell is escaped
    (:func:`rejectnet.report.tables.markdown_table`): a ``|``, a newline or a backslash
    in a method or set name cannot break the table.

    Args:
        results: What :func:`rejectnet.bench.run_bench` returns (or its ``results.json``).

    Returns:
        The table, without a trailing newline.
    """
    rows = _rows(results)
    sets = list(next(iter(rows.values()))["ood"])
    plain = [s for s in sets if s != MIXED] or sets
    head = ["method", "score", "ID acc", *sets, "mean AUROC over sets"]
    cells = []
    for name, r in rows.items():
        std = r.get("ood_std", {})
        acc = "-"
        if r["id_accuracy"] is not None:
            acc = _pct(r["id_accuracy"], r.get("id_accuracy_std"))
        per_set = [
            " / ".join(_pct(r["ood"][s][m], std.get(s, {}).get(m)) for m in ("auroc", "fpr95"))
            for s in sets
        ]
        mean_auroc = sum(100 * r["ood"][s]["auroc"] for s in plain) / len(plain)
        cells.append([name, f"`{r['score']}`", acc, *per_set, f"{mean_auroc:.2f}"])
    return "\n".join(markdown_table(head, cells, numeric_from=2))
