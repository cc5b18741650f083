"""Bad input to the flow guides: each refused with a vaezoo error naming the problem and the fix, raised
by vaezoo's own code (not a shape error from deep inside torch or Pyro), through the API, the objectives,
importance sampling and the command line.

The cases (issue 10): a flow with zero steps, a guide whose latent size is not the model's, a Sylvester
rank above the latent size, and a guide asked to score a sample it did not draw (planar and Sylvester
steps have no inverse; the IAF's inverse is sequential and not offered, so all three refuse alike).
"""

import traceback
from pathlib import Path

import pytest
import torch
from pyro import poutine
from torch import nn

from vaezoo import ELBO, ConfigError, DataError, log_likelihood
from vaezoo.cli import main
from vaezoo.guides import LocalNormal
from vaezoo.inference import IWAE, ais_log_likelihood
from vaezoo.registry import build_guide, build_model

FLOWS = ["iaf", "planar", "sylvester"]
VAEZOO = str(Path(__file__).resolve().parents[1] / "vaezoo")


def small_vae(z_dim: int = 5, x_side: int = 4):
    return build_model("vae", x_shape=(1, x_side, x_side), z_dim=z_dim, hidden=(8,))


def batch(n: int = 3, side: int = 4) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, 1, side, side), 0.5))


def assert_from_vaezoo(excinfo) -> None:
    """The error (and the root of any chain Pyro's trace handler adds) was raised in vaezoo's code."""
    exc = excinfo.value
    while exc.__cause__ is not None:
        exc = exc.__cause__
    assert exc.__context__ is None or exc.__suppress_context__, "an error from torch/Pyro is chained"
    origin = traceback.extract_tb(exc.__traceback__)[-1].filename
    assert origin.startswith(VAEZOO), f"raised in {origin}, not by vaezoo"


def first_line(excinfo) -> str:
    return str(excinfo.value).splitlines()[0]  # Pyro's trace handler appends the trace's shapes


# --- zero steps --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLOWS)
def test_zero_steps_names_the_field_and_the_allowed_range(name):
    with pytest.raises(ConfigError) as excinfo:
        build_guide(name, small_vae(), steps=0)
    assert "'steps' = 0 is not allowed" in str(excinfo.value) and "integer >= 1" in str(excinfo.value)
    assert_from_vaezoo(excinfo)


# --- latent sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "run",
    [
        lambda m, g, x: ELBO().loss(m, g, x),
        lambda m, g, x: IWAE(k=3, dreg=True).differentiable_loss(m, g, x),
        lambda m, g, x: log_likelihood(m, g, x, k=4),
    ],
    ids=["elbo", "iwae-dreg", "importance-sampling"],
)
@pytest.mark.parametrize("name", FLOWS)
def test_guide_built_for_another_latent_size_names_the_site_and_the_fix(name, run):
    guide = build_guide(name, small_vae(z_dim=5), hidden=(12,))
    with pytest.raises(ConfigError) as excinfo:
        run(small_vae(z_dim=3), guide, batch())
    message = first_line(excinfo)
    assert "site 'z' has event shape (3,) in the model, (5,) in the guide" in message
    assert "Build the guide from this model" in message
    assert_from_vaezoo(excinfo)


def test_guide_built_for_another_hierarchy_names_the_sites():
    hvae = build_model("hvae", x_shape=(1, 4, 4), z_dims=(3, 2), hidden=(8,))  # D = 5 too, other sites
    with pytest.raises(ConfigError) as excinfo:
        ELBO().loss(small_vae(z_dim=5), build_guide("iaf", hvae, hidden=(12,)), batch())
    message = first_line(excinfo)
    assert "['z'] are sampled by the model but not by the guide" in message
    assert "['z1', 'z2'] are not latent sites of the model" in message and "Build the guide" in message
    assert_from_vaezoo(excinfo)


@pytest.mark.parametrize("name", FLOWS)
def test_guide_built_for_another_image_size_names_the_shape(name):
    guide = build_guide(name, small_vae(x_side=4), hidden=(12,))
    with pytest.raises(DataError) as excinfo:
        ELBO().loss(small_vae(x_side=3), guide, batch(side=3))
    assert "expects x of shape (batch, 1, 4, 4), got (3, 1, 3, 3)" in first_line(excinfo)
    assert "build the model with x_shape=(1, 3, 3)" in first_line(excinfo)
    assert_from_vaezoo(excinfo)


# --- Sylvester rank ----------------------------------------------------------------------------------


def test_sylvester_rank_above_the_latent_size_says_the_largest_allowed():
    with pytest.raises(ConfigError) as excinfo:
        build_guide("sylvester", small_vae(z_dim=5), rank=6)
    assert "rank M = 6 exceeds the latent size D = 5" in str(excinfo.value)
    assert "set rank to at most 5 (or 0 for M = D)" in str(excinfo.value)
    assert_from_vaezoo(excinfo)
    assert build_guide("sylvester", small_vae(z_dim=5), rank=5).rank == 5  # the boundary is allowed


# --- the command line: refused before any data is read -----------------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--guide", "sylvester", "--z-dim", "3", "--guide-rank", "4"],
         "rank M = 4 exceeds the latent size D = 3 of this model"),
        (["--guide", "sylvester", "--guide-steps", "0"], "--guide-steps 0: must be an integer >= 1"),
        (["--guide", "planar", "--guide-steps", "0"], "--guide-steps 0: must be an integer >= 1"),
        (["--guide", "iaf", "--guide-steps", "0"], "--guide-steps 0: must be an integer >= 1"),
    ],
)
def test_cli_refuses_bad_flow_flags_with_one_message(flags, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VAEZOO_DATA", str(tmp_path / "no-data"))  # reading data would fail otherwise
    assert main(["train", "--model", "vae", *flags, "--epochs", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and "data not found" not in err
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


# --- scoring a sample the guide did not draw --------------------------------------------------------


@pytest.mark.parametrize("name", FLOWS)
def test_log_prob_of_a_value_the_guide_did_not_draw(name):
    guide = build_guide(name, small_vae(), hidden=(12,))
    site = poutine.trace(guide).get_trace(batch()).nodes["z"]
    with pytest.raises(ConfigError) as excinfo:
        site["fn"].log_prob(site["value"] + 0.1)
    message = str(excinfo.value)
    assert "log q of a latent value it did not draw" in message and "no inverse" in message
    assert "Score the guide's own draws, or use a guide with a closed-form density ('amortized')" in message
    assert_from_vaezoo(excinfo)


class ReplayedOn(nn.Module):
    """A composite proposal a user might build: the flow guide run on another guide's draws."""

    def __init__(self, flow, other):
        super().__init__()
        self.flow, self.other = flow, other

    def forward(self, x):
        with poutine.block():
            drawn = poutine.trace(self.other).get_trace(x)
        return poutine.replay(self.flow, trace=drawn)(x)


@pytest.mark.parametrize("name", FLOWS)
def test_importance_sampling_on_draws_of_another_guide_is_refused(name):
    model = small_vae()
    flow = build_guide(name, model, hidden=(12,))
    proposal = ReplayedOn(flow, build_guide("amortized", model))
    with pytest.raises(ConfigError) as excinfo:
        log_likelihood(model, proposal, batch(), k=4)
    message = first_line(excinfo)
    assert "replayed on latent values it did not draw" in message
    assert "Run it without the replay, or use a guide with a closed-form density ('amortized')" in message
    assert_from_vaezoo(excinfo)
    # The same flow as its own proposal is fine, and AIS never asks a guide for a density.
    assert torch.isfinite(log_likelihood(model, flow, batch(), k=4).per_datapoint).all()
    ais = ais_log_likelihood(model, batch(), n_intermediate=3, n_chains=2, leapfrog_steps=2)
    assert torch.isfinite(ais.per_datapoint).all()


@pytest.mark.parametrize("name", FLOWS)
def test_local_gaussian_cannot_start_at_a_flow(name):
    model = small_vae()
    with pytest.raises(ConfigError) as excinfo:
        LocalNormal(model, n_data=3).init_from(build_guide(name, model, hidden=(12,)), batch())
    message = str(excinfo.value)
    assert "init_from needs a guide with Normal site_dists(x)" in message and "Skip init_from" in message
    assert_from_vaezoo(excinfo)
