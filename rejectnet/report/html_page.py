"""One self-contained HTML page of evaluation reports: tables, notes and plots.

The page needs no other file: the plots are embedded as base64 PNG images and the
styling is inline. Without matplotlib the page holds the tables and notes only, and says
so. Reports are read through :class:`rejectnet.report.interfaces.ReportLike`; this module
does not import the results module.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import rejectnet.report.plots as plots
import rejectnet.report.tables as tables
from rejectnet.report.interfaces import ReportLike

__all__ = ["reports_to_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #eef; }
td:nth-child(-n+4), td.text { text-align: left; }
td.best { font-weight: bold; background: #dfd; }
td.flag { background: #fdd; }
img { max-width: 100%; margin: 0.5em 0; border: 1px solid #eee; }
.note { color: #555; }
.warn { color: #a00; }
"""

_TITLES = {
    "roc": "ROC curves per OOD set",
    "score_histograms": "Score histograms (in- vs out-of-distribution)",
    "error_vs_tpr": "In-distribution error vs detection TPR",
    "risk_coverage": "Risk-coverage on in-distribution data",
}

_SELECTIVE = (
    ("coverage", "coverage \u2191"),
    ("risk", "risk \u2193"),
    ("risk_without_rejection", "risk without rejection \u2193"),
    ("total_misclassification", "total misclassification \u2193"),
)


def _html_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    best: Collection[tuple[int, int]] = (),
    flagged: Collection[tuple[int, int]] = (),
) -> str:
    """A table; best cells bold on green, flagged cells red."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, text in enumerate(row):
            kind = [
                *(["best"] if (i, j) in best else []),
                *(["flag"] if (i, j) in flagged else []),
            ]
            attr = f' class="{" ".join(kind)}"' if kind else ""
            cells.append(f"<td{attr}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody>\n</table>"
    )


def _ood_table(reports: Sequence[ReportLike], drops: Mapping[str, float]) -> str:
    rows = tables.rows(reports)
    flagged = tables.flag_drops(rows, drops)
    legend = "\u2191 higher is better, \u2193 lower is better"
    if len(reports) > 1:
        legend += "; the best value of each column and OOD set is bold on green"
    if flagged:
        legend += "; red: " + tables.DROP_NOTE
    return _html_table(tables.HEADER, rows, tables.best_cells(reports), flagged) + (
        f'\n<p class="note">{html.escape(legend)}.</p>'
    )


def _means(reports: Sequence[ReportLike]) -> str:
    if not any(g == "near" for r in reports for g in r.groups.values()):
        return ""
    rows, best = tables.means_rows(reports)
    return (
        "<h2>Near / far means (%)</h2>\n"
        '<p class="note">OpenOOD\'s summary: each metric averaged over the OOD sets of a '
        "group (near: new classes of similar images; far: a different kind of image). "
        "The mixed set belongs to no group.</p>\n" + _html_table(tables.MEANS_HEADER, rows, best)
    )


def _sets(reports: Sequence[ReportLike]) -> str:
    """The sets as evaluated: group, OOD and in-distribution samples actually scored."""
    first = reports[0]
    rows = [
        [name, first.groups.get(name, "-"), str(res.n_ood), str(res.n_in)]
        for name, res in first.ood.items()
        if name != tables.MIXED  # its make-up is in the notes
    ]
    header = ("OOD set", "group", "OOD images evaluated", "ID images evaluated")
    return "<h2>Data evaluated</h2>\n" + _html_table(header, rows)


def _methods(reports: Sequence[ReportLike], method_notes: Mapping[str, str]) -> str:
    shown = ", ".join(dict.fromkeys(r.name for r in reports))
    parts = [f"<p>Methods shown: {html.escape(shown)}.</p>"]
    names = {r.name for r in reports}
    skipped = {k: v for k, v in method_notes.items() if k not in names}
    changed = {k: v for k, v in method_notes.items() if k in names}
    for title, items in (("Not shown", skipped), ("Notes on methods", changed)):
        if items:
            lis = "\n".join(
                f"<li><strong>{html.escape(k)}</strong>: {html.escape(v)}</li>"
                for k, v in items.items()
            )
            parts.append(f"<p>{title}:</p>\n<ul>\n{lis}\n</ul>")
    return "\n".join(parts)


def _selective(reports: Sequence[ReportLike]) -> str:
    tpr = f"{100 * reports[0].tpr:g}"
    rows = []
    for r in reports:
        cells = [r.name]
        for k, _ in _SELECTIVE:
            v = r.selective.get(k)
            cells.append("-" if v is None or v != v else f"{100 * v:.2f}")
        rows.append(cells)
    explain = (
        f"Each method rejects the inputs whose OOD score is above the threshold that flags "
        f"{tpr}% of the OOD samples (the mixed set when there is one); on the "
        "in-distribution test set, coverage is the share still accepted, risk the "
        "classification error on those, risk without rejection the error on all of them, "
        "and total misclassification the misclassified accepted ID samples plus the "
        "accepted OOD samples, per ID sample (the paper's Figure 2)."
    )
    header = ("method", *(h for _, h in _SELECTIVE))
    return (
        f"<h2>Selective classification at {tpr}% TPR (%)</h2>\n"
        f'<p class="note">{html.escape(explain)}</p>\n' + _html_table(header, rows)
    )


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(reports: Sequence[ReportLike]) -> str:
    parts = []
    for name in plots.PLOT_NAMES:  # a plot that fails is named, never costs the page
        title = html.escape(_TITLES.get(name, name))
        try:
            png = _png(plots.figure(name, reports))
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
    method_notes: Mapping[str, str] | None = None,
    id_acc_drops: Mapping[str, float] | None = None,
) -> str:
    """One self-contained HTML page comparing several reports.

    The page says what it shows: the methods shown and those not shown with the reason
    (``method_notes``), the OOD and in-distribution samples actually evaluated per set
    and its near / far group, each column's direction with the best value of each
    column highlighted, the near / far means when a set is tagged ``near``, a flag on a
    method whose ID accuracy fell more than one point below stage one's, and what the
    selective-classification table means.

    Args:
        reports: Reports from :func:`rejectnet.evaluate` (same OOD sets), one table row
            per report and OOD set.
        title: The page title; defaults to the method names.
        intro: Plain text shown under the title (escaped), e.g. the run's setup.
        plots: Embed the four plots of :mod:`rejectnet.report.plots` as inline PNG.
        method_notes: Method name -> why it was skipped or changed (e.g. a benchmark's
            ``_meta.notes``); a name without a report is listed as not shown.
        id_acc_drops: Method name -> ID accuracy lost against stage one (fractions, e.g.
            the ``id_acc_drop`` of a benchmark's ``results.json``); without it the drop
            is measured against a report named ``msp`` (the stage-one model) if any.

    Returns:
        The HTML text.

    Raises:
        ValueError: If ``reports`` is empty.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead, evaluate
        >>> from rejectnet.report import reports_to_html
        >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
        >>> ood = {"far": [torch.randn(20, 4) + 5]}
        >>> report = evaluate(net, [torch.randn(20, 4)], ood)
        >>> page = reports_to_html([report], plots=False, method_notes={"knn": "skipped"})
        >>> "<td>far</td>" in page, "no subsampling (equal sizes)" in page
        (True, True)
        >>> "<li><strong>knn</strong>: skipped</li>" in page
        True
    """
    if not reports:
        raise ValueError("reports is empty; pass at least one Report")
    heading = (
        title if title is not None else "OOD evaluation: " + ", ".join(r.name for r in reports)
    )
    drops = tables.accuracy_drops(reports, id_acc_drops)
    body = [
        f"<p>{html.escape(intro)}</p>" if intro else "",
        *_sections(reports, method_notes or {}, drops),
    ]
    if plots:
        body += ["<h2>Plots</h2>", _plots(reports)]
    return _page(heading, body)


def _sections(
    reports: Sequence[ReportLike], method_notes: Mapping[str, str], drops: Mapping[str, float]
) -> list[str]:
    """The page's sections, from the methods shown to the selective classification."""
    notes = "\n".join(f"<li>{html.escape(n)}</li>" for n in tables.notes_of(reports))
    return [
        _methods(reports, method_notes),
        _sets(reports),
        "<h2>OOD detection (%)</h2>",
        _ood_table(reports, drops),
        f"<ul>\n{notes}\n</ul>" if notes else "",
        _means(reports),
        _selective(reports),
    ]


def _page(heading: str, body: Sequence[str]) -> str:
    """The HTML document: the title, the inline style and ``body`` (empty parts left out)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{html.escape(heading)}</title>",
        f"<style>{_STYLE}</style></head>",
        "<body>",
        f"<h1>{html.escape(heading)}</h1>",
        *body,
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(p for p in parts if p)
