"""The Markdown tables of the ablation scripts in benchmarks/ escape set and variant names."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.report.markdown_rows import HOSTILE, markdown_rows

SCRIPTS = Path(__file__).resolve().parents[2] / "benchmarks"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_script_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ablate_k_scores_table_keeps_every_row_whole() -> None:
    mod = _script("ablate_k_scores")
    entry: dict[str, Any] = {
        "id_accuracy": 0.9,
        "ood": {name: {"auroc": 0.9, "fpr95": 0.1} for name in HOSTILE},
    }
    results = {
        (f"rejectnet-paper-k{k}" if k != 5 else "rejectnet-paper") + suffix: entry
        for k in (2, 5)
        for suffix in ("", *(f"-{s}" for s in mod.SCORES if s != "sum"))
    }
    text = mod.table(results, (2, 5), list(HOSTILE))
    rows = markdown_rows(text)
    assert len(rows) == len(HOSTILE) * 4  # per set: header, rule, k = 2 and k = 5
    assert all(len(r) == 2 + len(mod.SCORES) for r in rows)
    titles = [line for line in text.splitlines() if line.endswith("over seeds (%)")]
    assert len(titles) == len(HOSTILE) and titles[1].startswith("line break: ")
    assert titles[0].startswith("a\\|b: ")


def test_ablate_outliers_table_keeps_every_row_whole(tmp_path: Path) -> None:
    mod = _script("ablate_outliers")
    path = tmp_path / "runs.jsonl"
    lines = [
        {"name": name, "id_acc": 0.9, "cost": 1.5, **{s: [0.9, 0.1] for s in HOSTILE}}
        for name in ("plain", "var|iant\nname")
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    text = mod.markdown_table(str(path))
    assert len(text.splitlines()) == 4  # header, rule, two variants
    rows = markdown_rows(text)
    assert all(len(r) == 3 + len(HOSTILE) for r in rows)
    assert rows[3][0] == "var\\|iant\\nname" and rows[3][-1] == "1.50x"
    assert text.splitlines()[1] == "|---|" + "---:|" * (2 + len(HOSTILE))
