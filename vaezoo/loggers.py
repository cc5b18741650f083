"""Where :func:`~vaezoo.inference.fit` reports a run: the config once, then one record per epoch.

A logger is an object handed to ``fit`` (``fit(..., logger=CSVLogger(out))``); ``fit`` calls
:meth:`Logger.start` before the first epoch (with the records of epochs a resumed run already
has), :meth:`Logger.log_epoch` after each epoch's checkpoint, and :meth:`Logger.close` at the end,
also when training fails. Only the process that should write calls them, so a data-parallel run
hands the loggers to its first rank alone.

- :class:`CSVLogger` (``--logger csv``, the default): ``OUT/log.csv``, one row per epoch, and
  ``OUT/config.json``; needs nothing beyond the standard library.
- :class:`TensorBoardLogger` (``--logger tensorboard``): event files in ``OUT`` for
  ``tensorboard --logdir runs/``, scalars, the config as text and, given a function that draws
  them, image grids; needs the optional ``tensorboard`` package.
- :class:`Logger` (``--logger none``): writes nothing.

A folder that cannot be written is refused when the logger is made, before any training.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vaezoo.errors import ConfigError
from vaezoo.files import atomic_write, writable_dir

#: A function of ``(model, guide)`` returning images ``(n, channels, height, width)`` in [0, 1], or
#: ``None`` for a model whose data are not images.
ImageFn = Callable[[Any, Any], torch.Tensor]


class Logger:
    """The interface, and the logger that writes nothing (``--logger none``)."""

    def start(self, config: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """Record the run's ``config``; ``history`` holds the records of epochs already done (resume)."""

    def log_epoch(self, record: dict[str, Any], model=None, guide=None) -> None:
        """Record one epoch (``record["epoch"]`` counts from 1); ``model``, ``guide`` for image grids."""

    def close(self) -> None:
        """Flush and release what the logger holds; safe to call twice."""


def _json(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2, sort_keys=True, default=str)


class CSVLogger(Logger):
    """``folder/log.csv``: a header, then one row per epoch; ``folder/config.json``: the config.

    The checkpoint's history is the source of truth: :meth:`start` rewrites the file from it
    (atomically), so a resumed run neither repeats the rows of epochs it trains again nor loses
    those a kill kept out of the file; later epochs are appended one line at a time. A record
    with a column the file lacks rewrites it with the new column (earlier rows leave it empty).
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = writable_dir(folder, "log folder")
        self.path = self.folder / "log.csv"
        self.columns: list[str] = []
        self.rows: list[dict[str, Any]] = []

    def start(self, config: dict[str, Any], history: list[dict[str, Any]]) -> None:
        blob = _json(config).encode()
        atomic_write(self.folder / "config.json", lambda f: f.write(blob), sync=False)
        self.rows = [dict(r) for r in history]
        self.columns = []
        for r in self.rows:
            self.columns += [k for k in r if k not in self.columns]
        self._rewrite()

    def _rewrite(self) -> None:
        text = io.StringIO()
        if self.columns:
            writer = csv.DictWriter(text, self.columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows)
        blob = text.getvalue().encode()
        atomic_write(self.path, lambda f: f.write(blob), sync=False)

    def log_epoch(self, record: dict[str, Any], model=None, guide=None) -> None:
        self.rows.append(dict(record))
        new = [k for k in record if k not in self.columns]
        if new or not self.path.exists():
            self.columns += new
            self._rewrite()
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns, lineterminator="\n").writerow(record)


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "--logger tensorboard (TensorBoardLogger) needs the tensorboard package, which is not "
            "installed: pip install tensorboard (or pip install 'vaezoo[tensorboard]'); "
            "or log with --logger csv, which needs nothing extra",
            key="logger",
            value="tensorboard",
        ) from None
    return SummaryWriter


class TensorBoardLogger(Logger):
    """TensorBoard event files in ``folder``: per-epoch scalars, the config as text, image grids.

    Steps are epoch numbers. A resumed run purges the events a killed run wrote past its
    checkpoint, so each epoch appears once. ``images(model, guide)`` (e.g. prior samples) is drawn
    after each epoch with a fixed seed in a forked RNG: the grid shows the same draws evolve, and
    training takes the same random numbers with or without it.

    :raises ConfigError: when the ``tensorboard`` package is missing (naming ``pip install
        tensorboard``) or ``folder`` cannot be written.
    """

    def __init__(self, folder: str | os.PathLike, images: ImageFn | None = None, image_seed: int = 0):
        self.writer_class = _summary_writer()
        self.folder = writable_dir(folder, "log folder")
        self.images = images
        self.image_seed = image_seed
        self.writer = None

    def start(self, config: dict[str, Any], history: list[dict[str, Any]]) -> None:
        self.close()
        done = max((int(r["epoch"]) for r in history), default=0)
        self.writer = self.writer_class(log_dir=str(self.folder), purge_step=done + 1)
        self.writer.add_text("config", "```json\n" + _json(config) + "\n```", global_step=done)
        self.writer.flush()

    def log_epoch(self, record: dict[str, Any], model=None, guide=None) -> None:
        step = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, global_step=step)
        grid = self._grid(model, guide) if self.images is not None and model is not None else None
        if grid is not None:
            self.writer.add_image("samples", grid, global_step=step)
        self.writer.flush()

    @torch.no_grad()
    def _grid(self, model, guide) -> torch.Tensor | None:
        from torchvision.utils import make_grid

        cuda = [p.device for p in model.parameters() if p.device.type == "cuda"][:1]
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.image_seed)
            images = self.images(model, guide)
        if images is None:
            return None
        images = images.detach().float().cpu()
        return make_grid(images.clamp(0, 1), nrow=max(1, int(len(images) ** 0.5)))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


#: ``--logger`` values and the logger each makes for an output folder.
LOGGERS: dict[str, Callable[..., Logger]] = {
    "csv": lambda folder, images=None: CSVLogger(folder),
    "tensorboard": TensorBoardLogger,
    "none": lambda folder, images=None: Logger(),
}


def make_logger(kind: str, folder: str | os.PathLike | Path, images: ImageFn | None = None) -> Logger:
    """The logger ``--logger kind`` names, writing into ``folder``; ``images`` only TensorBoard uses."""
    if kind not in LOGGERS:
        raise ConfigError(
            f"--logger {kind!r} is not a logger; choose one of {', '.join(LOGGERS)}",
            key="logger",
            value=kind,
            allowed=", ".join(LOGGERS),
        )
    return LOGGERS[kind](folder, images=images)
