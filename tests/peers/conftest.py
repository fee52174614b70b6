"""Shared models and data of the peers tests: a trained MLP on three blobs, a tiny BERT."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.tensor([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    return centres[y] + 0.5 * torch.randn(n, 4, generator=g), y


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3)
    )
    x, y = _blobs(600, 0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


def _loader(x: torch.Tensor, y: torch.Tensor | None = None, bs: int = 64) -> list[object]:
    if y is None:
        return [x[i : i + bs] for i in range(0, len(x), bs)]
    return [(x[i : i + bs], y[i : i + bs]) for i in range(0, len(x), bs)]


def _penultimate(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model[:-1](x)


def _tiny_bert() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=32,
        num_labels=3,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config).eval()


def _token_batches(
    n: int, length: int, low: int, seed: int, *, labels: bool = True, size: int = 16
) -> list[dict[str, torch.Tensor]]:
    """HF-style dict batches: input_ids, attention_mask (padded tails), token_type_ids."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(low, low + 40, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[::3, length // 2 :] = 0  # a third of the rows padded
    ids = ids.masked_fill(mask == 0, 0)
    batches = []
    for i in range(0, n, size):
        b = {
            "input_ids": ids[i : i + size],
            "attention_mask": mask[i : i + size],
            "token_type_ids": torch.zeros_like(ids[i : i + size]),
        }
        if labels:
            b["labels"] = torch.arange(i, min(i + size, n)) % 3
        batches.append(b)
    return batches


def _pooled(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    with torch.no_grad():
        keep = ("input_ids", "attention_mask", "token_type_ids")
        return torch.cat([model.bert(**{k: b[k] for k in keep}).pooler_output for b in batches])
