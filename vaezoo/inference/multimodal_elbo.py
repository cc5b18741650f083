"""The MVAE's sub-sampled training objective: the ELBO of all modalities plus that of each one alone."""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field

import torch

from vaezoo.errors import ConfigError
from vaezoo.inference.elbo import ELBO
from vaezoo.inference.messengers import ScaleObserved
from vaezoo.inference.objective import Objective
from vaezoo.registry import register_objective


@dataclass(frozen=True)
class MultimodalELBOConfig:
    num_subsets: int = field(
        default=0,
        metadata={
            "help": "distinct random subsets of 2..M-1 modalities added per batch (needs M >= 3)",
            "min": 0,
        },
    )
    num_particles: int = field(default=1, metadata={"help": "samples of z per datapoint, averaged", "min": 1})
    beta: float = field(default=1.0, metadata={"help": "weight of the KL terms", "min": 0})
    kl_warmup: float = field(
        default=0.0, metadata={"help": "epochs over which the KL weight rises from 0 to beta", "min": 0}
    )
    analytic_kl: bool = field(default=True, metadata={"help": "use closed-form KL terms where valid"})
    likelihood_weights: tuple[float, ...] = field(
        default=(),
        metadata={
            "help": "training weight of each modality's log-likelihood, in the batch's order (empty: all 1)",
            "min": 0,
        },
    )


def training_subsets(names: tuple[str, ...], num_subsets: int, generator=None) -> list[tuple[str, ...]]:
    """The subsets of modalities whose ELBOs are summed: all of them, each alone, and
    ``num_subsets`` distinct subsets of size 2..M-1 drawn uniformly without replacement (all of
    them when there are fewer)."""
    singles = [(n,) for n in names]
    subsets = [tuple(names)] + (singles if len(names) > 1 else [])
    middle = [s for r in range(2, len(names)) for s in itertools.combinations(names, r)]
    if num_subsets and not middle:
        raise ConfigError(
            f"num_subsets={num_subsets} needs at least 3 modalities (with {len(names)}, the joint and "
            "single-modality terms already cover every subset); set num_subsets=0"
        )
    if num_subsets:
        subsets += [
            middle[i] for i in torch.randperm(len(middle), generator=generator)[:num_subsets].tolist()
        ]
    return subsets


@register_objective("multimodal_elbo", MultimodalELBOConfig)
class MultimodalELBO(Objective):
    """L(X) = ELBO(X) + sum_m ELBO(x_m) + sum_{j <= k} ELBO(X_j), the MVAE's sub-sampled objective.

    X is a datapoint's set of modalities, x_m one modality and X_j random subsets (Wu & Goodman 2018,
    eq. 5). Each ELBO term is the plain :class:`~vaezoo.inference.ELBO` of the same model and guide
    run on the batch with the other modalities marked missing: the guide's product of experts then
    infers z from that subset alone, which is what trains every expert to stand alone. The objective
    reads nothing of the model but the batch's modality names and presence masks.

    **Incomplete datapoints.** A term for subset S uses the modalities of S the datapoint has; a
    datapoint counts each distinct non-empty such set once, so one with only x gets ELBO(x) once
    (not once from the joint term and again from the single term), and one with no modality of S
    gets nothing from that term. For a complete bimodal datapoint the objective is
    ELBO(x, y) + ELBO(x) + ELBO(y).

    **Likelihood weights.** ``likelihood_weights`` (lambda_m in the paper, which trains MNIST with
    lambda = 50 on the label) multiplies each modality's log-likelihood in every training term; the
    KL terms keep weight beta. With weights other than 1 the training objective is no longer a bound.

    :meth:`bound` is the joint term alone, unweighted, the ELBO of every present modality: a lower
    bound on log p(present modalities) of each datapoint, which is what evaluation reports.

    References:
        - Wu & Goodman (2018), Multimodal Generative Models for Scalable Weakly-Supervised Learning, NeurIPS.
    """

    def __init__(self, config: MultimodalELBOConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        self._elbo = ELBO(num_particles=c.num_particles, analytic_kl=c.analytic_kl)

    @staticmethod
    def _names(model, batch) -> tuple[str, ...]:
        names = getattr(batch, "names", None)
        if not isinstance(getattr(model, "modalities", None), dict) or names is None:
            raise ConfigError(
                f"multimodal_elbo trains multimodal models on MultimodalBatch data (e.g. 'mvae'); "
                f"{type(model).__name__} on {type(batch).__name__} is not one, so use 'elbo'"
            )
        return tuple(names)

    def check_pair(self, model, guide, x) -> None:
        names = self._names(model, x)
        training_subsets(names, self.config.num_subsets)
        self._weights(names)

    def _weights(self, names: tuple[str, ...]):
        weights = self.config.likelihood_weights
        if not weights:
            return contextlib.nullcontext()
        if len(weights) != len(names):
            raise ConfigError(
                f"likelihood_weights has {len(weights)} value(s) for {len(names)} modalities {list(names)}; "
                "give one weight per modality, in that order"
            )
        return ScaleObserved(dict(zip(names, weights, strict=True)))

    def per_datapoint(self, model, guide, x, latent_weight: float = 1.0) -> torch.Tensor:
        names = self._names(model, x)
        x = x.with_memo()  # the subsets below share the guide's encoders of each modality
        with self._weights(names):
            return self._subset_terms(model, guide, x, names, latent_weight)

    def _subset_terms(self, model, guide, x, names, latent_weight: float) -> torch.Tensor:
        subsets = training_subsets(names, self.config.num_subsets)
        if all(bool(x.present[n].all()) for n in names):  # complete data: every term for every row
            terms = (self._elbo.per_datapoint(model, guide, x.restrict(s), latent_weight) for s in subsets)
            return sum(terms)
        code_of = {n: 1 << i for i, n in enumerate(names)}
        present = torch.stack([x.present[n] for n in names], -1).long()
        bits = torch.tensor([code_of[n] for n in names], device=present.device)
        seen = torch.zeros(len(x), 1 << len(names), dtype=torch.bool, device=present.device)
        rows = torch.arange(len(x), device=present.device)
        total = None
        for subset in subsets:
            mask = torch.tensor([n in subset for n in names], device=present.device)
            code = (present * mask * bits).sum(-1)  # the modalities of the subset each datapoint has
            use = (code > 0) & ~seen[rows, code]
            seen[rows, code] |= use
            if not use.any():
                continue
            sub = x.restrict(subset)
            if use.all():
                term = self._elbo.per_datapoint(model, guide, sub, latent_weight)
            else:
                index = use.nonzero().flatten()
                part = self._elbo.per_datapoint(model, guide, sub.take(index), latent_weight)
                term = part.new_zeros(len(x)).index_add(0, index, part)
            total = term if total is None else total + term
        return total

    def bound(self, model, guide, x) -> torch.Tensor:
        self._names(model, x)
        return self._elbo.per_datapoint(model, guide, x)
