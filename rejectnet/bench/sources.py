"""The benchmark's data sources: ``.npz`` files and image folders, converted alike.

Every source becomes float32 ``(N, channels, image_size, image_size)`` in ``[0, 1]``:
uint8 arrays are divided by 255, grayscale is repeated to RGB or RGB turned into
luminance (ITU-R 601, as Pillow's ``"L"``), and images are resized (not cropped) with
antialiased bilinear interpolation. Folder images are read with Pillow; ``.npz`` files
are read without unpickling anything.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from rejectnet.bench.errors import BenchError
from rejectnet.data import load_npz

__all__ = [
    "IMAGE_EXTENSIONS",
    "InDistribution",
    "convert",
    "load_images",
    "load_in_distribution",
    "load_unlabeled",
]

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)
"""File extensions read as images in folders (case-insensitive)."""
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F", "P;L"}


@dataclass(frozen=True)
class InDistribution:
    """Labeled in-distribution data, converted.

    Attributes:
        x_train: ``(N, C, S, S)`` float32 training images in ``[0, 1]``.
        y_train: ``(N,)`` int64 labels in ``[0, num_classes)``.
        x_test: Test images, as ``x_train``.
        y_test: Test labels.
        classes: Class names (folder names, or ``"0"``, ``"1"``... for an ``.npz``).
        image_size: The side ``S``.
        channels: 1 or 3.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    image_size: int
    channels: int

    @property
    def num_classes(self) -> int:
        """Number of classes C."""
        return len(self.classes)


def convert(x: npt.NDArray[Any] | torch.Tensor, image_size: int, channels: int) -> torch.Tensor:
    """Images in any common layout to float32 ``(N, channels, image_size, image_size)``.

    Args:
        x: ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with C in {1, 3}; uint8
            (0..255) or float (0..1).
        image_size: Output side.
        channels: 1 or 3.

    Returns:
        A new tensor; the input is not modified.

    Raises:
        BenchError: For an unsupported shape.

    Example:
        >>> import numpy as np
        >>> convert(np.zeros((2, 10, 12, 3), np.uint8), 8, 1).shape
        torch.Size([2, 1, 8, 8])
    """
    arr = np.asarray(x)
    t = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))
    if arr.dtype == np.uint8:
        t = t / 255.0
    if t.ndim == 3:
        t = t.unsqueeze(1)
    elif t.ndim == 4 and t.shape[1] not in (1, 3) and t.shape[-1] in (1, 3):
        t = t.permute(0, 3, 1, 2).contiguous()
    if t.ndim != 4 or t.shape[1] not in (1, 3):
        raise BenchError(
            f"images must be (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3, "
            f"got shape {tuple(arr.shape)}"
        )
    if t.shape[1] != channels:
        if channels == 3:
            t = t.repeat(1, 3, 1, 1)
        else:
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            t = (t * w).sum(1, keepdim=True)
    if tuple(t.shape[2:]) != (image_size, image_size):
        t = F.interpolate(
            t, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
        ).clamp_(0.0, 1.0)
    return t


def _read_idx(path: Path) -> npt.NDArray[np.uint8]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{str(path)!r} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{str(path)!r} is truncated: expected shape {dims}")
    return arr.reshape(dims)


def load_images(path: str | Path, split: str = "test") -> npt.NDArray[np.uint8]:
    """Images of one split from an ``.npz`` file or a torchvision-format dataset folder.

    Args:
        path: An ``.npz`` with ``x_<split>`` (uint8 ``(N, H, W)``), or a folder holding
            the IDX files torchvision's MNIST-style datasets use
            (``t10k-images-idx3-ubyte[.gz]`` for test, ``train-images-idx3-ubyte[.gz]``
            for train), searched recursively (e.g. ``KMNIST/raw``).
        split: ``"test"`` or ``"train"``.

    Returns:
        uint8 images ``(N, H, W)``.

    Raises:
        FileNotFoundError: If the path or the IDX file does not exist.
        ValueError: If the file holds no such split.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "letters.npz")
        >>> np.savez(path, x_test=np.zeros((3, 28, 28), np.uint8))
        >>> load_images(path).shape
        (3, 28, 28)
    """
    p = Path(path)
    if p.is_dir():
        stem = "t10k-images-idx3-ubyte" if split == "test" else "train-images-idx3-ubyte"
        found = sorted(p.rglob(f"{stem}*"))
        if not found:
            raise FileNotFoundError(f"no {stem}[.gz] under the folder {str(p)!r}")
        return _read_idx(found[0])
    key = f"x_{split}"
    return np.asarray(load_npz(p, keys=(key,))[key])


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _open(path: Path, where: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
    except (OSError, UnidentifiedImageError) as err:
        raise BenchError(f"{where}: cannot read the image {str(path)!r} ({err})") from None
    return im


def _read_folder_images(
    files: Sequence[Path], image_size: int, channels: int, where: str
) -> torch.Tensor:
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(files), image_size, image_size, channels), dtype=np.uint8)
    for i, f in enumerate(files):
        im = _open(f, where).convert(mode)
        if im.size != (image_size, image_size):
            im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
        out[i] = np.asarray(im, dtype=np.uint8).reshape(image_size, image_size, channels)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def _folder_defaults(files: Sequence[Path], where: str) -> tuple[int, int]:
    first = _open(files[0], where)
    channels = 1
    for f in files:
        from PIL import Image

        with Image.open(f) as im:
            if im.mode not in _GRAY_MODES:
                channels = 3
                break
    return int(first.size[0]), channels


def _class_folders(split_dir: Path, where: str) -> dict[str, list[Path]]:
    if not split_dir.is_dir():
        raise BenchError(
            f"{where}: {str(split_dir)!r} is missing; an image folder needs train/ and test/, "
            "each with one sub-folder of images per class"
        )
    classes = sorted(p for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise BenchError(f"{where}: {str(split_dir)!r} has no class folders")
    found: dict[str, list[Path]] = {}
    for c in classes:
        files = _image_files(c)
        if not files:
            raise BenchError(
                f"{where}: class folder {str(c)!r} is empty (no {'/'.join(IMAGE_EXTENSIONS[:4])}"
                "... image files)"
            )
        found[c.name] = files
    return found


def _labels(y: npt.NDArray[Any], where: str, key: str) -> torch.Tensor:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise BenchError(
            f"{where}: {key} must be a 1-D array of integer class indices >= 0, got "
            f"{y.dtype} of shape {y.shape}"
        )
    return torch.from_numpy(y.astype(np.int64))


def load_in_distribution(
    path: Path, image_size: int | None = None, channels: int | None = None, where: str = "[data] id"
) -> InDistribution:
    """Labeled train and test images from an ``.npz`` or an ImageFolder-style folder.

    Args:
        path: An ``.npz`` with ``x_train, y_train, x_test, y_test``, or a folder with
            ``train/`` and ``test/``, each holding one sub-folder of images per class
            (``torchvision.datasets.ImageFolder`` layout; classes are the sorted folder
            names of ``train/``).
        image_size: Output side; default from the data (an ``.npz``'s square images, or
            the width of a folder's first training image).
        channels: 1 or 3; default from the data (for a folder: 3 if any training image is
            in colour).
        where: The config field, for error messages.

    Returns:
        The converted data.

    Raises:
        BenchError: For missing keys, bad labels, an empty or missing class folder, a
            test class unknown to train, or an unreadable image.
    """
    if path.is_dir():
        train = _class_folders(path / "train", where)
        test = _class_folders(path / "test", where)
        extra = sorted(set(test) - set(train))
        if extra:
            raise BenchError(
                f"{where}: test class folder {extra[0]!r} has no train/ counterpart; "
                f"train classes: {', '.join(train)}"
            )
        classes = tuple(train)
        files_tr = [(f, i) for i, c in enumerate(classes) for f in train[c]]
        files_te = [(f, classes.index(c)) for c in test for f in test[c]]
        if image_size is None or channels is None:
            size0, ch0 = _folder_defaults([f for f, _ in files_tr], where)
            image_size = image_size or size0
            channels = channels or ch0
        x_tr = _read_folder_images([f for f, _ in files_tr], image_size, channels, where)
        x_te = _read_folder_images([f for f, _ in files_te], image_size, channels, where)
        y_tr = torch.tensor([i for _, i in files_tr], dtype=torch.int64)
        y_te = torch.tensor([i for _, i in files_te], dtype=torch.int64)
        return InDistribution(x_tr, y_tr, x_te, y_te, classes, image_size, channels)
    try:
        arrays = load_npz(path, keys=("x_train", "y_train", "x_test", "y_test"))
    except ValueError as err:
        raise BenchError(f"{where}: {err}") from None
    xtr = arrays["x_train"]
    if image_size is None:
        if xtr.ndim < 3:
            raise BenchError(f"{where}: x_train must hold images, got shape {xtr.shape}")
        h, w = xtr.shape[1:3] if xtr.ndim == 3 or xtr.shape[-1] in (1, 3) else xtr.shape[2:4]
        if h != w:
            raise BenchError(f"{where}: images are {h}x{w}; set [data] image_size")
        image_size = int(h)
    if channels is None:
        channels = 3 if xtr.ndim == 4 and 3 in (xtr.shape[1], xtr.shape[-1]) else 1
    y_tr = _labels(arrays["y_train"], where, "y_train")
    y_te = _labels(arrays["y_test"], where, "y_test")
    num_classes = int(y_tr.max()) + 1 if len(y_tr) else 0
    if len(y_te) and int(y_te.max()) >= num_classes:
        raise BenchError(
            f"{where}: y_test holds class {int(y_te.max())}, but y_train only 0..{num_classes - 1}"
        )
    try:
        x_train = convert(xtr, image_size, channels)
        x_test = convert(arrays["x_test"], image_size, channels)
    except BenchError as err:
        raise BenchError(f"{where}: {err}") from None
    if len(x_train) != len(y_tr) or len(x_test) != len(y_te):
        raise BenchError(
            f"{where}: x_train/y_train or x_test/y_test differ in length "
            f"({len(x_train)}/{len(y_tr)}, {len(x_test)}/{len(y_te)})"
        )
    classes = tuple(str(i) for i in range(num_classes))
    return InDistribution(x_train, y_tr, x_test, y_te, classes, image_size, channels)


def load_unlabeled(
    path: Path, image_size: int, channels: int, where: str, prefer: str = "x_test"
) -> torch.Tensor:
    """Unlabeled images (an OOD set or the outlier pool), converted.

    Args:
        path: An ``.npz`` (``prefer``, else the other of ``x_test`` / ``x_train``), a
            folder of images searched recursively (any layout, e.g. ImageFolder), or a
            torchvision MNIST-style folder of IDX files.
        image_size: Output side.
        channels: 1 or 3.
        where: The config field, for error messages.
        prefer: ``"x_test"`` (OOD test sets) or ``"x_train"`` (the outlier pool).

    Returns:
        ``(N, channels, image_size, image_size)`` float32 in ``[0, 1]``.

    Raises:
        BenchError: If the file has neither key, the folder holds no images, or an image
            cannot be read.
    """
    if path.is_dir():
        files = _image_files(path)
        if files:
            return _read_folder_images(files, image_size, channels, where)
        if any(path.rglob("*-idx3-ubyte*")):
            split = "test" if prefer == "x_test" else "train"
            try:
                arr = load_images(path, split)
            except FileNotFoundError:
                arr = load_images(path, "train" if split == "test" else "test")
            except ValueError as err:
                raise BenchError(f"{where}: {err}") from None
            return convert(arr, image_size, channels)
        raise BenchError(
            f"{where}: the folder {str(path)!r} holds no image files "
            f"({', '.join(IMAGE_EXTENSIONS)}) and no IDX files"
        )
    other = "x_train" if prefer == "x_test" else "x_test"
    try:
        arrays = load_npz(path)
    except ValueError as err:
        raise BenchError(f"{where}: {err}") from None
    key = prefer if prefer in arrays else other
    if key not in arrays:
        raise BenchError(
            f"{where}: {str(path)!r} has neither {prefer} nor {other}; it has {sorted(arrays)}"
        )
    try:
        return convert(arrays[key], image_size, channels)
    except BenchError as err:
        raise BenchError(f"{where}: {err}") from None
