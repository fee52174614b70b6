"""Write the rendered-letter dev sets as ``.npz`` files (uint8 ``x_test``) for bench configs.

    python benchmarks/make_dev_sets.py --out runs/dev-sets            # 10,000 per set
    rejectnet bench mnist --data-dir ../shared/data --ood letters=runs/dev-sets/letters.npz

The sets are :func:`rejectnet.data.letter_dev_sets` (``letters`` is
``rendered_letters(10000, 28, numpy.random.default_rng(123))``): near-OOD dev sets for
digit models, for choosing settings, never a test set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from rejectnet.data import letter_dev_sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/dev-sets", help="output folder")
    parser.add_argument("--n", type=int, default=10_000, help="images per set")
    parser.add_argument("--sets", default="letters,letters-clean", help="comma list, or all")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sets = letter_dev_sets(args.n)
    wanted = list(sets) if args.sets == "all" else args.sets.split(",")
    for name in wanted:
        x = (sets[name][:, 0].clamp(0, 1) * 255).round().to(torch.uint8)
        np.savez_compressed(out / f"{name}.npz", x_test=x.numpy())
        print(f"wrote {out / f'{name}.npz'} {tuple(x.shape)}")


if __name__ == "__main__":
    main()
