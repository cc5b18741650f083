"""Typed configuration dataclasses: strict construction from dicts and command-line flags.

Every model, guide and objective has a frozen dataclass of its hyperparameters. This module turns
those dataclasses into argparse flags (``z_dim`` becomes ``--z-dim``), builds them back from parsed
arguments or plain dicts, and rejects keys it does not know, listing the valid ones, so a typo never
silently falls back to a default.

Each field also declares what it accepts, in its ``field(metadata=...)`` beside its help text, and
:func:`check` holds every built config to it, so a bad value is refused before any data is loaded or
any step taken. The vocabulary (numbers apply to each element of a tuple field):

- ``"min"`` / ``"max"``: inclusive bounds; ``"above"`` / ``"below"``: exclusive bounds;
- ``"min_len"``: the fewest values a tuple field takes;
- ``"zero"``: what 0 means when it is allowed (``"all"``: no limit), added to the help text.

Float fields must always be finite; ``Literal`` annotations give the choices of a field.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin

from vaezoo.errors import ConfigError

C = TypeVar("C")
CONSTRAINTS = ("min", "max", "above", "below", "min_len", "zero")


def _invalid(name: str, value: Any, allowed: str) -> ConfigError:
    message = f"config key {name!r} = {value!r} is not allowed: must be {allowed}"
    return ConfigError(message, name, value, allowed)


def allowed(tp: Any, meta: Any) -> str:
    """What a field of type ``tp`` with constraint ``meta`` accepts, in words (for messages and help)."""
    tp, optional = _strip_optional(tp)
    if get_origin(tp) is tuple:
        many = f"{meta['min_len']} or more values" if meta.get("min_len") else "a list of values"
        return f"{many}, each {allowed(get_args(tp)[0], meta)}"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, get_args(tp)))
    ops = (("min", ">="), ("above", ">"), ("max", "<="), ("below", "<"))
    bounds = [f"{op} {meta[key]}" for key, op in ops if key in meta]
    kind = {int: "an integer", float: "a finite number", bool: "true or false"}.get(tp, f"a {tp.__name__}")
    words = " ".join([kind, " and ".join(bounds)]).strip()
    if "zero" in meta:
        words += f" (0: {meta['zero']})"
    return words + (" or None" if optional else "")


def _check_value(name: str, tp: Any, meta: Any, value: Any) -> None:
    tp, _ = _strip_optional(tp)
    if value is None:
        return
    if get_origin(tp) is tuple:
        if len(value) < meta.get("min_len", 0):
            raise _invalid(name, value, allowed(tp, meta))
        for v in value:
            try:
                _check_value(name, get_args(tp)[0], meta, v)
            except ConfigError:
                raise _invalid(name, value, allowed(tp, meta)) from None
        return
    if tp not in (int, float):
        return
    ok = math.isfinite(value) and all(
        test(value, meta[key])
        for key, test in (
            ("min", lambda v, b: v >= b),
            ("max", lambda v, b: v <= b),
            ("above", lambda v, b: v > b),
            ("below", lambda v, b: v < b),
        )
        if key in meta
    )
    if not ok:
        raise _invalid(name, value, allowed(tp, meta))


def check(config: Any) -> Any:
    """Hold every field of dataclass ``config`` to what its metadata declares; return ``config``.

    :raises ConfigError: naming the first field that breaks its constraint, its value and what is allowed.
    """
    hints = _field_types(type(config))
    for f in dataclasses.fields(config):
        unknown = set(f.metadata) - {*CONSTRAINTS, "help", "cli"}
        if unknown:
            name = f"{type(config).__name__}.{f.name}"
            raise ConfigError(f"{name} declares unknown constraint(s) {sorted(unknown)}")
        _check_value(f.name, hints[f.name], f.metadata, getattr(config, f.name))
    return config


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
        raise _invalid(name, value, "a value (not None)")
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"config key {name!r} must be one of {list(choices)}, got {value!r}",
                              name, value, "one of " + ", ".join(map(str, choices)))
        return value
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            value = (value,)
        (elem, *_rest) = get_args(tp)
        return tuple(_coerce(name, elem, v) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _invalid(name, value, "true or false")
    if tp in (int, float, str):
        try:
            out = tp(value)
        except (TypeError, ValueError, OverflowError):
            raise _invalid(name, value, f"{tp.__name__} (an integer)" if tp is int else tp.__name__) from None
        if tp is int and isinstance(value, float) and value != out:
            raise _invalid(name, value, "an integer")
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
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in merged
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{cls.__name__} needs config key(s) {missing}")
    hints = _field_types(cls)
    kwargs = {k: _coerce(k, hints[k], v) for k, v in merged.items()}
    return check(cls(**kwargs))


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
    decides) get no flag; a field without a default becomes a required flag. Defaults are left as
    ``None`` so :func:`from_args` can tell which flags the user actually gave, and the dataclass stays
    the single place that holds defaults.
    """
    group = parser.add_argument_group(title or cls.__name__)
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        tp, _ = _strip_optional(hints[f.name])
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        help_text = f.metadata.get("help", "")
        if set(f.metadata) & set(CONSTRAINTS):
            help_text += f" (allowed: {allowed(hints[f.name], f.metadata)})"
        if not required:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            help_text = f"{help_text} (default: {default})".strip()
        dest = prefix + f.name
        origin = get_origin(tp)
        kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": help_text}
        if required:
            kwargs["required"] = True
        if origin is Literal:
            kwargs["choices"] = get_args(tp)
        elif origin is tuple:
            kwargs.update(type=get_args(tp)[0], nargs="+")
        elif tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = tp
        group.add_argument(flag(f.name, prefix), **kwargs)


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def from_args(cls: type[C], args: argparse.Namespace, prefix: str = "", **fixed: Any) -> C:
    """Build ``cls`` from the flags :func:`add_flags` added, plus ``fixed`` values the caller decides.

    :raises ConfigError: for a bad flag value, one line naming the flag, the value and what is allowed.
    """
    given = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, prefix + f.name, None)
        if value is not None:
            given[f.name] = value
    try:
        return from_dict(cls, {**given, **fixed})
    except ConfigError as e:
        if e.key is None or e.key in fixed:
            raise
        raise ConfigError(f"{flag(e.key, prefix)} {_shown(e.value)}: must be {e.allowed}", e.key, e.value,
                          e.allowed) from None


def check_argument(name: str, value: Any, tp: type, **constraint: Any) -> Any:
    """A function argument held to the same vocabulary as a config field (``min=1``, ...); returns it.

    :raises ConfigError: naming the argument, its value and what is allowed.
    """
    try:
        if tp is int and isinstance(value, bool):
            raise _invalid(name, value, "an integer")
        value = _coerce(name, tp, value)
        _check_value(name, tp, constraint, value)
    except ConfigError as e:
        message = f"argument {name!r} = {e.value!r} is not allowed: must be {e.allowed}"
        raise ConfigError(message, name, e.value, e.allowed) from None
    return value


class Checked:
    """Mixin of a config dataclass that holds itself to its constraints when built directly, too."""

    def __post_init__(self) -> None:
        check(self)
