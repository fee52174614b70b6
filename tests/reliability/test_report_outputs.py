"""Reports that hostile names or undefined numbers cannot break (issue 22, items 6, 10, 13).

A method or OOD set name is the user's text: ``$...$`` (matplotlib mathtext), ``|`` and
newlines (Markdown tables), ``<script>`` (HTML) must come out as the text they are, and
every output must still be written. A report whose selective coverage is 0 writes strict
JSON (``null`` with the reason, never ``NaN``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rejectnet.report import DatasetScores, Report, evaluate, reports_to_html, reports_to_markdown
from tests.conftest import ReliabilityCounts

HOSTILE = [
    r"odd$\nope$name",  # the probe's name: mathtext with an unknown symbol
    "odd$\nope$name",  # a real newline between the dollars
    r"$\frac{",  # unbalanced mathtext
    "$x^2$",  # valid mathtext, still a name and not a formula
    "a|b",
    "line\nbreak",
    "tab\there\r",
    "back\\slash|\\|",
    "_hidden",  # matplotlib hides legend labels starting with "_"
    "<script>alert(1)</script>",
    "café ∞ ü",
]


def _report(names: list[str], *, method: str = "m") -> Report:
    rng = np.random.default_rng(0)
    labels = torch.arange(40) % 3
    id_scores = DatasetScores(torch.from_numpy(rng.normal(0, 1, 40)), labels, labels)
    ood = {n: DatasetScores(torch.from_numpy(rng.normal(2, 1, 30))) for n in names}
    return evaluate(lambda x: x, id_scores, ood, n_runs=2, name=method)


def _markdown_rows(text: str) -> list[list[str]]:
    """The cells of every table row, split on unescaped ``|`` as GitHub does."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells, cur, i = [], "", 1
        while i < len(line):
            if line[i] == "\\" and i + 1 < len(line):
                cur += line[i : i + 2]
                i += 2
                continue
            if line[i] == "|":
                cells.append(cur.strip())
                cur = ""
            else:
                cur += line[i]
            i += 1
        rows.append(cells)
    return rows


def test_hostile_names_keep_every_markdown_row_whole(reliability: ReliabilityCounts) -> None:
    report = _report(HOSTILE, method="meth|od\nname")
    text = reports_to_markdown([report])
    rows = _markdown_rows(text)
    width = len(rows[0])
    assert all(len(r) == width for r in rows), "a name broke a table row"
    assert len(rows) == 2 + len(HOSTILE) + 1  # header, rule, one row per set, mixed
    # every note is one list item: no line of the text is outside the table or a "- " item
    tail = text.split("\n\n")[-1].splitlines()
    assert len(tail) == len(report.notes) and all(line.startswith("- ") for line in tail)
    assert "a\\|b" in text and "line\\nbreak" in text and "back\\\\slash\\|\\\\\\|" in text
    reliability.case(len(HOSTILE) + 1)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_never_kill_the_plots(
    name: str, tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    pytest.importorskip("matplotlib")
    from rejectnet.report.plots import PLOT_NAMES, plot_reports

    reports = [_report([name, "plain"], method=name), _report([name, "plain"], method="other")]
    written = plot_reports(reports, tmp_path)
    assert [p.name for p in written] == [f"{n}.png" for n in PLOT_NAMES]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)
    reliability.case()


def test_names_are_drawn_as_written(reliability: ReliabilityCounts) -> None:
    pytest.importorskip("matplotlib")
    from rejectnet.report.plots import figure

    name = r"odd$\nope$name"
    fig = figure("roc", [_report([name], method="a$b$c")])
    fig.canvas.draw()  # mathtext would be parsed (and fail) here
    ax = fig.axes[0]
    assert ax.get_title() == r"ROC: odd\$\nope\$name"
    # rendered without mathtext: the text matplotlib draws is the name itself
    title = ax.title
    assert title._preprocess_math(title.get_text()) == ("ROC: " + name, False)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0].startswith(r"a\$b\$c (")
    reliability.case(2)


def test_a_failing_plot_costs_no_other_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reliability: ReliabilityCounts
) -> None:
    pytest.importorskip("matplotlib")
    from rejectnet.report import plots as plotting

    def broken(reports: object) -> object:
        raise ValueError("injected drawing fault")

    monkeypatch.setitem(plotting._DRAW, "roc", broken)
    report = _report(["far"])
    with pytest.raises(RuntimeError, match=r"roc: ValueError: injected drawing fault"):
        plotting.plot_reports([report], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "error_vs_tpr.png",
        "risk_coverage.png",
        "score_histograms.png",
    ]
    page = reports_to_html([report])
    assert "Not drawn: ValueError: injected drawing fault" in page
    assert page.count("data:image/png;base64,") == 3
    reliability.fault(2)


def test_html_escapes_every_hostile_name(reliability: ReliabilityCounts) -> None:
    page = reports_to_html([_report(HOSTILE, method="<b>m</b>")], plots=False)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>m</b>" not in page and "&lt;b&gt;m&lt;/b&gt;" in page
    reliability.case(len(HOSTILE))


def _zero_coverage_report() -> Report:
    # every in-distribution score above every OOD score: the 95%-TPR threshold accepts none
    labels = torch.arange(20) % 2
    id_scores = DatasetScores(torch.linspace(10, 11, 20), labels, labels)
    ood = {"far": DatasetScores(torch.linspace(0, 1, 20))}
    return evaluate(lambda x: x, id_scores, ood)


def test_to_json_is_strict_json_when_coverage_is_zero(reliability: ReliabilityCounts) -> None:
    report = _zero_coverage_report()
    assert report.selective["coverage"] == 0.0 and math.isnan(report.selective["risk"])
    text = report.to_json(indent=2, allow_nan=True)  # allow_nan cannot bring NaN back
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert data["selective"]["risk"] is None
    assert "coverage is 0" in data["undefined"]["selective.risk"]
    assert data["selective"]["coverage"] == 0.0
    assert any("selective risk undefined" in n for n in data["notes"])
    reliability.case()


def test_to_json_names_any_other_undefined_number(reliability: ReliabilityCounts) -> None:
    report = _report(["far"])
    report.ood["far"].mean["auroc"] = math.nan
    report.selective["threshold"] = math.inf
    data = json.loads(report.to_json())
    assert data["ood"]["far"]["auroc"] is None and data["selective"]["threshold"] is None
    assert set(data["undefined"]) == {"ood.far.auroc", "means.far.auroc", "selective.threshold"}
    assert data["means"]["far"]["auroc"] is None
    assert "not a finite number" in data["undefined"]["selective.threshold"]
    assert math.isnan(report.ood["far"].mean["auroc"])  # the report itself is unchanged
    reliability.fault(2)


def test_html_and_markdown_show_an_undefined_risk_as_a_dash(
    reliability: ReliabilityCounts,
) -> None:
    report = _zero_coverage_report()
    assert "nan" not in reports_to_html([report], plots=False).lower()
    assert "nan" not in reports_to_markdown([report]).lower()
    reliability.case()
