"""Write vaezoo's chorale splits (NaN-padded (N, T, 88) tensors) to one file the DMM peer reads.

python benchmarks/peers/dmm/export_chorales.py --out /tmp/dmm_peer/chorales.pt
"""

from __future__ import annotations

import argparse

import torch

from vaezoo.chorales import SPLITS, chorales

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.save({"splits": {s: chorales(s) for s in SPLITS}}, args.out)
    print(f"wrote {args.out}")
