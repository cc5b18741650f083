"""Sprites: a dSprites-like data set with every factor known, generated in the package by index.

Each image is a binary 64x64 picture of one white shape on black, fully determined by five factors
(the dSprites design of Matthey et al. 2017, without its single colour):

=============== ====== =====================================================================
factor          values meaning
=============== ====== =====================================================================
``shape``       3      square, ellipse (2:1), heart
``scale``       6      0.5, 0.6, ..., 1.0 times the largest size
``orientation`` 40     rotation by 2 pi k / 40, k = 0 .. 39, counter-clockwise as displayed
``pos_x``       32     centre x = 12.625 + 1.25 a pixels, a = 0 .. 31 (left to right)
``pos_y``       32     centre y = 12.625 + 1.25 b pixels, b = 0 .. 31 (top to bottom)
=============== ====== =====================================================================

737,280 images in all, one per factor tuple; image ``i`` is the tuple whose mixed-radix number
(shape most significant, ``pos_y`` least) is ``i`` (:func:`encode`, :func:`decode`). Unlike
dSprites, 2 pi is not repeated as a 41st orientation.

**Symmetries.** The square looks the same after a quarter turn and the ellipse after a half turn,
so their orientation is identifiable only modulo 10 and 20 steps respectively: orientations ``k``
and ``k + 10`` of a square (``k + 20`` of an ellipse) give the *same* image, bit for bit (the
rotation is applied as ``k`` modulo the symmetry). dSprites has the same ambiguity. A
disentanglement score treats orientation as one factor of 40 values for every shape, so even a
perfect representation cannot reach full mutual information with it.

**Rasterization** is analytic, without anti-aliasing: a pixel is on when its centre lies inside the
shape. Pixel ``(row i, column j)`` has its centre at ``(x, y) = (j + 0.5, i + 0.5)``. A shape of
scale ``s`` fits in a disc of radius ``12 s`` pixels around its centre, so every shape stays inside
the frame at every position. Quarter turns use exact cosines and sines (0, +-1), so a square
turned by 90 degrees is the unturned square, and a quarter-turned shape centred at (32, 32) is the
unturned image rotated by ``torch.rot90``, both exactly. Computation is in float64.

Nothing is stored: :func:`render` draws any tuples on demand, :class:`SpritesDataset` serves a
subset lazily or from a bit-packed store (512 bytes per image; the whole grid would take 377 MB),
and :func:`sample` / :func:`load_subset` draw a fixed-seed random subset.

References:
    - Matthey, Higgins, Hassabis & Lerchner (2017), dSprites: Disentanglement testing Sprites
      dataset, https://github.com/deepmind/dsprites-dataset.
    - Higgins et al. (2017), beta-VAE: Learning Basic Visual Concepts with a Constrained
      Variational Framework, ICLR (where dSprites was introduced).
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

from vaezoo.errors import DataError

SIZE = 64
FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPES = ("square", "ellipse", "heart")
#: Quarter turns after which each shape looks the same (square 4, ellipse 2, heart 1).
SYMMETRY = (4, 2, 1)
N_IMAGES = math.prod(FACTOR_SIZES)
RADIUS = 12.0  # pixels: every shape of scale 1 fits in a disc of this radius about its centre
SQUARE_HALF_SIDE = 0.7  # of RADIUS: the square's corners reach 0.99 RADIUS
ELLIPSE_AXES = (1.0, 0.5)  # semi-axes along the unturned x and y, of RADIUS
# The heart (x^2 + y^2 - 1)^3 <= x^2 y^3 (y up) reaches 1.4245 from its origin (a grid search on
# a 0.001 mesh); dividing its coordinates by this bound keeps it in the disc.
HEART_REACH = 1.425
POSITION_START, POSITION_STEP = 12.625, 1.25  # dyadic: centres and their differences are exact
#: Factor tuples per block of :func:`render` (one block of float64 coordinates is about 34 MB).
BLOCK = 1024
_BASES = tuple(math.prod(FACTOR_SIZES[i + 1 :]) for i in range(len(FACTOR_SIZES)))


def factor_values() -> dict[str, torch.Tensor]:
    """The value behind each factor index: shape index, scale, angle (radians), centre x and y (pixels)."""
    pos = POSITION_START + POSITION_STEP * torch.arange(32, dtype=torch.float64)
    return {
        "shape": torch.arange(3, dtype=torch.float64),
        "scale": torch.linspace(0.5, 1.0, 6, dtype=torch.float64),
        "orientation": 2 * math.pi * torch.arange(40, dtype=torch.float64) / 40,
        "pos_x": pos,
        "pos_y": pos.clone(),
    }


def _as_long(values, name: str) -> torch.Tensor:
    t = torch.as_tensor(values)
    if t.numel() and (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool):
        raise DataError(f"{name} must hold integers, got dtype {t.dtype}; convert with .long()")
    return t.long()


def check_factors(factors) -> torch.Tensor:
    """``factors`` as a ``(N, 5)`` long tensor after checking shape and ranges.

    :raises DataError: for a shape other than ``(N, 5)`` or an index outside its factor's range.
    """
    f = _as_long(factors, "factors")
    if f.dim() != 2 or f.shape[1] != len(FACTOR_SIZES):
        raise DataError(
            f"factors must have shape (N, {len(FACTOR_SIZES)}) (columns {', '.join(FACTOR_NAMES)}), "
            f"got {tuple(f.shape)}"
        )
    for k, (name, n) in enumerate(zip(FACTOR_NAMES, FACTOR_SIZES, strict=True)):
        bad = (f[:, k] < 0) | (f[:, k] >= n)
        if bad.any():
            raise DataError(f"factor {name} must be in 0 .. {n - 1}, got {int(f[bad.nonzero()[0, 0], k])}")
    return f


def check_index(index) -> torch.Tensor:
    """``index`` as a 1-D long tensor of image numbers in ``0 .. N_IMAGES - 1``."""
    i = _as_long(index, "index").reshape(-1)
    if len(i) and (i.min() < 0 or i.max() >= N_IMAGES):
        bad = int(i[(i < 0) | (i >= N_IMAGES)][0])
        raise DataError(f"sprite indices must be in 0 .. {N_IMAGES - 1}, got {bad}")
    return i


def encode(factors) -> torch.Tensor:
    """The image number of each factor tuple (mixed radix, ``shape`` most significant)."""
    f = check_factors(factors)
    return (f * torch.tensor(_BASES)).sum(1)


def decode(index) -> torch.Tensor:
    """The ``(N, 5)`` factor tuples of image numbers ``index``; inverse of :func:`encode`."""
    i = check_index(index)
    return torch.stack([(i // b) % n for b, n in zip(_BASES, FACTOR_SIZES, strict=True)], 1)


def _turn(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of 2 pi k / 40, exact (0, +-1) at quarter turns."""
    angle = 2 * math.pi * k.double() / 40
    c, s = torch.cos(angle), torch.sin(angle)
    # cos(pi/2) is 6e-17 in floating point; zero it so quarter turns map pixel centres exactly.
    return c.masked_fill(c.abs() < 1e-12, 0.0), s.masked_fill(s.abs() < 1e-12, 0.0)


def _inside(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Whether points ``(u, v)`` of the shape's own frame (units of its radius, y down) are inside it."""
    if shape == 0:
        return torch.maximum(u.abs(), v.abs()) <= SQUARE_HALF_SIDE
    if shape == 1:
        return (u / ELLIPSE_AXES[0]) ** 2 + (v / ELLIPSE_AXES[1]) ** 2 <= 1
    hx, hy = u * HEART_REACH, -v * HEART_REACH  # the heart's formula has y up
    return (hx**2 + hy**2 - 1) ** 3 <= hx**2 * hy**3


def _draw(shape, radius, cos, sin, cx, cy, x0, y0, width: int) -> torch.Tensor:
    """``(N, width, width)`` pixels whose top-left pixel is ``(x0, y0)`` (integers, per image)."""
    shape, radius, cos, sin, cx, cy = (t.reshape(-1, 1, 1) for t in (shape, radius, cos, sin, cx, cy))
    step = torch.arange(width, dtype=torch.float64) + 0.5
    dx = (x0.double().reshape(-1, 1) + step).unsqueeze(1) - cx  # (N, 1, width)
    dy = (y0.double().reshape(-1, 1) + step).unsqueeze(2) - cy  # (N, width, 1)
    # Undo the rotation: turning a point by +angle counter-clockwise on screen (y down) is
    # (x, y) -> (x cos + y sin, -x sin + y cos); its inverse brings the pixel into the shape's frame.
    u = (cos * dx - sin * dy) / radius
    v = (sin * dx + cos * dy) / radius
    out = torch.zeros(u.shape[0], width, width, dtype=torch.bool)
    for k in range(len(SHAPES)):
        mine = (shape == k).flatten()
        if mine.any():
            out[mine] = _inside(k, u[mine], v[mine])
    return out


def rasterize(shape, radius, cos, sin, cx, cy, size: int = SIZE) -> torch.Tensor:
    """Binary images ``(N, size, size)`` of shapes given by continuous parameters (one entry per image).

    ``shape`` indexes :data:`SHAPES`; ``radius`` (pixels) is the radius of the disc the shape fits
    in; ``(cos, sin)`` its rotation, counter-clockwise as displayed; ``(cx, cy)`` its centre in pixel
    coordinates (x right, y down). A pixel is on when its centre is inside the shape. Every pixel of
    the frame is tested (the reference that :func:`render`'s windowed drawing must match).
    """
    shape, radius, cos, sin, cx, cy = (
        torch.as_tensor(t).double().reshape(-1) for t in (shape, radius, cos, sin, cx, cy)
    )
    zero = torch.zeros(len(shape), dtype=torch.long)
    return _draw(shape.long(), radius, cos, sin, cx, cy, zero, zero, size)


#: Side of the window :func:`render` tests around each centre: a disc of radius RADIUS fits in it.
WINDOW = 2 * int(RADIUS) + 2


def render(factors) -> torch.Tensor:
    """The binary images ``(N, 64, 64)`` (bool) of factor tuples ``(N, 5)``, drawn in blocks.

    Only the ``WINDOW``-pixel square around each centre is tested (the shape lies inside it); the
    pixel centres are the same numbers as in a full-frame :func:`rasterize`, so the images are too.
    """
    f = check_factors(factors)
    values = factor_values()
    out = torch.zeros(len(f), SIZE, SIZE, dtype=torch.bool)
    period = 40 // torch.tensor(SYMMETRY)  # orientation steps after which each shape repeats
    step = torch.arange(WINDOW)
    for start in range(0, len(f), BLOCK):
        b = f[start : start + BLOCK]
        cos, sin = _turn(b[:, 2] % period[b[:, 0]])
        radius = RADIUS * values["scale"][b[:, 1]]
        cx, cy = values["pos_x"][b[:, 3]], values["pos_y"][b[:, 4]]
        x0 = (cx - RADIUS).floor().long().clamp(0, SIZE - WINDOW)
        y0 = (cy - RADIUS).floor().long().clamp(0, SIZE - WINDOW)
        window = _draw(b[:, 0], radius, cos, sin, cx, cy, x0, y0, WINDOW)
        n = torch.arange(start, start + len(b)).reshape(-1, 1, 1)
        rows, cols = (y0.reshape(-1, 1) + step).unsqueeze(2), (x0.reshape(-1, 1) + step).unsqueeze(1)
        out[n, rows, cols] = window
    return out


def images(index) -> torch.Tensor:
    """The binary images ``(N, 64, 64)`` (bool) of image numbers ``index``."""
    return render(decode(index))


def sample(n: int, seed: int = 0, exclude=None) -> torch.Tensor:
    """``n`` distinct image numbers drawn uniformly (a fixed-seed random subset of the grid), sorted.

    ``exclude`` (image numbers) are never drawn, e.g. a training subset when drawing a test subset.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise DataError(f"the number of sprites must be an integer >= 1, got {n!r}")
    taken = torch.zeros(N_IMAGES, dtype=torch.bool)
    if exclude is not None:
        taken[check_index(exclude)] = True
    free = int((~taken).sum())
    if n > free:
        raise DataError(f"cannot draw {n} distinct sprites: only {free} of {N_IMAGES} are available")
    g = torch.Generator().manual_seed(seed)
    pool = (~taken).nonzero().flatten()
    return pool[torch.randperm(len(pool), generator=g)[:n]].sort().values


def load_subset(n: int, seed: int = 0, exclude=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, factors)`` of ``n`` random sprites (:func:`sample`): uint8 ``(n, 1, 64, 64)``
    with values 0 and 255 (the layout of :class:`vaezoo.data.ImageData`), and ``(n, 5)`` indices."""
    return load_index(sample(n, seed, exclude))


def load_index(index) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, factors)`` of image numbers ``index``, laid out as :func:`load_subset` returns them."""
    index = check_index(index)
    return images(index).unsqueeze(1).to(torch.uint8) * 255, decode(index)


#: The fixed split that ``vaezoo.data.load("sprites", ...)`` serves: sizes and the seed of the draw.
SPLITS = {"train": 60000, "test": 10000}
SPLIT_SEED = 0


def split_indices(split: str) -> torch.Tensor:
    """Image numbers of the fixed ``"train"`` (60,000) or ``"test"`` (10,000) split; disjoint."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    order = torch.randperm(N_IMAGES, generator=torch.Generator().manual_seed(SPLIT_SEED))
    start = 0 if split == "train" else SPLITS["train"]
    return order[start : start + SPLITS[split]].sort().values


_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def pack(images: torch.Tensor) -> torch.Tensor:
    """Binary images ``(N, 64, 64)`` as ``(N, 512)`` uint8, eight pixels a byte."""
    return (images.reshape(len(images), -1, 8).to(torch.uint8) * _BITS).sum(-1, dtype=torch.uint8)


def unpack(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack`: ``(N, 64, 64)`` bool."""
    return ((packed.unsqueeze(-1) & _BITS) != 0).reshape(len(packed), SIZE, SIZE)


class SpritesDataset(Dataset):
    """Sprites ``index`` (image numbers; default all 737,280) served as float ``(1, 64, 64)`` images in
    {0, 1} with their ``(5,)`` factor tuples, rendered on demand or, with ``store=True``, once into a
    bit-packed store (512 bytes per image).

    Indexing with a tensor of indices returns a whole batch, and :meth:`take` returns just the images,
    so :func:`vaezoo.data.batches` (hence ``fit``) draws batches without per-item overhead.
    """

    source = "generated:sprites"

    def __init__(self, index=None, store: bool = False):
        self.index = torch.arange(N_IMAGES) if index is None else check_index(index)
        if len(self.index) == 0:
            raise DataError("SpritesDataset got no indices; pass at least one image number")
        self.factors = decode(self.index)
        self.packed = None
        if store:
            self.packed = torch.cat(
                [pack(images(self.index[s : s + BLOCK])) for s in range(0, len(self.index), BLOCK)]
            )

    def __len__(self) -> int:
        return len(self.index)

    @property
    def x_shape(self) -> tuple[int, ...]:
        return (1, SIZE, SIZE)

    def take(self, i) -> torch.Tensor:
        i = torch.as_tensor(i).reshape(-1)
        bits = unpack(self.packed[i]) if self.packed is not None else render(self.factors[i])
        return bits.unsqueeze(1).to(torch.get_default_dtype())

    def __getitem__(self, i):
        if isinstance(i, int):
            return self.take(i)[0], self.factors[i]
        return self.take(i), self.factors[torch.as_tensor(i)]


__all__ = [
    "FACTOR_NAMES",
    "FACTOR_SIZES",
    "N_IMAGES",
    "SHAPES",
    "SYMMETRY",
    "SpritesDataset",
    "decode",
    "encode",
    "factor_values",
    "images",
    "load_index",
    "load_subset",
    "pack",
    "rasterize",
    "render",
    "sample",
    "split_indices",
    "unpack",
]
