"""Block-spin free-energy bounds at L = 32, and a tighter L = 16 bound by reverse-KL fine-tuning.

One ``run`` trains, per lattice side, the binary block-spin model with the learned guide (score-function
ELBO on Swendsen-Wang lattices: the forward KL), measures the bound of
:func:`~vaezoo.inference.free_energy.free_energy_bound` against Kaufman's exact F, then fine-tunes model
and r on the bound itself (:func:`~vaezoo.inference.reverse_kl.fit_free_energy`: the reverse KL, no data)
and measures again. Every stage has a wall-clock budget and writes ``docs/ising/results/bounds-L*.json``
as soon as it has numbers; ``report`` writes ``docs/ising/bounds.md``::

    export OMP_NUM_THREADS=1
    nohup python experiments/ising_bounds.py run > /tmp/bounds.log 2>&1 &
    python experiments/ising_bounds.py report

``--smoke --out DIR`` shrinks every size to check the runner in about a minute.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import time
from pathlib import Path

import torch

from vaezoo import checkpoint
from vaezoo.analysis.block_spin_training import bound_guide, train_block_spin
from vaezoo.inference.fit import make_optimizer
from vaezoo.inference.free_energy import fit_bound_guide, free_energy_bound
from vaezoo.inference.reverse_kl import fit_free_energy
from vaezoo.ising import T_C, kaufman_thermodynamics
from vaezoo.ising.lattice_data import lattice_dataset
from vaezoo.ising.observables import energy
from vaezoo.models.lattice_hierarchy import sample_model

ROOT = Path(__file__).resolve().parents[1]
TEMPS = (2.0, T_C, 2.5)  # training and evaluation temperatures (the model is conditioned on K)
FULL = {
    16: {"levels": 3, "n_train": 1000, "epochs": 40, "pre_min": 4.0, "rkl_min": 7.0, "n_eval": 4000},
    32: {"levels": 4, "n_train": 600, "epochs": 60, "pre_min": 9.0, "rkl_min": 4.0, "n_eval": 2000},
}
COMMON = {"batch": 100, "lr": 1e-3, "rkl_lr": 3e-4, "rkl_batch": 100, "bound_steps": 300, "chunk": 50}
SMOKE = {
    "n_train": 20,
    "epochs": 1,
    "pre_min": 0.2,
    "rkl_min": 0.1,
    "n_eval": 40,
    "bound_steps": 3,
    "chunk": 2,
}
SMOKE_NET = {"channels": 4, "depth": 1, "gain_hidden": 4}


def machine() -> dict:
    return {"threads": torch.get_num_threads(), "torch": torch.__version__, "cpu": platform.processor()}


def pretrain(L: int, size: dict, runs: Path, net: dict | None) -> tuple[list[dict], float]:
    """Forward KL: score-function ELBO on Swendsen-Wang lattices, one epoch per call until the budget."""
    train = lattice_dataset(L, TEMPS, size["n_train"], method="swendsen_wang", seed=0, progress=False).x
    t0, history = time.perf_counter(), []
    while not history or history[-1]["epoch"] < size["epochs"]:
        last = history[-1]["seconds"] if history else 0.0
        if history and time.perf_counter() - t0 + 1.2 * last > 60 * size["pre_min"]:
            break
        target = (history[-1]["epoch"] if history else 0) + 1
        _, _, _, history = train_block_spin(
            train,
            levels=size["levels"],
            guide="block_amortized",
            epochs=target,
            batch_size=size["batch"],
            lr=size["lr"],
            out=str(runs / f"L{L}"),
            progress=False,
            model_config=net,
            guide_config=net,
        )
    return history, time.perf_counter() - t0


def bounds(model, r, L: int, n: int) -> dict:
    """Bound, exact F, mean field and the model's E / N (vs Kaufman's) at each temperature."""
    out = {}
    for T in TEMPS:
        fe = free_energy_bound(model, r, T, n=n)
        e = energy(sample_model(model, n, T=T)).double() / L**2
        out[f"{T:.4f}"] = {
            **vars(fe),
            "relative_error": fe.relative_error,
            "relative_stderr": fe.stderr / abs(fe.exact),
            "mf_relative_error": fe.mean_field_relative_error,
            "energy": [e.mean().item(), (e.std() / math.sqrt(n)).item()],
            "exact_energy": kaufman_thermodynamics(L, T).energy_per_site,
        }
    return out


def reverse_kl(model, r, size: dict) -> tuple[list[dict], float]:
    """Reverse KL on model and r together, in chunks until the budget; the mean f / N per chunk and T."""
    params = [p for m in (model, r) for p in m.parameters() if p.requires_grad]
    opt = make_optimizer(params, size["rkl_lr"])
    model.train()
    r.train()
    t0, log, steps = time.perf_counter(), [], 0
    while time.perf_counter() - t0 < 60 * size["rkl_min"]:
        n = size["chunk"] * len(TEMPS)
        means = fit_free_energy(model, r, TEMPS, steps=n, batch_size=size["rkl_batch"], optimizer=opt)
        steps += n
        per_t = {f"{T:.4f}": sum(means[i :: len(TEMPS)]) / size["chunk"] for i, T in enumerate(TEMPS)}
        log.append({"steps": steps, "seconds": time.perf_counter() - t0, "mean_f": per_t})
        print(json.dumps(log[-1]), flush=True)
    model.eval()
    r.eval()
    return log, time.perf_counter() - t0


def stage(L: int, size: dict, runs: Path, results: Path, net: dict | None) -> None:
    torch.manual_seed(0)
    result = {"L": L, "temperatures": list(TEMPS), "sizes": size, "net": net, "machine": machine()}
    path = results / f"bounds-L{L}.json"

    def save():
        results.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))

    history, secs = pretrain(L, size, runs, net)
    result["pretrain"] = {"epochs": history[-1]["epoch"], "seconds": secs, "history": history}
    model, guide, _, _ = checkpoint.restore(runs / f"L{L}" / "checkpoint.pt")
    t0 = time.perf_counter()
    r, losses = bound_guide(model, guide, TEMPS, steps=size["bound_steps"])
    result["forward_kl"] = bounds(model, r, L, size["n_eval"])
    result["forward_kl_seconds"] = time.perf_counter() - t0
    save()
    print(json.dumps({"L": L, "forward_kl": result["forward_kl"]}), flush=True)
    log, secs = reverse_kl(model, r, size)
    result["reverse_kl"] = {"lr": size["rkl_lr"], "batch": size["rkl_batch"], "seconds": secs, "log": log}
    result["after_cotrained_r"] = bounds(model, r, L, size["n_eval"])
    # The fine-tuned pair, for the samplers and the tutorial (runs/ is git-ignored).
    checkpoint.save(runs / f"L{L}" / "reverse_kl.pt", {"model": model.state_dict(), "r": r.state_dict()})
    refit = copy.deepcopy(r)
    fit_bound_guide(model, refit, TEMPS, steps=size["bound_steps"])
    result["after_refit_r"] = bounds(model, refit, L, size["n_eval"])
    save()
    print(json.dumps({"L": L, "after_refit_r": result["after_refit_r"]}), flush=True)


def resume(L: int, size: dict, runs: Path, results: Path) -> None:
    """Continue the reverse KL of a finished ``run`` from its saved pair, with this call's lr and batch.

    The forward-KL numbers stay; the continuation's log is appended and the bounds after it replace
    the previous ones (the JSON keeps every stage's log, so nothing measured is lost).
    """
    path = results / f"bounds-L{L}.json"
    result = json.loads(path.read_text())
    model, guide, _, _ = checkpoint.restore(runs / f"L{L}" / "checkpoint.pt")
    saved = torch.load(runs / f"L{L}" / "reverse_kl.pt", map_location="cpu", weights_only=True)
    r = copy.deepcopy(guide)
    model.load_state_dict(saved["model"])
    r.load_state_dict(saved["r"])
    model.eval()
    r.eval()
    torch.manual_seed(1)
    log, secs = reverse_kl(model, r, size)
    result.setdefault("continued", []).append(
        {
            "lr": size["rkl_lr"],
            "batch": size["rkl_batch"],
            "seconds": secs,
            "log": log,
            "before": {k: result[k] for k in ("after_cotrained_r", "after_refit_r")},
        }
    )
    result["after_cotrained_r"] = bounds(model, r, L, size["n_eval"])
    checkpoint.save(runs / f"L{L}" / "reverse_kl.pt", {"model": model.state_dict(), "r": r.state_dict()})
    refit = copy.deepcopy(r)
    fit_bound_guide(model, refit, TEMPS, steps=size["bound_steps"])
    result["after_refit_r"] = bounds(model, refit, L, size["n_eval"])
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps({"L": L, "after_refit_r": result["after_refit_r"]}), flush=True)


def run(args, results: Path, runs: Path) -> None:
    for L in args.L:
        size = {**COMMON, **FULL[L], **(SMOKE if args.smoke else {})}
        given = {"rkl_min": args.rkl_minutes, "rkl_batch": args.rkl_batch, "rkl_lr": args.rkl_lr}
        size.update({k: v for k, v in given.items() if v is not None})
        if args.resume:
            resume(L, size, runs, results)
        else:
            stage(L, size, runs, results, SMOKE_NET if args.smoke else None)


QUOTED_L16 = {  # docs/ising/README.md (learned guide, 12 temperatures) and docs/ising/van.md, not recomputed
    "block-spin, learned guide (README)": {"2.0000": 0.10, "2.2692": 0.34, "2.5000": 0.54},
    "VAN (van.md)": {"2.0000": 0.10, "2.2692": 0.37, "2.5000": 0.92},
}
COMMANDS = """```
export OMP_NUM_THREADS=1
python experiments/ising_bounds.py run --L 32                 # the L = 32 section
python experiments/ising_bounds.py run --L 16 --rkl-minutes 45
python experiments/ising_bounds.py run --L 16 --resume --rkl-minutes 25 --rkl-lr 1e-4
python experiments/ising_bounds.py report
```"""


INTRO = """Model: binary block spins with the learned guide (the `sf` variant of
`experiments/ising_block_spin.py`, 16 channels, depth 2), trained on T = 2.0, T_c, 2.5 only
(conditioned on K; the README's models saw 12 temperatures in [1.5, 3.5]). Forward KL: the
score-function ELBO on Swendsen-Wang lattices. Reverse KL: `vaezoo.inference.reverse_kl.fit_free_energy`,
model and r trained on the bound itself (score function with a leave-one-out baseline for the model,
pathwise for r), no data. Every bound is rigorous for its r (`free_energy_bound`); errors are standard
errors of the mean over fresh model samples. One thread, a 2-core machine shared with ~3 other jobs;
seconds are indicative."""


FINDINGS = """(Written after reading the tables above.)

- Reverse-KL fine-tuning is the lever that works, and it reaches the goal. At L = 16 the forward-KL
  model (38 epochs, 4 minutes) bounds F within 0.37% at T_c. 45 minutes of reverse KL (10,050 steps at
  lr 3e-4, the three temperatures in turn) take that to 0.089 ± 0.004% with the co-trained r, and 25
  more minutes at lr 1e-4 (8,250 steps, `run --resume`) to 0.073 ± 0.004%; T = 2.0 and 2.5 fall
  to 0.036% and 0.142%. All on one thread of a shared 2-core machine, no data. The running mean of the
  objective flattened during the lr 1e-4 stage, so more of the same would buy little.
- Refitting r after the fine-tuning (300 Adam steps at lr 3e-3 on the same E_p[ln r] term) made the
  bound slightly worse at T_c (0.073% -> 0.090%): the co-trained r was already tighter than that step
  size can resolve. Both numbers are rigorous bounds, one for each r; the goal line quotes the refit one.
- L = 32 (the earlier run, not redone): the forward-KL model (42 epochs, 9 minutes) already beats mean
  field at all three temperatures (0.72% against 1.75% at T_c), though by little at T = 2.0 (0.49%
  against 0.66%, where mean field is good); 450 reverse-KL steps (5 minutes) take it to 0.14 / 0.26 /
  0.53%. Mean field's bound is the same number at every L; only Kaufman's exact F moves.
- Reverse KL is mode-seeking, and it shows in the energy: the forward-KL models were too disordered
  (E / N above Kaufman's by 0.02 to 0.11), the fine-tuned ones are too ordered (below by 0.001 to
  0.04; at L = 16, T_c: -1.462 ± 0.003 against -1.453). A tighter free energy is not the same as
  unbiased observables; the exact samplers (importance weights, or MH with the model as proposal,
  `docs/ising/samplers.md`) remove that bias.
- These models saw three temperatures only, at a smaller forward-KL budget than the README's
  12-temperature model, whose 0.34% is quoted only for orientation."""


def _cell(b: dict) -> str:
    rel = f"{100 * b['relative_error']:.3f} ± {100 * b['relative_stderr']:.3f}%"
    return f"{b['value']:.4f} ± {b['stderr']:.4f} ({rel})"


def _table(d: dict) -> list[str]:
    stages = [k for k in ("forward_kl", "after_cotrained_r", "after_refit_r") if k in d]
    names = {
        "forward_kl": "forward KL (ELBO), r refit",
        "after_cotrained_r": "+ reverse KL, r as co-trained",
        "after_refit_r": "+ reverse KL, r refit",
    }
    head = "| T | exact F / N (Kaufman) | mean field (rel. err.) | " + " | ".join(names[k] for k in stages)
    lines = [head + " | change of rel. err. (reverse KL, r refit) |", "|---" * (4 + len(stages)) + "|"]
    for key, b in d["forward_kl"].items():
        cells = " | ".join(_cell(d[k][key]) for k in stages)
        change = "—"
        if "after_refit_r" in d:
            a = d["after_refit_r"][key]
            se = math.hypot(a["relative_stderr"], b["relative_stderr"])
            change = f"{100 * (a['relative_error'] - b['relative_error']):+.3f} ± {100 * se:.3f} points"
        mf = f"{b['mean_field']:.4f} ({100 * b['mf_relative_error']:.2f}%)"
        lines.append(f"| {b['T']:.4f} | {b['exact']:.4f} | {mf} | {cells} | {change} |")
    lines += ["", "Model energy per site, mean ± standard error of the same number of fresh samples:", ""]
    energies = [k for k in ("forward_kl", "after_cotrained_r") if k in d]  # one sample set per model
    heads = {"forward_kl": "model after forward KL", "after_cotrained_r": "model after reverse KL"}
    lines += ["| T | exact E / N (Kaufman) | " + " | ".join(heads[k] for k in energies) + " |"]
    lines.append("|---" * (2 + len(energies)) + "|")
    for key, b in d["forward_kl"].items():
        cells = " | ".join(f"{d[k][key]['energy'][0]:.4f} ± {d[k][key]['energy'][1]:.4f}" for k in energies)
        lines.append(f"| {b['T']:.4f} | {b['exact_energy']:.4f} | {cells} |")
    return lines


def _budget(d: dict) -> str:
    s, pre = d["sizes"], d["pretrain"]
    text = (
        f"L = {d['L']}: levels {s['levels']}, {s['n_train']} Swendsen-Wang lattices per temperature; "
        f"forward KL {pre['epochs']} epochs (batch {s['batch']}, lr {s['lr']}) "
        f"in {pre['seconds'] / 60:.1f} min; "
        f"r refit {s['bound_steps']} steps (fit_bound_guide); bounds from {s['n_eval']} model samples per T"
    )
    if "reverse_kl" in d:
        rk = d["reverse_kl"]
        text += (
            f"; reverse KL {rk['log'][-1]['steps']} steps (batch {rk['batch']}, lr {rk['lr']}, the three "
            f"temperatures in turn) in {rk['seconds'] / 60:.1f} min"
        )
    for c in d.get("continued", []):
        text += (
            f", then (`run --resume`) {c['log'][-1]['steps']} more steps (batch {c['batch']}, lr {c['lr']}) "
            f"in {c['seconds'] / 60:.1f} min"
        )
    return text + "."


def report(docs: Path) -> None:
    found = {L: docs / "results" / f"bounds-L{L}.json" for L in FULL}
    data = {L: json.loads(p.read_text()) for L, p in found.items() if p.exists()}
    lines = [
        "# Block-spin free-energy bounds: L = 32, and reverse-KL fine-tuning at L = 16",
        "",
        "Written by `python experiments/ising_bounds.py report` from `docs/ising/results/bounds-L*.json`.",
        "",
        COMMANDS,
        "",
        INTRO,
        "",
    ]
    for L, d in data.items():
        lines += [f"## L = {L}", "", _budget(d), ""] + _table(d) + [""]
    if 16 in data:
        lines += ["Quoted L = 16 relative errors (%), not recomputed:", ""]
        lines += ["| T | " + " | ".join(QUOTED_L16) + " |", "|---" * (1 + len(QUOTED_L16)) + "|"]
        for key in QUOTED_L16["VAN (van.md)"]:
            lines.append(f"| {key} | " + " | ".join(f"{v[key]:.2f}" for v in QUOTED_L16.values()) + " |")
        lines.append("")
    if 16 in data and "after_refit_r" in data[16]:
        a = data[16]["after_refit_r"][f"{T_C:.4f}"]
        met = "met" if a["relative_error"] + 2 * a["relative_stderr"] < 1e-3 else "not met"
        lines += [
            f"**Goal (L = 16, T_c, bound within 0.1% of the exact F): {met}** — "
            f"{100 * a['relative_error']:.3f} ± {100 * a['relative_stderr']:.3f}% after reverse-KL "
            f"fine-tuning, from {100 * data[16]['forward_kl'][f'{T_C:.4f}']['relative_error']:.3f}% before.",
            "",
        ]
        key = f"{T_C:.4f}"
        co = data[16]["after_cotrained_r"][key]
        lines += [
            f"With the co-trained r (no refit): {100 * co['relative_error']:.3f} ± "
            f"{100 * co['relative_stderr']:.3f}%.",
            "",
        ]
        for c in data[16].get("continued", []):
            before = {k: c["before"][k][key] for k in ("after_cotrained_r", "after_refit_r")}
            lines += [
                "Before the continuation at lr {lr} (`run --resume`): co-trained r {a:.3f} ± {sa:.3f}%, "
                "r refit {b:.3f} ± {sb:.3f}%.".format(
                    lr=c["lr"],
                    a=100 * before["after_cotrained_r"]["relative_error"],
                    sa=100 * before["after_cotrained_r"]["relative_stderr"],
                    b=100 * before["after_refit_r"]["relative_error"],
                    sb=100 * before["after_refit_r"]["relative_stderr"],
                ),
                "",
            ]
    lines += ["## What the numbers say", "", FINDINGS]
    (docs / "bounds.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None, help="write results/, runs/ and bounds.md under OUT instead")
    p.add_argument("--smoke", action="store_true", help="tiny sizes; needs --out")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--L", type=int, nargs="+", choices=sorted(FULL), default=sorted(FULL))
    r.add_argument(
        "--rkl-minutes", type=float, default=None, help="reverse-KL budget per L (default: FULL's rkl_min)"
    )
    r.add_argument("--rkl-batch", type=int, default=None, help="reverse-KL batch (default 100)")
    r.add_argument("--rkl-lr", type=float, default=None, help="reverse-KL learning rate (default 3e-4)")
    r.add_argument(
        "--resume",
        action="store_true",
        help="continue the reverse KL of a finished run from runs/.../reverse_kl.pt",
    )
    sub.add_parser("report")
    args = p.parse_args(argv)
    if args.smoke and args.out is None:
        p.error("--smoke needs --out DIR")
    docs = ROOT / "docs" / "ising" if args.out is None else Path(args.out)
    runs = ROOT / "runs" / "ising-bounds" if args.out is None else Path(args.out) / "runs"
    if args.cmd == "run":
        run(args, docs / "results", runs)
    else:
        report(docs)


if __name__ == "__main__":
    main()
