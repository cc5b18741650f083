"""Decorrelated equilibrium lattices of the 2D Ising model: burn-in, pilot run and thinning.

:func:`sample` is "give me ``n`` decorrelated lattices": it runs chains
(:func:`vaezoo.ising.chains.run_chains`), burns them in, measures the integrated autocorrelation times
of the energy and of ``|m|`` on a pilot run (Sokal's automatic windowing,
:func:`vaezoo.ising.autocorrelation.integrated_autocorrelation_time`), and thins by
``ceil(2 tau_int)`` sweeps, so consecutive returned samples of a chain are roughly independent.

References
----------
A. D. Sokal, "Monte Carlo methods in statistical mechanics: foundations and new algorithms",
in *Functional Integration*, NATO ASI Series B 361, pp. 131-192 (1997).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from vaezoo.errors import ConfigError
from vaezoo.ising.chains import (
    AutocorrelationTimes,
    ChainTrace,
    autocorrelation_times,
    check_method,
    run_chains,
)
from vaezoo.ising.exact.onsager import T_C
from vaezoo.ising.kernels import ordered_lattices, random_lattices
from vaezoo.ising.parameters import check_exchange_coupling, check_int, check_temperature

__all__ = ["SamplingInfo", "sample"]

_MIN_BURN_IN = 100  # sweeps discarded before the pilot run, when burn-in is automatic
_PILOT_SWEEPS = 200  # first pilot length; doubled until it covers _PILOT_TAUS autocorrelation times
_PILOT_TAUS = 100
_MAX_PILOT_SWEEPS = 25_600
_BURN_IN_TAUS = 20  # Sokal: discard ~20 tau after a start far from equilibrium
_DEFAULT_MAX_CHAINS = 64


@dataclass(frozen=True)
class SamplingInfo:
    """How :func:`sample` produced its lattices.

    :ivar method: update kernel.
    :ivar n_chains: number of parallel chains.
    :ivar burn_in: sweeps discarded per chain before the first kept sample (pilot included).
    :ivar thin: sweeps between kept samples of one chain.
    :ivar tau: autocorrelation times from the pilot run, or ``None`` if both ``burn_in`` and ``thin``
        were given (no pilot was run).
    :ivar seed: seed of the generator, or ``None`` if a generator was passed in.
    :ivar n_sweeps: total sweeps per chain.
    """

    method: str
    n_chains: int
    burn_in: int
    thin: int
    tau: AutocorrelationTimes | None
    seed: int | None
    n_sweeps: int


def sample(
    L: int,
    T: float,
    n_samples: int,
    *,
    method: str = "swendsen_wang",
    J: float = 1.0,
    n_chains: int | None = None,
    burn_in: int | None = None,
    thin: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    symmetrize: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    return_info: bool = False,
) -> Tensor | tuple[Tensor, SamplingInfo]:
    """Draw ``n_samples`` approximately independent equilibrium lattices.

    ``n_chains`` chains run in parallel (below ``T_c``, and always for Metropolis, from the ordered
    state, otherwise from random spins). After ``burn_in`` sweeps each chain contributes one
    lattice every ``thin`` sweeps; the output interleaves chains (consecutive rows come from different
    chains).

    When ``burn_in`` or ``thin`` is ``None`` it is chosen automatically: after ``100`` sweeps a pilot run
    (which also counts as burn-in) measures ``tau = max(tau_int(E), tau_int(|m|))``, doubling its
    length until it spans ``100 tau`` (or 25,600 sweeps, with a warning); then the burn-in is extended
    to at least ``20 tau`` and ``thin = ceil(2 tau)``, the spacing at which samples are effectively
    independent (``Var(mean) = 2 tau sigma^2 / n``).

    With ``symmetrize=True`` every returned lattice is flipped globally with probability 1/2. The
    Hamiltonian is invariant under the flip, so this maps the Boltzmann distribution to itself; it
    restores the ``s -> -s`` symmetry that local kernels below ``T_c`` practically never explore
    (tunnelling between the ordered states takes a time exponential in ``L``).

    :param L: lattice size (even for the checkerboard methods).
    :param T: temperature ``> 0``.
    :param n_samples: number of lattices to return.
    :param method: one of :data:`~vaezoo.ising.chains.METHODS`.
    :param J: exchange coupling ``> 0``.
    :param n_chains: parallel chains (default ``min(n_samples, 64)``).
    :param burn_in: sweeps to discard per chain, or ``None`` for automatic.
    :param thin: sweeps between kept samples, or ``None`` for automatic.
    :param seed: seed for a new generator; ``None`` draws a fresh one (reported in the info).
    :param generator: use this generator instead (mutually exclusive with ``seed``).
    :param symmetrize: apply the random global flip described above.
    :param dtype: dtype of the returned lattices.
    :param device: device to run on.
    :param return_info: also return a :class:`SamplingInfo`.
    :returns: lattices ``(n_samples, L, L)``, and the info if requested.
    """
    check_method(method)
    check_int(L, "L", 2)
    if method != "swendsen_wang" and L % 2:
        raise ConfigError(f"method {method!r} needs an even L, got L = {L}; use method='swendsen_wang'")
    T = check_temperature(T)
    J = check_exchange_coupling(J)
    check_int(n_samples, "n_samples")
    n_chains = min(n_samples, _DEFAULT_MAX_CHAINS) if n_chains is None else n_chains
    check_int(n_chains, "n_chains")
    if burn_in is not None:
        check_int(burn_in, "burn_in", 0)
    if thin is not None:
        check_int(thin, "thin")
    if not dtype.is_floating_point:
        raise ConfigError(f"dtype must be a floating-point dtype, got {dtype}")
    if seed is not None:
        check_int(seed, "seed", 0)
    if generator is not None and seed is not None:
        raise ConfigError("pass either seed or generator, not both")
    if generator is None:
        generator = torch.Generator(device=device)
        seed = generator.seed() if seed is None else generator.manual_seed(seed).initial_seed()

    # The ordered start avoids Metropolis's deterministic dE = 0 cycles (vaezoo.ising.kernels); below T_c
    # it is also already close to equilibrium.
    if T < T_C * J or method == "metropolis":
        spins = ordered_lattices(n_chains, L, dtype=dtype, device=device)
    else:
        spins = random_lattices(n_chains, L, generator=generator, dtype=dtype, device=device)

    def run(n: int, record: bool) -> ChainTrace:
        return run_chains(spins, T, n, generator=generator, method=method, J=J, record=record)

    done = burn_in if burn_in is not None else _MIN_BURN_IN
    spins = run(done, record=False).lattices
    tau = None
    if burn_in is None or thin is None:
        n_pilot = _PILOT_SWEEPS
        while True:
            trace = run(n_pilot, record=True)
            spins = trace.lattices
            done += n_pilot
            tau = autocorrelation_times(trace)
            if n_pilot >= _PILOT_TAUS * tau.max:
                break
            if n_pilot >= _MAX_PILOT_SWEEPS:
                warnings.warn(
                    f"{method} at L={L}, T={T}: the pilot run of {n_pilot} sweeps spans only "
                    f"{n_pilot / tau.max:.0f} autocorrelation times (tau = {tau.max:.1f} sweeps); the "
                    "estimated tau, and hence thinning, may be too small. Consider method='swendsen_wang'.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                break
            n_pilot *= 2
        if burn_in is None and done < _BURN_IN_TAUS * tau.max:
            extra = math.ceil(_BURN_IN_TAUS * tau.max) - done
            spins = run(extra, record=False).lattices
            done += extra
        if thin is None:
            thin = max(1, math.ceil(2.0 * tau.max))
    assert thin is not None

    per_chain = math.ceil(n_samples / n_chains)
    kept = []
    for _ in range(per_chain):
        spins = run(thin, record=False).lattices
        kept.append(spins)
    out = torch.stack(kept).reshape(-1, L, L)[:n_samples]
    if symmetrize:
        flips = torch.rand(out.shape[0], generator=generator, device=out.device) < 0.5
        out = torch.where(flips[:, None, None], -out, out)
    out = out.to(dtype)
    if not return_info:
        return out
    info = SamplingInfo(
        method=method,
        n_chains=n_chains,
        burn_in=done,
        thin=thin,
        tau=tau,
        seed=seed,
        n_sweeps=done + per_chain * thin,
    )
    return out, info

