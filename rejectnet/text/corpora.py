"""Readers for text data: CLINC150, utterance lists (OOD sets), a sentence pool.

Every read is bounded (a regular file of at most ``max_bytes``; see
:mod:`rejectnet.files.bounded_reads`), parses JSON or plain text only (never a pickle), and fails
with a message naming the file and what is wrong in it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rejectnet.files.bounded_reads import read_bounded

__all__ = [
    "CLINC150_FILE",
    "CLINC150_IN_SCOPE",
    "CLINC150_OUT_OF_SCOPE",
    "MAX_TEXT_BYTES",
    "Clinc150",
    "TextSplit",
    "load_clinc150",
    "read_utterances",
]

MAX_TEXT_BYTES = 256 * 2**20
"""The largest text or JSON file these readers accept."""
CLINC150_FILE = "clinc150.json"
CLINC150_IN_SCOPE = ("train", "val", "test")
"""The labelled in-scope splits (all required)."""
CLINC150_OUT_OF_SCOPE = ("oos_train", "oos_val", "oos_test")
"""The out-of-scope splits (read when present; ``oos_test`` is often held out)."""


@dataclass(frozen=True)
class TextSplit:
    """Texts and their int64 class indices (``None`` for out-of-scope texts)."""

    texts: list[str]
    labels: torch.Tensor | None


@dataclass(frozen=True)
class Clinc150:
    """CLINC150 read by :func:`load_clinc150`.

    Attributes:
        intents: The in-scope intent names; label ``i`` is ``intents[i]`` (sorted).
        splits: Split name -> :class:`TextSplit` (``train``, ``val``, ``test`` and the
            out-of-scope splits present in the file).
    """

    intents: tuple[str, ...]
    splits: dict[str, TextSplit]

    @property
    def num_classes(self) -> int:
        """The number of in-scope intents."""
        return len(self.intents)


def _read_json(path: Path, what: str, max_bytes: int) -> Any:
    raw = read_bounded(path, max_bytes=max_bytes, what=what)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} {str(path)!r} is not valid UTF-8 JSON: {e}") from None


def _pairs(data: Any, split: str, path: Path) -> list[tuple[str, str]]:
    rows = data.get(split)
    if not isinstance(rows, list) or not rows:
        raise ValueError(
            f"{str(path)!r}: split {split!r} must be a non-empty list of [text, intent] pairs"
        )
    out = []
    for i, row in enumerate(rows):
        if not (
            isinstance(row, list)
            and len(row) == 2
            and isinstance(row[0], str)
            and isinstance(row[1], str)
        ):
            raise ValueError(
                f"{str(path)!r}: {split}[{i}] must be a [text, intent] pair of strings, "
                f"got {row!r:.80}"
            )
        out.append((row[0], row[1]))
    return out


def load_clinc150(data_dir: str | Path, *, max_bytes: int = MAX_TEXT_BYTES) -> Clinc150:
    """Read ``clinc150.json`` (Larson et al., 2019; the ``oos+`` layout) from ``data_dir``.

    The file maps split names to lists of ``[text, intent]`` pairs. The in-scope splits
    ``train``, ``val`` and ``test`` are required; the out-of-scope splits (intent
    ``"oos"``) are read when present. Intent ids follow the sorted training intents.

    Args:
        data_dir: The folder holding ``clinc150.json`` (or the file itself).
        max_bytes: The largest file accepted.

    Returns:
        A :class:`Clinc150`.

    Raises:
        FileNotFoundError: If the file does not exist (naming it).
        ValueError: If it is not JSON, lacks a split, holds a malformed pair, an ``oos``
            pair among the in-scope splits, or a val/test intent absent from ``train``.

    Example:
        >>> load_clinc150("no/such/dir")
        Traceback (most recent call last):
        FileNotFoundError: CLINC150 file 'no/such/dir/clinc150.json' does not exist
    """
    p = Path(data_dir)
    path = p if p.suffix == ".json" else p / CLINC150_FILE
    data = _read_json(path, "CLINC150 file", max_bytes)
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object of splits, got {type(data)}")
    pairs = {s: _pairs(data, s, path) for s in CLINC150_IN_SCOPE}
    intents = tuple(sorted({intent for _, intent in pairs["train"]}))
    index = {name: i for i, name in enumerate(intents)}
    if "oos" in index:
        raise ValueError(f"{str(path)!r}: 'train' holds out-of-scope ('oos') pairs")
    splits: dict[str, TextSplit] = {}
    for s, rows in pairs.items():
        unknown = sorted({intent for _, intent in rows} - index.keys())
        if unknown:
            raise ValueError(
                f"{str(path)!r}: split {s!r} has intents absent from 'train': {unknown[:5]}"
            )
        labels = torch.tensor([index[intent] for _, intent in rows], dtype=torch.int64)
        splits[s] = TextSplit([t for t, _ in rows], labels)
    for s in CLINC150_OUT_OF_SCOPE:
        if s in data:
            splits[s] = TextSplit([t for t, _ in _pairs(data, s, path)], None)
    return Clinc150(intents, splits)


def read_utterances(
    path: str | Path, *, what: str = "utterance file", max_bytes: int = MAX_TEXT_BYTES
) -> list[str]:
    """Read a list of texts: a ``.txt`` file (one a line) or a ``.json`` list of strings.

    Blank lines of a ``.txt`` file are skipped; trailing whitespace is stripped.

    Args:
        path: The file.
        what: What the file is, for messages (e.g. ``"--ood wiki"``).
        max_bytes: The largest file accepted.

    Returns:
        The texts (at least one).

    Raises:
        FileNotFoundError: If nothing exists at ``path``.
        ValueError: For another extension, a file larger than ``max_bytes``, invalid
            UTF-8 or JSON, a JSON value that is not a list of strings, or no text.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = Path(d) / "ood.txt"
        ...     _ = p.write_text("what is the weather on mars\\n\\nsing me a song\\n")
        ...     read_utterances(p)
        ['what is the weather on mars', 'sing me a song']
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".txt", ".json"):
        raise ValueError(
            f"{what} {str(p)!r}: expected a .txt file (one text a line) or a .json list of "
            f"strings, got the extension {suffix or '(none)'!r}"
        )
    if suffix == ".json":
        data = _read_json(p, what, max_bytes)
        if not isinstance(data, list):
            raise ValueError(f"{what} {str(p)!r} must hold a JSON list of strings")
        bad = next((i for i, t in enumerate(data) if not isinstance(t, str)), None)
        if bad is not None:
            raise ValueError(f"{what} {str(p)!r}: item {bad} is not a string: {data[bad]!r:.80}")
        texts = [t.strip() for t in data if t.strip()]
    else:
        raw = read_bounded(p, max_bytes=max_bytes, what=what)
        try:
            lines = raw.decode("utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise ValueError(f"{what} {str(p)!r} is not valid UTF-8: {e}") from None
        texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise ValueError(f"{what} {str(p)!r} holds no text")
    return texts
