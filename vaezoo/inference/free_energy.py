"""How close is the block-spin model to the Boltzmann distribution? The variational free-energy bound.

**Variational free-energy bound.** For any distribution q(s) on spins, Gibbs-Bogoliubov gives
``F = -T ln Z <= E_q[E(s)] + T E_q[ln q(s)]`` (the gap is ``T KL(q || p_Boltzmann)``). The model's marginal
q(s) = sum_z p_theta(s, z) is intractable, but for any r(z | s) (a guide)

    E_q[ln q(s)] <= E_{p_theta(s, z)}[ln p_theta(s, z) - ln r(z | s)]

(the gap is ``E_q KL(p_theta(z | s) || r(z | s)) >= 0``), hence the rigorous, sampleable bound

    F <= E_{(s, z) ~ p_theta}[E(s) + T ln(p_theta(z) p_theta(s | z) / r(z | s))].

:func:`free_energy_bound` estimates it per site from model samples with its standard error and compares
it with Kaufman's exact ``F = -T ln Z`` of the finite torus; :func:`mean_field_free_energy` is naive
mean-field theory's bound (q a product of identical spins) for comparison. :func:`fit_bound_guide`
trains r to tighten the bound (minimizing the second gap, with the model fixed: wake-sleep's sleep
phase). Exact checks at L = 4 (every state and latent summed) are in :mod:`vaezoo.inference.exact_kl`.

References:
    - Bogoliubov (1958); Feynman (1972), Statistical Mechanics, ch. 2 (the Gibbs-Bogoliubov inequality).
    - Wu, Wang & Zhang (2019), Solving Statistical Mechanics Using Variational Autoregressive
      Networks, PRL 122, 080602 (the variational free energy of a sampleable model).
    - Hinton, Dayan, Frey & Neal (1995), The wake-sleep algorithm, Science 268, 1158.
    - Kaufman (1949), Crystal statistics II, Phys. Rev. 76, 1232.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pyro import poutine
from scipy.optimize import brentq

from vaezoo.config import check_argument
from vaezoo.errors import ConfigError
from vaezoo.inference.fit import make_optimizer
from vaezoo.ising.exact import kaufman_log_z
from vaezoo.ising.lattice_data import lattice_input
from vaezoo.ising.observables import energy
from vaezoo.ising.parameters import check_temperature
from vaezoo.models.lattice_hierarchy import LatticeHierarchy, model_trace
from vaezoo.nets import evaluating


def mean_field_free_energy(T: float, J: float = 1.0) -> float:
    """Naive mean-field bound on F / N: min_m [-2 J m^2 - T S(m)], S the entropy of a spin with mean m.

    A product of identical spins with mean m has E/N = -2 J m^2 on the square-lattice torus (2N bonds),
    so by Gibbs-Bogoliubov this upper-bounds the exact F / N at every L >= 2. The minimizer solves
    m = tanh(4 K m); its nonzero root exists for T < 4 J.
    """
    T = check_temperature(T)
    K = J / T
    m = 0.0
    if 4 * K > 1:
        m = brentq(lambda u: math.atanh(u) - 4 * K * u, 1e-12, 1 - 1e-16, xtol=1e-15)
    p, q = (1 + m) / 2, (1 - m) / 2
    entropy = -sum(v * math.log(v) for v in (p, q) if v > 0)
    return -2 * J * m * m - T * entropy


def exact_free_energy(L: int, T: float) -> float:
    """Exact F / N = -T ln Z / N on the L x L torus (Kaufman), J = 1."""
    return -T * kaufman_log_z(L, check_temperature(T)) / (L * L)


def site_log_prob_sum(trace, names) -> torch.Tensor:
    total = 0.0
    for name in names:
        site = trace.nodes[name]
        total = total + site["fn"].log_prob(site["value"])
    return total


@torch.no_grad()
def bound_samples(model: LatticeHierarchy, guide, T: float, n: int, batch_size: int = 500) -> torch.Tensor:
    """``n`` draws of [E(s) + T (ln p(s, z) - ln r(z | s))] / N with (s, z) ~ p_theta(. | K = 1/T)."""
    T = check_temperature(T)
    out = []
    with evaluating(model, guide):
        for start in range(0, n, batch_size):
            trace = model_trace(model, min(batch_size, n - start), T=T)
            spins = 2 * trace.nodes["x"]["value"] - 1
            log_p = site_log_prob_sum(trace, (*model.layer_sites, "x"))
            replayed = poutine.trace(poutine.replay(guide, trace=trace)).get_trace(lattice_input(spins, T=T))
            log_r = site_log_prob_sum(replayed, model.layer_sites)
            out.append((energy(spins).to(log_p.dtype) + T * (log_p - log_r)) / model.L**2)
    return torch.cat(out)


@dataclass
class FreeEnergyBound:
    """Per-site free energies at temperature T on the L x L torus.

    :ivar value: the model's upper bound (Monte Carlo mean), ``stderr`` its standard error.
    :ivar exact: Kaufman's exact F / N.
    :ivar mean_field: naive mean-field's bound.
    """

    T: float
    L: int
    n: int
    value: float
    stderr: float
    exact: float
    mean_field: float

    @property
    def relative_error(self) -> float:
        """(bound - exact) / |exact|, >= 0 up to Monte Carlo error."""
        return (self.value - self.exact) / abs(self.exact)

    @property
    def mean_field_relative_error(self) -> float:
        return (self.mean_field - self.exact) / abs(self.exact)

    def __str__(self) -> str:
        return (
            f"T = {self.T:.4f}, L = {self.L}: F/N <= {self.value:.5f} ± {self.stderr:.5f} (model bound, "
            f"n = {self.n}); exact {self.exact:.5f} (Kaufman); "
            f"relative error {100 * self.relative_error:.3f}%; "
            f"naive mean field {self.mean_field:.5f} ({100 * self.mean_field_relative_error:.3f}%)"
        )


def free_energy_bound(
    model: LatticeHierarchy, guide, T: float, n: int = 2000, batch_size: int = 500
) -> FreeEnergyBound:
    """The variational upper bound on F / N at temperature ``T`` from ``n`` model samples, and the exact F.

    ``guide`` is r(z | s). The RG guide gives +inf (its support misses most of the model's latents);
    pass a :class:`~vaezoo.guides.block_spin.BlockAmortized` fitted with :func:`fit_bound_guide` instead.
    """
    if not isinstance(model, LatticeHierarchy):  # an argument check: the bound needs a lattice model
        raise ConfigError(
            f"free_energy_bound needs a lattice model (a BlockSpin model or an IsingVLAE), "
            f"got {type(model).__name__}"
        )
    n = check_argument("n", n, int, min=2)  # two samples at least, for a standard error
    batch_size = check_argument("batch_size", batch_size, int, min=1)
    check_temperature(T)
    f = bound_samples(model, guide, T, n, batch_size).double()
    return FreeEnergyBound(
        T=float(T),
        L=model.L,
        n=n,
        value=f.mean().item(),
        stderr=(f.std() / math.sqrt(n)).item(),
        exact=exact_free_energy(model.L, T),
        mean_field=mean_field_free_energy(T),
    )


def fit_bound_guide(
    model: LatticeHierarchy, guide, temperatures, steps: int = 500, batch_size: int = 100, lr: float = 3e-3
) -> list[float]:
    """Train ``guide`` as r(z | s) of the bound: maximize E_{p_theta(s, z)}[ln r(z | s)], the model fixed.

    That minimizes E_q KL(p_theta(z | s) || r(z | s)), the gap the guide adds to the bound, with
    samples of the model as data, so binary latents need no score function. Returns the loss per step.
    """
    params = [p for p in guide.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"{type(guide).__name__} has no parameters to fit")
    opt = make_optimizer(params, lr)
    temps = [check_temperature(T) for T in temperatures]
    losses = []
    for step in range(steps):
        T = temps[step % len(temps)]
        with torch.no_grad(), evaluating(model):
            trace = model_trace(model, batch_size, T=T)
        spins = 2 * trace.nodes["x"]["value"] - 1
        replayed = poutine.trace(poutine.replay(guide, trace=trace)).get_trace(lattice_input(spins, T=T))
        loss = -site_log_prob_sum(replayed, model.layer_sites).mean() / model.L**2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
