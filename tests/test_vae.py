"""The VAE model and its default guide: sites, shapes, bad input, and that training improves the bound."""

import pytest
import torch
from pyro import poutine

from tests.conftest import binary_batch
from vaezoo import ELBO, VAE, DataError, fit
from vaezoo.analysis import prior_samples, reconstructions


def test_sites_and_shapes():
    model = VAE(z_dim=6, hidden=(16,))
    guide = model.default_guide()
    x = binary_batch(5)
    g = poutine.trace(guide).get_trace(x)
    m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x)
    assert [n for n, s in g.nodes.items() if s["type"] == "sample" and n != "data"] == ["z"]
    assert g.nodes["z"]["value"].shape == (5, 6)
    assert m.nodes["x"]["is_observed"] and m.nodes["x"]["fn"].event_shape == (1, 28, 28)
    assert m.nodes["z"]["fn"].event_shape == (6,)


def test_default_guide_mirrors_the_decoder():
    model = VAE(hidden=(300, 100), activation="elu")
    guide = model.default_guide()
    assert guide.config.hidden == (100, 300) and guide.config.activation == "elu"
    widths = [m.out_features for m in guide.encoder if isinstance(m, torch.nn.Linear)]
    assert widths == [100, 300] and guide.head.out_features == 2 * model.z_dim


def test_gaussian_likelihood_on_real_valued_data():
    model = VAE(x_shape=(3,), z_dim=2, hidden=(8,), likelihood="gaussian")
    x = torch.randn(4, 3)
    bound = ELBO().bound(model, model.default_guide(), x)
    assert bound.shape == (4,) and torch.isfinite(bound).all()


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.zeros(4, 784), r"expects x of shape \(batch, 1, 28, 28\), got \(4, 784\)"),
        (torch.full((4, 1, 28, 28), float("nan")), "NaN or infinite values in 4 of 4 rows"),
        (torch.full((4, 1, 28, 28), 0.5), r"Bernoulli likelihood, which needs x in \{0, 1\}.*binarize"),
    ],
)
def test_bad_input_is_named(x, message):
    model = VAE()
    with pytest.raises(DataError, match=message):
        ELBO().loss(model, model.default_guide(), x)


def test_training_raises_the_bound():
    torch.manual_seed(0)
    prototypes = binary_batch(4, shape=(1, 8, 8), seed=3)
    data = prototypes[torch.randint(0, 4, (256,))]
    model = VAE(x_shape=(1, 8, 8), z_dim=4, hidden=(32,))
    guide = model.default_guide()
    before = ELBO(num_particles=20).bound(model, guide, data).mean().item()
    fit(model, guide, data, ELBO(), epochs=15, batch_size=32, lr=3e-3, progress=False)
    after = ELBO(num_particles=20).bound(model, guide, data).mean().item()
    # Four prototype images: a working model should get close to log(1/4) = -1.4 nats; start is ~ -44.
    assert after > before + 20, (before, after)


def test_samples_and_reconstructions_have_data_shape():
    model = VAE(z_dim=3, hidden=(8,))
    x = binary_batch(6)
    assert prior_samples(model, 10).shape == (10, 1, 28, 28)
    rec = reconstructions(model, model.default_guide(), x)
    assert rec.shape == x.shape and ((rec >= 0) & (rec <= 1)).all()
