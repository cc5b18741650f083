"""The Swendsen-Wang cluster update of the 2D Ising model, and the cluster labelling it rests on.

Flipping whole Fortuin-Kasteleyn clusters removes most of the critical slowing down of the local
kernels of :mod:`vaezoo.ising.kernels` (see :func:`swendsen_wang_sweep` for why it is correct). It works
for any ``L >= 2`` and is vectorised over a batch of chains, like the local kernels.

References
----------
R. H. Swendsen and J.-S. Wang, "Nonuniversal critical dynamics in Monte Carlo simulations",
Phys. Rev. Lett. 58, 86 (1987).

R. G. Edwards and A. D. Sokal, "Generalization of the Fortuin-Kasteleyn-Swendsen-Wang representation
and Monte Carlo algorithm", Phys. Rev. D 38, 2009 (1988).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaezoo.errors import DataError
from vaezoo.ising.kernels import check_square, uniform, working_copy
from vaezoo.ising.parameters import reduced_coupling

__all__ = ["cluster_labels", "swendsen_wang_kernel", "swendsen_wang_sweep"]


def _cluster_labels(bond_right: Tensor, bond_down: Tensor) -> Tensor:
    batch, rows, cols = bond_right.shape
    n_sites = rows * cols
    device = bond_right.device
    # All chains share one label array; chain b owns the flat indices [b N, (b + 1) N), so labels
    # of different chains can never meet.
    # index_select / masked_select rather than tensor indexing: same result, but advanced indexing
    # goes through a kernel that becomes orders of magnitude slower for these small tensors when
    # the CPU is oversubscribed.
    site = torch.arange(batch * n_sites, device=device).reshape(batch, rows, cols)
    u = torch.cat([site.masked_select(bond_right), site.masked_select(bond_down)])
    v = torch.cat(
        [
            torch.roll(site, -1, dims=-1).masked_select(bond_right),
            torch.roll(site, -1, dims=-2).masked_select(bond_down),
        ]
    )
    label = torch.arange(batch * n_sites, device=device)
    while True:
        lu, lv = label.index_select(0, u), label.index_select(0, v)
        unresolved = lu != lv
        if not bool(unresolved.any()):
            break
        # Bonds whose ends already agree stay agreed (labels of a cluster only ever merge), so they
        # are dropped from later rounds.
        u, v = u.masked_select(unresolved), v.masked_select(unresolved)
        lu, lv = lu.masked_select(unresolved), lv.masked_select(unresolved)
        # Min-label propagation across each open bond: the larger of the two labels (a root, after
        # the jumping below) now points to the smaller one; scatter-amin resolves competing bonds.
        label.scatter_reduce_(0, torch.maximum(lu, lv), torch.minimum(lu, lv), reduce="amin")
        # Pointer jumping to a fixed point: label <- label[label] until every label is a root.
        while True:
            jumped = label.index_select(0, label)
            if torch.equal(jumped, label):
                break
            label = jumped
    offsets = torch.arange(batch, device=device).mul_(n_sites).reshape(batch, 1, 1)
    return label.reshape(batch, rows, cols) - offsets


def cluster_labels(bond_right: Tensor, bond_down: Tensor) -> Tensor:
    """Connected components of the open bonds on the torus, by min-label propagation with pointer jumping.

    Every site starts with its own flat index as label. Each round, for every open bond whose ends
    still carry different labels, the larger label is pointed at the smaller one (a vectorised
    scatter-min over bonds), and pointer jumping (``label <- label[label]``, repeated to a fixed point)
    passes the new minimum to every site that referred to the old one. Invariants: a label is always
    the index of a site in the same cluster (labels only move along open bonds), it never exceeds
    the site's own index, and labels never increase, so the loop terminates. It stops when every
    open bond joins equal labels; then labels are constant on each cluster, and since a label is a
    site of its own cluster, different clusters get different labels. The smallest index ``i0`` of a
    cluster can only point to itself, so it is the label of the whole cluster. Pointer jumping makes
    the number of rounds grow like the logarithm of the cluster size rather than its diameter (a
    handful of rounds even for spanning clusters at ``T_c``).

    :param bond_right: bool ``(..., L, L)``; entry ``(i, j)`` opens the bond ``(i, j)-(i, j+1 mod L)``.
    :param bond_down: bool ``(..., L, L)``; entry ``(i, j)`` opens the bond ``(i, j)-(i+1 mod L, j)``.
    :returns: int64 ``(..., L, L)``: each site's cluster label, the flat index ``i * L + j`` of the
        cluster's smallest site.
    """
    if bond_right.shape != bond_down.shape or bond_right.dim() < 2:
        raise DataError(
            f"bond_right and bond_down must have the same shape (..., L, L), got "
            f"{tuple(bond_right.shape)} and {tuple(bond_down.shape)}"
        )
    if bond_right.dtype != torch.bool or bond_down.dtype != torch.bool:
        raise DataError("bond_right and bond_down must be bool tensors")
    shape = bond_right.shape
    labels = _cluster_labels(bond_right.reshape(-1, *shape[-2:]), bond_down.reshape(-1, *shape[-2:]))
    return labels.reshape(shape)


def swendsen_wang_kernel(spins: Tensor, K: float, generator: torch.Generator) -> Tensor:
    """One Swendsen-Wang update of floating-point ``spins`` ``(..., L, L)`` at reduced coupling ``K``."""
    shape = spins.shape
    spins = spins.reshape(-1, *shape[-2:])
    batch, n_sites = spins.shape[0], shape[-1] * shape[-2]
    p_bond = -math.expm1(-2.0 * K)  # 1 - exp(-2K), without cancellation at small K
    bond_right = (spins == torch.roll(spins, -1, dims=-1)) & (uniform(spins, generator) < p_bond)
    bond_down = (spins == torch.roll(spins, -1, dims=-2)) & (uniform(spins, generator) < p_bond)
    labels = _cluster_labels(bond_right, bond_down).reshape(batch, n_sites)
    # One fair coin per possible label; a cluster reads the coin of its label site, so distinct
    # clusters (distinct labels) flip independently.
    coins = torch.rand(batch, n_sites, generator=generator, device=spins.device) < 0.5
    flip = torch.gather(coins, 1, labels).reshape(spins.shape)
    return torch.where(flip, -spins, spins).reshape(shape)


def swendsen_wang_sweep(lattices: Tensor, T: float, *, generator: torch.Generator, J: float = 1.0) -> Tensor:
    """One Swendsen-Wang cluster update.

    1. Each bond between *equal* neighbours is opened with probability ``p = 1 - exp(-2K)``; bonds
       between unequal neighbours stay closed.
    2. Clusters (connected components of open bonds on the torus) are labelled with
       :func:`cluster_labels`.
    3. Every cluster is flipped with probability 1/2, independently.

    Why this samples ``p(s) ~ exp(K sum_<ij> s_i s_j)``: the Fortuin-Kasteleyn / Edwards-Sokal joint
    distribution of spins ``s`` and bond occupations ``n`` is
    ``P(s, n) ~ prod_<ij> [(1 - p) delta(n_ij = 0) + p delta(n_ij = 1) delta(s_i = s_j)]``. Summing over
    ``n_ij`` leaves the bond weight ``(1 - p) + p = 1`` if ``s_i = s_j`` and ``1 - p = e^{-2K}`` if
    ``s_i != s_j``; their ratio ``e^{2K}`` is that of ``e^{K s_i s_j}`` for equal versus unequal spins,
    so the marginal of ``s`` is the Ising distribution. Step 1 samples ``n | s`` exactly (bonds are
    conditionally independent, open with probability ``p`` only if the spins agree), and steps 2-3
    sample ``s | n`` exactly (the only constraint is that spins are constant on each cluster, and
    every such assignment has the same weight). The update is thus a two-block Gibbs sampler on
    ``(s, n)``, which leaves ``P(s, n)``, hence the Ising marginal, invariant. It is irreducible and
    aperiodic for ``T > 0``: with positive probability no bond opens and every site flips
    independently, so any state can reach any other in one step.

    The update is vectorised across the batch; clusters of different chains never mix because
    labelling is done per chain.

    :param lattices: ``(..., L, L)`` spins, any ``L >= 2``.
    :param T: temperature ``> 0``.
    :param generator: source of randomness (on the lattices' device).
    :param J: exchange coupling ``> 0``.
    :returns: new lattices (same shape and dtype; the input is not modified).
    """
    check_square(lattices, "swendsen_wang")
    K = reduced_coupling(T, J=J)
    return swendsen_wang_kernel(working_copy(lattices), K, generator).to(lattices.dtype)
