"""Loggers: the CSV file after training and after resumes (each epoch once), TensorBoard event files,
the config once, and clear errors for a missing package or a folder that cannot be written."""

import csv
import json
import sys

import pytest
import torch

from tests.conftest import binary_batch
from vaezoo import ELBO, VAE, ConfigError, fit
from vaezoo.loggers import CSVLogger, Logger, TensorBoardLogger, make_logger

DATA = binary_batch(64, shape=(1, 6, 6), seed=4)


def small(seed=0):
    torch.manual_seed(seed)
    model = VAE(x_shape=(1, 6, 6), z_dim=3, hidden=(8,))
    return model, model.default_guide()


def train(out, epochs, logger=None, resume=True, seed=0):
    model, guide = small(seed)
    logger = CSVLogger(out) if logger is None else logger
    return fit(
        model,
        guide,
        DATA,
        ELBO(),
        epochs=epochs,
        batch_size=32,
        test=DATA[:16],
        out=out,
        resume=resume,
        progress=False,
        logger=logger,
    )


def rows(out):
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def as_history(table):
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items()} for r in table]


def test_csv_has_a_header_and_one_row_per_epoch_equal_to_the_history(tmp_path):
    history = train(tmp_path, 2)
    table = rows(tmp_path)
    assert list(table[0]) == ["epoch", "train_loss", "latent_weight", "seconds", "test_bound"]
    assert as_history(table) == history  # every value, to the last digit
    assert (tmp_path / "log.csv").read_text().count("epoch") == 1
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["name"] == "vae" and config["train"]["batch_size"] == 32
    assert config["device"] == "cpu"


def test_resume_appends_the_new_epochs_only(tmp_path):
    first = train(tmp_path, 2)
    history = train(tmp_path, 4, seed=99)  # a fresh process: weights come from the checkpoint
    assert history[:2] == first
    assert as_history(rows(tmp_path)) == history
    assert [r["epoch"] for r in rows(tmp_path)] == ["1", "2", "3", "4"]


def test_rows_a_killed_run_wrote_past_its_checkpoint_are_not_repeated(tmp_path):
    train(tmp_path, 2)
    # Killed after logging epoch 3 but before its checkpoint: the file is ahead of the checkpoint.
    with open(tmp_path / "log.csv", "a") as f:
        f.write("3,1.0,1.0,1.0,1.0\n")
    history = train(tmp_path, 3)
    assert [r["epoch"] for r in rows(tmp_path)] == ["1", "2", "3"]
    assert as_history(rows(tmp_path)) == history


def test_starting_over_replaces_the_log(tmp_path):
    train(tmp_path, 2)
    history = train(tmp_path, 1, resume=False)
    assert as_history(rows(tmp_path)) == history


def test_a_record_with_a_new_column_rewrites_the_file_with_it(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.start({}, [{"epoch": 1, "loss": 2.0}])
    logger.log_epoch({"epoch": 2, "loss": 1.5, "bound": -3.0})
    assert rows(tmp_path) == [
        {"epoch": "1", "loss": "2.0", "bound": ""},
        {"epoch": "2", "loss": "1.5", "bound": "-3.0"},
    ]


def test_a_log_folder_that_cannot_be_written_is_refused_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for kind in ("csv", "tensorboard"):
        with pytest.raises(ConfigError, match="log folder .*file"):
            make_logger(kind, blocker / "run")
    assert not (blocker.parent / "run").exists()


def test_an_unknown_logger_lists_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="csv, tensorboard, none"):
        make_logger("wandb", tmp_path)


def test_none_writes_nothing(tmp_path):
    train(tmp_path, 1, logger=make_logger("none", tmp_path))
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint.pt"}


class Recording(Logger):
    def __init__(self):
        self.calls = []

    def start(self, config, history):
        self.calls.append(("start", len(history)))

    def log_epoch(self, record, model=None, guide=None):
        self.calls.append(("epoch", record["epoch"], model is not None))

    def close(self):
        self.calls.append(("close",))


def test_fit_calls_a_logger_in_order_and_closes_it(tmp_path):
    logger = Recording()
    train(tmp_path, 2, logger=logger)
    assert logger.calls == [("start", 0), ("epoch", 1, True), ("epoch", 2, True), ("close",)]
    logger = Recording()
    train(tmp_path, 3, logger=logger)
    assert logger.calls == [("start", 2), ("epoch", 3, True), ("close",)]


def test_missing_tensorboard_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    with pytest.raises(ConfigError, match=r"pip install tensorboard.*--logger csv"):
        TensorBoardLogger(tmp_path)


def _events(folder):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install tensorboard)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_writes_scalars_config_and_sample_grids(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install tensorboard)")
    from vaezoo.analysis import prior_samples

    logger = TensorBoardLogger(tmp_path, images=lambda model, guide: prior_samples(model, 9))
    history = train(tmp_path, 2, logger=logger)
    assert list(tmp_path.glob("events.out.tfevents.*"))
    acc = _events(tmp_path)
    tags = acc.Tags()
    assert {"train_loss", "test_bound", "latent_weight", "seconds"} <= set(tags["scalars"])
    losses = acc.Scalars("train_loss")
    assert [e.step for e in losses] == [1, 2]
    assert [e.value for e in losses] == pytest.approx([h["train_loss"] for h in history], rel=1e-6)
    assert [e.step for e in acc.Images("samples")] == [1, 2]
    assert any("config" in t for t in tags["tensors"])  # text summaries are stored as tensors

    train(tmp_path, 3, logger=TensorBoardLogger(tmp_path))  # resume: epoch 3 added, none repeated
    assert [e.step for e in _events(tmp_path).Scalars("train_loss")] == [1, 2, 3]


def test_drawing_sample_grids_does_not_change_training(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install tensorboard)")
    from vaezoo.analysis import prior_samples

    grids = TensorBoardLogger(tmp_path / "tb", images=lambda model, guide: prior_samples(model, 4))
    with_grids = [h["train_loss"] for h in train(tmp_path / "tb", 2, logger=grids)]
    without = [h["train_loss"] for h in train(tmp_path / "csv", 2)]
    assert with_grids == without
