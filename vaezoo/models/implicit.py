"""Hierarchical implicit models: latents with a prior, data from a simulator that has no density."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from vaezoo.distributions.simulator import Simulator
from vaezoo.models.base import LatentVariableModel
from vaezoo.models.linear_gaussian import LinearGaussian, LinearGaussianConfig
from vaezoo.registry import register_model


class HierarchicalImplicitModel(LatentVariableModel):
    """The hierarchical implicit model (HIM) of Tran, Ranganath & Blei (2017), local part.

    Generative story, for each datapoint n::

        z_n ~ p(z_n | beta)                  (z_dist: a density, which a guide may be compared with)
        eps_n ~ s(.)                         (noise_dist: the simulator's own randomness)
        x_n = g(eps_n, z_n; beta)            (simulate: deterministic, no density for x_n given z_n)

    In Pyro the observed site ``"x"`` holds a :class:`~vaezoo.distributions.simulator.Simulator`:
    running the model unconditioned (``poutine.uncondition``) draws x_n through ``g``; asking for
    ``log p(x_n | z_n)`` raises a :class:`~vaezoo.errors.ConfigError` naming the likelihood-free
    objective ``lfvi`` (:class:`~vaezoo.inference.likelihood_free.LFVI`), which only samples it.
    :attr:`has_likelihood` is ``False`` for every subclass.

    Subclasses implement :meth:`z_dist`, :meth:`noise_dist` and :meth:`simulate`.

    Deviation from the paper: the global variables beta are the model's parameters (a point value),
    not a latent site with a prior p(beta) and a guide q(beta | x). vaezoo's objectives are formed
    per datapoint inside ``pyro.plate("data")`` (see the README's Architecture section), which a
    global latent shared by all datapoints would break; with beta fixed, the ratio estimator is
    r(x_n, z_n) rather than r(x_n, z_n, beta).

    References:
        - Tran, Ranganath & Blei (2017), Hierarchical Implicit Models and Likelihood-Free Variational
          Inference, NIPS.
        - Diggle & Gratton (1984), Monte Carlo Methods of Inference for Implicit Statistical Models,
          JRSS B 46.
    """

    has_likelihood = False
    default_guide_name = "affine_normal"

    def z_dist(self, x: torch.Tensor) -> dist.Distribution:
        """p(z_n | beta) for each row of ``x``."""
        raise NotImplementedError

    def noise_dist(self, z: torch.Tensor) -> dist.Distribution:
        """s(eps): batch shape ``z``'s, event shape ``x_shape`` (one eps per observed number)."""
        return dist.Normal(z.new_zeros(()), 1.0).expand([*z.shape[:-1], *self.x_shape])

    def simulate(self, eps: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """g(eps, z; beta): x of ``eps``'s shape; ``z`` broadcasts against its leading dims."""
        raise NotImplementedError

    def x_dist(self, z: torch.Tensor) -> Simulator:
        return Simulator(
            lambda eps: self.simulate(eps, z), self.noise_dist(z), len(self.x_shape), type(self).__name__
        )

    def forward(self, x: torch.Tensor) -> None:
        self.check_x(x)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.z_dist(x))
            pyro.sample("x", self.x_dist(z), obs=x)

    def sample_x(self, n: int) -> torch.Tensor:
        """``n`` draws of x from the simulator (z from the prior), shape ``(n, *x_shape)``, no graph."""
        with torch.no_grad(), poutine.block():
            trace = poutine.trace(poutine.uncondition(self)).get_trace(self.example_x(n))
        return trace.nodes["x"]["value"]


@register_model("implicit_gaussian", LinearGaussianConfig)
class ImplicitGaussian(HierarchicalImplicitModel):
    """A simulator that is secretly probabilistic PCA, for validating likelihood-free inference.

    Generative story (x flattened to D = prod(x_shape) numbers)::

        z ~ N(0, I_d)
        eps ~ N(0, I_D)
        x = W z + b + s eps              (written as a simulator: no log_prob on x)

    x | z is N(W z + b, s^2 I), so p(x) and p(z | x) are the closed forms of
    :class:`~vaezoo.models.linear_gaussian.LinearGaussian`; only :meth:`gaussian_twin` reveals them,
    to tests and experiments that score a fit against the truth. Inference code sees a simulator.
    Config and initial parameters (W, b, s from ``seed``) are those of ``linear_gaussian``.

    References:
        - Tran, Ranganath & Blei (2017), Hierarchical Implicit Models and Likelihood-Free Variational
          Inference, NIPS.
        - Tipping & Bishop (1999), Probabilistic Principal Component Analysis, JRSS B.
    """

    def __init__(self, config: LinearGaussianConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        self.z_dim = self.config.z_dim
        # The parameters live in the explicit twin, so its closed forms always describe this simulator.
        self.secret = LinearGaussian(self.config)

    def gaussian_twin(self) -> LinearGaussian:
        """The explicit model with this simulator's W, b and s (shared tensors, not copies): its
        ``log_marginal(x)`` and ``posterior(x)`` are this model's, exactly."""
        return self.secret

    def z_dist(self, x: torch.Tensor) -> dist.Distribution:
        return self.secret.z_dist(x)

    def simulate(self, eps: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        twin = self.secret
        flat = eps.flatten(-len(self.x_shape))
        x = z @ twin.W.T + twin.b + twin.noise * flat
        return x.reshape(*x.shape[:-1], *self.x_shape)
