"""Hamiltonian Monte Carlo on an unnormalized log density, vectorized over chains and datapoints.

One kernel serves every MCMC user in vaezoo (annealed importance sampling, HMC-refined guides). It
moves a tensor of states ``z`` of shape ``(c, batch, D)``: ``c`` chains for each of ``batch``
datapoints, every (chain, datapoint) an independent Markov chain on R^D. The target is any function
``log_prob(z) -> (c, batch)`` (or ``(log_prob, aux)``, where ``aux`` is carried along with the
accepted state, e.g. the log-likelihood term that AIS needs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

LogProb = Callable[[torch.Tensor], "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]


@dataclass
class HMCState:
    """A state of every chain, with its log density, gradient and carried auxiliary value."""

    z: torch.Tensor  # (c, batch, D)
    log_prob: torch.Tensor  # (c, batch)
    grad: torch.Tensor  # (c, batch, D)
    aux: torch.Tensor | None = None  # (c, batch), or None


def evaluate(log_prob: LogProb, z: torch.Tensor) -> HMCState:
    """log_prob and its gradient at ``z``; the result carries no graph."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        out = log_prob(z)
        lp, aux = out if isinstance(out, tuple) else (out, None)
        (grad,) = torch.autograd.grad(lp.sum(), z)
    return HMCState(z.detach(), lp.detach(), grad, None if aux is None else aux.detach())


class HMC:
    """Hamiltonian Monte Carlo: per :meth:`step`, fresh momentum, leapfrog steps and a Metropolis test.

    With identity mass matrix, H(z, p) = -log pi(z) + |p|^2 / 2; the leapfrog integrator is
    volume-preserving and reversible, so accepting with probability min(1, exp(H_0 - H_L)) leaves
    pi invariant (Neal 2011). Divergent trajectories (non-finite energy) are rejected.

    Each transition draws every chain's step size uniformly within ``1 ± jitter`` of the current
    one, which breaks the near-periodic trajectories a fixed step size can hit on Gaussian-like
    targets (Neal 2011, section 5.4.2.2) and keeps the chain exact.

    Step-size adaptation (``adapt=True``) follows each transition with
    log eps <- log eps + gain * (mean acceptance probability - target_accept), a constant-gain
    Robbins-Monro step whose equilibrium has mean acceptance at the target (Wu et al.'s (2017)
    AIS code multiplies by 1.02 or 0.98 on the sign of the difference, which targets the median
    instead and can lock into a two-cycle across a steep part of the acceptance curve).
    ``per_datapoint=True`` keeps one step size per datapoint (acceptance averaged over its
    chains), otherwise one for all. Adaptation uses the chains' own history, so the chain is not
    exactly invariant while it adapts; turn it off once tuned when exactness matters.

    References:
        - Duane, Kennedy, Pendleton & Roweth (1987), Hybrid Monte Carlo, Physics Letters B.
        - Neal (2011), MCMC Using Hamiltonian Dynamics, Handbook of Markov Chain Monte Carlo.
        - Wu, Burda, Salakhutdinov & Grosse (2017), On the Quantitative Analysis of Decoder-Based
          Generative Models, ICLR.
    """

    def __init__(
        self,
        step_size: float | torch.Tensor = 0.1,
        leapfrog_steps: int = 10,
        target_accept: float = 0.65,
        adapt: bool = True,
        per_datapoint: bool = False,
        gain: float = 0.1,
        jitter: float = 0.1,
        min_step: float = 1e-4,
        max_step: float = 2.0,
    ):
        if leapfrog_steps < 1:
            raise ValueError(f"leapfrog_steps must be >= 1, got {leapfrog_steps}")
        if not 0 < target_accept < 1:
            raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")
        self.step_size = torch.as_tensor(step_size, dtype=torch.get_default_dtype()).clone()
        if (self.step_size <= 0).any():
            raise ValueError(f"step_size must be > 0, got {step_size}")
        self.leapfrog_steps = leapfrog_steps
        self.target_accept = target_accept
        self.adapt = adapt
        self.per_datapoint = per_datapoint
        self.gain = gain
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.jitter = jitter
        self.min_step, self.max_step = min_step, max_step
        self.accepted, self.transitions = 0.0, 0

    @property
    def accept_rate(self) -> float:
        """Mean acceptance probability over all transitions and chains so far."""
        return self.accepted / self.transitions if self.transitions else float("nan")

    def _eps(self, z: torch.Tensor) -> torch.Tensor:
        eps = self.step_size.to(z)
        if self.per_datapoint and eps.dim() == 0:
            eps = self.step_size = eps.expand(z.shape[1]).clone()
        return eps.unsqueeze(-1) if eps.dim() else eps  # (batch, 1) broadcasts over chains and D

    def step(self, log_prob: LogProb, state: HMCState) -> tuple[HMCState, torch.Tensor]:
        """One transition of every chain: the new state and the acceptance probabilities ``(c, batch)``."""
        eps = self._eps(state.z)
        if self.jitter:
            eps = eps * (1 + self.jitter * (2 * torch.rand_like(state.z[..., :1]) - 1))
        p0 = torch.randn_like(state.z)
        z, grad = state.z, state.grad
        p = p0 + 0.5 * eps * grad
        diverged = torch.zeros_like(state.log_prob, dtype=torch.bool)
        for i in range(self.leapfrog_steps):
            z = z + eps * p
            # A chain whose position overflows is parked at its start (and rejected below), so the
            # model is never evaluated at non-finite latents, which Pyro's validation would refuse.
            diverged = diverged | ~torch.isfinite(z).all(-1) | ~torch.isfinite(p).all(-1)
            z = torch.where(diverged.unsqueeze(-1), state.z, z)
            new = evaluate(log_prob, z)
            grad = new.grad
            p = p + (eps if i < self.leapfrog_steps - 1 else 0.5 * eps) * grad
        log_ratio = (new.log_prob - 0.5 * p.pow(2).sum(-1)) - (state.log_prob - 0.5 * p0.pow(2).sum(-1))
        ok = torch.isfinite(log_ratio) & ~diverged & torch.isfinite(grad).all(-1)
        log_ratio = torch.where(ok, log_ratio, torch.full_like(log_ratio, -torch.inf))
        accept_prob = log_ratio.clamp(max=0).exp()
        accept = torch.rand_like(accept_prob) < accept_prob
        keep = accept.unsqueeze(-1)
        out = HMCState(
            torch.where(keep, new.z, state.z),
            torch.where(accept, new.log_prob, state.log_prob),
            torch.where(keep, new.grad, state.grad),
            None if state.aux is None else torch.where(accept, new.aux, state.aux),
        )
        self.accepted += accept_prob.mean().item()
        self.transitions += 1
        if self.adapt:
            self._adapt(accept_prob)
        return out, accept_prob

    def _adapt(self, accept_prob: torch.Tensor) -> None:
        rate = (accept_prob.mean(0) if self.step_size.dim() else accept_prob.mean()).to(self.step_size)
        log_eps = self.step_size.log() + self.gain * (rate - self.target_accept)
        self.step_size = log_eps.exp().clamp(self.min_step, self.max_step)

    def run(self, log_prob: LogProb, z: torch.Tensor, steps: int) -> HMCState:
        """``steps`` transitions from ``z`` on a fixed target."""
        state = evaluate(log_prob, z)
        for _ in range(steps):
            state, _ = self.step(log_prob, state)
        return state
