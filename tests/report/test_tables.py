"""The comparison tables (rejectnet.report.tables): cells, groups, escaping, Markdown."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rejectnet.evaluation import DatasetScores, evaluate
from rejectnet.report import reports_to_markdown
from rejectnet.report.tables import markdown_cell, markdown_table, markdown_text
from tests.report.conftest import _id_scores, _scored
from tests.report.markdown_rows import HOSTILE, markdown_rows


def test_groups_tag_each_set_and_give_openood_near_far_means() -> None:
    ood = {"cifar100": _scored(0.5), "tin": _scored(1.0, seed=1), "svhn": _scored(3.0, seed=2)}
    rep = evaluate(lambda x: x, _id_scores(), ood, groups={"cifar100": "near", "tin": "near"})
    assert rep.groups == {"cifar100": "near", "tin": "near", "svhn": "far"}
    near = rep.means["near"]
    assert near["sets"] == ["cifar100", "tin"] and rep.means["far"]["sets"] == ["svhn"]
    for m in ("auroc", "aupr_in", "aupr_out", "fpr95", "detection_error"):
        expected = (rep.ood["cifar100"].mean[m] + rep.ood["tin"].mean[m]) / 2
        assert near[m] == pytest.approx(expected, abs=1e-15)
        assert rep.means["far"][m] == rep.ood["svhn"].mean[m]
    d = json.loads(rep.to_json())
    assert d["means"] == json.loads(json.dumps(rep.means))
    assert [d["ood"][s]["group"] for s in d["ood"]] == ["near", "near", "far", None]
    md = rep.to_markdown()
    assert "Near / far means" in md
    means_rows = [line for line in md.splitlines() if line.startswith("| RejectHead") is False]
    assert any(line.startswith("| scorer | near | 2 |") for line in means_rows)
    # without groups every set is far, and the table has no near / far means section
    plain = evaluate(lambda x: x, _id_scores(), ood)
    assert set(plain.groups.values()) == {"far"} and list(plain.means) == ["far"]
    assert "Near / far means" not in plain.to_markdown()


@pytest.mark.parametrize(
    ("groups", "error", "match"),
    [
        ({"nope": "near"}, ValueError, "groups names 'nope', which is not an OOD set"),
        ({"a": "middle"}, ValueError, r"groups\['a'\] must be one of \['near', 'far'\]"),
        ({"a": 1}, TypeError, "groups must map set names"),
        (["a"], TypeError, "groups must be a mapping"),
        ({"mixed": "near"}, ValueError, "not an OOD set"),
    ],
)
def test_bad_groups_are_refused(groups: object, error: type[Exception], match: str) -> None:
    ood = {"a": _scored(1.0), "b": _scored(2.0)}
    with pytest.raises(error, match=match):
        evaluate(lambda x: x, _id_scores(), ood, groups=groups)  # type: ignore[arg-type]


def test_markdown_marks_the_best_value_and_says_the_direction() -> None:
    ood = {"a": _scored(2.0), "b": _scored(0.2, seed=3)}
    good = evaluate(lambda x: x, _id_scores(), ood, name="good")
    worse = {"a": _scored(0.5), "b": _scored(0.1, seed=3)}  # closer to the ID scores
    bad = evaluate(lambda x: x, _id_scores(5), worse, name="bad")
    from rejectnet.evaluation import reports_to_markdown

    md = reports_to_markdown([good, bad])
    header = md.splitlines()[0]
    assert "AUROC ↑" in header and "FPR@95%TPR ↓" in header and "det. err ↓" in header
    assert "↑ higher is better, ↓ lower is better. **Bold**: the best of the methods." in md
    row = next(line for line in md.splitlines() if line.startswith("| good |") and "| a |" in line)
    assert row.count("**") == 2 * 6  # ID acc and the five metrics
    row = next(line for line in md.splitlines() if line.startswith("| bad |") and "| a |" in line)
    assert "**" not in row


def test_markdown_table_escapes_every_cell_and_keeps_its_width() -> None:
    header = ["name", *HOSTILE]
    rows = [[name, *(f"{i}.0" for i in range(len(HOSTILE)))] for name in HOSTILE]
    lines = markdown_table(header, rows, {(0, 1)}, numeric_from=1)
    assert len(lines) == 2 + len(HOSTILE)  # no name added a line
    cells = markdown_rows("\n".join(lines))
    assert all(len(r) == len(header) for r in cells)
    assert lines[1] == "|---|" + "---:|" * len(HOSTILE)
    assert cells[2][0] == "a\\|b" and cells[3][0] == "line\\nbreak"
    assert cells[4][0] == "back\\\\slash\\|\\\\\\|" and cells[2][1] == "**0.0**"
    assert [markdown_cell(h) for h in header] == cells[0]


def test_markdown_text_is_one_line_with_the_markup_escaped() -> None:
    text = markdown_text("odd$\nope|$name [x](y) <b>`c`\\")
    assert "\n" not in text
    assert text == "odd$ ope\\|$name \\[x\\](y) \\<b\\>\\`c\\`\\\\"


def test_reports_to_markdown_escapes_method_and_set_names() -> None:
    rng = np.random.default_rng(0)
    labels = torch.arange(40) % 3
    id_scores = DatasetScores(torch.from_numpy(rng.normal(0, 1, 40)), labels, labels)
    ood = {n: DatasetScores(torch.from_numpy(rng.normal(2, 1, 30))) for n in HOSTILE}
    reports = [
        evaluate(lambda x: x, id_scores, ood, n_runs=2, name=method)
        for method in ("plain", "meth|od\nname")
    ]
    text = reports_to_markdown(reports)
    rows = markdown_rows(text.split("\n\n")[0])
    assert len(rows) == 2 + 2 * (len(HOSTILE) + 1)  # header, rule, sets and mixed per method
    assert all(len(r) == len(rows[0]) for r in rows)
    assert rows[-1][0] == "meth\\|od\\nname"
