"""Look up OOD scores by name, and register your own.

Built-in reject scores (called as ``fn(logits, num_classes, **kwargs)``):
``max_reject``, ``sum_reject``, ``weighted_reject``, ``entropy_reject``,
``entropy_diff``; the short aliases ``"max"``, ``"sum"``, ``"weighted"`` and
``"entropy"`` name the first four. Built-in baselines (called as
``fn(logits, **kwargs)`` on ``(N, C)`` class logits): ``msp``, ``energy``,
``max_logit``.

Score names are stored by the model wrapper in a fixed 32-byte buffer, so names
must be printable ASCII without spaces and at most 32 bytes long.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch

from rejectnet import decision
from rejectnet._validation import check_num_classes
from rejectnet.scores.baseline import energy, max_logit, msp
from rejectnet.scores.reject import (
    entropy_diff,
    entropy_reject,
    max_reject,
    sum_reject,
    weighted_reject,
)

__all__ = [
    "MAX_NAME_BYTES",
    "ScoreKind",
    "ScoreSpec",
    "available",
    "compute",
    "get",
    "register",
    "spec",
    "unregister",
]

ScoreKind = Literal["reject", "baseline"]
"""``"reject"``: ``fn(logits, num_classes, **kw)`` on ``(N, C + k)`` logits;
``"baseline"``: ``fn(logits, **kw)`` on ``(N, C)`` class logits."""

MAX_NAME_BYTES = 32
"""Longest score name, in bytes (names are stored in a 32-byte buffer)."""

_NAME_RE = re.compile(r"[!-~]+")


@dataclass(frozen=True)
class ScoreSpec:
    """A named OOD score.

    Attributes:
        name: The canonical name.
        fn: The score function; higher scores mean more likely OOD.
        kind: ``"reject"`` (takes ``(logits, num_classes, **kwargs)``) or
            ``"baseline"`` (takes ``(logits, **kwargs)`` on class logits).
        description: A one-line human-readable description.

    Example:
        >>> s = spec("entropy")
        >>> s.name, s.kind, s.fn.__name__
        ('entropy_reject', 'reject', 'entropy_reject')
    """

    name: str
    fn: Callable[..., Any]
    kind: ScoreKind
    description: str = ""


_BUILTIN: dict[str, ScoreSpec] = {
    s.name: s
    for s in (
        ScoreSpec("max_reject", max_reject, "reject", "largest reject-unit probability"),
        ScoreSpec("sum_reject", sum_reject, "reject", "total reject-unit probability"),
        ScoreSpec("weighted_reject", weighted_reject, "reject", "weighted reject-unit probability"),
        ScoreSpec(
            "entropy_reject", entropy_reject, "reject", "partial entropy of the reject units"
        ),
        ScoreSpec(
            "entropy_diff", entropy_diff, "reject", "reject-unit minus class partial entropy"
        ),
        ScoreSpec("msp", msp, "baseline", "negative maximum softmax probability"),
        ScoreSpec("energy", energy, "baseline", "energy score -T logsumexp(z / T)"),
        ScoreSpec("max_logit", max_logit, "baseline", "negative maximum logit"),
    )
}
_ALIASES: dict[str, str] = {
    "max": "max_reject",
    "sum": "sum_reject",
    "weighted": "weighted_reject",
    "entropy": "entropy_reject",
}
_USER: dict[str, ScoreSpec] = {}


def _known_names() -> str:
    aliases = ", ".join(f"{a!r} -> {c!r}" for a, c in sorted(_ALIASES.items()))
    return f"available scores: {', '.join(available())} (aliases: {aliases})"


def spec(name: str) -> ScoreSpec:
    """Return the :class:`ScoreSpec` registered under ``name`` (or an alias).

    User registrations take precedence over built-ins of the same name.

    Args:
        name: A canonical score name or an alias such as ``"sum"``.

    Returns:
        The score's specification.

    Raises:
        TypeError: If ``name`` is not a string.
        ValueError: If no score has this name; the message lists the available names.

    Example:
        >>> spec("sum").name, spec("sum").kind
        ('sum_reject', 'reject')
    """
    if not isinstance(name, str):
        raise TypeError(f"score name must be a string, got {type(name).__name__}")
    for key in (name, _ALIASES.get(name)):
        if key is None:
            continue
        if key in _USER:
            return _USER[key]
        if key in _BUILTIN:
            return _BUILTIN[key]
    raise ValueError(f"unknown score {name!r}; {_known_names()}")


def get(name: str) -> Callable[..., Any]:
    """Return the score function registered under ``name`` (or an alias).

    Args:
        name: A canonical score name or an alias such as ``"sum"``.

    Returns:
        The score function.

    Raises:
        TypeError: If ``name`` is not a string.
        ValueError: If no score has this name; the message lists the available names.

    Example:
        >>> get("max").__name__
        'max_reject'
    """
    return spec(name).fn


def available(kind: ScoreKind | None = None) -> list[str]:
    """Return the sorted canonical score names, optionally only those of one kind.

    Args:
        kind: ``"reject"``, ``"baseline"`` or ``None`` for all.

    Returns:
        Sorted canonical names (aliases are not listed).

    Raises:
        ValueError: If ``kind`` is not ``"reject"``, ``"baseline"`` or ``None``.

    Example:
        >>> available("baseline")
        ['energy', 'max_logit', 'msp']
    """
    if kind is not None and kind not in get_args(ScoreKind):
        raise ValueError(f"kind must be 'reject', 'baseline' or None, got {kind!r}")
    specs = {**_BUILTIN, **_USER}
    return sorted(n for n, s in specs.items() if kind is None or s.kind == kind)


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"score name must be a string, got {type(name).__name__}")
    if not _NAME_RE.fullmatch(name) or len(name.encode("ascii")) > MAX_NAME_BYTES:
        raise ValueError(
            f"score name must be 1 to {MAX_NAME_BYTES} printable ASCII characters without "
            f"spaces (it is stored in a {MAX_NAME_BYTES}-byte buffer), got {name!r}"
        )
    return name


def register(
    name: str,
    fn: Callable[..., Any],
    kind: ScoreKind,
    description: str = "",
    *,
    overwrite: bool = False,
) -> ScoreSpec:
    """Register a user-defined score under ``name``.

    A ``"reject"`` score is called as ``fn(logits, num_classes, **kwargs)`` on
    ``(N, C + k)`` logits, a ``"baseline"`` score as ``fn(logits, **kwargs)`` on
    ``(N, C)`` class logits. Either must return ``(N,)`` scores, higher = more OOD.

    Args:
        name: Printable ASCII without spaces, at most 32 bytes.
        fn: The score function.
        kind: ``"reject"`` or ``"baseline"``.
        description: A one-line description.
        overwrite: Replace an existing score or alias of the same name (for a
            built-in, :func:`unregister` restores it).

    Returns:
        The new :class:`ScoreSpec`.

    Raises:
        TypeError: If ``name``, ``fn`` or ``description`` has the wrong type.
        ValueError: If ``name`` is invalid or taken (and ``overwrite`` is false), or
            ``kind`` is invalid.

    Example:
        >>> import torch
        >>> s = register("neg_first", lambda z: -z[:, 0], "baseline", overwrite=True)
        >>> compute("neg_first", torch.tensor([[2.0, 0.0]]))
        tensor([-2.])
        >>> unregister("neg_first")
    """
    name = _check_name(name)
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if kind not in get_args(ScoreKind):
        raise ValueError(f"kind must be 'reject' or 'baseline', got {kind!r}")
    if not isinstance(description, str):
        raise TypeError(f"description must be a string, got {type(description).__name__}")
    taken = name in _USER or name in _BUILTIN or name in _ALIASES
    if taken and not overwrite:
        raise ValueError(
            f"a score named {name!r} already exists; pass overwrite=True to replace it"
        )
    new = ScoreSpec(name, fn, kind, description)
    _USER[name] = new
    return new


def unregister(name: str) -> None:
    """Remove a user-registered score (restoring a built-in it had overwritten).

    Args:
        name: The name given to :func:`register`.

    Raises:
        ValueError: If ``name`` was not registered by the user.

    Example:
        >>> _ = register("my_score", lambda z: z[:, 0], "baseline")
        >>> unregister("my_score")
        >>> "my_score" in available()
        False
    """
    if name not in _USER:
        raise ValueError(
            f"{name!r} is not a user-registered score (built-in scores cannot be removed); "
            f"user scores: {sorted(_USER) or 'none'}"
        )
    del _USER[name]


def compute(name: str, logits: Any, num_classes: int | None = None, **kwargs: Any) -> Any:
    """Compute the score ``name`` on ``logits``.

    A reject score needs ``num_classes``. A baseline score is applied to all columns,
    or, when ``num_classes`` is given, to the first ``num_classes`` columns only, so
    that a wrapped ``C + k`` model can be scored with e.g. ``msp`` on its class logits.

    Args:
        name: A canonical score name or an alias.
        logits: Logits of shape ``(N, W)`` as a tensor or numpy array.
        num_classes: The number ``C`` of ordinary classes.
        **kwargs: Passed to the score function (e.g. ``weights=`` or ``temperature=``).

    Returns:
        Scores of shape ``(N,)``: a tensor for tensor input, a numpy array for numpy
        input.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``name`` is unknown, a reject score gets no ``num_classes``,
            or ``num_classes`` does not fit the logits.

    Example:
        >>> import torch
        >>> z = torch.tensor([[4.0, 0.0, 0.0, 0.0]])
        >>> compute("msp", z, num_classes=2).round(decimals=4)
        tensor([-0.9820])
        >>> compute("sum", z, num_classes=2).round(decimals=4)
        tensor([0.0347])
    """
    s = spec(name)
    if s.kind == "reject":
        if num_classes is None:
            raise ValueError(
                f"score {s.name!r} is a reject score and needs num_classes "
                "(the number C of ordinary classes before the k reject units)"
            )
        return s.fn(logits, num_classes, **kwargs)
    if num_classes is not None and isinstance(logits, (torch.Tensor, np.ndarray)):
        if logits.ndim == 2:
            c = check_num_classes(num_classes, int(logits.shape[1]), allow_all=True)
            logits = logits[:, :c]
    return s.fn(logits, **kwargs)


decision.use_registry(sys.modules[__name__])
