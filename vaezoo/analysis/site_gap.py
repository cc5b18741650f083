"""The amortization gap per latent site (per layer, per time step): where the encoder loses its nats."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pyro.distributions as dist
import torch

from vaezoo.data import batches
from vaezoo.errors import ConfigError
from vaezoo.guides.flat_latents import Shifted
from vaezoo.guides.local_correction import LocalCorrection
from vaezoo.inference.importance import Estimate
from vaezoo.inference.traces import PairTrace, run_pair
from vaezoo.nets import evaluating
from vaezoo.sites import LatentLayout, layer_order

RECON = "log p(x|z)"
ELBO_KEY = "elbo"


def pair_terms(pair: PairTrace) -> dict[str, torch.Tensor]:
    """The ELBO of every particle and datapoint of ``pair`` split into its terms, each ``(k, batch)``.

    ``"log p(x|z)"``: log p of the observed sites; one entry per latent site l: its KL term,
    KL(q(z_l | .) || p(z_l | .)) in closed form where :meth:`~vaezoo.inference.traces.PairTrace.analytic_kl`
    allows it, else log q(z_l | .) - log p(z_l | .) at the sampled z (parents of z_l in q and p drawn
    from q); ``"elbo"``: reconstruction minus the sum of the KL terms, exactly the term of
    :meth:`vaezoo.inference.elbo.ELBO.particle_terms`.
    """
    out = {RECON: sum(pair.log_p(n) for n in pair.observed)}
    elbo = out[RECON]
    for name in pair.latent:
        kl = pair.analytic_kl(name)
        out[name] = kl if kl is not None else pair.log_q(name) - pair.log_p(name)
        elbo = elbo - out[name]
    out[ELBO_KEY] = elbo
    return out


@torch.no_grad()
def site_terms(model, guide, x: torch.Tensor, k: int, chunk: int = 100) -> dict[str, Estimate]:
    """Per-datapoint means over ``k`` draws of every term of :func:`pair_terms`, with MC standard errors."""
    parts: dict[str, list[torch.Tensor]] = {}
    done = 0
    while done < k:
        m = min(chunk, k - done)
        for key, t in pair_terms(run_pair(model, guide, x, m)).items():
            parts.setdefault(key, []).append(t.double().expand(m, x.shape[0]))
        done += m
    out = {}
    for key, v in parts.items():
        t = torch.cat(v)
        se = t.std(0) / math.sqrt(k) if k > 1 else torch.full_like(t[0], float("nan"))
        out[key] = Estimate(t.mean(0), se)
    return out


def _point_masses(model, guide, x: torch.Tensor) -> list[str]:
    """Guide sites that are point masses (a joint log q carried by one site, see ``sample_flat``)."""
    with torch.no_grad():
        pair = run_pair(model, guide, x, 1)
    out = []
    for name in pair.latent:
        fn = pair.guide_sites[name]["fn"]
        while isinstance(fn, (dist.Independent, Shifted)):
            fn = fn.base_dist if isinstance(fn, dist.Independent) else fn.base
        if isinstance(fn, dist.Delta):
            out.append(name)
    return out


def _combine(terms: list[tuple[float, Estimate]]) -> Estimate:
    """sum_j c_j e_j of estimates from independent draws (their MC variances add, times c_j^2)."""
    return Estimate(
        sum(c * e.per_datapoint for c, e in terms), sum(c * c * e.mc_stderr.pow(2) for c, e in terms).sqrt()
    )


@dataclass
class SiteGaps:
    """The amortization gap L[q*] - L[q] split over the latent sites, in nats per datapoint.

    q is the amortized encoder, q* its :class:`~vaezoo.guides.local_correction.LocalCorrection` on
    all sites fitted per datapoint (the encoder's conditionals, each shifted and rescaled locally).
    Two splits, both per site in :attr:`sites` (the model's layers, bottom first, or its sampling
    order):

    - **term-wise** (:meth:`termwise`): the ELBO is E_q[log p(x | z)] - sum_l KL_l with
      KL_l = E_q[log q(z_l | .) - log p(z_l | .)] (parents from q), so
      L[q*] - L[q] = (R[q*] - R[q]) + sum_l (KL_l[q] - KL_l[q*]) *exactly*, datapoint by datapoint.
      Part l is the nats site l's KL term saves (negative: q* spends more at l, to buy
      reconstruction or cheaper KL elsewhere). It credits the site where nats are spent, not the
      site whose parameters moved: KL_l depends on the parents' q through the conditional prior
      p(z_l | pa_l) and, for conditional encoders, q(z_l | pa_l), so refining an upper layer moves
      the terms of the layers below it.
    - **alone** (:meth:`alone_gaps`): G_l = L[q with only site l refined] - L[q] >= 0 (up to
      optimization and MC error: the family contains q), the other sites' q kept amortized (children
      in the guide follow the refined z_l through their amortized conditionals). It answers "what is
      gained by fixing site l alone"; the parts do not sum to the total, and
      :meth:`interaction` = total - sum_l G_l is positive when refinements complement each other,
      negative when they substitute.

    ``amortized`` and ``refined`` hold each term (``"log p(x|z)"``, one KL per site, ``"elbo"``) of
    q and q*, ``alone`` the ELBO of q with only site l refined; each is estimated with fresh draws,
    so a part's MC error combines those of its terms (the interaction counts L[q] in every G_l).
    """

    sites: list[str]
    amortized: dict[str, Estimate]
    refined: dict[str, Estimate]
    alone: dict[str, Estimate]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> Estimate:
        """L[q*] - L[q]."""
        return self.refined[ELBO_KEY] - self.amortized[ELBO_KEY]

    def termwise(self) -> dict[str, Estimate]:
        """``"log p(x|z)"``: R[q*] - R[q]; each site l: KL_l[q] - KL_l[q*]. They sum to :attr:`total`."""
        out = {RECON: self.refined[RECON] - self.amortized[RECON]}
        out.update({s: self.amortized[s] - self.refined[s] for s in self.sites})
        return out

    def alone_gaps(self) -> dict[str, Estimate]:
        """G_l = L[q, site l refined alone] - L[q] per site (empty without the alone fits)."""
        return {s: e - self.amortized[ELBO_KEY] for s, e in self.alone.items()}

    def interaction(self) -> Estimate:
        """total - sum_l G_l = L[q*] - sum_l L[q_l] + (m - 1) L[q] for m sites (needs the alone fits)."""
        m = len(self.sites)
        terms = [(1.0, self.refined[ELBO_KEY]), (m - 1.0, self.amortized[ELBO_KEY])]
        return _combine(terms + [(-1.0, self.alone[s]) for s in self.sites])

    def to_dict(self) -> dict[str, Any]:
        def row(e: Estimate) -> dict[str, float]:
            return {"mean": e.mean, "mc_stderr": e.stderr, "data_stderr": e.data_stderr}

        parts = self.termwise()
        return {
            "sites": self.sites,
            "total": row(self.total),
            "termwise": {k: row(v) for k, v in parts.items()},
            "amortized": {k: row(v) for k, v in self.amortized.items()},
            "refined": {k: row(v) for k, v in self.refined.items()},
            "alone": {k: row(v) for k, v in self.alone_gaps().items()},
            "interaction": row(self.interaction()) if self.alone else None,
            "settings": self.settings,
        }

    def to_markdown(self) -> str:
        def cell(e: Estimate | None) -> str:
            return "" if e is None else f"{e.mean:.3f} ± {e.stderr:.3f}"

        parts, alone = self.termwise(), self.alone_gaps()
        lines = [
            "| term | under q | under q* | term-wise gap | gap refining it alone |",
            "|---|---:|---:|---:|---:|",
            f"| {RECON} | {cell(self.amortized[RECON])} | {cell(self.refined[RECON])} "
            f"| {cell(parts[RECON])} | |",
        ]
        for s in self.sites:
            lines.append(
                f"| KL {s} | {cell(self.amortized[s])} | {cell(self.refined[s])} | {cell(parts[s])} "
                f"| {cell(alone.get(s))} |"
            )
        interaction = f"{cell(self.interaction())} (interaction)" if self.alone else ""
        lines.append(
            f"| ELBO (total: L[q*] - L[q]) | {cell(self.amortized[ELBO_KEY])} "
            f"| {cell(self.refined[ELBO_KEY])} | {cell(self.total)} | {interaction} |"
        )
        lines += [
            "",
            "nats per datapoint ± MC s.e.; " + ", ".join(f"{k}={v}" for k, v in self.settings.items()),
        ]
        return "\n".join(lines)


def site_gaps(
    model,
    guide,
    data,
    *,
    local_steps: int = 3000,
    local_lr: float = 1e-2,
    local_particles: int = 5,
    eval_k: int = 1000,
    alone: bool = True,
    batch_size: int = 100,
) -> SiteGaps:
    """The amortization gap of ``guide`` on ``data`` per latent site, as a :class:`SiteGaps`.

    Per batch of ``batch_size`` datapoints: the terms of q; a
    :class:`~vaezoo.guides.local_correction.LocalCorrection` of all sites fitted by ``fit_local``
    (``local_steps``, ``local_lr``, ``local_particles``) and its terms; with ``alone``, one more fit
    per site with only that site corrected (so L + 1 fits for L sites). Every term is estimated
    with ``eval_k`` draws. The model and guide run in eval mode and are not changed.

    :raises ConfigError: if the model has non-real latents, or the guide has no density per site
        (a flow over all sites jointly, which carries the joint log q on one site).

    References:
        - Cremer, Li & Duvenaud (2018), Inference Suboptimality in Variational Autoencoders, ICML.
    """
    layout = LatentLayout(model, "the per-site amortization gap")
    order = [s for s in layer_order(model) if s in layout.names]
    sites = order + [s for s in layout.names if s not in order]
    fit_args = {"steps": local_steps, "lr": local_lr, "num_particles": local_particles}
    amortized: list[dict[str, Estimate]] = []
    refined: list[dict[str, Estimate]] = []
    single: dict[str, list[Estimate]] = {s: [] for s in sites}
    with evaluating(model, guide):
        for i, x in enumerate(batches(data, batch_size)):
            if i == 0:
                flat = _point_masses(model, guide, x)
                if flat:
                    raise ConfigError(
                        f"the per-site gap needs a guide with a density on each latent site; "
                        f"{type(guide).__name__} samples sites {flat} as point masses carrying a joint "
                        "log q. Use a guide with per-site (conditional) distributions, such as the "
                        "model's default"
                    )
            n = x.shape[0]
            amortized.append(site_terms(model, guide, x, eval_k))
            q_star = LocalCorrection(model, guide, n_data=n)
            q_star.fit_local(x, **fit_args)
            refined.append(site_terms(model, q_star, x, eval_k))
            for s in sites if alone else ():
                one = LocalCorrection(model, guide, n_data=n, sites=(s,))
                one.fit_local(x, **fit_args)
                single[s].append(site_terms(model, one, x, eval_k)[ELBO_KEY])

    def joined(parts: list[dict[str, Estimate]]) -> dict[str, Estimate]:
        return {k: Estimate.cat(p[k] for p in parts) for k in parts[0]}

    settings = {**fit_args, "eval_k": eval_k}
    alone_rows = {s: Estimate.cat(v) for s, v in single.items() if v}
    return SiteGaps(sites, joined(amortized), joined(refined), alone_rows, settings)
