"""Exact thermodynamics of the 2D Ising model: finite tori and the infinite lattice.

Conventions: ``H(s) = -J sum_<ij> s_i s_j`` on an ``L x L`` torus (``N = L^2`` sites, ``2N`` bonds; for
``L = 2`` the two bonds joining the same pair of sites both count, exactly as on the torus graph),
spins ``+1``/``-1``, ``k_B = 1``, exchange coupling ``J``, reduced coupling ``K = J / T``
(:mod:`vaezoo.ising.parameters`). The magnetisation is per site, ``m = (1/N) sum_i s_i``. Energies and
heat capacities are reported per site. Only the ferromagnet (``J > 0``) at positive temperature is
handled.

One module per method; the three finite-lattice ones share nothing beyond the definition of the torus
(:mod:`~vaezoo.ising.exact.common`), so their agreement to ~1e-13 where they overlap (see the tests)
is the main correctness check:

* :mod:`~vaezoo.ising.exact.enumeration`: brute force over all ``2^N`` states (``L <= 5``), and
  log-probabilities of every state (``L <= 4``);
* :mod:`~vaezoo.ising.exact.transfer_matrix`: the row transfer matrix (``L <= 12``; the distribution
  of ``m`` up to ``L = 8``);
* :mod:`~vaezoo.ising.exact.kaufman`: Kaufman's / Ferdinand-Fisher's finite-torus partition function
  (any ``L``, no magnetisation);
* :mod:`~vaezoo.ising.exact.onsager`: Onsager's infinite-lattice free energy, energy and heat
  capacity, Yang's spontaneous magnetisation, and the critical point;
* :mod:`~vaezoo.ising.exact.dispatch`: :func:`exact_thermodynamics` picks a method, and
  :func:`exact_log_prob` normalises Boltzmann weights with Kaufman's ``ln Z``.
"""

from vaezoo.ising.exact.common import (
    MAX_BRUTE_FORCE_L,
    MAX_ENUMERATION_L,
    MAX_TRANSFER_MAGNETIZATION_L,
    MAX_TRANSFER_MATRIX_L,
    ExactThermodynamics,
)
from vaezoo.ising.exact.dispatch import exact_log_prob, exact_thermodynamics
from vaezoo.ising.exact.enumeration import (
    brute_force_log_probs,
    brute_force_thermodynamics,
    density_of_states,
    enumerate_states,
    state_index,
)
from vaezoo.ising.exact.kaufman import kaufman_log_z, kaufman_thermodynamics
from vaezoo.ising.exact.onsager import (
    BETA_C,
    T_C,
    onsager_energy_per_site,
    onsager_entropy_per_site,
    onsager_free_energy_per_site,
    onsager_heat_capacity_per_site,
    onsager_log_z_per_site,
    yang_magnetization,
)
from vaezoo.ising.exact.transfer_matrix import (
    transfer_matrix_magnetization_distribution,
    transfer_matrix_thermodynamics,
)

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
