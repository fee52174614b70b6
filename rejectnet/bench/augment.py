"""What natural images need in the benchmark: augmentation and per-channel normalisation.

* :func:`crop_flip` is the standard CIFAR augmentation (random crop of the zero-padded
  image, random horizontal flip), applied to whole batches by :class:`AugmentCollate`,
  the ``collate_fn`` of the benchmark's training loaders (stage one, and both the
  in-distribution and the outlier side of stage two). It draws from torch's global
  generator only, which the training loop seeds (``seed``) and saves in its checkpoints,
  so an augmented run is deterministic for a seed and resumes exactly.
* :class:`SeededShuffle` is the loaders' shuffle: the order of epoch ``e`` is a pure
  function of (seed, e), so a run resumed in a later epoch reads the same batches.
* :class:`Normalized` puts the per-channel normalisation *inside* the model: the saved
  and deployed model takes images in ``[0, 1]``, as every other rejectnet model does,
  and nobody has to remember the training set's mean and std.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import RandomSampler, Sampler, default_collate

from rejectnet.finetune.rng import seeded_generator

__all__ = ["AugmentCollate", "Normalized", "SeededShuffle", "channel_stats", "crop_flip"]


def crop_flip(x: torch.Tensor, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crops of the zero-padded images and random horizontal flips, per image.

    Args:
        x: ``(N, C, H, W)`` images (not modified).
        pad: Zero padding on every side before cropping back to ``H x W`` (0: no crop).
        flip: Flip each image horizontally with probability 1/2.

    Returns:
        A new ``(N, C, H, W)`` tensor.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> crop_flip(torch.ones(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """
    n, _, h, w = x.shape
    out = x
    if pad > 0:
        padded = nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,)).tolist()
        dx = torch.randint(0, 2 * pad + 1, (n,)).tolist()
        out = torch.stack(
            [
                padded[i, :, a : a + h, b : b + w]
                for i, (a, b) in enumerate(zip(dy, dx, strict=True))
            ]
        )
    if flip:
        mask = torch.rand(n) < 0.5
        out = torch.where(mask.view(n, 1, 1, 1), out.flip(-1), out)
    return out if out is not x else x.clone()


class AugmentCollate:
    """A ``collate_fn`` that stacks samples and augments the images (the first field).

    Args:
        pad: Crop padding (0: no crop).
        flip: Random horizontal flips.

    Example:
        >>> import torch
        >>> batch = AugmentCollate(4, True)([(torch.zeros(3, 8, 8), torch.tensor(1))] * 2)
        >>> batch[0].shape, batch[1].tolist()
        (torch.Size([2, 3, 8, 8]), [1, 1])
    """

    def __init__(self, pad: int = 4, flip: bool = True) -> None:
        self.pad = pad
        self.flip = flip

    def __call__(self, samples: Sequence[Any]) -> Any:
        batch = default_collate(list(samples))
        if isinstance(batch, (list, tuple)):
            return [crop_flip(batch[0], self.pad, self.flip), *batch[1:]]
        return crop_flip(batch, self.pad, self.flip)

    def __repr__(self) -> str:
        return f"AugmentCollate(pad={self.pad}, flip={self.flip})"


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of ``(N, C, H, W)`` images (std floored at 1e-3).

    Example:
        >>> import torch
        >>> channel_stats(torch.zeros(2, 1, 4, 4))
        ([0.0], [0.001])
    """
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


class Normalized(nn.Module):
    """A model that normalises its input per channel, ``(x - mean) / std``, then runs ``net``.

    The statistics are buffers, saved with the weights. ``fc`` is ``net``'s head, so
    :meth:`rejectnet.RejectHead.wrap` finds it as on the bare network.

    Args:
        net: The network.
        mean: Per-channel means.
        std: Per-channel standard deviations (> 0).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = Normalized(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), [0.5], [0.25])
        >>> m(torch.full((1, 1, 2, 2), 0.5)).shape
        torch.Size([1, 2])
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"mean and std must have one value per channel, std > 0: {std}")
        self.net = net
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std)).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> Any:
        """Normalise ``x`` (not in place) and run the network."""
        return self.net((x - self.mean) / self.std)


class SeededShuffle(Sampler[int]):
    """A random order per epoch that depends only on the seed and the epoch.

    Give the loader ``generator=sampler.generator``: it then yields exactly what
    ``DataLoader(shuffle=True, generator=seeded_generator(seed))`` yields in its epoch
    ``e`` (the same numbers as before it existed: the loader draws its base seed, then
    the sampler its permutation, from that generator), but :meth:`set_epoch` (which the
    training loop calls before every pass) replays the generator to epoch ``e``, so a
    run resumed from a checkpoint in epoch 2 reads epoch 2's order, not epoch 0's.

    Args:
        n: Dataset length.
        seed: The seed of the order.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> s = SeededShuffle(5, seed=0)
        >>> loader = DataLoader(range(5), batch_size=5, sampler=s, generator=s.generator)
        >>> s.set_epoch(1); first = next(iter(loader)).tolist()
        >>> s.set_epoch(0); _ = list(loader); second = next(iter(loader)).tolist()
        >>> first == second
        True
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.generator = seeded_generator(seed)
        self._sampler = RandomSampler(range(n), generator=self.generator)

    def set_epoch(self, epoch: int) -> None:
        """Put the order at the start of (0-based) ``epoch``."""
        self.generator.manual_seed(self.seed)
        for _ in range(epoch):
            torch.empty((), dtype=torch.int64).random_(generator=self.generator)
            for _ in self._sampler:
                pass

    def __iter__(self) -> Any:
        return iter(self._sampler)

    def __len__(self) -> int:
        return self.n
