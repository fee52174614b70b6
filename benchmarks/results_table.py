"""Print a ``rejectnet bench`` results.json as the Markdown table of docs/benchmarks.md.

One row per method (:func:`rejectnet.bench.seeds_markdown`: ``mean ± std`` over the seeds
when there are several), then the run's time per method. Usage::

    python benchmarks/results_table.py runs/fashion/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rejectnet.bench import seeds_markdown


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("results", type=Path, help="a results.json written by rejectnet bench")
    results = json.loads(p.parse_args().results.read_text())
    print(seeds_markdown(results))
    meta = results.get("_meta", {})
    if meta:
        secs = ", ".join(f"{k} {v}" for k, v in meta.get("method_seconds", {}).items())
        print(
            f"\nseeds {meta.get('seeds')}, {meta.get('seconds')} s in all, "
            f"{meta.get('threads')} thread(s); seconds per method: {secs}"
        )


if __name__ == "__main__":
    main()
