"""Guides q(z | x). Importing this package registers every guide.

A registered guide is built as ``Guide(model, config)``; :func:`~vaezoo.registry.list_guides` shows
which guides serve which model. :class:`LocalNormal` and :class:`LocalFlow` are not registered: they
hold parameters for the rows of one fixed batch (see :mod:`vaezoo.analysis` for the amortization gap).
"""

from vaezoo.guides.affine_normal import AffineNormal, AffineNormalConfig
from vaezoo.guides.amortized import AmortizedNormal, AmortizedNormalConfig
from vaezoo.guides.block_spin import (
    BlockAmortized,
    BlockAmortizedConfig,
    RenormalizationGroupGuide,
    RGGuideConfig,
)
from vaezoo.guides.bottom_up import BottomUpConfig, BottomUpGuide
from vaezoo.guides.bound import BoundGuide
from vaezoo.guides.exact import ExactPosterior, ExactPosteriorConfig
from vaezoo.guides.factorized import FactorizedGuide
from vaezoo.guides.flow_base import FlowEncoderConfig, FlowGuide
from vaezoo.guides.hmc_refined import HMCRefined, HMCRefinedConfig
from vaezoo.guides.iaf import IAFConfig, IAFGuide
from vaezoo.guides.ising_vlae import IsingVLAEGuide, IsingVLAEGuideConfig
from vaezoo.guides.ladder import LadderGuide, LadderGuideConfig, precision_weighted
from vaezoo.guides.lattice_ladder import LatticeLadderConfig, LatticeLadderGuide
from vaezoo.guides.local import LocalFlow, LocalFlowConfig, LocalNormal, LocalNormalConfig
from vaezoo.guides.local_correction import LocalCorrection, LocalCorrectionConfig
from vaezoo.guides.nvae import NVAEGuide, NVAEGuideConfig, residual_kl, residual_normal
from vaezoo.guides.planar import PlanarConfig, PlanarGuide
from vaezoo.guides.product_of_experts import ProductOfExperts, ProductOfExpertsConfig, product_of_gaussians
from vaezoo.guides.semi_amortized import SemiAmortized, SemiAmortizedConfig
from vaezoo.guides.sylvester import SylvesterConfig, SylvesterGuide
from vaezoo.guides.vlae import LadderEncoder, LadderEncoderConfig
from vaezoo.guides.vq import VQGuide, VQGuideConfig
from vaezoo.guides.vrnn import VRNNGuide, VRNNGuideConfig

__all__ = [
    "IsingVLAEGuide",
    "IsingVLAEGuideConfig",
    "LatticeLadderConfig",
    "LatticeLadderGuide",
    "VQGuide",
    "VQGuideConfig",
    "AffineNormal",
    "AffineNormalConfig",
    "AmortizedNormal",
    "AmortizedNormalConfig",
    "ExactPosterior",
    "ExactPosteriorConfig",
    "BottomUpGuide",
    "BottomUpConfig",
    "LadderGuide",
    "LadderGuideConfig",
    "precision_weighted",
    "LadderEncoder",
    "LadderEncoderConfig",
    "VRNNGuide",
    "VRNNGuideConfig",
    "HMCRefined",
    "HMCRefinedConfig",
    "SemiAmortized",
    "SemiAmortizedConfig",
    "LocalNormal",
    "LocalNormalConfig",
    "LocalFlow",
    "LocalFlowConfig",
    "LocalCorrection",
    "LocalCorrectionConfig",
    "BlockAmortized",
    "BlockAmortizedConfig",
    "RenormalizationGroupGuide",
    "RGGuideConfig",
    "PlanarGuide",
    "PlanarConfig",
    "IAFGuide",
    "IAFConfig",
    "SylvesterGuide",
    "SylvesterConfig",
    "ProductOfExperts",
    "ProductOfExpertsConfig",
    "product_of_gaussians",
    "BoundGuide",
    "FactorizedGuide",
    "FlowGuide",
    "FlowEncoderConfig",
    "NVAEGuide",
    "NVAEGuideConfig",
    "residual_kl",
    "residual_normal",
]
