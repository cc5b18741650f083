"""Generative models p(x, z). Importing this package registers every model.

Each model is a :class:`LatentVariableModel` registered by name with its frozen config dataclass;
:func:`~vaezoo.registry.list_models` shows what is registered and :func:`~vaezoo.registry.build_model`
builds a model by name.
"""

from vaezoo.models.base import LatentVariableModel
from vaezoo.models.block_spin import BlockSpin, BlockSpinConfig
from vaezoo.models.hvae import HVAE, HVAEConfig, TopDownHierarchy
from vaezoo.models.implicit import HierarchicalImplicitModel, ImplicitGaussian
from vaezoo.models.ising_vlae import IsingVLAE, IsingVLAEConfig
from vaezoo.models.ladder import LadderVAE, LadderVAEConfig
from vaezoo.models.lattice_hierarchy import LatticeConfig, LatticeHierarchy, sample_model
from vaezoo.models.linear_gaussian import LinearGaussian, LinearGaussianConfig
from vaezoo.models.markov_hvae import MarkovHVAE, MarkovHVAEConfig
from vaezoo.models.multistage_vae import MultiStageVAE, MultiStageVAEConfig
from vaezoo.models.mvae import MVAE, MVAEConfig
from vaezoo.models.nvae import NVAE, NVAEConfig
from vaezoo.models.pixel_vae import PixelVAE, PixelVAEConfig
from vaezoo.models.sequential_vae import SequentialVAE, SequentialVAEConfig
from vaezoo.models.vae import VAE, VAEConfig
from vaezoo.models.vlae import VLAE, VLAEConfig
from vaezoo.models.vqvae import VQVAE, VQVAEConfig
from vaezoo.models.vrnn import VRNN, VRNNConfig

__all__ = [
    "VQVAE",
    "VQVAEConfig",
    "LatentVariableModel",
    "VAE",
    "VAEConfig",
    "LinearGaussian",
    "LinearGaussianConfig",
    "TopDownHierarchy",
    "HVAE",
    "HVAEConfig",
    "MarkovHVAE",
    "MarkovHVAEConfig",
    "LadderVAE",
    "LadderVAEConfig",
    "VLAE",
    "VLAEConfig",
    "VRNN",
    "VRNNConfig",
    "MVAE",
    "MVAEConfig",
    "NVAE",
    "NVAEConfig",
    "PixelVAE",
    "PixelVAEConfig",
    "BlockSpin",
    "BlockSpinConfig",
    "sample_model",
    "LatticeHierarchy",
    "LatticeConfig",
    "IsingVLAE",
    "IsingVLAEConfig",
    "HierarchicalImplicitModel",
    "ImplicitGaussian",
    "SequentialVAE",
    "SequentialVAEConfig",
    "MultiStageVAE",
    "MultiStageVAEConfig",
]
