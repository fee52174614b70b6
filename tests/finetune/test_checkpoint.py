"""The checkpoint file: written atomically, read back verified, the newest valid one found."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from rejectnet.finetune.checkpoint import (
    CHECKPOINT_FORMAT,
    CURRENT,
    PREVIOUS,
    CheckpointError,
    check_contents,
    find_latest,
    read_checkpoint,
    write_checkpoint,
)


def _state(step: int) -> dict[str, object]:
    rng = {"torch": torch.random.get_rng_state(), "numpy": {}, "python": (3, [], None)}
    return {
        "format": CHECKPOINT_FORMAT,
        "name": "run",
        "epochs": 2,
        "epoch": 0,
        "step": step,
        "batch_in_epoch": 0,
        "model": {"w": torch.full((2,), float(step))},
        "optimizer": {"state": {}, "param_groups": [{"params": [0]}]},
        "scheduler": None,
        "scaler": None,
        "history": [],
        "world_size": 1,
        "epoch_rng": None,
        "acc": None,
        "rng": rng,
        "outliers": None,
    }


def test_write_then_read_round_trips_and_keeps_the_previous(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, _state(1))
    write_checkpoint(tmp_path, _state(2))
    assert read_checkpoint(tmp_path / CURRENT)["step"] == 2
    assert read_checkpoint(tmp_path / PREVIOUS)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CURRENT, PREVIOUS])  # no temp


def test_a_damaged_latest_falls_back_to_the_previous_and_is_moved_aside(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, _state(1))
    write_checkpoint(tmp_path, _state(2))
    data = bytearray((tmp_path / CURRENT).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / CURRENT).write_bytes(bytes(data))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        found = find_latest(tmp_path)
    assert found is not None and found.path.name == PREVIOUS and found.state["step"] == 1
    assert (tmp_path / (CURRENT + ".corrupt")).exists()


def test_contents_are_checked_field_by_field() -> None:
    state = _state(1)
    assert check_contents(state, Path("c.pt")) is state
    for key, value, needle in (("format", 99, "has format 99"), ("step", -1, "invalid 'step'")):
        with pytest.raises(CheckpointError, match=needle) as err:
            check_contents({**state, key: value}, Path("c.pt"))
        assert err.value.field == key
    with pytest.raises(CheckpointError, match="lacks the field 'model'"):
        check_contents({k: v for k, v in state.items() if k != "model"}, Path("c.pt"))
