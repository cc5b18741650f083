"""Training data for the block-spin model: equilibrium lattices over a grid of temperatures.

A datapoint is one tensor ``x`` of shape ``(2, L, L)``: channel 0 the spins ±1, channel 1 the reduced
coupling ``K = J / T`` (exchange coupling ``J = 1``) broadcast over the lattice (:func:`lattice_input`),
so one model sees, and is conditioned on, every temperature of the grid. Lattices come from the
Swendsen-Wang sampler of :func:`vaezoo.ising.sampling.sample` (burn-in and thinning from measured
integrated autocorrelation times) or, for ``L <= 4``, exactly from the Boltzmann distribution by
enumeration. Sampled sets are cached as ``.pt`` files under ``<vaezoo cache>/ising/``, keyed by every
setting that changes them.

References:
    - Swendsen & Wang (1987), Nonuniversal critical dynamics in Monte Carlo simulations, PRL 58, 86.
    - Sokal (1997), Monte Carlo methods in statistical mechanics (integrated autocorrelation times).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from vaezoo import checkpoint
from vaezoo.data import cache_dir
from vaezoo.errors import ConfigError, DataError
from vaezoo.ising.chains import check_method
from vaezoo.ising.exact.common import MAX_ENUMERATION_L
from vaezoo.ising.exact.enumeration import brute_force_log_probs, enumerate_states
from vaezoo.ising.exact.onsager import T_C
from vaezoo.ising.observables import validate_lattices
from vaezoo.ising.parameters import check_int, check_temperature, reduced_coupling
from vaezoo.ising.sampling import sample

#: Default training temperatures: 11 evenly spaced in [1.5, 3.5] plus T_c (12 in all, sorted).
DEFAULT_TEMPERATURES: tuple[float, ...] = tuple(sorted([1.5 + 0.2 * i for i in range(11)] + [T_C]))
CACHE_FORMAT = 1


def lattice_input(
    spins: torch.Tensor, T: float | None = None, K: float | torch.Tensor | None = None
) -> torch.Tensor:
    """Stack spins ``(n, L, L)`` with their reduced coupling into model inputs ``(n, 2, L, L)``.

    :param T: temperature; then ``K = 1 / T`` (exchange coupling ``J = 1``).
    :param K: the reduced coupling: a number, or a tensor ``(n,)`` of per-lattice values (then ``T``
        must be ``None``).
    """
    validate_lattices(spins)
    if spins.dim() != 3 or spins.shape[-1] != spins.shape[-2]:
        raise DataError(f"spins must be L x L lattices of shape (n, L, L), got shape {tuple(spins.shape)}")
    if isinstance(K, torch.Tensor):
        if K.numel() != len(spins):
            raise ConfigError(
                f"K holds {K.numel()} reduced couplings for {len(spins)} lattices; give one each"
            )
        if T is not None:
            raise ConfigError("give exactly one of the temperature T or the reduced coupling K = J/T")
        if not bool((K > 0).all()) or not bool(torch.isfinite(K).all()):
            raise ConfigError("every reduced coupling K = J/T must be finite and > 0 (temperatures T > 0)")
        k = K.to(spins.dtype).reshape(-1, 1, 1).expand(spins.shape)
    else:
        k = torch.full_like(spins, reduced_coupling(T, K))
    return torch.stack([spins, k], dim=1)


@dataclass
class LatticeData:
    """Lattices at several temperatures, ready for :func:`vaezoo.inference.fit`.

    :ivar x: ``(n, 2, L, L)`` model inputs, grouped by temperature in the order of ``temperatures``.
    :ivar temperatures: the temperature of each group.
    :ivar info: per temperature, how it was sampled (method, thinning, autocorrelation times, seed).
    """

    x: torch.Tensor
    temperatures: tuple[float, ...]
    info: list[dict]

    @property
    def L(self) -> int:
        return self.x.shape[-1]

    def at(self, T: float) -> torch.Tensor:
        """The spins ``(n_T, L, L)`` sampled at temperature ``T`` (one of :attr:`temperatures`)."""
        K = self.x[:, 1, 0, 0]
        keep = (K - 1.0 / T).abs() < 1e-6 * max(1.0, 1.0 / T)
        if not bool(keep.any()):
            raise ConfigError(f"no lattices at T = {T}; this set has T in {list(self.temperatures)}")
        return self.x[keep, 0]


def _cache_path(settings: dict) -> str:
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return str(cache_dir() / "ising" / f"lattices-L{settings['L']}-{settings['method']}-{key}.pt")


def lattice_dataset(
    L: int,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    n_per_temperature: int = 1000,
    *,
    method: str = "swendsen_wang",
    seed: int = 0,
    cache: bool = True,
    progress: bool = True,
) -> LatticeData:
    """Equilibrium lattices at each temperature, from the cache when this exact set was made before.

    :param method: ``"swendsen_wang"`` (any ``L``; other :data:`~vaezoo.ising.chains.METHODS` work too)
        or ``"exact"`` (``L <= 4``: independent draws from the enumerated Boltzmann distribution).
    :param seed: temperature ``i`` uses seed ``seed + i``, so sets with the same seed share lattices.
    """
    check_int(L, "L", 2)
    if isinstance(temperatures, (int, float)):
        raise ConfigError(f"temperatures must be a list of temperatures, got the number {temperatures!r}; "
                          f"write [{temperatures!r}]")
    temps = tuple(check_temperature(T) for T in temperatures)
    check_int(seed, "seed", 0)
    if method != "exact":
        check_method(method)
    if not temps:
        raise ConfigError("give at least one temperature")
    if isinstance(n_per_temperature, bool) or not isinstance(n_per_temperature, int) or n_per_temperature < 1:
        raise ConfigError(f"n_per_temperature must be an int >= 1, got {n_per_temperature!r}")
    if method == "exact" and L > MAX_ENUMERATION_L:
        raise ConfigError(f"method 'exact' enumerates all 2^(L^2) states and needs L <= {MAX_ENUMERATION_L}")
    settings = {
        "format": CACHE_FORMAT,
        "L": int(L),
        "temperatures": list(temps),
        "n": n_per_temperature,
        "method": method,
        "seed": seed,
    }
    path = _cache_path(settings)
    if cache:
        try:
            saved = torch.load(path, weights_only=True)
            if saved.get("settings") == settings:
                return LatticeData(saved["x"], temps, saved["info"])
        except Exception:  # missing, truncated or foreign file (torch raises many types): resample
            pass
    xs, info = [], []
    for i, T in enumerate(tqdm(temps, desc=f"{method} L={L}", disable=not progress)):
        if method == "exact":
            gen = torch.Generator().manual_seed(seed + i)
            index = torch.multinomial(
                brute_force_log_probs(L, T).exp(), n_per_temperature, True, generator=gen
            )
            spins = enumerate_states(L, torch.float32)[index]
            info.append({"T": T, "method": method, "seed": seed + i})
        else:
            spins, how = sample(L, T, n_per_temperature, method=method, seed=seed + i, return_info=True)
            tau = how.tau
            info.append(
                {
                    "T": T,
                    "method": method,
                    "seed": seed + i,
                    "burn_in": how.burn_in,
                    "thin": how.thin,
                    "n_chains": how.n_chains,
                    "tau_energy": None if tau is None else tau.energy,
                    "tau_abs_m": None if tau is None else tau.abs_magnetization,
                }
            )
        xs.append(lattice_input(spins.float(), T=T))
    data = LatticeData(torch.cat(xs), temps, info)
    if cache:
        try:
            checkpoint.save(path, {"settings": settings, "x": data.x, "info": info})
        except OSError as e:  # a read-only cache must not stop the run
            warnings.warn(
                f"could not write the lattice cache {path} ({e}); continuing uncached", stacklevel=2
            )
    return data


def split(x: torch.Tensor, test_fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random ``(train, test)`` split of the rows of ``x``."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(x)))
    return x[order[n_test:]], x[order[:n_test]]
