"""A hand-written PyTorch training step of likelihood-free VI, for ``step_time_adversarial.py``; no Pyro.

It does per batch x what :func:`~vaezoo.inference.fit.fit` does with ``lfvi`` on the
``implicit_gaussian`` simulator and the ``affine_normal`` guide (one particle, no warm-up):

- ``ratio_steps`` classifier updates of the ratio MLP r (its own, unfused Adam at ``ratio_lr``),
  each on fresh (x, z) ~ p (z ~ N(0, I), x = W z + b + s eps) against (x_n, z) with fresh
  z ~ q(z | x_n), log loss mean softplus(-r(p)) + mean softplus(r(q));
- the guide's loss -mean r(x_n, z), z = A x_n + c + L eps reparameterized, r's weights fixed,
  and one fused Adam step of the guide.

Same networks as vaezoo's (deep copies), and the random draws in the order vaezoo makes them (guide
z, then the simulator's z and eps), so seeded steps agree (``tests/test_lfvi_benchmark.py``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from vaezoo.inference.fit import make_optimizer


class HandWrittenLFVI:
    """The simulator's W, b, s (fixed), the guide's A, c, L and the ratio MLP, copied; the step by hand."""

    def __init__(self, model, guide, objective, lr: float = 1e-3):
        twin = model.gaussian_twin()
        self.W, self.b, self.noise = twin.W.detach().clone(), twin.b.detach().clone(), twin.noise.detach()
        if len(guide.raw_tril) != 1:
            raise ValueError("the reference serves a model with one latent vector site")
        self.loc, self.raw_tril = copy.deepcopy(guide.loc), copy.deepcopy(guide.raw_tril[0])
        self.guide_params = [*self.loc.parameters(), self.raw_tril]
        width = self.W.shape[0] + self.W.shape[1]
        self.ratio = copy.deepcopy(objective.ratio_network(width=width))
        self.ratio_params = list(self.ratio.parameters())
        self.steps = objective.config.ratio_steps
        self.ratio_optimizer = torch.optim.Adam(self.ratio_params, lr=objective.config.ratio_lr)
        self.optimizer = make_optimizer(self.guide_params, lr=lr)

    def q_sample(self, x: torch.Tensor) -> torch.Tensor:
        """z = A x + c + L eps, eps ~ N(0, I), differentiable in A, c, L."""
        L = self.raw_tril.tril(-1) + torch.diag_embed(F.softplus(self.raw_tril.diagonal()))
        eps = torch.randn(x.shape[0], L.shape[0], dtype=x.dtype)
        return self.loc(x) + eps @ L.T

    def ratio_step(self, x: torch.Tensor) -> float:
        """One classifier update of r; the log loss before it."""
        with torch.no_grad():
            q = torch.cat([x, self.q_sample(x)], -1)
            z = torch.randn(x.shape[0], self.W.shape[1], dtype=x.dtype)
            x_p = z @ self.W.T + self.b + self.noise * torch.randn_like(x)
            p = torch.cat([x_p, z], -1)
        loss = F.softplus(-self.ratio(p)).mean() + F.softplus(self.ratio(q)).mean()
        self.ratio_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.ratio_optimizer.step()
        return loss.item()

    def guide_loss(self, x: torch.Tensor) -> torch.Tensor:
        """-mean r(x_n, z), z ~ q(z | x_n) reparameterized (r's weights get no gradient: see :meth:`step`)."""
        return -self.ratio(torch.cat([x, self.q_sample(x)], -1)).mean()

    def step(self, x: torch.Tensor) -> float:
        for _ in range(self.steps):
            self.ratio_step(x)
        loss = self.guide_loss(x)
        # Gradients to the guide only: r stays as the classifier left it.
        grads = torch.autograd.grad(loss, self.guide_params)
        for p, g in zip(self.guide_params, grads, strict=True):
            p.grad = g
        self.optimizer.step()
        return loss.item()
