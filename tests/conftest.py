import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _deterministic():
    """Every test starts from a clean param store, fixed seeds and Pyro's validation on."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()


@pytest.fixture
def float64():
    """Run a test in double precision (exact comparisons against closed forms), then restore."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("VAEZOO_CACHE", str(tmp_path_factory.getbasetemp() / "vaezoo-cache"))


def write_idx(
    folder: Path, n_train: int = 64, n_test: int = 32, side: int = 28, seed: int = 0, gz: bool = True
) -> Path:
    """Write the four standard IDX files (random images) into ``folder``, as MNIST ships them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        blobs = {
            f"{split}-images-idx3-ubyte": struct.pack(">IIII", 0x803, n, side, side) + images.tobytes(),
            f"{split}-labels-idx1-ubyte": struct.pack(">II", 0x801, n) + labels.tobytes(),
        }
        for name, blob in blobs.items():
            if gz:
                with gzip.open(folder / (name + ".gz"), "wb") as f:
                    f.write(blob)
            else:
                (folder / name).write_bytes(blob)
    return folder


@pytest.fixture
def idx_root(tmp_path, monkeypatch) -> Path:
    """A VAEZOO_DATA-style folder with small fake mnist/ and fashion-mnist/ subfolders."""
    root = tmp_path / "data"
    write_idx(root / "mnist", seed=1)
    write_idx(root / "fashion-mnist", seed=2)
    monkeypatch.setenv("VAEZOO_DATA", str(root))
    return root


@pytest.fixture
def real_mnist_root() -> Path:
    root = Path(os.environ.get("VAEZOO_DATA", SHARED_DATA))
    if not (root / "mnist" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found under {root} (set VAEZOO_DATA)")
    return root


def binary_batch(n: int = 8, shape=(1, 28, 28), seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, *shape), 0.3), generator=torch.Generator().manual_seed(seed))


def randomize(*modules, scale: float = 0.5, seed: int = 0) -> None:
    """Give every parameter (including zero-initialized ones) generic nonzero values, reproducibly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for p in module.parameters():
                p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
