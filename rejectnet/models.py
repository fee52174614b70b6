"""Small reference architectures used by the demo, examples and benchmarks."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """The paper's MNIST network: two 3x3 convolutions, each followed by 2x2 max-pooling,
    then dropout and two Linear layers.

    Args:
        num_classes: Number of classes C.
        in_channels: Input channels.
        image_size: Height (= width) of the inputs.
        channels: Output channels of the two convolutions.
        hidden: Width of the hidden Linear layer.
        dropout: Dropout probability (the paper: 0.1).

    Example:
        >>> import torch
        >>> SmallCNN(num_classes=10, image_size=28)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        channels: tuple[int, int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            nn.Flatten(),
        )
        side = image_size // 4
        self.fc1 = nn.Linear(c2 * side * side, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, image_size, image_size)`` images to ``(N, C)`` logits."""
        logits: torch.Tensor = self.fc(self.drop(torch.relu(self.fc1(self.features(x)))))
        return logits
