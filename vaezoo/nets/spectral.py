"""Largest singular values of a module's layers by power iteration, with the iterates kept as buffers.

NVAE's spectral regularization adds lambda * sum_i sigma_i to the loss, sigma_i the largest singular
value of layer i's weight, which bounds the Lipschitz constant of the networks and keeps the KL terms
of a deep hierarchy from exploding. sigma_i is estimated by power iteration warm-started from the
previous step's vectors (Miyato et al. 2018), so one iteration per step suffices once training runs.

A module that wants to be regularized owns a :class:`SpectralNorms` built over its layers; the
vectors are buffers of that child, so they are checkpointed (and restored, and moved between
devices) with the module. :func:`spectral_penalty` finds every such child of any modules handed to
it: a training objective asks for the penalty without knowing which model it trains.

References:
    - Vahdat & Kautz (2020), NVAE: A Deep Hierarchical Variational Autoencoder, NeurIPS (Sec. 3.2).
    - Miyato, Kataoka, Koyama & Yoshida (2018), Spectral Normalization for Generative Adversarial
      Networks, ICLR.
    - Yoshida & Miyato (2017), Spectral Norm Regularization for Improving the Generalizability of
      Deep Learning, arXiv:1705.10941.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.errors import ConfigError

LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


def weight_matrix(layer: nn.Module) -> torch.Tensor:
    """The layer's weight as a matrix, ``(out_features, everything else)``.

    For a convolution that is ``(C_out, C_in / groups * kernel)``: each output channel's filter as a
    row (the matrix NVAE and Miyato et al. regularize; it is not the convolution's operator norm).
    """
    return layer.weight.reshape(layer.weight.shape[0], -1)


class SpectralNorms(nn.Module):
    """Power-iteration estimates of the largest singular value of each layer's :func:`weight_matrix`.

    ``owner``'s submodules of ``types`` (convolutions and linear layers by default) are found when
    this is built; they are referenced, not registered as submodules, so their parameters are not
    listed twice. Per layer i the buffers ``u{i}`` and ``v{i}`` hold the current left and right
    singular vector estimates, drawn at random (from torch's global generator) at construction.
    """

    def __init__(self, owner: nn.Module, types: tuple[type[nn.Module], ...] = LAYER_TYPES):
        super().__init__()
        layers = [m for m in owner.modules() if isinstance(m, types)]
        if not layers:
            raise ConfigError(f"{type(owner).__name__} has no layer of types {types} to estimate norms of")
        self.__dict__["_layers"] = layers
        for i, layer in enumerate(layers):
            rows, cols = weight_matrix(layer).shape
            w = layer.weight
            self.register_buffer(
                f"u{i}", F.normalize(torch.randn(rows, dtype=w.dtype, device=w.device), dim=0)
            )
            self.register_buffer(
                f"v{i}", F.normalize(torch.randn(cols, dtype=w.dtype, device=w.device), dim=0)
            )

    @property
    def layers(self) -> list[nn.Module]:
        return self.__dict__["_layers"]

    def __len__(self) -> int:
        return len(self.layers)

    @torch.no_grad()
    def iterate(self, steps: int = 1) -> None:
        """``steps`` power iterations per layer, updating the buffers in place:
        v <- W^T u / |W^T u|,  u <- W v / |W v|."""
        for i, layer in enumerate(self.layers):
            w = weight_matrix(layer).detach()
            u, v = getattr(self, f"u{i}"), getattr(self, f"v{i}")
            for _ in range(steps):
                v.copy_(F.normalize(w.t() @ u, dim=0))
                u.copy_(F.normalize(w @ v, dim=0))

    def estimates(self, steps: int = 1) -> torch.Tensor:
        """sigma_i = u_i^T W_i v_i per layer after ``steps`` iterations, differentiable in the weights
        (the vectors are held fixed, as in Miyato et al. 2018)."""
        if steps:
            self.iterate(steps)
        # Copies: a later iteration updates the buffers in place, which must not disturb this graph.
        sigmas = [
            getattr(self, f"u{i}").clone() @ (weight_matrix(layer) @ getattr(self, f"v{i}").clone())
            for i, layer in enumerate(self.layers)
        ]
        return torch.stack(sigmas)


def spectral_estimators(*modules: nn.Module) -> list[SpectralNorms]:
    """Every :class:`SpectralNorms` inside ``modules``, each once."""
    found: dict[int, SpectralNorms] = {}
    for module in modules:
        for m in module.modules():
            if isinstance(m, SpectralNorms):
                found.setdefault(id(m), m)
    return list(found.values())


def spectral_penalty(*modules: nn.Module, steps: int = 1) -> torch.Tensor | None:
    """sum_i sigma_i over every layer that a :class:`SpectralNorms` inside ``modules`` covers, after
    ``steps`` power iterations; ``None`` when the modules hold no estimator."""
    estimators = spectral_estimators(*modules)
    if not estimators:
        return None
    return torch.cat([e.estimates(steps) for e in estimators]).sum()


__all__ = ["SpectralNorms", "spectral_estimators", "spectral_penalty", "weight_matrix"]
