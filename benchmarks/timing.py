"""The timing harness the step-time benchmarks share: training steps, timed in alternating rounds.

Every implementation gets its own fused Adam and reads its loss each step (``loss.item()``), as
:func:`~vaezoo.inference.fit` does. Rounds alternate between the implementations, so drifts in
machine load hit all of them alike; the median over rounds is reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence

import torch

from vaezoo.inference.fit import make_optimizer


def training_step(loss_fn: Callable, params: Iterable[torch.nn.Parameter], lr: float = 1e-3) -> Callable:
    """``step(batch)``: the loss, its gradient and one fused Adam step on ``params``."""
    optimizer = make_optimizer(list(params), lr=lr)

    def step(batch) -> float:
        loss = loss_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def time_steps(step: Callable, batches: Sequence) -> float:
    """Seconds per step of ``step`` over ``batches``."""
    t0 = time.perf_counter()
    for batch in batches:
        step(batch)
    return (time.perf_counter() - t0) / len(batches)


def warm_up(steps: dict[str, Callable], batches: Sequence) -> None:
    """A few untimed steps of each: allocator, kernels, Adam state, compilation."""
    for step in steps.values():
        time_steps(step, batches)


def alternating_medians(steps: dict[str, Callable], batches: Sequence, rounds: int) -> dict[str, float]:
    """Median seconds per step of each of ``steps``, timed in ``rounds`` alternating blocks."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(time_steps(step, batches))
    return {name: statistics.median(t) for name, t in times.items()}
