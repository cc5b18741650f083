"""Data sets: MNIST and Fashion-MNIST through torchvision, with binarization as a transform.

Where the files come from, in order (the first folder that holds the four standard IDX files wins):

1. the ``data_dir`` argument (``--data-dir``): the folder of the IDX files itself, a folder with
   one subfolder per data set (``mnist/``, ``fashion-mnist/``), or a torchvision root;
2. the ``VAEZOO_DATA`` environment variable, same forms (``../shared/data`` has the second);
3. torchvision's own root under the vaezoo cache (where ``download=True`` puts the files);
4. the Debian package location (``/usr/share/datasets/fashion-mnist`` for Fashion-MNIST).

A folder given as ``data_dir`` must hold the files: it is never silently passed over for the next
place, so what a run records as its data folder is what it read.

A folder of ``.gz`` files is enough: the files are unpacked into torchvision's ``raw/`` layout under
the cache (``VAEZOO_CACHE``, default ``~/.cache/vaezoo``), and torchvision's dataset classes read
them from there. The cache records the size and modification time of every source file it was
unpacked from and is rebuilt when they change, so replaced files are never shadowed by an old
copy. Nothing is downloaded unless ``download=True``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset

from vaezoo import sprites
from vaezoo.errors import DataError
from vaezoo.files import atomic_write

Binarize = Literal["dynamic", "static", "none", "dequantize"]
BINARIZE = ("dynamic", "static", "none", "dequantize")
#: Grey levels of an 8-bit image: uniform dequantization spreads level k over [k, k + 1) / LEVELS.
LEVELS = 256
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class Source:
    torchvision_class: str
    folder: str
    system_dirs: tuple[str, ...] = ()


SOURCES = {
    "mnist": Source("MNIST", "mnist"),
    "fashion-mnist": Source("FashionMNIST", "fashion-mnist", ("/usr/share/datasets/fashion-mnist",)),
}


#: Data sets generated in the package, not read from files: name -> split -> (uint8 images, labels).
#: Their images are already binary, so every ``binarize`` serves the same bits.
GENERATED = {
    "sprites": lambda split: sprites.load_index(sprites.split_indices(split)),
}


def cache_dir() -> Path:
    return Path(os.environ.get("VAEZOO_CACHE", Path.home() / ".cache" / "vaezoo"))


def _has_idx(folder: Path) -> bool:
    return all((folder / f).is_file() or (folder / (f + ".gz")).is_file() for f in IDX_FILES)


def _candidates(name: str, data_dir: str | os.PathLike | None) -> list[tuple[str, Path]]:
    src = SOURCES[name]
    found: list[tuple[str, Path]] = []
    if data_dir:
        given = (("data_dir argument", data_dir),)
    else:
        given = (("VAEZOO_DATA", os.environ.get("VAEZOO_DATA")),)
    for label, root in given:
        if root:
            root = Path(root).expanduser()
            for d in (root, root / src.folder, root / src.torchvision_class / "raw"):
                found.append((label, d))
    if data_dir:
        return found
    found.append(("torchvision root", cache_dir() / "torchvision" / src.torchvision_class / "raw"))
    found += [("system package", Path(d)) for d in src.system_dirs]
    return found


def _source_file(folder: Path, f: str) -> Path:
    return folder / f if (folder / f).is_file() else folder / (f + ".gz")


def _fingerprint(folder: Path) -> dict[str, list[int]]:
    """Size and modification time (ns) of each source file: what a prepared copy was made from."""
    stats = {f: _source_file(folder, f).stat() for f in IDX_FILES}
    return {_source_file(folder, f).name: [s.st_size, s.st_mtime_ns] for f, s in stats.items()}


def _unpack(source: Path, out) -> None:
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rb") as inp:
        shutil.copyfileobj(inp, out)


def _prepare_root(name: str, folder: Path) -> Path:
    """A torchvision root whose ``<Class>/raw`` holds the uncompressed IDX files of ``folder``.

    The copy is rebuilt whenever the fingerprint of ``folder``'s files differs from the one
    recorded beside it; the record is written last, so an interrupted unpack is redone.
    """
    cls = SOURCES[name].torchvision_class
    if folder.name == "raw" and folder.parent.name == cls and all((folder / f).is_file() for f in IDX_FILES):
        return folder.parent.parent
    key = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:12]
    root = cache_dir() / "prepared" / f"{name}-{key}"
    raw = root / cls / "raw"
    record = root / "source.json"
    fingerprint = _fingerprint(folder)
    try:
        if json.loads(record.read_text()) == {"folder": str(folder.resolve()), "files": fingerprint}:
            return root
    except (OSError, ValueError):
        pass  # no record, or a damaged one: rebuild
    record.unlink(missing_ok=True)
    for f in IDX_FILES:
        source = _source_file(folder, f)
        try:
            atomic_write(raw / f, lambda out, source=source: _unpack(source, out), sync=False)
        except (OSError, EOFError) as e:
            raise DataError(
                f"cannot read {source}: {e}; the file is corrupt or truncated, replace it"
            ) from None
    blob = json.dumps({"folder": str(folder.resolve()), "files": fingerprint}, indent=1).encode()
    atomic_write(record, lambda out: out.write(blob), sync=False)
    return root


def _not_found(name: str, tried: list[tuple[str, Path]]) -> DataError:
    src = SOURCES[name]
    lines = "\n".join(f"  - {label}: {path}" for label, path in tried)
    ways = [
        f"pass --data-dir DIR (Python: data_dir=DIR), DIR holding {', '.join(f + '.gz' for f in IDX_FILES)}",
        f"set VAEZOO_DATA to a folder with a '{src.folder}/' subfolder of those files",
        "pass --download (Python: download=True) where the network allows",
    ]
    if src.system_dirs:
        ways.append(f"install Debian's package dataset-{src.folder} (puts them in {src.system_dirs[0]})")
    return DataError(
        f"{name} data not found. Looked in:\n{lines}\nTo provide it, either\n  " + "\n  ".join(ways)
    )


def find(name: str, data_dir: str | os.PathLike | None = None, download: bool = False) -> Path | None:
    """The folder holding data set ``name``'s IDX files (see the module docstring for the order).

    ``None`` when the files are not found and ``download`` is set (torchvision will fetch them).
    """
    if name not in SOURCES:
        raise DataError(f"unknown data set {name!r}; available: {', '.join(sorted([*SOURCES, *GENERATED]))}")
    tried = _candidates(name, data_dir)
    for _, folder in tried:
        if _has_idx(folder):
            return folder
    if download:
        return None
    raise _not_found(name, tried)


def locate(name: str, data_dir: str | os.PathLike | None = None, download: bool = False) -> Path:
    """The torchvision root to read data set ``name`` from (see the module docstring for the order)."""
    return _root(name, find(name, data_dir, download))


def _root(name: str, folder: Path | None) -> Path:
    return cache_dir() / "torchvision" if folder is None else _prepare_root(name, folder)


class ImageData(Dataset):
    """Images as float tensors ``(1, H, W)`` in [0, 1] with integer labels, binarized on the fly.

    - ``"dynamic"``: every time an image is served, each pixel is a fresh Bernoulli draw with its
      grey level as probability (the literature's dynamically binarized MNIST).
    - ``"static"``: one such draw made once with ``seed``, then fixed.
    - ``"none"``: grey levels / 255.
    - ``"dequantize"``: every time an image is served, (grey level + u) / 256 with u ~ U(0, 1) fresh
      per pixel (uniform dequantization, Theis, van den Oord & Bethge 2016), so a density model of
      the real-valued pixels bounds the discrete model's log-likelihood; :func:`bits_per_dim`
      turns its log density into bits per dimension.

    Indexing with a list or tensor of indices returns a whole batch at once, which
    :func:`batches` uses to avoid per-item overhead. ``source`` names the folder the images were
    read from (``"download"`` for torchvision's download), which a checkpoint records.
    """

    source = ""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, binarize: Binarize = "dynamic", seed: int = 0
    ):
        if binarize not in BINARIZE:
            raise DataError(f"binarize must be one of {', '.join(BINARIZE)}, got {binarize!r}")
        self.images = images.unsqueeze(1) if images.dim() == 3 else images
        self.labels = labels
        self.binarize = binarize
        if binarize == "static":
            g = torch.Generator().manual_seed(seed)
            self.fixed = torch.bernoulli(self.images.float() / 255, generator=g)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def __getitem__(self, index):
        if self.binarize == "static":
            return self.fixed[index], self.labels[index]
        if self.binarize == "dequantize":
            grey = self.images[index].float()
            return (grey + torch.rand_like(grey)) / LEVELS, self.labels[index]
        x = self.images[index].float() / 255
        if self.binarize == "dynamic":
            x = torch.bernoulli(x)
        return x, self.labels[index]


def load(
    name: str,
    split: Literal["train", "test"] = "train",
    binarize: Binarize = "dynamic",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    seed: int = 0,
) -> ImageData:
    """Load ``"mnist"`` or ``"fashion-mnist"`` (``split`` train: 60k, test: 10k) as :class:`ImageData`,
    or a data set generated in the package (:data:`GENERATED`: ``"sprites"``, a fixed train split of
    60k and test split of 10k, labels the ``(N, 5)`` factor tuples; see :mod:`vaezoo.sprites`)."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    if name in GENERATED:
        if binarize not in BINARIZE:
            raise DataError(f"binarize must be one of {', '.join(BINARIZE)}, got {binarize!r}")
        images = ImageData(*GENERATED[name](split), binarize="none")
        images.source = f"generated:{name}"
        return images
    import torchvision

    folder = find(name, data_dir, download)
    root = _root(name, folder)
    cls = getattr(torchvision.datasets, SOURCES[name].torchvision_class)
    try:
        ds = cls(str(root), train=split == "train", download=download)
    except RuntimeError as e:
        if download:
            ways = _not_found(name, _candidates(name, data_dir))
            raise DataError(f"{str(e).splitlines()[0]} (no network?)\n{ways}") from None
        raise DataError(f"torchvision could not read {name} from {root}: {e}") from None
    except (ValueError, OSError) as e:
        raise DataError(
            f"the {name} IDX files under {root} are corrupt ({e}); replace them with intact copies"
        ) from None
    images = ImageData(ds.data, ds.targets, binarize, seed)
    images.source = "download" if folder is None else str(folder.resolve())
    return images


def batches(
    data,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    order: list[int] | None = None,
) -> Iterator[torch.Tensor]:
    """Yield batches of x from a tensor, an :class:`ImageData`, any map-style dataset or a DataLoader.

    Items that are tuples (x, label, ...) contribute their first element. Data that build their own
    batches (a :class:`~vaezoo.multimodal.MultimodalDataset` or ``MultimodalBatch``) implement
    ``take(index)`` for a tensor of indices and ``to(device)`` on the batch. With ``device``, each
    batch is moved there as it is yielded, so the data set itself may stay on the CPU. The order
    is drawn on the CPU (with ``generator``, a CPU generator) wherever the data are; ``order``
    (indices, e.g. one rank's share from :func:`vaezoo.parallel.rank_order`) gives it instead,
    for any data but a DataLoader.
    """
    for x in _batches(data, batch_size, shuffle, generator, order):
        yield x if device is None else x.to(device)


def _batches(
    data, batch_size: int, shuffle: bool, generator: torch.Generator | None, order: list[int] | None = None
) -> Iterator[torch.Tensor]:
    if isinstance(data, DataLoader):
        if order is not None:
            raise DataError(
                "a DataLoader brings its own order and cannot be split over processes; "
                "pass its dataset (or a tensor) instead"
            )
        for batch in data:
            yield batch[0] if isinstance(batch, (tuple, list)) else batch
        return
    if order is not None:
        order = torch.as_tensor(order, dtype=torch.long)
    elif shuffle:
        order = torch.randperm(len(data), generator=generator, device="cpu")
    else:
        order = torch.arange(len(data), device="cpu")
    n = len(order)
    if isinstance(data, (torch.Tensor, ImageData)):
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            if isinstance(data, torch.Tensor):
                index = index.to(data.device)
            item = data[index]
            yield item[0] if isinstance(item, tuple) else item
        return
    if callable(getattr(data, "take", None)):
        for start in range(0, n, batch_size):
            yield data.take(order[start : start + batch_size])
        return
    loader = DataLoader(data, batch_size=batch_size, sampler=order.tolist())
    yield from _batches(loader, batch_size, False, None)


def bits_per_dim(log_density: torch.Tensor | float, num_dims: int, levels: int = LEVELS) -> torch.Tensor:
    """Bits per dimension of dequantized data from its log density in nats: ``-(log p(y) - D log levels)
    / (D log 2)``.

    For y = (k + u) / levels with u ~ U(0, 1)^D (``binarize="dequantize"``), the discrete
    probability of the levels k is at least exp(E_u[log p(y) - D log levels]) (Theis et al. 2016), so
    the average of this quantity over dequantized data is an upper bound on the discrete model's
    bits per dimension. A density uniform on [0, 1]^D gives exactly log2(levels) (8 bits at 256 levels).

    :param log_density: log p(y) per image, in nats (a tensor of any shape, or a float).
    :param num_dims: D, the number of values in one image (e.g. 784 for MNIST).
    """
    if num_dims < 1 or levels < 2:
        raise DataError(f"bits_per_dim needs num_dims >= 1 and levels >= 2, got {num_dims} and {levels}")
    log_density = torch.as_tensor(log_density, dtype=torch.float64)
    return -(log_density - num_dims * math.log(levels)) / (num_dims * math.log(2))


def num_batches(data, batch_size: int) -> int:
    return len(data) if isinstance(data, DataLoader) else -(-len(data) // batch_size)
