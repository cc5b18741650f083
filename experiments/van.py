"""Variational autoregressive network (VAN) baseline for the L x L Ising torus: free-energy upper bounds.

A masked-convolution autoregressive model q(s) over the spins is trained on the variational free
energy ``F_q = E_q[E(s) + T ln q(s)] >= F = -T ln Z`` with no data at all, then ``F_q / N`` is
estimated with a large fresh batch and compared with Kaufman's exact F and with the block-spin
model's bounds quoted from ``docs/ising/README.md``::

    export OMP_NUM_THREADS=1
    nohup python experiments/van.py run > /tmp/van.log 2>&1 &   # L = 16, T = 2.0, T_c, 2.5
    python experiments/van.py report                              # docs/ising/van.md

``--out DIR`` writes results to ``DIR/results/`` and the page to ``DIR/van.md`` instead of
``docs/ising/``; ``--smoke`` (needs ``--out``) shrinks every size to check the runner, not the model.

Generative story: sites in raster order, ``s_i ~ Bernoulli(sigmoid(f_i(s_<i)))`` mapped to +-1, with
f a :class:`~vaezoo.nets.pixelcnn.PixelCNN` (one type-A masked layer, then type B); with the Z2
symmetrization (used here, as in the paper) the lattice is then flipped with probability 1/2, so
``q(s) = (q_AR(s) + q_AR(-s)) / 2``. Training: the score-function gradient
``E_q[(beta E + ln q - b) grad ln q]`` with b the batch mean of ``beta E + ln q``, and beta annealed
as ``beta_t = (1 - r^t) / T`` (the paper's schedule, with r set so that beta reaches 99% of 1/T at
``--anneal`` of the steps and is exactly 1/T from there on).

Deviations from the paper: a much smaller budget (steps, batch, width; stated in the page); the
network is the gated PixelCNN of :mod:`vaezoo.nets.pixelcnn` (gated units, residual connections,
single masked stack with its blind spot) instead of the paper's plain masked convolutions.

References:
    - Wu, Wang & Zhang (2019), Solving Statistical Mechanics Using Variational Autoregressive
      Networks, Phys. Rev. Lett. 122, 080602.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import time
from pathlib import Path

import torch
from torch import nn

from vaezoo.ising import T_C, energy, kaufman_thermodynamics
from vaezoo.nets.pixelcnn import PixelCNN

ROOT = Path(__file__).resolve().parents[1]
TEMPERATURES = (2.0, T_C, 2.5)
FULL = {"L": 16, "hidden": 16, "layers": 2, "kernel_size": 5, "steps": 260, "batch": 64, "lr": 2e-3,
        "anneal": 0.5, "n_eval": 3000, "chunk": 500, "seed": 0}
SMOKE = {**FULL, "L": 4, "hidden": 4, "layers": 2, "kernel_size": 3, "steps": 5, "batch": 16,
         "n_eval": 64, "chunk": 32}


class VAN(nn.Module):
    """q(s) over ``L x L`` spins, autoregressive in raster order, optionally Z2-symmetrized.

    :param hidden: channels of the PixelCNN's gated layers.
    :param layers: masked layers.
    :param kernel_size: odd side of the masked kernels.
    :param z2: use ``q(s) = (q_AR(s) + q_AR(-s)) / 2``.
    """

    def __init__(self, hidden: int, layers: int, kernel_size: int, z2: bool = True):
        super().__init__()
        self.net = PixelCNN(1, hidden, layers, kernel_size, 1)
        self.z2 = z2

    def logits(self, s: torch.Tensor) -> torch.Tensor:
        """Logit of ``P(s_i = +1 | s_<i)`` at every site of ``s`` ``(B, L, L)`` (unsymmetrized)."""
        return self.net(s.unsqueeze(-3)).squeeze(-3)

    def log_prob_ar(self, s: torch.Tensor) -> torch.Tensor:
        return nn.functional.logsigmoid(s * self.logits(s)).sum((-2, -1))

    def log_prob(self, s: torch.Tensor) -> torch.Tensor:
        """``ln q(s)`` of ``(B, L, L)`` +-1 spins, shape ``(B,)``."""
        if not self.z2:
            return self.log_prob_ar(s)
        both = self.log_prob_ar(torch.cat([s, -s]))
        return torch.logaddexp(*both.chunk(2)) - math.log(2.0)

    def site_logit(self, s: torch.Tensor, r: int, c: int) -> torch.Tensor:
        """``logits(s)[:, r, c]``, computed on the window of rows ``r - R..r``, columns ``c - R..c + R``.

        R = layers * (kernel_size // 2) bounds the receptive field, so the window is exact: zero padding
        at a window edge inside the lattice corrupts layer j's activations only within ``j * (k // 2)``
        of that edge, never at (r, c), and a masked kernel never reads rows below its output row.
        """
        reach = self.net.field.up
        r0, c0 = max(0, r - reach), max(0, c - reach)
        window = s[:, r0 : r + 1, c0 : c + reach + 1]
        return self.logits(window)[:, r - r0, c - c0]

    @torch.no_grad()
    def sample(self, n: int, L: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``n`` lattices from q: L * L passes of the network, each on a window (:meth:`site_logit`)."""
        s = torch.zeros(n, L, L, dtype=dtype)
        for r in range(L):
            for c in range(L):
                p = torch.sigmoid(self.site_logit(s, r, c))
                u = torch.rand(n, generator=generator, dtype=dtype)
                s[:, r, c] = torch.where(u < p, 1.0, -1.0)
        if self.z2:
            flip = torch.rand(n, generator=generator, dtype=dtype) < 0.5
            s = torch.where(flip[:, None, None], -s, s)
        return s


def surrogate_loss(van: VAN, s: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Score-function surrogate with gradient ``~ grad E_q[beta E + ln q]``, and the per-sample values.

    The batch-mean baseline ``b`` uses the sample itself, so the gradient's expectation is
    ``(1 - 1/B)`` times the true one, as in the paper.
    """
    log_q = van.log_prob(s)
    with torch.no_grad():
        f = beta * energy(s).to(log_q.dtype) + log_q
    return ((f - f.mean()) * log_q).mean(), f


def anneal_rate(steps: int, anneal: float) -> float:
    """r with ``1 - r^t = 0.99`` at ``t = anneal * steps``."""
    return 0.01 ** (1.0 / max(1.0, anneal * steps))


def train(van: VAN, L: int, T: float, cfg: dict, generator: torch.Generator) -> list[dict]:
    opt = torch.optim.Adam(van.parameters(), lr=cfg["lr"])
    rate, anneal_steps = anneal_rate(cfg["steps"], cfg["anneal"]), cfg["anneal"] * cfg["steps"]
    log, start = [], time.time()
    for t in range(1, cfg["steps"] + 1):
        beta = (1.0 - (rate**t if t < anneal_steps else 0.0)) / T
        s = van.sample(cfg["batch"], L, generator)
        loss, f = surrogate_loss(van, s, beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if t % max(1, cfg["steps"] // 20) == 0 or t == cfg["steps"]:
            # F/N at the current beta, in units of T: a running diagnostic, not the final estimate
            row = {"step": t, "beta_T": beta * T, "F_beta_per_site": float(f.mean()) / (beta * L * L),
                   "seconds": time.time() - start}
            log.append(row)
            print(json.dumps(row), flush=True)
    return log


@torch.no_grad()
def free_energy_bound(van: VAN, L: int, T: float, n: int, chunk: int,
                      generator: torch.Generator) -> dict:
    """``F_q / N`` from ``n`` fresh samples (mean, standard error), and ``E / N`` and ``<|m|>`` of them."""
    values, energies, mags = [], [], []
    dtype = next(van.parameters()).dtype
    for start in range(0, n, chunk):
        s = van.sample(min(chunk, n - start), L, generator, dtype=dtype)
        e = energy(s)
        values.append(e + T * van.log_prob(s).double())
        energies.append(e)
        mags.append(s.double().mean((-2, -1)).abs())
    v, e, m = (torch.cat(x) / d for x, d in ((values, L * L), (energies, L * L), (mags, 1)))
    se = lambda x: float(x.std() / math.sqrt(len(x)))  # noqa: E731
    return {"F_q_per_site": float(v.mean()), "se": se(v), "n": len(v),
            "E_per_site": float(e.mean()), "E_se": se(e), "abs_m": float(m.mean()), "abs_m_se": se(m)}


def run(args, cfg: dict, results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    L = cfg["L"]
    for T in TEMPERATURES:
        torch.manual_seed(cfg["seed"])
        generator = torch.Generator().manual_seed(cfg["seed"])
        van = VAN(cfg["hidden"], cfg["layers"], cfg["kernel_size"], z2=True)
        start = time.time()
        log = train(van, L, T, cfg, generator)
        train_seconds = time.time() - start
        start = time.time()
        bound = free_energy_bound(van, L, T, cfg["n_eval"], cfg["chunk"], generator)
        exact = kaufman_thermodynamics(L, T)
        f_exact = -T * exact.log_z_per_site
        n_params = sum(p.numel() for p in van.parameters())
        unmasked = n_params - sum(int((m == 0).sum()) for n, m in van.named_buffers() if n.endswith("mask"))
        out = {"T": T, "L": L, "config": cfg, "train_seconds": train_seconds,
               "eval_seconds": time.time() - start, "parameters": n_params,
               "parameters_unmasked": unmasked, "exact_F_per_site": f_exact,
               "exact_E_per_site": exact.energy_per_site,
               "rel_err": (bound["F_q_per_site"] - f_exact) / abs(f_exact), **bound, "log": log,
               "torch": torch.__version__, "threads": torch.get_num_threads(), "host": platform.node()}
        (results / f"van-L{L}-T{T:.4f}.json").write_text(json.dumps(out, indent=1))
        print(json.dumps({k: v for k, v in out.items() if k not in ("log", "config")}), flush=True)


def block_spin_rows(readme: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The header and rows (keyed by T to 4 decimals) of the README's L = 16 free-energy table, as text."""
    text = readme.read_text() if readme.is_file() else ""
    part = text.split("## L = 16: free-energy upper bound per site vs Kaufman's exact F", 1)[-1]
    rows = [line for line in part.splitlines() if line.startswith("|")]
    if len(rows) < 3:
        return [], {}
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in rows]
    end = next((i for i, c in enumerate(cells[2:], 2) if not re.fullmatch(r"[\d.]+", c[0])), len(cells))
    return cells[0], {c[0]: c for c in cells[2:end]}


def report(args, cfg: dict, results: Path, page: Path) -> None:
    runs = sorted((json.loads(p.read_text()) for p in results.glob("van-L*-T*.json")), key=lambda r: r["T"])
    # The README's bounds are for L = 16 only; a smoke run at another L quotes nothing.
    L16 = bool(runs) and runs[0]["L"] == 16
    header, quoted = block_spin_rows(ROOT / "docs" / "ising" / "README.md") if L16 else ([], {})
    others = header[2:] if header else []
    c = runs[0]["config"] if runs else cfg
    lines = [
        "# Variational autoregressive network (VAN) baseline: L = 16 free-energy bounds", "",
        "Wu, Wang & Zhang (2019), PRL 122, 080602: a masked-convolution autoregressive q(s) trained on",
        "F_q = E_q[E + T ln q] with the score-function gradient and the batch-mean baseline, Z2-symmetrized",
        "q(s) = (q_AR(s) + q_AR(-s))/2, beta annealed as (1 - r^t)/T (99% of 1/T at "
        f"{c['anneal']:.0%} of the steps, 1/T after). No data.", "",
        "```", "export OMP_NUM_THREADS=1", "nohup python experiments/van.py run > /tmp/van.log 2>&1 &",
        "python experiments/van.py report", "```", "",
        f"Budget (one thread, machine shared with ~6 jobs on 2 cores): per T, {c['steps']} Adam steps "
        f"(lr {c['lr']}) of batch {c['batch']}; gated PixelCNN, {c['layers']} masked layers, {c['hidden']} "
        f"channels, kernel {c['kernel_size']}; F_q from {c['n_eval']} fresh samples (mean ± standard "
        "error). Every sample costs L^2 = 256 network passes (row r on rows 0..r only).", "",
        "F_q / N is an upper bound on the exact F / N in expectation (Gibbs). Mean-field and block-spin",
        "columns are quoted from `docs/ising/README.md` (\"L = 16: free-energy upper bound per site vs",
        "Kaufman's exact F\"), not recomputed.", "",
        "| " + " | ".join(["T", "exact F / N (Kaufman)", "VAN bound (rel. err.)", *others,
                            "VAN E / N (exact)", "VAN <abs m>", "train s", "eval s",
                            "parameters (unmasked)"]) + " |",
        "|" + "---|" * (8 + len(others)),
    ]
    for r in runs:
        key = f"{r['T']:.4f}"
        q = quoted.get(key, [])[2:] or ["—"] * len(others)
        cells = [key, f"{r['exact_F_per_site']:.4f}",
                 f"{r['F_q_per_site']:.4f} ± {r['se']:.4f} ({r['rel_err']:.2%})", *q,
                 f"{r['E_per_site']:.4f} ± {r['E_se']:.4f} ({r['exact_E_per_site']:.4f})",
                 f"{r['abs_m']:.4f} ± {r['abs_m_se']:.4f}", f"{r['train_seconds']:.0f}",
                 f"{r['eval_seconds']:.0f}", f"{r['parameters']} ({r['parameters_unmasked']})"]
        lines.append("| " + " | ".join(cells) + " |")
    total = sum(r["train_seconds"] + r["eval_seconds"] for r in runs)
    lines += ["", f"Total wall time of the three temperatures: {total / 60:.1f} min. \"VAN E / N\" and",
              "\"VAN <abs m>\" are means over the same fresh samples (exact E / N from Kaufman in",
              "parentheses); parameters count every kernel weight, the number in parentheses leaves out",
              "those the masks always multiply by 0."]
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(lines) + "\n")
    print(page.read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="write under DIR instead of docs/ising/")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (needs --out)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train and evaluate at T = 2.0, T_c, 2.5")
    for key in ("steps", "batch", "n_eval", "hidden", "layers", "kernel_size"):
        p_run.add_argument(f"--{key.replace('_', '-')}", type=int, default=None)
    sub.add_parser("report", help="write van.md from the results")
    args = parser.parse_args(argv)
    if args.smoke and args.out is None:
        parser.error("--smoke needs --out DIR, so that it does not overwrite the real results")
    torch.set_num_threads(1)
    cfg = dict(SMOKE if args.smoke else FULL)
    cfg.update({k: v for k, v in vars(args).items() if k in cfg and v is not None})
    base = args.out if args.out is not None else ROOT / "docs" / "ising"
    results = base / "results"
    if args.command == "run":
        run(args, cfg, results)
    else:
        report(args, cfg, results, base / "van.md")


if __name__ == "__main__":
    main()
