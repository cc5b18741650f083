"""Training: a torch optimizer on an objective's differentiable loss, checkpointed every epoch."""

from __future__ import annotations

import contextlib
import math
import random
import time
from pathlib import Path
from typing import Any

import pyro
import torch
from tqdm.auto import tqdm

from vaezoo import checkpoint
from vaezoo.config import check_argument
from vaezoo.data import batches, num_batches
from vaezoo.devices import module_device, resolve, to_device
from vaezoo.errors import CheckpointError, TrainingError, VaezooError
from vaezoo.files import remove_leftovers, writable_dir
from vaezoo.inputs import check_data
from vaezoo.loggers import Logger
from vaezoo.nets import evaluating

CHECKPOINT = "checkpoint.pt"


def parameters(*modules) -> list[torch.nn.Parameter]:
    """The parameters of ``modules``, each once (a guide may share parameters with its model).

    Anything with a ``parameters()`` method counts, such as an objective with a learned baseline.
    """
    seen: dict[int, torch.nn.Parameter] = {}
    for m in modules:
        for p in m.parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


def _objective_state(objective) -> dict[str, Any]:
    state_dict = getattr(objective, "state_dict", None)
    return {"objective": state_dict()} if callable(state_dict) else {}


def _kept(path: Path | None, epochs_saved: int) -> str:
    if path is None or not epochs_saved:
        return "no checkpoint was written"
    return f"the last good checkpoint (epoch {epochs_saved}) is kept at {path}"


def make_optimizer(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel: one pass over all parameters instead of a dozen ops per tensor."""
    return torch.optim.Adam(params, lr=lr, fused=True)


@torch.no_grad()
def mean_bound(model, guide, objective, data, batch_size: int = 500) -> float:
    """The objective's bound averaged over ``data`` (eval mode, full latent weight), computed where
    ``model`` lives (batches are moved there)."""
    total, n = 0.0, 0
    with evaluating(model, guide):
        for x in batches(data, batch_size, device=module_device(model)):
            total += objective.bound(model, guide, x).sum().item()
            n += x.shape[0]
    return total / n


def _run_spec(model, guide, objective, batch_size: int, lr: float, seed: int, data: dict) -> dict[str, Any]:
    """Everything that defines a run; a checkpoint resumes only a run whose spec is equal."""
    return {
        "model": checkpoint.spec(model),
        "guide": checkpoint.spec(guide),
        "objective": checkpoint.spec(objective),
        "train": {"batch_size": batch_size, "lr": lr, "seed": seed},
        "data": data,
    }


def differences(saved: Any, now: Any, where: str = "") -> list[str]:
    """``"key.path: saved -> now"`` for each leaf where two run specs differ."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return [line for k in sorted(set(saved) | set(now), key=str)
                for line in differences(saved.get(k, "(not recorded)"), now.get(k, "(not recorded)"),
                                        f"{where}.{k}" if where else str(k))]
    return [] if saved == now else [f"{where}: {saved!r} -> {now!r}"]


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    # A run resumed on another kind of device continues with that device's own generator.
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _resume(path: Path, spec: dict[str, Any]) -> dict[str, Any]:
    saved = checkpoint.load(path)
    diff = differences({k: saved.get(k, "(not recorded)") for k in spec}, spec)
    if diff:
        mismatched = [k for k in spec if saved.get(k) != spec[k]]
        raise CheckpointError(
            f"{path} holds a run with different {', '.join(mismatched)} ({'; '.join(diff)}); "
            "use another --out (Python: out=), or --no-resume (resume=False) to start over in this folder"
        )
    return saved


def fit(
    model,
    guide,
    train,
    objective,
    *,
    epochs: int,
    batch_size: int = 100,
    lr: float = 1e-3,
    test=None,
    out: str | Path | None = None,
    resume: bool = True,
    seed: int = 0,
    progress: bool = True,
    verbose: bool = False,
    validate: bool | None = None,
    meta: dict[str, Any] | None = None,
    data_spec: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    logger: Logger | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` and ``guide`` to maximize ``objective`` on ``train``; return the per-epoch history.

    The optimizer is fused :class:`torch.optim.Adam` over the parameters of both modules, stepping on
    ``objective.differentiable_loss`` (no ``pyro.optim`` / param-store round trip). Each epoch
    records the mean training loss and, if ``test`` is given, the test bound at full latent weight.

    With ``out``, ``out/checkpoint.pt`` is written atomically after every epoch (model, guide,
    optimizer, RNG states, history, ``meta``), so an interrupted run loses at most the epoch in
    flight; calling ``fit`` again with the same settings and ``resume=True`` continues from it.

    ``progress`` shows a progress bar per epoch, ``verbose`` prints one summary line per epoch.

    ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"auto"``) moves model, guide and
    the objective's own state there before the optimizer is made; each batch is moved there as it
    is drawn, so the data may stay on the CPU. ``None`` trains where the model already is. The
    checkpoint does not depend on the device: one written on a GPU resumes on the CPU and back.

    ``logger`` (a :class:`~vaezoo.loggers.Logger`, e.g. ``CSVLogger(out)``) receives the run's
    config once and every epoch's record after its checkpoint is written; a resumed run hands it
    the history so far, so no epoch is logged twice.

    The checkpoint records what defines the run: model, guide and objective with their configs,
    ``batch_size``, ``lr``, ``seed`` and ``data_spec`` (what the data are: data set, binarization,
    size, source folder; by default the number of training datapoints). Resuming a run that differs
    in any of them is refused with the list of differences. Leftover ``*.tmp`` files of a write
    that was killed are removed first.

    :raises ConfigError: for a bad argument (``epochs``, ``batch_size``, ``lr``, ``seed``, ``out``,
        a ``device`` this machine does not have), before any work is done.
    :raises DataError: for data the model cannot take (checked once here, so the steps need not).
    :raises TrainingError: when the loss stops being finite; the last good checkpoint is kept.
    """
    epochs = check_argument("epochs", epochs, int, min=1)
    batch_size = check_argument("batch_size", batch_size, int, min=1)
    lr = check_argument("lr", lr, float, above=0)
    seed = check_argument("seed", seed, int)
    train = check_data(model, train, "train")
    if test is not None:
        test = check_data(model, test, "test")
    path = writable_dir(out, "out") / CHECKPOINT if out is not None else None
    device = module_device(model) if device is None else resolve(device, "device")
    logger = Logger() if logger is None else logger
    to_device(device, model, guide, objective)
    # Objectives may own trainable parts (e.g. a learned baseline) and state (e.g. a running average).
    owners = [model, guide] + ([objective] if callable(getattr(objective, "parameters", None)) else [])
    params = parameters(*owners)
    optimizer = make_optimizer(params, lr)
    spec = _run_spec(model, guide, objective, batch_size, lr, seed, data_spec or {"n": len(train)})
    history: list[dict[str, float]] = []
    start = 0
    torch.manual_seed(seed)
    random.seed(seed)
    if path is not None:
        remove_leftovers(path)
    if path is not None and path.exists() and resume:
        saved = _resume(path, spec)
        model.load_state_dict(saved["state"]["model"])
        guide.load_state_dict(saved["state"]["guide"])
        if "objective" in saved["state"]:
            objective.load_state_dict(saved["state"]["objective"])
        optimizer.load_state_dict(saved["state"]["optimizer"])
        _set_rng_state(saved["rng"], device)
        history, start = list(saved["history"]), saved["epoch"]
    logger.start({**spec, "meta": meta or {}, "device": str(device)}, history)

    steps = num_batches(train, batch_size)
    context = pyro.validation_enabled(validate) if validate is not None else contextlib.nullcontext()
    with context, contextlib.closing(logger):
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            model.train()
            guide.train()
            order = torch.Generator().manual_seed(seed * 100_003 + epoch)
            total, count = 0.0, 0
            bar = tqdm(
                batches(train, batch_size, shuffle=True, generator=order, device=device),
                total=steps,
                desc=f"epoch {epoch + 1}/{epochs}",
                disable=not progress,
                leave=False,
            )
            for i, x in enumerate(bar):
                where = f"at epoch {epoch + 1}, step {i + 1} of {steps}"
                try:
                    loss = objective.differentiable_loss(model, guide, x, progress=epoch + i / steps)
                except VaezooError:
                    raise
                except ValueError as e:  # Pyro's validation found invalid (e.g. NaN) parameters
                    raise TrainingError(f"{where}: {str(e).splitlines()[0]}; {_kept(path, start)}") from e
                value = loss.item()
                if not math.isfinite(value):
                    raise TrainingError(
                        f"loss became {value} {where}; {_kept(path, start)}. "
                        "Lower the learning rate (--lr) or check the data"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += value * x.shape[0]
                count += x.shape[0]
                if i % 50 == 0:
                    bar.set_postfix(loss=f"{value:.2f}")
            record = {
                "epoch": epoch + 1,
                "train_loss": total / count,
                "latent_weight": objective.latent_weight(epoch + 1),
                "seconds": time.perf_counter() - t0,
            }
            if test is not None:
                record["test_bound"] = mean_bound(model, guide, objective, test)
            history.append(record)
            if verbose:
                shown = ", ".join(
                    f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()
                )
                tqdm.write(shown)
            if path is not None:
                checkpoint.save(
                    path,
                    {
                        **spec,
                        "epoch": epoch + 1,
                        "state": {
                            "model": model.state_dict(),
                            "guide": guide.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            **_objective_state(objective),
                        },
                        "rng": _rng_state(device),
                        "history": history,
                        "meta": meta or {},
                    },
                )
            start = epoch + 1
            logger.log_epoch(record, model, guide)
    return history
