"""Deterministic networks shared by models and guides (plain ``torch.nn``, no Pyro effects), and the
context managers that hold a network in a temporary state.

One module per family of builders: :mod:`~vaezoo.nets.mlp` (perceptrons, named activations),
:mod:`~vaezoo.nets.hierarchy` (the rungs and heads of hierarchical VAEs), :mod:`~vaezoo.nets.conv`
(image encoders and decoders), :mod:`~vaezoo.nets.lattice` (Z2-odd lattice networks),
:mod:`~vaezoo.nets.made` (masked autoregressive networks for flows), :mod:`~vaezoo.nets.pixelcnn`
(masked convolutions for autoregressive image models), :mod:`~vaezoo.nets.residual` (NVAE's
residual cells), :mod:`~vaezoo.nets.spectral` (spectral norms by power iteration),
:mod:`~vaezoo.nets.deconv` (latents upsampled to the image's size), :mod:`~vaezoo.nets.refine`
(residual image-to-image refinement), :mod:`~vaezoo.nets.codebook`
and :mod:`~vaezoo.nets.code_map` (VQ-VAE's codebook and its image/code-map networks) and
:mod:`~vaezoo.nets.state` (evaluation mode, frozen parameters).
"""

from vaezoo.nets.code_map import map_decoder, map_encoder, map_shape
from vaezoo.nets.codebook import QUANTIZATION, Codebook, CodebookUpdate, Quantization, as_map, as_vectors
from vaezoo.nets.conv import Batched, ConvDecoder, conv_encoder
from vaezoo.nets.deconv import deconv_stack, upsampling_factor, vector_to_map
from vaezoo.nets.hierarchy import FeatureBatchNorm, cat_features, normal_head, per_layer, rung
from vaezoo.nets.lattice import GainNet, OddBottomUp, OddConv, OddStack, apply_2d, upsample
from vaezoo.nets.made import MADE, MaskedLinear
from vaezoo.nets.mlp import ACTIVATIONS, Activation, activation, mlp
from vaezoo.nets.pixelcnn import GatedMaskedLayer, MaskedConv2d, PixelCNN, ReceptiveField, receptive_field
from vaezoo.nets.refine import Refiner, ResidualBlock
from vaezoo.nets.residual import EncoderCell, GenerativeCell, ResidualCell, SqueezeExcitation
from vaezoo.nets.spectral import SpectralNorms, spectral_estimators, spectral_penalty, weight_matrix
from vaezoo.nets.state import evaluating, frozen

__all__ = [
    "QUANTIZATION",
    "Codebook",
    "CodebookUpdate",
    "Quantization",
    "as_map",
    "as_vectors",
    "map_decoder",
    "map_encoder",
    "map_shape",
    "ACTIVATIONS",
    "Activation",
    "Batched",
    "ConvDecoder",
    "FeatureBatchNorm",
    "GainNet",
    "GatedMaskedLayer",
    "MADE",
    "MaskedConv2d",
    "MaskedLinear",
    "OddBottomUp",
    "OddConv",
    "OddStack",
    "PixelCNN",
    "ReceptiveField",
    "activation",
    "apply_2d",
    "cat_features",
    "conv_encoder",
    "deconv_stack",
    "evaluating",
    "frozen",
    "mlp",
    "normal_head",
    "per_layer",
    "receptive_field",
    "rung",
    "upsample",
    "EncoderCell",
    "GenerativeCell",
    "ResidualCell",
    "SqueezeExcitation",
    "SpectralNorms",
    "spectral_estimators",
    "spectral_penalty",
    "weight_matrix",
    "upsampling_factor",
    "vector_to_map",
    "Refiner",
    "ResidualBlock",
]
