"""Training recipes of the coarse-to-fine Ising study: fit a block-spin model, and pick the r(z | s) of its
free-energy bound.

Both choices were made in two places before (the ``vaezoo ising`` command and the experiment script);
they live here once. The estimator follows the latents (score function only where the latents are
discrete and the guide has parameters), and the bound's r is never the parameter-free RG guide, whose
support misses most of the model's latents (bound +inf).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal

import torch

from vaezoo.config import check_argument
from vaezoo.errors import DataError
from vaezoo.guides.block_spin import BlockAmortized
from vaezoo.inference import ELBO, ScoreFunction, fit
from vaezoo.inference.free_energy import fit_bound_guide
from vaezoo.models.lattice_hierarchy import LatticeHierarchy
from vaezoo.registry import build_guide, build_model


def train_block_spin(
    train: torch.Tensor,
    *,
    levels: int = 3,
    latent: str = "binary",
    guide: str = "block_amortized",
    model_config: dict | None = None,
    **kwargs,
):
    """:func:`train_lattice_model` for the block-spin model with ``latent`` block spins."""
    config = {"latent": latent, **(model_config or {})}
    return train_lattice_model(
        train, model="block_spin", levels=levels, guide=guide, model_config=config, **kwargs
    )


def train_lattice_model(
    train: torch.Tensor,
    *,
    model: str = "block_spin",
    levels: int = 3,
    guide: str = "block_amortized",
    epochs: int = 20,
    batch_size: int = 100,
    lr: float = 1e-3,
    baseline: str = "avg",
    test: torch.Tensor | None = None,
    out: str | None = None,
    seed: int = 0,
    progress: bool = True,
    model_config: dict | None = None,
    guide_config: dict | None = None,
):
    """Build registered lattice model ``model`` and ``guide`` for ``train`` (n, 2, L, L), and fit them.

    The estimator follows the latents: real latents, or a parameter-free guide (the RG map), train the
    plain reparameterized / pathwise ELBO; binary latents with a learned guide train
    ``ScoreFunction(ELBO(), baseline=baseline)``. Returns ``(model, guide, objective, history)``.
    """
    if not isinstance(train, torch.Tensor) or train.dim() != 4 or train.shape[1] != 2 or not len(train):
        shape = tuple(train.shape) if isinstance(train, torch.Tensor) else type(train).__name__
        raise DataError(
            f"train must be lattice-model inputs (n, 2, L, L) with n >= 1 (spins, then K; build them with "
            f"vaezoo.ising.lattice_data.lattice_input), got {shape}"
        )
    check_argument("baseline", baseline, Literal["none", "avg", "nvil"])
    torch.manual_seed(seed)
    net = build_model(model, {"L": train.shape[-1], "levels": levels, **(model_config or {})})
    q = build_guide(guide, net, guide_config or {})
    objective = ELBO()
    if net.binary and has_parameters(q):
        objective = ScoreFunction(ELBO(), baseline=baseline)
    history = fit(
        net,
        q,
        train,
        objective,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        test=test,
        out=out,
        seed=seed,
        progress=progress,
    )
    return net, q, objective, history


def has_parameters(guide) -> bool:
    """Whether ``guide`` learns anything (the RG guide is a fixed map)."""
    return any(p.requires_grad for p in guide.parameters())


def bound_guide(
    model: LatticeHierarchy, guide, temperatures: Sequence[float], *, refine: bool = True, **fit_kwargs
) -> tuple[torch.nn.Module, list[float]]:
    """The r(z | s) for :func:`~vaezoo.inference.free_energy.free_energy_bound`, and its fitting losses.

    A guide without parameters is replaced by a fresh :class:`BlockAmortized` fitted to model samples;
    a learned guide is used as it is, or (``refine=True``) as a copy refined on model samples, leaving
    the trained guide untouched. ``fit_kwargs`` go to :func:`fit_bound_guide`.
    """
    if not has_parameters(guide):
        r = BlockAmortized(model)
    elif refine:
        r = copy.deepcopy(guide)
    else:
        return guide, []
    return r, fit_bound_guide(model, r, temperatures, **fit_kwargs)
