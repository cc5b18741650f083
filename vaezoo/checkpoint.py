"""Checkpoints: written atomically, validated on load, and enough to rebuild model, guide and objective."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from vaezoo.config import to_dict
from vaezoo.devices import resolve
from vaezoo.errors import CheckpointError, ConfigError
from vaezoo.files import atomic_write
from vaezoo.registry import GUIDES, MODELS, OBJECTIVES, build_guide, build_model, build_objective

FORMAT = "vaezoo-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "model", "guide", "objective", "epoch", "state")


def spec(obj: Any) -> dict[str, Any]:
    """``{"name", "config"}`` of a registered model, guide or objective."""
    name = getattr(type(obj), "registry_name", None)
    if name is None:
        raise CheckpointError(f"{type(obj).__name__} is not registered, so a checkpoint could not rebuild it")
    return {"name": name, "config": to_dict(obj.config)}


def save(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically: a crash leaves the previous file intact."""
    atomic_write(path, lambda f: torch.save({"format": FORMAT, "version": VERSION, **payload}, f))


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint; every failure is a :class:`CheckpointError` with a fix.

    Tensors are read onto the CPU whatever device wrote them (``map_location``), so a checkpoint
    written on a GPU loads on a machine without one; :func:`restore` moves the modules on.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; train first (vaezoo train --out DIR) or fix the path"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a vaezoo checkpoint ({type(e).__name__}); "
            "delete it and retrain, or point to an intact copy"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a vaezoo checkpoint; pass a checkpoint.pt written by vaezoo train"
        )
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it is damaged, retrain")
    if payload["version"] > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {payload['version']}; upgrade vaezoo to read it"
        )
    for reg, key in ((MODELS, "model"), (GUIDES, "guide"), (OBJECTIVES, "objective")):
        if payload[key]["name"] not in reg:
            raise CheckpointError(
                f"checkpoint {path} needs {key} {payload[key]['name']!r}, which this vaezoo does not have "
                f"(it has {', '.join(reg.names())})"
            )
    return payload


def restore(
    path: str | os.PathLike, payload: dict[str, Any] | None = None, device: str | Any | None = None
):
    """Rebuild ``(model, guide, objective, payload)`` from a checkpoint, weights loaded, in eval mode.

    :param payload: what :func:`load` already read from ``path``, to spare a second read.
    :param device: where to put model, guide and objective (``"cpu"``, ``"cuda"``, ``"auto"``, ...),
        whichever device wrote the checkpoint; ``None`` leaves them on the CPU.
    :raises ConfigError: for a ``device`` this machine does not have, before the file is read.
    """
    device = resolve(device, "device") if device is not None else None
    payload = load(path) if payload is None else payload
    try:
        model = build_model(payload["model"]["name"], payload["model"]["config"])
        guide = build_guide(payload["guide"]["name"], model, payload["guide"]["config"])
        objective = build_objective(payload["objective"]["name"], payload["objective"]["config"])
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {path} holds a config this vaezoo refuses: {e}") from None
    try:
        model.load_state_dict(payload["state"]["model"])
        guide.load_state_dict(payload["state"]["guide"])
        if "objective" in payload["state"]:
            if not callable(getattr(objective, "load_state_dict", None)):
                name = payload["objective"]["name"]
                raise KeyError(f"objective {name!r} cannot load the saved objective state")
            objective.load_state_dict(payload["state"]["objective"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit the model it names: {e}") from None
    if device is not None:
        model.to(device)
        guide.to(device)
        objective.to(device)
    model.eval()
    guide.eval()
    return model, guide, objective, payload
