"""The comparison tables (rejectnet.report.tables): cells, escaping, Markdown."""

from __future__ import annotations

import numpy as np
import torch

from rejectnet.report import DatasetScores, evaluate, reports_to_markdown
from rejectnet.report.tables import markdown_cell, markdown_table, markdown_text
from tests.report.markdown_rows import HOSTILE, markdown_rows


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
