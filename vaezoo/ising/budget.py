"""What a Monte Carlo run or an exact computation will cost, estimated before it starts.

The work of the samplers grows with ``L^2`` times the number of chains and sweeps, the exact methods'
with ``2^(L^2)``, ``8^L`` or ``L``; a typo such as ``L = 4096`` would otherwise grow silently to tens of
gigabytes. :func:`sampling_budget` and :func:`exact_budget` give a :class:`Budget` (peak memory and
work) from the sizes alone, and :meth:`Budget.check` refuses one past :data:`MEMORY_LIMIT` or
:data:`WORK_LIMIT` unless forced. The constants are measured peaks (CPU, float32 lattices), rounded up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vaezoo.errors import ConfigError
from vaezoo.ising.exact.common import MAX_TRANSFER_MAGNETIZATION_L
from vaezoo.ising.sampling import _DEFAULT_MAX_CHAINS

__all__ = ["MEMORY_LIMIT", "WORK_LIMIT", "Budget", "sampling_budget", "exact_budget"]

#: Peak memory a run may take without ``force`` (bytes).
MEMORY_LIMIT = 2 * 2**30
#: Site updates a run may take without ``force`` (about a quarter of an hour of Swendsen-Wang on one
#: core, which measured 0.4-0.6 microseconds per site and sweep at L = 128-256).
WORK_LIMIT = 2e9

# Swendsen-Wang peaked at 130-150 bytes per site and chain (bonds, cluster labels, their union-find
# passes) at L = 128 and 256 with 64 chains; the local kernels need less, so this bounds all three.
_BYTES_PER_CHAIN_SITE = 160
# Each returned float32 lattice exists about three times at the end (kept sweeps, stacked, flipped).
_BYTES_PER_SAMPLE_SITE = 12
# The fewest sweeps sample() runs with automatic burn-in and thinning: 100 of burn-in, a 200-sweep pilot.
_MIN_SWEEPS = 300

# Kaufman's formula with float64 autograd for E and C measured 420 bytes per unit of L (L = 10^6).
_KAUFMAN_BYTES_PER_L = 450


def _size(n_bytes: float) -> str:
    for unit, scale in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes / 2**10:.3g} kB"


@dataclass(frozen=True)
class Budget:
    """An estimate of peak memory (bytes) and work (site updates, or elementary operations)."""

    memory: float
    work: float

    def __add__(self, other: Budget) -> Budget:
        return Budget(max(self.memory, other.memory), self.work + other.work)

    def problem(self) -> str | None:
        """What exceeds a limit, in words with the estimate and the limit, or ``None``."""
        if self.memory > MEMORY_LIMIT:
            return f"needs about {_size(self.memory)} of memory (limit {_size(MEMORY_LIMIT)})"
        if self.work > WORK_LIMIT:
            return f"needs at least {self.work:.2g} site updates (limit {WORK_LIMIT:.2g}, about 15 minutes)"
        return None

    def check(self, what: str, force: bool = False, fix: str = "pass force=True") -> Budget:
        """``self`` if within the limits or ``force``; else a refusal naming ``what`` and ``fix``.

        :raises vaezoo.errors.ConfigError: ``"<what> needs about ... (limit ...); <fix>"``.
        """
        problem = self.problem()
        if problem is not None and not force:
            raise ConfigError(f"{what} {problem}; {fix}")
        return self


def sampling_budget(L: int, n_samples: int, n_chains: int | None = None) -> Budget:
    """The least :func:`~vaezoo.ising.sampling.sample` costs for ``n_samples`` lattices of side ``L``.

    The work counts the burn-in and pilot sweeps of automatic thinning and one sweep per kept sample;
    the real thinning (``ceil(2 tau)`` sweeps) multiplies the last part, so this is a lower bound.
    """
    chains = min(n_samples, _DEFAULT_MAX_CHAINS) if n_chains is None else n_chains
    sites = L * L
    memory = sites * (chains * _BYTES_PER_CHAIN_SITE + n_samples * _BYTES_PER_SAMPLE_SITE)
    work = sites * chains * (_MIN_SWEEPS + math.ceil(n_samples / chains))
    return Budget(float(memory), float(work))


def exact_budget(L: int, method: str) -> Budget:
    """Peak memory of one temperature of an exact method (``"auto"`` as it would choose); no work counted.

    Brute force streams its ``2^N`` states in chunks of a few 16 MB temporaries (``L <= 5``) and the
    transfer matrix holds a few dense ``2^L x 2^L`` float64 matrices (about 1 GB and a minute at
    ``L = 12``): both are bounded by the methods' own size limits, checked separately. Kaufman's
    memory grows linearly with ``L`` (its time too, a couple of seconds at ``L = 10^6``).
    """
    if method == "auto":
        method = "transfer_matrix" if L <= MAX_TRANSFER_MAGNETIZATION_L else "kaufman"
    if method == "brute_force":
        return Budget(2.0**27, 0.0)
    if method == "transfer_matrix":
        return Budget(8.0 * 8 * 4.0**L, 0.0)
    return Budget(float(_KAUFMAN_BYTES_PER_L * L), 0.0)
