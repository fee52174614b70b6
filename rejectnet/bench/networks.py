"""The benchmark's network: a rejectnet.models name, a timm name, or the user's own."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from rejectnet.bench.config import ModelConfig
from rejectnet.bench.errors import BenchError
from rejectnet.models import SmallCNN, WideResNet

__all__ = ["BUILTIN_MODELS", "build_model"]


def _small_cnn(num_classes: int, channels: int, image_size: int, **kw: Any) -> nn.Module:
    return SmallCNN(
        num_classes=num_classes,
        in_channels=channels,
        image_size=image_size,
        **{"dropout": 0.1, **kw},
    )


def _wide_resnet(num_classes: int, channels: int, image_size: int, **kw: Any) -> nn.Module:
    return WideResNet(num_classes=num_classes, in_channels=channels, **kw)


BUILTIN_MODELS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": _small_cnn,
    "wide_resnet": _wide_resnet,
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


def build_model(
    cfg: ModelConfig, num_classes: int, channels: int, image_size: int, base_dir: Path
) -> nn.Module:
    """Build the network (and load its weights, if any).

    Args:
        cfg: The ``[model]`` table.
        num_classes: C.
        channels: Input channels.
        image_size: Input side.
        base_dir: Folder searched for a ``module:function`` entry point.

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
    name = cfg.name
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
    except TypeError as err:
        raise BenchError(f"[model] cannot build {name!r}: {err}") from None
    if not isinstance(model, nn.Module):
        raise BenchError(
            f"[model] name: {name!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    if cfg.weights is not None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(cfg.weights))
        except (SafetensorError, OSError) as err:
            raise BenchError(
                f"[model] weights: {str(cfg.weights)!r} is not a .safetensors file ({err})"
            ) from None
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()
            raise BenchError(
                f"[model] weights do not fit {name!r}: {' '.join(s.strip() for s in first[:3])}"
            ) from None
    return model
