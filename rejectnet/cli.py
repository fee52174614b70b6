"""The ``rejectnet`` console command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main"]

_EXAMPLE = """\
example config (rejectnet bench run fashion.toml --out runs/fashion):

  [data]
  id = "../shared/data/fashion_mnist.npz"
  outliers = "../shared/data/photo_patches.npz"
  [data.ood]
  mnist = "../shared/data/mnist.npz"
  [model]
  name = "small_cnn"
  [train]
  preset = "quick"

Relative paths in a config file are resolved against the folder of that file; paths
given as flags, against the working directory. Flags override the file's values.

A config file is code: [model] name = "package.module:function" (or --model) imports
that module and calls the function with [model] kwargs, so it can do anything Python
can. Run only configs you trust, as you would a script (or a .pt2 package). Data files
are checked, not trusted: nothing is unpickled, every reader is bounded, the config, the
data and --out are checked before training, and outputs are written atomically, never
through a symlink.
"""


def _fields_help() -> str:
    from rejectnet.bench import FIELDS

    lines = [
        "config fields (TOML tables and keys; every one is optional except data.id "
        "and one data.ood set):",
        "",
    ]
    for table, keys in FIELDS.items():
        lines.append(f"[{table}]")
        for key, text in keys.items():
            lines.append(f"  {key}: {text}")
    return "\n".join(lines)


def _methods_help() -> str:
    from rejectnet.bench import METHODS

    return "methods:\n" + "\n".join(f"  {m.name}: {m.summary}" for m in METHODS.values())


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ood",
        action="append",
        default=[],
        metavar="[near:|far:]NAME=PATH",
        help="an OOD test set (repeatable): .npz (x_test, else x_train), an image folder, "
        "or a torchvision IDX folder; near:NAME=PATH tags it near-OOD, far:NAME=PATH or "
        "plain NAME=PATH far-OOD (results add each group's mean)",
    )
    p.add_argument("--seeds", type=int, help="independent runs, averaged (default 1, at most 100)")
    p.add_argument(
        "--val-size",
        type=int,
        help="[train] val_size: training images held out for calibration and tuned peers "
        "(default: the preset's, scaled down to a tenth of small data)",
    )
    p.add_argument(
        "--k",
        help="reject classes, comma list: 5 (else the first) is the main row, the "
        "others add rejectnet-k<k> ablation rows (default 5)",
    )
    p.add_argument(
        "--score",
        help="reject scores, comma list: max, sum, weighted, entropy, entropy_diff; sum is "
        "the main row, the others add rejectnet-<score> rows (default sum)",
    )
    p.add_argument("--methods", help="comma list of methods to run (default all)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress lines or bars")


def _add_run(bench_sub: Any) -> None:
    """The ``bench run`` subcommand."""
    run = bench_sub.add_parser(
        "run",
        help="every method on your own data: a TOML config and/or flags",
        description="Train stage one once, run every method (post-hoc peers, Outlier "
        "Exposure, rejectnet) from the same weights, evaluate all of them on the same "
        "samples, and write results.json, results.md, plots and report.html.\n\n"
        + _fields_help()
        + "\n\n"
        + _methods_help(),
        epilog=_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("config", nargs="?", help="a TOML config file (optional with --id)")
    run.add_argument("--out", required=True, help="output folder")
    run.add_argument("--id", help="[data] id: in-distribution .npz or folder (train/, test/)")
    run.add_argument("--outliers", help='[data] outliers: .npz, image folder or "none"')
    run.add_argument("--image-size", type=int, help="[data] image_size")
    run.add_argument("--channels", type=int, choices=[1, 3], help="[data] channels")
    run.add_argument(
        "--model",
        help='[model] name, e.g. small_cnn, cifar_resnet, "timm:resnet18", or pkg.mod:fn '
        "(imported and called: runs code)",
    )
    run.add_argument("--weights", help="[model] weights (.safetensors)")
    run.add_argument("--preset", help="[train] preset: quick, paper or smoke")
    run.add_argument("--device", help="[train] device, e.g. cpu or cuda")
    run.add_argument("--save-models", action="store_true", help="save the rejectnet models")
    _add_common(run)


def _add_preset(
    bench_sub: Any, name: str, about: tuple[str, str], data: str, preset: str, outliers: str
) -> argparse.ArgumentParser:
    """One of the paper's experiments as a subcommand: data folder, preset, pool, output."""
    p: argparse.ArgumentParser = bench_sub.add_parser(
        name,
        help=about[0],
        description=about[1] + "\n\n" + _methods_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data-dir", required=True, help=data)
    p.add_argument("--preset", choices=["quick", "paper", "smoke"], default="quick", help=preset)
    p.add_argument("--outliers", help=outliers)
    p.add_argument("--out", help=f"output folder (default runs/{name}-<preset>)")
    _add_common(p)
    return p


def _add_mnist(bench_sub: Any) -> None:
    """The ``bench mnist`` subcommand."""
    about = (
        "the paper's MNIST row (a preset of bench run)",
        "The MNIST row of the paper's Table 1: MNIST in-distribution, photo_patches.npz as "
        "training outliers, Fashion-MNIST (and any --ood) as OOD test sets, every method "
        "from the same stage-one weights.",
    )
    _add_preset(
        bench_sub,
        "mnist",
        about,
        data="folder with mnist.npz etc.",
        preset="quick: <10 min on 2 CPU cores; paper: 10 + 10 epochs; smoke: tests only",
        outliers='training outlier pool: "emnist" (DIR/emnist_letters.npz, the paper\'s), '
        '.npz with x_train, a folder, or "none" (default DIR/photo_patches.npz)',
    )


def _add_cifar10(bench_sub: Any) -> None:
    """The ``bench cifar10`` subcommand."""
    about = (
        "the paper's CIFAR-10 experiment (a preset of bench run)",
        "CIFAR-10 in-distribution (DIR/cifar10.npz), the Tiny ImageNet pool "
        "(DIR/tin_pool.npz) as training outliers, and as OOD sets tin_near_dev (near), "
        "mnist and fashion (far) when present, plus any --ood. Decode the shared data once "
        "with: python ../shared/data/unpack.py DIR. Augmentation (crop with padding 4, "
        "flip), weight decay 5e-4 and per-channel normalisation inside the model.",
    )
    cifar = _add_preset(
        bench_sub,
        "cifar10",
        about,
        data="folder with the unpacked cifar10.npz",
        preset="quick: CIFAR ResNet-20 for a CPU; paper: WRN-40-2, 100 + 10 epochs, for a "
        "GPU; smoke: tests only",
        outliers='"pool" (tin_pool.npz, default), "none" (synthesis only) or a path',
    )
    cifar.set_defaults(outliers="pool")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rejectnet`` command.

    Returns:
        A parser with the subcommands (``demo``, ``bench run``, ``bench mnist``,
        ``bench cifar10``, ``bench clinc150``) and ``--version``.

    Example:
        >>> args = build_parser().parse_args(["demo", "--seed", "3", "--quiet"])
        >>> args.command, args.seed, args.quiet
        ('demo', 3, True)
        >>> args = build_parser().parse_args(["bench", "run", "cfg.toml", "--out", "runs/x"])
        >>> args.benchmark, args.config, args.out
        ('run', 'cfg.toml', 'runs/x')
    """
    from rejectnet.bench.clinc150 import add_clinc150_parser

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
    demo.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars or logs")

    bench = sub.add_parser(
        "bench", help="benchmark every method on your data, MNIST, CIFAR-10 or CLINC150"
    )
    bench_sub = bench.add_subparsers(dest="benchmark", required=True)
    _add_run(bench_sub)
    _add_mnist(bench_sub)
    _add_cifar10(bench_sub)
    add_clinc150_parser(bench_sub)
    return parser


def _ood(parser: argparse.ArgumentParser, items: Sequence[str]) -> dict[str, dict[str, str]]:
    """``--ood [near:|far:]NAME=PATH`` items as ``[data.ood]`` entries (paths absolute)."""
    ood = {}
    for item in items:
        group, text = "far", item
        for g in ("near", "far"):
            if item.startswith(f"{g}:"):
                group, text = g, item[len(g) + 1 :]
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            parser.error(f"--ood must look like [near:|far:]NAME=PATH, got {item!r}")
        ood[name] = {"path": str(Path(path).resolve()), "group": group}
    return ood


def _seed(text: str) -> int:
    """``--seed``: an int in [0, MAX_SEED] (argparse names the flag on an error)."""
    from rejectnet._validation import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an int in [0, {MAX_SEED}], got {text!r}")
    return value


def _ints(parser: argparse.ArgumentParser, text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        parser.error(f"{flag} must be a comma list of integers, got {text!r}")
    return []  # pragma: no cover - parser.error exits


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [v.strip() for v in text.split(",") if v.strip()]


def _run_demo(args: argparse.Namespace) -> int:
    from rejectnet.demo import DemoConfig, format_table, run_demo

    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    reports = run_demo(DemoConfig(seed=args.seed, progress=not args.quiet))
    if args.quiet:
        print(format_table(reports))
    return 0


def _flag_overrides(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The ``bench run`` flags as a config dict (paths absolute, from the CWD)."""

    def path(value: str) -> str:
        return value if value.strip().lower() == "none" else str(Path(value).resolve())

    data: dict[str, Any] = {}
    if args.id:
        data["id"] = path(args.id)
    if args.outliers:
        data["outliers"] = path(args.outliers)
    if args.ood:
        data["ood"] = _ood(parser, args.ood)
    if args.image_size is not None:
        data["image_size"] = args.image_size
    if args.channels is not None:
        data["channels"] = args.channels
    model: dict[str, Any] = {}
    if args.model:
        model["name"] = args.model
    if args.weights:
        model["weights"] = path(args.weights)
    train: dict[str, Any] = {}
    for key in ("preset", "device", "seeds", "val_size"):
        if getattr(args, key) is not None:
            train[key] = getattr(args, key)
    evals: dict[str, Any] = {}
    if args.k:
        ks = _ints(parser, args.k, "--k")
        main_k = 5 if 5 in ks or not ks else ks[0]
        train["k"] = main_k
        evals["ks"] = [k for k in ks if k != main_k]
    if args.score:
        evals["scores"] = _names(args.score)
    if args.methods:
        evals["methods"] = _names(args.methods)
    output: dict[str, Any] = {}
    if args.no_plots:
        output["plots"] = False
    if args.save_models:
        output["save_models"] = True
    raw = {"data": data, "model": model, "train": train, "eval": evals, "output": output}
    return {k: v for k, v in raw.items() if v}


def _run_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """``bench run``: a config file and/or flags."""
    from rejectnet.bench import config_from_dict, load_config, run_bench

    overrides = _flag_overrides(parser, args)
    if args.config:
        cfg = load_config(args.config, overrides)
    elif "id" in overrides.get("data", {}):
        cfg = config_from_dict(overrides, Path.cwd())
    else:
        parser.error("bench run needs a CONFIG file or --id (and --ood NAME=PATH)")
    return run_bench(cfg, args.out, progress=not args.quiet)


def _run_preset(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """``bench mnist`` and ``bench cifar10``: one of the paper's experiments."""
    from rejectnet.bench.cifar10 import run_cifar10
    from rejectnet.bench.mnist import run_mnist

    presets: dict[str, Callable[..., dict[str, Any]]] = {
        "mnist": run_mnist,
        "cifar10": run_cifar10,
    }
    return presets[args.benchmark](
        args.data_dir,
        preset=args.preset,
        outliers=args.outliers,
        ood=_ood(parser, args.ood),
        seeds=args.seeds if args.seeds is not None else 1,
        out=args.out,
        ks=_ints(parser, args.k, "--k") if args.k else [5],
        scores=_names(args.score) or ["sum"],
        methods=_names(args.methods),
        progress=not args.quiet,
        plots=not args.no_plots,
        val_size=args.val_size,
    )


def _run_bench(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from rejectnet.bench import BenchError

    if args.benchmark == "clinc150":  # text: its own options and handler
        return int(args.clinc150_handler(args))
    command = f"rejectnet bench {args.benchmark}"
    try:
        run = _run_config if args.benchmark == "run" else _run_preset
        results = run(parser, args)
    except (BenchError, FileNotFoundError, ValueError, ImportError) as err:
        message = " ".join(str(err).split())
        print(f"{command}: error: {message}", file=sys.stderr)
        return 2
    failed = results["_meta"].get("output_errors", [])
    if failed:
        print(
            f"{command}: error: {len(failed)} output(s) not written (listed above)", file=sys.stderr
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rejectnet`` command; returns the exit status.

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.

    Returns:
        0 on success, 2 for a usage error (no command) or a failed command (one line
        on stderr says why).

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
    if args.command == "demo":
        return _run_demo(args)
    if args.command == "bench":
        return _run_bench(parser, args)
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
