"""Registries of models, guides and objectives, keyed by name, each with its config dataclass.

A module adds itself with a decorator, so adding a model touches only its own module (and the
package ``__init__`` that imports it)::

    @register_model("vae", VAEConfig)
    class VAE(PyroModule): ...

``build_model("vae", z_dim=10)`` then builds it from a strict config, and the CLI turns the same
config into flags. Unknown names are an error that lists the registered ones.

:func:`list_models`, :func:`list_guides` and :func:`list_objectives` show what is registered, each
entry with the first line of its docstring, and for guides the models they can serve.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro
import torch

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


@dataclass(frozen=True)
class Listing:
    """One registered entry, as :func:`list_models`, :func:`list_guides` and :func:`list_objectives` show it.

    ``summary`` is the first paragraph of the entry's docstring on one line. ``models`` is set for
    guides only: the registered models the guide can serve, in name order.
    """

    name: str
    summary: str
    factory: Callable[..., Any]
    config: type
    models: tuple[str, ...] | None = None

    def __str__(self) -> str:
        line = f"{self.name}: {self.summary}"
        return line if self.models is None else f"{line} [models: {', '.join(self.models)}]"


def summary(obj: Any) -> str:
    """The first paragraph of ``obj``'s docstring, joined into one line ("" when it has none)."""
    paragraph = (inspect.getdoc(obj) or "").split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def _listing(entry: Entry, models: tuple[str, ...] | None = None) -> Listing:
    return Listing(entry.name, summary(entry.factory), entry.factory, entry.config, models)


def list_models() -> list[Listing]:
    """Every registered model, in name order."""
    return [_listing(MODELS.get(name)) for name in MODELS.names()]


def list_objectives() -> list[Listing]:
    """Every registered objective, in name order."""
    return [_listing(OBJECTIVES.get(name)) for name in OBJECTIVES.names()]


def list_guides(model: Any = None) -> list[Listing]:
    """The registered guides with the models each can serve; with ``model``, only those that serve it.

    A guide serves a model when building it on the model raises no :class:`~vaezoo.errors.ConfigError`
    (the guide's own account of why it cannot, which is also how the contract test skips a pair).
    That can depend on the model's config (the ``block_rg`` guide needs binary spins), so the fit is
    tried on a fresh model built from a config, once per model class and config.

    :param model: ``None`` (every guide; each entry's ``models`` is tried on the models' default
        configs), a registered model name (its default config), or a model instance (its class and
        config; the instance itself is left untouched).
    """
    if model is None:
        served = {name: guides_for(MODELS.get(name).factory) for name in MODELS.names()}
        fits = {g: tuple(m for m in MODELS.names() if g in served[m]) for g in GUIDES.names()}
        return [_listing(GUIDES.get(g), fits[g]) for g in GUIDES.names()]
    if isinstance(model, str):
        cls, config = MODELS.get(model).factory, None
    else:
        cls, config = type(model), model.config
    fits = guides_for(cls, config)
    return [_listing(GUIDES.get(g), (cls.registry_name,)) for g in GUIDES.names() if g in fits]


_FITS: dict[tuple, frozenset[str]] = {}


def guides_for(model_class: type, config: Any = None) -> frozenset[str]:
    """Names of the registered guides that build without a ConfigError on ``model_class(config)``.

    Cached per (class, config, registered guides). The global random state and Pyro's parameter store
    are left as they were: building draws initial weights, and tracing a model registers parameters.
    """
    config = resolve(model_class.config_class, config, {})
    key: tuple | None = (model_class, config, tuple(GUIDES.names()))
    try:
        return _FITS[key]
    except TypeError:  # a config with an unhashable field value: try it, without caching
        key = None
    except KeyError:
        pass
    store = pyro.get_param_store()
    before = set(store.keys())
    try:
        with torch.random.fork_rng(devices=[]):
            model = model_class(config)
            fits = frozenset(g for g in GUIDES.names() if _builds(g, model))
    finally:
        for stale in set(store.keys()) - before:
            del store[stale]
    if key is not None:
        _FITS[key] = fits
    return fits


def _builds(guide: str, model: Any) -> bool:
    try:
        build_guide(guide, model)
    except ConfigError:
        return False
    return True
