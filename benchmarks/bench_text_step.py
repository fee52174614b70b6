"""Cost of a rejectnet stage-two step on token sequences relative to a plain cross-entropy step.

The text case of ``benchmarks/bench_step.py`` (issue 21: at most 1.10x). The model is the
CLINC150 benchmark's BERT (:func:`rejectnet.text.small_bert`, 2 layers of 128, 150
intents, k = 5) with AdamW. Each step gets an in-scope batch of B utterances and an
outlier batch of 5B sentences, each right-padded to its own longest text (as
:class:`rejectnet.text.TextDataset` collates them), with lengths drawn like CLINC150's
utterances (6-20 tokens) and the Wikipedia pool's (10-32 tokens):

* stage two: join the two batches with the library's padding (``cat_inputs`` with the
  model's pad id, masks padded with 0), one forward with named inputs, then Algorithm 1's
  objective ``CE(in, y) + lam * CE(out, pseudo_labels(out))``;
* plain: the same model on the same batch, already joined, ``CE(all, fixed labels)``.

The two are timed interleaved (ABAB...) on fresh batches and the ratio of medians is
printed, so machine speed cancels out. Usage::

    python benchmarks/bench_text_step.py [--reps 30] [--batch 64] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from rejectnet import RejectHead
from rejectnet._batches import call_model, cat_inputs, pad_values_for
from rejectnet.finetune.objectives import loss_terms
from rejectnet.losses import SelfSupervisedRejectLoss
from rejectnet.text import pad_ids, small_bert

VOCAB, CLASSES, K = 8000, 150, 5


def _batch(n: int, lengths: tuple[int, int], g: torch.Generator) -> dict[str, torch.Tensor]:
    """``n`` random token sequences, right-padded to the longest (pad id 0)."""
    rows = [
        torch.randint(5, VOCAB, (int(torch.randint(*lengths, (1,), generator=g)),), generator=g)
        for _ in range(n)
    ]
    return pad_ids([r.tolist() for r in rows], pad_id=0)


def bench(batch: int, reps: int) -> float:
    torch.manual_seed(0)
    net = RejectHead.wrap(small_bert(CLASSES, VOCAB, max_length=64), k=K).train()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-5, weight_decay=0.01)
    objective = SelfSupervisedRejectLoss(CLASSES, lam=5.0)
    pads = pad_values_for(net)
    g = torch.Generator().manual_seed(1)
    pairs = [(_batch(batch, (6, 21), g), _batch(5 * batch, (10, 33), g)) for _ in range(4)]
    y = torch.randint(0, CLASSES, (batch,), generator=g)
    y_all = torch.randint(0, CLASSES + K, (6 * batch,), generator=g)
    joined = [cat_inputs([a, b], pad_values=pads) for a, b in pairs]

    def step(i: int, two: bool) -> float:
        t = time.perf_counter()
        if two:
            x = cat_inputs(list(pairs[i % 4]), pad_values=pads)  # padding counted in
            logits = call_model(net, x)
            loss = loss_terms(objective, logits[:batch], y, logits[batch:]).loss
        else:
            loss = F.cross_entropy(call_model(net, joined[i % 4]), y_all)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    for i in range(3):
        step(i, True), step(i, False)
    a, b = [], []
    for i in range(reps):
        a.append(step(i, True))
        b.append(step(i, False))
    ratio = statistics.median(a) / statistics.median(b)
    print(
        f"BERT 2x128 (CLINC150 bench)  batch {batch}+{5 * batch}  "
        f"stage-two {1000 * statistics.median(a):7.1f} ms  "
        f"plain CE {1000 * statistics.median(b):7.1f} ms  ratio {ratio:.3f}"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, {args.reps} reps")
    bench(args.batch, args.reps)


if __name__ == "__main__":
    main()
