"""Poutine messengers that switch estimators or weights without touching model code."""

from __future__ import annotations

import torch
from pyro.poutine.messenger import Messenger


class ScaleLatents(Messenger):
    """Multiply the log-density of every *latent* sample site by ``weight``; observed sites keep 1.

    Used for KL warm-up and beta-VAE weighting. It wraps both the model and the guide, so the latent
    term log p(z) - log q(z | x), or its analytic KL, is scaled as a whole. Unlike
    :class:`pyro.poutine.scale`, a weight of 0 (the first step of a warm-up) is allowed.
    """

    def __init__(self, weight: float | torch.Tensor):
        super().__init__()
        # A tensor weight is a traced input (vaezoo.inference.compiled); its caller checks it.
        if not isinstance(weight, torch.Tensor) and weight < 0:
            raise ValueError(f"latent weight must be >= 0, got {weight}")
        self.weight = weight

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["scale"] = msg["scale"] * self.weight


class ScaleObserved(Messenger):
    """Multiply the log-density of the *observed* sample sites named in ``weights`` by their weight.

    The per-modality likelihood weights of multimodal training (Wu & Goodman 2018's lambda): a
    training objective, not a bound. Latent sites and unnamed observed sites keep their scale.
    """

    def __init__(self, weights: dict[str, float]):
        super().__init__()
        bad = {k: w for k, w in weights.items() if w < 0}
        if bad:
            raise ValueError(f"likelihood weights must be >= 0, got {bad}")
        self.weights = weights

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["is_observed"] and msg["name"] in self.weights:
            msg["scale"] = msg["scale"] * self.weights[msg["name"]]
