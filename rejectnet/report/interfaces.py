"""What tables, plots and HTML pages read from an evaluation report (a narrow interface).

:class:`rejectnet.report.results.Report` satisfies these protocols;
:mod:`rejectnet.report.tables`, :mod:`rejectnet.report.plots` and
:mod:`rejectnet.report.html_page` read reports through them and never import
:mod:`rejectnet.report.results`, so that it can import them without an import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["ReportLike", "ResultLike"]


class ResultLike(Protocol):
    """The metrics of one OOD set (see :class:`rejectnet.report.results.OODResult`)."""

    @property
    def mean(self) -> Mapping[str, float]:
        """Metric name -> mean over the runs (fractions)."""

    @property
    def std(self) -> Mapping[str, float]:
        """Metric name -> standard deviation over the runs."""

    @property
    def runs(self) -> int:
        """How many distinct runs the mean is over (1 when nothing was subsampled)."""

    @property
    def n_in(self) -> int:
        """In-distribution samples evaluated."""

    @property
    def n_ood(self) -> int:
        """OOD samples evaluated."""


class ReportLike(Protocol):
    """One method's evaluation (see :class:`rejectnet.report.results.Report`)."""

    @property
    def name(self) -> str:
        """The method's name."""

    @property
    def score(self) -> str:
        """The score that was evaluated."""

    @property
    def id_accuracy(self) -> float | None:
        """Accuracy on the in-distribution set, if it had labels."""

    @property
    def ood(self) -> Mapping[str, ResultLike]:
        """OOD set name -> metrics."""

    @property
    def groups(self) -> Mapping[str, str]:
        """OOD set name -> ``"near"`` or ``"far"`` (the mixed set has none)."""

    @property
    def selective(self) -> Mapping[str, float]:
        """Selective-classification numbers at the TPR threshold."""

    @property
    def tpr(self) -> float:
        """The TPR of the FPR metric and of the selective threshold."""

    @property
    def notes(self) -> Sequence[str]:
        """What was done (subsampling, mixed set), in words."""

    @property
    def scores_in(self) -> npt.NDArray[np.float64]:
        """In-distribution scores."""

    @property
    def scores_out(self) -> Mapping[str, npt.NDArray[np.float64]]:
        """OOD set name -> scores."""

    @property
    def correct(self) -> npt.NDArray[np.bool_] | None:
        """Per in-distribution sample, whether the class prediction was right."""
