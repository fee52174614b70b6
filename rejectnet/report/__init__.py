"""Evaluating OOD detectors and reporting the results: the report wing of rejectnet.

* :mod:`~rejectnet.report.evaluation`: :func:`evaluate`, the entry point;
* :mod:`~rejectnet.report.sources`: loaders, logits or scores of any model or scorer,
  turned into scores (the format step);
* :mod:`~rejectnet.report.protocol`: the paper's protocol on those scores (the compute
  step);
* :mod:`~rejectnet.report.results`: :class:`OODResult` and :class:`Report`;
* :mod:`~rejectnet.report.tables`: the comparison tables (cells, Markdown, near / far
  means, escaping);
* :mod:`~rejectnet.report.plots`: the PNG plots (matplotlib, no pyplot);
* :mod:`~rejectnet.report.html_page`: one self-contained HTML page;
* :mod:`~rejectnet.report.interfaces`: what tables, plots and pages read from a report.

The modules of a subpackage have plain names; what is public is what ``__all__`` lists.
The former paths ``rejectnet.evaluation``, ``rejectnet.plotting`` and
``rejectnet.report_html`` still import the same names.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from rejectnet import RejectHead
    >>> from rejectnet.report import evaluate
    >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    >>> report = evaluate(net, [torch.randn(20, 4)], {"far": [torch.randn(20, 4) + 5]})
    >>> report.groups
    {'far': 'far'}
"""

from rejectnet.report.evaluation import evaluate
from rejectnet.report.html_page import reports_to_html
from rejectnet.report.plots import PLOT_NAMES, figure, figures, plot_reports
from rejectnet.report.results import GROUPS, METRIC_NAMES, MIXED, OODResult, Report
from rejectnet.report.sources import (
    DatasetLogits,
    DatasetScores,
    Scorer,
    compute_logits,
    compute_scores,
)
from rejectnet.report.tables import reports_to_markdown

__all__ = [
    "GROUPS",
    "METRIC_NAMES",
    "MIXED",
    "PLOT_NAMES",
    "DatasetLogits",
    "DatasetScores",
    "OODResult",
    "Report",
    "Scorer",
    "compute_logits",
    "compute_scores",
    "evaluate",
    "figure",
    "figures",
    "plot_reports",
    "reports_to_html",
    "reports_to_markdown",
]
