"""The ``rejectnet`` console command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rejectnet`` command."""
    parser = argparse.ArgumentParser(
        prog="rejectnet",
        description="Self-supervised out-of-distribution detection with reject classes.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser(
        "demo",
        help="run the whole pipeline on data that ships offline and print a comparison",
        description="Train a small CNN on scikit-learn's 8x8 digits, fine-tune Outlier "
        "Exposure and rejectnet on crops of one photograph, and compare them with "
        "max-softmax on OOD sets never seen in training.",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars or logs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rejectnet`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from rejectnet import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "demo":
        from rejectnet.demo import DemoConfig, format_table, run_demo

        if not args.quiet:
            logging.basicConfig(level=logging.INFO, format="%(message)s")
        reports = run_demo(DemoConfig(seed=args.seed, progress=not args.quiet))
        if args.quiet:
            print(format_table(reports))
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
