"""Exact thermodynamics of the 2D Ising model: finite tori and the infinite lattice.

Conventions: ``H(s) = -J sum_<ij> s_i s_j`` on an ``L x L`` torus (``N = L^2`` sites, ``2N`` bonds; for
``L = 2`` the two bonds joining the same pair of sites both count, exactly as on the torus graph),
spins ``+1``/``-1``, ``k_B = 1``, coupling ``K = J / T``. The magnetisation is per site,
``m = (1/N) sum_i s_i``. Energies and heat capacities are reported per site. Only the ferromagnet
(``J > 0``) at positive temperature is handled.

Three independent finite-lattice methods, which agree to ~1e-13 where they overlap (see the tests):

* **Brute force** (``L <= 5``): enumerate all ``2^N`` states in chunks and histogram them into the
  joint density of states ``g(number of unsatisfied bonds, number of up spins)``; every
  thermodynamic quantity at every temperature follows from that histogram. ``L <= 4`` also gives
  log-probabilities of every state (65,536 at ``L = 4``), for exact divergences such as ``KL(p||q)``.
* **Row transfer matrix** (``L <= 12``): ``Z = Tr T^L`` with the symmetric ``2^L x 2^L`` row-to-row
  matrix. Its eigendecomposition gives ``ln Z``, ``<E>``, the heat capacity (exact first and second
  ``K``-derivatives written as spectral sums, so degenerate eigenvalues do no harm) and ``<m^2>``
  (row-magnetisation correlations). For ``L <= 8`` a second pass tracks the number of up spins row
  by row and gives the full distribution of ``m``, hence ``<|m|>`` and ``<m^4>``.
* **Kaufman / Ferdinand-Fisher** (any ``L``): the closed-form finite-torus partition function.
  Derivatives of ``ln Z`` come from float64 autograd through a rescaled, smooth form of the formula.

Infinite lattice: Onsager's free energy, energy and heat capacity, the entropy they imply, and Yang's
spontaneous magnetisation.

State ordering used by :func:`enumerate_states`, :func:`state_index` and
:func:`brute_force_log_probs`: the state with index ``i`` has spin ``s[r, c] = 2 * bit_{r L + c}(i) - 1``,
i.e. bit ``k`` of the index is the 0/1 occupation ``(s + 1) / 2`` of the site ``k`` in row-major order.
Index 0 is all spins down.

References
----------
L. Onsager, "Crystal statistics. I. A two-dimensional model with an order-disorder transition",
Phys. Rev. 65, 117 (1944).

B. Kaufman, "Crystal statistics. II. Partition function evaluated by spinor analysis",
Phys. Rev. 76, 1232 (1949).

A. E. Ferdinand and M. E. Fisher, "Bounded and inhomogeneous Ising models. I. Specific-heat anomaly
of a finite lattice", Phys. Rev. 185, 832 (1969).

C. N. Yang, "The spontaneous magnetization of a two-dimensional Ising model",
Phys. Rev. 85, 808 (1952).

K. Huang, *Statistical Mechanics*, 2nd ed., Wiley (1987), ch. 15 (Onsager's free energy and energy
in the one-dimensional elliptic-integral form used here; the heat capacity is their ``T``-derivative
and is checked numerically in the tests).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache

import torch
from scipy import integrate, special
from torch import Tensor

from vaezoo.errors import ConfigError, DataError
from vaezoo.ising.observables import energy, validate_lattices

__all__ = [
    "T_C",
    "BETA_C",
    "MAX_BRUTE_FORCE_L",
    "MAX_ENUMERATION_L",
    "MAX_TRANSFER_MATRIX_L",
    "MAX_TRANSFER_MAGNETIZATION_L",
    "ExactThermodynamics",
    "enumerate_states",
    "state_index",
    "density_of_states",
    "brute_force_log_probs",
    "brute_force_thermodynamics",
    "transfer_matrix_thermodynamics",
    "transfer_matrix_magnetization_distribution",
    "kaufman_log_z",
    "kaufman_thermodynamics",
    "exact_thermodynamics",
    "exact_log_prob",
    "onsager_log_z_per_site",
    "onsager_free_energy_per_site",
    "onsager_energy_per_site",
    "onsager_entropy_per_site",
    "onsager_heat_capacity_per_site",
    "yang_magnetization",
]

#: Critical temperature of the square-lattice ferromagnet for ``J = 1`` (``T_c = 2 J / ln(1 + sqrt 2)``).
T_C: float = 2.0 / math.log1p(math.sqrt(2.0))
#: Critical coupling ``K_c = beta_c J = ln(1 + sqrt 2) / 2`` (the inverse of :data:`T_C` for ``J = 1``).
BETA_C: float = 0.5 * math.log1p(math.sqrt(2.0))

#: Largest ``L`` for brute-force enumeration (``2^25`` states, streamed in chunks).
MAX_BRUTE_FORCE_L = 5
#: Largest ``L`` for which all states (or all their log-probabilities) are materialised at once.
MAX_ENUMERATION_L = 4
#: Largest ``L`` for the row transfer matrix (a dense ``4096 x 4096`` float64 eigenproblem at 12).
MAX_TRANSFER_MATRIX_L = 12
#: Largest ``L`` for which the transfer matrix also resolves the distribution of ``m``.
MAX_TRANSFER_MAGNETIZATION_L = 8

_CHUNK = 1 << 21  # states per chunk of the enumeration: a few 16 MB int64 temporaries
_DTYPE = torch.float64


@dataclass(frozen=True)
class ExactThermodynamics:
    """Exact equilibrium values on an ``L x L`` torus (per-site quantities, ``k_B = 1``).

    :ivar L: linear size.
    :ivar T: temperature.
    :ivar J: coupling.
    :ivar method: ``"brute_force"``, ``"transfer_matrix"`` or ``"kaufman"``.
    :ivar log_z: ``ln Z`` (total, not per site).
    :ivar energy_per_site: ``<E> / N``.
    :ivar heat_capacity_per_site: ``(<E^2> - <E>^2) / (N T^2)``.
    :ivar magnetization_sq: ``<m^2>``, or ``None`` if the method does not give it.
    :ivar abs_magnetization: ``<|m|>``, or ``None`` if the method does not give it.
    :ivar magnetization_fourth: ``<m^4>``, or ``None`` if the method does not give it.
    """

    L: int
    T: float
    J: float
    method: str
    log_z: float
    energy_per_site: float
    heat_capacity_per_site: float
    magnetization_sq: float | None = None
    abs_magnetization: float | None = None
    magnetization_fourth: float | None = None

    @property
    def log_z_per_site(self) -> float:
        """``ln Z / N`` (equal to ``-beta f`` per site)."""
        return self.log_z / self.L**2

    @property
    def binder_cumulant(self) -> float | None:
        """``U4 = 1 - <m^4> / (3 <m^2>^2)``, or ``None`` without ``<m^4>``."""
        if self.magnetization_fourth is None or self.magnetization_sq is None:
            return None
        return 1.0 - self.magnetization_fourth / (3.0 * self.magnetization_sq**2)


# ----------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------


def _is_real(x: object) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float))


def _check_temperature(T: float) -> float:
    if not _is_real(T) or not math.isfinite(T) or T <= 0:
        raise ConfigError(f"temperature T must be a finite number > 0, got {T!r}")
    return float(T)


def _check_coupling(J: float) -> float:
    if not _is_real(J) or not math.isfinite(J) or J <= 0:
        raise ConfigError(
            f"coupling J must be a finite number > 0 (only the ferromagnet is solved), got {J!r}"
        )
    return float(J)


def _coupling(T: float, J: float) -> float:
    return _check_coupling(J) / _check_temperature(T)


def _check_size(L: int, max_L: int | None, what: str) -> int:
    if isinstance(L, bool) or not isinstance(L, int):
        raise ConfigError(f"lattice size L must be an int, got {L!r}")
    if L < 2 or (max_L is not None and L > max_L):
        allowed = f"2 <= L <= {max_L}" if max_L is not None else "L >= 2"
        raise ConfigError(f"{what} needs {allowed}, got L = {L}")
    return L


# ----------------------------------------------------------------------------------------------
# Brute-force enumeration
# ----------------------------------------------------------------------------------------------


@cache
def _row_tables(L: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-row lookup tables for the ``2^L`` configurations of one row of ``L`` spins.

    :returns: ``spins`` ``(2^L, L)`` (``+1``/``-1``, float64), ``unequal_in_row`` ``(2^L,)`` (number of
        unsatisfied horizontal bonds, periodic), ``n_up`` ``(2^L,)`` and ``unequal_between``
        ``(2^L, 2^L)`` (unsatisfied vertical bonds between two stacked rows), the last three int64.
    """
    rows = torch.arange(1 << L, dtype=torch.int64)
    bits = (rows.unsqueeze(1) >> torch.arange(L, dtype=torch.int64)) & 1
    spins = (2 * bits - 1).to(_DTYPE)
    unequal_in_row = (bits != torch.roll(bits, shifts=-1, dims=1)).sum(dim=1)
    n_up = bits.sum(dim=1)
    unequal_between = (bits.unsqueeze(1) != bits.unsqueeze(0)).sum(dim=2)
    return spins, unequal_in_row, n_up, unequal_between


@cache
def _block_tables(L: int, n_rows: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every configuration of ``n_rows`` consecutive rows, with open ends.

    :returns: int64 ``(unequal, n_up, first_row, last_row)`` of shape ``(2^(n_rows L),)``: unsatisfied
        bonds inside the block (horizontal ones and vertical ones between its rows), up spins, and
        the ids of the block's first and last row (needed to close the bonds to the other block).
    """
    _, unequal_in_row, n_up_row, unequal_between = _row_tables(L)
    mask = (1 << L) - 1
    indices = torch.arange(1 << (L * n_rows), dtype=torch.int64)
    rows = [(indices >> (L * k)) & mask for k in range(n_rows)]
    unequal = torch.zeros_like(indices)
    n_up = torch.zeros_like(indices)
    for k, row in enumerate(rows):
        unequal += unequal_in_row[row]
        n_up += n_up_row[row]
        if k + 1 < n_rows:
            unequal += unequal_between[row, rows[k + 1]]
    return unequal, n_up, rows[0], rows[-1]


def _state_keys(L: int) -> Iterator[Tensor]:
    """Yield ``unequal_bonds * (N + 1) + n_up`` for every state, in index order, chunk by chunk.

    Every one of the ``2^N`` states gets its own key; to make that fast the lattice is cut into a
    low block (rows ``0..h-1``, the low bits of the index) and a high block (rows ``h..L-1``). A state is
    a pair (low config ``i``, high config ``j``) with index ``i + 2^(hL) j``, and its bond count is the sum
    of both blocks' internal counts plus the two rows of vertical bonds that join them on the torus
    (last low row to first high row, last high row back to row 0). That is a handful of vectorised
    operations per state instead of ``2N`` bond checks.
    """
    n_sites = L * L
    unequal_between = _row_tables(L)[3]
    h = L // 2
    low, high = _block_tables(L, h), _block_tables(L, L - h)
    low_key = low[0] * (n_sites + 1) + low[1]
    high_key = high[0] * (n_sites + 1) + high[1]
    joint = unequal_between * (n_sites + 1)
    n_low = low_key.numel()
    chunk = max(1, _CHUNK // n_low)
    for start in range(0, high_key.numel(), chunk):
        j = slice(start, start + chunk)
        keys = (
            high_key[j, None]
            + low_key[None, :]
            + joint[low[3][None, :], high[2][j, None]]
            + joint[high[3][j, None], low[2][None, :]]
        )
        yield keys.flatten()  # row-major over (j, i) is index order


def enumerate_states(L: int, dtype: torch.dtype = _DTYPE) -> Tensor:
    """All ``2^N`` spin configurations of an ``L x L`` lattice, in index order.

    :param L: ``2 <= L <= 4`` (``L = 4`` gives 65,536 states).
    :param dtype: dtype of the returned spins.
    :returns: tensor of shape ``(2^N, L, L)`` with entries ``+1``/``-1``; row ``i`` is the state with
        index ``i`` (see the module docstring for the bit convention).
    """
    _check_size(L, MAX_ENUMERATION_L, "enumerate_states")
    n_sites = L * L
    indices = torch.arange(1 << n_sites, dtype=torch.int64)
    bits = (indices.unsqueeze(1) >> torch.arange(n_sites, dtype=torch.int64)) & 1
    return (2 * bits - 1).to(dtype).reshape(-1, L, L)


def state_index(lattices: Tensor) -> Tensor:
    """Index of each configuration in the ordering of :func:`enumerate_states`.

    :param lattices: ``(..., L, L)`` spins with ``L * L <= 62`` (so the index fits in int64).
    :returns: int64 tensor of shape ``(...)``.
    """
    validate_lattices(lattices)
    rows, cols = lattices.shape[-2:]
    if rows * cols > 62:
        raise DataError(f"state_index needs at most 62 sites to fit an int64, got {rows} x {cols}")
    weights = (1 << torch.arange(rows * cols, dtype=torch.int64, device=lattices.device)).reshape(rows, cols)
    return ((lattices > 0).to(torch.int64) * weights).sum(dim=(-2, -1))


@cache
def _density_of_states(L: int) -> Tensor:
    n_sites = L * L
    n_bins = (2 * n_sites + 1) * (n_sites + 1)
    counts = torch.zeros(n_bins, dtype=torch.int64)
    for keys in _state_keys(L):
        counts += torch.bincount(keys, minlength=n_bins)
    return counts.reshape(2 * n_sites + 1, n_sites + 1)


def density_of_states(L: int) -> Tensor:
    """Joint density of states by exhaustive enumeration.

    :param L: ``2 <= L <= 5``. The result is cached; ``L = 5`` (``2^25`` states) takes about a second once.
    :returns: int64 tensor ``g`` of shape ``(2N + 1, N + 1)``: ``g[d, n]`` is the number of states with
        ``d`` unsatisfied bonds (bond sum ``2N - 2d``, energy ``-J (2N - 2d)``) and ``n`` up spins
        (``m = (2n - N) / N``). It sums to ``2^N``.
    """
    _check_size(L, MAX_BRUTE_FORCE_L, "brute-force enumeration")
    return _density_of_states(L).clone()


def brute_force_log_probs(L: int, T: float, J: float = 1.0) -> Tensor:
    """Exact Boltzmann log-probabilities ``ln p(s)`` of every state, for exact divergences.

    :param L: ``2 <= L <= 4``.
    :param T: temperature ``> 0``.
    :param J: coupling ``> 0``.
    :returns: float64 tensor of shape ``(2^N,)``, entry ``i`` for the state of index ``i``
        (:func:`enumerate_states`); ``logsumexp`` of it is 0.
    """
    _check_size(L, MAX_ENUMERATION_L, "brute_force_log_probs")
    K = _coupling(T, J)
    n_sites = L * L
    unequal = torch.cat(list(_state_keys(L))) // (n_sites + 1)
    log_weights = K * (2 * n_sites - 2 * unequal).to(_DTYPE)
    return log_weights - torch.logsumexp(log_weights, dim=0)


def brute_force_thermodynamics(L: int, T: float, J: float = 1.0) -> ExactThermodynamics:
    """Exact thermodynamics by summing over all ``2^N`` states (``2 <= L <= 5``).

    :param L: lattice size.
    :param T: temperature ``> 0``.
    :param J: coupling ``> 0``.
    """
    _check_size(L, MAX_BRUTE_FORCE_L, "brute-force enumeration")
    K = _coupling(T, J)
    n_sites = L * L
    g = _density_of_states(L).to(_DTYPE)
    bond_sum = 2.0 * n_sites - 2.0 * torch.arange(2 * n_sites + 1, dtype=_DTYPE)
    m = (2.0 * torch.arange(n_sites + 1, dtype=_DTYPE) - n_sites) / n_sites
    log_weights = torch.where(g > 0, torch.log(g) + K * bond_sum.unsqueeze(1), -torch.inf)
    log_z = torch.logsumexp(log_weights.flatten(), dim=0)
    p = torch.exp(log_weights - log_z)
    p_bonds, p_m = p.sum(dim=1), p.sum(dim=0)
    mean_bonds = (p_bonds * bond_sum).sum()
    var_bonds = (p_bonds * (bond_sum - mean_bonds).square()).sum()
    return ExactThermodynamics(
        L=L,
        T=float(T),
        J=float(J),
        method="brute_force",
        log_z=float(log_z),
        energy_per_site=float(-J * mean_bonds / n_sites),
        heat_capacity_per_site=float(K**2 * var_bonds / n_sites),
        magnetization_sq=float((p_m * m.square()).sum()),
        abs_magnetization=float((p_m * m.abs()).sum()),
        magnetization_fourth=float((p_m * m.pow(4)).sum()),
    )


# ----------------------------------------------------------------------------------------------
# Row transfer matrix
# ----------------------------------------------------------------------------------------------


def _transfer_matrix(L: int, K: float) -> tuple[Tensor, Tensor, float]:
    """Symmetric row transfer matrix, rescaled so that no entry overflows.

    ``T[a, b] = exp(K (h(a)/2 + v(a, b) + h(b)/2))`` with ``h`` the horizontal bond sum inside a row
    and ``v`` the vertical bond sum between rows; splitting ``h`` symmetrically makes ``T`` symmetric
    so ``eigh`` applies. The largest possible exponent, ``2 L K`` (aligned rows), is subtracted.

    :returns: ``(T_scaled, w, log_scale)`` with ``T = exp(log_scale) * T_scaled`` and ``w`` the bond
        sum of a step (``T = exp(K w)``).
    """
    spins = _row_tables(L)[0]
    in_row = (spins * torch.roll(spins, shifts=-1, dims=1)).sum(dim=1)
    w = 0.5 * in_row.unsqueeze(1) + spins @ spins.T + 0.5 * in_row.unsqueeze(0)
    return torch.exp(K * (w - 2 * L)), w, 2.0 * L * K


@lru_cache(maxsize=64)  # L = 12 costs about a minute; results are immutable
def transfer_matrix_thermodynamics(L: int, T: float, J: float = 1.0) -> ExactThermodynamics:
    """Exact thermodynamics from the row transfer matrix (``2 <= L <= 12``).

    With ``T = U diag(lambda) U^T`` (normalised so that the largest eigenvalue is 1, ``Z`` rescaled
    accordingly), ``Z = sum_i lambda_i^L`` and, writing ``B`` for the bond sum,

    * ``Z <B> = L sum_i lambda_i^{L-1} (U^T T_w U)_ii`` with ``T_w = T * w`` (element-wise),
    * ``Z <B^2> = L sum_i lambda_i^{L-1} (U^T T_ww U)_ii + L sum_ij (U^T T_w U)_ij^2 S_ij`` with
      ``S_ij = sum_{k=0}^{L-2} lambda_i^k lambda_j^{L-2-k}``,
    * ``Z <M^2> = L sum_ij (U^T D U)_ij^2 G_ij`` with ``D`` the diagonal row magnetisation and
      ``G_ij = sum_{d=0}^{L-1} lambda_i^{L-d} lambda_j^d``.

    These are the exact first and second ``K``-derivatives of ``Tr T^L`` and the row-row magnetisation
    correlations written in the eigenbasis; unlike differentiating eigenvalues they stay exact when
    eigenvalues are degenerate (as the lattice symmetries make many of them).

    For ``L <= 8`` the distribution of ``m`` is added (:func:`transfer_matrix_magnetization_distribution`),
    giving ``<|m|>`` and ``<m^4>``; for larger ``L`` those fields are ``None``. ``L = 12`` needs ~1 GB
    and about a minute; results are cached per ``(L, T, J)``.

    :param L: lattice size.
    :param T: temperature ``> 0``.
    :param J: coupling ``> 0``.
    """
    _check_size(L, MAX_TRANSFER_MATRIX_L, "the transfer matrix")
    K = _coupling(T, J)
    n_sites = L * L
    t_scaled, w, log_scale = _transfer_matrix(L, K)
    lam, U = torch.linalg.eigh(t_scaled)
    # T is entrywise positive, so its Perron eigenvalue is the largest in modulus and positive.
    lam_max = float(lam[-1])
    mu = lam / lam_max
    z_hat = mu.pow(L).sum()
    log_z = L * (log_scale + math.log(lam_max)) + float(torch.log(z_hat))

    # Matrices are 4096 x 4096 at L = 12 (128 MB each), so temporaries are freed as soon as possible.
    powers = torch.stack([mu.pow(k) for k in range(L + 1)])  # powers[k] = mu^k
    weighted = t_scaled * w / lam_max  # T_w
    b_w = U.T @ (weighted @ U)
    weighted.mul_(w)  # now T_ww
    diag_ww = (U * (weighted @ U)).sum(dim=0)
    del weighted
    pair_sum = torch.zeros_like(t_scaled)
    for k in range(L - 1):
        pair_sum.addr_(powers[k], powers[L - 2 - k])  # S_ij
    mean_b = L * (powers[L - 1] * b_w.diagonal()).sum() / z_hat
    mean_b2 = (L * (powers[L - 1] * diag_ww).sum() + L * (b_w.square_() * pair_sum).sum()) / z_hat
    var_b = mean_b2 - mean_b.square()
    del b_w

    row_m = _row_tables(L)[0].sum(dim=1)
    a = U.T @ (row_m.unsqueeze(1) * U)
    pair_sum.zero_()
    for d in range(L):
        pair_sum.addr_(powers[L - d], powers[d])  # G_ij
    mean_m2 = L * (a.square_() * pair_sum).sum() / z_hat / n_sites**2
    del a, pair_sum

    abs_m = m4 = None
    if L <= MAX_TRANSFER_MAGNETIZATION_L:
        p_n = _magnetization_distribution(L, t_scaled)
        m = (2.0 * torch.arange(n_sites + 1, dtype=_DTYPE) - n_sites) / n_sites
        abs_m = float((p_n * m.abs()).sum())
        m4 = float((p_n * m.pow(4)).sum())
    return ExactThermodynamics(
        L=L,
        T=float(T),
        J=float(J),
        method="transfer_matrix",
        log_z=log_z,
        energy_per_site=float(-J * mean_b / n_sites),
        heat_capacity_per_site=float(K**2 * var_b / n_sites),
        magnetization_sq=float(mean_m2),
        abs_magnetization=abs_m,
        magnetization_fourth=m4,
    )


def _magnetization_distribution(L: int, t_scaled: Tensor) -> Tensor:
    """``P(n up spins)`` by propagating row by row while counting up spins.

    ``V[q, a, r]`` is the (rescaled) weight of all partial configurations whose first row is ``a``,
    current row is ``r`` and which have ``q`` up spins so far; the first row is kept so the periodic
    bond back to it can be closed at the end. Cost ``~ L (N + 1) 8^L``, hence ``L <= 8``.
    """
    n_sites = L * L
    n_rows = 1 << L
    n_up_row = _row_tables(L)[2]
    t_scaled = t_scaled / torch.linalg.matrix_norm(t_scaled, ord=2)  # keep the iterates O(1)
    v = torch.zeros(n_sites + 1, n_rows, n_rows, dtype=_DTYPE)
    first = torch.arange(n_rows)
    v[n_up_row, first, first] = 1.0
    columns_by_up = [torch.nonzero(n_up_row == u).squeeze(1) for u in range(L + 1)]
    for step in range(1, L):
        q_max = step * L  # at most this many up spins among the rows placed so far
        propagated = v[: q_max + 1] @ t_scaled
        v = torch.zeros_like(v)
        for u, cols in enumerate(columns_by_up):
            v[u : u + q_max + 1, :, cols] = propagated[:, :, cols]
    # Close the torus: the last row couples back to the first through T[r, a].
    weights = (v * t_scaled.T.unsqueeze(0)).sum(dim=(1, 2))
    return weights / weights.sum()


def transfer_matrix_magnetization_distribution(L: int, T: float, J: float = 1.0) -> Tensor:
    """Exact distribution of the number of up spins, via the transfer matrix (``2 <= L <= 8``).

    :param L: lattice size.
    :param T: temperature ``> 0``.
    :param J: coupling ``> 0``.
    :returns: float64 tensor ``p`` of shape ``(N + 1,)``; ``p[n]`` is the probability of ``n`` up
        spins, i.e. of ``m = (2n - N) / N``.
    """
    _check_size(L, MAX_TRANSFER_MAGNETIZATION_L, "the magnetisation distribution from the transfer matrix")
    t_scaled, _, _ = _transfer_matrix(L, _coupling(T, J))
    return _magnetization_distribution(L, t_scaled)


# ----------------------------------------------------------------------------------------------
# Kaufman / Ferdinand-Fisher
# ----------------------------------------------------------------------------------------------


def _kaufman_log_z(L: int, K: Tensor) -> Tensor:
    """``ln Z`` of the ``L x L`` torus as a differentiable function of a float64 tensor ``K``.

    Ferdinand & Fisher's form of Kaufman's result (``m = n = L``):

    ``Z = 1/2 (2 sinh 2K)^{N/2} (Z_1 + Z_2 + Z_3 + Z_4)``,
    ``Z_1 = prod_{r=0}^{n-1} 2 cosh(m gamma_{2r+1} / 2)``, ``Z_2`` the same with ``sinh``,
    ``Z_3 = prod_{r=0}^{n-1} 2 cosh(m gamma_{2r} / 2)``, ``Z_4`` the same with ``sinh``,

    with ``cosh gamma_k = cosh 2K coth 2K - cos(pi k / n)`` (``gamma_k > 0``) for ``k >= 1`` and the
    signed ``gamma_0 = 2K + ln tanh K``, negative below ``T_c``, which makes ``Z_4`` negative there.

    The factors are huge, so each one is divided by ``exp(|x|)`` with ``|x|`` *detached*: a constant
    rescaling keeps every derivative exact and smooth (rescaling by ``exp(|x|)`` with the gradient
    attached would put a kink at ``gamma_0 = 0``, i.e. at ``T_c``), and the four products are then
    combined with a signed log-sum-exp.
    """
    n = L
    k = torch.arange(2 * n, dtype=_DTYPE)
    two_k = 2.0 * K
    c = torch.cosh(two_k) / torch.tanh(two_k)  # >= 2, so the acosh argument exceeds 1 for k >= 1
    gamma_rest = torch.acosh(c - torch.cos(math.pi * k[1:] / n))
    gamma_0 = (two_k + torch.log(torch.tanh(K))).reshape(1)
    gamma = torch.cat([gamma_0, gamma_rest])
    x = 0.5 * L * gamma  # m gamma_k / 2 with m = L rows
    shift = x.detach().abs()
    up = torch.exp(x - shift)
    down = torch.exp(-x - shift)
    two_cosh, two_sinh = up + down, up - down  # 2 cosh(x) / e^|x|, 2 sinh(x) / e^|x|
    odd, even = slice(1, None, 2), slice(2, None, 2)
    # The gamma_0 factor is multiplied in separately: torch's prod backward divides by each factor,
    # and near T_c, where 2 sinh(x_0) ~ 0, its second derivative would then be a difference of two
    # numbers of order 1 / x_0^2 (wrong by O(1) at T = T_c). The other factors stay away from zero.
    scaled_terms = torch.stack(
        [
            two_cosh[odd].prod(),
            two_sinh[odd].prod(),
            two_cosh[0] * two_cosh[even].prod(),
            two_sinh[0] * two_sinh[even].prod(),
        ]
    )
    even_scale = shift[0] + shift[even].sum()
    log_scales = torch.stack([shift[odd].sum(), shift[odd].sum(), even_scale, even_scale])
    top = log_scales.max()
    total = (scaled_terms * torch.exp(log_scales - top)).sum()
    n_sites = L * L
    return -math.log(2.0) + 0.5 * n_sites * torch.log(2.0 * torch.sinh(two_k)) + top + torch.log(total)


def kaufman_log_z(L: int, T: float, J: float = 1.0) -> float:
    """Exact ``ln Z`` of the ``L x L`` torus from Kaufman's formula (any ``L >= 2``).

    :param L: lattice size.
    :param T: temperature ``> 0``.
    :param J: coupling ``> 0``.
    """
    _check_size(L, None, "Kaufman's formula")
    K = torch.tensor(_coupling(T, J), dtype=_DTYPE)
    return float(_kaufman_log_z(L, K))


def kaufman_thermodynamics(L: int, T: float, J: float = 1.0) -> ExactThermodynamics:
    """``ln Z``, ``<E>/N`` and heat capacity per site from Kaufman's formula (any ``L >= 2``).

    ``<E> = -J d ln Z / dK`` and ``C = K^2 d^2 ln Z / dK^2`` are taken by float64 autograd through
    the formula, so they are exact to rounding. Magnetisation fields are ``None`` (the formula has no
    field term).

    :param L: lattice size.
    :param T: temperature ``> 0``.
    :param J: coupling ``> 0``.
    """
    _check_size(L, None, "Kaufman's formula")
    k_value = _coupling(T, J)
    K = torch.tensor(k_value, dtype=_DTYPE, requires_grad=True)
    with torch.enable_grad():
        log_z = _kaufman_log_z(L, K)
        (first,) = torch.autograd.grad(log_z, K, create_graph=True)
        (second,) = torch.autograd.grad(first, K)
    n_sites = L * L
    return ExactThermodynamics(
        L=L,
        T=float(T),
        J=float(J),
        method="kaufman",
        log_z=float(log_z.detach()),
        energy_per_site=float(-J * first.detach() / n_sites),
        heat_capacity_per_site=float(k_value**2 * second / n_sites),
    )


def exact_thermodynamics(L: int, T: float, J: float = 1.0, method: str = "auto") -> ExactThermodynamics:
    """Exact thermodynamics with a chosen or automatic method.

    :param method: ``"brute_force"`` (``L <= 5``), ``"transfer_matrix"`` (``L <= 12``), ``"kaufman"``
        (any ``L``, no magnetisation) or ``"auto"``: the transfer matrix up to ``L = 8`` (every field
        filled), Kaufman beyond.
    """
    methods = {
        "brute_force": brute_force_thermodynamics,
        "transfer_matrix": transfer_matrix_thermodynamics,
        "kaufman": kaufman_thermodynamics,
    }
    if method == "auto":
        _check_size(L, None, "exact_thermodynamics")
        method = "transfer_matrix" if L <= MAX_TRANSFER_MAGNETIZATION_L else "kaufman"
    if method not in methods:
        raise ConfigError(f"unknown method {method!r}; choose one of 'auto', {', '.join(map(repr, methods))}")
    return methods[method](L, T, J)


def exact_log_prob(lattices: Tensor, T: float, J: float = 1.0) -> Tensor:
    """Exact normalised log-probability ``-E(s)/T - ln Z`` of configurations on an ``L x L`` torus.

    ``ln Z`` comes from Kaufman's formula, so this works for any square ``L >= 2``.

    :param lattices: ``(..., L, L)`` spins.
    :returns: float64 tensor of shape ``(...)``.
    """
    validate_lattices(lattices)
    L = lattices.shape[-1]
    if lattices.shape[-2] != L:
        raise DataError(f"exact_log_prob needs square L x L lattices, got {tuple(lattices.shape[-2:])}")
    _check_size(L, None, "exact_log_prob")
    T = _check_temperature(T)
    return -energy(lattices, _check_coupling(J)) / T - kaufman_log_z(L, T, J)


# ----------------------------------------------------------------------------------------------
# Infinite lattice
# ----------------------------------------------------------------------------------------------


def _elliptic_modulus_sq(K: float) -> float:
    # kappa = 2 sinh 2K / cosh^2 2K <= 1, with equality exactly at K_c.
    return min((2.0 * math.sinh(2.0 * K) / math.cosh(2.0 * K) ** 2) ** 2, 1.0)


def onsager_log_z_per_site(T: float, J: float = 1.0) -> float:
    """Onsager's ``-beta f = lim ln Z / N`` for the infinite square lattice.

    ``-beta f = ln(2 cosh 2K) + (1/pi) int_0^{pi/2} ln[(1 + sqrt(1 - kappa^2 sin^2 t)) / 2] dt`` with
    ``kappa = 2 sinh 2K / cosh^2 2K``. At ``K_c`` it equals ``ln 2 / 2 + 2 G / pi`` (``G`` Catalan's).
    """
    K = _coupling(T, J)
    k2 = _elliptic_modulus_sq(K)

    def integrand(t: float) -> float:
        return math.log(0.5 * (1.0 + math.sqrt(max(1.0 - k2 * math.sin(t) ** 2, 0.0))))

    value, _ = integrate.quad(integrand, 0.0, 0.5 * math.pi, epsabs=1e-14, epsrel=1e-13, limit=200)
    return math.log(2.0 * math.cosh(2.0 * K)) + value / math.pi


def onsager_free_energy_per_site(T: float, J: float = 1.0) -> float:
    """Helmholtz free energy per site ``f = -T lim ln Z / N`` of the infinite lattice."""
    return -_check_temperature(T) * onsager_log_z_per_site(T, J)


def onsager_energy_per_site(T: float, J: float = 1.0) -> float:
    """Internal energy per site of the infinite lattice.

    ``u = -J coth 2K [1 + (2/pi) (2 tanh^2 2K - 1) K_1(kappa)]`` with ``K_1`` the complete elliptic
    integral of the first kind; at ``K_c`` the prefactor of the divergent ``K_1`` vanishes and
    ``u = -sqrt(2) J``.
    """
    K = _coupling(T, J)
    k2 = _elliptic_modulus_sq(K)
    prefactor = 2.0 * math.tanh(2.0 * K) ** 2 - 1.0
    elliptic_term = 0.0 if k2 >= 1.0 else prefactor * special.ellipk(k2)
    return -J / math.tanh(2.0 * K) * (1.0 + 2.0 / math.pi * elliptic_term)


def onsager_entropy_per_site(T: float, J: float = 1.0) -> float:
    """Entropy per site ``s = -beta f + u / T`` of the infinite lattice (``k_B = 1``)."""
    return onsager_log_z_per_site(T, J) + onsager_energy_per_site(T, J) / _check_temperature(T)


def onsager_heat_capacity_per_site(T: float, J: float = 1.0) -> float:
    """Heat capacity per site of the infinite lattice (``k_B = 1``); ``inf`` at ``T_c``.

    ``c = (4/pi) (K coth 2K)^2 {K_1 - E_1 - (1 - tanh^2 2K) [pi/2 + (2 tanh^2 2K - 1) K_1]}`` with
    ``K_1``, ``E_1`` the complete elliptic integrals of modulus ``kappa`` (the ``K``-derivative of
    :func:`onsager_energy_per_site`; the tests check it against a numerical derivative and large-``L``
    Kaufman values).
    """
    K = _coupling(T, J)
    k2 = _elliptic_modulus_sq(K)
    if k2 >= 1.0:
        return math.inf
    t2 = math.tanh(2.0 * K) ** 2
    k1, e1 = special.ellipk(k2), special.ellipe(k2)
    bracket = k1 - e1 - (1.0 - t2) * (0.5 * math.pi + (2.0 * t2 - 1.0) * k1)
    return 4.0 / math.pi * (K / math.tanh(2.0 * K)) ** 2 * bracket


def yang_magnetization(T: float, J: float = 1.0) -> float:
    """Yang's spontaneous magnetisation ``m_0 = (1 - sinh^{-4} 2K)^{1/8}`` below ``T_c``, else 0."""
    K = _coupling(T, J)
    sinh_2k = math.sinh(2.0 * K)
    if sinh_2k <= 1.0:  # sinh 2K_c = 1
        return 0.0
    return (1.0 - sinh_2k**-4) ** 0.125
