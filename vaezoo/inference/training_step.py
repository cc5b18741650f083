"""One training step's loss as a module, so :class:`~torch.nn.parallel.DistributedDataParallel` can wrap it.

DDP synchronizes the gradients of the module it wraps. The objective's loss involves the model, the
guide and any parameters the objective owns (an NVIL baseline network), so all three live in one
:class:`TrainingStep` whose ``forward`` runs the objective; Pyro's handlers run inside it, in each
process, exactly as in a single-process run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vaezoo import parallel
from vaezoo.errors import ConfigError
from vaezoo.inference.compiled import CompiledLoss
from vaezoo.inference.objective import has_adversary
from vaezoo.parallel import World


class TrainingStep(nn.Module):
    """``forward(x, progress)``: ``objective.differentiable_loss(model, guide, x, progress)``.

    ``owned`` are the objective's own trainable parameters; they are registered here (not the
    objective, which need not be a module) so DDP averages their gradients too.
    """

    def __init__(self, model, guide, objective, owned: list[nn.Parameter] = ()):
        super().__init__()
        self.model, self.guide = model, guide
        self.owned = nn.ParameterList(owned)
        object.__setattr__(self, "objective", objective)  # not a submodule: owned holds its parameters

    def forward(self, x: torch.Tensor, progress: float = math.inf) -> torch.Tensor:
        return self.objective.differentiable_loss(self.model, self.guide, x, progress=progress)


def _lazy(step: nn.Module) -> bool:
    return any(isinstance(p, nn.parameter.UninitializedParameter) for p in step.parameters())


def shape_lazy_parameters(step: TrainingStep, first_batch: Callable[[], torch.Tensor]) -> None:
    """Give lazily shaped parameters (a baseline network that learns its input size from the first
    batch) their shapes from ``first_batch()`` through the objective's ``shape_parameters`` hook, as
    exchanging parameters between processes needs.

    :raises ConfigError: when some remain unshaped.
    """
    if not _lazy(step):
        return
    shape = getattr(step.objective, "shape_parameters", None)
    if callable(shape):
        shape(first_batch())
    if _lazy(step):
        raise ConfigError(
            f"{type(step.objective).__name__} or the model/guide has parameters whose shapes are set "
            "by the first batch, which several processes cannot synchronize; give them their "
            "shapes before training (objectives: implement shape_parameters), or train in one process"
        )


def data_parallel(step: TrainingStep, w: World, device: torch.device) -> nn.Module:
    """``step`` wrapped in DDP when there are several ranks (itself otherwise).

    DDP broadcasts rank 0's parameters and buffers when it is made (lazily shaped parameters must
    have their shapes by then: :func:`shape_lazy_parameters`). Unused parameters are allowed: a guide
    or objective may leave some out, the same ones every step (``static_graph``).
    """
    if w.size == 1:
        return step
    return DistributedDataParallel(
        step,
        device_ids=[device.index] if device.type == "cuda" else None,
        static_graph=True,
    )


def check_adversary(objective, w: World, compile: str | None) -> None:
    """Refuse what an objective with an inner adversary step (:func:`has_adversary`) cannot train with.

    - ``compile``: the generator's loss reads the weights of the objective's discriminator, which a
      traced graph would take as constants, and the adversary's own step is Python between graphs.
    - several processes: each rank would train its discriminator on its own share of the batch, and
      the copies would drift apart (nothing averages their gradients).

    :raises ConfigError: naming what to do instead (eager, one process).
    """
    if not has_adversary(objective):
        return
    name = getattr(type(objective), "registry_name", type(objective).__name__)
    if compile:
        raise ConfigError(
            f"objective {name!r} trains a discriminator (or ratio network) of its own between steps, which "
            f"compile={compile!r} cannot follow (a traced graph would freeze its weights); train it eagerly: "
            "compile=None (vaezoo train --compile none)"
        )
    if w.size > 1:
        raise ConfigError(
            f"objective {name!r} trains a discriminator (or ratio network) of its own, which is not "
            f"synchronized across {w.size} processes; train it in one process (without torchrun)"
        )


class GradientStep:
    """One step's loss and gradients, eager (wrapped in DDP under torchrun) or as a compiled graph.

    ``step(x, progress, optimizer)`` zeroes the optimizer's gradients, fills them with those of the
    objective's loss on ``x`` and returns the loss, detached; the caller checks it and steps.

    With ``compile`` (``"inductor"`` or ``"fx"``), :class:`~vaezoo.inference.compiled.CompiledLoss`
    computes loss and gradients; several processes then average the gradients themselves (DDP's
    hooks fire only on ``backward``) and take rank 0's buffers (batch-norm statistics) after each
    step, as DDP does before each, having broadcast rank 0's parameters and buffers at the start.
    """

    def __init__(
        self,
        model,
        guide,
        objective,
        owned: list[nn.Parameter],
        w: World,
        device: torch.device,
        first_batch: Callable[[], torch.Tensor],
        compile: str | None = None,
    ):
        self.model, self.guide, self.objective, self.w = model, guide, objective, w
        self.fast = CompiledLoss(objective, backend=compile) if compile else None
        # Each tensor once: a guide may share parameters with its model.
        self.tensors = list({id(p): p for p in (*model.parameters(), *guide.parameters(), *owned)}.values())
        self.buffers = [*model.buffers(), *guide.buffers()]
        step = TrainingStep(model, guide, objective, owned)
        if w.size > 1:
            shape_lazy_parameters(step, first_batch)
        if self.fast is None:
            self.module = data_parallel(step, w, device)
        elif w.size > 1:
            parallel.broadcast([*self.tensors, *self.buffers], w)

    def __call__(self, x: torch.Tensor, progress: float, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        if self.fast is None:
            loss = self.module(x, progress=progress)
            loss.backward()
            return loss.detach()
        loss = self.fast.loss_and_grad(self.model, self.guide, x, progress=progress)
        if self.w.size > 1:
            parallel.average_gradients(self.tensors, self.w)
            parallel.broadcast(self.buffers, self.w)
        return loss
