"""Shared data and helpers of the report tests: tiny models, scored sets, reports."""

from __future__ import annotations

import ast
from pathlib import Path

import torch
from torch import nn

from rejectnet import RejectHead
from rejectnet.evaluation import DatasetScores, evaluate


class Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fc(x)


def _data(
    seed: int = 0,
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], dict[str, list[torch.Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    x_in = torch.randn(60, 4, generator=g)
    y_in = torch.randint(0, 3, (60,), generator=g)
    id_loader = [(x_in[:30], y_in[:30]), (x_in[30:], y_in[30:])]
    ood = {
        "far": [torch.randn(40, 4, generator=g) * 3 + 4],
        "near": [torch.randn(25, 4, generator=g) + 0.5, torch.randn(25, 4, generator=g) + 0.5],
    }
    return id_loader, ood


def _scored(shift: float, n: int = 30, seed: int = 0) -> DatasetScores:
    g = torch.Generator().manual_seed(seed)
    return DatasetScores(torch.randn(n, generator=g, dtype=torch.float64) + shift)


def _id_scores(acc_wrong: int = 0) -> DatasetScores:
    labels = torch.arange(40) % 4
    predictions = labels.clone()
    predictions[:acc_wrong] = (predictions[:acc_wrong] + 1) % 4
    g = torch.Generator().manual_seed(1)
    return DatasetScores(torch.randn(40, generator=g, dtype=torch.float64), labels, predictions)


def _reports(n_methods: int, n_sets: int = 2) -> list[object]:
    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    id_test = [(torch.randn(40, 4), torch.randint(0, 3, (40,)))]
    ood = {f"set{i}": [torch.randn(30, 4) + i + 1] for i in range(n_sets)}
    scores = ["sum", "max", "entropy", "weighted", "entropy_diff"]
    return [
        evaluate(net, id_test, ood, scores[i % 5], n_runs=1, name=f"m{i}") for i in range(n_methods)
    ]


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):  # every import, also inside functions and TYPE_CHECKING
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m == "rejectnet" or m.startswith("rejectnet.")}
