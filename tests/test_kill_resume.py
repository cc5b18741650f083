"""A run killed (SIGKILL) while writing a checkpoint resumes to the uninterrupted result, bit for bit.

The kill happens in a separate process, half-way through the bytes of epoch 2's checkpoint, so nothing of
Python's shutdown runs; the resumed run starts from different weights, as a fresh process would.
"""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from tests.conftest import binary_batch
from vaezoo import ELBO, VAE, checkpoint, fit
from vaezoo.inference.fit import CHECKPOINT, parameters

ROOT = Path(__file__).resolve().parents[1]

KILLED_RUN = textwrap.dedent(
    """
    import io, os, signal, sys
    import torch
    from tests.conftest import binary_batch
    from vaezoo import ELBO, VAE, fit

    real_save, calls = torch.save, []

    def save_half_then_die(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # epoch 2's checkpoint: write half its bytes, then die without cleanup
            buf = io.BytesIO()
            real_save(obj, buf, *args, **kwargs)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *args, **kwargs)

    torch.save = save_half_then_die
    torch.manual_seed(0)
    model = VAE(x_shape=(1, 6, 6), z_dim=3, hidden=(16,))
    data = binary_batch(96, shape=(1, 6, 6), seed=4)
    fit(model, model.default_guide(), data, ELBO(kl_warmup=2), epochs=3, batch_size=32, out=sys.argv[1],
        progress=False)
    """
)


def run(out, seed=0):
    torch.manual_seed(seed)
    model = VAE(x_shape=(1, 6, 6), z_dim=3, hidden=(16,))
    guide = model.default_guide()
    data = binary_batch(96, shape=(1, 6, 6), seed=4)
    history = fit(model, guide, data, ELBO(kl_warmup=2), epochs=3, batch_size=32, out=out, progress=False)
    return history, [p.detach().clone() for p in parameters(model, guide)]


def test_kill_during_a_checkpoint_write_then_resume_is_bit_identical(tmp_path):
    straight_history, straight = run(tmp_path / "straight")

    out = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    leftovers = list(out.glob(f"{CHECKPOINT}.*.tmp"))
    assert len(leftovers) == 1, "the kill must have hit the checkpoint write"
    assert checkpoint.load(out / CHECKPOINT)["epoch"] == 1, "the last complete checkpoint is epoch 1's"

    resumed_history, resumed = run(out, seed=99)  # other starting weights: the checkpoint must restore them
    assert [h["train_loss"] for h in resumed_history] == [h["train_loss"] for h in straight_history]
    for a, b in zip(straight, resumed, strict=True):
        assert torch.equal(a, b)
    assert not list(out.glob(f"{CHECKPOINT}.*.tmp")), "the next run removes the leftover temporary file"
