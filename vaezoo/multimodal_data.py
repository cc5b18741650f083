"""The bimodal data sets of the MVAE study, built from the image data sets of :mod:`vaezoo.data`.

- ``"mnist-label"`` / ``"fashion-mnist-label"``: x an image, y its class label.
- ``"mnist-flip"``: x an MNIST digit, y the same digit flipped upside down. Each view is binarized
  on its own (dynamically: a fresh draw per view and epoch), so the two are conditionally
  independent noisy views of one grey-level digit, as the model assumes given z.

``supervision`` < 1 keeps both modalities for that fraction of the training pairs and one modality
(alternately x and y) for the rest, the weakly supervised setting of Wu & Goodman (2018).
"""

from __future__ import annotations

import os
from typing import Literal

import torch

from vaezoo.data import Binarize, ImageData, load
from vaezoo.errors import DataError
from vaezoo.multimodal import MultimodalDataset

PAIRS = ("mnist-label", "fashion-mnist-label", "mnist-flip")


def presence(n: int, supervision: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """Presence masks of ``n`` pairs: a random ``supervision`` fraction complete, the rest x-only or
    y-only alternately."""
    if not 0 < supervision <= 1:
        raise DataError(f"supervision must be in (0, 1], got {supervision}")
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    complete = torch.zeros(n, dtype=torch.bool)
    complete[order[: round(supervision * n)]] = True
    alone = (~complete).nonzero().flatten()
    x = complete.clone()
    y = complete.clone()
    x[alone[0::2]] = True
    y[alone[1::2]] = True
    return {"x": x, "y": y}


def load_pair(
    name: Literal["mnist-label", "fashion-mnist-label", "mnist-flip"],
    split: Literal["train", "test"] = "train",
    binarize: Binarize = "dynamic",
    supervision: float = 1.0,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> MultimodalDataset:
    """The bimodal data set ``name`` (see the module docstring), keyed ``"x"`` and ``"y"``."""
    if name not in PAIRS:
        raise DataError(f"unknown multimodal data set {name!r}; choose one of {', '.join(PAIRS)}")
    images = load(
        "fashion-mnist" if name.startswith("fashion") else "mnist", split, binarize, data_dir, seed=seed
    )
    if name.endswith("label"):
        sources = {"x": images, "y": images.labels.long()}
    else:
        flipped = ImageData(images.images.flip(-2), images.labels, binarize, seed + 1)
        sources = {"x": images, "y": flipped}
    mask = presence(len(images), supervision, seed) if supervision < 1 else None
    return MultimodalDataset(sources, mask)


__all__ = ["PAIRS", "load_pair", "presence"]
