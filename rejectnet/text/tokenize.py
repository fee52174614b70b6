"""Tokenizers trained on your own utterances, and batches of token ids for a model.

Nothing is downloaded: :func:`train_tokenizer` builds a lower-casing WordPiece tokenizer
(its vocabulary counted on the texts you give it, the same in every process) or trains a
BPE one, with the `tokenizers <https://huggingface.co/docs/tokenizers>`_ library and the
special tokens ``[PAD]`` (id 0), ``[UNK]``, ``[CLS]``, ``[SEP]`` and ``[MASK]`` (ids
1-4), and wraps every text as ``[CLS] ... [SEP]``. It is
saved and loaded as the library's JSON file (never a pickle). :func:`encode` turns texts
into the two named tensors a Hugging Face encoder takes, ``input_ids`` and
``attention_mask`` (int64, right-padded with the pad id to the longest text of the
batch); it truncates only to an explicit ``max_length``, and says so with a warning
that counts the texts it cut.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from rejectnet._validation import check_int
from rejectnet.files.bounded_reads import read_bounded

__all__ = [
    "MAX_TOKENIZER_BYTES",
    "SPECIAL_TOKENS",
    "encode",
    "encode_ids",
    "load_tokenizer",
    "pad_ids",
    "save_tokenizer",
    "train_tokenizer",
]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
"""The special tokens, in id order: ``[PAD]`` is 0, ``[MASK]`` is 4."""
MAX_TOKENIZER_BYTES = 64 * 2**20
"""The largest tokenizer JSON file :func:`load_tokenizer` reads."""

Tokenizer = Any  # tokenizers.Tokenizer (the library is imported where it is used)


def _check_texts(texts: Any, name: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a sequence of str, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(t).__name__} {t!r}")
    return list(texts)


def train_tokenizer(
    texts: Sequence[str],
    vocab_size: int = 8000,
    *,
    model: Literal["wordpiece", "bpe"] = "wordpiece",
    min_frequency: int = 1,
) -> Tokenizer:
    """Train a lower-casing tokenizer on ``texts`` (nothing is downloaded).

    ``"wordpiece"`` is deterministic (the same vocabulary and ids in every process):
    the special tokens, every character (alone, then as a ``##`` piece; most frequent
    first), then whole words by count (ties alphabetical) up to ``vocab_size``; other
    words split into the longest known pieces. ``"bpe"`` is the ``tokenizers`` BPE
    trainer, whose ties can break differently in another process.

    Args:
        texts: Training texts (e.g. the training utterances only, never test data).
        vocab_size: The largest vocabulary, special tokens included (the result may be
            smaller when the texts hold fewer distinct pieces).
        model: ``"wordpiece"`` (BERT's tokenization) or ``"bpe"``.
        min_frequency: Words (or BPE pieces) seen fewer times are not added.

    Returns:
        A ``tokenizers.Tokenizer`` whose ``encode`` wraps a text as ``[CLS] ... [SEP]``.

    Raises:
        TypeError: If ``texts`` is not a sequence of str or a count is not an int.
        ValueError: If ``texts`` is empty, ``vocab_size`` < 16, or ``model`` unknown.

    Example:
        >>> tok = train_tokenizer(["book a flight", "play some jazz"] * 5, vocab_size=100)
        >>> tok.token_to_id("[PAD]"), tok.encode("Book a FLIGHT").tokens
        (0, ['[CLS]', 'book', 'a', 'flight', '[SEP]'])
    """
    from tokenizers import Tokenizer as _Tokenizer
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

    data = _check_texts(texts, "texts")
    if not data:
        raise ValueError("texts is empty; train the tokenizer on at least one text")
    check_int(vocab_size, "vocab_size", minimum=16)
    check_int(min_frequency, "min_frequency")
    if model not in ("wordpiece", "bpe"):
        raise ValueError(f"model must be 'wordpiece' or 'bpe', got {model!r}")
    norm, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    if model == "wordpiece":
        vocab = _wordpiece_vocab(data, norm, pre, vocab_size, min_frequency)
        tok = _Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
        tok.normalizer, tok.pre_tokenizer, tok.decoder = norm, pre, decoders.WordPiece()
    else:
        tok = _Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.normalizer, tok.pre_tokenizer = norm, pre
        tok.train_from_iterator(data, trainers.BpeTrainer(vocab_size=vocab_size,
            min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
            show_progress=False))  # fmt: skip
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return tok


def _wordpiece_vocab(
    texts: list[str], normalizer: Any, pre: Any, vocab_size: int, min_frequency: int
) -> dict[str, int]:
    """Specials, characters (alone, then as ``##`` pieces; most frequent first), then
    words by count (ties alphabetical), cut at ``vocab_size``: the same for the same texts."""
    words: Counter[str] = Counter()
    for text in texts:
        words.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    chars: Counter[str] = Counter()
    for w, n in words.items():
        for c in w:
            chars[c] += n
    alphabet = sorted(chars, key=lambda c: (-chars[c], c))
    pieces = [*SPECIAL_TOKENS, *alphabet, *(f"##{c}" for c in alphabet)]
    known = set(pieces)
    frequent = sorted(
        (w for w, n in words.items() if n >= min_frequency and w not in known),
        key=lambda w: (-words[w], w),
    )
    ordered = (pieces + frequent)[:vocab_size]
    return {t: i for i, t in enumerate(ordered)}


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> Path:
    """Write ``tokenizer`` as the ``tokenizers`` library's JSON file.

    Args:
        tokenizer: A ``tokenizers.Tokenizer``.
        path: The file to write (its folder must exist).

    Returns:
        The path written.

    Example:
        >>> import tempfile
        >>> tok = train_tokenizer(["hello there", "hi"], vocab_size=50)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = save_tokenizer(tok, Path(d) / "tok.json")
        ...     load_tokenizer(p).encode("hello").tokens
        ['[CLS]', 'hello', '[SEP]']
    """
    p = Path(path)
    p.write_text(tokenizer.to_str(), encoding="utf-8")
    return p


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer JSON file written by :func:`save_tokenizer` (a bounded read).

    Args:
        path: The JSON file.

    Returns:
        The ``tokenizers.Tokenizer``.

    Raises:
        FileNotFoundError: If nothing exists at ``path``.
        ValueError: If the file is not a regular file, is larger than
            :data:`MAX_TOKENIZER_BYTES`, is not a tokenizer JSON, or lacks a special token.

    Example:
        >>> load_tokenizer("missing.json")
        Traceback (most recent call last):
        FileNotFoundError: tokenizer file 'missing.json' does not exist
    """
    from tokenizers import Tokenizer as _Tokenizer

    raw = read_bounded(Path(path), max_bytes=MAX_TOKENIZER_BYTES, what="tokenizer file")
    try:
        tok = _Tokenizer.from_str(raw.decode("utf-8"))
    except Exception as e:  # the library raises its own Exception subclass
        raise ValueError(f"tokenizer file {str(path)!r} is not a tokenizer JSON: {e}") from None
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        raise ValueError(f"tokenizer file {str(path)!r} lacks the special tokens {missing}")
    return tok


def encode_ids(
    tokenizer: Tokenizer, texts: Sequence[str], max_length: int | None = None
) -> tuple[list[list[int]], int]:
    """Token ids of every text (``[CLS] ... [SEP]``), unpadded.

    Args:
        tokenizer: A tokenizer from :func:`train_tokenizer` or :func:`load_tokenizer`.
        texts: The texts.
        max_length: Cut longer sequences to this many ids (keeping ``[SEP]`` last);
            ``None`` never cuts.

    Returns:
        The id lists and how many texts were cut.

    Example:
        >>> tok = train_tokenizer(["a b c d e f"], vocab_size=40)
        >>> ids, cut = encode_ids(tok, ["a b c d e f", "a"], max_length=4)
        >>> [len(i) for i in ids], cut
        ([4, 3], 1)
    """
    data = _check_texts(texts, "texts")
    check_int(max_length, "max_length", minimum=3, allow_none=True)
    ids = [e.ids for e in tokenizer.encode_batch(data)] if data else []
    cut = 0
    if max_length is not None:
        for i, seq in enumerate(ids):
            if len(seq) > max_length:
                ids[i] = seq[: max_length - 1] + seq[-1:]
                cut += 1
    return ids, cut


def pad_ids(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad id sequences to the longest one: ``input_ids`` and ``attention_mask``.

    Args:
        seqs: One id sequence per text (at least one, none empty).
        pad_id: The padding id (the tokenizer's ``[PAD]``, 0 for :func:`train_tokenizer`).

    Returns:
        ``{"input_ids": (N, L) int64, "attention_mask": (N, L) int64}``; the mask is 1 on
        real tokens and 0 on padding.

    Raises:
        ValueError: If ``seqs`` or one of its sequences is empty.

    Example:
        >>> pad_ids([[2, 7, 3], [2, 3]])["attention_mask"].tolist()
        [[1, 1, 1], [1, 1, 0]]
    """
    if len(seqs) == 0:
        raise ValueError("seqs is empty; a batch needs at least one sequence")
    lengths = [len(s) for s in seqs]
    if min(lengths) == 0:
        raise ValueError(f"seqs[{lengths.index(0)}] is empty; every sequence needs a token")
    ids = torch.full((len(seqs), max(lengths)), pad_id, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.int64)
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def encode(
    tokenizer: Tokenizer, texts: Sequence[str], max_length: int | None = None
) -> dict[str, torch.Tensor]:
    """Tokenize ``texts`` into one padded batch of named tensors.

    Args:
        tokenizer: A tokenizer from :func:`train_tokenizer` or :func:`load_tokenizer`.
        texts: At least one text.
        max_length: Cut longer texts to this many tokens, with a ``UserWarning`` that
            counts them; ``None`` (the default) never cuts.

    Returns:
        ``{"input_ids", "attention_mask"}``, int64 ``(N, L)``, right-padded with the
        tokenizer's ``[PAD]`` id to the longest text (``L <= max_length``).

    Raises:
        TypeError: If ``texts`` is not a sequence of str.
        ValueError: If ``texts`` is empty or ``max_length < 3``.

    Example:
        >>> tok = train_tokenizer(["turn the lights on", "what time is it"], vocab_size=60)
        >>> batch = encode(tok, ["lights on", "what time is it"])
        >>> batch["input_ids"].shape, batch["attention_mask"].sum(1).tolist()
        (torch.Size([2, 6]), [4, 6])
    """
    ids, cut = encode_ids(tokenizer, texts, max_length)
    if cut:
        warnings.warn(
            f"encode: {cut} of {len(ids)} texts were longer than max_length={max_length} "
            "tokens and were cut",
            UserWarning,
            stacklevel=2,
        )
    return pad_ids(ids, pad_id=_pad_id(tokenizer))


def _pad_id(tokenizer: Tokenizer) -> int:
    pad = tokenizer.token_to_id("[PAD]")
    if pad is None:
        raise ValueError("the tokenizer has no [PAD] token; train it with train_tokenizer")
    return int(pad)
