"""Typed configuration dataclasses: strict construction from dicts and command-line flags.

Every model, guide and objective has a frozen dataclass of its hyperparameters. This module turns
those dataclasses into argparse flags (``z_dim`` becomes ``--z-dim``), builds them back from parsed
arguments or plain dicts, and rejects keys it does not know, listing the valid ones, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin

from vaezoo.errors import ConfigError

C = TypeVar("C")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Convert ``value`` (from JSON, a checkpoint or argparse) to the annotated type ``tp``."""
    tp, optional = _strip_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key {name!r} may not be None")
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"config key {name!r} must be one of {list(choices)}, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            value = (value,)
        (elem, *_rest) = get_args(tp)
        return tuple(_coerce(name, elem, v) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {name!r} must be true or false, got {value!r}")
    if tp in (int, float, str):
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {name!r} must be {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != out:
            raise ConfigError(f"config key {name!r} must be an integer, got {value!r}")
        return out
    return value


def from_dict(cls: type[C], values: dict[str, Any] | None = None, **overrides: Any) -> C:
    """Build config ``cls`` from ``values`` and ``overrides``; unknown keys are an error.

    :raises ConfigError: naming the unknown keys and listing the valid ones.
    """
    merged = {**(values or {}), **overrides}
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(merged) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {unknown} for {cls.__name__}; valid keys are: {', '.join(names)}"
        )
    hints = _field_types(cls)
    kwargs = {k: _coerce(k, hints[k], v) for k, v in merged.items()}
    return cls(**kwargs)


def resolve(cls: type[C], config: Any = None, overrides: dict[str, Any] | None = None) -> C:
    """``cls`` from an existing config (dataclass or dict) plus keyword overrides, strictly checked.

    Lets every configurable object be built either way: ``VAE(VAEConfig(z_dim=10))``,
    ``VAE({"z_dim": 10})`` or ``VAE(z_dim=10)``.
    """
    if config is None:
        base: dict[str, Any] = {}
    elif dataclasses.is_dataclass(config):
        if not isinstance(config, cls):
            raise ConfigError(f"expected a {cls.__name__}, got a {type(config).__name__}")
        base = dataclasses.asdict(config)
    else:
        base = dict(config)
    return from_dict(cls, base, **(overrides or {}))


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-python dict of a config dataclass (tuples become lists, as JSON would make them)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def flag(name: str, prefix: str = "") -> str:
    return "--" + (prefix + name).replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, cls: type, prefix: str = "", title: str | None = None) -> None:
    """Add one ``--dashed-flag`` per field of ``cls`` to ``parser``.

    Fields whose metadata says ``cli=False`` (for example a model's input shape, which the data set
    decides) get no flag. Defaults are left as ``None`` so :func:`from_args` can tell which flags the
    user actually gave, and the dataclass stays the single place that holds defaults.
    """
    group = parser.add_argument_group(title or cls.__name__)
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        tp, _ = _strip_optional(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f.metadata.get("help", "")
        help_text = f"{help_text} (default: {default})".strip()
        dest = prefix + f.name
        origin = get_origin(tp)
        if origin is Literal:
            group.add_argument(
                flag(f.name, prefix), dest=dest, choices=get_args(tp), default=None, help=help_text
            )
        elif origin is tuple:
            elem = get_args(tp)[0]
            group.add_argument(
                flag(f.name, prefix), dest=dest, type=elem, nargs="+", default=None, help=help_text
            )
        elif tp is bool:
            group.add_argument(
                flag(f.name, prefix),
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            group.add_argument(flag(f.name, prefix), dest=dest, type=tp, default=None, help=help_text)


def from_args(cls: type[C], args: argparse.Namespace, prefix: str = "", **fixed: Any) -> C:
    """Build ``cls`` from the flags :func:`add_flags` added, plus ``fixed`` values the caller decides."""
    given = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, prefix + f.name, None)
        if value is not None:
            given[f.name] = value
    return from_dict(cls, {**given, **fixed})
