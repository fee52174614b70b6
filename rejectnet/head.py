"""`RejectHead`: a classifier widened with k reject classes.

``RejectHead.wrap(model, k)`` finds the model's final ``nn.Linear`` (C outputs) and
replaces it with a :class:`RejectLinear` that keeps the original layer untouched and adds
a separate k-unit reject layer beside it; the two outputs are concatenated to C+k logits.
Keeping the original layer (rather than copying its weights into one wider layer) makes
the first C logits of the wrapped model equal the original model's logits bit for bit:
the same kernel runs on the same weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from rejectnet._inference import collect_logits, eval_mode, module_device
from rejectnet._locate import find_head, replace_module
from rejectnet._outputs import extract_logits
from rejectnet._validation import check_fraction
from rejectnet.prediction import REJECTED, Prediction
from rejectnet.scores import registry
from rejectnet.scores.thresholds import ThresholdResult, threshold_for_coverage

if TYPE_CHECKING:
    from rejectnet.export import DeployedModel

__all__ = ["RejectHead", "RejectLinear"]

_NAME_BYTES = 32
DEFAULT_SCORE = "sum_reject"


class RejectLinear(nn.Module):
    """The original classification layer plus a k-unit reject layer.

    Attributes:
        base: The model's original ``nn.Linear`` (C outputs), the very same object.
        reject: A new ``nn.Linear`` with k outputs, on the same device and dtype as
            ``base``, initialised like any fresh ``nn.Linear`` (PyTorch's default
            Kaiming-uniform weights and uniform bias, drawn from the global RNG, so
            ``torch.manual_seed`` makes it reproducible).

    Args:
        base: The layer to widen; kept as is, not copied.
        k: Number of reject units.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> base = nn.Linear(8, 3)
        >>> layer = RejectLinear(base, k=2)
        >>> layer.base is base, layer(torch.randn(4, 8)).shape
        (True, torch.Size([4, 5]))
    """

    def __init__(self, base: nn.Linear, k: int) -> None:
        super().__init__()
        self.base = base
        self.reject = nn.Linear(
            base.in_features,
            k,
            bias=True,
            device=base.weight.device,
            dtype=base.weight.dtype,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the C class logits and the k reject logits.

        Args:
            x: Features ``(..., in_features)``, the input of the original layer.

        Returns:
            ``(..., C + k)`` logits: ``base(x)`` followed by ``reject(x)``.
        """
        modules = self._modules
        base, reject = modules["base"], modules["reject"]
        assert base is not None and reject is not None
        if _plain_linear(base) and _plain_linear(reject):
            # nn.Linear.forward is exactly F.linear on the same tensors, so the class
            # logits stay bit-exact; calling it directly saves two module calls (a few
            # microseconds, which matter at batch size 1).
            pb, pr = base._parameters, reject._parameters
            class_logits = F.linear(x, pb["weight"], pb["bias"])  # type: ignore[arg-type]
            reject_logits = F.linear(x, pr["weight"], pr["bias"])  # type: ignore[arg-type]
            return torch.cat([class_logits, reject_logits], dim=-1)
        return torch.cat([base(x), reject(x)], dim=-1)


def _plain_linear(m: nn.Module) -> bool:
    """Whether calling ``m`` is the same as ``F.linear(x, m.weight, m.bias)``: an exact
    ``nn.Linear`` (not a subclass, so not parametrized either: parametrization swaps the
    class) with no hooks of its own and no global module hooks."""
    if type(m) is not nn.Linear or "weight" not in m._parameters or "bias" not in m._parameters:
        return False  # e.g. a subclass, or FSDP swapped the parameters for plain tensors
    if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks:
        return False
    hooks = nn.modules.module
    return not (
        hooks._global_forward_hooks
        or hooks._global_forward_pre_hooks
        or hooks._global_backward_hooks
        or hooks._global_backward_pre_hooks
    )


def _expected_input_ndim(model: nn.Module) -> int | None:
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            return len(m.kernel_size) + 2
    return None


def _check_finite_logits(logits: torch.Tensor, name: str) -> None:
    """Raise a ValueError naming the input ``name`` if any logit is NaN or infinite.

    Skipped while torch.compile / torch.export trace (a data-dependent branch).
    """
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    if callable(is_compiling) and is_compiling():
        return
    bad = ~torch.isfinite(logits).all(dim=-1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        shown = ", ".join(str(r) for r in rows[:10]) + (", ..." if len(rows) > 10 else "")
        raise ValueError(
            f"the model's logits on {name} hold NaN or infinite values for {len(rows)} of "
            f"{logits.shape[0]} sample(s) (rows {shown}); {name} must hold finite inputs on "
            "which the model does not overflow (check for NaN/inf in the data, or run in float32)"
        )


def _encode_name(name: str) -> torch.Tensor:
    raw = name.encode("ascii")
    buf = torch.zeros(_NAME_BYTES, dtype=torch.uint8)
    buf[: len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
    return buf


def _decode_name(buf: torch.Tensor) -> str:
    raw = bytes(int(b) for b in buf.tolist() if b != 0)
    return raw.decode("ascii")


class RejectHead(nn.Module):
    """A classifier with k extra reject classes, an OOD score and a calibrated threshold.

    Create one with :meth:`wrap`. The wrapped model returns ``(N, C + k)`` logits; the
    first C are exactly the original model's logits. State that travels with the model
    lives in buffers, so it is part of ``state_dict()``: ``threshold`` (float64 scalar,
    NaN until calibrated), ``threshold_score`` (the score's name, as 32 ASCII bytes) and
    ``score_weights`` (the k weights used by the ``"weighted_reject"`` score, float32).
    ``.half()`` and ``.to(dtype)`` leave the dtypes of these buffers alone.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> net = RejectHead.wrap(model, k=2)
        >>> net.num_classes, net.k
        (3, 2)
        >>> x = torch.randn(4, 1, 4, 4)
        >>> torch.equal(net(x)[:, :3], model(x))
        True
    """

    threshold: torch.Tensor
    threshold_score: torch.Tensor
    score_weights: torch.Tensor

    def __init__(self, model: nn.Module, head_path: str, k: int) -> None:
        super().__init__()
        layer = model.get_submodule(head_path)
        if not isinstance(layer, RejectLinear):
            raise TypeError(
                "RejectHead(...) expects a model whose head is already a RejectLinear; "
                "use RejectHead.wrap(model, k) instead"
            )
        self.model = model
        self.head_path = head_path
        self.num_classes = int(layer.base.out_features)
        self.k = int(k)
        self.expected_input_ndim = _expected_input_ndim(model)
        self.register_buffer("threshold", torch.tensor(math.nan, dtype=torch.float64))
        self.register_buffer("threshold_score", torch.zeros(_NAME_BYTES, dtype=torch.uint8))
        self.register_buffer("score_weights", torch.ones(self.k, dtype=torch.float32))

    # ------------------------------------------------------------------ construction
    @classmethod
    def wrap(
        cls, model: nn.Module, k: int = 5, *, head: str | None = None, inplace: bool = False
    ) -> RejectHead:
        """Widen ``model``'s final ``nn.Linear`` from C to C + k outputs.

        Args:
            model: A trained classifier (timm, torchvision, Hugging Face or hand-written)
                whose forward returns ``(N, C)`` logits, a dict with ``"logits"``, or an
                object with ``.logits``.
            k: Number of reject classes (at least 1). The paper uses 5 for 10-class
                problems and 10 for 100 classes.
            head: Dotted path of the final layer, e.g. ``"fc"`` or ``"heads.head"``.
                Found automatically when omitted (see :func:`rejectnet._locate.find_head`).
            inplace: When ``False`` (the default) the model is deep-copied first, so the
                caller's model object is left exactly as it was. When ``True`` the
                caller's model is modified in place (its head is replaced by a
                :class:`RejectLinear`) and shares all weights with the result, which
                saves memory for large models.

        Returns:
            The wrapped model, on the same device and dtype as ``model``, in the same
            train/eval mode.

        Raises:
            TypeError: If ``model`` is not an ``nn.Module``, ``k`` is not an int, or the
                named head is not an ``nn.Linear``.
            ValueError: If ``k < 1``, the model is already wrapped, no final layer can be
                found (the message lists the ``nn.Linear`` layers seen), or the model is a
                timm model created with ``num_classes=0``.

        Example:
            >>> import torchvision
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(torchvision.models.resnet18(num_classes=10), k=5)
            >>> net.head_path, net.num_classes, net.k
            ('fc', 10, 5)
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"k must be an int >= 1 (number of reject classes), got {k!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1 (number of reject classes), got {k}")
        if isinstance(model, RejectHead) or any(
            isinstance(m, RejectLinear) for m in model.modules()
        ):
            raise ValueError(
                "model is already wrapped by RejectHead; wrap the original model, or call "
                "net.unwrap() first to get the plain C-class model back"
            )
        path, _ = find_head(model, head)
        target = model if inplace else copy.deepcopy(model)
        base = target.get_submodule(path)
        assert isinstance(base, nn.Linear)
        target = replace_module(target, path, RejectLinear(base, k))
        net = cls(target, path, k)
        net.to(device=base.weight.device)
        net.train(model.training)
        return net

    def unwrap(self) -> nn.Module:
        """Return a plain C-class copy of the model, with the current weights.

        The reject units are dropped; whatever fine-tuning did to the rest of the
        network is kept. The returned model shares no tensors with ``self``.

        Returns:
            A deep copy of the wrapped model whose head is the original C-output
            ``nn.Linear`` again.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), k=2)
            >>> plain = net.unwrap()
            >>> x = torch.randn(4, 1, 4, 4)
            >>> plain(x).shape, torch.equal(plain(x), net(x)[:, :3])
            (torch.Size([4, 3]), True)
        """
        plain = copy.deepcopy(self.model)
        layer = plain.get_submodule(self.head_path)
        assert isinstance(layer, RejectLinear)
        return replace_module(plain, self.head_path, layer.base)

    @property
    def head(self) -> RejectLinear:
        """The widened final layer."""
        layer = self.model.get_submodule(self.head_path)
        assert isinstance(layer, RejectLinear)
        return layer

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        return module_device(self.model)

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: Any) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor batch, got {type(x).__name__}")
        exp = self.expected_input_ndim
        if x.ndim < 2 or (exp is not None and x.ndim != exp):
            want = f"{exp}-D (batch, channels, ...)" if exp is not None else "at least 2-D"
            hint = (
                "; add a batch dimension with x.unsqueeze(0)"
                if exp is not None and x.ndim == exp - 1
                else ""
            )
            raise ValueError(f"x must be {want}, got shape {tuple(x.shape)}{hint}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ``(N, C + k)`` logits: C class logits, then k reject logits.

        Args:
            x: A batch of inputs, shaped as the wrapped model expects.

        Returns:
            ``(N, C + k)`` logits; the first C equal the original model's logits.

        Raises:
            TypeError: If ``x`` is not a tensor.
            ValueError: If ``x`` has the wrong number of dimensions (e.g. a single
                image without its batch dimension).
            RuntimeError: If the wrapped model does not return ``(N, C + k)`` logits,
                i.e. the widened layer is not the model's final layer.
        """
        self._check_input(x)
        logits = extract_logits(self.model(x))
        width = self.num_classes + self.k
        if logits.ndim != 2 or logits.shape[-1] != width:
            raise RuntimeError(
                f"the wrapped model returned logits of shape {tuple(logits.shape)}, expected "
                f"(N, {width}) = (N, C + k); the layer at head={self.head_path!r} is probably "
                "not the model's final layer. Pass head='dotted.path' of the last nn.Linear"
            )
        return logits

    def _apply(self, fn: Any, recurse: bool = True) -> RejectHead:
        # Keep the threshold in float64 and the score weights in float32 through
        # .half()/.to(dtype), so decisions don't drift and save/load keeps every dtype.
        saved = self.threshold.detach().clone()
        weights = self.score_weights.detach().clone()
        super()._apply(fn, recurse)
        self.threshold = saved.to(self.threshold.device)
        self.score_weights = weights.to(self.score_weights.device)
        return self

    # ------------------------------------------------------------------ scores
    def _resolve_score(self, score: str | None) -> str:
        if score is None:
            score = self.calibrated_score or DEFAULT_SCORE
        return registry.spec(score).name

    def score_logits(self, logits: torch.Tensor, score: str | None = None) -> torch.Tensor:
        """Compute an OOD score from ``(N, C + k)`` logits already produced by this model.

        Args:
            logits: Output of ``self(x)``.
            score: A score name from :func:`rejectnet.scores.available` (reject scores and
                baselines alike; baselines see the first C logits). Defaults to the
                calibrated score, or ``"sum_reject"`` before calibration.

        Returns:
            ``(N,)`` scores, higher = more likely OOD.

        Raises:
            ValueError: If the score name is unknown or the logits are not
                ``(N, C + k)``.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2).eval()
            >>> logits = net(torch.randn(5, 8))
            >>> net.score_logits(logits, "max_reject").shape, net.score_logits(logits, "msp").shape
            (torch.Size([5]), torch.Size([5]))
        """
        name = self._resolve_score(score)
        kwargs: dict[str, Any] = {}
        if name == "weighted_reject":
            kwargs["weights"] = self.score_weights.to(logits.device)
        scores: torch.Tensor = registry.compute(
            name, logits, num_classes=self.num_classes, **kwargs
        )
        return scores

    def ood_score(self, x: torch.Tensor, score: str | None = None) -> torch.Tensor:
        """Return ``(N,)`` OOD scores for a batch (higher = more likely OOD).

        Runs without gradients and does not change the train/eval mode: call
        ``net.eval()`` first for deterministic scores.

        Args:
            x: A batch of inputs.
            score: Score name (see :meth:`score_logits`).

        Returns:
            ``(N,)`` scores; higher = more likely OOD.

        Raises:
            ValueError: If the score name is unknown, ``x`` has the wrong shape, or the
                model's logits on ``x`` are NaN or infinite (the message lists the rows).

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2).eval()
            >>> net.ood_score(torch.randn(5, 8), score="sum").shape
            torch.Size([5])
        """
        with torch.no_grad():
            logits = self(x)
            _check_finite_logits(logits, "x")
            return self.score_logits(logits, score)

    # ------------------------------------------------------------------ threshold
    @property
    def calibrated_score(self) -> str | None:
        """The name of the score the threshold belongs to, or ``None`` if unset."""
        name = _decode_name(self.threshold_score)
        return name or None

    @property
    def is_calibrated(self) -> bool:
        """Whether a threshold has been set."""
        return not math.isnan(float(self.threshold))

    def set_threshold(self, value: float, score: str = DEFAULT_SCORE) -> None:
        """Set the decision threshold by hand: inputs with ``score > value`` are rejected.

        Args:
            value: A finite threshold (or a :class:`~rejectnet.scores.ThresholdResult`).
            score: The score the threshold applies to.

        Raises:
            TypeError: If ``value`` is not a real number.
            ValueError: If ``value`` is not finite or ``score`` is unknown.

        Example:
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2)
            >>> net.is_calibrated
            False
            >>> net.set_threshold(0.5, score="max_reject")
            >>> net.is_calibrated, net.calibrated_score
            (True, 'max_reject')
        """
        if isinstance(value, (str, bytes, bool)):
            raise TypeError(f"value must be a finite real threshold, got {value!r}")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"value must be a finite real threshold (a float, a 0-d tensor or a "
                f"ThresholdResult), got {type(value).__name__}"
            ) from None
        if not math.isfinite(v):
            raise ValueError(f"value must be a finite threshold, got {value!r}")
        name = registry.spec(score).name
        self.threshold.fill_(v)
        self.threshold_score.copy_(_encode_name(name))

    def calibrate(
        self,
        loader: Iterable[Any],
        coverage: float = 0.95,
        score: str = DEFAULT_SCORE,
    ) -> ThresholdResult:
        """Set the threshold from held-out in-distribution data only.

        The threshold is the smallest score that keeps at least ``coverage`` of the
        loader's samples (they score at or below it); no OOD data is needed. The model
        runs in eval mode for the pass and returns to its previous mode afterwards.

        Args:
            loader: Held-out in-distribution batches (a tensor, ``(x, y)`` or dict per
                batch; labels are ignored). Never use the test set.
            coverage: Fraction of in-distribution inputs to keep, in ``(0, 1]``.
            score: The score to threshold (see :func:`rejectnet.scores.available`).

        Returns:
            The threshold and what it achieves on the calibration data.

        Raises:
            TypeError: If ``loader`` is not an iterable of batches.
            ValueError: If the loader is empty, ``coverage`` is not in ``(0, 1]``, the
                score is unknown, or the model's outputs on the loader are NaN or
                infinite. The threshold is then left as it was.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2)
            >>> val = [torch.randn(100, 8), torch.randn(100, 8)]  # held-out in-distribution
            >>> result = net.calibrate(val, coverage=0.95)
            >>> result.coverage, float(net.threshold) == result.value
            (0.95, True)
        """
        name = registry.spec(score).name
        check_fraction(coverage, "coverage")
        if isinstance(loader, (torch.Tensor, str, bytes)) or not hasattr(loader, "__iter__"):
            raise TypeError(
                "loader must be an iterable of batches (a DataLoader or a list of tensors, "
                f"(x, y) tuples or dicts; wrap a single tensor as [x]), got "
                f"{type(loader).__name__}"
            )
        with eval_mode(self):
            logits, _ = collect_logits(self, loader, self.device, name="loader")
        _check_finite_logits(logits, "loader")
        scores = self.score_logits(logits, name)
        result = threshold_for_coverage(scores, coverage=coverage)
        self.set_threshold(result.value, name)
        return result

    def predict(self, x: torch.Tensor) -> Prediction:
        """Classify a batch, rejecting inputs whose OOD score exceeds the threshold.

        Args:
            x: A batch of inputs.

        Returns:
            A :class:`~rejectnet.prediction.Prediction`; ``labels`` is ``-1`` for rejected
            inputs.

        Raises:
            RuntimeError: If no threshold has been set (call :meth:`calibrate` or
                :meth:`set_threshold` first).
            ValueError: If ``x`` has the wrong shape, or the model's logits on ``x`` are
                NaN or infinite (the message lists the rows).

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2).eval()
            >>> net.set_threshold(0.0)  # every input has sum_reject > 0: all rejected
            >>> pred = net.predict(torch.randn(4, 8))
            >>> pred.labels.tolist(), pred.probs.shape
            ([-1, -1, -1, -1], torch.Size([4, 3]))
        """
        if not self.is_calibrated:
            raise RuntimeError(
                "no threshold set: call net.calibrate(id_val_loader, coverage=0.95) on "
                "held-out in-distribution data, or net.set_threshold(value, score) first"
            )
        name = self.calibrated_score or DEFAULT_SCORE
        with torch.no_grad():
            logits = self(x)
            _check_finite_logits(logits, "x")
            score = self.score_logits(logits, name)
            class_logits = logits[:, : self.num_classes].float()
            probs = torch.softmax(class_logits, dim=-1)
            classes = class_logits.argmax(dim=-1)
            thr = float(self.threshold)
            is_ood = score.double() > thr
            labels = torch.where(is_ood, torch.full_like(classes, REJECTED), classes)
        return Prediction(labels, classes, probs, score, is_ood, thr, name)

    def deployable(self) -> DeployedModel:
        """A frozen, calibrated copy for deployment: images in, decisions out.

        The returned plain ``nn.Module`` maps a batch ``x`` to ``(labels, ood_score,
        is_ood)``, computing exactly what :meth:`predict` computes (the same forward and
        score function, ``is_ood = ood_score > threshold``, label ``-1`` for rejected
        inputs), with the threshold baked in as a buffer. It holds a deep copy of the
        network in eval mode, has no Python-side state, and works under
        ``torch.inference_mode()``, ``torch.compile`` and ``torch.export.export``; write
        it as ONNX with :func:`rejectnet.export_onnx`.

        Returns:
            A :class:`rejectnet.export.DeployedModel`.

        Raises:
            RuntimeError: If no threshold has been set (call :meth:`calibrate` first).

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2).eval()
            >>> _ = net.calibrate([torch.randn(64, 8)], coverage=0.95)
            >>> x = torch.randn(5, 8)
            >>> labels, score, is_ood = net.deployable()(x)
            >>> torch.equal(labels, net.predict(x).labels)
            True
        """
        from rejectnet.export import DeployedModel

        return DeployedModel(self)

    def extra_repr(self) -> str:
        """C, k, the head path, the threshold and its score, for ``repr(net)``."""
        thr = f"{float(self.threshold):.6g}" if self.is_calibrated else "unset"
        return (
            f"num_classes={self.num_classes}, k={self.k}, head={self.head_path!r}, "
            f"threshold={thr}, score={self.calibrated_score}"
        )

    def named_reject_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """The parameters of the k reject units (for separate learning rates).

        Returns:
            An iterator of ``(name, parameter)`` pairs, named as in ``named_parameters()``.

        Example:
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Sequential(nn.Linear(8, 3)), k=2)
            >>> [name for name, _ in net.named_reject_parameters()]
            ['model.0.reject.weight', 'model.0.reject.bias']
        """
        prefix = f"model.{self.head_path}.reject"
        for name, p in self.head.reject.named_parameters():
            yield f"{prefix}.{name}", p
