"""The Ising side of the catalogue of hostile inputs (tests/test_bad_inputs.py has the image side).

Command-line cases run ``vaezoo ising ...`` in-process and expect status 2, the offending flag in the
one-line message, no traceback and no output written; API cases expect the exception type and the
argument's name. All are refused before any sampling or training, so the file runs in seconds.
"""

import math

import pytest
import torch

from vaezoo import ELBO, VAE, CheckpointError, ConfigError, DataError, checkpoint
from vaezoo.analysis.block_spin_training import train_block_spin
from vaezoo.analysis.perturb import perturb
from vaezoo.cli import ising as ising_cli
from vaezoo.cli import main
from vaezoo.inference.free_energy import free_energy_bound
from vaezoo.ising import budget, exact_thermodynamics, sample
from vaezoo.ising.lattice_data import lattice_dataset, lattice_input
from vaezoo.models.block_spin import BlockSpin


def _save(path, model, guide):
    checkpoint.save(path, {"model": checkpoint.spec(model), "guide": checkpoint.spec(guide),
                           "objective": checkpoint.spec(ELBO()), "epoch": 1, "state": {}})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A block-spin and an image-model checkpoint, a plain file and a garbage file (nothing trained)."""
    root = tmp_path_factory.mktemp("ising_world")
    model = BlockSpin(L=4, levels=1)
    _save(root / "ising.pt", model, model.default_guide())
    vae = VAE(x_shape=(1, 4, 4), z_dim=2, hidden=(4,))
    _save(root / "vae.pt", vae, vae.default_guide())
    (root / "file").write_text("not a folder")
    (root / "garbage.pt").write_bytes(b"garbage")
    return root


def cases(action, defaults, rows):
    return [pytest.param(action, defaults, extra, message, id=f"{action} {' '.join(extra)}")
            for extra, message in rows]


CLI = (
    cases("exact", ["--L", "4", "--T", "2.0"], [
        (["--T", "0"], "--T 0.0: must be 1 or more values, each a finite number > 0"),
        (["--T", "2", "-1"], "--T 2.0 -1.0"),
        (["--T", "nan"], "--T nan"),
        (["--T", "inf"], "--T inf"),
        (["--T", "1e-310"], "--T 1e-310: temperature T = 1e-310 is too small"),
        (["--L", "1"], "--L 1: must be an integer >= 2"),
        (["--L", "2.5"], "--L"),
        (["--L", "13", "--method", "transfer_matrix"], "--L 13 --method transfer_matrix: the transfer matrix "
                                                       "needs 2 <= L <= 12"),
        (["--L", "6", "--method", "brute_force"], "brute-force enumeration needs 2 <= L <= 5"),
        (["--method", "bogus"], "--method"),
        (["--L", "100000000"], "--L 100000000 --method auto needs about"),
        (["--L", "3", "--method", "kaufman", "--T", "1e300"], "--T 1e+300: Kaufman's formula"),
    ])
    + cases("sample", ["--L", "4", "--T", "2.5", "--n", "4", "--out", "{o}/s.png"], [
        (["--n", "0"], "--n 0: must be an integer >= 1"),
        (["--n", "-1"], "--n -1"),
        (["--T", "0"], "--T 0.0: must be a finite number > 0"),
        (["--T", "-2"], "--T -2.0"),
        (["--L", "1"], "--L 1"),
        (["--L", "4096"], "--L 4096 --n 4 needs about"),
        (["--L", "4096", "--n", "64"], "limit 2 GB"),
        (["--method", "bogus"], "--method"),
        (["--L", "5", "--method", "heat_bath"], "--L 5 --method heat_bath: this method needs an even L"),
        (["--out", "{o}/s.txt"], "--out {o}/s.txt: must end in one of .png"),
        (["--out", "{w}/file/s.png"], "--out {w}/file/s.png"),
        (["--out", "{w}"], "--out {w}: is a folder"),
        (["--save", "{o}/s.txt"], "--save {o}/s.txt: must end in one of .pt"),
        (["--save", "{w}/file/s.pt"], "--save {w}/file/s.pt"),
        (["--seed", "-1"], "--seed -1"),
    ])
    + cases("train", ["--L", "4", "--levels", "1", "--temperatures", "2.0", "--n-per-t", "4", "--epochs", "1",
                      "--no-progress", "--out", "{o}/run"], [
        (["--L", "12", "--levels", "3"], "--L 12 --levels 3: L = 12 is not divisible"),
        (["--levels", "0"], "--levels 0"),
        (["--epochs", "0"], "--epochs 0"),
        (["--batch-size", "0"], "--batch-size 0"),
        (["--lr", "-1"], "--lr -1.0: must be a finite number > 0"),
        (["--lr", "nan"], "--lr nan"),
        (["--n-per-t", "0"], "--n-per-t 0"),
        (["--temperatures", "0"], "--temperatures 0.0"),
        (["--temperatures", "2", "-1"], "--temperatures 2.0 -1.0"),
        (["--bound-t", "0"], "--bound-t 0.0"),
        (["--baseline", "vimco"], "--baseline"),
        (["--latent", "bogus"], "--latent"),
        (["--guide", "bogus"], "--guide"),
        (["--seed", "-1"], "--seed -1"),
        (["--out", "{w}/file"], "--out {w}/file: is a file"),
        (["--L", "512", "--n-per-t", "500"], "--L 512 --n-per-t 500 with 1 temperatures needs about"),
    ])
    + cases("perturb", ["--T", "2.5", "--n", "4", "--out", "{o}/p.png"], [
        (["--checkpoint", "{w}/vae.pt"], "holds a vae model, an image model"),
        (["--checkpoint", "{w}/missing.pt"], "missing.pt does not exist"),
        (["--checkpoint", "{w}/garbage.pt"], "corrupt or not a vaezoo checkpoint"),
        (["--T", "0"], "--T 0.0"),
        (["--n", "0"], "--n 0"),
        (["--level", "5"], "--level 5: this model has levels 0 (spins) to 1"),
        (["--level", "-1"], "--level -1"),
        (["--out", "{o}/p.txt"], "--out {o}/p.txt"),
        (["--seed", "-3"], "--seed -3"),
    ])
)


@pytest.mark.parametrize(("action", "defaults", "extra", "message"), CLI)
def test_cli(action, defaults, extra, message, world, tmp_path, capsys):
    fill = {"w": world, "o": tmp_path}
    given = "--checkpoint" in extra
    argv = ["ising", action, *defaults, *extra]
    if action == "perturb" and not given:
        argv += ["--checkpoint", str(world / "ising.pt")]
    assert main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message.format(**fill) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 or "usage:" in err, "one line (argparse prints its usage)"
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not written, f"nothing may be written: {written}"


def test_image_checkpoint_names_the_commands(world, capsys):
    argv = ["ising", "perturb", "--checkpoint", str(world / "vae.pt"), "--T", "2.5"]
    assert main(argv) == 2
    assert "use vaezoo eval, sample, gap or traverse" in capsys.readouterr().err


def test_missing_flags_are_named(capsys):
    assert main(["ising", "perturb", "--T", "2.5"]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["ising", "exact", "--L", "4"]) == 2
    assert "--T" in capsys.readouterr().err


def test_lattices_survive_an_unwritable_picture(tmp_path, monkeypatch, capsys):
    def fail(fig, path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ising_cli, "_save_figure", fail)
    saved = tmp_path / "l.pt"
    argv = ["ising", "sample", "--L", "4", "--T", "2.5", "--n", "4", "--out", str(tmp_path / "l.png"),
            "--save", str(saved)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'l.png'}: could not write the picture" in err and "Traceback" not in err
    assert f"saved in {saved}" in err
    lattices = torch.load(saved, weights_only=True)
    assert lattices.shape == (4, 4, 4) and bool(((lattices == 1) | (lattices == -1)).all())


def test_force_runs_past_the_limit(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(budget, "MEMORY_LIMIT", 1)
    argv = ["ising", "sample", "--L", "4", "--T", "2.5", "--n", "4", "--out", str(tmp_path / "s.png")]
    assert main(argv) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0


def test_sampling_budget_is_the_measured_scale():
    # ising sample --L 4096 (64 chains) grew to GBs: the estimate must say so, and a default run must pass.
    assert budget.sampling_budget(4096, 64).memory > 100 * 2**30
    assert budget.sampling_budget(4096, 64).problem() is not None
    assert budget.sampling_budget(16, 500).problem() is None
    assert budget.exact_budget(12, "transfer_matrix").problem() is None


MODEL = BlockSpin(L=4, levels=1)
GUIDE = MODEL.default_guide()
SPINS = torch.where(torch.rand(4, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.5, -1.0, 1.0)
X = lattice_input(SPINS, T=2.0)
VAE_MODEL = VAE(x_shape=(1, 4, 4), z_dim=2, hidden=(4,))


def _file(tmp_path):
    (tmp_path / "f").write_text("x")
    return tmp_path / "f"


API = [
    ("sample L=1", lambda t: sample(1, 2.0, 4), ConfigError, "L must be an int >= 2"),
    ("sample T=0", lambda t: sample(4, 0.0, 4), ConfigError, "temperature T"),
    ("sample T=1e-310", lambda t: sample(4, 1e-310, 4), ConfigError, "too small"),
    ("sample n_samples=0", lambda t: sample(4, 2.0, 0), ConfigError, "n_samples"),
    ("sample n_samples=2.5", lambda t: sample(4, 2.0, 2.5), ConfigError, "n_samples"),
    ("sample method", lambda t: sample(4, 2.0, 4, method="bogus"), ConfigError, "method 'bogus'"),
    ("sample odd L", lambda t: sample(5, 2.0, 4, method="heat_bath"), ConfigError, "even L"),
    ("sample seed=-1", lambda t: sample(4, 2.0, 4, seed=-1), ConfigError, "seed"),
    ("exact L=13 tm", lambda t: exact_thermodynamics(13, 2.0, method="transfer_matrix"), ConfigError,
     "L <= 12"),
    ("exact method", lambda t: exact_thermodynamics(4, 2.0, method="bogus"), ConfigError, "method 'bogus'"),
    ("exact L=2.5", lambda t: exact_thermodynamics(2.5, 2.0), ConfigError, "lattice size L"),
    ("exact T=-1", lambda t: exact_thermodynamics(4, -1.0), ConfigError, "temperature T"),
    ("exact T=1e-307", lambda t: exact_thermodynamics(4, 1e-307), ConfigError, "T must be >"),
    ("exact J=0", lambda t: exact_thermodynamics(4, 2.0, J=0.0), ConfigError, "coupling J"),
    ("lattice_dataset T=0", lambda t: lattice_dataset(4, [0.0], 4, cache=False), ConfigError,
     "temperature T"),
    ("lattice_dataset T number", lambda t: lattice_dataset(4, 2.0, 4, cache=False), ConfigError,
     "temperatures"),
    ("lattice_dataset no T", lambda t: lattice_dataset(4, [], 4, cache=False), ConfigError, "temperature"),
    ("lattice_dataset n=0", lambda t: lattice_dataset(4, [2.0], 0, cache=False), ConfigError,
     "n_per_temperature"),
    ("lattice_dataset exact L=8", lambda t: lattice_dataset(8, [2.0], 4, method="exact", cache=False),
     ConfigError, "L <= 4"),
    ("lattice_dataset method", lambda t: lattice_dataset(4, [2.0], 4, method="bogus", cache=False),
     ConfigError, "method 'bogus'"),
    ("lattice_dataset L=1", lambda t: lattice_dataset(1, [2.0], 4, cache=False), ConfigError, "L must be"),
    ("lattice_dataset seed=-1", lambda t: lattice_dataset(4, [2.0], 4, seed=-1, cache=False), ConfigError,
     "seed"),
    ("lattice_input T=0", lambda t: lattice_input(SPINS, T=0.0), ConfigError, "temperature T"),
    ("lattice_input T and K", lambda t: lattice_input(SPINS, T=2.0, K=0.5), ConfigError, "exactly one"),
    ("lattice_input 0/1", lambda t: lattice_input((SPINS + 1) / 2, T=2.0), DataError, "+1 and -1"),
    ("lattice_input K count", lambda t: lattice_input(SPINS, K=torch.ones(3)), ConfigError, "K holds 3"),
    ("lattice_input K<0", lambda t: lattice_input(SPINS, K=-torch.ones(4)), ConfigError, "K = J/T"),
    ("lattice_input 2-d", lambda t: lattice_input(SPINS[0], T=2.0), DataError, "spins must be"),
    ("free_energy_bound n=1", lambda t: free_energy_bound(MODEL, GUIDE, 2.0, n=1), ConfigError, "'n' = 1"),
    ("free_energy_bound n=2.5", lambda t: free_energy_bound(MODEL, GUIDE, 2.0, n=2.5), ConfigError, "'n'"),
    ("free_energy_bound T=0", lambda t: free_energy_bound(MODEL, GUIDE, 0.0), ConfigError, "temperature T"),
    ("free_energy_bound batch_size=0", lambda t: free_energy_bound(MODEL, GUIDE, 2.0, batch_size=0),
     ConfigError, "'batch_size' = 0"),
    ("free_energy_bound VAE", lambda t: free_energy_bound(VAE_MODEL, GUIDE, 2.0), ConfigError, "BlockSpin"),
    ("perturb levels=[5]", lambda t: perturb(MODEL, GUIDE, SPINS, 2.0, levels=[5]), ConfigError,
     "levels [5]"),
    ("perturb levels=1", lambda t: perturb(MODEL, GUIDE, SPINS, 2.0, levels=1), ConfigError, "levels"),
    ("perturb nudge=-1", lambda t: perturb(MODEL, GUIDE, SPINS, 2.0, nudge=-1), ConfigError, "'nudge' = -1"),
    ("perturb nudge=nan", lambda t: perturb(MODEL, GUIDE, SPINS, 2.0, nudge=math.nan), ConfigError,
     "'nudge' = nan"),
    ("perturb nudge=2", lambda t: perturb(MODEL, GUIDE, SPINS, 2.0, nudge=2.0), ConfigError, "<= 1"),
    ("perturb T=0", lambda t: perturb(MODEL, GUIDE, SPINS, 0.0), ConfigError, "temperature T"),
    ("perturb VAE", lambda t: perturb(VAE_MODEL, GUIDE, SPINS, 2.0), ConfigError, "BlockSpin model"),
    ("perturb 0/1 spins", lambda t: perturb(MODEL, GUIDE, (SPINS + 1) / 2, 2.0), DataError, "+1 and -1"),
    ("train_block_spin spins only", lambda t: train_block_spin(SPINS), DataError, "train must be"),
    ("train_block_spin empty", lambda t: train_block_spin(X[:0]), DataError, "train must be"),
    ("train_block_spin levels=0", lambda t: train_block_spin(X, levels=0), ConfigError, "levels"),
    ("train_block_spin levels=3", lambda t: train_block_spin(X, levels=3), ConfigError, "not divisible"),
    ("train_block_spin latent", lambda t: train_block_spin(X, levels=1, latent="bogus"), ConfigError,
     "latent"),
    ("train_block_spin guide", lambda t: train_block_spin(X, levels=1, guide="bogus"), ConfigError, "bogus"),
    ("train_block_spin baseline", lambda t: train_block_spin(X, levels=1, baseline="vimco"), ConfigError,
     "'baseline'"),
    ("train_block_spin epochs=0", lambda t: train_block_spin(X, levels=1, epochs=0), ConfigError,
     "'epochs' = 0"),
    ("train_block_spin lr=nan", lambda t: train_block_spin(X, levels=1, lr=math.nan), ConfigError, "'lr'"),
    ("train_block_spin out=file", lambda t: train_block_spin(X, levels=1, out=_file(t)), ConfigError, "out"),
    ("restore missing", lambda t: checkpoint.restore(t / "no.pt"), CheckpointError, "does not exist"),
]


@pytest.mark.parametrize(("name", "call", "error", "message"), [pytest.param(*c, id=c[0]) for c in API])
def test_api(name, call, error, message, tmp_path):
    with pytest.raises(error) as info:
        call(tmp_path)
    assert message in str(info.value)


def test_every_numeric_flag_declares_its_range():
    # As tests/test_config.py does for the image commands' configs.
    import dataclasses
    import typing

    for cls, _ in ising_cli.CONFIGS.values():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            args = typing.get_args(hints[f.name])
            inner = {a for arg in args for a in typing.get_args(arg)}  # tuple[int, ...] | None
            if {int, float} & {hints[f.name], *args, *inner}:
                assert {"min", "max", "above", "below"} & set(f.metadata), (cls.__name__, f.name)
