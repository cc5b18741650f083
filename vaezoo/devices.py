"""Which device a run uses: ``--device`` resolved and checked before any work, and where a module lives.

Models, guides and objectives hold no device of their own: tensors they create follow their
input (``x.new_zeros``, ``torch.zeros_like``, ``device=x.device``) or the module's parameters
(:func:`module_device`), so moving the modules and the data is all a run on another device takes.
"""

from __future__ import annotations

import torch

from vaezoo.errors import ConfigError

#: What ``--device`` accepts (``cuda:N`` picks one GPU of several).
CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
#: The help of every command's ``--device`` flag.
HELP = "where to compute: cpu, cuda, cuda:N, mps, or auto (CUDA when available, else CPU)"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available() -> list[str]:
    """The devices this machine can run on, as ``--device`` values (``cpu`` always)."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        found.append("mps")
    return found


def _cuda_missing() -> str:
    if torch.version.cuda is None:
        return "this torch build has no CUDA support"
    return f"torch is built for CUDA {torch.version.cuda} but finds no usable GPU"


def resolve(device: str | torch.device | None = "auto", what: str = "device") -> torch.device:
    """The :class:`torch.device` that ``device`` names, checked to exist on this machine.

    ``"auto"`` (or ``None``) is the first CUDA GPU when there is one, else the CPU. MPS is never
    chosen automatically: it has no float64, which the estimators of log p(x) accumulate in.

    :param what: how the caller names the setting in messages (``"--device"`` on the command line).
    :raises ConfigError: naming ``what``, the device and what is available, for a device that is
        not one or that this machine does not have.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    here = f"available here: {', '.join(available())} (or auto)"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(
            f"{what} {device!r} is not a device; choose one of {', '.join(CHOICES)}; {here}",
            key="device",
            value=device,
            allowed=", ".join(CHOICES),
        ) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{what} {device}: CUDA is not available ({_cuda_missing()}); {here}",
                key="device",
                value=device,
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"{what} {device}: this machine has {torch.cuda.device_count()} CUDA device(s); {here}",
                key="device",
                value=device,
            )
        return dev
    if dev.type == "mps":
        if not _mps_available():
            raise ConfigError(
                f"{what} {device}: MPS (Apple GPU) is not available; {here}", key="device", value=device
            )
        return dev
    raise ConfigError(
        f"{what} {device}: vaezoo runs on {', '.join(CHOICES)}, not on {dev.type!r}; {here}",
        key="device",
        value=device,
    )


def module_device(*modules) -> torch.device:
    """The device of the first parameter or buffer of ``modules`` (the CPU if they have none)."""
    for m in modules:
        for method in ("parameters", "buffers"):
            for t in getattr(m, method, tuple)():
                return t.device
    return torch.device("cpu")


def to_device(device: torch.device, *modules) -> None:
    """Move every one of ``modules`` (anything with a ``to`` method) to ``device``, in place."""
    for m in modules:
        move = getattr(m, "to", None)
        if callable(move):
            move(device)
