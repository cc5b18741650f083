"""Write MNIST as vaezoo reads it to one ``.npz`` the pythae peer reads (run in the project's environment).

``train``: the 60k training images as grey levels (uint8, (N, 1, 28, 28)); the peer binarizes them
dynamically itself. ``test``: the 10k test images binarized once with vaezoo's evaluation seed
(:data:`vaezoo.cli.EVAL_SEED`), the binarization every vaezoo evaluation uses (the peer takes its
port check batch from it)::

    VAEZOO_DATA=../shared/data python benchmarks/peers/pythae/export_mnist.py --out /tmp/pythae_peer/mnist.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from vaezoo import data
from vaezoo.cli import EVAL_SEED

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", default=None, help="folder with mnist/ (default: $VAEZOO_DATA)")
    args = p.parse_args()
    train = data.load("mnist", "train", "none", data_dir=args.data_dir)
    test = data.load("mnist", "test", "static", data_dir=args.data_dir, seed=EVAL_SEED)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out, train=train.images.numpy(), test=test.fixed.to(torch.uint8).numpy(), seed=EVAL_SEED
    )
    print(
        f"wrote {args.out}: train {tuple(train.images.shape)} grey levels, "
        f"test {tuple(test.fixed.shape)} binary"
    )
