"""PNG plots of evaluation reports (needs matplotlib: ``pip install "rejectnet[plot]"``).

Several reports (methods) are drawn on the same axes so they can be compared:

* ``roc.png``: ROC curves, one panel per OOD set (OOD = positive);
* ``score_histograms.png``: OOD-score histograms, in- vs out-of-distribution, one panel
  per method (the paper's Figure 4);
* ``error_vs_tpr.png``: in-distribution error on accepted samples against the detection
  TPR on the mixed set (the paper's Figures 2 and 3, top);
* ``risk_coverage.png``: selective risk against coverage on in-distribution data
  (the paper's Figure 3, bottom).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import roc_curve

from rejectnet.metrics import risk_coverage
from rejectnet.scores import threshold_at_tpr

if TYPE_CHECKING:
    from rejectnet.evaluation import Report

__all__ = ["plot_reports"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError('plotting needs matplotlib: pip install "rejectnet[plot]"') from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _target(report: Report) -> str:
    return "mixed" if "mixed" in report.scores_out else next(iter(report.scores_out))


def plot_reports(reports: Sequence[Report], out_dir: str | Path) -> list[Path]:
    """Write the four comparison plots for ``reports`` into ``out_dir``.

    Args:
        reports: One or more reports from :func:`rejectnet.evaluate`, with the same OOD
            sets.
        out_dir: Folder for the PNG files (created if missing).

    Returns:
        The paths written.

    Raises:
        ValueError: If ``reports`` is empty.
        ImportError: If matplotlib is not installed.

    Example:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead, evaluate
        >>> from rejectnet.plotting import plot_reports
        >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
        >>> id_test = [(torch.randn(30, 4), torch.randint(0, 3, (30,)))]
        >>> ood = {"far": [torch.randn(30, 4) + 5]}
        >>> reports = [evaluate(net, id_test, ood, s, n_runs=1) for s in ("sum", "max")]
        >>> len(plot_reports(reports, tempfile.mkdtemp()))
        4
    """
    if not reports:
        raise ValueError("reports is empty; pass at least one Report")
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sets = list(reports[0].scores_out)

    fig, axes = plt.subplots(1, len(sets), figsize=(4 * len(sets), 4), squeeze=False)
    for ax, name in zip(axes[0], sets, strict=True):
        for r in reports:
            s_in, s_out = r.scores_in, r.scores_out[name]
            labels = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
            fpr, tpr, _ = roc_curve(labels, np.r_[s_in, s_out])
            ax.plot(fpr, tpr, label=f"{r.name} ({100 * r.ood[name].mean['auroc']:.2f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--")
        ax.set(title=f"ROC: {name}", xlabel="FPR (in-distribution flagged)", ylabel="TPR")
        ax.legend(loc="lower right", fontsize=8, title="AUROC %", title_fontsize=8)
    written.append(_save(fig, out / "roc.png", plt))

    fig, axes = plt.subplots(1, len(reports), figsize=(4 * len(reports), 3.5), squeeze=False)
    for ax, r in zip(axes[0], reports, strict=True):
        target = _target(r)
        both = np.r_[r.scores_in, r.scores_out[target]]
        bins = np.linspace(both.min(), both.max(), 40) if np.ptp(both) > 0 else 10
        ax.hist(r.scores_in, bins=bins, alpha=0.6, density=True, label="in-distribution")
        ax.hist(r.scores_out[target], bins=bins, alpha=0.6, density=True, label=f"OOD ({target})")
        ax.set(title=f"{r.name}: {r.score}", xlabel="OOD score", ylabel="density")
        ax.legend(fontsize=8)
    written.append(_save(fig, out / "score_histograms.png", plt))

    fig, ax = plt.subplots(figsize=(5, 4))
    for r in reports:
        if r.correct is None:
            continue
        s_out = r.scores_out[_target(r)]
        tprs = np.linspace(0.5, 1.0, 51)
        errs = []
        for t in tprs:
            thr = threshold_at_tpr(r.scores_in, s_out, tpr=float(t)).value
            accepted = r.scores_in <= thr
            errs.append(float((~r.correct[accepted]).mean()) if accepted.any() else np.nan)
        ax.plot(100 * tprs, 100 * np.asarray(errs), label=r.name)
    ax.set(
        title="In-distribution error vs detection TPR",
        xlabel="TPR on OOD (%)",
        ylabel="error on accepted (%)",
    )
    ax.legend(fontsize=8)
    written.append(_save(fig, out / "error_vs_tpr.png", plt))

    fig, ax = plt.subplots(figsize=(5, 4))
    for r in reports:
        if r.correct is None:
            continue
        rc = risk_coverage(r.scores_in, r.correct)
        ax.step(100 * rc.coverage, 100 * rc.risk, where="post", label=r.name)
    ax.set(title="Risk-coverage (in-distribution)", xlabel="coverage (%)", ylabel="risk (%)")
    ax.legend(fontsize=8)
    written.append(_save(fig, out / "risk_coverage.png", plt))
    return written


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
