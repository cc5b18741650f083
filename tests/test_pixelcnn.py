"""The PixelCNN network: the autoregressive property checked exactly with autograd over every pixel,
its receptive field against the measured dependencies, conditioning, and bad input."""

import pytest
import torch
from torch.autograd.functional import jacobian

from vaezoo.errors import ConfigError, DataError
from vaezoo.nets import MaskedConv2d, PixelCNN, receptive_field

CONDITIONS = {
    "none": ({}, lambda n, h, w: None),
    "vector": ({"condition_dim": 3}, lambda n, h, w: torch.randn(n, 3, dtype=torch.double)),
    "map": ({"condition_channels": 2}, lambda n, h, w: torch.randn(n, 2, h, w, dtype=torch.double)),
}


def dependencies(net: PixelCNN, side: int, condition: torch.Tensor | None = None) -> torch.Tensor:
    """``D[p, q]``: whether any output channel at raster pixel p has a nonzero gradient wrt pixel q."""
    x = torch.randn(1, net.channels_in, side, side, dtype=torch.double)
    jac = jacobian(lambda v: net(v, condition)[0], x)  # (out, H, W, 1, C, H, W)
    return (jac != 0).any(0).any(-3).reshape(side * side, side * side)


def predicted(net: PixelCNN, side: int) -> torch.Tensor:
    """The dependencies :attr:`PixelCNN.field` says there are."""
    pixels = [divmod(p, side) for p in range(side * side)]
    return torch.tensor([[net.field.sees(r - s, c - d) for s, c in pixels] for r, d in pixels])


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("kind", CONDITIONS)
def test_output_at_a_pixel_depends_on_earlier_pixels_only(layers, kind):
    torch.manual_seed(layers)
    kwargs, make = CONDITIONS[kind]
    side = 6
    net = PixelCNN(2, 8, layers, 3, 3, **kwargs).double()
    dep = dependencies(net, side, make(1, side, side))
    later_or_same = torch.ones(side**2, side**2, dtype=torch.bool).triu()
    assert not dep[later_or_same].any(), "an output sees its own pixel or a later one"
    # Every pixel but the first sees the one to its left, or (first in its row) the one above.
    assert dep[1:].any(1).all()


@pytest.mark.parametrize(("layers", "kernel_size", "mask_types"),
                         [(1, 3, None), (2, 3, None), (3, 3, None), (2, 5, None), (3, 3, "AAB")])
def test_receptive_field_is_the_measured_dependency_set(layers, kernel_size, mask_types):
    torch.manual_seed(0)
    side = 8
    net = PixelCNN(1, 6, layers, kernel_size, 1, mask_types=mask_types).double()
    assert torch.equal(dependencies(net, side), predicted(net, side))


def test_receptive_field_counts_and_blind_spot():
    # Two 3x3 layers, by hand: own row 2 to the left; 1 row up -2..+1; 2 rows up -2..+2.
    field = receptive_field(2, 3)
    assert (field.up, field.left, field.right(1), field.right(2)) == (2, 2, 1, 2)
    assert field.size == 2 + 4 + 5
    assert not field.sees(1, 2) and field.sees(2, 2), "the blind spot above-right"
    assert not field.sees(0, 0) and field.sees(0, -1)
    assert receptive_field(0, 3).size == 0 and not receptive_field(0, 3).sees(1, 0)
    assert [receptive_field(n, 3).size for n in range(1, 5)] == [4, 11, 21, 34]


def test_no_layers_means_no_autoregressive_context():
    torch.manual_seed(0)
    net = PixelCNN(1, 8, 0, 3, 2, condition_channels=2).double()
    x = torch.randn(4, 1, 5, 5, dtype=torch.double, requires_grad=True)
    h = torch.randn(4, 2, 5, 5, dtype=torch.double, requires_grad=True)
    y = net(x, h)
    gx, gh = torch.autograd.grad(y.sum(), (x, h), allow_unused=True)
    assert gx is None or not gx.any()
    assert gh.abs().sum() > 0
    # Pixel by pixel: output at p is a function of the condition at p alone.
    assert torch.allclose(net(x, h)[..., 2, 3], net(torch.randn_like(x), h)[..., 2, 3])
    unconditioned = PixelCNN(1, 8, 0, 3, 2)(torch.randn(3, 1, 4, 4))
    assert torch.equal(unconditioned, unconditioned[:1, :, :1, :1].expand_as(unconditioned))


@pytest.mark.parametrize("kind", ["vector", "map"])
def test_output_changes_with_the_condition_and_has_the_right_shape(kind):
    torch.manual_seed(0)
    kwargs, make = CONDITIONS[kind]
    net = PixelCNN(1, 8, 2, 3, 4, **kwargs).double()
    x = torch.randn(5, 1, 6, 7, dtype=torch.double)
    h1, h2 = make(5, 6, 7), make(5, 6, 7)
    y1, y2 = net(x, h1), net(x, h2)
    assert y1.shape == (5, 4, 6, 7)
    assert (y1 - y2).abs().amin(dim=(1, 2, 3)).gt(0).all(), "some image ignores its condition"


@pytest.mark.parametrize("kind", ["vector", "map"])
def test_leading_dimensions_broadcast_like_particles(kind):
    torch.manual_seed(0)
    kwargs, make = CONDITIONS[kind]
    net = PixelCNN(1, 8, 2, 3, 2, **kwargs).double()
    x = torch.randn(3, 1, 5, 5, dtype=torch.double)
    h = torch.stack([make(3, 5, 5) for _ in range(4)])  # (K=4, N=3, ...)
    y = net(x, h)
    assert y.shape == (4, 3, 2, 5, 5)
    for k in range(4):
        torch.testing.assert_close(y[k], net(x, h[k]))


def test_bad_mask_types_are_config_errors():
    with pytest.raises(ConfigError, match="'A'.*'B'"):
        MaskedConv2d(1, 4, 3, "C")
    with pytest.raises(ConfigError, match="must be 'A'.*see that pixel"):
        PixelCNN(1, 8, 2, 3, 1, mask_types=["B", "B"])
    with pytest.raises(ConfigError, match="each of the 2 layers"):
        PixelCNN(1, 8, 2, 3, 1, mask_types=["A", "C"])
    with pytest.raises(ConfigError, match="odd and >= 3"):
        PixelCNN(1, 8, 2, 4, 1)
    with pytest.raises(ConfigError, match="not both"):
        PixelCNN(1, 8, 2, 3, 1, condition_dim=2, condition_channels=2)


def test_bad_conditions_are_data_errors():
    vector = PixelCNN(1, 4, 1, 3, 1, condition_dim=3)
    spatial = PixelCNN(1, 4, 1, 3, 1, condition_channels=2)
    x = torch.randn(2, 1, 5, 5)
    with pytest.raises(DataError, match=r"condition must be \(\.\.\., 3\)"):
        vector(x, torch.randn(2, 4))
    with pytest.raises(DataError, match=r"condition must be \(\.\.\., 2, 5, 5\)"):
        spatial(x, torch.randn(2, 2, 4, 4))
    with pytest.raises(DataError, match="built with a condition"):
        vector(x)
    with pytest.raises(DataError, match="built without a condition"):
        PixelCNN(1, 4, 1, 3, 1)(x, torch.randn(2, 3))
    with pytest.raises(DataError, match="do not broadcast"):
        vector(x, torch.randn(3, 3))
    with pytest.raises(DataError, match=r"input must be \(\.\.\., 1, H, W\)"):
        vector(torch.randn(2, 2, 5, 5), torch.randn(2, 3))
