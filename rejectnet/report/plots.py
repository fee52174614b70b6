"""PNG plots of evaluation reports (needs matplotlib: ``pip install "rejectnet[plot]"``).

Several reports (methods) are drawn on the same axes so they can be compared:

* ``roc``: ROC curves, one panel per OOD set (OOD = positive);
* ``score_histograms``: OOD-score histograms, in- vs out-of-distribution, one panel
  per method (the paper's Figure 4);
* ``error_vs_tpr``: in-distribution error on accepted samples against the detection
  TPR on the mixed set (the paper's Figures 2 and 3, top);
* ``risk_coverage``: selective risk against coverage on in-distribution data
  (the paper's Figure 3, bottom).

The figures are ``matplotlib.figure.Figure`` objects drawn without pyplot: nothing here
touches matplotlib's global state or backend, so a notebook's inline figures keep
working. Reports are read through :class:`rejectnet.report.interfaces.ReportLike` (a
:class:`rejectnet.report.results.Report` is one); this module does not import the
results module. Names are drawn as plain text (a ``$`` never starts a formula).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from rejectnet.metrics import risk_coverage
from rejectnet.report.interfaces import ReportLike
from rejectnet.report.tables import one_line
from rejectnet.scores import threshold_at_tpr

__all__ = ["PLOT_NAMES", "figure", "figures", "plot_reports", "png"]

PLOT_NAMES = ("roc", "score_histograms", "error_vs_tpr", "risk_coverage")
"""The plots, in order; each is written as ``<name>.png``."""


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError('plotting needs matplotlib: pip install "rejectnet[plot]"') from err
    return Figure(figsize=(width, height))


def _label(text: str) -> str:
    """A name as plain text for matplotlib: ``$`` escaped (no mathtext), one line.

    A method or OOD set name is the user's text, never a formula: unescaped, ``odd$\\nope$``
    would be parsed as mathtext and fail when the figure is drawn.
    """
    out = one_line(text).replace("$", r"\$")
    return " " + out if out.startswith("_") else out  # "_..." would hide a legend entry


def _target(report: ReportLike) -> str:
    return "mixed" if "mixed" in report.scores_out else next(iter(report.scores_out))


def _roc(reports: Sequence[ReportLike]) -> Any:
    sets = list(reports[0].scores_out)
    fig = _figure(4 * len(sets), 4)
    axes = fig.subplots(1, len(sets), squeeze=False)
    for ax, name in zip(axes[0], sets, strict=True):
        for r in reports:
            s_in, s_out = r.scores_in, r.scores_out[name]
            labels = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
            fpr, tpr, _ = roc_curve(labels, np.r_[s_in, s_out])
            auroc = 100 * r.ood[name].mean["auroc"]
            ax.plot(fpr, tpr, label=f"{_label(r.name)} ({auroc:.2f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--")
        ax.set(title=f"ROC: {_label(name)}", xlabel="FPR (in-distribution flagged)", ylabel="TPR")
        ax.legend(loc="lower right", fontsize=8, title="AUROC %", title_fontsize=8)
    return fig


def _histograms(reports: Sequence[ReportLike]) -> Any:
    cols = min(4, len(reports))  # a grid, so that many methods stay readable
    rows = -(-len(reports) // cols)
    fig = _figure(4 * cols, 3.5 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(reports) :]:
        ax.set_axis_off()
    for ax, r in zip(axes, reports, strict=False):
        target = _target(r)
        both = np.r_[r.scores_in, r.scores_out[target]]
        bins: Any = np.linspace(both.min(), both.max(), 40) if np.ptp(both) > 0 else 10
        ax.hist(r.scores_in, bins=bins, alpha=0.6, density=True, label="in-distribution")
        ood_label = f"OOD ({_label(target)})"
        ax.hist(r.scores_out[target], bins=bins, alpha=0.6, density=True, label=ood_label)
        ax.set(title=_label(f"{r.name}: {r.score}"[:60]), xlabel="OOD score", ylabel="density")
        ax.legend(fontsize=8)
    return fig


def _error_vs_tpr(reports: Sequence[ReportLike]) -> Any:
    fig = _figure(5, 4)
    ax = fig.subplots()
    tprs = np.linspace(0.5, 1.0, 51)
    for r in reports:
        if r.correct is None:
            continue
        s_out = r.scores_out[_target(r)]
        errs = []
        for t in tprs:
            thr = threshold_at_tpr(r.scores_in, s_out, tpr=float(t)).value
            accepted = r.scores_in <= thr
            errs.append(float((~r.correct[accepted]).mean()) if accepted.any() else np.nan)
        ax.plot(100 * tprs, 100 * np.asarray(errs), label=_label(r.name))
    ax.set(
        title="In-distribution error vs detection TPR",
        xlabel="TPR on OOD (%)",
        ylabel="error on accepted (%)",
    )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig


def _risk_coverage(reports: Sequence[ReportLike]) -> Any:
    fig = _figure(5, 4)
    ax = fig.subplots()
    for r in reports:
        if r.correct is None:
            continue
        rc = risk_coverage(r.scores_in, r.correct)
        ax.step(100 * rc.coverage, 100 * rc.risk, where="post", label=_label(r.name))
    ax.set(title="Risk-coverage (in-distribution)", xlabel="coverage (%)", ylabel="risk (%)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig


_DRAW = {
    "roc": _roc,
    "score_histograms": _histograms,
    "error_vs_tpr": _error_vs_tpr,
    "risk_coverage": _risk_coverage,
}


def figures(reports: Sequence[ReportLike]) -> dict[str, Any]:
    """Draw the four comparison plots as ``matplotlib.figure.Figure`` objects.

    Args:
        reports: One or more reports from :func:`rejectnet.evaluate`, with the same OOD
            sets.

    Returns:
        Plot name (see :data:`PLOT_NAMES`) -> figure. The error and risk plots need
        labelled in-distribution data and stay empty for reports without it.

    Raises:
        ValueError: If ``reports`` is empty.
        ImportError: If matplotlib is not installed.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead, evaluate
        >>> from rejectnet.report.plots import figures
        >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
        >>> id_test = [(torch.randn(30, 4), torch.randint(0, 3, (30,)))]
        >>> report = evaluate(net, id_test, {"far": [torch.randn(30, 4) + 5]}, n_runs=1)
        >>> figs = figures([report])
        >>> list(figs), type(figs["roc"]).__name__
        (['roc', 'score_histograms', 'error_vs_tpr', 'risk_coverage'], 'Figure')
    """
    if not reports:
        raise ValueError("reports is empty; pass at least one Report")
    return {name: figure(name, reports) for name in PLOT_NAMES}


def figure(name: str, reports: Sequence[ReportLike]) -> Any:
    """Draw one of the comparison plots.

    Args:
        name: One of :data:`PLOT_NAMES`.
        reports: One or more reports with the same OOD sets.

    Returns:
        The ``matplotlib.figure.Figure``, laid out.

    Raises:
        ValueError: If ``name`` is unknown or ``reports`` is empty.
        ImportError: If matplotlib is not installed.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead, evaluate
        >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
        >>> report = evaluate(net, [torch.randn(20, 4)], {"far": [torch.randn(20, 4) + 5]})
        >>> type(figure("roc", [report])).__name__
        'Figure'
    """
    if name not in _DRAW:
        raise ValueError(f"name must be one of {list(PLOT_NAMES)}, got {name!r}")
    if not reports:
        raise ValueError("reports is empty; pass at least one Report")
    fig = _DRAW[name](reports)
    fig.tight_layout()
    return fig


def png(fig: Any, dpi: int = 110) -> bytes:
    """A figure as PNG bytes (nothing written, no pyplot).

    Args:
        fig: A ``matplotlib.figure.Figure``.
        dpi: Resolution.

    Returns:
        The PNG file's bytes.

    Example:
        >>> from matplotlib.figure import Figure
        >>> png(Figure(figsize=(1, 1)))[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
        True
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def plot_reports(reports: Sequence[ReportLike], out_dir: str | Path) -> list[Path]:
    """Write the four comparison plots for ``reports`` into ``out_dir`` as PNG.

    Args:
        reports: One or more reports from :func:`rejectnet.evaluate`, with the same OOD
            sets.
        out_dir: Folder for the PNG files (created if missing).

    Returns:
        The paths written, ``<name>.png`` for each of :data:`PLOT_NAMES`.

    Raises:
        ValueError: If ``reports`` is empty.
        ImportError: If matplotlib is not installed.
        RuntimeError: If a plot cannot be drawn; every other plot is written first and
            the message names what failed and what was written.

    Example:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead, evaluate
        >>> from rejectnet.report.plots import plot_reports
        >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
        >>> id_test = [(torch.randn(30, 4), torch.randint(0, 3, (30,)))]
        >>> ood = {"far": [torch.randn(30, 4) + 5]}
        >>> reports = [evaluate(net, id_test, ood, s, n_runs=1) for s in ("sum", "max")]
        >>> len(plot_reports(reports, tempfile.mkdtemp()))
        4
    """
    if not reports:
        raise ValueError("reports is empty; pass at least one Report")
    _figure(1, 1)  # ImportError before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    failed: list[str] = []
    for name in PLOT_NAMES:  # one plot that fails never costs the others
        try:
            data = png(figure(name, reports))
        except Exception as err:  # reported below, after the others
            failed.append(f"{name}: {type(err).__name__}: {err}")
            continue
        path = out / f"{name}.png"
        path.write_bytes(data)
        written.append(path)
    if failed:
        done = ", ".join(p.name for p in written) or "none"
        raise RuntimeError(f"could not draw {'; '.join(failed)} (written: {done})")
    return written
