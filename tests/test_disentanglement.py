"""MIG and SAP against constructed representations whose scores are known exactly or up to the
sampling law of the plug-in estimators."""

import math

import pytest
import torch
from scipy.stats import chi2

from vaezoo.analysis import mig, sap
from vaezoo.analysis.disentanglement import discretize, entropy, mutual_information
from vaezoo.errors import ConfigError, DataError

ALPHA = 1e-6  # false-alarm probability of each stochastic bound below


def grid(sizes, repeat: int = 1, seed: int = 0) -> torch.Tensor:
    """Every combination of factor values ``repeat`` times, rows shuffled: a balanced product design,
    on which two different factors have exactly zero empirical MI and zero correlation."""
    axes = torch.meshgrid(*[torch.arange(n) for n in sizes], indexing="ij")
    v = torch.stack([a.flatten() for a in axes], 1).repeat(repeat, 1)
    return v[torch.randperm(len(v), generator=torch.Generator().manual_seed(seed))]


def noise(n: int, d: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def noise_mi_bound(n: int, bins: int, values: int, units: int) -> float:
    """A bound exceeded with probability <= ALPHA by the largest plug-in MI of ``units`` latents
    independent of a factor: 2 N I is asymptotically chi^2 with (bins - 1)(values - 1) degrees of
    freedom (the G-test), and a union bound covers the maximum."""
    return chi2.ppf(1 - ALPHA / units, (bins - 1) * (values - 1)) / (2 * n)


SIZES = (3, 4, 5, 6)


def test_entropy_of_uniform_factors_is_log_n():
    v = grid(SIZES, repeat=2)
    assert torch.allclose(entropy(v), torch.log(torch.tensor(SIZES, dtype=torch.float64)), atol=1e-12)


def test_discretize_puts_integer_codes_in_their_own_bins():
    z = torch.arange(21, dtype=torch.float64).unsqueeze(1)  # 21 values, 20 bins: the max joins the last
    assert discretize(z, 20).flatten().tolist() == [*range(20), 19]
    z = torch.arange(20, dtype=torch.float64).unsqueeze(1) * 0.37 - 2
    assert discretize(z, 20).flatten().tolist() == list(range(20))


def test_plug_in_mi_of_a_deterministic_pair_is_the_entropy():
    v = grid(SIZES, repeat=3)
    mi = mutual_information(v, v)
    assert torch.allclose(mi.diagonal(), entropy(v), atol=1e-12)
    off = mi - torch.diag(mi.diagonal())
    assert off.abs().max() < 1e-12  # a product design: other factors carry exactly nothing


def test_mig_is_one_for_a_perfect_code_up_to_the_noise_units():
    v = grid(SIZES, repeat=10)
    n, extra = len(v), 3
    z = torch.cat([v.double(), noise(n, extra)], 1)
    r = mig(z, v)
    assert r.top.tolist() == [0, 1, 2, 3]
    assert torch.allclose(r.mi.diagonal(), torch.log(torch.tensor(SIZES, dtype=torch.float64)), atol=1e-12)
    # The only thing below 1: each factor's runner-up is a noise unit with plug-in MI > 0.
    worst = max(noise_mi_bound(n, 20, k, extra) / math.log(k) for k in SIZES)
    assert 1 - worst <= r.score <= 1
    assert r.score < 1  # the plug-in bias is real


def test_mig_of_a_code_binned_coarser_than_the_factor_is_its_exact_discretized_value():
    v = grid((32, 3), repeat=4)
    z = torch.cat([v.double(), torch.zeros(len(v), 1)], 1)  # a constant unit carries nothing
    r = mig(z, v, bins=20)
    bins = torch.floor(torch.arange(32) * 20 / 31).long().clamp(max=19)  # where 0..31 fall
    p = torch.bincount(bins).double() / 32
    h_binned = float(-(p * p.log()).sum())
    assert r.gaps[0] == pytest.approx(h_binned / math.log(32), abs=1e-12)
    assert r.gaps[1] == pytest.approx(1.0, abs=1e-12)


def test_mig_when_one_latent_encodes_two_factors():
    # z0 = (v0, v1) jointly, z1 = v1: factor 0 keeps a gap of 1, factor 1 has two equally good latents
    # and a gap of 0, so MIG = 1/2 (up to noise units).
    v = grid((4, 5), repeat=40)
    n = len(v)
    z = torch.cat([(v[:, 0] * 5 + v[:, 1]).double().unsqueeze(1), v[:, 1:].double(), noise(n, 2)], 1)
    r = mig(z, v)
    assert r.gaps[1] == pytest.approx(0.0, abs=1e-12)
    assert 1 - noise_mi_bound(n, 20, 4, 2) / math.log(4) <= r.gaps[0] <= 1
    assert r.score == pytest.approx(0.5, abs=noise_mi_bound(n, 20, 4, 2) / math.log(4) / 2)
    # Merging pairs of a factor's values halves its information: I = log 2 of H = log 4.
    half = torch.cat([(v[:, :1] // 2).double(), noise(n, 1)], 1)
    assert mig(half, v[:, :1]).gaps[0] == pytest.approx(0.5, abs=noise_mi_bound(n, 20, 4, 1) / math.log(4))


def test_mig_of_independent_noise_is_within_the_plug_in_bias():
    v = grid(SIZES, repeat=10)
    d = 6
    r = mig(noise(len(v), d, seed=4), v)
    assert 0 <= r.score <= max(noise_mi_bound(len(v), 20, k, d) / math.log(k) for k in SIZES)


def test_sap_of_a_perfect_code():
    v = grid(SIZES, repeat=10)
    n, extra = len(v), 3
    z = torch.cat([v.double(), noise(n, extra)], 1)
    r = sap(z, v, categorical=[0])
    # Ordinal factors: R^2 = 1 on the own latent, exactly 0 on the other factors' latents; noise
    # units have N R^2 ~ chi^2_1.
    for k in (1, 2, 3):
        assert r.scores[k, k] == pytest.approx(1.0, abs=1e-12)
        assert r.scores[[j for j in range(4) if j != k], k].abs().max() < 1e-12
        assert 1 - chi2.ppf(1 - ALPHA / extra, 1) / n <= r.gaps[k] <= 1
    # The categorical factor: the own latent classifies the held-out half perfectly.
    assert r.scores[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert 1 - _chance_spread(n // 2, 3, extra + 3) <= r.gaps[0] <= 1


def _chance_spread(n_test: int, classes: int, units: int) -> float:
    """A bound on the adjusted balanced accuracy of ``units`` classifiers independent of the test
    labels: each class recall is a binomial proportion, so bacc has mean 1/C and standard deviation
    at most 1 / (2 sqrt(C n_min)), n_min = n_test / C for balanced classes; 5.5 s.d. with a union bound
    over units (probability < units * 2e-8), divided by the adjustment 1 - 1/C."""
    sd = 1 / (2 * math.sqrt(classes * (n_test / classes) * 0.9))  # 0.9: classes need not split evenly
    return 5.5 * sd / (1 - 1 / classes)


def test_sap_when_one_latent_mixes_two_factors():
    # z0 = standardized v1 + standardized v2 has R^2 = 1/2 with each; z1 = v2 alone. Factor 1's gap is
    # 1/2 (z0 against nothing), factor 2's is 1 - 1/2.
    v = grid((4, 5), repeat=40)
    s = (v.double() - v.double().mean(0)) / v.double().std(0)
    z = torch.stack([s[:, 0] + s[:, 1], s[:, 1]], 1)
    r = sap(z, v)
    assert r.scores[0].tolist() == pytest.approx([0.5, 0.5], abs=1e-12)
    assert r.gaps.tolist() == pytest.approx([0.5, 0.5], abs=1e-12)
    assert r.score == pytest.approx(0.5, abs=1e-12)


def test_sap_of_independent_noise_is_small():
    v = grid(SIZES, repeat=10)
    n, d = len(v), 6
    r = sap(noise(n, d, seed=4), v, categorical=[0])
    assert r.gaps[1:].max() <= chi2.ppf(1 - ALPHA / d, 1) / n
    assert r.gaps[0] <= 2 * _chance_spread(n // 2, 3, d)


def test_bad_input():
    v = grid((3, 4), repeat=2)
    z = torch.randn(len(v), 4)
    with pytest.raises(DataError, match=r"shape \(N, D\)"):
        mig(z[:, 0], v)
    with pytest.raises(DataError, match="rows but the representation has"):
        mig(z[:-1], v)
    with pytest.raises(DataError, match="single value"):
        mig(z, torch.cat([v, torch.zeros(len(v), 1, dtype=torch.long)], 1))
    bad = z.clone()
    bad[5, 2] = float("nan")
    with pytest.raises(DataError, match=r"NaN or infinity \(row 5, column 2\)"):
        mig(bad, v)
    with pytest.raises(DataError, match="NaN or infinity"):
        sap(bad, v)
    with pytest.raises(DataError, match="at least two latents"):
        mig(z[:, :1], v)
    with pytest.raises(DataError, match="at least two latents"):
        sap(z[:, :1], v)
    with pytest.raises(ConfigError, match="bins must be an integer >= 2"):
        mig(z, v, bins=1)
    with pytest.raises(ConfigError, match="categorical"):
        sap(z, v, categorical=[2])
    with pytest.raises(ConfigError, match="train_fraction"):
        sap(z, v, train_fraction=1.0)
    lone = v.clone()
    lone[:, 0] = 0
    lone[7, 0] = 1  # one example of class 1 cannot be in both the fitting and the held-out part
    with pytest.raises(DataError, match="class missing from the (fitting|held-out) part"):
        sap(z, lone, categorical=[0])
