"""What every lattice-latent model of the Ising study shares: data, latent sides, and drawing lattices.

A :class:`LatticeHierarchy` models spins s on an L x L torus at coupling K = J/T with latent lattices
z_1, ..., z_n of sides L/2, ..., L/2^n. The block-spin model (:mod:`vaezoo.models.block_spin`) and the
lattice VLAE (:mod:`vaezoo.models.ising_vlae`) are two; the free-energy bound, the exact L = 4 KL,
the perturbation study and the neural samplers take any of them. Data are ``x = (batch, 2, L, L)``:
spins ±1, then K broadcast over the lattice (:func:`~vaezoo.ising.lattice_data.lattice_input`); the
observed site ``"x"`` holds the occupations (s + 1)/2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from pyro import poutine
from pyro.poutine.util import is_validation_enabled

from vaezoo.devices import module_device
from vaezoo.errors import ConfigError, DataError
from vaezoo.ising.exact import BETA_C
from vaezoo.ising.lattice_data import lattice_input
from vaezoo.ising.parameters import reduced_coupling
from vaezoo.models.base import LatentVariableModel
from vaezoo.nets import evaluating


@dataclass(frozen=True)
class LatticeConfig:
    """The fields every lattice model's config shares (sizes of the lattice and of its networks)."""

    L: int = field(
        default=16, metadata={"help": "lattice side; data are (batch, 2, L, L): spins, then K", "min": 2}
    )
    levels: int = field(
        default=3, metadata={"help": "latent levels, of sides L/2, L/4, ..., L/2^levels", "min": 1}
    )
    channels: int = field(default=16, metadata={"help": "feature channels of the lattice networks", "min": 1})
    depth: int = field(default=2, metadata={"help": "3x3 conv layers reading each coarser level", "min": 1})
    gain_hidden: int = field(
        default=8, metadata={"help": "hidden units of the MLPs of K giving the gains", "min": 1}
    )


class LatticeHierarchy(LatentVariableModel):
    """Base of the lattice-latent models: config fields ``L`` and ``levels``, sites ``z1..zn`` and ``"x"``.

    Class attributes a subclass sets:

    - ``binary``: latents are block spins in {0, 1} (else real lattices); instances may override it.
    - ``independent_levels``: the latent levels are independent a priori (as in the VLAE), so
      perturbing one level keeps all the others; in a Markov hierarchy the finer levels depend on it
      and are redrawn (:func:`~vaezoo.analysis.perturb.perturb`).
    """

    binary = False
    independent_levels = False

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        if c.levels < 1:
            raise ConfigError(f"levels must be >= 1, got {c.levels}")
        block = 2**c.levels
        if c.L < block or c.L % block:
            raise ConfigError(
                f"L = {c.L} is not divisible by the block factor 2^levels = {block} (levels = {c.levels}); "
                f"allowed: L a multiple of {block} (e.g. {block}, {2 * block}, {4 * block}), or fewer levels"
            )
        if c.channels < 1 or c.depth < 1 or c.gain_hidden < 1:
            raise ConfigError("channels, depth and gain_hidden must be >= 1")
        self.sides = [c.L // 2**j for j in range(c.levels + 1)]

    @property
    def L(self) -> int:
        return self.config.L

    @property
    def x_shape(self) -> tuple[int, ...]:
        return (2, self.L, self.L)

    @property
    def layer_sites(self) -> tuple[str, ...]:
        """Latent site names, finest first: ``("z1", ..., "zn")``."""
        return tuple(f"z{level}" for level in range(1, self.config.levels + 1))

    def example_x(self, n: int = 1) -> torch.Tensor:
        """``n`` all-up lattices at the critical coupling K_c (valid input for tracing)."""
        return lattice_input(torch.ones(n, self.L, self.L, device=module_device(self)), K=BETA_C)

    def check_x(self, x: torch.Tensor, full: bool = False) -> None:
        """Raise :class:`DataError` unless ``x`` is ``(batch, 2, L, L)``: spins ±1, then a constant K > 0."""
        who, want = type(self).__name__, f"(batch, 2, {self.L}, {self.L})"
        if not isinstance(x, torch.Tensor):
            raise DataError(f"{who} expects x to be a torch.Tensor of shape {want}, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 2 or x.shape[2] != x.shape[3]:
            raise DataError(
                f"{who} expects x of shape {want} (channel 0 the spins, channel 1 K = J/T), got "
                f"{tuple(x.shape)}; build inputs with vaezoo.ising.lattice_data.lattice_input(spins, T=...)"
            )
        if x.shape[-1] != self.L:
            raise DataError(
                f"this {who} model was built for L = {self.L} lattices, got L = {x.shape[-1]} "
                f"(x of shape {tuple(x.shape)}); evaluate it on {self.L} x {self.L} lattices, or train a "
                f"model with L = {x.shape[-1]}"
            )
        if not (full or is_validation_enabled()):
            return
        spins, K = x[:, 0], x[:, 1]
        if ((spins != 1) & (spins != -1)).any():
            bad = spins[(spins != 1) & (spins != -1)].unique()[:5].tolist()
            raise DataError(
                f"a lattice has values other than ±1 (found {bad}); allowed spin values are +1 and -1 "
                "(convert 0/1 occupations with 2 * x - 1)"
            )
        if not torch.isfinite(K).all() or (K <= 0).any():
            raise DataError(
                "channel 1 must hold the coupling K = J/T > 0; found K <= 0 or non-finite, i.e. a "
                "temperature T <= 0. Allowed: T > 0"
            )
        if (K != K[:, :1, :1]).any():
            raise DataError("channel 1 (the coupling K) must be constant over each lattice")

    def kept_levels(self, level: int) -> tuple[int, ...]:
        """The latent levels that keep their inferred values when level ``level`` is perturbed.

        Level 0 (the spins' own detail) keeps every latent level; otherwise the coarser levels are
        kept, and the finer ones too when the levels are independent a priori.
        """
        n = self.config.levels
        keep_finer = level == 0 or self.independent_levels
        return tuple(j for j in range(1, n + 1) if j > level or (j < level and keep_finer))


def model_trace(
    model: LatticeHierarchy, n: int, T: float | None = None, K: float | None = None, data: dict | None = None
) -> poutine.Trace:
    """One joint draw (s, z) ~ p(s, z | K) per row, ``n`` rows, as a Pyro trace (site ``"x"`` sampled).

    ``data`` fixes latent sites (``{"z2": value, ...}``): the others are drawn given them.
    """
    x = lattice_input(torch.ones(n, model.L, model.L, device=module_device(model)), T=T, K=K)
    program = poutine.uncondition(model)
    if data:
        program = poutine.condition(program, data=data)
    return poutine.trace(program).get_trace(x)


@torch.no_grad()
def sample_model(
    model: LatticeHierarchy, n: int, T: float | None = None, K: float | None = None, batch_size: int = 1000
) -> torch.Tensor:
    """``n`` lattices ``(n, L, L)`` of spins ±1 from the model at temperature ``T`` (or coupling ``K``)."""
    reduced_coupling(T, K)
    out = []
    with evaluating(model):
        for start in range(0, n, batch_size):
            trace = model_trace(model, min(batch_size, n - start), T=T, K=K)
            out.append(2 * trace.nodes["x"]["value"] - 1)
    return torch.cat(out)


__all__ = ["LatticeConfig", "LatticeHierarchy", "model_trace", "sample_model"]
