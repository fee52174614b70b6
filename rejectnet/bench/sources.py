"""The benchmark's data sources: ``.npz`` files and image folders, converted alike.

Every source becomes float32 ``(N, channels, image_size, image_size)`` in ``[0, 1]``
(:func:`to_unit_range` says how pixel values are scaled, and refuses what is ambiguous),
grayscale is repeated to RGB or RGB turned into luminance (ITU-R 601, as Pillow's
``"L"``), an alpha channel is dropped, and images are resized (not cropped) with
antialiased bilinear interpolation.

Every reader is bounded: ``.npz`` members are checked against their headers before
anything is allocated (:func:`rejectnet.data.load_npz`, never unpickling), IDX files
against their declared dimensions, image files are read only when regular and at most
:data:`MAX_IMAGE_FILE_BYTES`, and an image of more than :data:`MAX_SOURCE_PIXELS`
pixels (a decompression bomb) is refused before it is decoded.
"""

from __future__ import annotations

import gzip
import io
import struct
import warnings
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
    "MAX_CLASSES",
    "MAX_IDX_BYTES",
    "MAX_IMAGE_FILE_BYTES",
    "MAX_IMAGE_SIZE",
    "MAX_SOURCE_PIXELS",
    "MIN_IMAGE_SIZE",
    "InDistribution",
    "convert",
    "load_images",
    "load_in_distribution",
    "load_unlabeled",
    "to_unit_range",
]

MIN_IMAGE_SIZE = 4
"""The smallest image side the benchmark trains on (set ``[data] image_size`` to resize)."""
MAX_IMAGE_SIZE = 1024
"""The largest ``image_size`` (every image is held in memory at that side)."""
MAX_SOURCE_PIXELS = 2**26
"""The most pixels one image file may decode to (8192 x 8192); more is refused unread."""
MAX_IMAGE_FILE_BYTES = 256 * 2**20
"""The largest image file read from a folder."""
MAX_IDX_BYTES = 8 * 2**30
"""The most pixel bytes an IDX file may declare."""
MAX_CLASSES = 100_000
"""The largest class index + 1 a label array may hold."""

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


def _divided(arr: npt.NDArray[Any], by: float) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = np.divide(arr, by, dtype=np.float32)
    return out


def to_unit_range(x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """Pixel values scaled to ``[0, 1]`` when the scale is unambiguous; refused otherwise.

    The rule, by dtype:

    * ``uint8``: divided by 255; ``uint16`` (16-bit PNG/TIFF): divided by 65535;
      ``bool``: 0 or 1 as they are.
    * other integers: values in 0..255 (with a maximum above 1) are divided by 255;
      negative values, values above 255 (12-bit? store them as ``uint16``) and arrays
      holding only 0 and 1 (0/1 or 0/255 data?) are refused.
    * floats: NaN or infinity is refused; values in ``[0, 1]`` are kept; integral values
      in 0..255 with a maximum above 1 are divided by 255; anything else (negative,
      normalised data, non-integral values above 1, values above 255) is refused.
    * anything else (strings, complex numbers): refused.

    Args:
        x: Images of any shape.

    Returns:
        A new float32 array in ``[0, 1]``.

    Raises:
        BenchError: Naming the dtype and range, and what would be accepted.

    Example:
        >>> import numpy as np
        >>> to_unit_range(np.array([0.0, 255.0], np.float32)).tolist()
        [0.0, 1.0]
        >>> to_unit_range(np.array([0, 65535], np.uint16)).tolist()
        [0.0, 1.0]
    """
    arr = np.asarray(x)
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return _divided(arr, 255.0)
    if arr.dtype == np.uint16:
        return _divided(arr, 65535.0)
    if kind == "b":
        return arr.astype(np.float32)
    if kind not in "iuf":
        raise BenchError(
            f"holds {arr.dtype} values, not image pixels (uint8, uint16 or floats in [0, 1])"
        )
    if arr.size == 0:
        return arr.astype(np.float32)
    return _by_range(arr, kind)


def _by_range(arr: npt.NDArray[Any], kind: str) -> npt.NDArray[np.float32]:
    """The rule of :func:`to_unit_range` for integers and floats, read from the values."""
    if kind == "f" and not np.isfinite(arr).all():
        bad = int(np.flatnonzero((~np.isfinite(arr.reshape(len(arr), -1))).any(1))[0])
        raise BenchError(f"image {bad} holds NaN or infinite pixel values")
    lo, hi = float(arr.min()), float(arr.max())
    if kind == "f" and lo >= 0.0 and hi <= 1.0:
        return arr.astype(np.float32)
    whole = kind in "iu" or bool(np.all(arr == np.round(arr)))
    if lo >= 0.0 and 1.0 < hi <= 255.0 and whole:
        return _divided(arr, 255.0)
    if kind in "iu" and lo >= 0 and hi <= 1:
        why = "only 0 and 1: ambiguous (0/1 masks or very dark 0..255 images?)"
    else:
        why = f"values in [{lo:g}, {hi:g}]"
    raise BenchError(
        f"{arr.dtype} pixels with {why}; give uint8 (0..255), uint16 (0..65535), floats in "
        "[0, 1], or whole numbers in 0..255"
    )


def convert(x: npt.NDArray[Any] | torch.Tensor, image_size: int, channels: int) -> torch.Tensor:
    """Images in any common layout to float32 ``(N, channels, image_size, image_size)``.

    Args:
        x: ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with C in {1, 3, 4} (a
            fourth, alpha channel is dropped); values scaled by :func:`to_unit_range`.
        image_size: Output side.
        channels: 1 or 3.

    Returns:
        A new tensor; the input is not modified.

    Raises:
        BenchError: For an unsupported shape or ambiguous pixel values.

    Example:
        >>> import numpy as np
        >>> convert(np.zeros((2, 10, 12, 3), np.uint8), 8, 1).shape
        torch.Size([2, 1, 8, 8])
    """
    arr = np.asarray(x)
    t = torch.from_numpy(to_unit_range(arr))
    if t.ndim == 3:
        t = t.unsqueeze(1)
    elif t.ndim == 4 and t.shape[1] not in (1, 3, 4) and t.shape[-1] in (1, 3, 4):
        t = t.permute(0, 3, 1, 2)
    if t.ndim != 4 or t.shape[1] not in (1, 3, 4):
        raise BenchError(
            f"images must be (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3 "
            f"(or 4: RGBA, alpha dropped), got shape {tuple(arr.shape)}"
        )
    t = t[:, :3].contiguous()
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


def _read_exact(f: Any, n: int, path: Path, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError(f"{str(path)!r} is truncated: {what} needs {n} bytes, found {len(data)}")
    return bytes(data)


def _read_idx(path: Path) -> npt.NDArray[np.uint8]:
    """An IDX file of unsigned bytes (optionally gzipped), bounded by its own header."""
    from rejectnet.files.bounded_reads import open_regular

    limit = MAX_IDX_BYTES if path.suffix != ".gz" else 2**31
    with open_regular(path, max_bytes=limit, what="IDX file") as bf, bf.fileobj() as raw:
        f: Any = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
        try:
            head = _read_exact(f, 4, path, "the IDX magic")
            if head[0:2] != b"\x00\x00" or head[2] != 0x08 or not 1 <= head[3] <= 4:
                raise ValueError(f"{str(path)!r} is not an IDX file of unsigned bytes")
            ndim = head[3]
            dims = struct.unpack(f">{ndim}I", _read_exact(f, 4 * ndim, path, "the header"))
            n = int(np.prod(dims, dtype=object))
            if n > MAX_IDX_BYTES:
                raise ValueError(f"{str(path)!r} declares shape {dims}, over the size limit")
            data = _read_exact(f, n, path, f"shape {dims}")
            if f.read(1):
                raise ValueError(
                    f"{str(path)!r} holds more data than its header declares (shape {dims})"
                )
        except (OSError, EOFError) as err:
            raise ValueError(f"{str(path)!r} is not a readable IDX file ({err})") from None
        finally:
            if f is not raw:
                f.close()
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


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
    """Open an image file, bounded: regular file, size limit, pixel limit before decoding."""
    from PIL import Image, UnidentifiedImageError

    from rejectnet.files.bounded_reads import read_bounded

    try:
        data = read_bounded(path, max_bytes=MAX_IMAGE_FILE_BYTES, what="image file")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > MAX_SOURCE_PIXELS:
                raise BenchError(
                    f"{where}: the image {str(path)!r} is {w}x{h}, more than the "
                    f"{MAX_SOURCE_PIXELS} pixels an image may have; refused without decoding it"
                )
            im.load()
    except BenchError:
        raise
    except (
        OSError,
        ValueError,
        SyntaxError,
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as err:
        why = " ".join(str(err).split()) or type(err).__name__
        raise BenchError(f"{where}: cannot read the image {str(path)!r} ({why})") from None
    return im


_HIGH_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _image_tensor(path: Path, image_size: int, channels: int, where: str) -> torch.Tensor:
    """One image file as float32 ``(channels, image_size, image_size)`` in ``[0, 1]``."""
    from PIL import Image

    im = _open(path, where)
    if im.mode in _HIGH_DEPTH_MODES:  # 16-bit, 32-bit int and float images: scaled, not clipped
        try:
            return convert(np.asarray(im)[None], image_size, channels)[0]
        except BenchError as err:
            raise BenchError(f"{where}: the image {str(path)!r}: {err}") from None
    try:
        im = im.convert("L" if channels == 1 else "RGB")
    except ValueError as err:
        raise BenchError(
            f"{where}: cannot convert the image {str(path)!r} from mode {im.mode} ({err}); "
            "save it as RGB or grayscale"
        ) from None
    if im.size != (image_size, image_size):
        im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
    arr = np.array(im, dtype=np.uint8).reshape(image_size, image_size, channels)
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


def _read_folder_images(
    files: Sequence[Path], image_size: int, channels: int, where: str
) -> torch.Tensor:
    out = torch.empty((len(files), channels, image_size, image_size), dtype=torch.float32)
    for i, f in enumerate(files):
        out[i] = _image_tensor(f, image_size, channels, where)
    return out


def _folder_defaults(files: Sequence[Path], where: str) -> tuple[int, int]:
    first = _open(files[0], where)
    side = _check_side(int(first.size[0]), where, f"the first training image {str(files[0])!r} is")
    channels = 1
    for f in files:
        from PIL import Image

        try:
            with Image.open(f) as im:
                if im.mode not in _GRAY_MODES:
                    channels = 3
                    break
        except Exception:
            continue
    return side, channels


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
    if y.size and int(y.max()) >= MAX_CLASSES:
        raise BenchError(
            f"{where}: {key} holds the label {int(y.max())}; labels must be class indices "
            f"0..C-1 with C <= {MAX_CLASSES}"
        )
    return torch.from_numpy(y.astype(np.int64))


def _check_classes(y: torch.Tensor, where: str) -> None:
    present = torch.unique(y)
    if len(present) < 2:
        raise BenchError(
            f"{where}: the training labels hold {len(present)} class(es) "
            f"({', '.join(str(int(c)) for c in present) or 'none'}); a classifier and its "
            "OOD scores need at least 2"
        )


def _check_side(image_size: int, where: str, what: str) -> int:
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise BenchError(
            f"{where}: {what} {image_size}x{image_size}; set [data] image_size "
            f"({MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}) to resize every image"
        )
    return image_size


def _folder_in_distribution(
    path: Path, image_size: int | None, channels: int | None, where: str
) -> InDistribution:
    """An ImageFolder-style ``train/`` and ``test/`` tree, converted."""
    train = _class_folders(path / "train", where)
    test = _class_folders(path / "test", where)
    extra = sorted(set(test) - set(train))
    if extra:
        raise BenchError(
            f"{where}: test class folder {extra[0]!r} has no train/ counterpart; "
            f"train classes: {', '.join(train)}"
        )
    classes = tuple(train)
    if len(classes) < 2:
        raise BenchError(
            f"{where}: train/ has one class folder ({classes[0]!r}); a classifier and its "
            "OOD scores need at least 2"
        )
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


def _npz_in_distribution(
    path: Path, image_size: int | None, channels: int | None, where: str
) -> InDistribution:
    """An ``.npz`` with ``x_train, y_train, x_test, y_test``, converted."""
    try:
        arrays = load_npz(path, keys=("x_train", "y_train", "x_test", "y_test"))
    except ValueError as err:
        raise BenchError(f"{where}: {err}") from None
    xtr = arrays["x_train"]
    if image_size is None:
        if xtr.ndim < 3:
            raise BenchError(f"{where}: x_train must hold images, got shape {xtr.shape}")
        # the layout rule of convert(): channels first when dim 1 is 1, 3 or 4 (RGBA)
        h, w = xtr.shape[2:4] if xtr.ndim == 4 and xtr.shape[1] in (1, 3, 4) else xtr.shape[1:3]
        if h != w:
            raise BenchError(
                f"{where}: x_train has shape {xtr.shape}: images of {h}x{w} (or a layout other "
                "than (N, H, W), (N, H, W, C), (N, C, H, W) with C = 1, 3 or 4); set [data] "
                "image_size to resize non-square images"
            )
        image_size = _check_side(int(h), where, "images are")
    if channels is None:
        channels = 3 if xtr.ndim == 4 and ({3, 4} & {xtr.shape[1], xtr.shape[-1]}) else 1
    y_tr = _labels(arrays["y_train"], where, "y_train")
    y_te = _labels(arrays["y_test"], where, "y_test")
    _check_classes(y_tr, where)
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
        return _folder_in_distribution(path, image_size, channels, where)
    return _npz_in_distribution(path, image_size, channels, where)


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
            try:
                return convert(arr, image_size, channels)
            except BenchError as err:
                raise BenchError(f"{where}: {err}") from None
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
