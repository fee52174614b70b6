"""Bad input to the public API, one table: the right exception, a message that names the
offending argument and says what would be valid, and nothing the caller owns modified.

Each case builds fresh inputs, registers what the caller owns (models, tensors, arrays)
with ``watch``, and returns the call. The test snapshots everything watched, makes the
call, checks the exception type and message, and compares the snapshots bit for bit
(NaN equal to NaN). Cases marked ``xfail`` document missing checks in modules this suite
may not edit (the reason says where); they turn into failures once fixed (strict).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import rejectnet
from rejectnet import (
    RejectHead,
    SelfSupervisedOODFinetuner,
    evaluate,
    metrics,
    scores,
)
from rejectnet.cli import main as cli_main
from rejectnet.demo import DemoConfig, run_demo
from rejectnet.models import SmallCNN, WideResNet
from tests.conftest import ReliabilityCounts, TinyCNN
from tests.finetune.helpers import DropoutCNN, in_distribution, outliers
from tests.reliability._helpers import bit_equal, snapshot


class Watch:
    """What the caller owns; ``watch(obj)`` registers it and returns it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.objects: list[Any] = []

    def __call__(self, obj: Any) -> Any:
        self.objects.append(obj)
        return obj


Build = Callable[[Watch], Callable[[], Any]]


@dataclass(frozen=True)
class Case:
    id: str
    build: Build
    exc: type[BaseException]
    names: str  # regex: the offending argument (or its value)
    valid: str  # regex: what would be valid
    xfail: str | None = None


# ---------------------------------------------------------------- shared builders
def cnn(w: Watch, seed: int = 0) -> TinyCNN:
    torch.manual_seed(seed)
    return w(TinyCNN().eval())


def wrapped(w: Watch, k: int = 2, threshold: float | None = None) -> RejectHead:
    torch.manual_seed(0)
    net = RejectHead.wrap(TinyCNN(), k=k).eval()
    if threshold is not None:
        net.set_threshold(threshold)
    return w(net)


def images(w: Watch, n: int = 6, nan_rows: tuple[int, ...] = ()) -> torch.Tensor:
    x = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for r in nan_rows:
        x[r, 0, 0, 0] = math.nan
    return w(x)


def small_net(w: Watch, k: int = 2) -> RejectHead:
    torch.manual_seed(0)
    return w(RejectHead.wrap(DropoutCNN(), k=k))


def data(w: Watch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x_in, y = in_distribution(n=32).tensors
    x_out = outliers(n=40).tensors[0]
    return w(x_in), w(y), w(x_out)


def fit_call(
    w: Watch,
    *,
    x_in: Any = None,
    y: Any = None,
    x_out: Any = None,
    in_loader: Any = None,
    out_loader: Any = None,
    resume: bool = False,
    **kwargs: Any,
) -> Callable[[], Any]:
    """A SelfSupervisedOODFinetuner(...).fit(...) call on small data, the data watched."""
    net = small_net(w)
    xi, yi, xo = data(w)
    xi = xi if x_in is None else w(x_in)
    yi = yi if y is None else w(y)
    xo = xo if x_out is None else w(x_out)
    ins = in_loader if in_loader is not None else DataLoader(TensorDataset(xi, yi), batch_size=8)
    outs = out_loader if out_loader is not None else DataLoader(TensorDataset(xo), batch_size=8)
    opts: dict[str, Any] = {"epochs": 1, "progress": False, **kwargs}
    return lambda: SelfSupervisedOODFinetuner(net, **opts).fit(ins, outs, resume=resume)


def saved(w: Watch, k: int = 3) -> Path:
    torch.manual_seed(0)
    net = RejectHead.wrap(TinyCNN(), k=k)
    net.set_threshold(0.5, "max")
    return rejectnet.save(net, w.tmp / "model.safetensors")


def logits(w: Watch, n: int = 5, width: int = 5, nan: bool = False) -> torch.Tensor:
    z = torch.randn(n, width, generator=torch.Generator().manual_seed(2))
    if nan:
        z[1, 2] = math.nan
    return w(z)


def s(w: Watch, values: list[float]) -> np.ndarray:
    return w(np.asarray(values, dtype=np.float64))


def cli(argv: list[str]) -> Callable[[], Any]:
    """Run the console command; a usage error becomes SystemExit("exit <code>: <stderr>")."""

    def call() -> None:
        err = io.StringIO()
        try:
            with redirect_stderr(err), redirect_stdout(io.StringIO()):
                cli_main(argv)
        except SystemExit as exit_:
            raise SystemExit(f"exit {exit_.code}: {err.getvalue()}") from None

    return call


def ev(w: Watch, model: nn.Module | None = None, **kwargs: Any) -> Callable[[], Any]:
    net = model if model is not None else wrapped(w)
    x_id = images(w, 8)
    x_ood = w(torch.randn(8, 1, 8, 8) + 3)
    ood = kwargs.pop("ood", {"far": [x_ood]})
    return lambda: evaluate(net, [x_id], ood, **kwargs)


LOOP = "rejectnet/finetune/options.py (TrainOptions.__post_init__) does not check"
EVAL = "rejectnet/evaluation.py (evaluate) does not check"

# ---------------------------------------------------------------- the table
CASES: list[Case] = [
    # RejectHead.wrap
    Case(
        "wrap-k-zero",
        lambda w: partial(RejectHead.wrap, cnn(w), k=0),
        ValueError,
        r"\bk\b",
        r">= 1",
    ),
    Case(
        "wrap-k-float",
        lambda w: partial(RejectHead.wrap, cnn(w), k=2.5),
        TypeError,
        r"\bk\b",
        r"int >= 1",
    ),  # type: ignore[arg-type]
    Case(
        "wrap-k-bool",
        lambda w: partial(RejectHead.wrap, cnn(w), k=True),
        TypeError,
        r"\bk\b",
        r"int >= 1",
    ),
    Case(
        "wrap-not-a-module",
        lambda w: partial(RejectHead.wrap, "resnet18"),
        TypeError,
        r"\bmodel\b",
        r"torch\.nn\.Module",
    ),  # type: ignore[arg-type]
    Case(
        "wrap-head-missing",
        lambda w: partial(RejectHead.wrap, cnn(w), head="nope"),
        ValueError,
        r"head='nope'",
        r"nn\.Linear layers seen: fc1.*fc2",
    ),
    Case(
        "wrap-head-not-linear",
        lambda w: partial(RejectHead.wrap, cnn(w), head="conv1"),
        TypeError,
        r"head='conv1'",
        r"nn\.Linear layers seen",
    ),
    Case(
        "wrap-head-not-str",
        lambda w: partial(RejectHead.wrap, cnn(w), head=3),
        TypeError,
        r"\bhead\b",
        r"dotted module path such as 'fc'",
    ),  # type: ignore[arg-type]
    Case(
        "wrap-already-wrapped",
        lambda w: partial(RejectHead.wrap, wrapped(w)),
        ValueError,
        r"\bmodel\b.*already wrapped",
        r"wrap the original model|unwrap",
    ),
    # SelfSupervisedOODFinetuner(...)
    Case(
        "ft-lam-negative",
        lambda w: partial(SelfSupervisedOODFinetuner, small_net(w), lam=-1.0),
        ValueError,
        r"\blam\b",
        r">= 0",
    ),
    Case(
        "ft-lam-str",
        lambda w: partial(SelfSupervisedOODFinetuner, small_net(w), lam="5"),
        TypeError,
        r"\blam\b",
        r"number >= 0",
    ),  # type: ignore[arg-type]
    Case(
        "ft-epochs-zero",
        lambda w: partial(SelfSupervisedOODFinetuner, small_net(w), epochs=0),
        ValueError,
        r"\bepochs\b",
        r"positive int",
    ),
    Case(
        "ft-outlier-ratio-zero",
        lambda w: partial(SelfSupervisedOODFinetuner, small_net(w), outlier_ratio=0),
        ValueError,
        r"\boutlier_ratio\b",
        r"> 0",
    ),
    Case(
        "ft-lr-nan",
        lambda w: partial(SelfSupervisedOODFinetuner, small_net(w), lr=math.nan),
        ValueError,
        r"\blr\b",
        r"finite number > 0",
    ),
    Case(
        "ft-checkpoint-every-zero",
        lambda w: partial(SelfSupervisedOODFinetuner, small_net(w), checkpoint_every=0),
        ValueError,
        r"\bcheckpoint_every\b",
        r"positive int",
    ),
    Case(
        "ft-seed-str",
        lambda w: partial(SelfSupervisedOODFinetuner, small_net(w), seed="abc"),
        TypeError,
        r"\bseed\b",
        r"int .*or None",
    ),  # type: ignore[arg-type]
    # issue 22 item 12: seed=2**70 said "Overflow when unpacking long long"
    Case(
        "ft-seed-beyond-numpy-range",
        lambda w: fit_call(w, seed=2**70),
        ValueError,
        r"\bseed\b",
        r"int in \[0, 4294967295\]",
    ),
    Case(
        "train-classifier-seed-beyond-range",
        lambda w: partial(
            rejectnet.train_classifier,
            cnn(w),
            DataLoader(TensorDataset(images(w), torch.zeros(6, dtype=torch.long)), batch_size=3),
            epochs=1,
            seed=2**70,
            progress=False,
        ),
        ValueError,
        r"\bseed\b",
        r"int in \[0, 4294967295\]",
    ),
    # issue 22 item 12: kwargs dropout='x' said "'<' not supported between 'str' and 'int'"
    Case(
        "smallcnn-dropout-str",
        lambda w: partial(SmallCNN, dropout="x"),
        TypeError,
        r"\bdropout\b",
        r"number in \[0, 1\]",
    ),
    Case(
        "smallcnn-hidden-str",
        lambda w: partial(SmallCNN, hidden="x"),
        TypeError,
        r"\bhidden\b",
        r"positive int",
    ),
    Case(
        "wideresnet-dropout-str",
        lambda w: partial(WideResNet, depth=10, widen_factor=1, dropout="x"),
        TypeError,
        r"\bdropout\b",
        r"number in \[0, 1\]",
    ),
    Case(
        "wideresnet-depth-str",
        lambda w: partial(WideResNet, depth="40"),
        TypeError,
        r"\bdepth\b",
        r"positive int",
    ),
    Case(
        "ft-amp-unknown",
        lambda w: partial(SelfSupervisedOODFinetuner, small_net(w), amp="fp8"),
        ValueError,
        r"\bamp\b",
        r"'bf16' or 'fp16'",
    ),  # type: ignore[arg-type]
    Case(
        "ft-grad-clip-negative",
        lambda w: partial(SelfSupervisedOODFinetuner, small_net(w), grad_clip=-1.0),
        ValueError,
        r"\bgrad_clip\b",
        r"> 0",
    ),
    Case(
        "ft-k-disagrees",
        lambda w: partial(SelfSupervisedOODFinetuner, small_net(w, k=2), k=5),
        ValueError,
        r"\bk=5\b",
        r"omit k",
    ),
    Case(
        "ft-unwrapped-without-k",
        lambda w: partial(SelfSupervisedOODFinetuner, w(DropoutCNN())),
        TypeError,
        r"not wrapped",
        r"pass k=",
    ),
    Case(
        "ft-device-unknown",
        lambda w: partial(SelfSupervisedOODFinetuner, small_net(w), device="gpu0"),
        ValueError,
        r"\bdevice\b",
        r"'cpu'|'cuda",
    ),
    Case(
        "ft-checkpoint-dir-int",
        lambda w: partial(SelfSupervisedOODFinetuner, small_net(w), checkpoint_dir=5),
        TypeError,
        r"\bcheckpoint_dir\b",
        r"str|path",
    ),  # type: ignore[arg-type]
    # .fit(...)
    Case(
        "fit-in-loader-empty",
        lambda w: fit_call(w, in_loader=[]),
        ValueError,
        r"\bin_loader\b",
        r"at least one labeled batch",
    ),
    Case(
        "fit-outlier-loader-empty",
        lambda w: fit_call(w, out_loader=[]),
        ValueError,
        r"\boutlier_loader\b",
        r"needs unlabeled outliers",
    ),
    Case(
        "fit-outlier-shape",
        lambda w: fit_call(w, x_out=torch.randn(40, 1, 10, 10)),
        ValueError,
        r"outlier_loader inputs have \(1, 10, 10\)",
        r"resize or crop .* \(1, 8, 8\)|\(1, 8, 8\).*resize or crop",
    ),
    Case(
        "fit-outlier-dtype",
        lambda w: fit_call(w, x_out=torch.randn(40, 1, 8, 8, dtype=torch.float64)),
        ValueError,
        r"outlier_loader inputs are torch\.float64",
        r"same transform",
    ),
    Case(
        "fit-labels-out-of-range",
        lambda w: fit_call(w, y=in_distribution(n=32).tensors[1] + 5),
        ValueError,
        r"in_loader.*labels in \[5, 7\]",
        r"must be in \[0, 2\]",
    ),
    Case(
        "fit-labels-float",
        lambda w: fit_call(w, y=in_distribution(n=32).tensors[1].float()),
        ValueError,
        r"in_loader labels",
        r"1-D integer tensor of class indices",
    ),
    Case(
        "fit-no-length",
        lambda w: fit_call(
            w, in_loader=(b for b in [(torch.randn(8, 1, 8, 8), torch.zeros(8, dtype=torch.long))])
        ),
        TypeError,
        r"\bin_loader\b",
        r"DataLoader over a map-style dataset or a list",
    ),
    Case(
        "fit-batch-is-str",
        lambda w: fit_call(w, in_loader=["abc"]),
        TypeError,
        r"in_loader batch",
        r"a Tensor, a tuple \(x,\) or \(x, y\)",
    ),
    Case(
        "fit-dict-without-input-key",
        lambda w: fit_call(
            w, in_loader=[{"img": torch.randn(8, 1, 8, 8), "y": torch.zeros(8, dtype=torch.long)}]
        ),
        TypeError,
        r"in_loader batch",
        r"use one of \['x'",
    ),
    Case(
        "fit-unlabeled",
        lambda w: fit_call(w, in_loader=[(torch.randn(8, 1, 8, 8),)]),
        ValueError,
        r"in_loader batches",
        r"\(x, y\)",
    ),
    Case(
        "fit-resume-without-dir",
        lambda w: fit_call(w, resume=True),
        ValueError,
        r"resume=True",
        r"needs checkpoint_dir",
    ),
    Case(
        "fit-fp16-on-cpu", lambda w: fit_call(w, amp="fp16"), ValueError, r"amp='fp16'", r"amp=True"
    ),
    Case(
        "fit-momentum-negative",
        lambda w: fit_call(w, momentum=-0.5),
        ValueError,
        r"\bmomentum\b",
        r">= 0",
    ),
    Case(
        "fit-scheduler-unknown",
        lambda w: fit_call(w, scheduler="linear"),
        ValueError,
        r"\bscheduler\b",
        r"'cosine'",
    ),
    Case(
        "fit-optimizer-not-callable",
        lambda w: fit_call(w, optimizer="adam"),
        TypeError,
        r"\boptimizer\b",
        r"callable|factory",
    ),
    Case(
        "fit-callback-not-a-callback",
        lambda w: fit_call(w, callbacks=[object()]),
        TypeError,
        r"\bcallbacks\b",
        r"Callback",
    ),
    # scores
    Case(
        "score-no-reject-unit",
        lambda w: partial(scores.sum_reject, logits(w, width=5), num_classes=5),
        ValueError,
        r"\bnum_classes\b",
        r"num_classes < logits width \(5\)",
    ),
    Case(
        "score-1d-logits",
        lambda w: partial(scores.max_reject, w(torch.randn(5)), num_classes=2),
        ValueError,
        r"\blogits\b.*2-D",
        r"\(N, classes\)",
    ),
    Case(
        "score-list-logits",
        lambda w: partial(scores.msp, [[1.0, 2.0]]),
        TypeError,
        r"\blogits\b",
        r"torch\.Tensor or numpy array",
    ),  # type: ignore[arg-type]
    Case(
        "score-bool-logits",
        lambda w: partial(
            scores.entropy_diff, w(torch.ones(3, 4, dtype=torch.bool)), num_classes=2
        ),
        TypeError,
        r"\blogits\b",
        r"real numbers",
    ),
    Case(
        "score-nan-logits",
        lambda w: partial(scores.max_logit, logits(w, nan=True)),
        ValueError,
        r"\blogits\b.*NaN",
        r"finite",
    ),
    Case(
        "score-num-classes-float",
        lambda w: partial(scores.entropy_reject, logits(w), num_classes=2.0),
        TypeError,
        r"\bnum_classes\b",
        r"integer",
    ),  # type: ignore[arg-type]
    Case(
        "score-temperature-zero",
        lambda w: partial(scores.energy, logits(w), temperature=0.0),
        ValueError,
        r"\btemperature\b",
        r"> 0",
    ),
    Case(
        "score-weights-length",
        lambda w: partial(
            scores.weighted_reject, logits(w), num_classes=3, weights=w(torch.ones(3))
        ),
        ValueError,
        r"\bweights\b",
        r"expected length k = 2",
    ),
    Case(
        "score-weights-negative",
        lambda w: partial(scores.weighted_reject, logits(w), num_classes=3, weights=[1.0, -1.0]),
        ValueError,
        r"\bweights\b",
        r"finite and non-negative",
    ),
    Case(
        "compute-unknown-score",
        lambda w: partial(scores.compute, "bogus", logits(w), num_classes=3),
        ValueError,
        r"unknown score 'bogus'",
        r"available scores: .*sum_reject",
    ),
    Case(
        "compute-needs-num-classes",
        lambda w: partial(scores.compute, "sum", logits(w)),
        ValueError,
        r"\bnum_classes\b",
        r"the number C of ordinary classes",
    ),
    Case(
        "register-bad-name",
        lambda w: partial(scores.register, "has space", lambda z: z[:, 0], "baseline"),
        ValueError,
        r"score name",
        r"printable ASCII characters without spaces",
    ),
    Case(
        "available-bad-kind",
        lambda w: partial(scores.available, "other"),
        ValueError,
        r"\bkind\b",
        r"'reject', 'baseline' or None",
    ),  # type: ignore[arg-type]
    Case(
        "fit-weights-width-mismatch",
        lambda w: partial(scores.fit_reject_weights, logits(w, width=5), logits(w, width=6), 3),
        ValueError,
        r"logits_in and logits_out",
        r"same width",
    ),
    Case(
        "fit-weights-rounds-negative",
        lambda w: partial(scores.fit_reject_weights, logits(w), logits(w), 3, rounds=-1),
        ValueError,
        r"\brounds\b",
        r">= 0",
    ),
    # metrics
    Case(
        "auroc-empty-s-in",
        lambda w: partial(metrics.auroc, s(w, []), s(w, [0.5])),
        ValueError,
        r"\bs_in\b is empty",
        r"at least one score",
    ),
    Case(
        "auroc-inf-s-out",
        lambda w: partial(metrics.auroc, s(w, [0.1]), s(w, [0.5, math.inf])),
        ValueError,
        r"\bs_out\b.*infinite",
        r"must be finite",
    ),
    Case(
        "aupr-in-2d",
        lambda w: partial(metrics.aupr_in, w(np.zeros((2, 2))), s(w, [0.5])),
        ValueError,
        r"\bs_in\b must be 1-D",
        r"shape \(N,\)",
    ),
    Case(
        "aupr-out-strings",
        lambda w: partial(metrics.aupr_out, s(w, [0.1]), w(np.array(["a", "b"]))),
        TypeError,
        r"\bs_out\b",
        r"real numbers",
    ),
    Case(
        "detection-error-complex",
        lambda w: partial(metrics.detection_error, w(np.array([1j])), s(w, [0.5])),
        TypeError,
        r"\bs_in\b",
        r"real numbers",
    ),
    Case(
        "fpr-tpr-percent",
        lambda w: partial(metrics.fpr_at_tpr, s(w, [0.1]), s(w, [0.5]), tpr=95),
        ValueError,
        r"\btpr\b",
        r"\(0, 1\].*write 0\.95",
    ),
    Case(
        "ood-metrics-tpr-str",
        lambda w: partial(metrics.ood_metrics, s(w, [0.1]), s(w, [0.5]), tpr="0.95"),
        TypeError,
        r"\btpr\b",
        r"number between 0 and 1",
    ),  # type: ignore[arg-type]
    Case(
        "aurc-length-mismatch",
        lambda w: partial(metrics.aurc, s(w, [0.1, 0.2, 0.3]), w(np.array([True, False]))),
        ValueError,
        r"\bcorrect\b",
        r"same length as scores \(3\)",
    ),
    Case(
        "risk-coverage-not-binary",
        lambda w: partial(metrics.risk_coverage, s(w, [0.1, 0.2]), w(np.array([0, 2]))),
        ValueError,
        r"\bcorrect\b",
        r"booleans or 0/1",
    ),
    Case(
        "tmr-threshold-nan",
        lambda w: partial(
            metrics.total_misclassification_rate, s(w, [0.1]), [True], s(w, [0.2]), math.nan
        ),
        ValueError,
        r"\bthreshold\b",
        r"finite real number",
    ),
    Case(
        "tmr-s-out-nan",
        lambda w: partial(
            metrics.total_misclassification_rate, s(w, [0.1]), [True], s(w, [math.nan]), 0.5
        ),
        ValueError,
        r"\bs_out\b.*NaN",
        r"must be finite",
    ),
    # thresholds
    Case(
        "coverage-nan-scores",
        lambda w: partial(scores.threshold_for_coverage, s(w, [0.1, math.nan])),
        ValueError,
        r"\bs_in\b.*NaN",
        r"must be finite",
    ),
    Case(
        "coverage-negative",
        lambda w: partial(scores.threshold_for_coverage, s(w, [0.1]), coverage=-0.5),
        ValueError,
        r"\bcoverage\b",
        r"\(0, 1\]",
    ),
    Case(
        "tpr-empty-s-out",
        lambda w: partial(scores.threshold_at_tpr, s(w, [0.1]), s(w, [])),
        ValueError,
        r"\bs_out\b is empty",
        r"at least one score",
    ),
    Case(
        "tpr-at-lowest-float",
        lambda w: partial(
            scores.threshold_at_tpr,
            s(w, [-1.7976931348623157e308]),
            s(w, [-1.7976931348623157e308]),
        ),
        ValueError,
        r"\bs_out\b",
        r"> -1\.7e308",
    ),
    Case(
        "risk-target-one",
        lambda w: partial(
            scores.threshold_for_risk, s(w, [0.1, 0.2]), [True, True], target_risk=1.0
        ),
        ValueError,
        r"\btarget_risk\b",
        r"\(0, 1\)",
    ),
    Case(
        "risk-delta-zero",
        lambda w: partial(
            scores.threshold_for_risk, s(w, [0.1, 0.2]), [True, True], 0.1, delta=0.0
        ),
        ValueError,
        r"\bdelta\b",
        r"\(0, 1\)",
    ),
    Case(
        "risk-unreachable",
        lambda w: partial(
            scores.threshold_for_risk, s(w, [0.1, 0.2, 0.3]), [False, True, False], 0.01
        ),
        ValueError,
        r"target_risk=0\.01 is not achievable",
        r"larger target_risk",
    ),
    # calibrate / set_threshold
    Case(
        "calibrate-coverage-percent",
        lambda w: partial(wrapped(w).calibrate, [images(w)], coverage=95),
        ValueError,
        r"\bcoverage\b",
        r"write 0\.95",
    ),
    Case(
        "calibrate-coverage-zero",
        lambda w: partial(wrapped(w, threshold=0.3).calibrate, [images(w)], coverage=0),
        ValueError,
        r"\bcoverage\b",
        r"\(0, 1\]",
    ),
    Case(
        "calibrate-empty",
        lambda w: partial(wrapped(w).calibrate, []),
        ValueError,
        r"\bloader\b yielded no batches",
        r"at least one sample",
    ),
    Case(
        "calibrate-unknown-score",
        lambda w: partial(wrapped(w).calibrate, [images(w)], score="median"),
        ValueError,
        r"unknown score 'median'",
        r"available scores",
    ),
    Case(
        "calibrate-loader-none",
        lambda w: partial(wrapped(w).calibrate, None),
        TypeError,
        r"\bloader\b",
        r"iterable of batches",
    ),  # type: ignore[arg-type]
    Case(
        "calibrate-nan-inputs",
        lambda w: partial(wrapped(w, threshold=0.3).calibrate, [images(w, nan_rows=(2,))]),
        ValueError,
        r"\bloader\b.*rows 2",
        r"finite inputs",
    ),
    Case(
        "set-threshold-inf",
        lambda w: partial(wrapped(w, threshold=0.3).set_threshold, math.inf),
        ValueError,
        r"\bvalue\b",
        r"finite threshold",
    ),
    Case(
        "set-threshold-str",
        lambda w: partial(wrapped(w).set_threshold, "0.5"),
        TypeError,
        r"\bvalue\b",
        r"finite real threshold",
    ),  # type: ignore[arg-type]
    Case(
        "set-threshold-unknown-score",
        lambda w: partial(wrapped(w).set_threshold, 0.5, "p99"),
        ValueError,
        r"unknown score 'p99'",
        r"available scores",
    ),
    # predict / ood_score
    Case(
        "predict-uncalibrated",
        lambda w: partial(wrapped(w).predict, images(w)),
        RuntimeError,
        r"no threshold set",
        r"net\.calibrate\(|set_threshold",
    ),
    Case(
        "predict-no-batch-dim",
        lambda w: partial(wrapped(w, threshold=0.3).predict, images(w)[0]),
        ValueError,
        r"\bx\b must be 4-D",
        r"x\.unsqueeze\(0\)",
    ),
    Case(
        "predict-list",
        lambda w: partial(wrapped(w, threshold=0.3).predict, [[0.0]]),
        TypeError,
        r"\bx\b",
        r"torch\.Tensor batch",
    ),  # type: ignore[arg-type]
    Case(
        "predict-nan-rows",
        lambda w: partial(wrapped(w, threshold=0.3).predict, images(w, nan_rows=(1, 4))),
        ValueError,
        r"\bx\b.*rows 1, 4",
        r"finite inputs",
    ),
    Case(
        "ood-score-nan",
        lambda w: partial(wrapped(w).ood_score, images(w, nan_rows=(0,))),
        ValueError,
        r"\bx\b.*rows 0",
        r"finite inputs",
    ),
    Case(
        "ood-score-unknown",
        lambda w: partial(wrapped(w).ood_score, images(w), score="bogus"),
        ValueError,
        r"unknown score 'bogus'",
        r"available scores",
    ),
    # save / load
    Case(
        "save-plain-model",
        lambda w: partial(rejectnet.save, cnn(w), w.tmp / "m.safetensors"),
        TypeError,
        r"\bnet\b must be a RejectHead",
        r"wrap the model first",
    ),  # type: ignore[arg-type]
    Case(
        "save-path-int",
        lambda w: partial(rejectnet.save, wrapped(w), 42),
        TypeError,
        r"\bpath\b",
        r"str or os\.PathLike",
    ),  # type: ignore[arg-type]
    Case(
        "save-missing-folder",
        lambda w: partial(rejectnet.save, wrapped(w), w.tmp / "no" / "m.safetensors"),
        FileNotFoundError,
        r"path's folder",
        r"does not exist",
    ),
    Case(
        "save-path-is-folder",
        lambda w: partial(rejectnet.save, wrapped(w), w.tmp),
        IsADirectoryError,
        r"\bpath\b",
        r"file name such as 'model\.safetensors'",
    ),
    Case(
        "load-missing-file",
        lambda w: partial(rejectnet.load, w.tmp / "none.safetensors", cnn(w)),
        FileNotFoundError,
        r"\bpath\b",
        r"does not exist",
    ),
    Case(
        "load-wrong-num-classes",
        lambda w: partial(rejectnet.load, saved(w), w(TinyCNN(num_classes=7))),
        ValueError,
        r"C=7 outputs",
        r"num_classes=4",
    ),
    Case(
        "load-wrong-k",
        lambda w: partial(rejectnet.load, saved(w), wrapped(w, k=2)),
        ValueError,
        r"k=3 reject classes",
        r"C=4 and k=2",
    ),
    Case(
        "load-model-str",
        lambda w: partial(rejectnet.load, saved(w), "TinyCNN"),
        TypeError,
        r"\bmodel\b",
        r"torch\.nn\.Module",
    ),  # type: ignore[arg-type]
    Case(
        "load-map-location-unknown",
        lambda w: partial(rejectnet.load, saved(w), cnn(w), map_location="gpu7"),
        ValueError,
        r"map_location='gpu7'",
        r"'cpu'",
    ),
    Case(
        "load-map-location-int",
        lambda w: partial(rejectnet.load, saved(w), cnn(w), map_location=0),
        TypeError,
        r"\bmap_location\b",
        r"'cpu' or 'cuda:0'",
    ),  # type: ignore[arg-type]
    Case(
        "load-inplace-not-bool",
        lambda w: partial(rejectnet.load, saved(w), cnn(w), inplace="yes"),
        TypeError,
        r"\binplace\b",
        r"True or False",
    ),  # type: ignore[arg-type]
    Case(
        "load-inplace-wrong-architecture",
        lambda w: partial(rejectnet.load, saved(w), _wider_conv(w), inplace=True),
        ValueError,
        r"conv2\.weight: file \(8, 4, 3, 3\) vs model \(8, 4, 5, 5\)",
        r"same architecture",
    ),
    Case(
        "load-a-pickle",
        lambda w: partial(rejectnet.load, _pickle_file(w), cnn(w)),
        ValueError,
        r"\bpath\b.*not a safetensors file",
        r"written by rejectnet\.save",
    ),
    # evaluate
    Case("evaluate-n-runs-zero", lambda w: ev(w, n_runs=0), ValueError, r"\bn_runs\b", r"int >= 1"),
    Case(
        "evaluate-no-ood-sets",
        lambda w: ev(w, ood={}),
        ValueError,
        r"\bood_loaders\b",
        r"non-empty mapping \{name: loader\}",
    ),
    Case(
        "evaluate-reject-score-plain-model",
        lambda w: ev(w, model=cnn(w), score="sum"),
        ValueError,
        r"score='sum_reject'",
        r"use one of \['energy', 'max_logit', 'msp'\]",
    ),
    Case(
        "evaluate-mixed-reserved",
        lambda w: ev(w, ood={"mixed": [torch.randn(4, 1, 8, 8)]}),
        ValueError,
        r"'mixed' is reserved",
        r"rename",
    ),
    Case("evaluate-tpr-percent", lambda w: ev(w, tpr=95), ValueError, r"\btpr\b", r"write 0\.95"),
    Case(
        "evaluate-seed-str",
        lambda w: ev(w, seed="0"),
        TypeError,
        r"\bseed\b",
        r"\bint\b",
    ),
    Case(
        "evaluate-empty-ood-set",
        lambda w: ev(w, ood={"far": []}),
        ValueError,
        r"'far'|ood_loaders",
        r"at least one sample",
    ),
    # the console command
    Case(
        "cli-seed-not-int",
        lambda w: cli(["demo", "--seed", "abc"]),
        SystemExit,
        r"exit 2: .*--seed",
        r"invalid int value: 'abc'",
    ),
    Case(  # issue 22 item 12: a traceback ending "Overflow when unpacking long long"
        "cli-seed-beyond-range",
        lambda w: cli(["demo", "--seed", str(2**70)]),
        SystemExit,
        r"exit 2: .*--seed",
        r"int in \[0, 4294967295\]",
    ),
    Case(
        "cli-seed-negative",
        lambda w: cli(["demo", "--seed=-1"]),
        SystemExit,
        r"exit 2: .*--seed",
        r"int in \[0, 4294967295\]",
    ),
    Case(
        "demo-seed-beyond-range",
        lambda w: partial(run_demo, DemoConfig(seed=2**70, progress=False)),
        ValueError,
        r"\bseed\b",
        r"int in \[0, 4294967295\]",
    ),
    Case(
        "evaluate-seed-negative",
        lambda w: ev(w, seed=-1),
        ValueError,
        r"\bseed\b",
        r"int in \[0, 4294967295\]",
    ),
    Case(
        "demo-data-seed-beyond-range",
        lambda w: partial(rejectnet.data.demo_data, seed=2**70, n_outliers=10, n_ood=10),
        ValueError,
        r"\bseed\b",
        r"int in \[0, 4294967295\]",
    ),
    Case(
        "letter-dev-sets-seed-negative",
        lambda w: partial(rejectnet.data.letter_dev_sets, 4, seed=-1),
        ValueError,
        r"\bseed\b",
        r"int in \[0, 4294967295\]",
    ),
    Case(
        "cli-seed-missing",
        lambda w: cli(["demo", "--seed"]),
        SystemExit,
        r"exit 2: .*--seed",
        r"expected one argument",
    ),
    Case(
        "cli-unknown-command",
        lambda w: cli(["frobnicate"]),
        SystemExit,
        r"exit 2: .*invalid choice: 'frobnicate'",
        r"choose from .*'demo'",
    ),
    Case(
        "cli-unknown-option",
        lambda w: cli(["--bogus"]),
        SystemExit,
        r"exit 2: .*unrecognized arguments: --bogus",
        r"usage: rejectnet",
    ),
    Case(
        "cli-bench-preset",
        lambda w: cli(["bench", "mnist", "--data-dir", str(w.tmp), "--preset", "huge"]),
        SystemExit,
        r"exit 2: .*--preset",
        r"choose from 'quick', 'paper', 'smoke'",
    ),
    Case(
        "cli-bench-k-not-ints",
        lambda w: cli(["bench", "mnist", "--data-dir", str(w.tmp), "--k", "one,two"]),
        SystemExit,
        r"exit 2: .*--k",
        r"comma list of integers",
    ),
    Case(
        "cli-bench-ood-syntax",
        lambda w: cli(["bench", "mnist", "--data-dir", str(w.tmp), "--ood", "notmnist"]),
        SystemExit,
        r"exit 2: .*--ood",
        r"NAME=PATH",
    ),
]


def _wider_conv(w: Watch) -> TinyCNN:
    model = cnn(w)
    model.conv2 = nn.Conv2d(4, 8, 5, padding=2)
    return model


def _pickle_file(w: Watch) -> Path:
    path = w.tmp / "weights.pt"
    torch.save({"fc2.weight": torch.zeros(4, 16)}, path)
    return path


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=c.xfail)) if c.xfail else c
        for c in CASES
    ],
    ids=[c.id for c in CASES],
)
def test_bad_input(case: Case, tmp_path: Path, reliability: ReliabilityCounts) -> None:
    reliability.case()
    watch = Watch(tmp_path)
    call = case.build(watch)
    before = [snapshot(o) for o in watch.objects]
    structure = [
        [type(m) for m in o.modules()] if isinstance(o, nn.Module) else None for o in watch.objects
    ]
    with pytest.raises(case.exc) as info:
        call()
    message = str(info.value)
    assert re.search(case.names, message, re.S), (
        f"the message does not name the argument: {message}"
    )
    assert re.search(case.valid, message, re.S), (
        f"the message does not say what is valid: {message}"
    )
    for obj, snap, mods in zip(watch.objects, before, structure, strict=True):
        assert bit_equal(snapshot(obj), snap), f"{type(obj).__name__} was modified"
        if mods is not None:
            assert [type(m) for m in obj.modules()] == mods, "the model's layers were replaced"


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
