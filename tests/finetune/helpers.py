"""Synthetic data and models for the training tests."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class DropoutCNN(nn.Module):
    """A two-conv net with batch norm and dropout (exercises BN statistics and the RNG)."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(6 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        x = nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        return self.fc(self.drop(x))


def in_distribution(n: int = 96, num_classes: int = 3, seed: int = 0) -> TensorDataset:
    """Class c lights up quadrant c (top-left, top-right, bottom-left, ...) of an 8x8 image."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (n,), generator=g)
    x = 0.1 * torch.randn(n, 1, 8, 8, generator=g)
    for c in range(num_classes):
        r, q = divmod(c, 2)
        x[y == c, :, 4 * r : 4 * r + 4, 4 * q : 4 * q + 4] += 1.0
    return TensorDataset(x, y)


def outliers(n: int = 300, seed: int = 1) -> TensorDataset:
    """Vertical stripes and blobs: unlike any in-distribution image."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(n, 1, 8, 8, generator=g)
    cols = torch.randint(0, 8, (n,), generator=g)
    x[torch.arange(n), :, :, cols] += 1.5
    return TensorDataset(x, torch.zeros(n, dtype=torch.long))


def loaders(batch: int = 16, out_batch: int = 7) -> tuple[DataLoader, DataLoader]:
    return (
        DataLoader(in_distribution(), batch_size=batch, shuffle=True),
        DataLoader(outliers(), batch_size=out_batch, shuffle=True),
    )
