"""The base of every guide that reads its model at each call: the model held without being owned."""

from __future__ import annotations

from typing import Any

from vaezoo.zoo_module import ZooModule


class BoundGuide(ZooModule):
    """A guide bound to one model, which it reads through :attr:`model` but does not own.

    Guides that evaluate the model (its posterior, its log joint for HMC or refinement steps, its
    top-down networks) need it at every call. Assigned as an attribute, a model would become a
    submodule: its parameters would appear twice in ``parameters()`` and be saved again in the guide's
    ``state_dict``. Held here outside the module tree, the guide's ``state_dict`` holds only its own
    parameters, so a checkpoint restores each one exactly once; training optimizes the union of both
    modules' parameters (:func:`vaezoo.inference.fit.parameters`), and eval mode is set on both
    (:func:`vaezoo.nets.evaluating` takes both).
    """

    def __init__(self, model: Any):
        super().__init__()
        # Written past nn.Module.__setattr__, which would register the model as a submodule.
        self.__dict__["_model"] = model

    @property
    def model(self) -> Any:
        """The model this guide was built for (not a submodule: not in ``parameters()`` or ``state_dict``)."""
        return self.__dict__["_model"]


__all__ = ["BoundGuide"]
