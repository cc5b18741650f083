"""Per-layer diagnostics of latent-variable models: KL per layer, active units, PCA, layer traversals.

Every function works on any model/guide pair through their sample sites, so it serves every
hierarchy (and a one-layer VAE) without knowing which model it is. Layers are the model's
``layer_sites`` (bottom first) when it declares them, else its latent sites in sampling order.
Modules run in eval mode (batch norm uses running statistics) and without gradients.

References:
    - Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR (active units).
    - Sønderby et al. (2016), Ladder Variational Autoencoders, NIPS (per-layer KL and active units).
    - Zhao, Song & Ermon (2017), Learning Hierarchical Features from Deep Generative Models, ICML
      (per-layer resampling grids).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger

from vaezoo.data import batches
from vaezoo.errors import ConfigError
from vaezoo.inference.traces import DATA, particle_plate, run_pair
from vaezoo.nets import evaluating
from vaezoo.sites import layer_order


@torch.no_grad()
def layer_kl(model, guide, data, *, num_particles: int = 1, batch_size: int = 500) -> dict[str, torch.Tensor]:
    """KL(q(z_l | .) || p(z_l | .)) per layer and datapoint, shape ``(n,)`` each, in nats.

    The term of layer l in the ELBO, E_q[log q(z_l | .) - log p(z_l | .)], with the parents of
    z_l in q and p drawn from q. Closed form where it is valid for the pair (see
    :meth:`~vaezoo.inference.traces.PairTrace.analytic_kl`), otherwise Monte Carlo with
    ``num_particles`` samples per datapoint. Layer KLs sum to the ELBO's total KL term.
    """
    names = layer_order(model)
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    with evaluating(model, guide):
        for x in batches(data, batch_size):
            pair = run_pair(model, guide, x, num_particles)
            for name in names:
                kl = pair.analytic_kl(name)
                if kl is None:
                    kl = pair.log_q(name) - pair.log_p(name)
                out[name].append(kl.mean(0))
    return {n: torch.cat(v) for n, v in out.items()}


def _units(site: dict, value: torch.Tensor, k: int, batch: int, dims: int) -> torch.Tensor:
    """A site-shaped tensor as ``(k, batch, units)``: event and any non-data plate dims flattened."""
    fn = site["fn"]
    value = value.expand(fn.batch_shape + fn.event_shape)
    value = value.reshape((1,) * (dims - len(fn.batch_shape)) + value.shape)
    data_dim = next(f.dim for f in site["cond_indep_stack"] if f.name == DATA) + dims
    value = value.movedim(data_dim, 1)
    return value.expand(k, batch, *value.shape[2:]).reshape(k, batch, -1)


def _mean_or_draw(site: dict) -> torch.Tensor:
    """The site's conditional mean, or its draw where the distribution has no closed-form mean."""
    try:
        return site["fn"].mean
    except NotImplementedError:
        return site["value"]


@dataclass
class PosteriorMeans:
    """Estimates of E_q[z_l | x] for every layer and datapoint, with their Monte Carlo noise.

    ``mean[l]`` has shape ``(n, units_l)``; ``noise_cov[l]`` (``(units_l, units_l)``) is the average
    over the data of the covariance of those estimates (0 for sites whose q depends on x alone).
    Noise adds to the spread of the estimates over the data, so :func:`unit_activity` and
    :func:`explained_variance` subtract it: otherwise a layer that carries no information about x
    but whose q(z_l | z_{l+1}, x) follows a sampled parent would look active.
    """

    mean: dict[str, torch.Tensor]
    noise_cov: dict[str, torch.Tensor]


@torch.no_grad()
def posterior_means(model, guide, data, *, num_particles: int = 10, batch_size: int = 500) -> PosteriorMeans:
    """E_q[z_l | x] per layer and datapoint (events flattened), as a :class:`PosteriorMeans`.

    Averages the guide's conditional mean of each site over ``num_particles`` draws of its parents:
    exact for sites whose q depends on x alone, an unbiased (Rao-Blackwellized) estimate for
    conditional ones such as q(z_1 | z_2, x); the noise of that estimate is measured from the spread
    of the particles (which needs ``num_particles >= 2``; with 1 it is taken as 0). A site whose
    distribution has no closed-form mean (a flow guide's pushed-forward Gaussian) contributes its
    draws instead: still unbiased, with the same noise accounting.
    """
    names = layer_order(model)
    means: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    noise: dict[str, torch.Tensor | float] = dict.fromkeys(names, 0.0)
    k, count = num_particles, 0
    with evaluating(model, guide):
        for x in batches(data, batch_size):
            with particle_plate(model, k) as plate:
                trace = poutine.trace(guide).get_trace(x)
            for name in names:
                site = trace.nodes[name]
                m = _units(site, _mean_or_draw(site), k, x.shape[0], plate.lead).double()
                means[name].append(m.mean(0).float())
                r = m - m.mean(0)  # Cov(estimate) = sample covariance of the particles / k, summed over x
                noise[name] = noise[name] + torch.einsum("kbu,kbv->uv", r, r) / (max(k - 1, 1) * k)
            count += x.shape[0]
    return PosteriorMeans(
        {n: torch.cat(v) for n, v in means.items()}, {n: noise[n].float() / count for n in names}
    )


def _covariances(means: PosteriorMeans | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cov_x(E_q[z_l | x]) per layer, noise removed when known, ``(units, units)`` in float64."""
    mean, noise = (means.mean, means.noise_cov) if isinstance(means, PosteriorMeans) else (means, {})
    out = {}
    for n, m in mean.items():
        cov = torch.cov(m.double().T).reshape(m.shape[1], m.shape[1])
        out[n] = cov - noise[n].double() if n in noise else cov
    return out


def unit_activity(means: PosteriorMeans | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A_u = Cov_x(E_q[u | x]) for every unit u: the variance over the data of its posterior mean.

    ``means`` is a :class:`PosteriorMeans` (Monte Carlo noise subtracted) or a dict of ``(n, units)``
    tensors taken as exact.
    """
    return {n: c.diagonal().clamp(min=0).float() for n, c in _covariances(means).items()}


def active_units(means: PosteriorMeans | dict[str, torch.Tensor], threshold: float = 0.01) -> dict[str, int]:
    """Number of units per layer with activity A_u > ``threshold`` (Burda et al. 2016 use 0.01)."""
    return {n: int((a > threshold).sum()) for n, a in unit_activity(means).items()}


def explained_variance(means: PosteriorMeans | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """PCA of each layer's posterior means: explained-variance ratios, largest first (sum to 1)."""
    out = {}
    for name, cov in _covariances(means).items():
        eig = torch.linalg.eigvalsh(cov).flip(0).clamp(min=0)
        out[name] = (eig / eig.sum().clamp(min=torch.finfo(eig.dtype).tiny)).float()
    return out


@dataclass
class LayerReport:
    """Per-layer summary: mean KL (nats), active units out of all units, leading PCA ratios."""

    kl: dict[str, float]
    active: dict[str, int]
    units: dict[str, int]
    explained_variance: dict[str, torch.Tensor]

    def __str__(self) -> str:
        rows = [f"{'layer':<8}{'KL (nats)':>12}{'active':>10}   PCA explained variance (top 3)"]
        for n in self.kl:
            pca = ", ".join(f"{r:.2f}" for r in self.explained_variance[n][:3].tolist())
            rows.append(f"{n:<8}{self.kl[n]:>12.3f}{f'{self.active[n]}/{self.units[n]}':>10}   {pca}")
        return "\n".join(rows)


def layer_report(
    model, guide, data, *, num_particles: int = 10, threshold: float = 0.01, batch_size: int = 500
) -> LayerReport:
    """:func:`layer_kl`, :func:`active_units` and :func:`explained_variance` in one table."""
    kl = layer_kl(model, guide, data, num_particles=num_particles, batch_size=batch_size)
    means = posterior_means(model, guide, data, num_particles=num_particles, batch_size=batch_size)
    return LayerReport(
        kl={n: v.mean().item() for n, v in kl.items()},
        active=active_units(means, threshold),
        units={n: m.shape[1] for n, m in means.mean.items()},
        explained_variance=explained_variance(means),
    )


class _SetValues(Messenger):
    """Give chosen latent sites a value computed from their own distribution as the program runs.

    ``rules[name](fn)`` returns the value; downstream sites then condition on it, so a value set
    for z_2 changes the conditional distribution the program uses for z_1.
    """

    def __init__(self, rules: dict):
        super().__init__()
        self.rules = rules

    def _pyro_sample(self, msg) -> None:
        rule = self.rules.get(msg["name"])
        if rule is not None and not msg["is_observed"]:
            msg["value"] = rule(msg["fn"])


def _layer(names: list[str], layer: int | str) -> str:
    if isinstance(layer, str) and layer in names:
        return layer
    if isinstance(layer, int) and 1 <= layer <= len(names):
        return names[layer - 1]
    raise ConfigError(f"unknown layer {layer!r}; give 1..{len(names)} (1 is next to x) or one of {names}")


@torch.no_grad()
def layer_grid(
    model,
    guide,
    x: torch.Tensor,
    layer: int | str,
    n: int = 8,
    *,
    mode: Literal["resample", "traverse"] = "resample",
    fix: Literal["mean", "sample"] = "mean",
    below: Literal["fixed", "prior", "prior_mean"] = "fixed",
    unit: int = 0,
    span: float = 3.0,
) -> torch.Tensor:
    """Images that vary one layer of each datapoint's latent code, shape ``(len(x) * n, *x_shape)``.

    Row i (``n`` images) belongs to ``x[i]``: every layer except ``layer`` is fixed at q's mean
    (``fix="mean"``, means propagated through conditional guides) or at one draw from q
    (``"sample"``); ``layer`` (1-based from the data up, or a site name) is drawn from the model's
    prior for it, conditional on the fixed layers above (``mode="resample"``), or its unit ``unit``
    (index into the flattened event) is set to mu + t sigma of that prior for ``n`` values of t
    evenly spaced in [-span, span], the other units kept fixed (``"traverse"``). Layers below it
    stay fixed (``below="fixed"``, as in Zhao et al.'s figures) or follow the model's conditional
    prior (``"prior"``: drawn; ``"prior_mean"``: its mean). Each image is the likelihood's mean,
    E[x | z]. Save with ``torchvision.utils.save_image(grid, path, nrow=n)``. Needs a model whose
    latent sites carry only the data plate (``max_plate_nesting == 1``, every vaezoo image model).
    """
    if getattr(model, "max_plate_nesting", 1) != 1:
        raise ConfigError(
            "layer_grid needs latent sites that carry only the data plate (max_plate_nesting 1)"
        )
    names = layer_order(model)
    name = _layer(names, layer)
    lower = set(names[: names.index(name)]) if below != "fixed" else set()
    with evaluating(model, guide):
        guide_fn = _SetValues(dict.fromkeys(names, lambda fn: fn.mean))(guide) if fix == "mean" else guide
        fixed = poutine.trace(guide_fn).get_trace(x)
        keep = {
            s: fixed.nodes[s]["value"].repeat_interleave(n, 0) for s in names if s != name and s not in lower
        }
        rules = {}
        if below == "prior_mean":
            rules.update(dict.fromkeys(lower, lambda fn: fn.mean))
        if mode == "traverse":
            base = fixed.nodes[name]["value"].repeat_interleave(n, 0)
            t = torch.linspace(-span, span, n, dtype=base.dtype, device=base.device).repeat(x.shape[0])

            def traverse(fn):
                value = base.clone().reshape(base.shape[0], -1)
                loc, scale = fn.mean.reshape(value.shape), fn.stddev.reshape(value.shape)
                value[:, unit] = loc[:, unit] + t * scale[:, unit]
                return value.reshape(base.shape)

            rules[name] = traverse
        model_fn = _SetValues(rules)(poutine.condition(model, data=keep))
        trace = poutine.trace(model_fn).get_trace(x.repeat_interleave(n, 0))
    return trace.nodes["x"]["fn"].mean.reshape(x.shape[0] * n, *model.x_shape)
