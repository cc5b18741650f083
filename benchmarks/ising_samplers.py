"""Ising sampler throughput: vaezoo's batched torch sweeps against plain references, in one run.

- Swendsen-Wang: vaezoo's vectorized label propagation with pointer jumping, against the same update
  with clusters found by ``scipy.sparse.csgraph.connected_components`` (one chain at a time).
- Checkerboard heat-bath: vaezoo's batched torch sweep, against a plain NumPy checkerboard sweep.

Each implementation runs the same number of chains at the same temperature (T_c by default). Timings
alternate between implementations in rounds; the medians of sweeps per second (chains x sweeps /
seconds) and the ratios are printed, with what ran.

    python benchmarks/ising_samplers.py                # L = 32 and 64, 16 chains
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from vaezoo.ising import T_C
from vaezoo.ising.kernels import heat_bath_sweep
from vaezoo.ising.swendsen_wang import swendsen_wang_sweep


def scipy_swendsen_wang(spins: np.ndarray, K: float, rng: np.random.Generator) -> np.ndarray:
    """The reference: one SW update per chain, clusters from scipy's connected components."""
    out = spins.copy()
    L = spins.shape[-1]
    index = np.arange(L * L).reshape(L, L)
    right, down = np.roll(index, -1, axis=1), np.roll(index, -1, axis=0)
    p = -math.expm1(-2 * K)
    for c in range(spins.shape[0]):
        s = spins[c]
        open_r = (s == np.roll(s, -1, axis=1)) & (rng.random((L, L)) < p)
        open_d = (s == np.roll(s, -1, axis=0)) & (rng.random((L, L)) < p)
        rows = np.concatenate([index[open_r], index[open_d]])
        cols = np.concatenate([right[open_r], down[open_d]])
        graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(L * L, L * L))
        n, labels = connected_components(graph, directed=False)
        flip = rng.random(n) < 0.5
        out[c] = np.where(flip[labels].reshape(L, L), -s, s)
    return out


def numpy_heat_bath(spins: np.ndarray, K: float, rng: np.random.Generator) -> np.ndarray:
    """The reference: a plain NumPy checkerboard heat-bath sweep over all chains."""
    L = spins.shape[-1]
    parity = np.add.outer(np.arange(L), np.arange(L)) % 2
    s = spins.copy()
    for colour in (0, 1):
        field = np.roll(s, 1, -1) + np.roll(s, -1, -1) + np.roll(s, 1, -2) + np.roll(s, -1, -2)
        up = rng.random(s.shape) < 1 / (1 + np.exp(-2 * K * field))
        s = np.where(parity == colour, np.where(up, 1.0, -1.0), s)
    return s


def rate(update, state, sweeps: int, chains: int) -> float:
    t0 = time.perf_counter()
    for _ in range(sweeps):
        state = update(state)
    return chains * sweeps / (time.perf_counter() - t0)


def compare(L: int, T: float, chains: int, sweeps: int, rounds: int) -> None:
    """Print the median sweeps/s of each sampler and its reference at lattice side ``L``."""
    K = 1 / T
    g, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    start = torch.where(torch.rand(chains, L, L, generator=g) < 0.5, 1.0, -1.0)
    pairs = {
        "Swendsen-Wang": (
            lambda s: swendsen_wang_sweep(s, T, generator=g),
            lambda s: scipy_swendsen_wang(s, K, rng),
            "scipy connected_components",
        ),
        "heat-bath": (
            lambda s: heat_bath_sweep(s, T, generator=g),
            lambda s: numpy_heat_bath(s, K, rng),
            "plain NumPy",
        ),
    }
    for name, (ours, reference, ref_name) in pairs.items():
        ours(start), reference(start.numpy())  # warm-up
        r_ours, r_ref = [], []
        for _ in range(rounds):
            r_ours.append(rate(ours, start, sweeps, chains))
            r_ref.append(rate(reference, start.numpy(), sweeps, chains))
        a, b = statistics.median(r_ours), statistics.median(r_ref)
        print(f"L={L:3d} {name:14s} vaezoo {a:9.1f} sweeps/s, {ref_name} {b:9.1f}, ratio {a / b:.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--sweeps", type=int, default=20, help="sweeps per timed block")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=T_C)
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.chains, args.sweeps, args.rounds = [8], 2, 2, 1
    print(
        f"ran: {args.chains} chains, {args.sweeps} sweeps x {args.rounds} alternating rounds, "
        f"T = {args.temperature:.4f}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"numpy {np.__version__}, {platform.machine()}"
    )
    for L in args.sizes:
        compare(L, args.temperature, args.chains, args.sweeps, args.rounds)


if __name__ == "__main__":
    main()
