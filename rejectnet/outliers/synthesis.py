"""Outliers synthesised in input space from the in-distribution batch alone.

Each transform keeps the low-level statistics of the training images (stroke width,
contrast, background, intensity histogram) and destroys the class, which makes the
result a *near* outlier: the kind of input a pool of unrelated photos never shows the
model. They need no outlier pool, so they also serve the common case where there is none
(``outlier_loader=None``).

Every transform rests on an assumption about the data; check it for yours:

* :func:`jigsaw` (patch permutation): the class depends on the global arrangement of
  parts. True for digits, letters, objects; false for textures, and for images whose
  patches are mostly empty background (a shuffled 2x2 grid of a thin ``1`` can still be
  a ``1``; a shifted patch with the whole digit in it is the same digit).
* :func:`stitch` (cut-paste of two images): the halves of two different classes make
  neither. Mostly true; a left half of a ``3`` and a right half of an ``8`` can look like
  a ``3`` or an ``8``. Partners are drawn from a different class where the batch has one.
* :func:`overlay` (a convex mix of two images of different classes, weight 0.4-0.6):
  two superimposed characters are no single one. Weights near 0 or 1 would give back a
  class.
* :func:`warp` (a strong random smooth deformation): bending strokes far enough
  makes other shapes of the same strokes. Mild warps are the usual *augmentation* of the
  training data (elastic distortions of MNIST), so the displacement must be large;
  check a few samples by eye.
* :func:`rotate` (90 or 270 degrees by default): a digit on its side is no digit. False
  for rotation-symmetric classes (``0``, ``8`` at 180 degrees, ``1`` and ``0`` nearly at
  any angle) and for data without a canonical orientation (aerial, microscopy); a
  180-degree turn of a ``6`` is a ``9``, so 180 degrees is not a default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from rejectnet._validation import check_fraction, check_int, check_number
from rejectnet.outliers._base import (
    Options,
    check_images,
    check_labels,
    check_range,
    partners,
    randint,
)

__all__ = [
    "Jigsaw",
    "Overlay",
    "Rotate",
    "Stitch",
    "Warp",
    "jigsaw",
    "overlay",
    "rotate",
    "stitch",
    "warp",
]

MAX_KNOTS = 64
"""The most :func:`warp` control points per side. The deformation is meant to be a
smooth bend; with more knots than one per few pixels of any image rejectnet is used on
it is per-pixel noise (and its field grows with ``knots**2`` per row)."""


def _check_batch(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    check_images(x, name, min_ndim=3)
    if x.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row")
    return x


def jigsaw(
    x: torch.Tensor, grid: int = 2, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Cut each image into ``grid`` x ``grid`` patches and shuffle them (never the identity).

    When the side is not a multiple of ``grid``, the bottom and right remainders stay
    where they are.

    Args:
        x: Images ``(N, C, H, W)``.
        grid: Patches per side (>= 2).
        generator: RNG on the images' device (``None``: torch's global RNG).

    Returns:
        A new ``(N, C, H, W)`` tensor; ``x`` unchanged.

    Raises:
        ValueError: If ``x`` is not ``(N, C, H, W)`` or ``grid`` is < 2 or larger than a side.

    Example:
        >>> import torch
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> y = jigsaw(x, grid=2, generator=torch.Generator().manual_seed(0))
        >>> sorted(y.flatten().tolist()) == sorted(x.flatten().tolist()), torch.equal(x, y)
        (True, False)
    """
    _check_batch(x)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W) images, got shape {tuple(x.shape)}")
    grid = check_int(grid, "grid", minimum=2)
    n, c, h, w = x.shape
    ph, pw = h // grid, w // grid
    if ph == 0 or pw == 0:
        raise ValueError(f"grid={grid} is larger than the image sides {h}x{w}")
    p = grid * grid
    keys = torch.rand(n, p, device=x.device, generator=generator)
    perm = keys.argsort(dim=1)
    identity = (perm == torch.arange(p, device=x.device)).all(dim=1, keepdim=True)
    perm = torch.where(identity, perm.roll(1, dims=1), perm)  # a cyclic shift is never identity
    core = x[:, :, : grid * ph, : grid * pw]
    patches = core.reshape(n, c, grid, ph, grid, pw).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(n, p, c, ph, pw)
    index = perm[:, :, None, None, None].expand(n, p, c, ph, pw)
    shuffled = patches.gather(1, index).reshape(n, grid, grid, c, ph, pw)
    shuffled = shuffled.permute(0, 3, 1, 4, 2, 5).reshape(n, c, grid * ph, grid * pw)
    out = x.clone()
    out[:, :, : grid * ph, : grid * pw] = shuffled
    return out


def stitch(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    cut: tuple[float, float] = (0.35, 0.65),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Join part of each image with the rest of a partner image (of a different class).

    Each row draws an axis (a vertical or a horizontal cut) and a cut position in
    ``cut`` (fractions of the side); the part before the cut comes from the row, the
    part after it from its partner.

    Args:
        x: Images ``(N, C, H, W)``.
        y: Labels ``(N,)``; partners are then drawn from other labels where possible.
        cut: Range of the cut position, fractions of the side, ``0 < lo <= hi < 1``.
        generator: RNG on the images' device (``None``: torch's global RNG).

    Returns:
        A new ``(N, C, H, W)`` tensor; inputs unchanged.

    Raises:
        TypeError: If ``cut`` is not a ``(lo, hi)`` pair of numbers (``cut=0.5`` is
            not a range: write ``(0.5, 0.5)``).
        ValueError: If ``x`` is not ``(N, C, H, W)``, ``y`` does not match, or ``cut``
            is not a range inside ``(0, 1)``.

    Example:
        >>> import torch
        >>> x = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
        >>> out = stitch(x, torch.tensor([0, 1]), generator=torch.Generator().manual_seed(0))
        >>> out.shape, 0 < float(out[0].mean()) < 1
        (torch.Size([2, 1, 4, 4]), True)
    """
    _check_batch(x)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W) images, got shape {tuple(x.shape)}")
    check_labels(y, x.shape[0], "image")
    lo, hi = _check_cut(cut)
    n, _, h, w = x.shape
    partner = partners(y, n, x.device, generator)
    axis = randint(2, (n, 1, 1, 1), x.device, generator)
    pos = lo + (hi - lo) * torch.rand(n, 1, 1, 1, device=x.device, generator=generator)
    rows = (torch.arange(h, device=x.device, dtype=pos.dtype) + 0.5)[None, None, :, None] / h
    cols = (torch.arange(w, device=x.device, dtype=pos.dtype) + 0.5)[None, None, None, :] / w
    keep = torch.where(axis == 0, cols < pos, rows < pos)
    return torch.where(keep, x, x[partner])


def overlay(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    weight: tuple[float, float] = (0.4, 0.6),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mix each image with a partner of a different class: ``w * x + (1 - w) * x[j]``.

    Args:
        x: Images ``(N, ...)``.
        y: Labels ``(N,)``; partners are then drawn from other labels where possible.
        weight: Range of ``w``, each row its own; keep it near 0.5.
        generator: RNG on the images' device (``None``: torch's global RNG).

    Returns:
        A new tensor of ``x``'s shape; inputs unchanged.

    Raises:
        TypeError: If ``weight`` is not a ``(lo, hi)`` pair of numbers.
        ValueError: If ``y`` does not match ``x`` or ``weight`` is not a range in ``[0, 1]``
            (two values, ``lo <= hi``).

    Example:
        >>> import torch
        >>> x = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
        >>> out = overlay(x, torch.tensor([0, 1]), weight=(0.5, 0.5))
        >>> out.flatten().tolist()
        [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    """
    _check_batch(x, "x")
    check_labels(y, x.shape[0], "image")
    lo, hi = _check_weight(weight)
    n = x.shape[0]
    partner = partners(y, n, x.device, generator)
    shape = (n,) + (1,) * (x.ndim - 1)
    w = lo + (hi - lo) * torch.rand(shape, device=x.device, generator=generator, dtype=x.dtype)
    return w * x + (1 - w) * x[partner]


def rotate(
    x: torch.Tensor,
    angles: Sequence[int] = (90, 270),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Rotate each image by one of ``angles`` (multiples of 90 degrees), drawn per row.

    Args:
        x: Images ``(N, C, H, W)``; square unless ``angles`` is ``(180,)``.
        angles: Counter-clockwise angles to draw from, each in ``{90, 180, 270}``.
        generator: RNG on the images' device (``None``: torch's global RNG).

    Returns:
        A new ``(N, C, H, W)`` tensor; ``x`` unchanged.

    Raises:
        ValueError: If an angle is not 90, 180 or 270, or the images are not square
            for a 90/270-degree turn.

    Example:
        >>> import torch
        >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
        >>> rotate(x, angles=(180,)).flatten().tolist()
        [4.0, 3.0, 2.0, 1.0]
    """
    _check_batch(x)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W) images, got shape {tuple(x.shape)}")
    quarter = [a // 90 for a in _check_angles(angles)]
    if any(q % 2 for q in quarter) and x.shape[2] != x.shape[3]:
        raise ValueError(f"a 90/270-degree turn needs square images, got {tuple(x.shape[2:])}")
    turned = torch.stack([torch.rot90(x, q, dims=(2, 3)) for q in quarter])
    pick = randint(len(quarter), (x.shape[0],), x.device, generator)
    return turned[pick, torch.arange(x.shape[0], device=x.device)]


def warp(
    x: torch.Tensor,
    strength: float = 0.4,
    knots: int = 5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Deform each image with a random smooth displacement field.

    A ``knots`` x ``knots`` grid of displacements, uniform in ``[-strength, strength]``
    (in units of half the image side), is upsampled bicubically to a dense field and
    applied with bilinear sampling (zeros outside).

    Args:
        x: Images ``(N, C, H, W)``.
        strength: Largest displacement at a knot, as a fraction of half the side,
            in ``[0, 2]``.
        knots: Control points per side, in ``[2, MAX_KNOTS]`` (64); fewer make
            smoother, larger bends.
        generator: RNG on the images' device (``None``: torch's global RNG).

    Returns:
        A new ``(N, C, H, W)`` tensor; ``x`` unchanged.

    Raises:
        TypeError: If ``strength`` is not a number or ``knots`` not an int.
        ValueError: If ``x`` is not ``(N, C, H, W)``, ``strength`` is outside ``[0, 2]``
            or ``knots`` outside ``[2, MAX_KNOTS]``.

    Example:
        >>> import torch
        >>> x = torch.rand(2, 1, 8, 8)
        >>> torch.allclose(warp(x, strength=0.0), x, atol=1e-5)
        True
    """
    _check_batch(x)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W) images, got shape {tuple(x.shape)}")
    strength = check_number(strength, "strength", maximum=2.0)
    knots = check_int(knots, "knots", minimum=2, maximum=MAX_KNOTS)
    n, _, h, w = x.shape
    coarse = torch.rand(n, 2, knots, knots, device=x.device, generator=generator)
    coarse = (2 * coarse - 1) * strength
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    ys = torch.linspace(-1, 1, h, device=x.device)
    xs = torch.linspace(-1, 1, w, device=x.device)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2) as (x, y)
    grid = base[None] + field.permute(0, 2, 3, 1)
    out: torch.Tensor = F.grid_sample(
        x.float(), grid.float(), mode="bilinear", padding_mode="zeros", align_corners=True
    )
    return out.to(x.dtype)


def _check_cut(cut: object) -> tuple[float, float]:
    return check_range(cut, "cut", lambda v, n: check_fraction(v, n, high_open=True))


def _check_weight(weight: object) -> tuple[float, float]:
    return check_range(weight, "weight", lambda v, n: check_fraction(v, n, low_open=False))


def _check_angles(angles: object) -> tuple[int, ...]:
    what = "angles must be a non-empty sequence of ints among 90, 180, 270"
    if isinstance(angles, (str, bytes)) or not isinstance(angles, Sequence):
        raise TypeError(f"{what}, got {type(angles).__name__} {angles!r}")
    for a in angles:
        if isinstance(a, bool) or not isinstance(a, int):
            raise TypeError(f"{what}, got {type(a).__name__} {a!r} in {list(angles)!r}")
        if a not in (90, 180, 270):
            raise ValueError(f"{what}, got {list(angles)!r}")
    if not angles:
        raise ValueError(f"{what}, got none")
    return tuple(angles)


class _FromBatch(Options):
    """Base of the sources that transform ``n`` random rows of the labeled batch."""

    needs_pool = False

    def _apply(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def __call__(
        self,
        x_in: torch.Tensor,
        y: torch.Tensor,
        x_out: torch.Tensor | None,
        n: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` synthesised rows from random rows of ``x_in``; see :class:`OutlierSource`."""
        _check_batch(x_in, "x_in")
        check_labels(y, x_in.shape[0], "image")
        if check_int(n, "n", minimum=0) == 0:
            return x_in[:0].clone()
        idx = randint(x_in.shape[0], (n,), x_in.device, generator)
        return self._apply(x_in[idx], y[idx], generator)


class Jigsaw(_FromBatch):
    """Patch permutation of in-distribution images; see :func:`jigsaw`.

    Args:
        grid: Patches per side.

    Example:
        >>> import torch
        >>> Jigsaw(2)(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), None, 6).shape
        torch.Size([6, 1, 8, 8])
    """

    _options = ("grid",)

    def __init__(self, grid: int = 2) -> None:
        self.grid = check_int(grid, "grid", minimum=2)

    def _apply(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        return jigsaw(x, self.grid, generator)


class Stitch(_FromBatch):
    """Cut-paste of two in-distribution images of different classes; see :func:`stitch`.

    Args:
        cut: Range of the cut position (fractions of the side).

    Example:
        >>> import torch
        >>> Stitch()(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), None, 5).shape
        torch.Size([5, 1, 8, 8])
    """

    _options = ("cut",)

    def __init__(self, cut: tuple[float, float] = (0.35, 0.65)) -> None:
        self.cut = _check_cut(cut)

    def _apply(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        return stitch(x, y, self.cut, generator)


class Overlay(_FromBatch):
    """Two in-distribution images of different classes superimposed; see :func:`overlay`.

    Args:
        weight: Range of the mixing weight.

    Example:
        >>> import torch
        >>> Overlay()(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), None, 3).shape
        torch.Size([3, 1, 8, 8])
    """

    _options = ("weight",)

    def __init__(self, weight: tuple[float, float] = (0.4, 0.6)) -> None:
        self.weight = _check_weight(weight)

    def _apply(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        return overlay(x, y, self.weight, generator)


class Rotate(_FromBatch):
    """In-distribution images turned by 90 or 270 degrees; see :func:`rotate`.

    Args:
        angles: Angles to draw from (multiples of 90).

    Example:
        >>> import torch
        >>> Rotate()(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), None, 3).shape
        torch.Size([3, 1, 8, 8])
    """

    _options = ("angles",)

    def __init__(self, angles: Sequence[int] = (90, 270)) -> None:
        self.angles = _check_angles(angles)

    def _apply(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        return rotate(x, self.angles, generator)


class Warp(_FromBatch):
    """In-distribution images bent by a strong random smooth deformation; see :func:`warp`.

    Args:
        strength: Largest displacement at a knot (fraction of half the side), ``[0, 2]``.
        knots: Control points per side, ``[2, MAX_KNOTS]``.

    Raises:
        TypeError: If ``strength`` is not a number or ``knots`` not an int.
        ValueError: If either is outside its range.

    Example:
        >>> import torch
        >>> Warp()(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), None, 3).shape
        torch.Size([3, 1, 8, 8])
    """

    _options = ("strength", "knots")

    def __init__(self, strength: float = 0.4, knots: int = 5) -> None:
        self.strength = check_number(strength, "strength", maximum=2.0)
        self.knots = check_int(knots, "knots", minimum=2, maximum=MAX_KNOTS)

    def _apply(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        return warp(x, self.strength, self.knots, generator)
