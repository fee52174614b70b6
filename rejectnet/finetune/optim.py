"""The optimiser side of a step: optimizer and schedule, loss scaling, clipping, accumulation."""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from rejectnet.finetune.options import TrainOptions

__all__ = [
    "DEFAULTS",
    "ModelFamily",
    "OptimizerChoice",
    "OptimizerStep",
    "build_optimizer",
    "choose_optimizer",
    "cosine_schedule",
    "model_family",
]


def cosine_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step cosine decay from the initial learning rate to 0 (the paper's schedule).

    Args:
        optimizer: The optimizer whose learning rates decay.
        total_steps: Optimizer steps of the whole run.

    Returns:
        A ``LambdaLR`` to step after every optimizer step.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = cosine_schedule(opt, total_steps=4)
        >>> for _ in range(2):
        ...     opt.step(); sched.step()
        >>> round(opt.param_groups[0]["lr"], 3)
        0.5
    """

    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


ModelFamily = Literal["transformer", "cnn"]
"""What :func:`model_family` tells apart: it picks the default optimizer."""

DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"lr": 0.01, "weight_decay": 5e-4},
    "adamw": {"lr": 1e-4, "weight_decay": 0.01},
}
"""The default ``lr`` and ``weight_decay`` of each built-in optimizer."""

_ATTENTION_NAMES = ("Attention", "SelfAttention", "MultiheadAttention")


def model_family(model: nn.Module) -> ModelFamily:
    """``"transformer"`` for transformer-style models, ``"cnn"`` for everything else.

    The rule (in this order): a Hugging Face ``PreTrainedModel`` anywhere in the model,
    an ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` or any module whose
    class name ends in ``Attention`` (timm's ViT, Hugging Face's BERT), or a
    LayerNorm-normalised net (two or more ``nn.LayerNorm`` and no batch norm: ViTs,
    ConvNeXt, MLP-Mixer) is a transformer; CNNs with batch norm, plain MLPs and
    everything else are ``"cnn"``.

    Example:
        >>> from torch import nn
        >>> model_family(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)))
        'cnn'
        >>> model_family(nn.TransformerEncoderLayer(16, 2))
        'transformer'
    """
    layer_norms = batch_norms = 0
    for module in model.modules():
        names = [c.__name__ for c in type(module).__mro__]
        if "PreTrainedModel" in names or isinstance(
            module, (nn.MultiheadAttention, nn.TransformerEncoderLayer)
        ):
            return "transformer"
        if type(module).__name__.endswith(_ATTENTION_NAMES):
            return "transformer"
        if isinstance(module, nn.LayerNorm):
            layer_norms += 1
        elif isinstance(module, nn.modules.batchnorm._NormBase):
            batch_norms += 1
    return "transformer" if layer_norms >= 2 and batch_norms == 0 else "cnn"


class OptimizerChoice(NamedTuple):
    """The optimizer a run uses: its name (``"sgd"``, ``"adamw"`` or ``"factory"``),
    learning rate and weight decay (``None`` for a user factory)."""

    name: str
    lr: float | None
    weight_decay: float | None


def choose_optimizer(model: nn.Module, options: TrainOptions) -> OptimizerChoice:
    """The optimizer ``options`` ask for on ``model``, with its defaults filled in.

    ``optimizer=None`` (or ``"auto"``) keeps SGD with Nesterov momentum for CNN-style
    models (lr 0.01, weight decay 5e-4, the paper's) and takes AdamW for
    transformer-style ones (lr 1e-4, weight decay 0.01; :func:`model_family`): SGD at
    0.01 wrecks a pretrained transformer (issue 21: a BERT's accuracy fell from 100% to
    24.9%). ``"sgd"`` / ``"adamw"`` force one; an ``lr=`` or ``weight_decay=`` given
    replaces the default.

    Example:
        >>> from torch import nn
        >>> from rejectnet.finetune import TrainOptions
        >>> choose_optimizer(nn.TransformerEncoderLayer(16, 2), TrainOptions())
        OptimizerChoice(name='adamw', lr=0.0001, weight_decay=0.01)
        >>> choose_optimizer(nn.Linear(4, 2), TrainOptions(lr=0.05)).lr
        0.05
    """
    if callable(options.optimizer):
        return OptimizerChoice("factory", None, None)
    name = options.optimizer if options.optimizer not in (None, "auto") else None
    if name is None:
        name = "adamw" if model_family(model) == "transformer" else "sgd"
    lr = options.lr if options.lr is not None else DEFAULTS[name]["lr"]
    wd = (
        options.weight_decay if options.weight_decay is not None else DEFAULTS[name]["weight_decay"]
    )
    return OptimizerChoice(name, lr, wd)


def build_optimizer(
    model: nn.Module, options: TrainOptions, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """The optimizer (:func:`choose_optimizer`) and its schedule.

    Args:
        model: The module whose trainable parameters are optimised.
        options: The training options.
        total_steps: Optimizer steps of the whole run (for the schedule).

    Returns:
        ``(optimizer, scheduler or None)``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    choice = choose_optimizer(model, options)
    optimizer: torch.optim.Optimizer
    if callable(options.optimizer):
        optimizer = options.optimizer(params)
    elif choice.name == "adamw":
        assert choice.lr is not None and choice.weight_decay is not None
        optimizer = torch.optim.AdamW(params, lr=choice.lr, weight_decay=choice.weight_decay)
    else:
        assert choice.lr is not None and choice.weight_decay is not None
        optimizer = torch.optim.SGD(
            params,
            lr=choice.lr,
            momentum=options.momentum,
            weight_decay=choice.weight_decay,
            nesterov=options.nesterov and options.momentum > 0,
        )
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    if options.scheduler == "cosine":
        scheduler = cosine_schedule(optimizer, total_steps)
    elif options.scheduler is None:
        scheduler = None
    else:
        scheduler = options.scheduler(optimizer, total_steps)
    return optimizer, scheduler


class OptimizerStep:
    """Backward, gradient accumulation, loss scaling (fp16), clipping, step and schedule.

    ``backward(loss)`` after every micro-batch; ``step()`` when a group of
    ``accumulate`` micro-batches is complete (or at the end of an epoch).

    Args:
        model: The module being trained (for clipping).
        optimizer: Its optimizer.
        scheduler: Stepped after every optimizer step, or ``None``.
        accumulate: Micro-batches per optimizer step (the loss is divided by it).
        grad_clip: Max gradient norm, or ``None``.
        fp16: Use a gradient scaler (float16 autocast on CUDA).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        *,
        accumulate: int = 1,
        grad_clip: float | None = None,
        fp16: bool = False,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.accumulate = accumulate
        self.grad_clip = grad_clip
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None
        self.pending = 0

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate the gradients of one micro-batch's loss."""
        if self.pending == 0:
            self.optimizer.zero_grad(set_to_none=True)
        scaled = loss / self.accumulate if self.accumulate > 1 else loss
        if self.scaler is not None:
            self.scaler.scale(scaled).backward()
        else:
            scaled.backward()
        self.pending += 1

    @property
    def group_complete(self) -> bool:
        """Whether ``accumulate`` micro-batches are waiting for a step."""
        return self.pending >= self.accumulate

    def step(self) -> None:
        """Clip, step the optimizer (and the scaler and the schedule), start a new group."""
        if self.scaler is not None:
            if self.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.pending = 0

    @property
    def lr(self) -> float:
        """The learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        """Optimizer, schedule and scaler state for a checkpoint (between groups only)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
