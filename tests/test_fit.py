"""Training loop: history, atomic checkpoints, exact resume, and failures that keep what was saved."""

import pytest
import torch

from tests.conftest import binary_batch
from vaezoo import ELBO, VAE, CheckpointError, DataError, TrainingError, checkpoint, fit
from vaezoo.inference.fit import CHECKPOINT, parameters


def small(seed=0):
    torch.manual_seed(seed)
    model = VAE(x_shape=(1, 6, 6), z_dim=3, hidden=(16,))
    return model, model.default_guide()


DATA = binary_batch(96, shape=(1, 6, 6), seed=4)


def test_history_and_checkpoint(tmp_path):
    model, guide = small()
    history = fit(
        model, guide, DATA, ELBO(), epochs=2, batch_size=32, test=DATA[:20], out=tmp_path, progress=False
    )
    assert [h["epoch"] for h in history] == [1, 2]
    assert all({"train_loss", "test_bound", "seconds", "latent_weight"} <= set(h) for h in history)
    saved = checkpoint.load(tmp_path / CHECKPOINT)
    assert saved["epoch"] == 2 and saved["model"]["name"] == "vae" and saved["guide"]["name"] == "amortized"
    restored, restored_guide, objective, _ = checkpoint.restore(tmp_path / CHECKPOINT)
    for a, b in zip(parameters(model, guide), parameters(restored, restored_guide), strict=True):
        assert torch.equal(a, b)
    assert objective.config == ELBO().config


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    model, guide = small()
    straight = fit(
        model, guide, DATA, ELBO(kl_warmup=2), epochs=3, batch_size=32, out=tmp_path / "a", progress=False
    )
    expected = [p.detach().clone() for p in parameters(model, guide)]

    model, guide = small()
    fit(model, guide, DATA, ELBO(kl_warmup=2), epochs=1, batch_size=32, out=tmp_path / "b", progress=False)
    model, guide = small(seed=99)  # a fresh process would start from other weights: resume must restore them
    resumed = fit(
        model, guide, DATA, ELBO(kl_warmup=2), epochs=3, batch_size=32, out=tmp_path / "b", progress=False
    )
    assert [h["train_loss"] for h in resumed] == [h["train_loss"] for h in straight]
    for a, b in zip(expected, parameters(model, guide), strict=True):
        assert torch.equal(a, b)


def test_resume_refuses_a_run_with_other_settings(tmp_path):
    model, guide = small()
    fit(model, guide, DATA, ELBO(), epochs=1, batch_size=32, out=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="different objective.*--no-resume"):
        fit(model, guide, DATA, ELBO(beta=2.0), epochs=2, batch_size=32, out=tmp_path, progress=False)
    fit(
        model,
        guide,
        DATA,
        ELBO(beta=2.0),
        epochs=1,
        batch_size=32,
        out=tmp_path,
        resume=False,
        progress=False,
    )


class DivergesInEpochTwo(ELBO):
    """ELBO whose model 'diverges' (NaN weights) as soon as the second epoch starts."""

    def differentiable_loss(self, model, guide, x, progress=float("inf")):
        if progress >= 1:
            with torch.no_grad():
                model.decoder[0].weight.fill_(float("nan"))
        return super().differentiable_loss(model, guide, x, progress)


@pytest.mark.parametrize(
    ("validate", "message"),
    [
        (False, r"loss became nan at epoch 2, step 1 of 3; the last good checkpoint \(epoch 1\)"),
        (True, r"at epoch 2, step 1 of 3: Expected parameter logits.*; the last good checkpoint \(epoch 1\)"),
    ],
)
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, validate, message):
    model, guide = small()
    with pytest.raises(TrainingError, match=message):
        fit(
            model,
            guide,
            DATA,
            DivergesInEpochTwo(),
            epochs=2,
            batch_size=32,
            out=tmp_path,
            progress=False,
            validate=validate,
        )
    saved = checkpoint.load(tmp_path / CHECKPOINT)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["state"]["model"].values())


def test_bad_tensor_data_is_rejected_before_training():
    model, guide = small()
    bad = DATA.clone()
    bad[50, 0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN or infinite values in 1 of 96 rows"):
        fit(model, guide, bad, ELBO(), epochs=1, progress=False)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"garbage", "corrupt or not a vaezoo checkpoint"),
        ("foreign", "not a vaezoo checkpoint"),
    ],
)
def test_checkpoint_errors_name_the_problem(tmp_path, content, message):
    path = tmp_path / "c.pt"
    if content == "foreign":
        torch.save({"weights": torch.zeros(2)}, path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(path)


def test_truncated_checkpoint_is_reported(tmp_path):
    model, guide = small()
    fit(model, guide, DATA, ELBO(), epochs=1, batch_size=32, out=tmp_path, progress=False)
    blob = (tmp_path / CHECKPOINT).read_bytes()
    (tmp_path / CHECKPOINT).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        checkpoint.restore(tmp_path / CHECKPOINT)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"x": 1})

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, {"x": 2})
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["x"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"], "no temporary file may be left behind"


class ELBOWithLearnedShift(ELBO):
    """An objective owning a parameter (as a learned baseline would): pulled toward 3 by its own term."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.holder = torch.nn.Module()
        self.holder.shift = torch.nn.Parameter(torch.zeros(()))

    def parameters(self):
        return self.holder.parameters()

    def state_dict(self):
        return self.holder.state_dict()

    def load_state_dict(self, state):
        self.holder.load_state_dict(state)

    def differentiable_loss(self, model, guide, x, progress=float("inf")):
        return super().differentiable_loss(model, guide, x, progress) + (self.holder.shift - 3) ** 2


def test_objective_parameters_are_trained_checkpointed_and_resumed(tmp_path):
    model, guide = small()
    straight = ELBOWithLearnedShift()
    fit(model, guide, DATA, straight, epochs=2, batch_size=32, lr=0.1, out=tmp_path / "a", progress=False)
    assert 0.3 < straight.holder.shift.item() < 5.7, "the optimizer must have moved the objective's parameter"

    model, guide = small()
    first = ELBOWithLearnedShift()
    fit(model, guide, DATA, first, epochs=1, batch_size=32, lr=0.1, out=tmp_path / "b", progress=False)
    model, guide = small()
    resumed = ELBOWithLearnedShift()
    fit(model, guide, DATA, resumed, epochs=2, batch_size=32, lr=0.1, out=tmp_path / "b", progress=False)
    assert resumed.holder.shift.item() == straight.holder.shift.item()
    saved = checkpoint.load(tmp_path / "b" / CHECKPOINT)["state"]["objective"]
    assert saved["shift"].item() == resumed.holder.shift.item()


def test_resume_lists_every_difference(tmp_path):
    model, guide = small()
    fit(model, guide, DATA, ELBO(), epochs=1, batch_size=32, out=tmp_path, progress=False,
        data_spec={"dataset": "mnist", "binarize": "dynamic"})
    with pytest.raises(CheckpointError) as info:
        fit(model, guide, DATA, ELBO(beta=2.0), epochs=2, batch_size=16, out=tmp_path, progress=False,
            data_spec={"dataset": "fashion-mnist", "binarize": "dynamic"})
    message = str(info.value)
    for line in ("objective.config.beta: 1.0 -> 2.0", "train.batch_size: 32 -> 16",
                 "data.dataset: 'mnist' -> 'fashion-mnist'", "--no-resume", "another --out"):
        assert line in message


def test_leftover_temporary_files_are_removed_and_files_follow_the_umask(tmp_path):
    import os

    (tmp_path / "checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    model, guide = small()
    old = os.umask(0o022)
    try:
        fit(model, guide, DATA, ELBO(), epochs=1, batch_size=32, out=tmp_path, progress=False)
    finally:
        os.umask(old)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]
    assert (tmp_path / CHECKPOINT).stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool, torch.float64])
def test_tensor_data_of_another_dtype_is_converted(dtype):
    model, guide = small()
    history = fit(model, guide, DATA.to(dtype), ELBO(), epochs=1, batch_size=32, progress=False)
    reference = fit(*small(), DATA, ELBO(), epochs=1, batch_size=32, progress=False)
    assert history[0]["train_loss"] == pytest.approx(reference[0]["train_loss"], rel=1e-5)
