"""The 2D Ising model on an ``L x L`` torus: exact results, Monte Carlo and observables (no Pyro).

``H(s) = -J sum_<ij> s_i s_j`` with spins ``+1``/``-1``, exchange coupling ``J``, reduced coupling
``K = J / T``, ``N = L^2``; lattices are torch tensors of shape ``(..., L, L)``.

* :mod:`vaezoo.ising.parameters`: the one check of ``T`` and of ``J``, and ``K = J / T``.
* :mod:`vaezoo.ising.exact`: brute-force enumeration (``L <= 5``), row transfer matrix (``L <= 12``),
  Kaufman's finite-torus partition function (any ``L``), Onsager's and Yang's infinite-lattice
  results; one module per method.
* :mod:`vaezoo.ising.kernels` and :mod:`vaezoo.ising.swendsen_wang`: checkerboard heat-bath and
  Metropolis sweeps, Swendsen-Wang cluster updates.
* :mod:`vaezoo.ising.chains`: running batches of chains; :mod:`vaezoo.ising.sampling`:
  :func:`~vaezoo.ising.sampling.sample` for decorrelated equilibrium lattices.
* :mod:`vaezoo.ising.observables`: energy, magnetisation and correlation functions of lattices.
* :mod:`vaezoo.ising.autocorrelation`: autocorrelation of time series and integrated
  autocorrelation times; :mod:`vaezoo.ising.estimates`: Monte Carlo means (Binder cumulant, heat
  capacity, correlation functions, ...) with autocorrelation-aware standard errors.
* :mod:`vaezoo.ising.lattice_data`: equilibrium lattices over a grid of temperatures, as model inputs.
"""

from vaezoo.ising.autocorrelation import integrated_autocorrelation_time
from vaezoo.ising.chains import METHODS, AutocorrelationTimes, ChainTrace, autocorrelation_times, run_chains
from vaezoo.ising.estimates import (
    CorrelationEstimate,
    Estimate,
    estimate_abs_magnetization,
    estimate_binder_cumulant,
    estimate_correlation_function,
    estimate_energy_per_site,
    estimate_heat_capacity_per_site,
    estimate_magnetization_sq,
    estimate_mean,
)
from vaezoo.ising.exact import (
    BETA_C,
    T_C,
    ExactThermodynamics,
    brute_force_log_probs,
    brute_force_thermodynamics,
    density_of_states,
    enumerate_states,
    exact_log_prob,
    exact_thermodynamics,
    kaufman_log_z,
    kaufman_thermodynamics,
    onsager_energy_per_site,
    onsager_entropy_per_site,
    onsager_free_energy_per_site,
    onsager_heat_capacity_per_site,
    onsager_log_z_per_site,
    state_index,
    transfer_matrix_magnetization_distribution,
    transfer_matrix_thermodynamics,
    yang_magnetization,
)
from vaezoo.ising.kernels import (
    checkerboard_masks,
    heat_bath_sweep,
    metropolis_sweep,
    ordered_lattices,
    random_lattices,
)
from vaezoo.ising.observables import (
    abs_magnetization,
    energy,
    energy_per_site,
    magnetization,
    magnetization_sq,
    two_point_correlation,
    validate_lattices,
)
from vaezoo.ising.parameters import check_exchange_coupling, check_temperature, reduced_coupling
from vaezoo.ising.sampling import SamplingInfo, sample
from vaezoo.ising.swendsen_wang import cluster_labels, swendsen_wang_sweep

__all__ = [
    # parameters
    "check_temperature",
    "check_exchange_coupling",
    "reduced_coupling",
    # exact results
    "BETA_C",
    "T_C",
    "ExactThermodynamics",
    "brute_force_log_probs",
    "brute_force_thermodynamics",
    "density_of_states",
    "enumerate_states",
    "exact_log_prob",
    "exact_thermodynamics",
    "kaufman_log_z",
    "kaufman_thermodynamics",
    "onsager_energy_per_site",
    "onsager_entropy_per_site",
    "onsager_free_energy_per_site",
    "onsager_heat_capacity_per_site",
    "onsager_log_z_per_site",
    "state_index",
    "transfer_matrix_magnetization_distribution",
    "transfer_matrix_thermodynamics",
    "yang_magnetization",
    # observables
    "abs_magnetization",
    "energy",
    "energy_per_site",
    "magnetization",
    "magnetization_sq",
    "two_point_correlation",
    "validate_lattices",
    # autocorrelation and estimates
    "integrated_autocorrelation_time",
    "CorrelationEstimate",
    "Estimate",
    "estimate_abs_magnetization",
    "estimate_binder_cumulant",
    "estimate_correlation_function",
    "estimate_energy_per_site",
    "estimate_heat_capacity_per_site",
    "estimate_magnetization_sq",
    "estimate_mean",
    # kernels, chains and sampling
    "checkerboard_masks",
    "random_lattices",
    "ordered_lattices",
    "heat_bath_sweep",
    "metropolis_sweep",
    "cluster_labels",
    "swendsen_wang_sweep",
    "METHODS",
    "AutocorrelationTimes",
    "ChainTrace",
    "autocorrelation_times",
    "run_chains",
    "SamplingInfo",
    "sample",
]
