"""The comparison tables of evaluation reports, as cells (for Markdown and HTML).

One row per report (method) and OOD set, the near / far means (OpenOOD's summary), which
value of each column is the best, how much ID accuracy a method lost, and the escaping
that keeps a user's names from breaking a table.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from rejectnet.report.interfaces import ReportLike, ResultLike

__all__ = [
    "DIRECTION",
    "DROP_NOTE",
    "GROUPS",
    "HEADER",
    "ID_ACC_DROP_FLAG",
    "MEANS_HEADER",
    "METRIC_NAMES",
    "MIXED",
    "accuracy_drops",
    "best_cells",
    "check_groups",
    "flag_drops",
    "group_means",
    "markdown_cell",
    "markdown_table",
    "markdown_text",
    "means_rows",
    "notes_of",
    "one_line",
    "reports_to_markdown",
    "rows",
]

METRIC_NAMES = ("auroc", "aupr_in", "aupr_out", "fpr95", "detection_error")
"""The metrics of every OOD result, in table order (``fpr95`` is FPR at the TPR)."""

MIXED = "mixed"
"""The name of the equal mix of every OOD set (it belongs to no group)."""

GROUPS = ("near", "far")
"""The OOD groups of OpenOOD: ``near`` (semantic shift only, e.g. other object classes)
and ``far`` (also a covariate shift, e.g. digits against photos)."""

HIGHER_IS_BETTER = {"auroc": True, "aupr_in": True, "aupr_out": True, "fpr95": False}
HIGHER_IS_BETTER["detection_error"] = False

_LABELS = ("AUROC", "AUPR-in", "AUPR-out", "FPR@95%TPR", "det. err")
_ARROW = {True: "\u2191", False: "\u2193"}  # up: higher is better; down: lower is better

DIRECTION = {"ID acc": "higher"} | {
    label: "higher" if HIGHER_IS_BETTER[m] else "lower"
    for label, m in zip(_LABELS, METRIC_NAMES, strict=True)
}
"""Column -> whether a ``higher`` or ``lower`` value is better."""

_METRIC_HEADER = tuple(
    f"{label} {_ARROW[HIGHER_IS_BETTER[m]]}" for label, m in zip(_LABELS, METRIC_NAMES, strict=True)
)

HEADER = ("method", "score", "ID acc", "OOD set", *_METRIC_HEADER, "group")
"""The columns of :func:`rows`; each metric says its direction (an arrow up: higher is
better, down: lower is better)."""

MEANS_HEADER = ("method", "group", "sets", *_METRIC_HEADER)
"""The columns of :func:`means_rows`."""

ID_ACC_DROP_FLAG = 0.01
"""A method whose ID accuracy is more than this (one point) below stage one's is flagged."""


def check_groups(groups: Any, sets: Sequence[str], name: str = "groups") -> dict[str, str]:
    """Every OOD set's group, from a user's partial mapping (unlisted sets are ``far``).

    Args:
        groups: ``None`` or OOD set name -> ``"near"`` / ``"far"``.
        sets: The OOD set names evaluated.
        name: The argument's name in error messages.

    Returns:
        Set name -> group, for every set in ``sets``, in their order.

    Raises:
        TypeError: If ``groups`` is not a mapping of str to str.
        ValueError: If it names a set that is not evaluated, or a group other than
            ``near`` / ``far``.

    Example:
        >>> check_groups({"cifar100": "near"}, ["cifar100", "svhn"])
        {'cifar100': 'near', 'svhn': 'far'}
    """
    if groups is None:
        groups = {}
    if not isinstance(groups, Mapping):
        raise TypeError(
            f"{name} must be a mapping {{OOD set name: 'near' or 'far'}}, "
            f"got {type(groups).__name__}"
        )
    for key, value in groups.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"{name} must map set names (str) to 'near' or 'far' (str), got {key!r}: {value!r}"
            )
        if key not in sets:
            raise ValueError(f"{name} names {key!r}, which is not an OOD set; sets: {list(sets)}")
        if value not in GROUPS:
            raise ValueError(f"{name}[{key!r}] must be one of {list(GROUPS)}, got {value!r}")
    return {s: str(groups.get(s, "far")) for s in sets}


def group_means(
    ood: Mapping[str, Mapping[str, float]], groups: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """OpenOOD's summary: each metric's mean over the sets of each group.

    Args:
        ood: OOD set name -> metric name -> value (fractions); ``mixed`` and sets
            without a group are left out.
        groups: Set name -> ``"near"`` / ``"far"``.

    Returns:
        ``{"near": {"auroc": ..., ..., "sets": [names]}, "far": {...}}`` for each group
        that holds a set (a metric missing from a set is left out of that group).

    Example:
        >>> ood = {"a": {"auroc": 0.9}, "b": {"auroc": 0.7}, "c": {"auroc": 0.5}}
        >>> group_means(ood, {"a": "near", "b": "far", "c": "far"})
        {'near': {'auroc': 0.9, 'sets': ['a']}, 'far': {'auroc': 0.6, 'sets': ['b', 'c']}}
    """
    out: dict[str, dict[str, Any]] = {}
    for group in GROUPS:
        sets = [s for s in ood if s != MIXED and groups.get(s) == group]
        if not sets:
            continue
        means: dict[str, Any] = {}
        for m in METRIC_NAMES:
            values = [ood[s][m] for s in sets if m in ood[s]]
            if len(values) == len(sets):
                means[m] = math.fsum(values) / len(values)
        out[group] = {**means, "sets": sets}
    return out


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


def _groups(report: ReportLike) -> Mapping[str, str]:
    return getattr(report, "groups", None) or {}


def rows(reports: Sequence[ReportLike]) -> list[list[str]]:
    """One row of cells per report and OOD set, percentages.

    Args:
        reports: The reports, in order.

    Returns:
        Rows matching :data:`HEADER`; a metric is ``mean ± std`` over several runs and a
        bare number when there was one run (see :func:`notes_of`); the group of the
        mixed set is ``-``.
    """
    out: list[list[str]] = []
    for r in reports:
        acc = f"{100 * r.id_accuracy:.2f}" if r.id_accuracy is not None else "-"
        groups = _groups(r)
        for name, res in r.ood.items():
            cells = [_cell(res, m) for m in METRIC_NAMES]
            out.append([r.name, r.score, acc, name, *cells, groups.get(name, "-")])
    return out


def _best(values: Sequence[tuple[int, float | None]], higher: bool) -> set[int]:
    finite = [(i, v) for i, v in values if v is not None and math.isfinite(v)]
    if len({i for i, _ in finite}) < 2:
        return set()  # nothing to compare with
    nums = [v for _, v in finite if v is not None]
    top = max(nums) if higher else min(nums)
    return {i for i, v in finite if v == top}


def best_cells(reports: Sequence[ReportLike]) -> set[tuple[int, int]]:
    """The cells of :func:`rows` that hold the best value of their column and OOD set.

    Methods are compared on the same OOD set (each metric's direction from
    :data:`HIGHER_IS_BETTER`) and on ID accuracy (higher is better; every row of the
    best method); ties are all best, and a column with one method has no best.

    Args:
        reports: The reports, in the order given to :func:`rows`.

    Returns:
        ``(row, column)`` indices into :func:`rows` and :data:`HEADER`.
    """
    index = [(k, name) for k, r in enumerate(reports) for name in r.ood]
    best: set[tuple[int, int]] = set()
    for col, metric in enumerate(METRIC_NAMES, start=HEADER.index("OOD set") + 1):
        for name in dict.fromkeys(n for _, n in index):
            rows_of_set = [(i, k) for i, (k, n) in enumerate(index) if n == name]
            values = [(i, reports[k].ood[name].mean[metric]) for i, k in rows_of_set]
            best |= {(i, col) for i in _best(values, HIGHER_IS_BETTER[metric])}
    winners = _best([(k, r.id_accuracy) for k, r in enumerate(reports)], higher=True)
    col = HEADER.index("ID acc")
    best |= {(i, col) for i, (k, _) in enumerate(index) if k in winners}
    return best


def means_rows(reports: Sequence[ReportLike]) -> tuple[list[list[str]], set[tuple[int, int]]]:
    """The near / far means of every report, and which of their cells are best.

    Args:
        reports: The reports (their ``groups`` tag each OOD set).

    Returns:
        Rows matching :data:`MEANS_HEADER` (percentages; the ``sets`` cell counts the
        sets averaged), and the ``(row, column)`` cells holding the best value of their
        group and column.
    """
    out: list[list[str]] = []
    keyed: list[tuple[str, dict[str, Any]]] = []
    for r in reports:
        means = group_means({k: v.mean for k, v in r.ood.items()}, _groups(r))
        for group, m in means.items():
            cells = [f"{100 * m[k]:.2f}" if k in m else "-" for k in METRIC_NAMES]
            out.append([r.name, group, str(len(m["sets"])), *cells])
            keyed.append((group, m))
    best: set[tuple[int, int]] = set()
    for col, metric in enumerate(METRIC_NAMES, start=MEANS_HEADER.index("sets") + 1):
        for group in GROUPS:
            values = [(i, m.get(metric)) for i, (g, m) in enumerate(keyed) if g == group]
            best |= {(i, col) for i in _best(values, HIGHER_IS_BETTER[metric])}
    return out, best


DROP_NOTE = (
    f"ID accuracy more than {100 * ID_ACC_DROP_FLAG:g} point below stage one's; "
    "the drop, in points, in brackets"
)
"""What a flagged ID accuracy means, for the legend under a table."""


def flag_drops(rows: list[list[str]], drops: Mapping[str, float]) -> set[tuple[int, int]]:
    """Mark the ID accuracy of methods that lost more than :data:`ID_ACC_DROP_FLAG`.

    Args:
        rows: Rows of :func:`rows`; the flagged ID accuracy cells get the drop appended
            (``"90.00 (-2.50)"``, in points, with a minus sign).
        drops: Method name -> drop (fractions), from :func:`accuracy_drops`.

    Returns:
        The ``(row, column)`` cells flagged.
    """
    col = HEADER.index("ID acc")
    flagged = set()
    for i, row in enumerate(rows):
        drop = drops.get(row[0])
        if drop is not None and drop > ID_ACC_DROP_FLAG:
            row[col] += f" (\u2212{100 * drop:.2f})"
            flagged.add((i, col))
    return flagged


def accuracy_drops(
    reports: Sequence[ReportLike],
    given: Mapping[str, float] | None = None,
    *,
    baseline: str = "msp",
) -> dict[str, float]:
    """How much ID accuracy each method lost against stage one (fractions; > 0 is a loss).

    Args:
        reports: The reports.
        given: Method name -> drop computed elsewhere (e.g. ``"id_acc_drop"`` of a
            benchmark's ``results.json``); these win over computed ones.
        baseline: The report whose ID accuracy is stage one's (the benchmark's ``msp``
            scores the stage-one model); without it only ``given`` drops are known.

    Returns:
        Method name -> drop, for every method with a known drop.

    Example:
        >>> from types import SimpleNamespace as R
        >>> reports = [R(name="msp", id_accuracy=0.9), R(name="ft", id_accuracy=0.85)]
        >>> {k: round(v, 4) for k, v in accuracy_drops(reports).items()}
        {'msp': 0.0, 'ft': 0.05}
    """
    ref = next((r.id_accuracy for r in reports if r.name == baseline), None)
    drops: dict[str, float] = {}
    if ref is not None:
        drops = {r.name: ref - r.id_accuracy for r in reports if r.id_accuracy is not None}
    drops.update({k: float(v) for k, v in (given or {}).items() if v is not None})
    return drops


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


def reports_to_markdown(
    reports: Sequence[ReportLike], *, id_acc_drops: Mapping[str, float] | None = None
) -> str:
    """One Markdown table comparing several reports (methods), in percentages.

    Args:
        reports: Reports from :func:`rejectnet.evaluate`, one row per report and OOD set.
        id_acc_drops: Method name -> ID accuracy lost against stage one (fractions, e.g.
            a benchmark's ``id_acc_drop``); without it the drop is measured against a
            report named ``msp`` if any. A drop above one point is shown in the cell.

    Returns:
        The table, as :meth:`rejectnet.report.results.Report.to_markdown` but with
        every report's rows (the best value of each column and OOD set in bold when
        there are several methods), the near / far means when a set is tagged
        ``near``, then the notes of all reports (each distinct note once).
    """
    cells = rows(reports)
    flagged = flag_drops(cells, accuracy_drops(reports, id_acc_drops))
    lines = markdown_table(HEADER, cells, best_cells(reports))
    lines.append("")
    lines.append(_DIRECTIONS + (" **Bold**: the best of the methods." if len(reports) > 1 else ""))
    if flagged:
        lines.append(f"Flagged: {DROP_NOTE}.")
    if any(g == "near" for r in reports for g in r.groups.values()):
        means, best = means_rows(reports)
        lines += ["", "Near / far means (OpenOOD's summary, mean over the sets of a group):", ""]
        lines += markdown_table(MEANS_HEADER, means, best)
    notes = notes_of(reports)
    if notes:
        lines.append("")
        lines += [f"- {markdown_cell(n)}" for n in notes]
    return "\n".join(lines)


_DIRECTIONS = "\u2191 higher is better, \u2193 lower is better."


def markdown_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    best: Collection[tuple[int, int]] = (),
    *,
    numeric_from: int | None = None,
) -> list[str]:
    r"""A Markdown table whose every cell is escaped (:func:`markdown_cell`).

    A name with ``|``, a newline or a backslash stays in its cell, so the table keeps
    its rows and columns whatever the user called a method or a set.

    Args:
        header: The column titles.
        rows: The cells, one sequence per row.
        best: ``(row, column)`` cells to set in bold.
        numeric_from: Right-align the columns from this index on (``None``: none).

    Returns:
        The lines of the table: the header, the rule, one line per row.

    Example:
        >>> print("\n".join(markdown_table(["set", "AUROC"], [["a|b\nc", "90.0"]], {(0, 1)})))
        | set | AUROC |
        |---|---|
        | a\|b\nc | **90.0** |
    """
    rule = [
        "---:" if numeric_from is not None and j >= numeric_from else "---"
        for j in range(len(header))
    ]
    lines = [_markdown_row(header), "|" + "".join(f"{r}|" for r in rule)]
    for i, row in enumerate(rows):
        lines.append(_markdown_row(row, {j for (b, j) in best if b == i}))
    return lines


def _markdown_row(cells: Sequence[str], bold: Collection[int] = ()) -> str:
    out = [
        f"**{markdown_cell(c)}**" if j in bold else markdown_cell(c) for j, c in enumerate(cells)
    ]
    return "| " + " | ".join(out) + " |"


def markdown_text(text: str) -> str:
    r"""A name as one line of Markdown prose (a heading, a sentence), not a table cell.

    Whitespace runs (newlines included) become one space; ``\``, backticks, brackets,
    ``|`` and ``<`` / ``>`` are escaped, so the name reads as written.

    Args:
        text: A method or set name, a file name.

    Returns:
        The escaped text.

    Example:
        >>> print(markdown_text("odd$\nope|$name"))
        odd$ ope\|$name
    """
    out = " ".join(str(text).split())
    for ch in "\\`[]|<>":
        out = out.replace(ch, "\\" + ch)
    return out
