"""Training-step time of the adversarial objectives (aae, vae_gan) against hand-written PyTorch steps.

One training step of each is what :func:`~vaezoo.inference.fit.fit` does per batch: the objective's
``adversary_step`` (one discriminator update with its own Adam), then the loss of model and guide,
its gradient and one fused Adam step. The hand-written references do the same arithmetic with the
same modules (deep copies, same starting weights, same batches) and no Pyro:

- AAE: D step on z ~ N(0, I) (real) against z ~ q(z | x) (fake); then
  -[log p(x | z) - lam * softplus(-D(z))] with z ~ q(z | x).
- VAE-GAN (fakes from both sources): D step on x against the decoded means of z ~ q(z | x) and
  z ~ p(z); then -[ELBO (analytic KL) - lam * mean of softplus(-D(x~)) over both fakes].

Model: the VAE 784-200-200-50 tanh with its default amortized guide; discriminators at the
objectives' defaults (two hidden layers of 256, leaky ReLU). Timings alternate between the
implementations in rounds; medians are reported, with the ratio to the hand-written step.

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
from timing import alternating_medians, warm_up
from torch import nn

from vaezoo import VAE
from vaezoo.inference import VAEGAN, AdversarialAutoencoder
from vaezoo.inference.fit import make_optimizer, parameters


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


def vaezoo_step(model, guide, objective):
    """What fit does per batch, without its bookkeeping."""
    optimizer = make_optimizer(parameters(model, guide), lr=1e-3)

    def step(x) -> float:
        objective.adversary_step(model, guide, x)
        optimizer.zero_grad(set_to_none=True)
        loss = objective.differentiable_loss(model, guide, x)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def measure(batch_size: int, steps: int, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    batches = list(torch.bernoulli(torch.rand(steps, batch_size, 1, 28, 28, generator=generator)))
    timed = {}
    for name, objective, hand in (
        ("aae", AdversarialAutoencoder(), "aae_step"),
        ("vae_gan", VAEGAN(), "vae_gan_step"),
    ):
        model = VAE()
        guide = model.default_guide()
        with torch.no_grad():  # give the discriminator its shape before it is copied
            objective.adversary.logits(torch.zeros(1, model.z_dim if name == "aae" else 784))
        reference = HandWritten(model, guide, objective)
        timed[f"vaezoo {name}"] = vaezoo_step(model, guide, objective)
        timed[f"hand-written {name}"] = getattr(reference, hand)
    warm_up(timed, batches[:3])
    return alternating_medians(timed, batches, rounds)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--steps", type=int, default=30, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per implementation")
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
    for batch_size in args.batch_sizes:
        medians = measure(batch_size, args.steps, args.rounds)
        print(f"batch {batch_size}:")
        for name in ("aae", "vae_gan"):
            ours, hand = medians[f"vaezoo {name}"], medians[f"hand-written {name}"]
            print(f"  {name:8s} vaezoo {1e3 * ours:7.3f} ms/step, hand-written {1e3 * hand:7.3f} ms/step, "
                  f"ratio {ours / hand:.3f}")


if __name__ == "__main__":
    main()
