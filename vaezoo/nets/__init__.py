"""Deterministic networks shared by models and guides (plain ``torch.nn``, no Pyro effects), and the
context managers that hold a network in a temporary state."""

from vaezoo.nets.mlp import ACTIVATIONS, activation, mlp
from vaezoo.nets.state import evaluating, frozen

__all__ = ["ACTIVATIONS", "activation", "evaluating", "frozen", "mlp"]
