"""Virtual outliers in feature space, at the input of the classification head.

In the spirit of VOS (Du et al., ICLR 2022) and NPOS (Tao et al., ICLR 2023): the
features that the head sees for in-distribution images are kept in a running queue;
class-conditional Gaussians with a shared covariance are fitted on it; virtual outliers
are drawn on a shell of low density around each class (just beyond where nearly all its
training features lie) and passed through the head, so that the reject units (or, for
Outlier Exposure, the plain classifier) learn to answer them as outliers. The backbone
runs once per step as before: the features come from a forward hook on the head, during
the step's one forward pass.

Assumption: a feature vector just outside every class's cloud is an outlier. It says
nothing about what lies far away or between the classes, and a shared covariance is a
coarse fit to ReLU features; that is why it is a complement to real or synthesised
outlier images, not a substitute.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from rejectnet._locate import find_head
from rejectnet._validation import check_flag, check_int, check_number
from rejectnet.head import RejectHead
from rejectnet.outliers._base import Options, check_generator, check_range

__all__ = ["MAX_QUEUE_SIZE", "VirtualOutliers", "head_of"]

MAX_QUEUE_SIZE = 2**18
"""The most rows :class:`VirtualOutliers` keeps (262,144). VOS keeps 1,000 features
per class; this covers a thousand classes at 262 each, and bounds the queue's memory
(``queue_size * D`` float32 on the training device: 1 GiB at D = 1024) and the refit's
``queue_size * D**2`` work."""


def head_of(model: nn.Module) -> tuple[nn.Module, int]:
    """The head whose input features rejectnet's feature-space pieces use, and C.

    Args:
        model: A :class:`~rejectnet.RejectHead` (its ``RejectLinear``), a plain
            classifier (its final ``nn.Linear``, found as :meth:`RejectHead.wrap` finds
            it), or either inside ``DistributedDataParallel`` (``.module``).

    Returns:
        The head module and the number of in-distribution classes C.

    Raises:
        rejectnet._locate.HeadNotFoundError: If a plain model's head cannot be found.

    Example:
        >>> from torch import nn
        >>> head, c = head_of(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))
        >>> type(head).__name__, c
        ('Linear', 3)
    """
    inner = getattr(model, "module", model)
    if isinstance(inner, RejectHead):
        return inner.head, inner.num_classes
    _, linear = find_head(inner)
    return linear, int(linear.out_features)


class VirtualOutliers(Options):
    """Low-density samples of class-conditional Gaussians on the head's input features.

    Every training forward, a hook on the head captures its input; at
    :meth:`extra_outlier_logits` the in-distribution rows (the first ``n_in``) enter a
    ring buffer with their labels. Every ``refresh`` steps the class means, the shared
    covariance (with a ridge of ``ridge`` times its mean variance) and the 99th
    percentile ``d99`` of the queue's own Mahalanobis distances are recomputed. Each
    virtual outlier picks a class in proportion to the queue, a random direction, and a
    Mahalanobis radius uniform in ``shell * d99``; it goes through the head (with
    gradients to the head only). Nothing is sampled until ``warmup`` rows have been
    seen. All of it runs on the features' device with no host synchronisation.

    Args:
        ratio: Virtual outliers per in-distribution row of the step, in ``[0, 100]``.
        queue_size: Rows kept in the feature queue, in ``[2, MAX_QUEUE_SIZE]`` (2**18).
        shell: Range of radii, in units of ``d99``, within ``(0, 100]``.
        refresh: Steps between two refits of the Gaussians (>= 1).
        warmup: Rows to see before the first virtual outliers (default ``queue_size``).
        ridge: Covariance regulariser, relative to the mean variance, in ``[0, 1e6]``.
        nonnegative: Clamp the samples at 0, for heads fed by ReLU features (a sample
            with negative coordinates is trivially unlike every real feature vector).
        generator: RNG on the features' device (``None``: torch's global RNG).

    Raises:
        TypeError: If an argument has the wrong type (an int where a number would do
            is fine).
        ValueError: If an argument is out of range.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> vo = VirtualOutliers(ratio=0.5, queue_size=32)
        >>> vo.attach(model)
        >>> for _ in range(3):
        ...     x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        ...     logits = model(torch.cat([x, torch.randn(8, 4)]))
        ...     extra = vo.extra_outlier_logits(16, y)
        >>> vo.detach()
        >>> extra.shape
        torch.Size([8, 3])
    """

    _options = (
        "ratio",
        "queue_size",
        "shell",
        "refresh",
        "warmup",
        "ridge",
        "nonnegative",
        "generator",
    )

    def __init__(
        self,
        ratio: float = 1.0,
        queue_size: int = 2048,
        shell: tuple[float, float] = (1.0, 1.5),
        refresh: int = 10,
        warmup: int | None = None,
        ridge: float = 1e-2,
        nonnegative: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.ratio = check_number(ratio, "ratio", maximum=100.0)
        self.queue_size: int = check_int(
            queue_size, "queue_size", minimum=2, maximum=MAX_QUEUE_SIZE
        )
        self.shell = check_range(
            shell, "shell", lambda v, n: check_number(v, n, positive=True, maximum=100.0)
        )
        self.refresh: int = check_int(refresh, "refresh")
        self.warmup: int = self.queue_size if warmup is None else check_int(warmup, "warmup")
        self.ridge = check_number(ridge, "ridge", maximum=1e6)
        check_flag(nonnegative, "nonnegative")
        self.nonnegative = nonnegative
        self.generator = check_generator(generator)
        self.num_classes: int | None = None
        self._head: nn.Module | None = None
        self._handle: RemovableHandle | None = None
        self._captured: torch.Tensor | None = None
        self._busy = False
        self._reset_state()

    def _reset_state(self) -> None:
        self.feats: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.ptr = 0
        self.seen = 0
        self.steps = 0
        self.stats: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ hook
    def attach(self, model: nn.Module) -> None:
        """Register the feature hook on ``model``'s head (see :func:`head_of`).

        Raises:
            RuntimeError: If already attached.
        """
        if self._handle is not None:
            raise RuntimeError("VirtualOutliers is already attached; call detach() first")
        head, c = head_of(model)
        if self.num_classes is not None and self.num_classes != c:
            raise ValueError(
                f"this state was built for {self.num_classes} classes, the model has {c}"
            )
        self.num_classes = c
        self._head = head
        self._handle = head.register_forward_pre_hook(self._hook)

    def detach(self) -> None:
        """Remove the hook and drop the captured features (the queue is kept)."""
        if self._handle is not None:
            self._handle.remove()
        self._handle = None
        self._head = None
        self._captured = None

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self._busy or not module.training or not args:
            return
        x = args[0]
        if isinstance(x, torch.Tensor):
            self._captured = x

    # ------------------------------------------------------------------ step
    def extra_outlier_logits(self, n_in: int, y: torch.Tensor) -> torch.Tensor | None:
        """Queue this step's in-distribution features and return virtual-outlier logits.

        Args:
            n_in: The first ``n_in`` rows of the step's forward are the labeled ones.
            y: Their labels ``(n_in,)``.

        Returns:
            ``(round(ratio * n_in), width)`` logits through the head (with gradients
            to its parameters), or ``None`` during warm-up or when no feature was
            captured since the last call.

        Raises:
            RuntimeError: If not attached.
            ValueError: If the captured features are not ``(rows, D)`` with at least
                ``n_in`` rows, or ``y`` does not match.
        """
        if self._head is None or self.num_classes is None:
            raise RuntimeError("VirtualOutliers is not attached; call attach(model) first")
        feats, self._captured = self._captured, None
        if feats is None:
            return None
        if feats.ndim != 2 or feats.shape[0] < n_in:
            raise ValueError(
                f"virtual outliers need (rows, D) head inputs with >= n_in={n_in} rows, the "
                f"head saw {tuple(feats.shape)}"
            )
        if not isinstance(y, torch.Tensor) or y.shape != (n_in,):
            raise ValueError(f"y must be the {n_in} labels of the in-distribution rows")
        self._enqueue(feats[:n_in].detach(), y)
        self.steps += 1
        m = round(self.ratio * n_in)
        if self.seen < self.warmup or m == 0:
            return None
        if self.stats is None or (self.steps - 1) % self.refresh == 0:
            self.stats = self._fit()
        virtual = self.sample(m).to(feats.dtype)
        self._busy = True
        try:
            logits: torch.Tensor = self._head(virtual)
        finally:
            self._busy = False
        return logits

    def _enqueue(self, f: torch.Tensor, y: torch.Tensor) -> None:
        if self.feats is None or self.labels is None:
            self.feats = torch.zeros(self.queue_size, f.shape[1], device=f.device)
            self.labels = torch.zeros(self.queue_size, dtype=torch.long, device=f.device)
        if self.feats.device != f.device:
            self.feats, self.labels = self.feats.to(f.device), self.labels.to(f.device)
            if self.stats is not None:
                self.stats = {k: v.to(f.device) for k, v in self.stats.items()}
        if f.shape[1] != self.feats.shape[1]:
            raise ValueError(f"features have {f.shape[1]} dims, the queue {self.feats.shape[1]}")
        f, y = f[-self.queue_size :], y[-self.queue_size :]
        idx = (self.ptr + torch.arange(f.shape[0], device=f.device)) % self.queue_size
        self.feats.index_copy_(0, idx, f.float())
        self.labels.index_copy_(0, idx, y.to(torch.long))
        self.ptr = (self.ptr + f.shape[0]) % self.queue_size
        self.seen += f.shape[0]

    def _fit(self) -> dict[str, torch.Tensor]:
        assert self.feats is not None and self.labels is not None and self.num_classes
        filled = min(self.seen, self.queue_size)
        f, lab = self.feats[:filled], self.labels[:filled]
        onehot = F.one_hot(lab, self.num_classes).to(f.dtype)
        counts = onehot.sum(0)
        mu = (onehot.T @ f) / counts.clamp_min(1)[:, None]
        centered = f - mu[lab]
        d = f.shape[1]
        cov = centered.T @ centered / filled
        scale = cov.diagonal().mean().clamp_min(1e-12)
        cov = cov + self.ridge * scale * torch.eye(d, device=f.device)
        chol, _ = torch.linalg.cholesky_ex(cov)
        white = torch.linalg.solve_triangular(chol, centered.T, upper=False)
        d99 = torch.quantile(white.norm(dim=0), 0.99)
        return {"mu": mu, "chol": chol, "d99": d99, "labels": lab.clone()}

    def sample(self, m: int) -> torch.Tensor:
        """``m`` virtual feature vectors from the current fit ``(m, D)`` (float32).

        Raises:
            RuntimeError: Before the first fit (during warm-up).
        """
        check_int(m, "m", minimum=0)
        if self.stats is None:
            raise RuntimeError("no fit yet: virtual outliers start after the warm-up")
        mu, chol, d99, lab = (self.stats[k] for k in ("mu", "chol", "d99", "labels"))
        device, g = mu.device, self.generator
        cls = lab[torch.randint(0, lab.shape[0], (m,), device=device, generator=g)]
        z = torch.randn(m, mu.shape[1], device=device, generator=g)
        z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
        lo, hi = self.shell
        r = (lo + (hi - lo) * torch.rand(m, 1, device=device, generator=g)) * d99
        out: torch.Tensor = mu[cls] + (r * z) @ chol.T
        return out.clamp_min(0) if self.nonnegative else out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The queue, counters and current fit (tensors and plain Python only)."""
        return {
            "num_classes": self.num_classes,
            "feats": self.feats,
            "labels": self.labels,
            "ptr": self.ptr,
            "seen": self.seen,
            "steps": self.steps,
            "stats": None if self.stats is None else dict(self.stats),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (validated; nothing changes on error).

        Raises:
            ValueError: If ``state`` is not such a mapping or does not fit ``queue_size``.
        """
        keys = {"num_classes", "feats", "labels", "ptr", "seen", "steps", "stats"}
        if not isinstance(state, Mapping) or set(state) != keys:
            raise ValueError(f"state must be a mapping with keys {sorted(keys)}")
        feats, labels = state["feats"], state["labels"]
        if (feats is None) != (labels is None):
            raise ValueError("state['feats'] and state['labels'] must both be set or both None")
        if feats is not None and (
            not isinstance(feats, torch.Tensor)
            or not isinstance(labels, torch.Tensor)
            or feats.ndim != 2
            or feats.shape[0] != self.queue_size
            or labels.shape != (self.queue_size,)
        ):
            raise ValueError(
                f"state['feats'] must be ({self.queue_size}, D) and state['labels'] "
                f"({self.queue_size},) to fit queue_size={self.queue_size}"
            )
        for key in ("ptr", "seen", "steps"):
            v = state[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"state[{key!r}] must be an int >= 0, got {v!r}")
        stats = state["stats"]
        if stats is not None and (
            not isinstance(stats, Mapping) or set(stats) != {"mu", "chol", "d99", "labels"}
        ):
            raise ValueError("state['stats'] must be None or the fit from state_dict()")
        c = state["num_classes"]
        if self.num_classes is not None and c is not None and c != self.num_classes:
            raise ValueError(f"state is for {c} classes, this signal has {self.num_classes}")
        self.num_classes = c if c is not None else self.num_classes
        self.feats = None if feats is None else feats.clone()
        self.labels = None if labels is None else labels.clone()
        self.ptr, self.seen, self.steps = state["ptr"], state["seen"], state["steps"]
        self.stats = None if stats is None else {k: v.clone() for k, v in stats.items()}
