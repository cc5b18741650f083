"""Peer run: pythae's VAE, VAE_LinNF and VAE_IAF on vaezoo's MNIST with vaezoo's networks; weights exported.

Runs in the peer's own environment (README.md here) and never imports vaezoo. pythae trains with its
own models, losses and trainer (``BaseTrainer``, Adam); only the networks and the data set are ours:

- encoder 784-200-200 (tanh) with one linear head giving pythae's (mu, log variance), decoder 50-200-200
  (tanh)-784 with a sigmoid (pythae's ``bce`` reconstruction takes probabilities): the layer sizes of
  vaezoo's ``vae`` model and its guides (``experiments/flows.py``);
- dynamically binarized MNIST: pythae's datasets hold fixed tensors, so the training set is a subclass
  of pythae's ``BaseDataset`` (the class its docs say new data sets inherit from) that draws every pixel
  afresh from its grey level each time an image is served, as vaezoo does.

No evaluation set is given to the trainer, so pythae keeps the model of the epoch with the lowest
training loss (its ``keep_best_on_train``); the test set is not used for training or model selection.
After training, for each model, ``--out`` receives the state of the networks and flows as plain tensors
(masks of pythae's MADEs applied to their weights) and a *port check*: pythae's own loss, in float64, on
the first 100 test images of vaezoo's binarization with recorded standard-normal noise, which
``evaluate_port.py`` recomputes with vaezoo on the ported weights::

    OMP_NUM_THREADS=1 benchmarks/peers/pythae/.venv/bin/python benchmarks/peers/pythae/train_pythae.py \\
        --data /tmp/pythae_peer/mnist.npz --out /tmp/pythae_peer/weights.pt --epochs 100
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from importlib.metadata import version

import numpy as np
import torch
from pythae.data.datasets import BaseDataset, DatasetOutput
from pythae.models import VAE, VAE_IAF, AutoModel, VAE_IAF_Config, VAE_LinNF, VAE_LinNF_Config, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.trainers import BaseTrainer, BaseTrainerConfig
from pythae.trainers.training_callbacks import TrainingCallback
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def stack(sizes: list[int], act: str) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), ACTIVATIONS[act]()]
    return layers


class Encoder(BaseEncoder):
    """x -> (mu, log sigma^2): vaezoo's encoder layers, pythae's output convention."""

    def __init__(self, x_numel: int, hidden: list[int], z_dim: int, act: str):
        super().__init__()
        self.body = nn.Sequential(*stack([x_numel, *hidden], act))
        self.head = nn.Linear(hidden[-1], 2 * z_dim)

    def forward(self, x):
        mu, log_var = self.head(self.body(x.reshape(x.shape[0], -1))).chunk(2, -1)
        return ModelOutput(embedding=mu, log_covariance=log_var)


class Decoder(BaseDecoder):
    """z -> pixel probabilities: vaezoo's decoder layers (logits), then a sigmoid."""

    def __init__(self, z_dim: int, hidden: list[int], x_shape: tuple[int, ...], act: str):
        super().__init__()
        self.x_shape = x_shape
        self.net = nn.Sequential(*stack([z_dim, *hidden], act), nn.Linear(hidden[-1], int(np.prod(x_shape))))

    def forward(self, z):
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).reshape(z.shape[0], *self.x_shape))


class DynamicallyBinarized(BaseDataset):
    """Grey-level images whose pixels are drawn afresh (Bernoulli of the grey level) whenever served."""

    def __getitem__(self, index):
        return DatasetOutput(data=torch.bernoulli(self.data[index]), labels=self.labels[index])


class EpochClock(TrainingCallback):
    """Seconds of each epoch's training loop: from pythae's train-step start to its last optimizer step."""

    def __init__(self):
        self.seconds: list[float] = []
        self.start = self.last = 0.0

    def on_train_step_begin(self, training_config, **kwargs):
        self.start = time.perf_counter()

    def on_train_step_end(self, training_config, **kwargs):
        self.last = time.perf_counter()

    def on_epoch_end(self, training_config, **kwargs):
        self.seconds.append(self.last - self.start)


def build(name: str, args, x_shape: tuple[int, ...]):
    common = {"input_dim": x_shape, "latent_dim": args.z_dim, "reconstruction_loss": "bce"}
    if name == "vae":
        cls, config = VAE, VAEConfig(**common)
    elif name == "vae_linnf":
        cls, config = VAE_LinNF, VAE_LinNF_Config(**common, flows=["Planar"] * args.planar_steps)
    else:
        cls, config = VAE_IAF, VAE_IAF_Config(**common, n_made_blocks=args.iaf_blocks)
    x_numel = int(np.prod(x_shape))
    encoder = Encoder(x_numel, args.hidden[::-1], args.z_dim, args.activation)
    decoder = Decoder(args.z_dim, args.hidden, x_shape, args.activation)
    return cls(config, encoder=encoder, decoder=decoder)


def flow_state(name: str, model) -> dict:
    """The flow's parameters as plain tensors, in the order pythae's sampling pass applies them."""
    if name == "vae_linnf":
        layers = list(model.net)
        return {
            "kind": "planar",
            "u": torch.cat([f.u for f in layers]),
            "w": torch.cat([f.w for f in layers]),
            "b": torch.cat([f.b for f in layers]),
        }
    if name == "vae_iaf":
        # IAF.inverse (pythae's sampling direction) visits the MADEs last to first, flipping z before each.
        blocks = []
        for made in list(model.iaf_flow.net)[::-1]:
            linears = [m for m in made.net if isinstance(m, nn.Linear)]
            blocks.append([(lin.mask * lin.weight, lin.bias) for lin in linears])
        return {"kind": "iaf", "blocks": blocks}
    return {"kind": "none"}


@torch.no_grad()
def port_check(model, x: torch.Tensor, seed: int) -> dict:
    """pythae's loss (negative ELBO, batch mean) in float64 on ``x`` with recorded noise eps."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(
        torch.float64
    )  # pythae's flows accumulate log-determinants in default-dtype zeros
    try:
        m = model.double().eval()
        eps = torch.randn(
            x.shape[0], m.model_config.latent_dim, generator=torch.Generator().manual_seed(seed)
        )
        m._sample_gauss = lambda mu, std: (mu + eps * std, eps)  # this instance draws the recorded noise
        out = m({"data": x.double()})
        del m._sample_gauss
        model.float()
    finally:
        torch.set_default_dtype(default)
    return {
        "x_rows": x.shape[0],
        "eps": eps,
        "pythae_loss": out.loss.item(),
        "pythae_recon": out.recon_loss.item(),
        "pythae_reg": out.reg_loss.item(),
    }


def train(name: str, args, train_data: torch.Tensor, check_x: torch.Tensor, workdir: str) -> dict:
    x_shape = tuple(train_data.shape[1:])
    torch.manual_seed(args.seed)
    model = build(name, args, x_shape)
    dataset = DynamicallyBinarized(train_data.float() / 255, torch.zeros(len(train_data)))
    config = BaseTrainerConfig(
        output_dir=os.path.join(workdir, name),
        num_epochs=args.epochs,
        learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        optimizer_cls="Adam",
        seed=args.seed,
        no_cuda=True,
    )
    clock = EpochClock()
    trainer = BaseTrainer(model, dataset, None, config, callbacks=[clock])
    trainer.train()
    best = AutoModel.load_from_folder(os.path.join(trainer.training_dir, "final_model"))
    state = {
        "encoder": {k: v.clone() for k, v in best.encoder.state_dict().items()},
        "decoder": {k: v.clone() for k, v in best.decoder.state_dict().items()},
        "flow": flow_state(name, best),
    }
    n_params = sum(p.numel() for p in best.parameters())
    check = port_check(best, check_x, args.seed + 1)
    return {
        "peer": f"pythae-{name}",
        "pythae_model": type(best).__name__,
        "state": state,
        "port_check": check,
        "parameters": n_params,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "train_images": len(train_data),
        "seconds_per_epoch": clock.seconds,
        "config": {
            "z_dim": args.z_dim,
            "hidden": args.hidden,
            "activation": args.activation,
            "planar_steps": args.planar_steps,
            "iaf_blocks": args.iaf_blocks,
            "pythae_model_config": {k: str(v) for k, v in best.model_config.__dict__.items()},
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the .npz of export_mnist.py")
    p.add_argument("--out", required=True, help="weights and port checks (a torch file; keep it out of git)")
    p.add_argument(
        "--models",
        nargs="+",
        choices=["vae", "vae_linnf", "vae_iaf"],
        default=["vae", "vae_linnf", "vae_iaf"],
    )
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=0, help="first N training images (0: all)")
    p.add_argument("--z-dim", type=int, default=50)
    p.add_argument("--hidden", type=int, nargs="+", default=[200, 200], help="decoder widths from z up")
    p.add_argument("--activation", choices=list(ACTIVATIONS), default="tanh")
    p.add_argument("--planar-steps", type=int, default=4, help="VAE_LinNF: this many Planar flows")
    p.add_argument(
        "--iaf-blocks", type=int, default=2, help="VAE_IAF: n_made_blocks (MADEs: pythae's default)"
    )
    args = p.parse_args()
    print("command: " + shlex.join(["python", *sys.argv]))
    print(
        f"ran: pythae {version('pythae')}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"{platform.machine()}",
        flush=True,
    )
    npz = np.load(args.data)
    train_data = torch.from_numpy(npz["train"])
    if args.train_size:
        train_data = train_data[: args.train_size]
    check_x = torch.from_numpy(npz["test"][:100]).double()
    saved = torch.load(args.out) if os.path.exists(args.out) else {}
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.models:
            r = train(name, args, train_data, check_x, workdir)
            saved[name] = r
            torch.save(saved, args.out)
            s = r["seconds_per_epoch"]
            print(
                f"{r['pythae_model']}: {sum(s) / len(s):.1f} s/epoch, pythae loss on the check batch "
                f"{r['port_check']['pythae_loss']:.4f}",
                flush=True,
            )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
