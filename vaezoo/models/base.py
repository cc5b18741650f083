"""What every vaezoo model shares: input validation and the link to its default guide.

The contract (``../shared/DESIGN.md`` section 1): a model is a :class:`~pyro.nn.PyroModule` (here a
:class:`~vaezoo.zoo_module.ZooModule`) whose ``forward(x)`` writes p(x, z) with latent ``pyro.sample``
sites and one observed site ``"x"``, all inside ``pyro.plate("data", len(x))``. Networks must accept
extra leading batch dimensions, because objectives and estimators run the model under an outer
particle plate at dim ``-(max_plate_nesting + 1)``.
"""

from __future__ import annotations

import math
from dataclasses import field
from typing import Any

import torch
from pyro.poutine.util import is_validation_enabled

from vaezoo.config import resolve
from vaezoo.devices import module_device
from vaezoo.errors import DataError
from vaezoo.zoo_module import ZooModule


def x_shape_field(default: tuple[int, ...] = (1, 28, 28)) -> Any:
    """The ``x_shape`` field of every model config: set from the data set, so no command-line flag."""
    help = "shape of one datapoint (set by the data set)"
    return field(default=default, metadata={"cli": False, "help": help, "min": 1, "min_len": 1})


LIKELIHOOD_FIX = {
    "bernoulli": "binarize the data (--binarize dynamic or static) or use --likelihood gaussian",
}


def check_shape(x: torch.Tensor, x_shape: tuple[int, ...], who: str) -> None:
    """Raise :class:`DataError` unless ``x`` is a tensor of shape ``(batch, *x_shape)``."""
    want = f"(batch, {', '.join(map(str, x_shape))})"
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{who} expects x to be a torch.Tensor of shape {want}, got {type(x).__name__}")
    if x.dim() != len(x_shape) + 1 or tuple(x.shape[1:]) != x_shape:
        raise DataError(
            f"{who} expects x of shape {want}, got {tuple(x.shape)}; build the model with "
            f"x_shape={tuple(x.shape[1:])} or reshape the data"
        )


class LatentVariableModel(ZooModule):
    """Base class of vaezoo models.

    Subclasses are registered with a frozen config dataclass that has an ``x_shape`` field; they are
    built as ``Model(config)``, ``Model(config_dict)`` or ``Model(**fields)``, and write ``forward``.
    Class attributes:

    - ``max_plate_nesting``: plates the model nests (the ``"data"`` plate counts as one).
    - ``default_guide_name``: registry name of the guide that :meth:`default_guide` builds.
    """

    max_plate_nesting = 1
    default_guide_name = "amortized"

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__()
        # config_class is set by @register_model; construction is strict about unknown keys.
        self.config = resolve(type(self).config_class, config, overrides)

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.config.x_shape)

    @property
    def x_numel(self) -> int:
        return math.prod(self.x_shape)

    def example_x(self, n: int = 1) -> torch.Tensor:
        """A valid input batch (used to discover latent sites by tracing), beside the model's parameters."""
        return torch.zeros((n, *self.x_shape), device=module_device(self))

    def default_guide_config(self) -> dict[str, Any]:
        """Overrides of the default guide's config that suit this model (e.g. mirrored widths)."""
        return {}

    def default_guide(self) -> Any:
        from vaezoo.registry import build_guide

        return build_guide(self.default_guide_name, self, self.default_guide_config())

    #: True when the likelihood needs x in {0, 1} (checked by :meth:`check_x`).
    binary_data = False
    #: False when the observed site is a simulator with no density (:mod:`vaezoo.models.implicit`):
    #: only objectives whose ``needs_likelihood`` is False can train the model.
    has_likelihood = True

    def check_x(self, x: torch.Tensor, full: bool = False) -> None:
        """Raise :class:`DataError` naming the problem if ``x`` cannot be this model's data.

        Always checks the trailing shape against ``x_shape`` (free). Finiteness and, when
        :attr:`binary_data`, values in {0, 1} cost a pass over the batch, so they run when Pyro's
        validation is on (as in tests) or ``full=True``; :func:`~vaezoo.inference.fit` runs them
        once over a whole tensor data set before training instead of at every step.
        """
        check_shape(x, self.x_shape, type(self).__name__)
        if not (full or is_validation_enabled()):
            return
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
            raise DataError(f"x contains NaN or infinite values in {bad} of {len(x)} rows; clean the data")
        if self.binary_data and ((x != 0) & (x != 1)).any():
            raise DataError(
                f"{type(self).__name__} has a Bernoulli likelihood, which needs x in {{0, 1}}; "
                + (
                    LIKELIHOOD_FIX["bernoulli"]
                    if "likelihood" in getattr(self.config, "__dataclass_fields__", {})
                    # the model offers no real-valued likelihood to switch to
                    else "binarize the data (--binarize dynamic or static)"
                )
            )
