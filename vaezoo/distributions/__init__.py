"""Distributions the zoo's models and guides sample from, beyond Pyro's own (plain Pyro, no networks).

One module per distribution: :mod:`~vaezoo.distributions.bernoulli` (the image likelihood),
:mod:`~vaezoo.distributions.pixel` (Bernoulli, Gaussian or Laplace pixels, by name),
:mod:`~vaezoo.distributions.checkerboard` and :mod:`~vaezoo.distributions.lattice_categorical`
(the block-spin model's levels), :mod:`~vaezoo.distributions.block_majority` (the RG guide's map),
:mod:`~vaezoo.distributions.simulator` (an implicit model's observations: sampled, never scored),
:mod:`~vaezoo.distributions.code_map` (VQ-VAE's map of codebook vectors) and
:mod:`~vaezoo.distributions.pixelcnn_bernoulli` (an autoregressive image likelihood around a
network the model passes in; it defines none).
"""

from vaezoo.distributions.bernoulli import IndependentBernoulli, bernoulli
from vaezoo.distributions.block_majority import BlockMajority
from vaezoo.distributions.checkerboard import CheckerboardLattice
from vaezoo.distributions.code_map import CodeMap, LogitsFn, nearest_codes
from vaezoo.distributions.lattice_categorical import SymmetricLatticeCategorical
from vaezoo.distributions.pixel import LOCATION_SCALE, pixel_likelihood, pixel_scale
from vaezoo.distributions.pixelcnn_bernoulli import PixelCNNBernoulli
from vaezoo.distributions.simulator import Simulator

__all__ = [
    "CodeMap",
    "LogitsFn",
    "nearest_codes",
    "BlockMajority",
    "CheckerboardLattice",
    "IndependentBernoulli",
    "Simulator",
    "PixelCNNBernoulli",
    "SymmetricLatticeCategorical",
    "bernoulli",
    "LOCATION_SCALE",
    "pixel_likelihood",
    "pixel_scale",
]
