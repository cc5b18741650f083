"""Perturbation at a level: change the block spins of one level of a lattice and decode the rest.

Given lattices s at temperature T, the guide infers their latent hierarchy z_1..z_n ~ q(z | s, K). To
perturb level l, the levels coarser than l keep the guide's values, level l is redrawn (or nudged),
and everything finer is decoded from the model's conditionals::

    level l >= 1:  z_l' ~ p(z_l | z_{l+1}, K)  (or a nudge of z_l),  z_j' ~ p(z_j | z_{j+1}', K) for j < l,
                   s' ~ p(s | z_1', K)
    level 0:       s' ~ p(s | z_1, K)          (only the spins' own detail is redrawn)

When the latent levels are independent a priori (``independent_levels``, the VLAE), level l is
redrawn from its prior and every other level keeps the guide's value, as in the VLAE paper's
one-layer-at-a-time samples (:meth:`~vaezoo.models.lattice_hierarchy.LatticeHierarchy.kept_levels`).
The kept levels are fixed with Pyro's ``condition`` handler and the model's own program draws the rest.

If the hierarchy is coarse-to-fine, coarse levels move whole domains while the energy stays on
distribution, and fine levels flip few spins. Reported per level: the overlap q = (1/N) sum_i s_i s'_i
(1: unchanged, 0: unrelated, -1: flipped) and the energy per site of s'.

References:
    - Kadanoff (1966), Scaling laws for Ising models near T_c, Physics 2, 263.
    - Stuhlmüller, Hawkins, Siddharth & Goodman (2015), Coarse-to-Fine Sequential Monte Carlo for
      Probabilistic Programs, arXiv:1509.02962.
    - Zhao, Song & Ermon (2017), Learning Hierarchical Features from Deep Generative Models, ICML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from pyro import poutine

from vaezoo.config import check_argument
from vaezoo.errors import ConfigError
from vaezoo.ising.lattice_data import lattice_input
from vaezoo.ising.observables import energy_per_site, validate_lattices
from vaezoo.ising.parameters import check_temperature
from vaezoo.models.lattice_hierarchy import LatticeHierarchy, model_trace
from vaezoo.nets import evaluating


@dataclass
class LevelPerturbation:
    """The perturbed lattices of one level, with per-lattice overlap and energy per site."""

    level: int
    lattices: torch.Tensor
    overlap: torch.Tensor
    energy: torch.Tensor

    @staticmethod
    def _mean_se(v: torch.Tensor) -> tuple[float, float]:
        v = v.double()
        return v.mean().item(), (v.std() / math.sqrt(len(v))).item() if len(v) > 1 else float("nan")

    @property
    def mean_overlap(self) -> tuple[float, float]:
        """(mean, standard error) of the overlap."""
        return self._mean_se(self.overlap)

    @property
    def mean_energy(self) -> tuple[float, float]:
        """(mean, standard error) of the energy per site."""
        return self._mean_se(self.energy)

    @property
    def flipped_fraction(self) -> float:
        """Mean fraction of spins that changed, (1 - q) / 2."""
        return (1 - self.overlap.double().mean().item()) / 2


@dataclass
class Perturbation:
    """The originals and one :class:`LevelPerturbation` per level (0 = spins, ..., n = top)."""

    T: float
    original: torch.Tensor
    original_energy: torch.Tensor
    levels: list[LevelPerturbation]

    def table(self) -> str:
        """A markdown table of overlap and energy per level."""
        e0 = LevelPerturbation._mean_se(self.original_energy)
        rows = [
            f"originals: E/N = {e0[0]:.4f} ± {e0[1]:.4f} (T = {self.T:.4f}, {len(self.original)} lattices)",
            "",
            "| level | overlap q | fraction flipped | E/N of perturbed |",
            "|---|---|---|---|",
        ]
        for p in self.levels:
            (q, qs), (e, es) = p.mean_overlap, p.mean_energy
            rows.append(f"| {p.level} | {q:.3f} ± {qs:.3f} | {p.flipped_fraction:.3f} | {e:.4f} ± {es:.4f} |")
        return "\n".join(rows)


def _nudged(model: LatticeHierarchy, value: torch.Tensor, strength: float) -> torch.Tensor:
    if model.binary:  # flip each block spin with probability `strength`
        flip = torch.rand_like(value) < strength
        return torch.where(flip, 1 - value, value)
    return value + strength * torch.randn_like(value)


@torch.no_grad()
def perturb(
    model: LatticeHierarchy,
    guide,
    spins: torch.Tensor,
    T: float,
    levels: list[int] | None = None,
    nudge: float | None = None,
) -> Perturbation:
    """Perturb ``spins`` ``(B, L, L)`` at each level in ``levels`` (default all, 0..n) and decode.

    :param nudge: ``None`` redraws level l from the model given the kept levels; a number instead
        flips each binary block spin with that probability, or adds N(0, nudge^2) noise to continuous
        latents. Level 0 is always redrawn.
    """
    if not isinstance(model, LatticeHierarchy):  # an argument check, not a dispatch: lattice latents only
        raise ConfigError(
            f"perturb needs a lattice model (a BlockSpin model or an IsingVLAE), got {type(model).__name__}"
        )
    T = check_temperature(T)
    validate_lattices(spins)
    n = model.config.levels
    if levels is not None and (isinstance(levels, (int, str)) or not hasattr(levels, "__iter__")):
        raise ConfigError(f"levels must be a list of levels, got {levels!r}")
    levels = list(range(n + 1)) if levels is None else [check_argument("levels", lv, int) for lv in levels]
    bad = [lv for lv in levels if not 0 <= lv <= n]
    if bad:
        raise ConfigError(f"levels {bad} do not exist; this model has levels 0 (spins) to {n}")
    if nudge is not None:  # a flip probability for binary block spins, a noise scale for real ones
        nudge = check_argument("nudge", nudge, float, min=0, **({"max": 1} if model.binary else {}))
    spins = spins.float()
    x = lattice_input(spins, T=T)
    model.check_x(x, full=True)
    out = []
    with evaluating(model, guide):
        trace = poutine.trace(guide).get_trace(x)
        z = {lv: trace.nodes[f"z{lv}"]["value"] for lv in range(1, n + 1)}
        for level in levels:
            # Pyro's condition handler fixes the kept levels; the model draws every other one given them.
            data = {f"z{j}": z[j] for j in model.kept_levels(level)}
            if level > 0 and nudge is not None:
                data[f"z{level}"] = _nudged(model, z[level], nudge)
            decoded = model_trace(model, len(spins), T=T, data=data)
            new = 2 * decoded.nodes["x"]["value"] - 1
            out.append(
                LevelPerturbation(
                    level=level,
                    lattices=new,
                    overlap=(new * spins).mean((-2, -1)),
                    energy=energy_per_site(new).float(),
                )
            )
    return Perturbation(T=T, original=spins, original_energy=energy_per_site(spins).float(), levels=out)


def perturbation_grid(result: Perturbation, path: str | Path, rows: int = 4) -> Path:
    """Write a PNG: one row per lattice, columns = the original then its perturbation at each level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = min(rows, len(result.original))
    cols = 1 + len(result.levels)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.4), squeeze=False)
    for r in range(rows):
        panels = [("original", result.original[r])] + [
            (f"level {p.level}\nq={p.overlap[r]:.2f}", p.lattices[r]) for p in result.levels
        ]
        for c, (title, lattice) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(lattice.cpu().numpy(), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 or c > 0:
                ax.set_title(title if r == 0 else f"q={result.levels[c - 1].overlap[r]:.2f}", fontsize=7)
    fig.suptitle(f"perturbation at each level, T = {result.T:.3f} (level 0 = spins)", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
