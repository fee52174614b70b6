"""Text classifiers: tokenizers trained on your utterances, dict batches, a small BERT.

Everything needed to train a Hugging Face text classifier from scratch and hand it to
rejectnet, with nothing downloaded:

* :func:`train_tokenizer` / :func:`save_tokenizer` / :func:`load_tokenizer` (the
  ``tokenizers`` library's JSON file), :func:`encode` (texts -> ``input_ids`` and
  ``attention_mask``, right-padded to the longest, cut only to an explicit
  ``max_length``);
* :class:`TextDataset` whose ``collate`` yields ``{"input_ids", "attention_mask",
  "labels"}`` batches, the Hugging Face style rejectnet passes to the model as keyword
  arguments;
* :func:`small_bert`, a ``BertForSequenceClassification`` built from a config;
* readers: :func:`load_clinc150` (the CLINC150 intents and out-of-scope splits) and
  :func:`read_utterances` (an OOD set or outlier pool: ``.txt`` one a line or a ``.json``
  list of strings).

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader
    >>> from rejectnet.text import TextDataset, small_bert, train_tokenizer
    >>> texts = ["book a table", "play a song", "book a flight", "play the radio"]
    >>> tok = train_tokenizer(texts, vocab_size=60)
    >>> ds = TextDataset(texts, tok, labels=[0, 1, 0, 1])
    >>> batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=ds.collate)))
    >>> model = small_bert(2, tok.get_vocab_size(), hidden_size=32, num_layers=1)
    >>> inputs = {k: v for k, v in batch.items() if k != "labels"}
    >>> model(**inputs).logits.shape
    torch.Size([4, 2])
"""

from rejectnet.text.corpora import (
    CLINC150_FILE,
    CLINC150_IN_SCOPE,
    CLINC150_OUT_OF_SCOPE,
    MAX_TEXT_BYTES,
    Clinc150,
    TextSplit,
    load_clinc150,
    read_utterances,
)
from rejectnet.text.data import TextDataset
from rejectnet.text.models import small_bert
from rejectnet.text.tokenize import (
    MAX_TOKENIZER_BYTES,
    SPECIAL_TOKENS,
    encode,
    encode_ids,
    load_tokenizer,
    pad_ids,
    save_tokenizer,
    train_tokenizer,
)

__all__ = [
    "CLINC150_FILE",
    "CLINC150_IN_SCOPE",
    "CLINC150_OUT_OF_SCOPE",
    "MAX_TEXT_BYTES",
    "MAX_TOKENIZER_BYTES",
    "SPECIAL_TOKENS",
    "Clinc150",
    "TextDataset",
    "TextSplit",
    "encode",
    "encode_ids",
    "load_clinc150",
    "load_tokenizer",
    "pad_ids",
    "read_utterances",
    "save_tokenizer",
    "small_bert",
    "train_tokenizer",
]
