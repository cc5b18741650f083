"""Reading the auxiliary likelihoods a model carries on its observed site (:mod:`vaezoo.models.auxiliary`)."""

from __future__ import annotations

from dataclasses import dataclass

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask

from vaezoo.errors import ConfigError
from vaezoo.inference.traces import PairTrace, run_pair
from vaezoo.models.auxiliary import AUXILIARY
from vaezoo.nets import evaluating


@dataclass(frozen=True)
class Stages:
    """The observed site ``name`` of a pair's model trace with its distributions in stage order:
    ``auxiliary`` (the earlier stages') then ``observed`` (the site's own)."""

    name: str
    site: dict
    auxiliary: tuple[dist.Distribution, ...]

    @property
    def observed(self) -> dist.Distribution:
        return self.site["fn"]

    @property
    def value(self) -> torch.Tensor:
        return self.site["value"]

    def reduce(self, pair: PairTrace, value: torch.Tensor) -> torch.Tensor:
        """A batch-shaped tensor of this site (times its scale and mask) summed to ``(k, batch)``."""
        scaled = scale_and_mask(value, self.site["scale"], self.site["mask"])
        return pair.per_datapoint(scaled, self.site, self.name)

    def event_sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum ``value`` over the observed site's event dimensions."""
        n = len(self.observed.event_shape)
        return value.sum(tuple(range(-n, 0))) if n else value


def _missing(who: str) -> ConfigError:
    return ConfigError(
        f"the {who} objective trains a model that carries auxiliary likelihoods of intermediate stages on "
        f"its observed site (infer[{AUXILIARY!r}]: models 'sequential_vae', 'multistage_vae'); this "
        "model carries none, so train it with elbo instead"
    )


def stages(pair: PairTrace, who: str) -> list[Stages]:
    """Every observed site of ``pair``'s model that carries auxiliary likelihoods.

    :raises ConfigError: naming ``who`` (the objective) if none does.
    """
    found = [
        Stages(name, site, tuple(site["infer"][AUXILIARY]))
        for name, site in pair.model_sites.items()
        if site["is_observed"] and AUXILIARY in (site.get("infer") or {})
    ]
    if not found:
        raise _missing(who)
    return found


def require_pathwise(
    pair: PairTrace,
    guide,
    who: str,
    needs: str = "scores x at the guide's samples and needs them to carry the gradient to the guide",
) -> None:
    """Raise :class:`ConfigError` if the guide's samples do not carry the gradient to the guide.

    The auxiliary terms are functions of z, trained by the pathwise gradient; a guide that returns
    detached samples (``hmc_refined``, whose log q is a surrogate that only makes the ELBO's
    gradient right) would leave them out of the encoder's gradient without a sign. Checked only
    while gradients are recorded and the guide has trainable parameters.
    """
    if not torch.is_grad_enabled() or not any(p.requires_grad for p in guide.parameters()):
        return
    detached = [n for n in pair.latent if not pair.guide_sites[n]["value"].requires_grad]
    if detached:
        raise ConfigError(
            f"the {who} objective {needs}, but {type(guide).__name__} returns site(s) {detached} "
            "detached; use 'elbo' with this guide"
        )


def auxiliary_counts(model, guide, x, who: str) -> list[int]:
    """Numbers of auxiliary stages per observed site, from one run of the pair without effects (in eval
    mode, so batch-norm statistics do not move); raises :class:`ConfigError` if there are none or the
    guide's samples are detached (:func:`require_pathwise`)."""
    with torch.enable_grad(), poutine.block(), evaluating(model, guide):
        pair = run_pair(model, guide, x, 1)
        require_pathwise(pair, guide, who)
    return [len(s.auxiliary) for s in stages(pair, who)]


__all__ = ["Stages", "auxiliary_counts", "require_pathwise", "stages"]
