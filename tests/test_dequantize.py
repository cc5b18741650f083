"""Uniform dequantization of 8-bit images and the bits-per-dimension conversion (vaezoo.data)."""

import math

import pytest
import torch

from vaezoo import DataError
from vaezoo.data import ImageData, bits_per_dim


def test_dequantized_pixels_lie_in_their_grey_levels_cell_and_are_redrawn():
    images = torch.randint(0, 256, (10, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = ImageData(images, torch.zeros(10), binarize="dequantize")
    x, _ = data[torch.arange(10)]
    assert x.shape == (10, 1, 5, 5) and x.dtype == torch.float32
    assert torch.equal(torch.floor(x * 256).to(torch.uint8), images.unsqueeze(1))
    again, _ = data[torch.arange(10)]
    assert not torch.equal(x, again)  # fresh noise each time an image is served
    # The noise is uniform on the cell: its mean over 250 pixels is 1/2 within 4 standard errors.
    u = (x * 256 - images.unsqueeze(1).float()).flatten()
    assert abs(u.mean().item() - 0.5) < 4 * math.sqrt(1 / 12 / u.numel())


def test_bits_per_dim_against_hand_computation():
    # A density uniform on [0, 1]^D puts 1/256 of its mass on each grey level: 8 bits exactly.
    assert bits_per_dim(0.0, 784).item() == pytest.approx(8.0, rel=1e-15)
    log_p = torch.tensor([-1000.0, 250.5])
    want = [(-(v - 784 * math.log(256))) / (784 * math.log(2)) for v in log_p.tolist()]
    assert bits_per_dim(log_p, 784).tolist() == pytest.approx(want, rel=1e-15)
    assert bits_per_dim(0.0, 10, levels=2).item() == pytest.approx(1.0)


def test_bad_arguments():
    with pytest.raises(DataError, match="num_dims"):
        bits_per_dim(0.0, 0)
    with pytest.raises(DataError, match="dequantize"):
        ImageData(torch.zeros(2, 3, 3, dtype=torch.uint8), torch.zeros(2), binarize="dequantise")
