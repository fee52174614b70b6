"""Inference latency of the wrapped and deployed model against the original, on the CPU.

``RejectHead.wrap(model, k=5)`` adds k reject units beside the final layer; the deployed
decision adds the score, the threshold test, the arg-max and the label mask. This measures
what both cost. For the paper's MNIST network (``rejectnet.models.SmallCNN``, 1x28x28) and
a timm ResNet-18 (random weights, 10 classes, 3x32x32), at batch sizes 1 and 64, with 1
thread and with all threads, it times, in eager PyTorch,

* ``original``: ``model(x)``, the C class logits;
* ``copy``: a deep copy of the original model, as a control: ``copy/orig`` shows how far
  two identical models differ on this machine (memory placement, noise);
* ``wrapped``: ``net(x)``, the C + k logits (target ``wrapped / original <= 1.02``);
* ``deployable``: ``net.deployable()(x)``, labels, OOD score and decision (targets
  ``<= 1.05`` at batch 1 and ``<= 1.01`` at batch 64, 1 thread);
* ``predict``: ``net.predict(x)`` with its input checks (dtype, shape, finiteness) and
  the evaluation-mode guard (target ``<= 1.02`` at batch 64);

and in onnxruntime (graph optimisations on, the same thread count), the ONNX export of
the original model against :func:`rejectnet.export_onnx`'s decision graph (target
``<= 1.05`` at batch 1); and compiled ahead of time with AOTInductor (needs a C++
compiler), the original model's package against :func:`rejectnet.export_aoti`'s, both
compiled once per model with a dynamic batch (``aoti dec``; the decision loaded with
:func:`rejectnet.load_aoti`, input checks included), and the decision package against
the eager original (``aoti/eager``).

The variants run in interleaved blocks (round r starts at variant r mod n), so that slow
drift of the machine affects all alike. Each block calls one variant six times in a row
and times the last five, so that every timing sees that variant's weights in the caches,
as a deployed model would. Eager timings run under ``torch.inference_mode()`` after a
warm-up. The table gives the ratio of the medians to the original's median.

Run: ``python benchmarks/bench_inference.py [--threads 1,0] [--seconds S] [--no-onnx]
[--no-aoti]``
(``0`` = all threads).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from torch import nn

from rejectnet import RejectHead, export_aoti, export_onnx, load_aoti
from rejectnet.models import SmallCNN

__all__ = ["main"]

BLOCK = 6
"""Calls per variant in a row: one to warm the caches, then BLOCK - 1 timed."""


def _timm_resnet18() -> nn.Module | None:
    try:
        import timm
    except ImportError:
        return None
    model: nn.Module = timm.create_model("resnet18", pretrained=False, num_classes=10)
    return model


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    fns: list[Callable[[], object]], seconds: float, block: int = BLOCK
) -> tuple[list[float], int]:
    """Median seconds per call of each function, timed in interleaved blocks."""
    n = len(fns)
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns * 3:
        fn()
    one = sum(_time(fn) for fn in fns)
    rounds = int(min(max(seconds / max(one * block, 1e-9), 10), 600))
    for r in range(rounds):
        for j in range(n):
            i = (r + j) % n
            fns[i]()  # the block's first call warms the caches for this variant
            times[i].extend(_time(fns[i]) for _ in range(block - 1))
    return [statistics.median(t) for t in times], rounds


def _onnx_sessions(
    model: nn.Module, net: RejectHead, example: torch.Tensor, threads: int
) -> tuple[object, object] | None:
    try:
        import onnxruntime as ort
        import onnxscript  # noqa: F401
    except ImportError:
        return None
    folder = tempfile.mkdtemp(prefix="rejectnet-bench-")
    orig_path = os.path.join(folder, "original.onnx")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        torch.onnx.export(
            model,
            (example,),
            orig_path,
            input_names=["images"],
            dynamo=True,
            optimize=True,
            external_data=False,
            dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        )
        dep_path = export_onnx(net, os.path.join(folder, "decision.onnx"), example)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    return (
        ort.InferenceSession(orig_path, opts, providers=providers),
        ort.InferenceSession(str(dep_path), opts, providers=providers),
    )


def aoti_packages(
    model: nn.Module, shape: tuple[int, ...]
) -> tuple[Callable[..., object], Callable[..., object]] | None:
    """AOTInductor packages of the original model and of its calibrated decision.

    ``None`` (with a note) when there is no C++ compiler to build them.
    """
    from torch._inductor import aoti_compile_and_package, aoti_load_package

    model, _, net = _models(model, shape)
    folder = tempfile.mkdtemp(prefix="rejectnet-bench-")
    example = torch.randn(2, *shape)
    try:
        dec = export_aoti(net, os.path.join(folder, "decision.pt2"), example)
    except RuntimeError as err:
        print(f"AOTInductor rows skipped: {err}")
        return None
    with torch.no_grad():
        program = torch.export.export(
            model, (example,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}}
        )
    orig = aoti_compile_and_package(program, package_path=os.path.join(folder, "original.pt2"))
    # the original through the package loader's cheapest call (no pytree round trip); the
    # decision as users run it, through load_aoti's input checks
    run_orig = aoti_load_package(orig).loader.boxed_run
    return (lambda x: run_orig([x])), load_aoti(dec)


def _models(model: nn.Module, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module, RejectHead]:
    """The original (a copy), its twin, and the calibrated wrapped network, seeded."""
    torch.manual_seed(0)
    model = copy.deepcopy(model).eval()
    twin = copy.deepcopy(model).eval()
    net = RejectHead.wrap(copy.deepcopy(model), k=5).eval()
    net.calibrate([torch.randn(64, *shape)], coverage=0.95)
    return model, twin, net


def bench_case(
    model: nn.Module,
    shape: tuple[int, ...],
    batch: int,
    seconds: float,
    onnx: bool,
    aoti: tuple[Callable[..., object], Callable[..., object]] | None = None,
) -> dict[str, float]:
    """Ratios (and the original's milliseconds) for one model, batch size and thread count."""
    model, twin, net = _models(model, shape)
    dep = net.deployable()
    x = torch.randn(batch, *shape)
    fns: list[Callable[[], object]] = [
        lambda: model(x),
        lambda: twin(x),
        lambda: net(x),
        lambda: dep(x),
        lambda: net.predict(x),
    ]
    with torch.inference_mode():
        assert torch.equal(net(x)[:, :10], model(x)), "class logits must be bit-exact"
        (orig, cp, wrapped, deploy, pred), rounds = interleaved(fns, seconds)
    out = {
        "ms": 1e3 * orig,
        "rounds": float(rounds),
        "copy": cp / orig,
        "wrapped": wrapped / orig,
        "deployable": deploy / orig,
        "predict": pred / orig,
    }
    if onnx:
        sessions = _onnx_sessions(model, net, torch.randn(2, *shape), torch.get_num_threads())
        if sessions is not None:
            s_orig, s_dep = sessions
            feed = {"images": x.numpy()}
            ofns: list[Callable[[], object]] = [
                lambda: s_orig.run(None, feed),  # type: ignore[attr-defined]
                lambda: s_dep.run(None, feed),  # type: ignore[attr-defined]
            ]
            (o_orig, o_dep), _ = interleaved(ofns, seconds / 2)
            out["onnx_ms"] = 1e3 * o_orig
            out["onnx"] = o_dep / o_orig
    if aoti is not None:
        a_orig, a_dep = aoti
        afns: list[Callable[[], object]] = [lambda: model(x), lambda: a_orig(x), lambda: a_dep(x)]
        with torch.inference_mode():
            (eager, t_orig, t_dep), _ = interleaved(afns, seconds / 2)
        out["aoti_ms"] = 1e3 * t_orig
        out["aoti"] = t_dep / t_orig
        out["aoti_eager"] = t_dep / eager
    return out


def main() -> None:
    """Print one line per model, batch size and thread count."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads", default="1,0", help="comma-separated thread counts (0 = all cores)"
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="time budget per row")
    parser.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime rows")
    parser.add_argument("--no-aoti", action="store_true", help="skip the AOTInductor rows")
    parser.add_argument(
        "--models", default="smallcnn,resnet18", help="comma-separated: smallcnn, resnet18"
    )
    args = parser.parse_args()
    all_threads = os.cpu_count() or 1
    thread_counts = [int(t) or all_threads for t in args.threads.split(",")]
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{all_threads} core(s), CPU, torch.inference_mode, k=5, calibrated sum_reject"
    )
    header = (
        f"{'model':<22}{'thr':>4}{'batch':>6}{'rounds':>7}{'orig ms':>9}{'copy':>7}"
        f"{'wrapped':>8}{'deploy':>8}{'predict':>8}{'onnx ms':>9}{'onnx dec':>9}"
        f"{'aoti ms':>9}{'aoti dec':>9}{'aoti/eager':>11}"
    )
    print(
        "ratios to the original model's median latency (eager, then onnxruntime, "
        "then AOTInductor; aoti/eager: the decision package against the eager original)"
    )
    print(header)
    cases: list[tuple[str, str, nn.Module | None, tuple[int, ...]]] = [
        ("smallcnn", "SmallCNN 1x28x28", SmallCNN(num_classes=10), (1, 28, 28)),
        ("resnet18", "timm resnet18 3x32x32", _timm_resnet18(), (3, 32, 32)),
    ]
    wanted = set(args.models.split(","))
    for key, name, model, shape in cases:
        if key not in wanted:
            continue
        if model is None:
            print(f"{name:<22} skipped: timm is not installed")
            continue
        packages = None if args.no_aoti else aoti_packages(model, shape)
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for batch in (1, 64):
                r = bench_case(model, shape, batch, args.seconds, not args.no_onnx, packages)
                cells = (
                    f"{r['onnx_ms']:>9.3f}{r['onnx']:>9.3f}" if "onnx" in r else f"{'-':>9}{'-':>9}"
                )
                cells += (
                    f"{r['aoti_ms']:>9.3f}{r['aoti']:>9.3f}{r['aoti_eager']:>11.3f}"
                    if "aoti" in r
                    else f"{'-':>9}{'-':>9}{'-':>11}"
                )
                print(
                    f"{name:<22}{threads:>4}{batch:>6}{int(r['rounds']):>7}{r['ms']:>9.3f}"
                    f"{r['copy']:>7.3f}{r['wrapped']:>8.3f}{r['deployable']:>8.3f}"
                    f"{r['predict']:>8.3f}{cells}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
