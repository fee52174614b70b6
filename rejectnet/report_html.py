"""One self-contained HTML page of evaluation reports: tables, notes and plots.

The page needs no other file: the plots are embedded as base64 PNG images and the
styling is inline. Without matplotlib the page holds the tables and notes only, and says
so. Reports are read through :class:`rejectnet._reportlike.ReportLike`; this module
does not import the evaluation module.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

from rejectnet import _report_table, plotting
from rejectnet._reportlike import ReportLike

__all__ = ["reports_to_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #eef; }
td:nth-child(-n+4) { text-align: left; }
img { max-width: 100%; margin: 0.5em 0; border: 1px solid #eee; }
.note { color: #555; }
"""

_TITLES = {
    "roc": "ROC curves per OOD set",
    "score_histograms": "Score histograms (in- vs out-of-distribution)",
    "error_vs_tpr": "In-distribution error vs detection TPR",
    "risk_coverage": "Risk-coverage on in-distribution data",
}


def _table(reports: Sequence[ReportLike]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _report_table.HEADER)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in _report_table.rows(reports)
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _selective(reports: Sequence[ReportLike]) -> str:
    keys = ("coverage", "risk", "risk_without_rejection", "total_misclassification")
    head = "".join(f"<th>{k.replace('_', ' ')}</th>" for k in ("method", *keys))
    rows = []
    for r in reports:
        cells = [html.escape(r.name)]
        for k in keys:
            v = r.selective.get(k)
            cells.append("-" if v is None or v != v else f"{100 * v:.2f}")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table>"
    )


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(reports: Sequence[ReportLike]) -> str:
    parts = []
    for name in plotting.PLOT_NAMES:  # a plot that fails is named, never costs the page
        title = html.escape(_TITLES.get(name, name))
        try:
            png = _png(plotting.figure(name, reports))
        except ImportError:
            return (
                '<p class="note">Plots left out: matplotlib is not installed '
                '(pip install "rejectnet[plot]").</p>'
            )
        except Exception as err:  # shown on the page instead of the plot
            why = html.escape(f"{type(err).__name__}: {err}")
            parts.append(f'<h3>{title}</h3>\n<p class="note">Not drawn: {why}</p>')
            continue
        parts.append(f'<h3>{title}</h3>\n<img alt="{title}" src="data:image/png;base64,{png}">')
    return "\n".join(parts)


def reports_to_html(
    reports: Sequence[ReportLike],
    *,
    title: str | None = None,
    intro: str = "",
    plots: bool = True,
) -> str:
    """One self-contained HTML page comparing several reports.

    Args:
        reports: Reports from :func:`rejectnet.evaluate` (same OOD sets), one table row
            per report and OOD set.
        title: The page title; defaults to the method names.
        intro: Plain text shown under the title (escaped), e.g. the run's setup.
        plots: Embed the four plots of :mod:`rejectnet.plotting` as inline PNG.

    Returns:
        The HTML text: the OOD table (percentages; ``mean ± std`` over runs, a bare
        number for a single run), the notes saying what was done, a table of selective
        classification at the TPR threshold, and the plots.

    Raises:
        ValueError: If ``reports`` is empty.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead, evaluate
        >>> from rejectnet.report_html import reports_to_html
        >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
        >>> ood = {"far": [torch.randn(20, 4) + 5]}
        >>> page = reports_to_html([evaluate(net, [torch.randn(20, 4)], ood)], plots=False)
        >>> "<td>far</td>" in page, "no subsampling (equal sizes)" in page
        (True, True)
    """
    if not reports:
        raise ValueError("reports is empty; pass at least one Report")
    heading = (
        title if title is not None else "OOD evaluation: " + ", ".join(r.name for r in reports)
    )
    notes = "\n".join(f"<li>{html.escape(n)}</li>" for n in _report_table.notes_of(reports))
    tpr = f"{100 * reports[0].tpr:g}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{html.escape(heading)}</title>",
        f"<style>{_STYLE}</style></head>",
        "<body>",
        f"<h1>{html.escape(heading)}</h1>",
    ]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    parts += [
        "<h2>OOD detection (%)</h2>",
        _table(reports),
        f"<ul>\n{notes}\n</ul>" if notes else "",
        f"<h2>Selective classification at {tpr}% TPR (%)</h2>",
        _selective(reports),
    ]
    if plots:
        parts += ["<h2>Plots</h2>", _plots(reports)]
    parts += ["</body>", "</html>", ""]
    return "\n".join(p for p in parts if p)
