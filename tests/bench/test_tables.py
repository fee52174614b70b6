"""The results.json tables: the terminal summary and the Markdown table over seeds."""

from __future__ import annotations

from typing import Any

from rejectnet.bench import seeds_markdown, summary_table


def _entry(auroc: float, fpr: float, std: bool) -> dict[str, Any]:
    e: dict[str, Any] = {
        "id_accuracy": 0.9,
        "score": "sum_reject",
        "ood": {
            "far": {"auroc": auroc, "fpr95": fpr},
            "near": {"auroc": auroc - 0.1, "fpr95": fpr + 0.1},
            "mixed": {"auroc": 0.5, "fpr95": 0.5},
        },
    }
    if std:
        e["id_accuracy_std"] = 0.01
        e["ood_std"] = {s: {"auroc": 0.002, "fpr95": 0.03} for s in e["ood"]}
    return e


def test_seeds_markdown_cells_and_mean_over_the_unmixed_sets() -> None:
    results = {"rejectnet": _entry(0.99, 0.02, std=True), "msp": _entry(0.8, 0.4, std=False)}
    lines = seeds_markdown({**results, "_meta": {"seeds": 3}}).splitlines()
    assert lines[0] == ("| method | score | ID acc | far | near | mixed | mean AUROC over sets |")
    assert len(lines) == 4  # header, rule, two methods (_meta skipped)
    assert lines[2] == (
        "| rejectnet | `sum_reject` | 90.00 ± 1.00 | 99.00 ± 0.20 / 2.00 ± 3.00 | "
        "89.00 ± 0.20 / 12.00 ± 3.00 | 50.00 ± 0.20 / 50.00 ± 3.00 | 94.00 |"
    )  # the mean is over far and near: mixed is their mix, not another set
    assert "±" not in lines[3] and lines[3].endswith("| 75.00 |")


def test_summary_table_has_one_line_per_method() -> None:
    text = summary_table({"msp": _entry(0.8, 0.4, std=False), "_meta": {}})
    assert text.splitlines()[2].split() == [
        "msp",
        "90.00",
        "80.00",
        "40.00",
        "70.00",
        "50.00",
        "50.00",
        "50.00",
    ]


def test_seeds_markdown_escapes_method_set_and_score_names() -> None:
    from tests.report.markdown_rows import HOSTILE, markdown_rows

    entry = _entry(0.9, 0.1, std=True)
    entry["ood"] = {name: {"auroc": 0.9, "fpr95": 0.1} for name in HOSTILE}
    entry["ood_std"] = {name: {"auroc": 0.01, "fpr95": 0.02} for name in HOSTILE}
    entry["score"] = "odd|score"
    text = seeds_markdown({"meth|od\nname": entry, "msp": _entry(0.8, 0.4, std=False) | {
        "ood": {name: {"auroc": 0.8, "fpr95": 0.4} for name in HOSTILE}}})  # fmt: skip
    lines = text.splitlines()
    assert len(lines) == 4  # header, rule, two methods: no name added a line
    rows = markdown_rows(text)
    assert all(len(r) == 4 + len(HOSTILE) for r in rows)
    assert rows[0][3:5] == ["a\\|b", "line\\nbreak"]
    assert rows[2][:2] == ["meth\\|od\\nname", "`odd\\|score`"]
    assert lines[1] == "|---|---|" + "---:|" * (2 + len(HOSTILE))


def test_summary_table_keeps_one_line_per_method_whatever_the_names() -> None:
    entry = _entry(0.8, 0.4, std=False)
    entry["ood"] = {"odd\nset": {"auroc": 0.8, "fpr95": 0.4}}
    lines = summary_table({"meth\nod": entry, "msp": entry}).splitlines()
    assert len(lines) == 4  # header, rule, two methods
    assert lines[0].split()[3] == "odd\\nset" and lines[2].split()[0] == "meth\\nod"
