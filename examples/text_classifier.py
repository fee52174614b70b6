"""A Hugging Face text classifier that says "I don't know": wrap, fine-tune, calibrate, deploy.

A ``BertForSequenceClassification`` (built from a config: nothing is downloaded) is
trained on intent utterances, wrapped with k reject classes, fine-tuned on an outlier
pool of unrelated sentences with batches that are Hugging Face dicts
(``{"input_ids", "attention_mask", "labels"}``, padded per batch), calibrated on
held-out utterances, used to predict, saved and loaded.

    python examples/text_classifier.py --smoke                  # synthetic words, seconds
    python examples/text_classifier.py --data-dir ../shared/data/clinc150

``--smoke`` makes up four intents from small word lists and an outlier pool from other
words; ``--data-dir`` reads CLINC150 (``clinc150.json`` and ``wiki_sentences.txt``) and
uses the benchmark's settings (:data:`rejectnet.bench.clinc150.RECIPE`). It prints the
in-scope accuracy and out-of-scope AUROC before and after the fine-tuning, and the share
of out-of-scope queries rejected at the calibrated threshold.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import rejectnet
from rejectnet.outliers import text_recipe
from rejectnet.text import (
    SPECIAL_TOKENS,
    TextDataset,
    encode,
    save_tokenizer,
    small_bert,
    train_tokenizer,
)

WORDS = {
    "play_music": ["play", "song", "music", "jazz", "rock", "album", "radio"],
    "weather": ["weather", "rain", "sunny", "forecast", "cold", "wind", "snow"],
    "alarm": ["alarm", "wake", "morning", "set", "clock", "early", "timer"],
    "transfer": ["transfer", "money", "bank", "account", "send", "savings", "pay"],
}
FILL = ["please", "can", "you", "the", "me", "a", "for", "now", "today", "my", "i", "want"]
OTHER = ["giraffe", "history", "paint", "mountain", "river", "poem", "physics", "castle"]


def synthetic(n: int, seed: int) -> dict[str, list]:
    """Utterances of 4 made-up intents, out-of-scope queries and an outlier pool."""
    rnd = random.Random(seed)
    intents = sorted(WORDS)

    def utt(words: list[str]) -> str:
        return " ".join(rnd.sample(words, 3) + rnd.sample(FILL, rnd.randint(2, 5)))

    def split(m: int) -> tuple[list[str], list[int]]:
        ys = [rnd.randrange(len(intents)) for _ in range(m)]
        return [utt(WORDS[intents[y]]) for y in ys], ys

    return {
        "train": split(n),
        "val": split(n // 4),
        "test": split(n // 4),
        "oos": [utt(OTHER) for _ in range(n // 4)],
        "pool": [" ".join(rnd.sample(OTHER + FILL, 7)) for _ in range(2 * n)],
    }


def clinc(data_dir: str) -> dict[str, list]:
    """CLINC150's splits in the same layout (ids follow the sorted training intents)."""
    from rejectnet.text import load_clinc150, read_utterances

    d = load_clinc150(data_dir)
    sp = d.splits
    return {
        **{s: (sp[s].texts, sp[s].labels.tolist()) for s in ("train", "val", "test")},
        "oos": sp["oos_val"].texts,
        "pool": read_utterances(Path(data_dir) / "wiki_sentences.txt", what="outlier pool"),
    }


def loader(ds: TextDataset, batch_size: int, shuffle: bool = False) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(ds, batch_size, shuffle=shuffle, generator=g, collate_fn=ds.collate)


def report(net: torch.nn.Module, test: DataLoader, oos: DataLoader, what: str) -> None:
    r = rejectnet.evaluate(net, test, {"out-of-scope": oos}, n_runs=3)
    auroc = 100 * r.ood["out-of-scope"].mean["auroc"]
    print(f"{what}: in-scope accuracy {100 * r.id_accuracy:.1f}%, AUROC ({r.score}): {auroc:.2f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="synthetic words, a few seconds")
    ap.add_argument("--data-dir", help="folder with clinc150.json and wiki_sentences.txt")
    ap.add_argument("--out", default=None, help="folder for the saved model")
    args = ap.parse_args()
    if not args.smoke and not args.data_dir:
        ap.error("give --smoke or --data-dir")
    torch.manual_seed(0)
    from rejectnet.bench.clinc150 import RECIPE

    big = not args.smoke
    data = clinc(args.data_dir) if big else synthetic(400, seed=0)
    max_len = RECIPE.max_length if big else 32
    tok = train_tokenizer(data["train"][0], vocab_size=RECIPE.vocab_size if big else 200)
    train = TextDataset(data["train"][0], tok, data["train"][1], max_length=max_len)
    val, test = (
        TextDataset(data[s][0], tok, data[s][1], max_length=max_len) for s in ("val", "test")
    )
    oos = TextDataset(data["oos"], tok, max_length=max_len)
    pool = TextDataset(data["pool"], tok, max_length=max_len)
    num_classes = int(max(data["train"][1])) + 1

    # 1. Your classifier: any HF model whose forward takes input_ids / attention_mask.
    # A tiny BERT trained from scratch needs enough optimizer steps: the smoke run takes
    # batches of 16 at lr 2e-3 (batches of 64 at 1e-3 gave 7 steps an epoch, and 28 steps
    # left it at chance, 28% on the 4 intents).
    width, layers = (RECIPE.hidden_size, RECIPE.num_layers) if big else (64, 1)
    model = small_bert(num_classes, tok.get_vocab_size(), hidden_size=width,
                       num_layers=layers, pad_token_id=train.pad_id)  # fmt: skip
    adamw = lambda lr: lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=0.01)  # noqa: E731
    epochs, batch, lr = (
        (RECIPE.stage_one_epochs, RECIPE.batch_size, RECIPE.stage_one_lr) if big else (5, 16, 2e-3)
    )
    rejectnet.train_classifier(model, loader(train, batch, shuffle=True), epochs=epochs,
                               optimizer=adamw(lr), seed=0, progress=big)  # fmt: skip
    model.eval()
    report(model, loader(test, 256), loader(oos, 256), "stage one, max-softmax")

    # 2. Wrap: k reject classes; 3. fine-tune on dict batches (the outlier pool has no labels).
    # The outliers: half pool sentences, half utterances with random tokens (text_recipe).
    net = rejectnet.RejectHead.wrap(model, k=5)
    special = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    outliers = text_recipe(special, tok.get_vocab_size(), pool=True)
    ft = rejectnet.SelfSupervisedOODFinetuner(
        net,
        epochs=1 if big else 2,
        lam=RECIPE.lam,
        optimizer=adamw(RECIPE.rejectnet_lr if big else 1e-4),
        outlier_signal=outliers.signal,
        seed=0,
        progress=big,
    )
    ft.fit(loader(train, batch, shuffle=True), loader(pool, 5 * batch, shuffle=True))
    net.eval()

    # 4. Calibrate on held-out in-scope utterances only (95% of them accepted).
    net.calibrate(loader(val, 256), coverage=0.95)
    report(net, loader(test, 256), loader(oos, 256), "rejectnet")

    # 5. Predict on raw texts: encode to the same named tensors, right-padded.
    queries = data["test"][0][:3] + data["oos"][:3]
    pred = net.predict(encode(tok, queries, max_length=max_len))
    print("predictions (-1 = out of scope):", pred.labels.tolist())
    share = (net.predict(next(iter(loader(oos, len(oos))))).labels == -1).float().mean()
    print(f"out-of-scope queries rejected at the calibrated threshold: {100 * share:.1f}%")

    # 6. Save and load (the tokenizer is a JSON file beside the model).
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        rejectnet.save(net, out / "intent-rejectnet.safetensors")
        save_tokenizer(tok, out / "tokenizer.json")  # JSON, reload with load_tokenizer
        fresh = small_bert(num_classes, tok.get_vocab_size(), hidden_size=width,
                           num_layers=layers, pad_token_id=train.pad_id)  # fmt: skip
        back = rejectnet.load(out / "intent-rejectnet.safetensors", model=fresh)
        same = torch.equal(
            back.predict(encode(tok, queries, max_length=max_len)).labels, pred.labels
        )
        print(f"saved and loaded: same predictions {same}")


if __name__ == "__main__":
    main()
