"""The generated sprites against geometric truth: indices, exact symmetries, areas and positions."""

import hashlib
import json
import math

import pytest
import torch

from vaezoo import data, sprites
from vaezoo.errors import DataError

SIZES = sprites.FACTOR_SIZES


def one(shape=0, scale=5, orientation=0, x=16, y=16) -> torch.Tensor:
    return sprites.render(torch.tensor([[shape, scale, orientation, x, y]]))[0]


def test_encode_decode_round_trip_and_order():
    assert sprites.N_IMAGES == 737280
    every = torch.arange(sprites.N_IMAGES)
    f = sprites.decode(every)
    assert torch.equal(sprites.encode(f), every)
    # Mixed radix with pos_y fastest, shape slowest, and each factor covers its full range.
    assert f[1].tolist() == [0, 0, 0, 0, 1] and f[32].tolist() == [0, 0, 0, 1, 0]
    assert f[-1].tolist() == [s - 1 for s in SIZES]
    assert [len(torch.unique(f[:, k])) for k in range(5)] == list(SIZES)


def test_same_index_gives_the_same_image_bit_for_bit():
    index = sprites.sample(300, seed=3)
    a, b = sprites.images(index), sprites.images(index.flip(0)).flip(0)
    assert torch.equal(a, b)
    # A digest of a fixed subset pins the data set's definition: any change to the generator shows here.
    digest = hashlib.sha256(sprites.pack(sprites.images(sprites.sample(1000, seed=0))).numpy().tobytes())
    assert digest.hexdigest()[:16] == DIGEST


DIGEST = "9490b07f387a1cbe"  # recorded when the generator was written; change only with the definition


def test_windowed_render_equals_full_frame_rasterization():
    f = sprites.decode(sprites.sample(400, seed=1))
    v = sprites.factor_values()
    period = 40 // torch.tensor(sprites.SYMMETRY)
    angle = 2 * math.pi * (f[:, 2] % period[f[:, 0]]).double() / 40
    cos, sin = torch.cos(angle), torch.sin(angle)
    cos[cos.abs() < 1e-12], sin[sin.abs() < 1e-12] = 0.0, 0.0
    centre = v["pos_x"][f[:, 3]], v["pos_y"][f[:, 4]]
    full = sprites.rasterize(f[:, 0], 12 * v["scale"][f[:, 1]], cos, sin, *centre)
    assert torch.equal(full, sprites.render(f))


def test_square_quarter_turn_and_ellipse_half_turn_are_the_same_image():
    for k in range(10):
        assert torch.equal(one(0, 3, k, 7, 20), one(0, 3, k + 10, 7, 20))
        assert torch.equal(one(0, 3, k, 7, 20), one(0, 3, k + 30, 7, 20))
    for k in range(20):
        assert torch.equal(one(1, 4, k, 30, 2), one(1, 4, k + 20, 30, 2))
    # ... while other turns change them, and the heart has no rotational symmetry.
    assert not torch.equal(one(0, 5, 0), one(0, 5, 5))
    assert not torch.equal(one(1, 5, 0), one(1, 5, 10))
    assert not torch.equal(one(2, 5, 0), one(2, 5, 20))


def test_rotation_is_a_rotation_of_the_picture():
    # Centred on the image centre, a quarter turn of the shape is torch.rot90 of its image (counter-
    # clockwise as displayed); independent of render's symmetry shortcut.
    for shape in range(3):
        flat = sprites.rasterize([shape], [12.0], [1.0], [0.0], [32.0], [32.0])[0]
        turned = sprites.rasterize([shape], [12.0], [0.0], [1.0], [32.0], [32.0])[0]
        assert torch.equal(turned, torch.rot90(flat, 1, (0, 1)))
    # An eighth turn of a square is the diamond |dx| + |dy| <= sqrt(2) h (away from its edge).
    h = 12 * 0.7
    c = torch.arange(64, dtype=torch.float64) + 0.5
    d = (c.reshape(1, -1) - 32.0).abs() + (c.reshape(-1, 1) - 32.0).abs()
    r = math.sqrt(0.5)
    diamond = sprites.rasterize([0], [12.0], [r], [r], [32.0], [32.0])[0]
    clear = (d - math.sqrt(2) * h).abs() > 1e-9
    assert torch.equal(diamond[clear], (d <= math.sqrt(2) * h)[clear])


@pytest.mark.parametrize("scale", range(6))
def test_square_pixel_count_matches_its_area(scale):
    s = 0.5 + 0.1 * scale
    side = 2 * 0.7 * 12 * s
    for x, y in [(0, 0), (5, 17), (31, 8)]:
        count = int(one(0, scale, 0, x, y).sum())
        # Axis-aligned: each row and column holds side - 1 .. side + 1 pixel centres.
        assert (side - 1) ** 2 <= count <= (side + 1) ** 2
        for k in (3, 7):  # turned: pixels that differ from the shape all touch its edge, a band of
            # area at most sqrt(2) * perimeter + pi / 2 (Steiner's formula, half-width sqrt(2)/2)
            count = int(one(0, scale, k, x, y).sum())
            assert abs(count - side**2) <= math.sqrt(2) * 4 * side + math.pi / 2
    ellipse_area = math.pi * (12 * s) * (6 * s)
    ellipse_perimeter = math.pi * (3 * (18 * s) - math.sqrt((3 * 12 * s + 6 * s) * (12 * s + 3 * 6 * s)))
    count = int(one(1, scale, 7, 11, 23).sum())
    assert abs(count - ellipse_area) <= math.sqrt(2) * ellipse_perimeter + math.pi / 2


def test_positions_shift_the_image_by_the_expected_pixels():
    # Four position steps are exactly 5 pixels: the image moves by exactly that, and so does its centroid.
    for shape, k in [(0, 3), (1, 11), (2, 27)]:
        a, b = one(shape, 4, k, 3, 9), one(shape, 4, k, 7, 13)
        assert torch.equal(torch.roll(a, (5, 5), (0, 1)), b)
    rows, cols = torch.meshgrid(torch.arange(64.0) + 0.5, torch.arange(64.0) + 0.5, indexing="ij")
    for x, y in [(0, 0), (10, 25), (31, 31)]:
        img = one(0, 5, 0, x, y).double()
        cx, cy = (img * cols).sum() / img.sum(), (img * rows).sum() / img.sum()
        # A symmetric set of pixel centres around the true centre has it as centroid, up to the
        # asymmetry of the last row/column (at most half a pixel).
        assert abs(cx - (12.625 + 1.25 * x)) <= 0.5 and abs(cy - (12.625 + 1.25 * y)) <= 0.5


def test_every_shape_stays_inside_its_disc_and_the_frame():
    f = sprites.decode(sprites.sample(2000, seed=5))
    img = sprites.render(f)
    v = sprites.factor_values()
    c = torch.arange(64, dtype=torch.float64) + 0.5
    dx = c.reshape(1, 1, -1) - v["pos_x"][f[:, 3]].reshape(-1, 1, 1)
    dy = c.reshape(1, -1, 1) - v["pos_y"][f[:, 4]].reshape(-1, 1, 1)
    radius = 12 * v["scale"][f[:, 1]].reshape(-1, 1, 1)
    assert not (img & (dx**2 + dy**2 > radius**2)).any()
    assert img.flatten(1).any(1).all()


def test_subsets_packing_and_the_dataset():
    a = sprites.sample(50, seed=7)
    assert torch.equal(a, sprites.sample(50, seed=7)) and len(torch.unique(a)) == 50
    assert not torch.equal(a, sprites.sample(50, seed=8))
    b = sprites.sample(60, seed=7, exclude=a)
    assert not set(a.tolist()) & set(b.tolist())
    x, f = sprites.load_subset(50, seed=7)
    assert x.shape == (50, 1, 64, 64) and x.dtype == torch.uint8 and set(x.unique().tolist()) == {0, 255}
    assert torch.equal(sprites.encode(f), a)
    assert torch.equal(sprites.unpack(sprites.pack(x[:, 0] > 0)), x[:, 0] > 0)
    lazy, stored = sprites.SpritesDataset(a), sprites.SpritesDataset(a, store=True)
    assert stored.packed.shape == (50, 512) and stored.packed.dtype == torch.uint8
    i = torch.tensor([3, 0, 49])
    assert torch.equal(lazy.take(i), stored.take(i)) and torch.equal(lazy.take(i), x[i].float() / 255)
    img, fac = lazy[4]
    assert img.shape == (1, 64, 64) and torch.equal(fac, f[4])
    assert not set(sprites.split_indices("train").tolist()) & set(sprites.split_indices("test").tolist())


def test_data_load_serves_the_fixed_split():
    test = data.load("sprites", "test", "static")
    assert len(test) == 10000 and test.x_shape == (1, 64, 64) and test.source == "generated:sprites"
    x, f = test[torch.arange(5)]
    assert torch.equal(x[:, 0] > 0, sprites.render(f))


def test_bad_input():
    with pytest.raises(DataError, match=r"shape \(N, 5\)"):
        sprites.render(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(DataError, match="orientation must be in 0 .. 39"):
        sprites.render(torch.tensor([[0, 0, 40, 0, 0]]))
    with pytest.raises(DataError, match="integers"):
        sprites.encode(torch.zeros(2, 5))
    with pytest.raises(DataError, match="0 .. 737279"):
        sprites.decode([737280])
    with pytest.raises(DataError, match="only 10"):
        sprites.sample(11, exclude=torch.arange(sprites.N_IMAGES - 10))
    with pytest.raises(DataError, match=">= 1"):
        sprites.sample(0)
    with pytest.raises(DataError, match="split"):
        sprites.split_indices("valid")
    with pytest.raises(DataError, match="no indices"):
        sprites.SpritesDataset([])


def test_vaezoo_train_on_sprites(tmp_path):
    from vaezoo.cli import main

    out = tmp_path / "run"
    args = ["train", "--dataset", "sprites", "--train-size", "64", "--test-size", "32", "--epochs", "1"]
    args += ["--batch-size", "32", "--z-dim", "2", "--hidden", "8", "--no-progress", "--eval-k", "2"]
    assert main([*args, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["config"]["x_shape"] == [1, 64, 64]
    assert math.isfinite(metrics["test_log_likelihood"]["mean"])
