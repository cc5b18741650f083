"""The amortization-gap study on probabilistic PCA, where log p(x) and the mean-field optimum are exact."""

import math

import pytest
import torch

from tests.test_hmc_ais import CoinModel
from tests.test_local_guides import data, mean_field_gap, pca_model
from vaezoo import ELBO, AmortizedNormal, ConfigError, fit
from vaezoo.analysis.gap import GapTable, amortization_gap

FAST = {
    "is_k": 2000,
    "ais_chains": 16,
    "ais_leapfrog": 5,
    "local_lr": 0.05,
    "eval_k": 2000,
    "flow_hidden": 10,
}
CONVERGED = 0.01  # optimization tolerance of the local fits, in nats (as in test_local_guides)


def trained_encoder(model, epochs=3):
    """A mean-field encoder fitted briefly to data from the fixed model: amortized, imperfect."""
    encoder = AmortizedNormal(model, hidden=(16,))
    for p in model.parameters():
        p.requires_grad_(False)
    fit(
        model,
        encoder,
        data(model, n=256, seed=7),
        ELBO(),
        epochs=epochs,
        batch_size=32,
        lr=1e-2,
        progress=False,
    )
    for p in model.parameters():
        p.requires_grad_(True)
    return encoder


def within(row, value, extra=0.0, sigmas=4.0):
    return abs(row.mean - value) <= sigmas * row.stderr + extra


def test_gap_table_on_a_correlated_posterior(float64):
    model = pca_model(30.0)
    x = data(model, n=8)
    table = amortization_gap(model, trained_encoder(model), x, ais_intermediate=100, batch_size=8, **FAST)
    rows = table.rows
    exact = model.log_marginal(x).detach().mean().item()
    best_gap = mean_field_gap(model, x).mean().item()
    assert table.family == "ffg" and table.n == 8

    # AIS agrees with the exact value (log-mean-exp is low by about s.e.^2 / 2). Importance sampling
    # with a mean-field proposal is only a stochastic lower bound here: the proposal's variance in
    # the posterior's long direction is below half the posterior's, so the weights have infinite
    # variance and their standard error means nothing (the factorized case below checks IS).
    bias = rows["log_px_ais"].mc_stderr.pow(2).mean().item()
    assert within(rows["log_px_ais"], exact, extra=bias), (rows["log_px_ais"].mean, exact)
    for name in ("log_px_is", "log_px_is_flow"):
        assert rows[name].mean <= exact + 4 * rows[name].stderr
    assert rows["log_px"].mean == max(rows[n].mean for n in ("log_px_is", "log_px_is_flow", "log_px_ais"))

    # The approximation gap of the FFG family is the closed-form mean-field gap.
    assert within(rows["approximation_gap"], best_gap, extra=CONVERGED + 1e-3), (
        rows["approximation_gap"].mean,
        best_gap,
    )
    # Ordering L[q] <= L[q*_FFG] <= L[q*_Flow] <= log p(x), each within its errors.
    se = rows["amortization_gap"].stderr
    assert rows["amortization_gap"].mean > 4 * se, "a briefly trained encoder must leave a gap"
    assert rows["flow"].mean >= rows["ffg"].mean - 4 * math.hypot(rows["flow"].stderr, rows["ffg"].stderr)
    assert rows["flow"].mean <= exact + 4 * rows["flow"].stderr
    torch.testing.assert_close(
        rows["inference_gap"].per_datapoint,
        rows["approximation_gap"].per_datapoint + rows["amortization_gap"].per_datapoint,
    )

    out = table.to_dict()
    assert out["amortization_gap"]["mean"] == rows["amortization_gap"].mean and out["n"] == 8
    text = table.to_markdown()
    for label in ("log p̂(x)", "L[q*_Flow]", "L[q*_FFG]", "L[q]", "Approximation gap", "Amortization gap"):
        assert label in text


def test_approximation_gap_vanishes_when_the_posterior_is_factorized(float64):
    model = pca_model(90.0)
    x = data(model, n=8)
    table = amortization_gap(model, AmortizedNormal(model), x, ais_intermediate=0, flow=False, **FAST)
    assert isinstance(table, GapTable) and table.log_px_source == "IS-2000"
    # Here the encoder is wider than the posterior, the weights have finite variance, and IS is exact.
    exact = model.log_marginal(x).detach().mean().item()
    bias = table.rows["log_px"].mc_stderr.pow(2).mean().item()
    assert within(table.rows["log_px"], exact, extra=bias), (table.rows["log_px"].mean, exact)
    assert within(table.rows["approximation_gap"], 0.0, extra=CONVERGED), table.rows["approximation_gap"].mean
    assert table.rows["amortization_gap"].mean > 1.0  # an untrained encoder is far from q*


def test_gap_needs_real_latents():
    with pytest.raises(ConfigError, match=r"\['coin'\]"):
        amortization_gap(CoinModel(), None, torch.zeros(2, 2))
