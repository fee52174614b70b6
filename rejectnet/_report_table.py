"""The comparison table of evaluation reports, as cells (for Markdown and HTML)."""

from __future__ import annotations

from collections.abc import Sequence

from rejectnet._reportlike import ReportLike, ResultLike

__all__ = ["HEADER", "METRIC_NAMES", "markdown_cell", "notes_of", "one_line", "rows"]

METRIC_NAMES = ("auroc", "aupr_in", "aupr_out", "fpr95", "detection_error")
"""The metrics of every OOD result, in table order (``fpr95`` is FPR at the TPR)."""

HEADER = (
    "method",
    "score",
    "ID acc",
    "OOD set",
    "AUROC",
    "AUPR-in",
    "AUPR-out",
    "FPR@95%TPR",
    "det. err",
)


def _visible(code: int) -> str:
    named = {9: "t", 10: "n", 13: "r"}
    return "\\" + named[code] if code in named else f"\\x{code:02x}"


_CONTROL = {code: _visible(code) for code in (*range(32), 127)}
"""Control character -> its visible escape (a newline -> backslash, n)."""


def one_line(text: str) -> str:
    r"""``text`` on one line: every control character as its visible escape (``\n``, ``\t``).

    Args:
        text: A method, score or OOD set name, or a note.

    Returns:
        The text without control characters.

    Example:
        >>> print(one_line("odd\nname"))
        odd\nname
    """
    return text.translate(_CONTROL)


def markdown_cell(text: str) -> str:
    r"""``text`` as Markdown that cannot break a table row or a list item.

    A backslash becomes ``\\``, ``|`` becomes ``\|`` (GitHub and MkDocs tables) and
    every control character (a newline, a tab, ...) shows as its escape (``\n``, ``\t``),
    so the rendered text reads as the name was written.

    Args:
        text: A method, score or OOD set name, or a note.

    Returns:
        The escaped text.

    Example:
        >>> print(markdown_cell("a|b\nc"))
        a\|b\nc
    """
    return one_line(text.replace("\\", "\\\\")).replace("|", "\\|")


def _cell(res: ResultLike, metric: str) -> str:
    mean = 100.0 * res.mean[metric]
    if res.runs <= 1:  # one run: a std of 0.00 would claim a spread that was never measured
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {100.0 * res.std[metric]:.2f}"


def rows(reports: Sequence[ReportLike]) -> list[list[str]]:
    """One row of cells per report and OOD set, percentages.

    Args:
        reports: The reports, in order.

    Returns:
        Rows matching :data:`HEADER`; a metric is ``mean ± std`` over several runs and a
        bare number when there was one run (see :func:`notes_of`).
    """
    out: list[list[str]] = []
    for r in reports:
        acc = f"{100 * r.id_accuracy:.2f}" if r.id_accuracy is not None else "-"
        for name, res in r.ood.items():
            out.append([r.name, r.score, acc, name, *(_cell(res, m) for m in METRIC_NAMES)])
    return out


def notes_of(reports: Sequence[ReportLike]) -> list[str]:
    """What was done, in words, once per distinct note across the reports.

    Args:
        reports: The reports.

    Returns:
        The notes, in order of first appearance.
    """
    seen: dict[str, None] = {}
    for r in reports:
        for note in r.notes:
            seen.setdefault(note, None)
    return list(seen)
