"""Data handed to the Python API, checked once where it comes in.

:func:`~vaezoo.inference.fit` and the estimators accept a tensor, an
:class:`~vaezoo.data.ImageData`, any map-style dataset or a DataLoader. A tensor is brought to the
model's floating dtype here (images often arrive as ``uint8``, ``bool`` or ``float64``), so a
mismatch never surfaces as a matrix-multiply error deep inside torch; empty data, NaN and, for a
Bernoulli likelihood, values outside {0, 1} are refused with a message naming the argument.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from vaezoo.errors import DataError


def float_dtype(model) -> torch.dtype:
    """The dtype of ``model``'s floating parameters (the default dtype if it has none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def check_data(model, data, name: str = "data"):
    """``data`` ready for ``model``: tensors converted to its dtype and checked in full; others sized.

    A model with a ``prepare_data(data)`` method (one whose data are not a single tensor) converts
    and checks data other than tensors and DataLoaders itself.

    :raises DataError: naming ``name`` when ``data`` is empty, of an unusable type or dtype, or
        not valid for the model (shape, NaN, range; see the model's ``check_x``).
    """
    prepare = getattr(model, "prepare_data", None)
    if callable(prepare) and not isinstance(data, (torch.Tensor, DataLoader)):
        # A model whose data are not one tensor (multimodal batches) converts and checks them itself.
        try:
            return prepare(data)
        except DataError as e:
            raise DataError(f"{name}: {e}") from None
    if isinstance(data, DataLoader) or (isinstance(data, Dataset) and not isinstance(data, torch.Tensor)):
        if len(data) == 0:
            raise DataError(f"{name} is empty; pass at least one datapoint")
        return data
    if isinstance(data, (list, tuple)) and data and all(isinstance(d, torch.Tensor) for d in data):
        shapes = sorted({tuple(d.shape) for d in data})
        if len(shapes) > 1:
            raise DataError(
                f"{name} is a list of tensors of different shapes {shapes[:3]}; stack them into one tensor. "
                "Sequences of different lengths: vaezoo.sequences.pad(seqs) pads them to one (N, T, D) "
                "tensor with NaN marking the steps past each end"
            )
        data = torch.stack(list(data))
    if not isinstance(data, torch.Tensor):
        try:
            data = torch.as_tensor(data)
        except (TypeError, ValueError, RuntimeError):
            raise DataError(
                f"{name} must be a tensor, an ImageData, a dataset or a DataLoader, got {type(data).__name__}"
            ) from None
    if data.is_complex():
        raise DataError(f"{name} has complex dtype {data.dtype}; pass real values")
    if data.dim() == 0 or len(data) == 0:
        raise DataError(f"{name} is empty (shape {tuple(data.shape)}); pass at least one datapoint")
    dtype = float_dtype(model)
    if data.dtype != dtype:
        data = data.to(dtype)
    if callable(getattr(model, "check_x", None)):
        try:
            model.check_x(data, full=True)
        except DataError as e:
            raise DataError(f"{name}: {e}") from None
    return data
