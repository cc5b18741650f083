"""Per-datapoint reductions and analytic KL terms of run_pair on small hand-built pairs."""

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from vaezoo.inference.traces import run_pair


class BernoulliModel(PyroModule):
    max_plate_nesting = 1

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(torch.full((3,), 0.3)).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1), 1.0), obs=x)


class BernoulliGuide(PyroModule):
    def probs(self, x):
        return torch.sigmoid(x[:, None] * torch.tensor([1.0, -0.5, 2.0]))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(self.probs(x)).to_event(1))


def test_analytic_kl_of_bernoulli_latents_matches_the_closed_form():
    x = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    guide = BernoulliGuide()
    pair = run_pair(BernoulliModel(), guide, x, num_particles=5)
    q, p = guide.probs(x), torch.tensor(0.3)
    expected = (q * (q / p).log() + (1 - q) * ((1 - q) / (1 - p)).log()).sum(-1)
    torch.testing.assert_close(pair.analytic_kl("z"), expected.expand(5, 4))


def test_log_weight_is_per_datapoint():
    x = torch.tensor([-1.0, 0.0, 0.5])
    pair = run_pair(BernoulliModel(), BernoulliGuide(), x, num_particles=7)
    z = pair.guide_sites["z"]["value"]
    assert z.shape == (7, 3, 3)
    expected = (
        dist.Normal(z.sum(-1), 1.0).log_prob(x)
        + dist.Bernoulli(torch.full((3,), 0.3)).log_prob(z).sum(-1)
        - dist.Bernoulli(BernoulliGuide().probs(x)).log_prob(z).sum(-1)
    )
    torch.testing.assert_close(pair.log_weight(), expected)


def test_a_nested_run_inside_another_reads_its_own_particle_plate():
    x = torch.tensor([-1.0, 0.0, 0.5])
    model, guide = BernoulliModel(), BernoulliGuide()
    pyro.set_rng_seed(0)
    top = run_pair(model, guide, x, num_particles=4).log_weight()
    with pyro.plate("particles", 7, dim=-2):  # as inside a guide that an objective runs
        outer = run_pair(model, guide, x, num_particles=5, nested=True)
        with pyro.plate(outer.particles, 5, dim=-outer.plate_dims):  # and a guide inside that run
            pyro.set_rng_seed(0)
            inner = run_pair(model, guide, x, num_particles=4, nested=True)
    assert outer.particles != inner.particles and inner.plate_dims > outer.plate_dims
    torch.testing.assert_close(inner.log_weight(), top)
