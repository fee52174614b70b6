"""Shared test helpers of tests/text: dict-batch support, a tiny CLINC150 folder and recipe."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch


def dict_batches_supported() -> bool:
    """``True`` when ``RejectHead`` calls a wrapped model with named tensors."""
    from rejectnet import RejectHead
    from rejectnet.text import small_bert

    net = RejectHead.wrap(small_bert(2, 20, hidden_size=16, num_layers=1, num_heads=2), k=1)
    ids = torch.randint(5, 20, (2, 4))
    try:
        net({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    except TypeError:
        return False
    return True


NEEDS_DICTS = "needs RejectHead and the fine-tuners to take dict batches (issue 21: core, train)"


INTENTS = {
    "play_music": ["play", "song", "music", "jazz", "rock"],
    "weather": ["weather", "rain", "sunny", "forecast", "cold"],
    "alarm": ["alarm", "wake", "morning", "set", "clock"],
}
FILL = ["please", "can", "you", "the", "me", "a", "for", "now", "today", "my"]
OOS = ["giraffe", "tall", "history", "paint", "mountain", "river", "poem", "physics"]


def tiny_recipe() -> Any:
    """A CLINC150 recipe small enough for a test (seconds on one core)."""
    from rejectnet.bench.clinc150 import TextRecipe

    return TextRecipe(
        vocab_size=100,
        max_length=16,
        hidden_size=32,
        num_layers=1,
        stage_one_epochs=2,
        finetune_epochs=1,
        finetune_subset=None,
        n_runs=2,
    )


def write_tiny_clinc(folder: Path) -> Path:
    """A made-up CLINC150 folder: 3 intents, out-of-scope splits and a pool of sentences."""
    rnd = random.Random(0)

    def utt(words: list[str]) -> str:
        return " ".join(rnd.sample(words, 3) + rnd.sample(FILL, 3))

    def split(n: int) -> list[list[str]]:
        return [[utt(w), k] for k, w in INTENTS.items() for _ in range(n)]

    data = {
        "train": split(20),
        "val": split(8),
        "test": split(8),
        "oos_train": [[utt(OOS), "oos"] for _ in range(20)],
        "oos_val": [[utt(OOS), "oos"] for _ in range(12)],
    }
    (folder / "clinc150.json").write_text(json.dumps(data))
    (folder / "wiki_sentences.txt").write_text(
        "\n".join(" ".join(rnd.sample(OOS + FILL, 6)) for _ in range(60))
    )
    return folder
