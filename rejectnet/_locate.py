"""Finding a classifier's final classification layer.

The search order mirrors how the common model zoos name their heads:

1. an explicit ``head="dotted.path"`` from the caller;
2. timm's ``get_classifier()``;
3. the conventional attribute paths ``fc`` (torchvision ResNet/RegNet), ``classifier``
   (VGG, EfficientNet, MobileNet, ConvNeXt, MaxViT, Hugging Face), ``heads.head``
   (torchvision ViT), ``head`` and ``head.fc`` (Swin, timm), ``last_linear``; a container
   found there contributes its last ``nn.Linear``;
4. the last ``nn.Linear`` of the module tree, when it is unambiguous: either the only
   ``nn.Linear``, or the last module with parameters in registration order.
"""

from __future__ import annotations

from torch import nn

__all__ = ["HeadNotFoundError", "find_head", "replace_module"]

_CONVENTIONAL_PATHS = ("fc", "classifier", "heads.head", "heads", "head.fc", "head", "last_linear")


class HeadNotFoundError(ValueError):
    """Raised when no final classification layer can be identified."""


def _get(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _path_of(model: nn.Module, module: nn.Module) -> str | None:
    for name, m in model.named_modules():
        if m is module:
            return str(name)
    return None


def _last_linear(model: nn.Module, path: str, module: nn.Module) -> str | None:
    if isinstance(module, nn.Linear):
        return path
    found = None
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            found = f"{path}.{name}" if path else name
    return found


def _describe(model: nn.Module) -> str:
    linears = [
        f"{name} ({m.in_features}->{m.out_features})"
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
    ]
    return ", ".join(linears) if linears else "none"


def _check_linear(model: nn.Module, path: str) -> nn.Linear:
    module = _get(model, path)
    if module is None:
        raise HeadNotFoundError(
            f"head={path!r} names no submodule of {type(model).__name__}; "
            f"nn.Linear layers seen: {_describe(model)}"
        )
    if not isinstance(module, nn.Linear):
        raise TypeError(
            f"head={path!r} is a {type(module).__name__}, not an nn.Linear; rejectnet widens "
            f"a final nn.Linear. nn.Linear layers seen: {_describe(model)}"
        )
    return module


def find_head(model: nn.Module, head: str | None = None) -> tuple[str, nn.Linear]:
    """Locate the final classification layer of ``model``.

    Args:
        model: The classifier.
        head: Optional dotted path of the layer (e.g. ``"fc"`` or ``"heads.head"``);
            ``""`` names the model itself, when the model is a bare ``nn.Linear``.

    Returns:
        The dotted path of the layer and the layer itself.

    Raises:
        HeadNotFoundError: If no layer can be identified; the message lists the
            ``nn.Linear`` layers seen.
        TypeError: If the layer found (or named) is not an ``nn.Linear``.
        ValueError: If the model is a timm model created with ``num_classes=0``.
    """
    if head is not None:
        if not isinstance(head, str):
            raise TypeError(f"head must be a dotted module path such as 'fc', got {head!r}")
        return head, _check_linear(model, head)

    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        clf = get_classifier()
        if isinstance(clf, nn.Module):
            if isinstance(clf, nn.Identity) or getattr(model, "num_classes", None) == 0:
                raise ValueError(
                    f"{type(model).__name__} has no classifier (created with num_classes=0); "
                    "create it with num_classes=C or call model.reset_classifier(C) first"
                )
            path = _path_of(model, clf)
            found = _last_linear(model, path, clf) if path is not None else None
            if found is not None:
                return found, _check_linear(model, found)

    for candidate in _CONVENTIONAL_PATHS:
        module = _get(model, candidate)
        if module is None:
            continue
        found = _last_linear(model, candidate, module)
        if found is not None:
            return found, _check_linear(model, found)

    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if len(linears) == 1:
        return linears[0][0], linears[0][1]
    with_params = [
        (n, m)
        for n, m in model.named_modules()
        if next(m.parameters(recurse=False), None) is not None
    ]
    if linears and with_params and isinstance(with_params[-1][1], nn.Linear):
        return with_params[-1][0], with_params[-1][1]  # type: ignore[return-value]
    raise HeadNotFoundError(
        f"could not identify the final classification layer of {type(model).__name__}; "
        f"nn.Linear layers seen: {_describe(model)}. Pass head='dotted.path' to name it."
    )


def replace_module(model: nn.Module, path: str, new: nn.Module) -> nn.Module:
    """Replace the submodule at ``path`` with ``new`` (in place on ``model``).

    Returns:
        The new root module: ``new`` itself when ``path`` is ``""`` (the model is the
        layer), otherwise ``model``.
    """
    if path == "":
        return new
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, new)
    return model
