"""Small reference architectures used by the demo, examples and benchmarks."""

from __future__ import annotations

import torch
from torch import nn

from rejectnet._validation import check_int, check_number

__all__ = ["SmallCNN", "WideResNet"]


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
        check_int(hidden, "hidden")
        check_number(dropout, "dropout", maximum=1.0)
        if not isinstance(channels, (tuple, list)) or len(channels) != 2:
            raise TypeError(
                f"channels must be the two convolutions' widths, e.g. (32, 64); got {channels!r}"
            )
        c1, c2 = (check_int(c, f"channels[{i}]") for i, c in enumerate(channels))
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
        """Map ``(N, in_channels, image_size, image_size)`` images to ``(N, C)`` logits.

        Args:
            x: A batch of images.

        Returns:
            ``(N, num_classes)`` logits.
        """
        logits: torch.Tensor = self.fc(self.drop(torch.relu(self.fc1(self.features(x)))))
        return logits


class _WideBasic(nn.Module):
    """Pre-activation wide residual block: BN-ReLU-conv3x3, dropout, BN-ReLU-conv3x3."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if in_planes != out_planes or stride != 1:
            self.shortcut = nn.Conv2d(
                in_planes, out_planes, 1, stride=stride, padding=0, bias=False
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block (the shortcut sees the pre-activated input when it projects)."""
        act = torch.relu(self.bn1(x))
        out: torch.Tensor = self.conv2(self.drop(torch.relu(self.bn2(self.conv1(act)))))
        skip: torch.Tensor = x if self.shortcut is None else self.shortcut(act)
        return out + skip


class WideResNet(nn.Module):
    """Wide residual network (Zagoruyko & Komodakis, 2016), the paper's CIFAR backbone.

    ``WideResNet(depth=40, widen_factor=2, num_classes=10, dropout=0.3)`` is WRN-40-2
    as used by Mohseni et al. (and by Outlier Exposure) for CIFAR-10: three groups of
    ``(depth - 4) / 6`` pre-activation blocks of widths 16k, 32k and 64k, global average
    pooling and a final ``nn.Linear`` named ``fc`` (which :meth:`RejectHead.wrap` finds).

    Args:
        depth: Total depth; ``depth - 4`` must be divisible by 6.
        widen_factor: Width multiplier k.
        num_classes: Number of classes C.
        dropout: Dropout probability between the two convolutions of each block.
        in_channels: Input channels.

    Raises:
        ValueError: If ``depth - 4`` is not a positive multiple of 6 or ``widen_factor < 1``.

    Example:
        >>> import torch
        >>> net = WideResNet(depth=10, widen_factor=1, num_classes=10)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        depth: int = 40,
        widen_factor: int = 2,
        num_classes: int = 10,
        dropout: float = 0.3,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        check_int(depth, "depth")
        check_int(widen_factor, "widen_factor", minimum=0)
        check_number(dropout, "dropout", maximum=1.0)
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (e.g. 16, 28, 40), got {depth}")
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1, got {widen_factor}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        layers: list[nn.Module] = []
        in_planes = widths[0]
        for width, stride in zip(widths[1:], (1, 2, 2), strict=True):
            blocks = [
                _WideBasic(in_planes if i == 0 else width, width, stride if i == 0 else 1, dropout)
                for i in range(n)
            ]
            layers.append(nn.Sequential(*blocks))
            in_planes = width
        self.block1, self.block2, self.block3 = layers
        self.bn = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, H, W)`` images to ``(N, C)`` logits.

        Args:
            x: A batch of images (32x32 for CIFAR).

        Returns:
            ``(N, num_classes)`` logits.
        """
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = torch.relu(self.bn(out))
        out = nn.functional.adaptive_avg_pool2d(out, 1).flatten(1)
        logits: torch.Tensor = self.fc(out)
        return logits
