"""Training-step time of the adversarial objectives (aae, vae_gan, lfvi) against hand-written PyTorch steps.

One training step of each is what :func:`~vaezoo.inference.fit.fit` does per batch: the objective's
``adversary_step`` (one discriminator update with its own Adam), then the loss of model and guide,
its gradient and one fused Adam step. The hand-written references do the same arithmetic with the
same modules (deep copies, same starting weights, same batches) and no Pyro:

- AAE: D step on z ~ N(0, I) (real) against z ~ q(z | x) (fake); then
  -[log p(x | z) - lam * softplus(-D(z))] with z ~ q(z | x).
- VAE-GAN (fakes from both sources): D step on x against the decoded means of z ~ q(z | x) and
  z ~ p(z); then -[ELBO (analytic KL) - lam * mean of softplus(-D(x~)) over both fakes].

- LFVI (``lfvi_reference.py``): ``ratio_steps`` classifier updates of the ratio MLP r (its own
  Adam) on fresh model draws against (x, z ~ q(z | x)); then -mean r(x, z) with reparameterized z
  through the fixed r, and one Adam step of the guide. Before timing, the two guide losses are
  compared on the same weights and noise (a mismatch stops the run).

Model: the VAE 784-200-200-50 tanh with its default amortized guide; discriminators at the
objectives' defaults (two hidden layers of 256, leaky ReLU). lfvi as in ``vaezoo.analysis.lfvi_study``:
the ``implicit_gaussian`` simulator (x 5, z 2, fixed) with the ``affine_normal`` guide, r 64-64 tanh,
3 ratio updates per step, no warm-up (it happens once per fit), lr 3e-3 for both. Timings alternate
between the implementations in rounds; medians are reported, with the ratio to the hand-written step.

    python benchmarks/step_time_adversarial.py                   # batch sizes 20, 100
    python benchmarks/step_time_adversarial.py --smoke           # tiny run for the test suite
"""

from __future__ import annotations

import argparse
import copy
import platform

import pyro
import torch
import torch.nn.functional as F
from lfvi_reference import HandWrittenLFVI
from timing import alternating_medians, warm_up
from torch import nn

from vaezoo import VAE
from vaezoo.guides.affine_normal import AffineNormal
from vaezoo.inference import LFVI, VAEGAN, AdversarialAutoencoder
from vaezoo.inference.fit import make_optimizer, parameters
from vaezoo.models.implicit import ImplicitGaussian
from vaezoo.nets import frozen


class HandWritten(nn.Module):
    """Encoder, head, decoder and discriminator copied from vaezoo's, the two steps written out."""

    def __init__(self, model: VAE, guide, objective):
        super().__init__()
        self.encoder, self.head = copy.deepcopy(guide.encoder), copy.deepcopy(guide.head)
        self.decoder = copy.deepcopy(model.decoder)
        self.disc = copy.deepcopy(objective.adversary.discriminator)
        self.min_scale, self.lam, self.z_dim = guide.config.min_scale, objective.config.lam, model.z_dim
        self.optimizer = make_optimizer([*self.encoder.parameters(), *self.head.parameters(),
                                         *self.decoder.parameters()], lr=1e-3)
        self.d_optimizer = torch.optim.Adam(self.disc.parameters(), lr=objective.config.discriminator_lr,
                                            fused=True)

    def posterior(self, x):
        loc, raw = self.head(self.encoder(x.flatten(1))).chunk(2, dim=-1)
        scale = F.softplus(raw) + self.min_scale
        return loc, scale, loc + scale * torch.randn_like(loc)

    def d_step(self, real, fake) -> float:
        self.d_optimizer.zero_grad(set_to_none=True)
        loss = F.softplus(-self.disc(real)).mean() + F.softplus(self.disc(fake)).mean()
        loss.backward()
        self.d_optimizer.step()
        return loss.item()

    def g_step(self, loss) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def aae_step(self, x) -> float:
        with torch.no_grad():
            fake = self.posterior(x)[2]
        self.d_step(torch.randn_like(fake), fake)
        z = self.posterior(x)[2]
        log_px = -F.binary_cross_entropy_with_logits(self.decoder(z), x.flatten(1), reduction="none").sum(-1)
        return self.g_step(-(log_px - self.lam * F.softplus(-self.disc(z).squeeze(-1))).mean())

    def vae_gan_step(self, x) -> float:
        prior = torch.randn(x.shape[0], self.z_dim)
        with torch.no_grad():
            fake = torch.sigmoid(self.decoder(torch.cat([self.posterior(x)[2], prior])))
        self.d_step(x.flatten(1), fake)
        loc, scale, z = self.posterior(x)
        logits = self.decoder(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(-1)
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum(-1) - scale.log().sum(-1)
        fakes = torch.stack([torch.sigmoid(logits), torch.sigmoid(self.decoder(torch.randn_like(z)))])
        gan = F.softplus(-self.disc(fakes).squeeze(-1)).mean(0)
        return self.g_step(-(log_px - kl - self.lam * gan).mean())


def vaezoo_step(model, guide, objective, lr: float = 1e-3):
    """What fit does per batch, without its bookkeeping."""
    optimizer = make_optimizer(parameters(model, guide), lr=lr)

    def step(x) -> float:
        objective.adversary_step(model, guide, x)
        optimizer.zero_grad(set_to_none=True)
        loss = objective.differentiable_loss(model, guide, x)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def measure(batch_size: int, steps: int, rounds: int, names=("aae", "vae_gan")) -> dict[str, float]:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    batches = list(torch.bernoulli(torch.rand(steps, batch_size, 1, 28, 28, generator=generator)))
    timed = {}
    for name, objective, hand in (
        ("aae", AdversarialAutoencoder(), "aae_step"),
        ("vae_gan", VAEGAN(), "vae_gan_step"),
    ):
        if name not in names:
            continue
        model = VAE()
        guide = model.default_guide()
        with torch.no_grad():  # give the discriminator its shape before it is copied
            objective.adversary.logits(torch.zeros(1, model.z_dim if name == "aae" else 784))
        reference = HandWritten(model, guide, objective)
        timed[f"vaezoo {name}"] = vaezoo_step(model, guide, objective)
        timed[f"hand-written {name}"] = getattr(reference, hand)
    warm_up(timed, batches[:3])
    return alternating_medians(timed, batches, rounds)


def measure_lfvi(batch_size: int, steps: int, rounds: int) -> tuple[dict[str, float], float, float]:
    """Medians of both lfvi steps, and the two guide losses on the same weights and noise."""
    torch.manual_seed(0)
    model = ImplicitGaussian(x_shape=(5,), z_dim=2, noise_scale=1.0, seed=0)
    guide = AffineNormal(model)
    objective = LFVI(ratio_hidden=(64, 64), ratio_steps=3, ratio_lr=3e-3)
    objective.ratio_network(width=5 + 2)
    reference = HandWrittenLFVI(model, guide, objective, lr=3e-3)
    batches = list(model.sample_x(steps * batch_size).reshape(steps, batch_size, 5))
    with frozen(model):  # the simulator is fixed, as in lfvi_study: only the guide (and r) train
        torch.manual_seed(2)
        ours = objective.loss(model, guide, batches[0])
        torch.manual_seed(2)
        with torch.no_grad():
            theirs = reference.guide_loss(batches[0]).item()
        timed = {"vaezoo lfvi": vaezoo_step(model, guide, objective, lr=3e-3),
                 "hand-written lfvi": reference.step}
        warm_up(timed, batches[:3])
        return alternating_medians(timed, batches, rounds), ours, theirs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--steps", type=int, default=30, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per implementation")
    parser.add_argument("--objectives", nargs="+", choices=["aae", "vae_gan", "lfvi"],
                        default=["aae", "vae_gan", "lfvi"])
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.rounds, args.batch_sizes = 3, 1, [8]
    pyro.enable_validation(False)
    print(
        f"ran: VAE 784-200-200-50 tanh + amortized guide, discriminators 256-256 leaky ReLU, one D step per "
        f"step, {args.steps} steps x {args.rounds} alternating rounds per batch size, validation off, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), pyro {pyro.__version__}, "
        f"{platform.machine()}"
    )
    print("lfvi: implicit_gaussian x 5 z 2 + affine_normal guide, r 64-64 tanh, 3 ratio updates per step, "
          "lr 3e-3, seeds 0 (weights, data), 2 (loss check)")
    bad = []
    for batch_size in args.batch_sizes:
        medians = measure(batch_size, args.steps, args.rounds, args.objectives)
        if "lfvi" in args.objectives:
            lfvi, loss, reference_loss = measure_lfvi(batch_size, args.steps, args.rounds)
            medians.update(lfvi)
        print(f"batch {batch_size}:")
        for name in args.objectives:
            ours, hand = medians[f"vaezoo {name}"], medians[f"hand-written {name}"]
            print(f"  {name:8s} vaezoo {1e3 * ours:7.3f} ms/step, hand-written {1e3 * hand:7.3f} ms/step, "
                  f"ratio {ours / hand:.3f}", flush=True)
        if "lfvi" not in args.objectives:
            continue
        agree = abs(loss - reference_loss) <= 1e-5 * max(abs(reference_loss), 1.0)
        print(f"  (lfvi guide loss on the same weights and noise: {loss:.6f} vs {reference_loss:.6f}, "
              f"{'agree' if agree else 'MISMATCH'})")
        if not agree:
            bad.append(batch_size)
    if bad:
        raise SystemExit(f"the two lfvi steps do not compute the same loss at batch sizes {bad}")


if __name__ == "__main__":
    main()
