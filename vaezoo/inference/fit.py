"""Training: a torch optimizer on an objective's differentiable loss, checkpointed every epoch."""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyro
import torch
from tqdm.auto import tqdm

from vaezoo import checkpoint, parallel
from vaezoo.config import check_argument
from vaezoo.data import batches, num_batches
from vaezoo.devices import module_device, resolve, to_device
from vaezoo.errors import CheckpointError, ConfigError, TrainingError, VaezooError
from vaezoo.files import remove_leftovers, writable_dir
from vaezoo.inference.compiled import BACKENDS
from vaezoo.inference.objective import has_adversary
from vaezoo.inference.run_state import kept, rank_seed, restore_rng, rng_state, run_spec
from vaezoo.inference.run_state import resume as resume_run
from vaezoo.inference.training_step import GradientStep, check_adversary
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


def make_optimizer(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel: one pass over all parameters instead of a dozen ops per tensor."""
    return torch.optim.Adam(params, lr=lr, fused=True)


@torch.no_grad()
def mean_bound(model, guide, objective, data, batch_size: int = 500) -> float:
    """The objective's bound averaged over ``data`` (eval mode, full latent weight), computed where
    ``model`` lives (batches are moved there). Under torchrun each rank takes a part of ``data``
    and every rank returns the mean over all of it."""
    w = parallel.world()
    part = list(parallel.shard(len(data), w)) if w.size > 1 else None
    sums = torch.zeros(2, dtype=torch.float64, device=module_device(model))
    with evaluating(model, guide):
        for x in batches(data, batch_size, device=module_device(model), order=part):
            bound = objective.bound(model, guide, x).sum().double()
            sums += torch.stack([bound, sums.new_tensor(x.shape[0])])
    total, n = parallel.sum_over_ranks(sums, w).tolist()
    return total / n


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
    compile: str | None = None,
    epoch_metrics: Callable[[Any, Any], dict[str, float]] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` and ``guide`` to maximize ``objective`` on ``train``; return the per-epoch history.

    The optimizer is fused :class:`torch.optim.Adam` over the parameters of both modules, stepping on
    ``objective.differentiable_loss`` (no ``pyro.optim`` / param-store round trip). Each epoch
    records the mean training loss and, if ``test`` is given, the test bound at full latent weight.

    With ``out``, ``out/checkpoint.pt`` is written atomically after every epoch (model, guide,
    optimizer, RNG states, history, ``meta``), so an interrupted run loses at most the epoch in
    flight; calling ``fit`` again with the same settings and ``resume=True`` continues from it.

    An objective with an inner adversary step (``objective.adversary_step``: the discriminators
    of ``aae`` and ``vae_gan``, the ratio network of ``lfvi``) takes that step, with its own
    optimizer, before each step of model and guide on the same batch; the numbers it returns are
    averaged into each epoch's record, and what it owns (network, optimizer) is checkpointed through
    ``objective.state_dict()``. Such objectives train eagerly in one process (``compile`` and
    torchrun are refused).

    ``progress`` shows a progress bar per epoch, ``verbose`` prints one summary line per epoch.

    ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"auto"``) moves model, guide and
    the objective's own state there before the optimizer is made; each batch is moved there as it
    is drawn, so the data may stay on the CPU. ``None`` trains where the model already is. The
    checkpoint does not depend on the device: one written on a GPU resumes on the CPU and back.

    ``compile`` (``"inductor"`` or ``"fx"``) computes each step's loss and gradients with
    :class:`~vaezoo.inference.compiled.CompiledLoss`: traced once per batch shape, then run as one
    graph without Pyro's per-site Python (inductor compiles it, which takes seconds to a minute per
    batch shape; ``"fx"`` runs the traced operators as they are). Pairs and objectives it cannot
    trace train eagerly after a warning.

    Under torchrun (several processes) ``batch_size`` is the batch of one step over all of them;
    see :mod:`vaezoo.parallel`. Rank 0 alone writes the checkpoint and logs.

    ``epoch_metrics(model, guide)`` adds its entries (e.g. active units) to every epoch's record,
    after the test bound, in eval mode; under torchrun rank 0 alone computes them.

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
    if compile not in (None, *BACKENDS):
        raise ConfigError(
            f"compile={compile!r} is not a backend; choose one of {', '.join(BACKENDS)}, or None (eager)",
            key="compile", value=compile, allowed=", ".join(BACKENDS),
        )
    train = check_data(model, train, "train")
    if test is not None:
        test = check_data(model, test, "test")
    path = writable_dir(out, "out") / CHECKPOINT if out is not None else None
    device = module_device(model) if device is None else resolve(device, "device")
    w, device = parallel.join(device)
    check_adversary(objective, w, compile)
    local_batch = parallel.check_split(batch_size, len(train), w)
    # One rank reports: the others neither log nor draw progress bars.
    logger = Logger() if logger is None or not w.main else logger
    progress, verbose = progress and w.main, verbose and w.main
    to_device(device, model, guide, objective)
    # Objectives may own trainable parts (e.g. a learned baseline) and state (e.g. a running average).
    owners = [model, guide] + ([objective] if callable(getattr(objective, "parameters", None)) else [])
    params = parameters(*owners)
    optimizer = make_optimizer(params, lr)
    spec = run_spec(model, guide, objective, batch_size, lr, seed, data_spec or {"n": len(train)})
    history: list[dict[str, float]] = []
    start = 0
    torch.manual_seed(seed)
    random.seed(seed)
    if w.rank > 0:
        torch.manual_seed(rank_seed(seed, w.rank, 0))
    if path is not None and w.main:
        remove_leftovers(path)
    if path is not None and path.exists() and resume:
        saved = resume_run(path, spec)
        model.load_state_dict(saved["state"]["model"])
        guide.load_state_dict(saved["state"]["guide"])
        if "objective" in saved["state"]:
            objective.load_state_dict(saved["state"]["objective"])
        elif _objective_state(objective).get("objective"):
            raise CheckpointError(
                f"{path} holds no state of objective {spec['objective']['name']!r}, which owns some "
                "(a baseline, a discriminator), so the run cannot resume exactly; start over with "
                "--no-resume (Python: resume=False) or another --out"
            )
        optimizer.load_state_dict(saved["state"]["optimizer"])
        history, start = list(saved["history"]), saved["epoch"]
        restore_rng(saved["rng"], w.rank, seed, start, device)
    logger.start({**spec, "meta": meta or {}, "device": str(device), "processes": w.size}, history)

    owned = params[len(parameters(model, guide)):]

    def first_batch() -> torch.Tensor:  # this rank's, for shaping lazy parameters (several ranks only)
        order = parallel.rank_order(len(train), seed * 100_003, start, w)
        return next(batches(train, local_batch, device=device, order=order))

    step = GradientStep(model, guide, objective, owned, w, device, first_batch, compile=compile)
    # The objective's state that is not a parameter (running averages) is averaged over the ranks
    # (by then GradientStep has given lazily shaped parameters their shapes).
    objective_state = []
    if w.size > 1:
        trained = {p.data_ptr() for p in owned}
        objective_state = [t for t in _objective_state(objective).get("objective", {}).values()
                           if t.data_ptr() not in trained]
    adversary = has_adversary(objective)
    context = pyro.validation_enabled(validate) if validate is not None else contextlib.nullcontext()
    with context, contextlib.closing(logger):
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            model.train()
            guide.train()
            if w.size == 1:
                shuffled = torch.Generator().manual_seed(seed * 100_003 + epoch)
                drawn = batches(train, batch_size, shuffle=True, generator=shuffled, device=device)
                steps = num_batches(train, batch_size)
            else:  # the same order as one process, dealt to the ranks (see vaezoo.parallel)
                order = parallel.rank_order(len(train), seed * 100_003, epoch, w)
                drawn = batches(train, local_batch, device=device, order=order)
                steps = num_batches(order, local_batch)
            sums = torch.zeros(2, dtype=torch.float64)
            inner: dict[str, float] = {}  # the adversary step's numbers, summed over the epoch's steps
            desc = f"epoch {epoch + 1}/{epochs}"
            bar = tqdm(drawn, total=steps, desc=desc, disable=not progress, leave=False)
            for i, x in enumerate(bar):
                where = f"at epoch {epoch + 1}, step {i + 1} of {steps}"
                with parallel.collective(f"the training step {where}", w):
                    try:
                        if adversary:  # its own optimizer, before the model's step on the same batch
                            for k, v in objective.adversary_step(model, guide, x, epoch + i / steps).items():
                                inner[k] = inner.get(k, 0.0) + v
                        loss = step(x, epoch + i / steps, optimizer)
                    except VaezooError:
                        raise
                    except ValueError as e:  # Pyro's validation found invalid (e.g. NaN) parameters
                        first = str(e).splitlines()[0]
                        raise TrainingError(f"{where}: {first}; {kept(path, start)}") from e
                    value = loss.item()
                    if not math.isfinite(value):
                        raise TrainingError(
                            f"loss became {value} {where}; {kept(path, start)}. "
                            "Lower the learning rate (--lr) or check the data"
                        )
                    optimizer.step()
                    parallel.average_state(objective_state, w)
                sums += torch.tensor([value * x.shape[0], x.shape[0]], dtype=torch.float64)
                if i % 50 == 0:
                    bar.set_postfix(loss=f"{value:.2f}")
            total, count = parallel.sum_over_ranks(sums.to(device), w).tolist()
            record = {
                "epoch": epoch + 1,
                "train_loss": total / count,
                "latent_weight": objective.latent_weight(epoch + 1),
                **{k: v / steps for k, v in inner.items()},
                "seconds": time.perf_counter() - t0,
            }
            if test is not None:
                record["test_bound"] = mean_bound(model, guide, objective, test)
            if epoch_metrics is not None and w.main:
                with evaluating(model, guide):
                    record.update(epoch_metrics(model, guide))
            history.append(record)
            if verbose:
                shown = ", ".join(
                    f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()
                )
                tqdm.write(shown)
            if path is not None:
                rng = parallel.all_objects(rng_state(device), w)
                if w.main:
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
                            "rng": rng if w.size > 1 else rng[0],
                            "history": history,
                            "meta": {**(meta or {}), "processes": w.size},
                        },
                    )
            start = epoch + 1
            logger.log_epoch(record, model, guide)
    return history
