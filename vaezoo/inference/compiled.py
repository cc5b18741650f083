"""A training step traced once per batch shape and configuration, then run as one graph without Pyro.

An objective's loss on a model/guide pair runs Pyro's effect handlers at every sample site and reads
every parameter through a :class:`~pyro.nn.PyroModule`: Python work that a hand-written PyTorch step
does not do. :class:`CompiledLoss` removes it. It traces the whole loss-and-gradient computation,
``(parameters, buffers, x, latent weight) -> (loss, gradients)``, at the level of aten operators
(:func:`torch.fx.experimental.proxy_tensor.make_fx` over :func:`torch.func.functional_call` and
:func:`torch.autograd.grad`), so Pyro's Python runs once, at trace time, and is absent from the graph;
the graph is then compiled by inductor (``backend="inductor"``) or run as the traced aten program
(``backend="fx"``). ``torch.compile`` on the loss alone does not get there: Dynamo cannot trace Pyro's
messages and splits the loss into about ten graphs with Python in between.

What the graph keeps as inputs, so that one trace serves every step:

- the parameters (gradients are returned for those that require grad) and buffers, read afresh each
  call; batch-norm running statistics are updated in place exactly as in the eager step;
- the batch ``x``;
- the latent weight (KL warm-up, beta) as a 0-d tensor, so a warm-up does not retrace every step.

Random numbers are drawn by the graph's own random operators at every call. The ``fx`` backend
replays the eager step's aten operators in the eager order, so from the same RNG state it draws the
same noise and returns the same loss and gradients as ``objective.differentiable_loss`` and
``backward`` (tests/test_compiled.py). Inductor draws fresh noise with its own generator unless
``torch._inductor.config.fallback_random`` is set, and sums in another order.

A graph is cached per key: input shape, dtype and device; the train/eval flag of every submodule;
which parameters require grad; the objective's config; the model and guide objects. The trace uses
fake tensors, so Python control flow that depends on tensor *values* (``if x.sum() > 0``, ``.item()``)
raises at trace time instead of being silently frozen into the graph; the pair then runs eagerly
under that key, after one warning that says why. Refused up front, with the same warning:
objectives that own parameters or state (``parameters()`` / ``state_dict()``: learned and
running-average baselines, whose Python-side updates a graph would not repeat) and objectives that
override :meth:`~vaezoo.inference.objective.Objective.differentiable_loss`.

Inside the graph, Pyro's distribution argument checks do not run (the trace is taken with validation
off); with validation on, the model's data check ``check_x`` still runs on every batch, eagerly.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro.poutine.util import is_validation_enabled
from torch import nn
from torch.nn.modules.module import (
    register_module_buffer_registration_hook,
    register_module_module_registration_hook,
    register_module_parameter_registration_hook,
)

from vaezoo.errors import ConfigError, VaezooError
from vaezoo.inference.objective import Objective

BACKENDS = ("inductor", "fx")


# Bumped whenever any module anywhere registers or replaces a parameter, buffer or submodule
# (nn.Module's global registration hooks): a pair re-lists its tensors only after that happened.
_GENERATION = [0]


def _bump(*args: Any) -> None:
    _GENERATION[0] += 1


for _register in (
    register_module_parameter_registration_hook,
    register_module_buffer_registration_hook,
    register_module_module_registration_hook,
):
    _register(_bump)


class _Pair(nn.Module):
    """Model and guide under one root, so one ``functional_call`` swaps every tensor of both.

    :meth:`tensors` lists the tensors a graph takes. Walking ``modules()`` and ``parameters()`` of a
    deep hierarchy costs about a millisecond, as much as a small network's whole step, so the lists
    are kept until some module registers or replaces a tensor or submodule (``_GENERATION``);
    in-place changes (an optimizer step, ``load_state_dict``, ``to()``) keep the tensors' identity.
    """

    def __init__(self, model: nn.Module, guide: nn.Module, objective: Objective):
        super().__init__()
        self.model, self.guide = model, guide
        self.objective = objective  # a plain object: not a submodule (refused when it owns tensors)
        self._generation = -1
        self._found: tuple = ()

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return -self.objective.per_datapoint(self.model, self.guide, x, weight).mean()

    def tensors(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], tuple]:
        """(parameters that require grad, other parameters, buffers, structure) in a fixed order;
        structure holds what a graph is specialized to: train flags, requires_grad, dtypes, devices."""
        if self._generation != _GENERATION[0]:
            self._generation = _GENERATION[0]
            self._found = (list(self.modules()), list(self.parameters()), list(self.buffers()))
        modules, all_params, buffers = self._found
        grads = tuple(p.requires_grad for p in all_params)
        params = [p for p, g in zip(all_params, grads, strict=True) if g]
        others = [p for p, g in zip(all_params, grads, strict=True) if not g] if not all(grads) else []
        structure = (
            tuple(m.training for m in modules),
            grads,
            tuple((t.dtype, t.device) for t in (*all_params, *buffers)),
        )
        return params, others, buffers, structure


@dataclass
class _Graph:
    """One traced step: ``run(*tensors, x, weight) -> (loss, *grads)`` for the parameters in ``used``."""

    run: Any
    used: list[int]  # positions (among the parameters that require grad) that receive a gradient


def _refusal(objective: Objective) -> str | None:
    """Why ``objective`` cannot be traced, or ``None``."""
    if callable(getattr(objective, "parameters", None)) or callable(getattr(objective, "state_dict", None)):
        return "the objective owns parameters or state that its Python code updates"
    if type(objective).differentiable_loss is not Objective.differentiable_loss:
        return f"{type(objective).__name__} computes its own differentiable_loss"
    return None


class CompiledLoss:
    """``objective``'s training loss and its gradients on a model/guide pair, as a cached traced graph.

    ::

        fast = CompiledLoss(ELBO(kl_warmup=10))
        optimizer.zero_grad(set_to_none=True)
        loss = fast.loss_and_grad(model, guide, x, progress=epoch + i / steps)  # sets p.grad
        optimizer.step()

    :meth:`loss_and_grad` does what ``loss = objective.differentiable_loss(...); loss.backward()``
    does (gradients accumulate into ``.grad`` as ``backward`` does) and returns the loss, detached.
    Pairs it cannot trace run exactly that eager code (see the module docstring for when).

    :param objective: any :class:`~vaezoo.inference.objective.Objective`.
    :param backend: ``"inductor"`` compiles each graph (seconds to a minute, once per key);
        ``"fx"`` runs the traced aten program as is (no compile time, same noise as eager).
    :param warn: warn once per key when a pair runs eagerly.
    """

    def __init__(self, objective: Objective, backend: str = "inductor", warn: bool = True):
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r} for CompiledLoss; choose one of {list(BACKENDS)}")
        self.objective, self.backend, self.warn = objective, backend, warn
        self._cache: dict[tuple, _Graph | str] = {}
        self._pairs: dict[tuple[int, int], _Pair] = {}
        #: Graphs traced so far (a cache hit does not count); pairs refused are not counted.
        self.traces = 0
        try:
            self._config = hash((type(objective), objective.config)) and (type(objective), objective.config)
        except TypeError:  # a config with unhashable fields: its description is the key
            self._config = objective.describe()

    def eager_reason(self, model, guide, x: torch.Tensor) -> str | None:
        """Why this pair and batch run eagerly (``None`` if they run as a graph); traces if needed."""
        pair = self._pair(model, guide)
        entry = self._entry(pair, x, pair.tensors()[3])
        return entry if isinstance(entry, str) else None

    def loss_and_grad(self, model, guide, x: torch.Tensor, progress: float = math.inf) -> torch.Tensor:
        """The loss of :meth:`Objective.differentiable_loss`, detached; parameters' ``.grad`` receive
        its gradient."""
        pair = self._pair(model, guide)
        weight = self.objective.latent_weight(progress)
        if weight < 0:
            raise ConfigError(f"latent weight must be >= 0, got {weight}")
        params, others, buffers, structure = pair.tensors()
        entry = self._entry(pair, x, structure)
        if isinstance(entry, str):
            loss = self.objective.differentiable_loss(model, guide, x, progress)
            loss.backward()
            return loss.detach()
        if is_validation_enabled() and callable(getattr(model, "check_x", None)):
            model.check_x(x)
        w = torch.tensor(weight, dtype=params[0].dtype if params else x.dtype, device=x.device)
        with torch.no_grad():
            loss, *grads = entry.run(*params, *others, *buffers, x, w)
        for i, g in zip(entry.used, grads, strict=True):
            p = params[i]
            if p.grad is None:
                p.grad = g
            else:
                p.grad += g
        return loss

    def _pair(self, model, guide) -> _Pair:
        pair = self._pairs.get((id(model), id(guide)))
        if pair is None or pair.model is not model or pair.guide is not guide:
            pair = self._pairs[id(model), id(guide)] = _Pair(model, guide, self.objective)
        return pair

    def _entry(self, pair: _Pair, x: torch.Tensor, structure: tuple) -> _Graph | str:
        key = (id(pair), tuple(x.shape), x.dtype, x.device, structure, self._config)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._build(pair, x)
            self._cache[key] = entry
            if isinstance(entry, str) and self.warn:
                warnings.warn(
                    f"CompiledLoss: {self.objective.describe()} runs eagerly on this pair: {entry}",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return entry

    def _build(self, pair: _Pair, x: torch.Tensor) -> _Graph | str:
        reason = _refusal(self.objective)
        if reason is not None:
            return reason
        try:
            graph = trace(pair, x)
        except VaezooError:
            raise  # bad data or a mismatched pair: the user's to fix, as in the eager step
        except Exception as e:  # noqa: BLE001 - anything the tracer cannot follow means: run eagerly
            first = (str(e).strip().splitlines() or [""])[0]
            return f"it cannot be traced ({type(e).__name__}: {first})"
        self.traces += 1
        if self.backend == "inductor":
            graph.run = _inductor(graph.run, pair, x)
        return graph


def trace(pair: _Pair, x: torch.Tensor) -> _Graph:
    """The aten graph of ``pair``'s loss and gradients on batches like ``x``, with fake tensors.

    Raises whatever the tracer raises on data-dependent control flow.
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    names = [n for n, p in pair.named_parameters() if p.requires_grad]
    other_names = [n for n, p in pair.named_parameters() if not p.requires_grad]
    buffer_names = [n for n, _ in pair.named_buffers()]
    n1, n2, n3 = len(names), len(names) + len(other_names), len(names) + len(other_names) + len(buffer_names)
    used: list[int] = []

    def step(*flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        params = {n: t.detach().requires_grad_(True) for n, t in zip(names, flat[:n1], strict=True)}
        state = {**params, **dict(zip(other_names, flat[n1:n2], strict=True))}
        state.update(zip(buffer_names, flat[n2:n3], strict=True))
        with torch.enable_grad():
            loss = torch.func.functional_call(pair, state, (flat[n3], flat[n3 + 1]))
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        used[:] = [i for i, g in enumerate(grads) if g is not None]
        return (loss.detach(), *(grads[i] for i in used))

    params, others, buffers, _ = pair.tensors()
    weight = torch.ones((), dtype=params[0].dtype if params else x.dtype, device=x.device)
    with pyro.validation_enabled(False):
        gm = make_fx(step, tracing_mode="fake")(*params, *others, *buffers, x, weight)
    # Unused views and constants; random and in-place operators are impure and stay.
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return _Graph(gm, list(used))


def _inductor(gm, pair: _Pair, x: torch.Tensor):
    from torch._inductor.compile_fx import compile_fx

    params, others, buffers, _ = pair.tensors()
    example = [t.detach() for t in (*params, *others, *buffers, x)]
    example.append(torch.ones((), dtype=params[0].dtype if params else x.dtype, device=x.device))
    with torch.no_grad():
        return compile_fx(gm, example)


__all__ = ["BACKENDS", "CompiledLoss"]
