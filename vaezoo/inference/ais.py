"""Annealed importance sampling of log p(x) per datapoint, from the prior to the posterior with HMC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from vaezoo.inference.hmc import HMC, evaluate
from vaezoo.inference.importance import LogLikelihood, log_mean_weights
from vaezoo.inference.potential import joint_parts, sample_prior
from vaezoo.nets import evaluating, frozen
from vaezoo.sites import LatentLayout


@dataclass
class AISLogLikelihood(LogLikelihood):
    """:class:`LogLikelihood` from AIS: ``k`` is the number of chains, ``mc_stderr`` the delta-method
    standard error over chains, and the run's annealing length and mean HMC acceptance are kept."""

    n_intermediate: int = 0
    accept_rate: float = float("nan")

    def __str__(self) -> str:
        return (
            f"log p(x) = {self.mean:.3f} ± {self.stderr:.3f} (MC s.e.) "
            f"± {self.data_stderr:.3f} (test-set s.e.) nats, AIS chains={self.k}, "
            f"intermediate={self.n_intermediate}, HMC accept={self.accept_rate:.2f}, "
            f"n={len(self.per_datapoint)}"
        )


def schedule(n_intermediate: int, kind: Literal["sigmoid", "linear"] = "sigmoid", delta: float = 4.0):
    """Inverse temperatures 0 = beta_0 < ... < beta_{T} = 1 with T = n_intermediate + 1.

    ``"sigmoid"``: beta_t proportional to sigmoid(delta (2t/T - 1)), rescaled to [0, 1] (Grosse et
    al. 2013), which spends more steps near both ends where the weights change fastest.
    """
    t = torch.linspace(0, 1, n_intermediate + 2, dtype=torch.float64)
    if kind == "linear":
        return t
    if kind != "sigmoid":
        raise ValueError(f"schedule must be 'sigmoid' or 'linear', got {kind!r}")
    s = torch.sigmoid(delta * (2 * t - 1))
    return (s - s[0]) / (s[-1] - s[0])


def _ais_chunk(model, x, layout, c, betas, kernel: HMC) -> torch.Tensor:
    """log AIS weights ``(c, batch)`` of ``c`` chains per datapoint."""

    def target(beta: float):
        def log_prob(z):
            prior, lik = joint_parts(model, x, z, layout)
            return prior + beta * lik, lik

        return log_prob

    z = sample_prior(model, x, c, layout)
    log_w = torch.zeros(c, x.shape[0], dtype=torch.float64, device=x.device)
    for t in range(1, len(betas)):
        beta = betas[t].item()
        fn = target(beta)
        state = evaluate(fn, z)
        # log w += (beta_t - beta_{t-1}) log p(x | z_{t-1}): aux carries the likelihood term.
        log_w += (betas[t] - betas[t - 1]) * state.aux.double()
        if t < len(betas) - 1:
            state, _ = kernel.step(fn, state)
            z = state.z
    return log_w


def ais_log_likelihood(
    model,
    data,
    *,
    n_intermediate: int = 500,
    n_chains: int = 16,
    leapfrog_steps: int = 10,
    step_size: float = 0.05,
    target_accept: float = 0.65,
    schedule_kind: Literal["sigmoid", "linear"] = "sigmoid",
    batch_size: int = 100,
    max_elements: int = 2**23,
    progress: bool = False,
) -> AISLogLikelihood:
    """AIS estimate of log p(x) for every datapoint in ``data``: prior -> posterior along the geometric path.

    The intermediate densities are pi_t(z) ∝ p(z) p(x | z)^beta_t. Each chain starts at z_0 ~ p(z)
    and accumulates log w = sum_t (beta_t - beta_{t-1}) log p(x | z_{t-1}), moving z_{t-1} -> z_t
    with one HMC transition that leaves pi_t invariant; E[w] = p(x) exactly, so
    log p̂(x) = log mean_chains w is a stochastic lower bound like IWAE's. As in Wu et al. (2017)
    the HMC step size is adapted toward ``target_accept`` (here per datapoint, across its chains),
    and the schedule is sigmoidal.

    Chains and datapoints run vectorized; ``batch_size`` datapoints at a time, and within a batch
    chains in chunks holding at most ``max_elements`` elements of x-sized tensors (the chunks are
    independent AIS runs merged by log-sum-exp). The model is evaluated in eval mode with its
    parameters frozen. Cost: about ``n_intermediate * (leapfrog_steps + 1)`` model evaluations with
    gradient per chain and datapoint.

    :param data: a tensor ``(n, *x_shape)``, an :class:`~vaezoo.data.ImageData`, or a DataLoader.
    :raises ConfigError: if the model has discrete or constrained latents.

    References:
        - Neal (2001), Annealed Importance Sampling, Statistics and Computing.
        - Wu, Burda, Salakhutdinov & Grosse (2017), On the Quantitative Analysis of Decoder-Based
          Generative Models, ICLR.
        - Grosse, Maddison & Salakhutdinov (2013), Annealing between Distributions by Averaging Moments, NIPS.
    """
    if n_chains < 1 or n_intermediate < 1:
        raise ValueError(f"need n_chains >= 1 and n_intermediate >= 1, got {n_chains}, {n_intermediate}")
    layout = LatentLayout(model, "AIS")
    betas = schedule(n_intermediate, schedule_kind)
    kernels: list[HMC] = []

    def log_weights(x: torch.Tensor, c: int) -> torch.Tensor:
        # Each chunk is an independent AIS run with its own step-size adaptation.
        kernels.append(HMC(step_size, leapfrog_steps, target_accept, adapt=True, per_datapoint=True))
        return _ais_chunk(model, x, layout, c, betas, kernels[-1])

    with evaluating(model), frozen(model):
        r = log_mean_weights(
            model,
            data,
            n_chains,
            log_weights,
            batch_size=batch_size,
            max_elements=max_elements,
            progress=progress,
            desc=f"AIS chains={n_chains} T={n_intermediate}",
        )
    return AISLogLikelihood(
        r.per_datapoint,
        r.mc_stderr,
        n_chains,
        n_intermediate=n_intermediate,
        accept_rate=sum(k.accepted for k in kernels) / max(sum(k.transitions for k in kernels), 1),
    )
