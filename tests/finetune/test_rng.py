"""The one seeding helper and the RNG state a checkpoint carries."""

from __future__ import annotations

import random

import numpy as np
import torch

from rejectnet.finetune.rng import rng_state, seed_everything, seeded_generator, set_rng_state


def test_seed_everything_seeds_torch_numpy_and_python() -> None:
    seed_everything(5)
    a = (torch.rand(2), np.random.rand(), random.random())  # noqa: NPY002
    seed_everything(5)
    b = (torch.rand(2), np.random.rand(), random.random())  # noqa: NPY002
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_rng_state_round_trips() -> None:
    state = rng_state()
    a = (torch.rand(3), np.random.rand(), random.random())  # noqa: NPY002
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(), random.random())  # noqa: NPY002
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_seeded_generator_leaves_the_global_rng_alone() -> None:
    before = torch.random.get_rng_state()
    g = seeded_generator(7)
    torch.rand(2, generator=g)
    assert torch.equal(torch.random.get_rng_state(), before) and g.initial_seed() == 7
