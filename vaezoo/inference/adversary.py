"""A discriminator an objective owns and trains with its own optimizer: the adversary of GAN-style objectives.

Goodfellow et al. (2014) train a discriminator D(v) = sigmoid(f(v)), the probability that v is *real*,
against a generator whose samples are *fake*, on the value function

    V(D, G) = E_real log D(v) + E_fake log(1 - D(v)).

D maximizes V, so the discriminator's loss is -V = E_real softplus(-f) + E_fake softplus(f). For fixed
densities p_real and p_fake the optimal discriminator is D* = p_real / (p_real + p_fake), whose
logit is log p_real - log p_fake, and at it (their Theorem 1)

    -V(D*, G) = log 4 - 2 JSD(p_real || p_fake),

so an untrained discriminator (D = 1/2 everywhere) has loss exactly log 4 and every discriminator
that can tell the two apart has less. The generator lowers either

- ``"minimax"``: E_fake log(1 - D(v)), which at D* is 2 JSD - log 4 up to a term it does not
  change: the Jensen-Shannon divergence itself, but whose gradient vanishes while D rejects the
  fakes confidently; or
- ``"non_saturating"``: -E_fake log D(v), the paper's practical alternative, with the same fixed
  point and strong gradients early in training.

:class:`Adversary` holds D and its Adam optimizer and writes both into the objective's checkpoint
state; the objective calls :meth:`Adversary.step` from its
:meth:`~vaezoo.inference.objective.Objective.adversary_step`.

References:
    - Goodfellow, Pouget-Abadie, Mirza, Xu, Warde-Farley, Ozair, Courville & Bengio (2014),
      Generative Adversarial Nets, NIPS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.errors import CheckpointError, ConfigError
from vaezoo.nets import activation, mlp

GeneratorLoss = Literal["non_saturating", "minimax"]


@dataclass(frozen=True)
class AdversaryConfig:
    """The discriminator fields every adversarial objective's config repeats (dataclasses inherit them)."""

    discriminator_hidden: tuple[int, ...] = field(
        default=(256, 256),
        metadata={"help": "hidden widths of the discriminator", "min": 1, "min_len": 1},
    )
    discriminator_lr: float = field(
        default=2e-4, metadata={"help": "Adam learning rate of the discriminator", "above": 0}
    )
    discriminator_steps: int = field(
        default=1, metadata={"help": "discriminator steps per generator step", "min": 1}
    )
    generator_loss: GeneratorLoss = field(
        default="non_saturating",
        metadata={"help": "the model side's loss: -log D (non_saturating) or log(1 - D) (minimax)"},
    )


class Discriminator(nn.Module):
    """The logit f(v) of D(v) = sigmoid(f(v)): an MLP on the last dimension of ``v``, shape ``v.shape[:-1]``.

    The input size is read from the first batch (a lazy first layer, as the NVIL baseline's), so the
    objective need not know the latent or data size when it is built; parameters shaped by a
    checkpoint load before any batch is seen. The last layer starts at zero: an untrained
    discriminator says 1/2 everywhere and gives the generator no signal it has not earned.
    """

    def __init__(self, hidden: tuple[int, ...], act: str = "leaky_relu"):
        super().__init__()
        if not hidden or min(hidden) < 1:
            raise ConfigError(f"discriminator_hidden needs one or more widths >= 1, got {tuple(hidden)}")
        head = mlp((*hidden, 1), act)
        nn.init.zeros_(head[-1].weight)
        nn.init.zeros_(head[-1].bias)
        self.net = nn.Sequential(nn.LazyLinear(hidden[0]), activation(act), head)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.net(v).squeeze(-1)


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """-V = mean softplus(-f(real)) + mean softplus(f(fake)), from the logits of both sides (a scalar)."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def generator_loss(fake: torch.Tensor, kind: GeneratorLoss) -> torch.Tensor:
    """The generator's loss of each fake from its logit: -log D (non-saturating) or log(1 - D) (minimax)."""
    if kind == "non_saturating":
        return F.softplus(-fake)
    if kind == "minimax":
        return -F.softplus(fake)
    raise ConfigError(f"generator_loss must be 'non_saturating' or 'minimax', got {kind!r}")


class Adversary:
    """A :class:`Discriminator` and its own Adam optimizer (lr ``lr``), trained by :meth:`step`.

    Its parameters are deliberately not the objective's ``parameters()``: the model's optimizer must
    not move them, and the generator's gradient step leaves stale gradients on them, which
    :meth:`step` discards before computing its own.
    """

    def __init__(self, hidden: tuple[int, ...], lr: float, who: str):
        if not lr > 0:
            raise ConfigError(f"discriminator_lr must be > 0, got {lr}")
        self.who = who
        self.discriminator = Discriminator(tuple(hidden))
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, fused=True)

    def logits(self, v: torch.Tensor) -> torch.Tensor:
        return self.discriminator(v)

    def step(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        """One Adam step on :func:`discriminator_loss` of ``real`` and ``fake`` (detached); the loss
        before the step."""
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = discriminator_loss(self.logits(real.detach()), self.logits(fake.detach()))
            loss.backward()
        self.optimizer.step()
        return loss.item()

    def to(self, device: torch.device | str) -> Adversary:
        # In place: the optimizer keeps the same parameter objects.
        self.discriminator.to(device)
        return self

    def state_dict(self) -> dict:
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore discriminator and optimizer; a part missing is a :class:`CheckpointError` with the fix."""
        missing = [k for k in ("discriminator", "optimizer") if k not in state]
        if missing:
            parts = {"discriminator": "weights", "optimizer": "optimizer state"}
            names = " and ".join(f"the discriminator's {parts[k]}" for k in missing)
            raise CheckpointError(
                f"the checkpoint's {self.who} state lacks {names} (keys found: {sorted(state)}), so its "
                "adversarial training cannot resume exactly; start over with --no-resume (Python: "
                "resume=False) or another --out, or point to a checkpoint that vaezoo train wrote whole"
            )
        try:
            self.discriminator.load_state_dict(state["discriminator"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            first = (str(e).strip().splitlines() or [""])[0]
            raise CheckpointError(
                f"the checkpoint's {self.who} discriminator does not fit this configuration ({first}); "
                "use the discriminator_hidden it was trained with, or start over with --no-resume"
            ) from None


def check_pathwise(sites: dict[str, dict], names: list[str], guide, who: str) -> None:
    """Raise :class:`ConfigError` if the guide's samples of ``names`` carry no gradient to the guide
    (a term on the samples themselves could not train it)."""
    if not torch.is_grad_enabled() or not any(p.requires_grad for p in guide.parameters()):
        return
    detached = [n for n in names if not sites[n]["value"].requires_grad]
    if detached:
        raise ConfigError(
            f"{who} trains the guide through its samples, but {type(guide).__name__} returns site(s) "
            f"{detached} detached; use 'elbo' with this guide"
        )
