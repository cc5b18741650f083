"""Peer run: pythae's VQVAE on vaezoo's MNIST with vaezoo's ``vqvae`` networks; weights exported.

Runs in the peer's own environment (README.md here) and never imports vaezoo. pythae trains with its
own model, quantizer and trainer (``VQVAE``, ``Quantizer``, ``BaseTrainer`` with Adam); ours are only:

- the networks of vaezoo's ``vqvae`` model and ``vq`` guide at their defaults (``vaezoo.nets.map_encoder``
  and ``map_decoder``): encoder [4x4 stride-2 conv, ReLU] x 2, 3x3 conv, ReLU, 1x1 conv to a 16 x 7 x 7
  map; decoder 3x3 conv, ReLU, [4x4 stride-2 transposed conv] x 2 with a ReLU between, then a sigmoid
  (pythae's reconstructions are probabilities). Layer indices match vaezoo's, so the weights port by name;
- the data: dynamically binarized MNIST through :class:`train_pythae.DynamicallyBinarized`;
- the reconstruction loss (``--reconstruction bce``, the default): pythae's ``VQVAE`` has only a summed
  MSE, so :class:`BernoulliVQVAE` overrides its ``loss_function`` with the summed binary cross-entropy
  (as pythae's ``VAE`` computes it for ``bce``), nothing else; ``--reconstruction mse`` is stock pythae;
- the scale of the VQ losses (``--vq-loss``): pythae averages the codebook and commitment losses over
  every element of the batch's maps, vaezoo sums them over each map (D h w = 784 numbers) and averages
  over the batch. ``sum`` multiplies pythae's two factors by D h w, which makes pythae's loss equal to
  vaezoo's ``vq`` loss for every batch (only configuration); ``mean`` is pythae's own scale.

pythae has no dead-code restarts and no initialization of the codebook from data (vaezoo's defaults);
its codebook starts uniform in [-1/K, 1/K] as vaezoo's does. No evaluation set is given to the trainer,
so pythae keeps the epoch with the lowest training loss. ``--out`` receives the network and codebook
weights and a port check: pythae's own losses and codes (float32) on the first 100 test images of
vaezoo's binarization, which ``evaluate_vqvae.py`` recomputes with vaezoo on the ported weights::

    OMP_NUM_THREADS=1 benchmarks/peers/pythae/.venv/bin/python benchmarks/peers/pythae/train_vqvae.py \\
        --data /tmp/pythae_peer/mnist.npz --out /tmp/pythae_peer/vqvae-K16.pt --codebook-size 16 --epochs 2
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import tempfile
from importlib.metadata import version

import numpy as np
import torch
import torch.nn.functional as F
from pythae.models import VQVAE, VQVAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.trainers import BaseTrainer, BaseTrainerConfig
from torch import nn
from train_pythae import DynamicallyBinarized, EpochClock


class Encoder(BaseEncoder):
    """x -> z_e, a (D, h, w) map: the layers of ``vaezoo.nets.map_encoder``."""

    def __init__(self, channels: int, code_dim: int, downsample: int):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for _ in range(downsample):
            layers += [nn.Conv2d(c_in, channels, 4, stride=2, padding=1), nn.ReLU()]
            c_in = channels
        layers += [nn.Conv2d(c_in, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return ModelOutput(embedding=self.net(x))


class Decoder(BaseDecoder):
    """z_q -> pixel probabilities: the layers of ``vaezoo.nets.map_decoder`` (logits), then a sigmoid."""

    def __init__(self, channels: int, code_dim: int, downsample: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(code_dim, channels, 3, padding=1), nn.ReLU()]
        for i in range(downsample):
            last = i == downsample - 1
            layers.append(nn.ConvTranspose2d(channels, 1 if last else channels, 4, stride=2, padding=1))
            if not last:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))


class BernoulliVQVAE(VQVAE):
    """pythae's VQVAE with a summed binary cross-entropy in place of its summed squared error."""

    def loss_function(self, recon_x, x, quantizer_output):
        recon_loss = F.binary_cross_entropy(
            recon_x.reshape(x.shape[0], -1), x.reshape(x.shape[0], -1), reduction="none"
        ).sum(dim=-1)
        vq_loss = quantizer_output.loss
        return (recon_loss + vq_loss).mean(dim=0), recon_loss.mean(dim=0), vq_loss.mean(dim=0)


def build(args) -> VQVAE:
    side = 28 // 2**args.downsample
    scale = args.code_dim * side * side if args.vq_loss == "sum" else 1.0
    config = VQVAEConfig(
        input_dim=(1, 28, 28),
        latent_dim=args.code_dim,
        num_embeddings=args.codebook_size,
        commitment_loss_factor=args.commitment * scale,
        quantization_loss_factor=scale,
        use_ema=False,
    )
    cls = BernoulliVQVAE if args.reconstruction == "bce" else VQVAE
    encoder = Encoder(args.channels, args.code_dim, args.downsample)
    decoder = Decoder(args.channels, args.code_dim, args.downsample)
    return cls(config, encoder=encoder, decoder=decoder)


@torch.no_grad()
def port_check(model: VQVAE, x: torch.Tensor) -> dict:
    """pythae's own losses (batch means) and codes on ``x``, in float32: pythae's quantizer builds its
    one-hot matrix in float32 whatever the model's dtype, so float64 is not open to it."""
    out = model.eval()({"data": x})
    return {
        "x": x.to(torch.uint8),
        "codes": out.quantized_indices.squeeze(1),
        "pythae_loss": out.loss.item(),
        "pythae_recon": out.recon_loss.item(),
        "pythae_vq": out.vq_loss.item(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the .npz of export_mnist.py")
    p.add_argument("--out", required=True, help="weights and port check (a torch file; keep it out of git)")
    p.add_argument("--codebook-size", type=int, default=16)
    p.add_argument("--code-dim", type=int, default=16)
    p.add_argument("--downsample", type=int, default=2)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--commitment", type=float, default=0.25)
    p.add_argument("--reconstruction", choices=["bce", "mse"], default="bce")
    p.add_argument("--vq-loss", choices=["sum", "mean"], default="sum")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=0, help="first N training images (0: all)")
    args = p.parse_args()
    print("command: " + shlex.join(["python", *sys.argv]))
    print(f"ran: pythae {version('pythae')}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{platform.machine()}", flush=True)
    npz = np.load(args.data)
    train_data = torch.from_numpy(npz["train"])
    if args.train_size:
        train_data = train_data[: args.train_size]
    torch.manual_seed(args.seed)
    model = build(args)
    dataset = DynamicallyBinarized(train_data.float() / 255, torch.zeros(len(train_data)))
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as workdir:
        config = BaseTrainerConfig(output_dir=workdir, num_epochs=args.epochs, learning_rate=args.lr,
                                   per_device_train_batch_size=args.batch_size,
                                   per_device_eval_batch_size=args.batch_size, optimizer_cls="Adam",
                                   seed=args.seed, no_cuda=True)
        trainer = BaseTrainer(model, dataset, None, config, callbacks=[clock])
        trainer.train()
        best = trainer._best_model  # in memory: reloading from the folder would drop the BCE subclass
    saved = {
        "peer": "pythae-vqvae",
        "pythae_model": type(best).__name__,
        "state": {
            "encoder": {k: v.clone() for k, v in best.encoder.state_dict().items()},
            "decoder": {k: v.clone() for k, v in best.decoder.state_dict().items()},
            "codebook": best.quantizer.embeddings.weight.detach().clone(),
        },
        "port_check": port_check(best, torch.from_numpy(npz["test"][:100]).float()),
        "parameters": sum(p.numel() for p in best.parameters()),
        "seconds_per_epoch": clock.seconds,
        "train_images": len(train_data),
        "config": {**vars(args),
                   "pythae_model_config": {k: str(v) for k, v in best.model_config.__dict__.items()},
                   "threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
    }
    torch.save(saved, args.out)
    s = clock.seconds
    print(f"{saved['pythae_model']} K={args.codebook_size}: {sum(s) / len(s):.1f} s/epoch, pythae loss on "
          f"the check batch {saved['port_check']['pythae_loss']:.4f} (uniform KL hw log K "
          f"{(28 // 2**args.downsample) ** 2 * math.log(args.codebook_size):.2f} not included)", flush=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
