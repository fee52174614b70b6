"""Datasets for the demo, examples and benchmarks: offline only, never pickled.

* :func:`load_npz` reads the ``.npz`` layout of ``../shared/data`` (uint8 images
  ``x_train, y_train, x_test, y_test``) with ``allow_pickle=False``.
* :func:`demo_data` builds the demo's sets from what ships with the dependencies:
  scikit-learn's 8x8 digits (in-distribution), crops of scikit-learn's ``china.jpg``
  (training outliers), and disjoint OOD test sets: crops of ``flower.jpg``, letters
  rendered with Pillow's built-in font, and uniform noise.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from rejectnet._validation import check_seed

__all__ = [
    "CLEAN_LETTERS",
    "DIGIT_LIKE_LETTERS",
    "DemoData",
    "demo_data",
    "find_fonts",
    "images_to_tensor",
    "letter_dev_sets",
    "MAX_NPZ_BYTES",
    "load_npz",
    "random_crops",
    "rendered_letters",
]


MAX_NPZ_BYTES = 16 * 2**30
"""The largest ``.npz`` :func:`load_npz` reads: archive size and decoded arrays alike."""


def _npz_error(p: Path, why: str) -> ValueError:
    return ValueError(f"{str(p)!r} is not a readable .npz of plain arrays: {why}")


_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"


def _not_a_zip_reason(fh: Any, err: Exception) -> str:
    """Why an archive did not open, from its first bytes: truncated, a lone ``.npy``, other."""
    try:
        fh.seek(0)
        head = fh.read(len(_NPY_MAGIC))
    except OSError:
        return str(err)
    if head.startswith(_ZIP_MAGIC):
        return (
            f"{err}: it starts like a zip archive but its end is missing or damaged "
            "(a truncated copy or download?)"
        )
    if head == _NPY_MAGIC:
        return f"{err}: it is a single .npy array; an .npz is what numpy.savez writes"
    return f"{err}: it does not start like a zip archive (an .npz is what numpy.savez writes)"


def _read_member(zf: Any, info: Any, p: Path, budget: int) -> npt.NDArray[Any]:
    """One ``.npy`` member, its header checked against its size before any allocation."""
    from numpy.lib import format as npy

    name = info.filename.removesuffix(".npy")
    with zf.open(info) as fh:
        version = npy.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npy.read_array_header_2_0(fh)
        else:
            raise _npz_error(p, f"{name!r} has an unknown .npy version {version}")
        if dtype.hasobject:
            raise ValueError(
                f"{str(p)!r}: {name!r} is an object array; object arrays are refused because "
                "loading them would unpickle"
            )
        n = int(np.prod(shape, dtype=object)) * dtype.itemsize
        held = info.file_size - fh.tell()
        if n > budget:
            raise _npz_error(
                p, f"{name!r} declares shape {shape} of {dtype} ({n} bytes), over the limit"
            )
        if n != held:
            raise _npz_error(
                p,
                f"{name!r} declares shape {shape} of {dtype} ({n} bytes) but holds {held} bytes "
                "(truncated or corrupt)",
            )
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = fh.readinto(view[got:])
            if not k:
                raise _npz_error(p, f"{name!r} is truncated ({got} of {n} bytes)")
            got += k
    arr = np.frombuffer(buf, dtype=dtype)
    return arr.reshape(shape, order="F" if fortran else "C")


def load_npz(
    path: str | Path, *, keys: tuple[str, ...] = (), max_bytes: int = MAX_NPZ_BYTES
) -> dict[str, npt.NDArray[Any]]:
    """Load arrays from an ``.npz`` file without unpickling anything, within a memory bound.

    The file must be a regular file (a FIFO or device is refused without reading it).
    Every member's ``.npy`` header is read first and checked against the bytes the member
    holds, so a header declaring more elements than stored, a truncated or corrupt
    archive, or arrays larger than ``max_bytes`` in total are refused before anything
    that size is allocated.

    Args:
        path: The ``.npz`` file.
        keys: Keys that must be present (e.g. ``("x_test",)``).
        max_bytes: The largest archive and the largest total of decoded arrays.

    Returns:
        Key -> array.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not an ``.npz`` of plain arrays (object arrays, corrupt or
            truncated members, declared sizes that disagree with the data), is larger
            than the bound, or a key is missing.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "tiny.npz")
        >>> np.savez(path, x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.array([3, 7]))
        >>> arrays = load_npz(path, keys=("x_test",))
        >>> arrays["x_test"].shape, arrays["y_test"].tolist()
        ((2, 28, 28), [3, 7])
    """
    from rejectnet.files.bounded_reads import open_regular

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"path {str(p)!r} does not exist")
    with open_regular(p, max_bytes=max_bytes, what=".npz file") as bf, bf.fileobj() as fh:
        arrays = _read_archive(fh, p, max_bytes)
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"{str(p)!r} lacks {missing}; it has {sorted(arrays)}")
    return arrays


def _read_archive(fh: Any, p: Path, max_bytes: int) -> dict[str, npt.NDArray[Any]]:
    """Every ``.npy`` member of the open archive ``fh``, within ``max_bytes`` in total."""
    import zipfile
    import zlib

    arrays: dict[str, npt.NDArray[Any]] = {}
    try:
        with zipfile.ZipFile(fh) as zf:
            budget = max_bytes
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                arr = _read_member(zf, info, p, budget)
                budget -= arr.nbytes
                arrays[info.filename.removesuffix(".npy")] = arr
    except zipfile.BadZipFile as err:
        raise _npz_error(p, _not_a_zip_reason(fh, err)) from None
    except (zlib.error, EOFError, OSError) as err:
        raise _npz_error(p, str(err) or type(err).__name__) from None
    except ValueError as err:
        if str(p) in str(err):
            raise
        raise _npz_error(p, str(err)) from None
    return arrays


def images_to_tensor(x: npt.NDArray[Any], scale: float | None = None) -> torch.Tensor:
    """``(N, H, W)`` or ``(N, C, H, W)`` images to float32 ``(N, C, H, W)`` in ``[0, 1]``.

    Args:
        x: Images; uint8 images are divided by 255 unless ``scale`` is given.
        scale: Divide by this instead.

    Returns:
        A new float32 tensor ``(N, C, H, W)``; ``(N, H, W)`` input gets ``C = 1``.

    Example:
        >>> import numpy as np
        >>> t = images_to_tensor(np.full((2, 28, 28), 255, dtype=np.uint8))
        >>> t.shape, t.dtype, float(t.max())
        (torch.Size([2, 1, 28, 28]), torch.float32, 1.0)
    """
    t = torch.from_numpy(np.array(x, dtype=np.float32))
    if scale is None:
        scale = 255.0 if x.dtype == np.uint8 else 1.0
    t = t / scale
    return t.unsqueeze(1) if t.ndim == 3 else t


def random_crops(
    image: npt.NDArray[Any],
    n: int,
    size: int,
    rng: np.random.Generator,
    *,
    min_side: int | None = None,
    max_side: int | None = None,
) -> torch.Tensor:
    """Random square crops of a grayscale image, resized to ``size`` x ``size``.

    Args:
        image: ``(H, W)`` or ``(H, W, 3)`` image (any range; rescaled to ``[0, 1]``).
        n: Number of crops.
        size: Output side.
        rng: Random generator.
        min_side: Smallest crop side (default ``size``).
        max_side: Largest crop side (default a quarter of the image's smaller side).

    Returns:
        ``(n, 1, size, size)`` float32 crops in ``[0, 1]``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> photo = rng.integers(0, 256, size=(64, 64, 3))
        >>> random_crops(photo, n=5, size=8, rng=rng).shape
        torch.Size([5, 1, 8, 8])
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    img = (img - img.min()) / max(float(img.max() - img.min()), 1e-8)
    h, w = img.shape
    lo = min_side or size
    hi = max(max_side or min(h, w) // 4, lo)
    src = torch.from_numpy(img)[None, None]
    out = torch.empty(n, 1, size, size)
    for i in range(n):
        side = int(rng.integers(lo, hi + 1))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = src[:, :, top : top + side, left : left + side]
        out[i] = F.interpolate(crop, size=(size, size), mode="area")[0]
    return out


DIGIT_LIKE_LETTERS = "oOlISsZzBbgq"
"""Letters that Pillow's built-in font draws like digits (o O -> 0, l I -> 1, S s -> 5,
Z z -> 2, B -> 8, b -> 6, g q -> 9): no detector can tell them from digits, so they cap
what any method reaches on :func:`rendered_letters`' default set."""

CLEAN_LETTERS = "".join(c for c in string.ascii_letters if c not in DIGIT_LIKE_LETTERS)
"""A-Z / a-z without :data:`DIGIT_LIKE_LETTERS` (40 letters)."""

_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts", "C:/Windows/Fonts")


def find_fonts(pattern: str = "DejaVu", dirs: Sequence[str | Path] = _FONT_DIRS) -> list[Path]:
    """TrueType font files on this machine whose file name contains ``pattern``.

    Args:
        pattern: Case-insensitive part of the file name (``""``: every ``.ttf``).
        dirs: Folders searched recursively (missing ones are skipped).

    Returns:
        Sorted paths (possibly empty).

    Example:
        >>> fonts = find_fonts("DejaVuSans")
        >>> all(f.suffix == ".ttf" for f in fonts)
        True
    """
    found: set[Path] = set()
    for d in dirs:
        root = Path(d)
        if root.is_dir():
            found.update(f for f in root.rglob("*.ttf") if pattern.lower() in f.name.lower())
    return sorted(found)


def _fit_to_box(img: torch.Tensor, box: int, size: int) -> torch.Tensor:
    """MNIST's framing: the glyph's bounding box scaled so its longer side is ``box``
    pixels, then placed in a ``size`` x ``size`` image with its centre of mass centred."""
    rows = torch.nonzero(img.amax(dim=1) > 0.05).flatten()
    cols = torch.nonzero(img.amax(dim=0) > 0.05).flatten()
    if len(rows) == 0:
        return torch.zeros(size, size)
    crop = img[int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]
    h, w = crop.shape
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = F.interpolate(crop[None, None], size=(nh, nw), mode="area")[0, 0]
    small = small / small.max().clamp_min(1e-8)
    mass = small.sum().clamp_min(1e-8)
    cy = float((small.sum(dim=1) * torch.arange(nh)).sum() / mass)
    cx = float((small.sum(dim=0) * torch.arange(nw)).sum() / mass)
    top = min(max(round(size / 2 - 0.5 - cy), 0), size - nh)
    left = min(max(round(size / 2 - 0.5 - cx), 0), size - nw)
    out = torch.zeros(size, size)
    out[top : top + nh, left : left + nw] = small
    return out


def rendered_letters(
    n: int,
    size: int,
    rng: np.random.Generator,
    *,
    letters: str = string.ascii_letters,
    fonts: Sequence[str | Path] | None = None,
    stroke: tuple[int, int] = (0, 0),
    fit_box: int | None = None,
) -> torch.Tensor:
    """Letters drawn white on black (needs Pillow); a near-OOD dev set for digit models.

    With the default arguments: A-Z / a-z in Pillow's built-in font, centred with small
    random shifts (the same images for the same ``rng`` as ever). The keyword arguments
    build other dev variants: fewer letters (e.g. :data:`CLEAN_LETTERS`, without the
    letters drawn like digits), other fonts (:func:`find_fonts`), thicker strokes, and
    MNIST's framing (``fit_box=20``).

    Args:
        n: Number of images.
        size: Output side.
        rng: Random generator (picks the letters, fonts, stroke widths and shifts).
        letters: Characters to draw from, uniformly.
        fonts: TrueType font files to draw from, uniformly (``None``: Pillow's built-in
            font).
        stroke: Inclusive range of extra stroke width, in pixels of the 4x canvas
            (``(0, 0)``: the font's own strokes).
        fit_box: Scale each glyph so its longer side is this many pixels and centre it
            by its centre of mass, as MNIST's digits are (20 in 28); ``None``: the
            glyph at the font's size, centred on the canvas.

    Returns:
        ``(n, 1, size, size)`` float32 images in ``[0, 1]``.

    Raises:
        ValueError: If ``letters`` or ``fonts`` is empty, ``stroke`` is not a range
            ``0 <= lo <= hi``, or ``fit_box`` is not in ``[1, size]``.

    Example:
        >>> import numpy as np
        >>> x = rendered_letters(3, 28, np.random.default_rng(0))
        >>> x.shape, float(x.max())
        (torch.Size([3, 1, 28, 28]), 1.0)
        >>> clean = rendered_letters(2, 28, np.random.default_rng(0), letters=CLEAN_LETTERS,
        ...                          stroke=(2, 6), fit_box=20)
        >>> clean.shape
        torch.Size([2, 1, 28, 28])
    """
    from PIL import ImageFont

    _check_letter_options(letters, fonts, stroke, fit_box, size)
    canvas = 4 * size
    font_px = int(canvas * 1.1) if fit_box is None else int(canvas * 0.7)
    loaded: list[Any]
    if fonts is None:
        loaded = [ImageFont.load_default(size=font_px)]
    else:
        loaded = [ImageFont.truetype(str(f), size=font_px) for f in fonts]
    out = torch.empty(n, 1, size, size)
    for i in range(n):
        ch = letters[int(rng.integers(len(letters)))]
        font = loaded[0] if fonts is None else loaded[int(rng.integers(len(loaded)))]
        width = 0 if stroke[1] == 0 else int(rng.integers(stroke[0], stroke[1] + 1))
        dx, dy = (int(v) for v in rng.integers(-4, 5, size=2))
        t = _draw_glyph(ch, font, width, (dx, dy), canvas)
        if fit_box is not None:
            out[i, 0] = _fit_to_box(t, fit_box, size)
            continue
        small = F.interpolate(t[None, None], size=(size, size), mode="area")[0]
        out[i] = small / small.max().clamp_min(1e-8)
    return out


def _check_letter_options(
    letters: Any, fonts: Sequence[str | Path] | None, stroke: Any, fit_box: Any, size: int
) -> None:
    """The keyword arguments of :func:`rendered_letters` (ValueError naming the bad one)."""
    if not isinstance(letters, str) or not letters:
        raise ValueError(f"letters must be a non-empty string, got {letters!r}")
    if fonts is not None and len(fonts) == 0:
        raise ValueError("fonts must be None (Pillow's built-in font) or a non-empty list of files")
    lo_s, hi_s = stroke
    if not (0 <= lo_s <= hi_s):
        raise ValueError(f"stroke must be a range (lo, hi) with 0 <= lo <= hi, got {stroke!r}")
    if fit_box is not None and not (1 <= fit_box <= size):
        raise ValueError(f"fit_box must be None or in [1, size={size}], got {fit_box!r}")


def _draw_glyph(
    ch: str, font: Any, width: int, shift: tuple[int, int], canvas: int
) -> torch.Tensor:
    """One character drawn white on a black ``canvas`` square, shifted from the centre;
    ``(canvas, canvas)`` float32 in ``[0, 1]``."""
    from PIL import Image, ImageDraw

    im = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(im).text(
        (canvas / 2 + shift[0], canvas / 2 + shift[1]),
        ch,
        fill=255,
        font=font,
        anchor="mm",
        stroke_width=width,
        stroke_fill=255,
    )
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)


def letter_dev_sets(n: int, size: int = 28, seed: int = 123) -> dict[str, torch.Tensor]:
    """The rendered-letter near-OOD dev sets, by name (for choosing settings, not testing).

    * ``"letters"``: :func:`rendered_letters` with its defaults (A-Z / a-z, built-in
      font), about a quarter of them drawn like digits;
    * ``"letters-clean"``: the same font and framing, :data:`CLEAN_LETTERS` only;
    * ``"letters-thick"``: built-in font, clean letters, strokes 0-6 canvas pixels
      thicker, fitted to a 20x20 box like MNIST;
    * ``"letters-fonts"``: clean letters in the DejaVu fonts found on this machine
      (sans, serif, mono; regular, bold, oblique), strokes 0-4 thicker, fitted to 20x20
      (absent when no such font is installed).

    Args:
        n: Images per set.
        size: Image side.
        seed: Each set draws from ``numpy.random.default_rng(seed)``.

    Returns:
        Name -> ``(n, 1, size, size)`` float32 images in ``[0, 1]``.

    Example:
        >>> sets = letter_dev_sets(4)
        >>> sorted(sets)[:3], sets["letters-clean"].shape
        (['letters', 'letters-clean', 'letters-fonts'], torch.Size([4, 1, 28, 28]))
    """
    check_seed(seed)
    rng = np.random.default_rng
    sets = {
        "letters": rendered_letters(n, size, rng(seed)),
        "letters-clean": rendered_letters(n, size, rng(seed), letters=CLEAN_LETTERS),
        "letters-thick": rendered_letters(
            n, size, rng(seed), letters=CLEAN_LETTERS, stroke=(0, 6), fit_box=round(size * 20 / 28)
        ),
    }
    fonts = [f for f in find_fonts("DejaVu") if "ExtraLight" not in f.name and "Math" not in f.name]
    if fonts:
        sets["letters-fonts"] = rendered_letters(
            n,
            size,
            rng(seed),
            letters=CLEAN_LETTERS,
            fonts=fonts,
            stroke=(0, 4),
            fit_box=round(size * 20 / 28),
        )
    return dict(sorted(sets.items()))


@dataclass
class DemoData:
    """The demo's datasets (all tensors ``(N, 1, 8, 8)`` in ``[0, 1]``).

    Attributes:
        train: Labeled digits for stage one and fine-tuning.
        val: Held-out labeled digits, for calibration.
        test: Labeled digits for the evaluation.
        outliers: Unlabeled training outliers.
        ood_test: OOD test set name -> images, never used in training.

    Example:
        >>> data = demo_data(n_outliers=10, n_ood=5)
        >>> len(data.train), data.outliers.shape, sorted(data.ood_test)
        (1078, torch.Size([10, 1, 8, 8]), ['letters', 'noise', 'photo'])
    """

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    outliers: torch.Tensor
    ood_test: dict[str, torch.Tensor]


def demo_data(seed: int = 0, n_outliers: int = 6000, n_ood: int = 600) -> DemoData:
    """Build the demo's data from files that ship with scikit-learn and Pillow.

    In-distribution: scikit-learn's 1,797 8x8 digits, split 60/15/25 into train, val
    (for calibration) and test, stratified. Training outliers: crops of ``china.jpg``.
    OOD test sets, disjoint from the training outliers: crops of ``flower.jpg``
    (``"photo"``), rendered letters (``"letters"``) and uniform noise (``"noise"``).

    Args:
        seed: Seed of the split and of the crops, letters and noise.
        n_outliers: Number of training outliers.
        n_ood: Size of each OOD test set.

    Returns:
        The datasets; see :class:`DemoData`.

    Example:
        >>> data = demo_data(seed=0, n_outliers=20, n_ood=10)
        >>> len(data.train), len(data.val), len(data.test)
        (1078, 269, 450)
        >>> {name: len(x) for name, x in data.ood_test.items()}
        {'photo': 10, 'letters': 10, 'noise': 10}
    """
    from sklearn.datasets import load_digits, load_sample_images
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(check_seed(seed))
    digits = load_digits()
    x = images_to_tensor(digits.images.astype(np.float32), scale=16.0)
    y = torch.from_numpy(digits.target.astype(np.int64))
    idx = np.arange(len(y))
    tr, rest = train_test_split(idx, train_size=0.6, stratify=digits.target, random_state=seed)
    va, te = train_test_split(
        rest, train_size=0.375, stratify=digits.target[rest], random_state=seed
    )
    photos = load_sample_images()
    names = [Path(f).name for f in photos.filenames]
    china = photos.images[names.index("china.jpg")]
    flower = photos.images[names.index("flower.jpg")]
    return DemoData(
        train=TensorDataset(x[tr], y[tr]),
        val=TensorDataset(x[va], y[va]),
        test=TensorDataset(x[te], y[te]),
        outliers=random_crops(china, n_outliers, 8, rng),
        ood_test={
            "photo": random_crops(flower, n_ood, 8, rng),
            "letters": rendered_letters(n_ood, 8, rng),
            "noise": torch.from_numpy(rng.random((n_ood, 1, 8, 8), dtype=np.float32)),
        },
    )
