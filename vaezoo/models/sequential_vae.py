"""The sequential VAE: a chain of images, each drawn from a latent and the image before it."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from vaezoo.distributions import pixel_likelihood
from vaezoo.distributions.pixel import PixelLikelihood
from vaezoo.models.auxiliary import observe_x
from vaezoo.models.base import LatentVariableModel, x_shape_field
from vaezoo.nets import Activation, mlp
from vaezoo.registry import register_model


@dataclass(frozen=True)
class SequentialVAEConfig:
    x_shape: tuple[int, ...] = x_shape_field()
    steps: int = field(default=3, metadata={"help": "number of steps n (latents z_1..z_n)", "min": 1})
    z_dim: int = field(default=20, metadata={"help": "latent dimension of each step", "min": 1})
    hidden: tuple[int, ...] = field(
        default=(200, 200), metadata={"help": "hidden widths of each step's MLP", "min": 1}
    )
    activation: Activation = "tanh"
    shared: bool = field(
        default=True, metadata={"help": "one step network for every step (else one network per step)"}
    )
    likelihood: PixelLikelihood = field(
        default="bernoulli",
        metadata={"help": "bernoulli for binary data; gaussian or laplace for real-valued"},
    )


class Step(nn.Module):
    """One step's p(x_i | z_i, x_{i-1}): an MLP on [z_i; x_{i-1}] and, for real pixels, a learned scale."""

    def __init__(self, z_dim: int, x_shape: tuple[int, ...], x_numel: int, config: SequentialVAEConfig):
        super().__init__()
        self.x_shape, self.likelihood = x_shape, config.likelihood
        self.net = mlp((z_dim + x_numel, *config.hidden, x_numel), config.activation)
        self.raw_scale = nn.Parameter(torch.zeros(x_shape)) if config.likelihood != "bernoulli" else None

    def forward(self, z: torch.Tensor, previous: torch.Tensor) -> dist.Distribution:
        out = self.net(torch.cat([z, previous.flatten(-len(self.x_shape))], -1))
        out = out.reshape(*z.shape[:-1], *self.x_shape)
        return pixel_likelihood(self.likelihood, out, self.raw_scale, len(self.x_shape))


@register_model("sequential_vae", SequentialVAEConfig)
class SequentialVAE(LatentVariableModel):
    """n latents, each refining the image of the step before; x is the last step's image.

    Generative story (the program :meth:`forward` writes; n = ``steps``)::

        z_i ~ N(0, I_{z_dim})                              i = 1, ..., n
        m_0 = 0
        m_i = E[p_i(. | z_i, m_{i-1})]                     i = 1, ..., n - 1 (deterministic)
        x   ~ p_n(x | z_n, m_{n-1})

    where p_i(x | z, m) is a Bernoulli (logits), Gaussian or Laplace (location) per pixel from an
    MLP f_i on [z; m], and m_i is its mean (probabilities for Bernoulli pixels). With
    ``shared=True`` one network serves every step (f_i = f), else each step has its own, so the
    parameter count is n times larger. The default guide (``"amortized"``) feeds x to every z_i.

    **Which is which.** Zhao, Song & Ermon (2017a) write x_i ~ p(x_i | z_i, x_{i-1}) with x = x_n
    and train every step against the data: their objective is
    ``sum_i E_q log p_i(x | z_i, m_{i-1}) - KL(q(z | x) || p(z))``, with the previous step's output
    passed on as its mean. That sum observes the one x n times, so it is not the ELBO of any model
    of x and not a bound on log p(x); it is the objective ``"stepwise"``
    (:class:`~vaezoo.inference.stepwise.Stepwise`), which reads the intermediate p_1..p_{n-1} from
    the observed site (:mod:`vaezoo.models.auxiliary`). The program above observes x once, at step n,
    with the intermediate images passed on deterministically as means: a proper latent-variable
    model of x whose ELBO (objective ``"elbo"``, and :meth:`Stepwise.bound`) is a lower bound on
    log p(x) and whose importance-sampled log-likelihood is honest.

    Deviation: the paper's intermediate x_i are images drawn from p_i; here, as in the paper's
    training, the next step sees the mean m_i, so the chain carries no sampled pixel noise.

    References:
        - Zhao, Song & Ermon (2017a), Towards Deeper Understanding of Variational Autoencoding
          Models, arXiv:1702.08658.
    """

    def __init__(self, config: SequentialVAEConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        self.layer_sites = tuple(f"z{i + 1}" for i in range(c.steps))
        copies = 1 if c.shared else c.steps
        self.step_nets = nn.ModuleList(Step(c.z_dim, self.x_shape, self.x_numel, c) for _ in range(copies))

    @property
    def binary_data(self) -> bool:
        return self.config.likelihood == "bernoulli"

    def default_guide_config(self) -> dict:
        return {"hidden": list(reversed(self.config.hidden)), "activation": self.config.activation}

    def z_dist(self, x: torch.Tensor) -> dist.Distribution:
        return dist.Normal(x.new_zeros(()), 1.0).expand([x.shape[0], self.config.z_dim]).to_event(1)

    def step_dists(self, zs: list[torch.Tensor]) -> list[dist.Distribution]:
        """p_1, ..., p_n for the latents ``zs`` = [z_1, ..., z_n], each step fed the last one's mean."""
        steps = self.step_nets  # read once: under Pyro's SVI every read announces all parameters
        previous = zs[0].new_zeros(())
        dists = []
        for i, z in enumerate(zs):
            p = steps[min(i, len(steps) - 1)](z, previous.expand(*z.shape[:-1], *self.x_shape))
            dists.append(p)
            previous = p.mean
        return dists

    def forward(self, x: torch.Tensor) -> None:
        self.check_x(x)
        with pyro.plate("data", x.shape[0]):
            zs = [pyro.sample(name, self.z_dist(x)) for name in self.layer_sites]
            *auxiliary, last = self.step_dists(zs)
            observe_x(x, last, auxiliary)


__all__ = ["SequentialVAE", "SequentialVAEConfig"]
