"""Sequence data for recurrent models: one padded tensor, with NaN marking the steps past each end.

Representation: a batch of sequences is a float tensor of shape ``(N, T, D)``. Sequence ``i`` of
length ``L_i <= T`` fills steps ``0 .. L_i - 1``; its steps ``L_i .. T - 1`` are NaN in every
feature. The mask is therefore part of the data (:func:`step_mask`), so a sequence data set is an
ordinary tensor that :func:`~vaezoo.inference.fit`, the objectives,
:func:`~vaezoo.inference.log_likelihood` and the gap study pass around unchanged, and a model
derives its per-step mask from ``x`` itself. :func:`pad` builds such a tensor from sequences of
different lengths. Real data never hold NaN: a NaN inside a sequence (a partly NaN step, or a NaN step
followed by a real one) is a :class:`~vaezoo.errors.DataError` (:func:`check_padding`), as is a
sequence of length 0.

Data sets here: :func:`mnist_rows` (each binarized MNIST image read as 28 steps of 28 pixels, so
nats per image compare with the image models), :func:`synthetic` (a tiny binary set for tests), and
the Bach chorales in :mod:`vaezoo.chorales`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from vaezoo.errors import DataError

PAD = math.nan


def pad(sequences: Sequence, length: int | None = None) -> torch.Tensor:
    """Stack sequences of shapes ``(L_i, D)`` into one ``(N, T, D)`` tensor, NaN past each end.

    ``T`` is ``length`` if given (at least the longest sequence), else the longest ``L_i``.

    :raises DataError: for no sequences, a sequence of length 0, features that differ in size, or
        a sequence longer than ``length``.
    """
    seqs = [torch.as_tensor(s, dtype=torch.get_default_dtype()) for s in sequences]
    if not seqs:
        raise DataError("pad() got no sequences; pass at least one of shape (length, features)")
    bad = [i for i, s in enumerate(seqs) if s.dim() != 2]
    if bad:
        raise DataError(
            f"sequence(s) {bad[:5]} are not 2-D (length, features); reshape each to (length, features)"
        )
    empty = [i for i, s in enumerate(seqs) if len(s) == 0]
    if empty:
        raise DataError(
            f"sequence(s) {empty[:5]} have length 0; drop them (a sequence needs at least one step)"
        )
    dims = sorted({s.shape[1] for s in seqs})
    if len(dims) > 1:
        raise DataError(
            f"sequences have different feature sizes {dims}; every step must have the same features"
        )
    longest = max(len(s) for s in seqs)
    t = longest if length is None else length
    if t < longest:
        raise DataError(f"pad(length={length}) is shorter than the longest sequence ({longest} steps)")
    out = torch.full((len(seqs), t, dims[0]), PAD)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def step_mask(x: torch.Tensor) -> torch.Tensor:
    """``(N, T)`` booleans, True at the steps that hold data (not NaN padding)."""
    return ~torch.isnan(x).all(-1)


def lengths(x: torch.Tensor) -> torch.Tensor:
    """Length of every sequence of a padded batch, shape ``(N,)``."""
    return step_mask(x).sum(-1)


def check_padding(x: torch.Tensor) -> torch.Tensor:
    """The step mask of ``x`` after checking that NaN appears only as whole trailing steps.

    :raises DataError: naming the first offending sequence: NaN inside a step, a NaN step before
        a real one, or a sequence of length 0.
    """
    nan = torch.isnan(x)
    partial = nan.any(-1) & ~nan.all(-1)
    if partial.any():
        i, t = (int(v) for v in partial.nonzero()[0])
        raise DataError(
            f"sequence {i} has NaN in some features of step {t}; NaN may only mark whole padding steps "
            "after a sequence's end: clean the data"
        )
    mask = ~nan.all(-1)
    # A real step after a padding step: the mask must be non-increasing along time.
    gap = mask[:, 1:] & ~mask[:, :-1]
    if gap.any():
        i, t = (int(v) for v in gap.nonzero()[0])
        raise DataError(
            f"sequence {i} has a NaN step before step {t + 1}, which holds data; NaN marks only the steps "
            "after a sequence's end: clean the data or pad with vaezoo.sequences.pad"
        )
    empty = ~mask.any(-1)
    if empty.any():
        i = int(empty.nonzero()[0])
        raise DataError(
            f"sequence {i} has length 0 (every step is NaN padding); drop it: "
            "a sequence needs at least one step"
        )
    return mask


def mnist_rows(split: str = "test", binarize: str = "static", seed: int = 1234, **kwargs) -> torch.Tensor:
    """Binarized MNIST as sequences of 28 rows of 28 pixels, shape ``(N, 28, 28)``.

    The images of :func:`vaezoo.data.load` (same ``split``, ``binarize``, ``seed`` and keyword
    arguments), drawn once: with ``binarize="static"`` (the default, seed 1234 as in the README's
    test set) the same bits every call. A sequence's log-likelihood is then the image's, in nats
    per image.
    """
    from vaezoo.data import load

    images = load("mnist", split, binarize=binarize, seed=seed, **kwargs)
    x = images[torch.arange(len(images))][0]
    return x.reshape(len(images), 28, 28)


def synthetic(
    n: int = 64, length: int = 8, features: int = 5, seed: int = 0, ragged: bool = True
) -> torch.Tensor:
    """A tiny binary sequence set for tests: a noisy shift register, NaN-padded when ``ragged``.

    Each step copies the previous step's pattern shifted by one feature, with bits flipped with
    probability 0.1; with ``ragged`` the lengths are drawn uniformly from ``1 .. length``.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(n, length, features)
    x[:, 0] = torch.bernoulli(torch.full((n, features), 0.5), generator=g)
    for t in range(1, length):
        flip = torch.bernoulli(torch.full((n, features), 0.1), generator=g)
        x[:, t] = (x[:, t - 1].roll(1, -1) + flip) % 2
    if ragged:
        lens = torch.randint(1, length + 1, (n,), generator=g)
        x[torch.arange(length) >= lens[:, None]] = PAD
    return x


__all__ = ["PAD", "check_padding", "lengths", "mnist_rows", "pad", "step_mask", "synthetic"]
