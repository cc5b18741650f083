"""Likelihood-free VI (Tran, Ranganath & Blei 2017) against the truth: a simulator, secretly Gaussian.

The simulator x = W z + b + s eps (:class:`~vaezoo.models.implicit.ImplicitGaussian`, x in R^5, z in R^2,
s = 1, W and b from seed 0) is only sampled by LFVI; its explicit twin gives the exact posterior
p(z | x), against which the same full-covariance guide (``affine_normal``) is scored when fitted by
LFVI, by the ELBO with the true likelihood (the best this guide can do), and left at the prior. Writes
``results.json``, ``README.md`` (the table) and ``posterior_marginals.png`` into ``--out``::

    OMP_NUM_THREADS=1 python experiments/likelihood_free.py --out docs/likelihood_free
    OMP_NUM_THREADS=1 python experiments/likelihood_free.py --smoke --out /tmp/lfvi

References:
    - Tran, Ranganath & Blei (2017), Hierarchical Implicit Models and Likelihood-Free Variational
      Inference, NIPS.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from vaezoo.analysis import LFVIStudy, lfvi_study  # noqa: E402

ROWS = (("prior", "prior (untrained guide)"), ("lfvi", "LFVI (simulator sampled only)"),
        ("elbo", "ELBO with the true likelihood"))


def plot(result, path: Path, rows: int = 3) -> None:
    """Exact vs fitted marginal densities of z_1 and z_2 for the first ``rows`` test points."""
    exact = result.model.gaussian_twin().posterior(result.test[:rows])["z"]
    fig, axes = plt.subplots(rows, 2, figsize=(7, 1.9 * rows), squeeze=False)
    styles = {"prior": ":", "lfvi": "-", "elbo": "--"}
    for i in range(rows):
        for j in range(2):
            ax = axes[i][j]
            m, sd = exact.loc[i, j].item(), exact.covariance_matrix[i, j, j].sqrt().item()
            grid = torch.linspace(m - 5 * sd, m + 5 * sd, 300)
            ax.fill_between(grid, torch.distributions.Normal(m, sd).log_prob(grid).exp(), color="0.85",
                            label="exact")
            for name, guide in result.guides.items():
                q = guide.site_dists(result.test[i : i + 1])["z"]
                qm, qs = q.loc[0, j].item(), q.covariance_matrix[0, j, j].sqrt().item()
                dens = torch.distributions.Normal(qm, qs).log_prob(grid).exp()
                ax.plot(grid, dens.detach(), styles[name], label=name)
            ax.set_yticks([])
            ax.set_title(f"test point {i + 1}: z_{j + 1}", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs/likelihood_free")
    p.add_argument("--smoke", action="store_true", help="a tiny budget, to check the script runs")
    p.add_argument("--epochs", type=int, default=LFVIStudy.epochs, help="LFVI epochs (2000 draws, batch 100)")
    p.add_argument("--elbo-epochs", type=int, default=LFVIStudy.elbo_epochs)
    p.add_argument("--lr", type=float, default=LFVIStudy.lr, help="the guide's learning rate, both fits")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    study = LFVIStudy(epochs=args.epochs, elbo_epochs=args.elbo_epochs, lr=args.lr, seed=args.seed)
    if args.smoke:
        study = dataclasses.replace(study, n_train=200, n_test=100, epochs=1, elbo_epochs=1, warmup_steps=2)
    result = lfvi_study(study)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    given = sys.argv[1:] if argv is None else argv
    command = "OMP_NUM_THREADS=1 python experiments/likelihood_free.py " + shlex.join(given)
    record = {
        "command": command,
        "study": dataclasses.asdict(study),
        "errors": {k: dataclasses.asdict(v) for k, v in result.errors.items()},
        "seconds": result.seconds,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": 1},
    }
    (out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Likelihood-free VI on a simulator that is secretly Gaussian",
        "",
        f"`{command}`",
        "",
        f"Simulator x = W z + b + s eps, x in R^{study.x_dim}, z in R^{study.z_dim}, "
        f"s = {study.noise_scale}, "
        f"seed {study.seed}; {study.n_train} training draws, errors averaged over {study.n_test} test draws. "
        f"Guide `affine_normal` (contains the exact posterior). LFVI: {study.epochs} epochs, batch "
        f"{study.batch_size}, lr {study.lr}, ratio MLP {study.ratio_hidden}, {study.ratio_steps} classifier "
        f"steps before each guide step (ratio lr {study.ratio_lr}), the first preceded by "
        f"{study.warmup_steps} warm-up steps on the first batch; "
        f"ELBO: {study.elbo_epochs} epochs, same batch and lr.",
        "",
        r"| guide fitted by | KL(q ‖ p(z \| x)) nats | mean error ‖μ_q − μ_p‖ | cov error ‖Σ_q − Σ_p‖_F "
        "| seconds |",
        "|---|---|---|---|---|",
    ]
    for key, label in ROWS:
        e = result.errors[key]
        secs = f"{result.seconds[key]:.0f}" if key in result.seconds else "-"
        lines.append(f"| {label} | {e.kl:.4f} | {e.mean_error:.4f} | {e.cov_error:.4f} | {secs} |")
    lines += ["", "![exact vs fitted posterior marginals](posterior_marginals.png)", ""]
    (out / "README.md").write_text("\n".join(lines))
    plot(result, out / "posterior_marginals.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
