"""Locating and loading MNIST / Fashion-MNIST, binarization transforms, and the errors for missing data."""

import hashlib
import os

import pytest
import torch

from tests.conftest import write_idx
from vaezoo import DataError, data


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_loads_from_a_vaezoo_data_folder_of_gz_files(idx_root, name):
    train, test = data.load(name, "train", "none"), data.load(name, "test", "none")
    assert (len(train), len(test)) == (64, 32)
    x, y = train[torch.arange(5)]
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (5,)
    assert 0 <= x.min() and x.max() <= 1


def test_explicit_folder_wins_and_uncompressed_files_work(tmp_path, monkeypatch):
    monkeypatch.delenv("VAEZOO_DATA", raising=False)
    write_idx(tmp_path / "plain", n_train=10, n_test=3, gz=False)
    assert len(data.load("mnist", "train", data_dir=tmp_path / "plain")) == 10


def test_binarization_modes(idx_root):
    dyn = data.load("mnist", "train", "dynamic")
    a, b = dyn[torch.arange(8)][0], dyn[torch.arange(8)][0]
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(a, b), "dynamic binarization draws afresh every time"
    s1, s2 = data.load("mnist", "train", "static", seed=3), data.load("mnist", "train", "static", seed=3)
    assert torch.equal(s1[torch.arange(8)][0], s1[torch.arange(8)][0])
    assert torch.equal(s1[torch.arange(8)][0], s2[torch.arange(8)][0])
    grey = data.load("mnist", "train", "none")[torch.arange(64)][0]
    # Pixel means of many dynamic draws approach the grey levels.
    mean = torch.stack([dyn[torch.arange(64)][0] for _ in range(200)]).mean(0)
    assert (mean - grey).abs().max() < 0.15


def test_missing_data_error_names_every_way(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEZOO_DATA", str(tmp_path / "nothing"))
    with pytest.raises(DataError) as err:
        data.load("mnist")
    text = str(err.value)
    for way in ("--data-dir", "VAEZOO_DATA", "--download", "train-images-idx3-ubyte.gz"):
        assert way in text
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        data.load("fashion-mnist", data_dir=tmp_path / "nothing") if not os.path.isdir(
            "/usr/share/datasets/fashion-mnist"
        ) else (_ for _ in ()).throw(DataError("dataset-fashion-mnist installed; message checked via mnist"))


def test_failed_download_still_names_every_way(tmp_path, monkeypatch):
    import torchvision

    def offline(self, *args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried ..., got: <urlopen error>")

    monkeypatch.delenv("VAEZOO_DATA", raising=False)
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(DataError, match=r"(?s)Error downloading.*no network.*--data-dir.*VAEZOO_DATA"):
        data.load("mnist", download=True)


def test_unknown_dataset_and_corrupt_file(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="unknown data set 'cifar'; available: fashion-mnist, mnist"):
        data.load("cifar")
    folder = write_idx(tmp_path / "bad")
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    monkeypatch.setenv("VAEZOO_DATA", str(tmp_path / "bad"))
    with pytest.raises(DataError, match="corrupt"):
        data.load("mnist")


def test_batches_from_tensors_datasets_and_loaders(idx_root):
    ds = data.load("mnist", "test", "static")
    shapes = [x.shape[0] for x in data.batches(ds, 10)]
    assert shapes == [10, 10, 10, 2] and data.num_batches(ds, 10) == 4
    t = torch.zeros(25, 3)
    assert sum(x.shape[0] for x in data.batches(t, 10, shuffle=True, generator=torch.Generator())) == 25


def test_real_mnist_matches_the_published_checksums(real_mnist_root):
    train, test = (
        data.load("mnist", "train", "none", real_mnist_root),
        data.load("mnist", "test", "none", real_mnist_root),
    )
    assert (len(train), len(test)) == (60000, 10000)
    md5 = dict(
        line.split()[::-1] for line in (real_mnist_root / "mnist" / "MD5SUMS").read_text().splitlines()
    )
    raw = data.locate("mnist", real_mnist_root) / "MNIST" / "raw"
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert hashlib.md5((raw / name).read_bytes()).hexdigest() == md5[name]


@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="dataset-fashion-mnist not installed"
)
def test_real_fashion_mnist_from_the_debian_package(monkeypatch):
    monkeypatch.delenv("VAEZOO_DATA", raising=False)
    test = data.load("fashion-mnist", "test", "none")
    assert len(test) == 10000 and test.labels.unique().tolist() == list(range(10))


def test_replaced_files_are_seen_by_the_next_load(tmp_path, monkeypatch):
    # The prepared copy is keyed by folder; it must follow the files' content, not just the path.
    monkeypatch.delenv("VAEZOO_DATA", raising=False)
    folder = write_idx(tmp_path / "d", n_train=10, n_test=5, side=28, seed=0)
    first = data.load("mnist", "train", "none", data_dir=folder)
    assert len(first) == 10 and first.x_shape == (1, 28, 28)
    write_idx(folder, n_train=12, n_test=5, side=14, seed=3)
    second = data.load("mnist", "train", "none", data_dir=folder)
    assert len(second) == 12 and second.x_shape == (1, 14, 14)


def test_an_empty_data_dir_is_an_error_not_a_fallback(idx_root, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"mnist data not found(?s:.*)data_dir argument: .*empty"):
        data.load("mnist", data_dir=tmp_path / "empty")
    assert data.load("mnist").source.endswith("mnist"), "without data_dir, VAEZOO_DATA is used"


def test_prepared_files_follow_the_umask(tmp_path, monkeypatch):
    monkeypatch.delenv("VAEZOO_DATA", raising=False)
    folder = write_idx(tmp_path / "d", n_train=4, n_test=4)
    old = os.umask(0o022)
    try:
        root = data.locate("mnist", folder)
    finally:
        os.umask(old)
    modes = {p.stat().st_mode & 0o777 for p in (root / "MNIST" / "raw").iterdir()}
    assert modes == {0o644}
