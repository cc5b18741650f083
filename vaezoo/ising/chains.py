"""Running a batch of Markov chains of the 2D Ising model with one of its kernels.

:func:`run_chains` drives chains with a kernel of :mod:`vaezoo.ising.kernels` or
:mod:`vaezoo.ising.swendsen_wang`, recording the energy and magnetisation after every sweep;
:func:`autocorrelation_times` reads how fast those records decorrelate. :func:`vaezoo.ising.sampling.sample`
builds burn-in and thinning on both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from vaezoo.errors import ConfigError, DataError
from vaezoo.ising.autocorrelation import integrated_autocorrelation_time
from vaezoo.ising.kernels import (
    check_square,
    checkerboard_masks,
    heat_bath_kernel,
    metropolis_kernel,
    working_copy,
)
from vaezoo.ising.parameters import check_int, reduced_coupling
from vaezoo.ising.swendsen_wang import swendsen_wang_kernel

__all__ = [
    "METHODS",
    "ChainTrace",
    "AutocorrelationTimes",
    "check_method",
    "run_chains",
    "autocorrelation_times",
]

#: Names accepted by the ``method`` argument of :func:`run_chains` and :func:`sample`.
METHODS = ("swendsen_wang", "heat_bath", "metropolis")


@dataclass(frozen=True)
class ChainTrace:
    """Output of :func:`run_chains`.

    :ivar lattices: final state of every chain, ``(n_chains, L, L)``.
    :ivar energy_per_site: ``E/N`` after every sweep, float64 ``(n_sweeps, n_chains)``.
    :ivar magnetization: signed ``m`` after every sweep, float64 ``(n_sweeps, n_chains)``.
    """

    lattices: Tensor
    energy_per_site: Tensor
    magnetization: Tensor

    @property
    def abs_magnetization(self) -> Tensor:
        """``|m|`` after every sweep, ``(n_sweeps, n_chains)``."""
        return self.magnetization.abs()

    @property
    def magnetization_sq(self) -> Tensor:
        """``m^2`` after every sweep, ``(n_sweeps, n_chains)``."""
        return self.magnetization.square()


@dataclass(frozen=True)
class AutocorrelationTimes:
    """Integrated autocorrelation times (in sweeps, Sokal's convention: ``1/2`` means independent).

    :ivar energy: ``tau_int`` of the energy.
    :ivar abs_magnetization: ``tau_int`` of ``|m|``.
    """

    energy: float
    abs_magnetization: float

    @property
    def max(self) -> float:
        """The larger of the two, which sets how far apart samples must be."""
        return max(self.energy, self.abs_magnetization)


_CHECKERBOARD_KERNELS = {"heat_bath": heat_bath_kernel, "metropolis": metropolis_kernel}


def check_method(method: str) -> str:
    """``method`` unchanged if it is one of :data:`METHODS`, else a :class:`~vaezoo.errors.ConfigError`."""
    if method not in METHODS:
        raise ConfigError(
            f"unknown sampling method {method!r}; choose one of {', '.join(map(repr, METHODS))}"
        )
    return method


def _kernel(method: str, L: int, device: torch.device) -> Callable[[Tensor, float, torch.Generator], Tensor]:
    """The sweep of ``method`` as a function of ``(spins, K, generator)``."""
    local = _CHECKERBOARD_KERNELS.get(method)
    if local is None:  # the cluster update needs no colouring
        return swendsen_wang_kernel
    masks = checkerboard_masks(L, device)

    def sweep(spins: Tensor, K: float, generator: torch.Generator) -> Tensor:
        return local(spins, K, generator, masks)

    return sweep


def _energy_and_magnetization(spins: Tensor, J: float) -> tuple[Tensor, Tensor]:
    s = spins.to(torch.float64)
    bonds = (s * (torch.roll(s, -1, dims=-1) + torch.roll(s, -1, dims=-2))).mean(dim=(-2, -1))
    return -J * bonds, s.mean(dim=(-2, -1))


def run_chains(
    lattices: Tensor,
    T: float,
    n_sweeps: int,
    *,
    generator: torch.Generator,
    method: str = "swendsen_wang",
    J: float = 1.0,
    record: bool = True,
) -> ChainTrace:
    """Run a batch of chains for ``n_sweeps`` sweeps, recording ``E/N`` and ``m`` after each.

    :param lattices: initial states ``(n_chains, L, L)`` (not modified).
    :param T: temperature ``> 0``.
    :param n_sweeps: number of sweeps (``>= 0``).
    :param generator: source of randomness.
    :param method: one of :data:`METHODS`.
    :param J: exchange coupling ``> 0``.
    :param record: if ``False``, skip the measurements (the trace then has zero rows), e.g. for
        burn-in.
    :returns: a :class:`ChainTrace` whose series have shape ``(n_sweeps, n_chains)``.
    """
    check_method(method)
    if lattices.dim() != 3:
        raise DataError(f"run_chains takes lattices of shape (n_chains, L, L), got {tuple(lattices.shape)}")
    L = check_square(lattices, method)
    K = reduced_coupling(T, J=J)
    check_int(n_sweeps, "n_sweeps", 0)
    sweep = _kernel(method, L, lattices.device)
    spins = working_copy(lattices).clone()
    energies, magnetizations = [], []
    for _ in range(n_sweeps):
        spins = sweep(spins, K, generator)
        if record:
            e, m = _energy_and_magnetization(spins, J)
            energies.append(e)
            magnetizations.append(m)
    n_chains = lattices.shape[0]
    empty = torch.zeros(0, n_chains, dtype=torch.float64, device=lattices.device)
    return ChainTrace(
        lattices=spins.to(lattices.dtype),
        energy_per_site=torch.stack(energies) if energies else empty,
        magnetization=torch.stack(magnetizations) if magnetizations else empty.clone(),
    )


def autocorrelation_times(trace: ChainTrace, window_factor: float = 6.0) -> AutocorrelationTimes:
    """Integrated autocorrelation times of ``E`` and ``|m|`` from a :class:`ChainTrace`.

    Uses Sokal's automatic windowing, pooling the autocorrelation functions of all chains. Discard
    the burn-in before calling this; the estimate is trustworthy once the trace is much longer (per
    chain) than the returned times.
    """
    if trace.energy_per_site.shape[0] < 2:
        raise DataError("autocorrelation_times needs a trace with at least 2 recorded sweeps")
    return AutocorrelationTimes(
        energy=integrated_autocorrelation_time(trace.energy_per_site, window_factor),
        abs_magnetization=integrated_autocorrelation_time(trace.abs_magnetization, window_factor),
    )

