"""The ``rejectnet`` console command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rejectnet`` command.

    Returns:
        A parser with the subcommands (``demo``, ...) and ``--version``.

    Example:
        >>> args = build_parser().parse_args(["demo", "--seed", "3", "--quiet"])
        >>> args.command, args.seed, args.quiet
        ('demo', 3, True)
    """
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

    bench = sub.add_parser("bench", help="reproduce the paper's benchmarks")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True)
    mnist = bench_sub.add_parser(
        "mnist",
        help="MNIST row of Table 1: max-softmax, Outlier Exposure and rejectnet",
        description="Train the paper's MNIST CNN once, fine-tune Outlier Exposure and "
        "rejectnet from the same weights, evaluate all three on the same samples, and "
        "write results.md, results.json and plots.",
    )
    mnist.add_argument("--data-dir", required=True, help="folder with mnist.npz etc.")
    mnist.add_argument(
        "--preset",
        choices=["quick", "paper", "smoke"],
        default="quick",
        help="quick: <10 min on 2 CPU cores; paper: 10 + 10 epochs; smoke: tests only",
    )
    mnist.add_argument("--outliers", help="training outlier pool (.npz with x_train)")
    mnist.add_argument(
        "--ood",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="extra OOD test set: .npz with x_test, or a torchvision dataset folder",
    )
    mnist.add_argument("--seeds", type=int, default=1, help="independent runs (default 1)")
    mnist.add_argument("--out", help="output folder (default runs/mnist-<preset>)")
    mnist.add_argument(
        "--k", default="5", help="reject classes, comma list (ablation), e.g. 1,2,5,10"
    )
    mnist.add_argument(
        "--score",
        default="sum",
        help="reject scores, comma list: max,sum,weighted,entropy,entropy_diff",
    )
    mnist.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    mnist.add_argument("--quiet", action="store_true", help="no progress bars or logs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rejectnet`` command; returns the exit status.

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.

    Returns:
        0 on success, 2 for a usage error (no command) or a failed command.

    Raises:
        SystemExit: From argparse, for unknown options or ``--help``.

    Example:
        >>> import contextlib, io
        >>> import rejectnet
        >>> out = io.StringIO()
        >>> with contextlib.redirect_stdout(out):
        ...     status = main(["--version"])
        >>> status, out.getvalue().strip() == rejectnet.__version__
        (0, True)
    """
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
    if args.command == "bench":
        from rejectnet.bench import run_mnist

        ood = {}
        for item in args.ood:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                parser.error(f"--ood must look like NAME=PATH, got {item!r}")
            ood[name] = path
        try:
            ks = [int(v) for v in args.k.split(",") if v.strip()]
        except ValueError:
            parser.error(f"--k must be a comma list of integers, got {args.k!r}")
        if not args.quiet:
            logging.basicConfig(level=logging.INFO, format="%(message)s")
        try:
            run_mnist(
                args.data_dir,
                preset=args.preset,
                outliers=args.outliers,
                ood=ood,
                seeds=args.seeds,
                out=args.out,
                ks=ks,
                scores=[s.strip() for s in args.score.split(",") if s.strip()],
                progress=not args.quiet,
                plots=not args.no_plots,
            )
        except (ValueError, FileNotFoundError) as err:
            print(f"rejectnet bench mnist: error: {err}", file=sys.stderr)
            return 2
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
