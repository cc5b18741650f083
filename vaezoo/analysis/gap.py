"""The inference-gap decomposition of Cremer, Li & Duvenaud (2018): approximation vs amortization."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from vaezoo.analysis.site_gap import SiteGaps, site_gaps
from vaezoo.data import batches, num_batches
from vaezoo.errors import ConfigError
from vaezoo.guides.local import LocalFlow, LocalNormal
from vaezoo.inference.ais import ais_log_likelihood
from vaezoo.inference.elbo import ELBO
from vaezoo.inference.importance import Estimate, log_likelihood
from vaezoo.inference.traces import run_pair
from vaezoo.nets import evaluating
from vaezoo.sites import LatentLayout

ROWS = {
    "log_px_is": "log p̂(x), IS with the encoder",
    "log_px_is_flow": "log p̂(x), IS with q*_Flow",
    "log_px_ais": "log p̂(x), AIS",
    "log_px": "log p̂(x)",
    "flow": "L[q*_Flow]",
    "ffg": "L[q*_FFG]",
    "amortized": "L[q]",
    "approximation_gap": "Approximation gap",
    "amortization_gap": "Amortization gap",
    "inference_gap": "Inference gap",
}


@dataclass
class GapTable:
    """Cremer et al.'s Table 2 for one model and encoder, in nats per datapoint (all means over n).

    - log p̂(x): the largest (on average) of importance sampling with the encoder, with the
      fitted q*_Flow, and AIS, which are also kept as rows ``log_px_is``, ``log_px_is_flow`` and
      ``log_px_ais`` (when run). All three are stochastic lower bounds (log of unbiased
      estimates); agreement between them is the check that none is far off.
    - L[q*_Flow], L[q*_FFG]: ELBOs of the per-datapoint optimized flow and Gaussian guides.
    - L[q]: the amortized encoder's ELBO.
    - approximation gap = log p̂(x) - L[q*], amortization gap = L[q*] - L[q], their sum the
      inference gap; q* is the local optimum of the encoder's own family (:attr:`family`).

    The Monte Carlo standard errors of gaps combine their two terms' errors; "data s.e." is that
    of the mean over datapoints (the gaps are paired per datapoint).

    :attr:`per_site` (when asked for) splits the amortization gap over the latent sites, against
    its own q* (the encoder's conditionals corrected per datapoint): see
    :class:`~vaezoo.analysis.site_gap.SiteGaps`.
    """

    rows: dict[str, Estimate]
    family: Literal["ffg", "flow"]
    log_px_source: str
    settings: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    per_site: SiteGaps | None = None

    @property
    def n(self) -> int:
        return len(self.rows["log_px"].per_datapoint)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: {"mean": r.mean, "mc_stderr": r.stderr, "data_stderr": r.data_stderr}
            for name, r in self.rows.items()
        }
        out.update(
            n=self.n,
            family=self.family,
            log_px_source=self.log_px_source,
            settings=self.settings,
            seconds=self.seconds,
        )
        if self.per_site is not None:
            out["per_site"] = self.per_site.to_dict()
        return out

    def to_markdown(self) -> str:
        lines = ["| quantity | nats | MC s.e. | data s.e. |", "|---|---:|---:|---:|"]
        s = self.settings
        ais = f" ({s['ais_intermediate']} steps, {s['ais_chains']} chains)"
        for name, r in self.rows.items():
            label = ROWS[name] + {
                "log_px": f" = max ({self.log_px_source})",
                "log_px_is": f" (k={s['is_k']})",
                "log_px_is_flow": f" (k={s['is_k']})",
                "log_px_ais": ais,
            }.get(name, "")
            lines.append(f"| {label} | {r.mean:.3f} | {r.stderr:.3f} | {r.data_stderr:.3f} |")
        setting = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        lines.append("")
        lines.append(f"n={self.n} datapoints, q* family {self.family}; {setting}")
        if self.per_site is not None:
            lines += ["", "Amortization gap per latent site (q* = the encoder corrected per datapoint):", ""]
            lines.append(self.per_site.to_markdown())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


@torch.no_grad()
def elbo_estimate(model, guide, x: torch.Tensor, k: int, chunk: int = 100) -> Estimate:
    """Per-datapoint ELBO from ``k`` samples (closed-form KL where valid) and its MC standard error."""
    elbo = ELBO()
    terms = []
    done = 0
    while done < k:
        m = min(chunk, k - done)
        terms.append(elbo.particle_terms(run_pair(model, guide, x, m)).double())
        done += m
    t = torch.cat(terms)
    se = t.std(0) / math.sqrt(k) if k > 1 else torch.full_like(t[0], float("nan"))
    return Estimate(t.mean(0), se)


def amortization_gap(
    model,
    guide,
    data,
    *,
    is_k: int = 5000,
    ais_intermediate: int = 1000,
    ais_chains: int = 16,
    ais_leapfrog: int = 10,
    ais_step_size: float = 0.05,
    local_steps: int = 3000,
    local_lr: float = 1e-2,
    local_particles: int = 5,
    flow: bool = True,
    flow_blocks: int = 2,
    flow_hidden: int = 50,
    eval_k: int = 1000,
    family: Literal["auto", "ffg", "flow"] = "auto",
    batch_size: int = 100,
    progress: bool = False,
    per_site: bool = False,
) -> GapTable:
    """Decompose the inference gap of ``guide`` on ``data`` under a fixed ``model`` (Cremer et al. 2018).

    For each batch of ``batch_size`` datapoints (bounds estimated with ``eval_k`` samples):

    - L[q]: the encoder's ELBO;
    - L[q*_FFG]: a :class:`~vaezoo.guides.local.LocalNormal` started at the encoder's q (if it has
      Normal ``site_dists``, else at N(0, I)) and optimized per datapoint by
      :meth:`~vaezoo.guides.local.LocalNormal.fit_local` (``local_steps``, ``local_lr``,
      ``local_particles``);
    - L[q*_Flow] (with ``flow``): a :class:`~vaezoo.guides.local.LocalFlow` of ``flow_blocks``
      coupling blocks of width ``flow_hidden``, started at q*_FFG and optimized likewise;
    - log p(x): importance sampling with ``is_k`` samples from the encoder and from q*_Flow
      (``is_k=0`` skips), and AIS with ``ais_*`` settings (``ais_intermediate=0`` skips).

    The model and guide run in eval mode; the model's parameters never change. Cost, roughly:
    the local fits take up to ``local_steps`` optimizer steps on ``batch_size * local_particles``
    model evaluations each; AIS takes ``ais_intermediate * (ais_leapfrog + 1)`` gradient
    evaluations on ``batch_size * ais_chains`` chains, usually the largest share.

    ``family`` names the q* the encoder's gaps are measured against: ``"auto"`` is FFG for a guide
    with Normal ``site_dists`` (a mean-field encoder) and Flow otherwise.

    ``per_site`` adds :func:`~vaezoo.analysis.site_gap.site_gaps` with the same local-fit settings
    (one fit of all sites plus one per site, per batch) as :attr:`GapTable.per_site`.

    :param data: a tensor ``(n, *x_shape)``, an :class:`~vaezoo.data.ImageData`, or a DataLoader.
    :raises ConfigError: if the model has discrete or constrained latents.

    References:
        - Cremer, Li & Duvenaud (2018), Inference Suboptimality in Variational Autoencoders, ICML.
    """
    LatentLayout(model, "amortization_gap")  # fail early, naming the sites, for non-real latents
    if family == "auto":
        family = "ffg" if callable(getattr(guide, "site_dists", None)) else "flow"
    if family == "flow" and not flow:
        raise ConfigError("family='flow' needs flow=True (drop --no-flow)")
    if is_k <= 0 and ais_intermediate <= 0:
        raise ConfigError("log p(x) needs importance sampling (is_k > 0) or AIS (ais_intermediate > 0)")
    settings = {
        "is_k": is_k,
        "ais_intermediate": ais_intermediate,
        "ais_chains": ais_chains,
        "ais_leapfrog": ais_leapfrog,
        "ais_step_size": ais_step_size,
        "local_steps": local_steps,
        "local_lr": local_lr,
        "local_particles": local_particles,
        "flow_blocks": flow_blocks,
        "flow_hidden": flow_hidden,
        "eval_k": eval_k,
    }
    parts: dict[str, list[Estimate]] = {k: [] for k in ("is", "is_flow", "ais", "flow", "ffg", "amortized")}
    seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def timed(stage: str, bar):
        bar.set_description(stage)
        t0 = time.perf_counter()
        yield
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - t0

    fit_args = {"steps": local_steps, "lr": local_lr, "num_particles": local_particles}
    with evaluating(model, guide):
        bar = tqdm(batches(data, batch_size), total=num_batches(data, batch_size), disable=not progress)
        for x in bar:
            n = x.shape[0]
            with timed("L[q]", bar):
                parts["amortized"].append(elbo_estimate(model, guide, x, eval_k))
            with timed("L[q*_FFG]", bar):
                ffg = LocalNormal(model, n_data=n)
                if callable(getattr(guide, "site_dists", None)):
                    ffg.init_from(guide, x)
                ffg.fit_local(x, **fit_args)
                parts["ffg"].append(elbo_estimate(model, ffg, x, eval_k))
            if flow:
                with timed("L[q*_Flow]", bar):
                    local_flow = LocalFlow(model, n_data=n, flows=flow_blocks, hidden=flow_hidden)
                    local_flow.init_from(ffg, x)
                    local_flow.fit_local(x, **fit_args)
                    parts["flow"].append(elbo_estimate(model, local_flow, x, eval_k))
                if is_k > 0:
                    with timed(f"IS-{is_k} q*_Flow", bar):
                        r = log_likelihood(model, local_flow, x, k=is_k, batch_size=n)
                    parts["is_flow"].append(r)
            if is_k > 0:
                with timed(f"IS-{is_k}", bar):
                    r = log_likelihood(model, guide, x, k=is_k, batch_size=n)
                parts["is"].append(r)
            if ais_intermediate > 0:
                with timed("AIS", bar):
                    r = ais_log_likelihood(
                        model,
                        x,
                        n_intermediate=ais_intermediate,
                        n_chains=ais_chains,
                        leapfrog_steps=ais_leapfrog,
                        step_size=ais_step_size,
                        batch_size=n,
                    )
                parts["ais"].append(r)

    sites = None
    if per_site:
        t0 = time.perf_counter()
        sites = site_gaps(
            model,
            guide,
            data,
            local_steps=local_steps,
            local_lr=local_lr,
            local_particles=local_particles,
            eval_k=eval_k,
            batch_size=batch_size,
        )
        seconds["per-site"] = time.perf_counter() - t0
    joined = {k: Estimate.cat(v) for k, v in parts.items() if v}
    candidates = {
        f"IS-{is_k}": joined.get("is"),
        f"IS-{is_k} q*_Flow": joined.get("is_flow"),
        "AIS": joined.get("ais"),
    }
    source, log_px = max(((s, r) for s, r in candidates.items() if r is not None), key=lambda sr: sr[1].mean)
    rows = {f"log_px_{k}": joined[k] for k in ("is", "is_flow", "ais") if k in joined}
    rows["log_px"] = log_px
    rows.update({k: joined[k] for k in ("flow", "ffg", "amortized") if k in joined})
    best = rows[family]
    rows["approximation_gap"] = log_px - best
    rows["amortization_gap"] = best - rows["amortized"]
    rows["inference_gap"] = log_px - rows["amortized"]
    return GapTable(rows, family, source, settings, seconds, sites)
