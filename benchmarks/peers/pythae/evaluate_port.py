"""Score the pythae peers with vaezoo: ported weights, vaezoo's ELBO and ``log_likelihood``.

Reads the weights that ``train_pythae.py`` exported. Each pythae decoder goes into vaezoo's ``vae``
model (the same layers: its sigmoid becomes the Bernoulli likelihood's logits), and each pythae
encoder with its flow becomes a proposal q(z | x) for vaezoo's estimators, by the two guide classes
below (they live here, not in the package: they exist only to read pythae's parametrization):

- :class:`PortedGaussian`: pythae's ``VAE`` posterior N(mu(x), exp(log_var(x))), mean-field.
- :class:`PortedFlow`: that Gaussian pushed through pythae's flow, whose parameters do not depend on
  x (not amortized): ``VAE_LinNF``'s planar steps z + u tanh(w.z + b), or ``VAE_IAF``'s MADE steps
  z <- z exp(s) + m, [m, s] = MADE(z), with z reversed before each step, as pythae samples.

**Port check.** The exported file holds pythae's own loss (its negative ELBO, batch mean, float64) on
the first 100 test images with recorded noise; the same ELBO is computed here by vaezoo's
:class:`~vaezoo.inference.ELBO` with the same noise, in float64, and the difference is printed and
stored. pythae's planar log-determinant is log(|1 + u.psi| + 1e-4); the check uses that offset, the
evaluation the exact log |1 + u.psi| (the offset would misstate q). A planar step is invertible only
when w.u >= -1 (pythae does not enforce it); each step's w.u is stored, and a flow that fails it is
flagged, since importance sampling needs the density of the proposal actually sampled.

Then, as ``experiments/flows.py eval``: test ELBO over all test images (10 samples), NLL by importance
sampling on the first ``--test-size``, 64 samples, into ``docs/flows/results/peer-pythae-<model>.json``
and ``docs/flows/samples-pythae-<model>.png``::

    OMP_NUM_THREADS=1 VAEZOO_DATA=../shared/data python benchmarks/peers/pythae/evaluate_port.py \\
        --weights /tmp/pythae_peer/weights.pt --k 5000 --test-size 1000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
from pathlib import Path

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn
from torchvision.utils import save_image

from vaezoo import ELBO
from vaezoo.analysis import prior_samples
from vaezoo.guides import FactorizedGuide, FlowEncoderConfig, FlowGuide
from vaezoo.guides.flow_base import FlowDraw
from vaezoo.models import VAE
from vaezoo.nets import mlp

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("flows_experiment", ROOT / "experiments" / "flows.py")
flows = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(flows)
LABELS = {
    "vae": "pythae `VAE` (mean-field)",
    "vae_linnf": "pythae `VAE_LinNF`, {planar_steps} planar (shared)",
    "vae_iaf": "pythae `VAE_IAF`, {iaf_blocks} MADE blocks 128-128-128 (shared)",
}


def encoder_state(saved: dict) -> dict:
    """pythae's ``body.*`` / ``head.*`` as the guides' ``encoder.*`` / ``head.*``."""
    return {k.replace("body.", "encoder.", 1): v for k, v in saved.items()}


def gaussian(module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, log_var = module.head(module.encoder(x.flatten(-len(module.x_shape)))).chunk(2, -1)
    return mu, (0.5 * log_var).exp()


class PortedGaussian(FactorizedGuide):
    """q(z | x) = N(mu(x), diag exp(log_var(x))), pythae's ``VAE`` encoder output convention."""

    def __init__(self, model, hidden: list[int], activation: str):
        super().__init__()
        self.x_shape = model.x_shape
        self.encoder = mlp((model.x_numel, *hidden), activation, final_act=True)
        self.head = nn.Linear(hidden[-1], 2 * model.z_dim)

    def site_dists(self, x):
        mu, sigma = gaussian(self, x)
        return {"z": dist.Normal(mu, sigma).to_event(1)}


class PortedFlow(FlowGuide):
    """pythae's Gaussian pushed through its non-amortized planar or IAF flow (see the module docstring)."""

    def __init__(self, model, hidden: list[int], activation: str, flow: dict, det_offset: float = 0.0):
        super().__init__(model, FlowEncoderConfig(hidden=tuple(hidden), activation=activation))
        self.kind, self.det_offset, self.noise = flow["kind"], det_offset, None
        if self.kind == "planar":
            self.register_buffer("u", flow["u"].clone())
            self.register_buffer("w", flow["w"].clone())
            self.register_buffer("b", flow["b"].clone())
        else:
            self.blocks = nn.ModuleList(
                nn.ModuleList(self._linear(w, b) for w, b in blk) for blk in flow["blocks"]
            )

    @staticmethod
    def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
        lin = nn.Linear(weight.shape[1], weight.shape[0])
        lin.weight.data.copy_(weight)  # already masked
        lin.bias.data.copy_(bias)
        return lin

    def cond_size(self) -> int:
        return 0

    def encode(self, x):
        mu, sigma = gaussian(self, x)
        return mu, sigma, mu.new_zeros(mu.shape[0], 0)

    def transform(self, z0, cond):
        z, log_det = z0, z0.new_zeros(())
        if self.kind == "planar":
            for u, w, b in zip(self.u, self.w, self.b, strict=True):
                a = (z * w).sum(-1, keepdim=True) + b
                z = z + u * torch.tanh(a)
                psi_u = (1 - torch.tanh(a).pow(2)).squeeze(-1) * (w * u).sum()
                log_det = log_det + ((1 + psi_u).abs() + self.det_offset).log()
            return z, log_det
        for block in self.blocks:
            z = z.flip(-1)
            h = z
            for lin in block[:-1]:
                h = F.relu(lin(h))
            m, s = block[-1](h).chunk(2, -1)
            z = z * s.exp() + m
            log_det = log_det + s.sum(-1)
        return z, log_det

    def draw(self, x, k=1, lead=None):
        if self.noise is None:
            return super().draw(x, k, lead)
        return FlowDraw(
            self, x, self.noise.expand(k, *self.noise.shape), 2 if lead is None and k > 1 else lead
        )


def port(saved: dict, det_offset: float = 0.0):
    c = saved["config"]
    model = VAE(z_dim=c["z_dim"], hidden=tuple(c["hidden"]), activation=c["activation"])
    model.load_state_dict({k.replace("net.", "decoder.", 1): v for k, v in saved["state"]["decoder"].items()})
    flow, hidden = saved["state"]["flow"], c["hidden"][::-1]
    if flow["kind"] == "none":
        guide = PortedGaussian(model, hidden, c["activation"])
    else:
        guide = PortedFlow(model, hidden, c["activation"], flow, det_offset)
    guide.load_state_dict(encoder_state(saved["state"]["encoder"]), strict=False)
    missing = [k for k in encoder_state(saved["state"]["encoder"]) if k not in guide.state_dict()]
    assert not missing, f"encoder weights with no place in the guide: {missing}"
    return model.eval(), guide.eval()


@torch.no_grad()
def check(saved: dict) -> dict:
    """vaezoo's ELBO on pythae's check batch and noise, float64, against pythae's own number."""
    pc = saved["port_check"]
    model, guide = port(saved, det_offset=1e-4)
    model, guide = model.double(), guide.double()
    x = flows.test_data(pc["x_rows"])[1].double()
    eps = pc["eps"].double()
    if isinstance(guide, PortedFlow):
        guide.noise = eps
        ours = ELBO().per_datapoint(model, guide, x).mean().item()
    else:  # pythae's VAE takes the KL in closed form, as ELBO() does; z is replayed from pythae's draw
        mu, sigma = gaussian(guide, x)
        drawn = poutine.trace(guide).get_trace(x)
        drawn.nodes["z"]["value"] = (mu + sigma * eps).unsqueeze(0)
        ours = ELBO().per_datapoint(model, poutine.replay(guide, trace=drawn), x).mean().item()
    return {"pythae_elbo": -pc["pythae_loss"], "vaezoo_elbo": ours, "difference": -pc["pythae_loss"] - ours}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="the file train_pythae.py wrote")
    p.add_argument("--models", nargs="+", default=None, help="default: every model in the file")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--test-size", type=int, default=1000, help="first N test images for IS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--docs", default=str(ROOT / "docs" / "flows"))
    args = p.parse_args()
    command = shlex.join(["python", *sys.argv])
    print("command: " + command, flush=True)
    docs = Path(args.docs)
    (docs / "results").mkdir(parents=True, exist_ok=True)
    weights = torch.load(args.weights, weights_only=True)
    full, subset = flows.test_data(args.test_size)
    for name in args.models or list(weights):
        saved = weights[name]
        c = check(saved)
        print(
            f"{saved['pythae_model']}: port check ELBO pythae {c['pythae_elbo']:.6f}, "
            f"vaezoo {c['vaezoo_elbo']:.6f}, "
            f"difference {c['difference']:.2e}",
            flush=True,
        )
        model, guide = port(saved)
        flow = saved["state"]["flow"]
        wu = (flow["w"] * flow["u"]).sum(-1).tolist() if flow["kind"] == "planar" else []
        result = {
            "peer": saved["peer"],
            "label": LABELS[name].format(**saved["config"]),
            "command": command,
            **{
                k: saved[k]
                for k in (
                    "pythae_model",
                    "parameters",
                    "epochs",
                    "batch_size",
                    "lr",
                    "seed",
                    "train_images",
                    "seconds_per_epoch",
                    "config",
                )
            },
            "port_check": c,
            "planar_w_dot_u": wu,
            "invertible": all(v >= -1 for v in wu),
            **flows.evaluate(model, guide, full, subset, args.k, args.seed),
        }
        torch.manual_seed(args.seed)
        save_image(prior_samples(model, 64), docs / f"samples-{saved['peer']}.png", nrow=8, padding=1)
        (docs / "results" / f"peer-{saved['peer']}.json").write_text(json.dumps(result, indent=1))
        flag = "" if result["invertible"] else " (a planar step has w.u < -1: not invertible, IS not valid)"
        print(
            f"{saved['pythae_model']}: test ELBO {result['test_elbo']:.2f}, NLL {result['nll']:.2f} ± "
            f"{result['nll_mc_stderr']:.2f} (IS k={args.k}, {len(subset)} images){flag}",
            flush=True,
        )


if __name__ == "__main__":
    main()
