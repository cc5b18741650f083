"""Registries of models, guides and objectives, keyed by name, each with its config dataclass.

A module adds itself with a decorator, so adding a model touches only its own module (and the
package ``__init__`` that imports it)::

    @register_model("vae", VAEConfig)
    class VAE(PyroModule): ...

``build_model("vae", z_dim=10)`` then builds it from a strict config, and the CLI turns the same
config into flags. Unknown names are an error that lists the registered ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vaezoo.config import from_dict, resolve
from vaezoo.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    config: type


class Registry:
    """Name -> (factory, config dataclass). ``kind`` is used in error messages."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, config: type) -> Callable[[Any], Any]:
        def decorator(factory: Any) -> Any:
            if name in self._entries and self._entries[name].factory is not factory:
                raise ConfigError(f"{self.kind} name {name!r} is registered twice")
            self._entries[name] = Entry(name, factory, config)
            factory.registry_name = name
            factory.config_class = config
            return factory

        return decorator

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s are: {', '.join(self.names())}"
            ) from None

    def config(self, name: str, values: dict[str, Any] | None = None, **overrides: Any) -> Any:
        return from_dict(self.get(name).config, values, **overrides)


MODELS = Registry("model")
GUIDES = Registry("guide")
OBJECTIVES = Registry("objective")


def register_model(name: str, config: type) -> Callable[[Any], Any]:
    """Class decorator: ``cls(config)`` builds the model."""
    return MODELS.register(name, config)


def register_guide(name: str, config: type) -> Callable[[Any], Any]:
    """Class decorator: ``cls(model, config)`` builds a guide for ``model``."""
    return GUIDES.register(name, config)


def register_objective(name: str, config: type) -> Callable[[Any], Any]:
    """Class decorator: ``cls(config)`` builds the objective."""
    return OBJECTIVES.register(name, config)


def build_model(name: str, config: Any = None, **overrides: Any) -> Any:
    """Model ``name`` from a config dataclass or dict plus overrides (unknown keys are an error)."""
    entry = MODELS.get(name)
    return entry.factory(resolve(entry.config, config, overrides))


def build_guide(name: str, model: Any, config: Any = None, **overrides: Any) -> Any:
    entry = GUIDES.get(name)
    return entry.factory(model, resolve(entry.config, config, overrides))


def build_objective(name: str, config: Any = None, **overrides: Any) -> Any:
    entry = OBJECTIVES.get(name)
    return entry.factory(resolve(entry.config, config, overrides))
