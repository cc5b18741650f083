"""The row transfer matrix of the ``L x L`` torus (``L <= 12``).

``Z = Tr T^L`` with the symmetric ``2^L x 2^L`` row-to-row matrix. Its eigendecomposition gives ``ln Z``,
``<E>``, the heat capacity (exact first and second ``K``-derivatives written as spectral sums, so
degenerate eigenvalues do no harm) and ``<m^2>`` (row-magnetisation correlations). For ``L <= 8`` a
second pass tracks the number of up spins row by row and gives the full distribution of ``m``, hence
``<|m|>`` and ``<m^4>``.

References
----------
H. A. Kramers and G. H. Wannier, "Statistics of the two-dimensional ferromagnet. Part I",
Phys. Rev. 60, 252 (1941) (the transfer matrix).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from vaezoo.ising.exact.common import (
    DTYPE,
    MAX_TRANSFER_MAGNETIZATION_L,
    MAX_TRANSFER_MATRIX_L,
    ExactThermodynamics,
    check_size,
    ground_state,
    row_tables,
)
from vaezoo.ising.parameters import reduced_coupling

__all__ = ["transfer_matrix_thermodynamics", "transfer_matrix_magnetization_distribution"]


def _transfer_matrix(L: int, K: float) -> tuple[Tensor, Tensor, float]:
    """Symmetric row transfer matrix, rescaled so that no entry overflows.

    ``T[a, b] = exp(K (h(a)/2 + v(a, b) + h(b)/2))`` with ``h`` the horizontal bond sum inside a row
    and ``v`` the vertical bond sum between rows; splitting ``h`` symmetrically makes ``T`` symmetric
    so ``eigh`` applies. The largest possible exponent, ``2 L K`` (aligned rows), is subtracted.

    :returns: ``(T_scaled, w, log_scale)`` with ``T = exp(log_scale) * T_scaled`` and ``w`` the bond
        sum of a step (``T = exp(K w)``).
    """
    spins = row_tables(L)[0]
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
    :param J: exchange coupling ``> 0``.
    """
    check_size(L, MAX_TRANSFER_MATRIX_L, "the transfer matrix")
    K = reduced_coupling(T, J=J)
    limit = ground_state(L, K, T, J, "transfer_matrix", abs_magnetization=L <= MAX_TRANSFER_MAGNETIZATION_L)
    if limit is not None:
        return limit
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

    row_m = row_tables(L)[0].sum(dim=1)
    a = U.T @ (row_m.unsqueeze(1) * U)
    pair_sum.zero_()
    for d in range(L):
        pair_sum.addr_(powers[L - d], powers[d])  # G_ij
    mean_m2 = L * (a.square_() * pair_sum).sum() / z_hat / n_sites**2
    del a, pair_sum

    abs_m = m4 = None
    if L <= MAX_TRANSFER_MAGNETIZATION_L:
        p_n = _magnetization_distribution(L, t_scaled)
        m = (2.0 * torch.arange(n_sites + 1, dtype=DTYPE) - n_sites) / n_sites
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
    n_up_row = row_tables(L)[2]
    t_scaled = t_scaled / torch.linalg.matrix_norm(t_scaled, ord=2)  # keep the iterates O(1)
    v = torch.zeros(n_sites + 1, n_rows, n_rows, dtype=DTYPE)
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
    :param J: exchange coupling ``> 0``.
    :returns: float64 tensor ``p`` of shape ``(N + 1,)``; ``p[n]`` is the probability of ``n`` up
        spins, i.e. of ``m = (2n - N) / N``.
    """
    check_size(L, MAX_TRANSFER_MAGNETIZATION_L, "the magnetisation distribution from the transfer matrix")
    t_scaled, _, _ = _transfer_matrix(L, reduced_coupling(T, J=J))
    return _magnetization_distribution(L, t_scaled)
