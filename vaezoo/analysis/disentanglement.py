"""Disentanglement scores of a representation against known generative factors: MIG and SAP.

Both take a representation ``z`` of shape ``(N, D)`` (usually the guide's means E_q[z | x], from
:func:`representation`) and the true factors ``v`` of shape ``(N, K)`` of the same N inputs (for
the generated sprites, :mod:`vaezoo.sprites`), and return a score in [0, 1] with its parts.

**Mutual information gap** (Chen et al. 2018). For each factor k, with j(k) the latent sharing the
most information with it,

    MIG = 1/K sum_k ( I(z_j(k); v_k) - max_{j != j(k)} I(z_j; v_k) ) / H(v_k).

Estimator: each latent's values are cut into ``bins`` equal-width bins between its minimum and
maximum, and I and H are the plug-in (empirical-frequency) values of the discrete variables, in
nats: the estimator of Locatello et al. (2019)'s study, which uses 20 bins. We use it rather than
Chen et al.'s own estimator (log q(z_j) by a sum over the whole data set, with q's samples) because
it needs only a deterministic code, so it scores any representation, and it is exactly computable on
constructed cases (the tests compare against those values). Its known biases: a latent that encodes
a factor with more values than ``bins`` is capped below H(v_k) by the binning, and the plug-in MI of
independent variables is positive, 2 N I ~ chi^2 with (bins - 1)(values - 1) degrees of freedom
(the G-test), so an uninformative representation scores slightly above 0.

**Separated attribute predictability** (SAP, Kumar et al. 2018). For each factor k and latent j a
score S_jk of how well z_j alone predicts v_k; SAP is the mean over factors of the difference between
the two largest scores of each factor. Ordinal factors score by R^2 of the linear regression of v_k
on z_j (the squared correlation, as in the paper). For categorical factors the paper uses the
balanced accuracy of a threshold classifier; we generalize it to several classes with the majority
class of each of z_j's ``bins`` bins, fitted on a random ``train_fraction`` of the data and scored
on the rest, and report the *adjusted* balanced accuracy max(0, (bacc - 1/C) / (1 - 1/C)), 0 at or
below chance and 1 when perfect, so that both kinds of factor share the R^2 scale. We chose SAP as
the second metric because it is cheap, needs no trained regressor (unlike DCI) and no access to the
simulator (unlike the FactorVAE metric), and penalizes what MIG also penalizes (a factor spread over
several latents) with a different notion of information (linear predictability, not binned MI).
A cyclic factor (orientation) scored as ordinal is linear in its index, so a code on the circle
scores low on it.

References:
    - Chen, Li, Grosse & Duvenaud (2018), Isolating Sources of Disentanglement in Variational
      Autoencoders, NeurIPS.
    - Kumar, Sattigeri & Balakrishnan (2018), Variational Inference of Disentangled Latent Concepts
      from Unlabeled Observations, ICLR.
    - Locatello et al. (2019), Challenging Common Assumptions in the Unsupervised Learning of
      Disentangled Representations, ICML (the binned MIG estimator with 20 bins).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vaezoo.analysis.diagnostics import posterior_means
from vaezoo.errors import ConfigError, DataError


def _codes(z, name: str) -> torch.Tensor:
    z = torch.as_tensor(z)
    if z.dim() != 2 or z.shape[0] < 2 or z.shape[1] < 1:
        raise DataError(f"{name} must have shape (N, D) with N >= 2 datapoints, got {tuple(z.shape)}")
    if z.is_complex():
        raise DataError(f"{name} has complex dtype {z.dtype}; pass real values")
    z = z.double()
    bad = ~torch.isfinite(z)
    if bad.any():
        i, j = (int(t) for t in bad.nonzero()[0])
        raise DataError(
            f"{name} holds NaN or infinity (row {i}, column {j}); a representation must be finite"
        )
    return z


def _labels(v, n: int, name: str = "factors") -> torch.Tensor:
    """Factor values ``(N, K)`` as class labels ``0 .. values - 1`` per column, each with >= 2 values."""
    v = torch.as_tensor(v)
    if v.dim() == 1:
        v = v.unsqueeze(1)
    if v.dim() != 2 or v.shape[1] < 1:
        raise DataError(f"{name} must have shape (N, K), got {tuple(v.shape)}")
    if v.shape[0] != n:
        raise DataError(
            f"{name} has {v.shape[0]} rows but the representation has {n}; "
            "pass the factors of the same inputs"
        )
    if v.is_floating_point() and not torch.isfinite(v).all():
        raise DataError(f"{name} holds NaN or infinity; factors must be finite")
    cols = []
    for k in range(v.shape[1]):
        _, labels = torch.unique(v[:, k], return_inverse=True)
        if int(labels.max()) == 0:
            raise DataError(
                f"{name} column {k} takes a single value, so it has no entropy and no score; "
                "drop constant factors before scoring"
            )
        cols.append(labels)
    return torch.stack(cols, 1)


def _check_bins(bins: int) -> int:
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ConfigError(f"bins must be an integer >= 2, got {bins!r}", "bins", bins, "an integer >= 2")
    return bins


def discretize(z, bins: int = 20) -> torch.Tensor:
    """Each column of ``z`` ``(N, D)`` cut into ``bins`` equal-width bins between its min and max.

    Bin ``floor((z - min) * bins / (max - min))``, the maximum in the last bin; a constant column is
    all in bin 0.
    """
    z, bins = _codes(z, "z"), _check_bins(bins)
    lo, hi = z.min(0).values, z.max(0).values
    width = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    # Multiply before dividing: integer-valued codes then land in their bins exactly.
    return ((z - lo) * bins / width).floor().long().clamp(0, bins - 1)


def entropy(v) -> torch.Tensor:
    """Plug-in entropy (nats) of each column of discrete values ``v`` ``(N,)`` or ``(N, K)``."""
    v = torch.as_tensor(v)
    v = v.unsqueeze(1) if v.dim() == 1 else v
    out = []
    for k in range(v.shape[1]):
        p = torch.unique(v[:, k], return_counts=True)[1].double() / v.shape[0]
        out.append(-(p * p.log()).sum())
    return torch.stack(out)


def mutual_information(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Plug-in mutual information (nats) of every column of labels ``a`` ``(N, D)`` with every column
    of labels ``b`` ``(N, K)`` (values ``0 .. n - 1``): a ``(D, K)`` matrix."""
    n = a.shape[0]
    out = torch.zeros(a.shape[1], b.shape[1], dtype=torch.float64)
    for j in range(a.shape[1]):
        na = int(a[:, j].max()) + 1
        for k in range(b.shape[1]):
            nb = int(b[:, k].max()) + 1
            joint = torch.bincount(a[:, j] * nb + b[:, k], minlength=na * nb).reshape(na, nb).double() / n
            pa, pb = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
            nz = joint > 0
            out[j, k] = (joint[nz] * (joint[nz] / (pa * pb).expand_as(joint)[nz]).log()).sum()
    return out


def _top_two_gap(scores: torch.Tensor) -> torch.Tensor:
    """Per column of ``scores`` ``(D, K)``: the largest entry minus the second largest."""
    top = scores.topk(2, dim=0).values
    return top[0] - top[1]


@dataclass(frozen=True)
class MIGResult:
    """``score``: MIG; ``gaps``: each factor's normalized gap ``(K,)``; ``mi``: I(z_j; v_k) ``(D, K)``
    in nats; ``entropies``: H(v_k) ``(K,)``; ``top``: the latent j(k) of each factor."""

    score: float
    gaps: torch.Tensor
    mi: torch.Tensor
    entropies: torch.Tensor
    top: torch.Tensor


def mig(z, factors, bins: int = 20) -> MIGResult:
    """The mutual information gap of representation ``z`` ``(N, D)`` for ``factors`` ``(N, K)``.

    See the module docstring for the estimator.

    :raises DataError: for shapes that do not match, fewer than two latents, a non-finite ``z``
        or a factor that takes a single value.
    """
    z = _codes(z, "z")
    if z.shape[1] < 2:
        raise DataError(f"MIG needs at least two latents to form a gap, got z of shape {tuple(z.shape)}")
    v = _labels(factors, z.shape[0])
    mi = mutual_information(discretize(z, bins), v)
    h = entropy(v)
    gaps = _top_two_gap(mi) / h
    return MIGResult(float(gaps.mean()), gaps, mi, h, mi.argmax(0))


@dataclass(frozen=True)
class SAPResult:
    """``score``: SAP; ``gaps``: each factor's gap ``(K,)``; ``scores``: S_jk ``(D, K)`` (R^2 for
    ordinal factors, adjusted balanced accuracy on held-out data for categorical ones)."""

    score: float
    gaps: torch.Tensor
    scores: torch.Tensor


def _r_squared(z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Squared correlation of every column of ``z`` with every column of ``v``; 0 for a constant z_j."""
    zc, vc = z - z.mean(0), v - v.mean(0)
    cov = zc.T @ vc
    var = (zc**2).sum(0).unsqueeze(1) * (vc**2).sum(0).unsqueeze(0)
    return torch.where(var > 0, cov**2 / var.clamp_min(1e-300), torch.zeros_like(cov))


def _balanced_accuracy(zb: torch.Tensor, y: torch.Tensor, fit: torch.Tensor, bins: int) -> torch.Tensor:
    """Adjusted held-out balanced accuracy of the majority class per bin of each column of ``zb``,
    fitted on the rows where ``fit`` is True and scored on the others."""
    classes = int(y.max()) + 1
    train_y, test_y = y[fit], y[~fit]
    zb_train, zb_test = zb[fit], zb[~fit]
    present = torch.bincount(test_y, minlength=classes) > 0
    out = torch.zeros(zb.shape[1], dtype=torch.float64)
    for j in range(zb.shape[1]):
        counts = torch.bincount(zb_train[:, j] * classes + train_y, minlength=bins * classes)
        guess = counts.reshape(bins, classes).argmax(1)  # an empty bin guesses class 0
        hit = (guess[zb_test[:, j]] == test_y).double()
        recall = torch.zeros(classes, dtype=torch.float64).index_add_(0, test_y, hit)
        recall = recall[present] / torch.bincount(test_y, minlength=classes)[present]
        chance = 1 / int(present.sum())
        # Below chance (a held-out fluke of an uninformative latent) counts as no information.
        out[j] = max(float(recall.mean() - chance) / (1 - chance), 0.0)
    return out


def sap(
    z, factors, categorical: Sequence[int] = (), bins: int = 20, train_fraction: float = 0.5, seed: int = 0
) -> SAPResult:
    """The SAP score of representation ``z`` ``(N, D)`` for ``factors`` ``(N, K)``.

    ``categorical`` lists the factor columns scored by classification (held-out adjusted balanced
    accuracy; a random ``train_fraction`` of the rows, drawn with ``seed``, for fitting); the others
    are ordinal and scored by R^2 of a linear fit on all rows.

    :raises DataError: as :func:`mig`, and for a categorical factor with a class absent from the
        fitting part or from the held-out part.
    """
    z = _codes(z, "z")
    if z.shape[1] < 2:
        raise DataError(f"SAP needs at least two latents to form a gap, got z of shape {tuple(z.shape)}")
    v = _labels(factors, z.shape[0])
    bins = _check_bins(bins)
    bad = [k for k in categorical if not (isinstance(k, int) and 0 <= k < v.shape[1])]
    if bad:
        raise ConfigError(
            f"categorical must list factor columns 0 .. {v.shape[1] - 1}, got {bad}", "categorical"
        )
    if not 0 < train_fraction < 1:
        raise ConfigError(f"train_fraction must be in (0, 1), got {train_fraction}", "train_fraction")
    order = torch.randperm(z.shape[0], generator=torch.Generator().manual_seed(seed))
    fit = torch.zeros(z.shape[0], dtype=torch.bool)
    fit[order[: int(round(train_fraction * z.shape[0]))]] = True
    scores = _r_squared(z, torch.as_tensor(factors).reshape(z.shape[0], -1).double())
    if categorical:
        zb = discretize(z, bins)
        for k in categorical:
            classes = int(v[:, k].max()) + 1
            for part, rows in (("fitting", fit), ("held-out", ~fit)):
                if len(torch.unique(v[rows, k])) < classes:
                    raise DataError(
                        f"categorical factor column {k} has a class missing from the {part} part "
                        f"({int(rows.sum())} of {len(fit)} rows, train_fraction={train_fraction}); "
                        "pass more data (each class needs examples in both parts)"
                    )
            scores[:, k] = _balanced_accuracy(zb, v[:, k], fit, bins)
    gaps = _top_two_gap(scores)
    return SAPResult(float(gaps.mean()), gaps, scores)


def representation(model, guide, data, batch_size: int = 500) -> torch.Tensor:
    """E_q[z | x] of every input of ``data``, all latent sites side by side: ``(N, D)``.

    The deterministic code the scores are computed on (the guide's means, as in Locatello et al.).
    """
    means = posterior_means(model, guide, data, num_particles=1, batch_size=batch_size).mean
    return torch.cat([m.reshape(m.shape[0], -1) for m in means.values()], 1)


__all__ = [
    "MIGResult",
    "SAPResult",
    "discretize",
    "entropy",
    "mig",
    "mutual_information",
    "representation",
    "sap",
]
