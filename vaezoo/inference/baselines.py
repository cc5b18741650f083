"""Control variates for score-function gradients: running-average, NVIL and VIMCO learning signals.

A baseline b is subtracted from the learning signal l that multiplies the score ∇ log q(z | x):
``E[(l - b) ∇ log q] = E[l ∇ log q]`` whenever b does not depend on the z it multiplies, so the
gradient stays unbiased while its variance drops by as much as b predicts l.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaezoo.errors import ConfigError
from vaezoo.nets import activation as activation_module
from vaezoo.nets import mlp


class Baseline(nn.Module):
    """No baseline: b(x) = 0. Subclasses keep their state as buffers/parameters (checkpointable).

    - ``forward(x)``: the baseline of each datapoint, shape ``(batch,)``, without a graph.
    - :meth:`update`: called once per training step with that step's signal; updates running state
      and returns a per-datapoint loss whose gradient trains the baseline's own parameters.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0])

    def update(self, x: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        return signal.new_zeros(signal.shape)


class AverageBaseline(Baseline):
    """b = an exponentially decaying average of past batch-mean learning signals.

    Only past steps enter b (the current signal is folded in by :meth:`update`, after use), so b is
    independent of the current samples and the estimate stays unbiased. The average is
    bias-corrected as in Adam: after t updates b = sum_s (1 - d) d^(t-s) l_s / (1 - d^t); before the
    first update b = 0.

    References:
        - Williams (1992), Simple Statistical Gradient-Following Algorithms for Connectionist
          Reinforcement Learning, Machine Learning 8.
    """

    def __init__(self, decay: float = 0.9):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"baseline_decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.register_buffer("total", torch.zeros(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def value(self) -> torch.Tensor:
        steps = int(self.steps)
        if steps == 0:
            return self.total.detach() * 0.0
        return self.total.detach() / (1.0 - self.decay**steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value().to(x).expand(x.shape[0])

    def update(self, x: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        mean = signal.detach().mean().to(self.total)
        self.total.mul_(self.decay).add_((1.0 - self.decay) * mean)
        self.steps.add_(1)
        return signal.new_zeros(signal.shape)


class NVILBaseline(Baseline):
    """b(x) = c + f_psi(x): a running average c plus an MLP on x fitted to the centred signal.

    Neural variational inference and learning: f_psi minimizes E[(l - c - f_psi(x))^2], the
    squared error of predicting the centred signal, with its own gradient; since b depends on x
    only, the estimator stays unbiased however well f_psi has been trained.

    Deviation from Mnih & Gregor (2014): no division by a running standard deviation of the signal
    (their "variance normalization"), which rescales the gradient (an adaptive learning rate) rather
    than reducing its variance at a fixed scale, and would make the estimator's expectation differ
    from the objective's gradient.

    References:
        - Mnih & Gregor (2014), Neural Variational Inference and Learning in Belief Networks, ICML.
    """

    def __init__(self, hidden: tuple[int, ...] = (100,), decay: float = 0.9, activation: str = "tanh"):
        super().__init__()
        self.average = AverageBaseline(decay)
        # The input size is the data's, unknown until the first batch: a lazy first layer lets the
        # parameters exist (for the optimizer) and load from a checkpoint before any data is seen.
        layers: list[nn.Module] = [nn.LazyLinear(hidden[0] if hidden else 1)]
        if hidden:
            layers += [activation_module(activation), mlp((*hidden, 1), activation)]
            # Start at b(x) = c: an untrained network must not add variance.
            nn.init.zeros_(layers[-1][-1].weight)
            nn.init.zeros_(layers[-1][-1].bias)
        self.net = nn.Sequential(*layers)

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.average(x) + self._predict(x).detach()

    def update(self, x: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        target = signal.detach() - self.average(x)
        loss = (target - self._predict(x)).pow(2)
        self.average.update(x, signal)
        return loss


def make_baseline(kind: str, decay: float = 0.9, hidden: tuple[int, ...] = (100,)) -> Baseline:
    """The baseline named ``kind`` ("none", "avg", "nvil"); "vimco" is per particle, see below."""
    if kind in ("none", "vimco"):
        return Baseline()
    if kind == "avg":
        return AverageBaseline(decay)
    if kind == "nvil":
        return NVILBaseline(hidden, decay)
    raise ConfigError(f"unknown baseline {kind!r}; choose one of none, avg, nvil, vimco")


def vimco_signals(log_w: torch.Tensor) -> torch.Tensor:
    """Per-particle learning signals L - L_{-j} of VIMCO, shape ``(k, batch)``, without a graph.

    With L = log (1/k) sum_i w_i, the leave-one-out baseline of particle j replaces w_j by the
    geometric mean of the other weights: L_{-j} = log (1/k) (sum_{i != j} w_i + w_hat_{-j}),
    log w_hat_{-j} = (1 / (k-1)) sum_{i != j} log w_i, which depends on the other particles only.

    References:
        - Mnih & Rezende (2016), Variational Inference for Monte Carlo Objectives, ICML.
    """
    k = log_w.shape[0]
    if k < 2:
        raise ConfigError("VIMCO needs at least 2 particles per datapoint; set num_particles >= 2")
    log_w = log_w.detach()
    bound = log_w.logsumexp(0) - math.log(k)
    others_mean = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)
    # loo[j, i] = log w_i for i != j, and the geometric-mean substitute on the diagonal.
    loo = log_w.unsqueeze(0).expand(k, *log_w.shape).clone()
    idx = torch.arange(k)
    loo[idx, idx] = others_mean
    return bound - (loo.logsumexp(1) - math.log(k))
