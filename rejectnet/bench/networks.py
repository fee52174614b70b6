"""The benchmark's network: a rejectnet.models name, a timm name, or the user's own."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rejectnet.bench.augment import Normalized
from rejectnet.bench.config import ModelConfig
from rejectnet.bench.errors import BenchError
from rejectnet.models import SmallCNN, WideResNet

__all__ = ["BUILTIN_MODELS", "MAX_WEIGHTS_BYTES", "CifarResNet", "build_model"]

MAX_WEIGHTS_BYTES = 8 * 2**30
"""The largest ``[model] weights`` file read."""


class _Block(nn.Module):
    """Post-activation basic block: conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet (depth 6n + 2; ResNet-20 by default): the ``quick`` network.

    Three stages of ``(depth - 2) / 6`` basic blocks of widths ``width``, ``2 width``,
    ``4 width`` (strides 1, 2, 2), global average pooling and a Linear head named ``fc``.

    Args:
        num_classes: C.
        in_channels: Input channels.
        depth: 6n + 2 (8, 14, 20, 32...).
        width: Channels of the first stage.

    Raises:
        ValueError: For a depth that is not 6n + 2 with n >= 1, or width < 1.

    Example:
        >>> import torch
        >>> CifarResNet(10, 3, depth=8, width=4)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, depth: int = 20, width: int = 16
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32...), got {depth!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an integer >= 1, got {width!r}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        cin = width
        for i, stride in enumerate((1, 2, 2)):
            cout = width * 2**i
            for j in range(n):
                blocks.append(_Block(cin, cout, stride if j == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` images to ``(N, C)`` logits."""
        out = self.blocks(self.stem(x))
        logits: torch.Tensor = self.fc(out.mean(dim=(2, 3)))
        return logits


def _small_cnn(num_classes: int, channels: int, image_size: int, /, **kw: Any) -> nn.Module:
    return SmallCNN(
        num_classes=num_classes,
        in_channels=channels,
        image_size=image_size,
        **{"dropout": 0.1, **kw},
    )


def _wide_resnet(num_classes: int, channels: int, image_size: int, /, **kw: Any) -> nn.Module:
    return WideResNet(num_classes=num_classes, in_channels=channels, **kw)


def _resnet(num_classes: int, channels: int, image_size: int, /, **kw: Any) -> nn.Module:
    try:
        return CifarResNet(num_classes=num_classes, in_channels=channels, **kw)
    except ValueError as err:
        raise BenchError(f"[model] kwargs: {err}") from None


BUILTIN_MODELS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": _small_cnn,
    "wide_resnet": _wide_resnet,
    "cifar_resnet": _resnet,
}
"""``[model] name`` -> constructor ``(num_classes, channels, image_size, **kwargs)``."""


def _entry_point(name: str, base_dir: Path) -> Callable[..., Any]:
    module_name, _, attr = name.partition(":")
    for folder in (str(base_dir), str(Path.cwd())):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise BenchError(
            f"[model] name: cannot import {module_name!r} ({err}); it is looked up on "
            f"sys.path, the config file's folder and the working directory"
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise BenchError(f"[model] name: {module_name!r} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


SET_FROM_DATA = ("num_classes", "in_channels", "in_chans", "image_size")
"""Constructor arguments of the built-in and timm networks that the data decide."""


def _check_kwargs_leave_data_alone(cfg: ModelConfig) -> None:
    """Refuse ``[model] kwargs`` that would override what the data decide (built-ins, timm)."""
    if cfg.is_entry_point:
        return  # the user's own function: its kwargs win, as documented
    taken = [k for k in SET_FROM_DATA if k in cfg.kwargs]
    if taken:
        one = len(taken) == 1
        raise BenchError(
            f"[model] kwargs: {', '.join(taken)} {'comes' if one else 'come'} from the data "
            f"(classes, image channels and size are read from the in-distribution set); "
            f"remove {'it' if one else 'them'} from [model] kwargs"
        )


def _construct(
    cfg: ModelConfig, num_classes: int, channels: int, image_size: int, base_dir: Path
) -> nn.Module:
    """The network of ``cfg.name``, untrained."""
    name = cfg.name
    _check_kwargs_leave_data_alone(cfg)
    try:
        if name in BUILTIN_MODELS:
            model: Any = BUILTIN_MODELS[name](num_classes, channels, image_size, **cfg.kwargs)
        elif name.startswith("timm:"):
            try:
                import timm
            except ImportError:
                raise BenchError(
                    f'[model] name {name!r} needs timm: pip install "rejectnet[timm]"'
                ) from None
            arch = name.removeprefix("timm:")
            if arch not in timm.list_models():
                raise BenchError(f"[model] name: timm has no model {arch!r}")
            model = timm.create_model(
                arch, pretrained=False, num_classes=num_classes, in_chans=channels, **cfg.kwargs
            )
        elif cfg.is_entry_point:
            fn = _entry_point(name, base_dir)
            params = inspect.signature(fn).parameters
            extra = {
                k: v
                for k, v in dict(
                    num_classes=num_classes, channels=channels, image_size=image_size
                ).items()
                if k in params and k not in cfg.kwargs
            }
            model = fn(**extra, **cfg.kwargs)
        else:
            raise BenchError(
                f"[model] name: unknown model {name!r}; use one of {', '.join(BUILTIN_MODELS)}, "
                '"timm:NAME" or "package.module:function"'
            )
    except BenchError:
        raise
    except (TypeError, ValueError) as err:  # a kwarg of the wrong type or value, named
        raise BenchError(f"[model] cannot build {name!r}: {err}") from None
    if not isinstance(model, nn.Module):
        raise BenchError(
            f"[model] name: {name!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model  # type: ignore[no-any-return]


def _load_weights(model: nn.Module, path: Path, name: str) -> None:
    """Load a ``.safetensors`` state dict, read bounded (a regular file, size-limited)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    from rejectnet.files.bounded_reads import read_bounded

    try:
        blob = read_bounded(path, max_bytes=MAX_WEIGHTS_BYTES, what="[model] weights")
        state = load(blob)
    except (SafetensorError, OSError, ValueError) as err:
        raise BenchError(
            f"[model] weights: {str(path)!r} is not a .safetensors file ({err})"
        ) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise BenchError(
            f"[model] weights do not fit {name!r}: {' '.join(s.strip() for s in first[:3])}"
        ) from None


def build_model(
    cfg: ModelConfig,
    num_classes: int,
    channels: int,
    image_size: int,
    base_dir: Path,
    *,
    stats: tuple[list[float], list[float]] | None = None,
) -> nn.Module:
    """Build the network (and load its weights, if any).

    A ``module:function`` name imports that module and calls the function: a config file
    is code, like a pickle or a ``.pt2`` package; run only configs you trust.

    Args:
        cfg: The ``[model]`` table.
        num_classes: C.
        channels: Input channels.
        image_size: Input side.
        base_dir: Folder searched for a ``module:function`` entry point.
        stats: Per-channel mean and std for ``cfg.normalize`` (default 0 and 1: the
            weights, if any, then bring their own).

    Returns:
        The network, on the CPU.

    Raises:
        BenchError: For an unknown name, a missing timm, a function that does not return
            an ``nn.Module``, or weights that do not fit (one line each).

    Example:
        >>> from pathlib import Path
        >>> from rejectnet.bench.config import ModelConfig
        >>> net = build_model(ModelConfig("small_cnn"), 10, 1, 28, Path("."))
        >>> type(net).__name__, net.fc.out_features
        ('SmallCNN', 10)
    """
    model = _construct(cfg, num_classes, channels, image_size, base_dir)
    if cfg.normalize:
        mean, std = stats or ([0.0] * channels, [1.0] * channels)
        model = Normalized(model, mean, std)
    if cfg.weights is not None:
        _load_weights(model, cfg.weights, cfg.name)
    return model
