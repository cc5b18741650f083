"""Devices: every model, its default guide and every objective run with no tensor left on the wrong
device; ``--device`` is checked before any work; checkpoints load on any device.

There is no GPU here, and the ``meta`` device cannot run a training step (``.item()``, Pyro's
validation and the estimators read values), so :class:`DeviceTrap` emulates a second device on the
CPU: it runs everything for real and tracks which tensors a CUDA run would have on the host.
"""

import sys
from pathlib import Path

import pyro.distributions as dist
import pytest
import torch
from test_contract import SMALL
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from vaezoo import checkpoint, devices
from vaezoo.errors import CheckpointError, ConfigError
from vaezoo.inference import ELBO, fit, log_likelihood
from vaezoo.inference.fit import make_optimizer, parameters
from vaezoo.models import VAE
from vaezoo.registry import GUIDES, MODELS, OBJECTIVES, build_guide, build_model, build_objective

HOST = "_made_on_host_at"
VAEZOO = str(Path(__file__).resolve().parents[1])


class StrayTensor(AssertionError):
    pass


def _caller() -> str:
    """``file:line`` of the innermost frame in this project, outside the trap (else any non-torch)."""
    frame, fallback = sys._getframe(2), None
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(VAEZOO):
            return f"{Path(name).relative_to(VAEZOO)}:{frame.f_lineno}"
        if fallback is None and "/torch/" not in name:
            fallback = f"{name}:{frame.f_lineno}"
        frame = frame.f_back
    return fallback or "?"


def _placed(func, args, kwargs) -> bool:
    """Whether the call says where its result lives (``device=``, ``.to(device)``, ``.cuda()``)."""
    if kwargs.get("device") is not None or func is torch.Tensor.cuda:
        return True
    if func is torch.Tensor.to:
        return any(isinstance(a, (torch.device, str, int)) for a in args[1:])
    return False


class DeviceTrap(TorchFunctionMode):
    """Run as if the modules and the data were on an accelerator, and catch every tensor that is not.

    Tensors that exist when the trap starts (parameters, buffers, the data) count as on the device.
    A tensor made inside without being told where (``torch.zeros(n)``, ``torch.tensor(0.5)``,
    ``dist.Normal(0.0, 1.0)``, ``x.cpu()``) is on the host: the default device, the CPU of a CUDA
    run. Results follow their inputs, ``.to(device)`` / ``device=`` place a result on the device. An
    operation that mixes a host tensor with a device tensor raises :class:`StrayTensor` naming where
    the host tensor was made, as CUDA would refuse it, with CUDA's exceptions: a 0-dim host tensor
    may meet device tensors, host tensors may index device tensors, and ``copy_`` crosses devices.
    """

    def __init__(self):
        super().__init__()
        self.strays: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is torch.Tensor.__getitem__:
            checked = [args[0]]
        elif func is torch.Tensor.__setitem__:
            checked = [args[0], args[2]]
        elif func is torch.Tensor.copy_:
            checked = [args[0]]  # copies cross devices; the result is the destination
        else:
            checked = tree_flatten((args, kwargs))[0]
        tensors = [t for t in checked if isinstance(t, torch.Tensor)]
        host = [t for t in tensors if hasattr(t, HOST)]
        if host and len(host) < len(tensors) and func is not torch.Tensor.to:
            big = [t for t in host if t.dim() > 0]
            if big:
                message = (
                    f"a tensor made on the host at {getattr(big[0], HOST)} meets the device's tensors "
                    f"in {getattr(func, '__name__', func)} at {_caller()}; make it with device= (or "
                    "x.new_*, *_like) so it follows the data"
                )
                self.strays.append(message)
                raise StrayTensor(message)
        targets = [a for a in args[1:] if isinstance(a, torch.Tensor)] if func is torch.Tensor.to else []
        to_device = _placed(func, args, kwargs) or any(not hasattr(t, HOST) for t in targets)
        to_host = func is torch.Tensor.cpu or any(hasattr(t, HOST) for t in targets)
        if (to_device or to_host) and args and out is args[0]:
            out = out.view_as(out)  # on a real second device the move makes a new tensor: so here
        if to_host or (not to_device and len(host) == len(tensors) and (host or not tensors)):
            where = getattr(host[0], HOST) if host else _caller()
            untouched = {id(t) for t in tensors if not hasattr(t, HOST)}
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and id(t) not in untouched:
                    setattr(t, HOST, where)
        elif to_device:
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and hasattr(t, HOST):
                    delattr(t, HOST)
        return out


def small_model(name: str):
    torch.manual_seed(0)
    model = build_model(name, SMALL[name])
    x = model.example_x(6)
    if model.binary_data:
        x = torch.bernoulli(torch.full_like(x, 0.4))
    return model, x


def run_on_trap(model, guide, objective, x) -> None:
    """One training step, the bound and a small IS estimate, all under the trap."""
    owners = [model, guide] + ([objective] if callable(getattr(objective, "parameters", None)) else [])
    optimizer = make_optimizer(parameters(*owners), 1e-3)
    with DeviceTrap() as trap:
        loss = objective.differentiable_loss(model, guide, x, progress=0.5)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(objective.bound(model, guide, x)).all()
    assert trap.strays == []


CASES = [(m, o) for m in MODELS.names() for o in OBJECTIVES.names()]


@pytest.mark.parametrize(("model_name", "objective_name"), CASES)
def test_model_default_guide_and_objective_keep_every_tensor_on_the_device(model_name, objective_name):
    model, x = small_model(model_name)
    guide = model.default_guide()
    objective = build_objective(objective_name)
    try:
        run_on_trap(model, guide, objective, x)
    except ConfigError as e:  # an objective that says why it cannot train this pair
        pytest.skip(str(e))


@pytest.mark.parametrize("guide_name", GUIDES.names())
def test_every_guide_keeps_every_tensor_on_the_device(guide_name):
    """Each guide once, with the first model it serves, under the ELBO and an IS estimate."""
    for name in MODELS.names():
        model, x = small_model(name)
        try:
            guide = build_guide(guide_name, model)
        except ConfigError:
            continue
        run_on_trap(model, guide, ELBO(), x)
        with DeviceTrap() as trap:
            assert torch.isfinite(log_likelihood(model, guide, x, k=4).per_datapoint).all()
        assert trap.strays == []
        return
    pytest.skip(f"no registered model is served by {guide_name}")


def test_score_function_with_a_learned_baseline_keeps_every_tensor_on_the_device():
    model, x = small_model("vae")
    objective = build_objective("score_function", {"baseline": "nvil"})
    run_on_trap(model, model.default_guide(), objective, x)


class StrayVAE(VAE):
    """A VAE whose prior is built the way a CUDA run must not: ``torch.zeros`` on the default device."""

    def z_dist(self, x):
        return dist.Normal(torch.zeros(x.shape[0], self.z_dim), 1.0).to_event(1)


def test_the_trap_catches_a_stray_tensor_in_a_model():
    model = StrayVAE(**SMALL["vae"])
    x = torch.bernoulli(torch.full((6, *model.x_shape), 0.4))
    with pytest.raises(StrayTensor, match=r"tests/test_devices.py:\d+.*make it with device="):
        run_on_trap(model, model.default_guide(), ELBO(), x)


def test_the_trap_allows_what_cuda_allows():
    x = torch.ones(3, 2)
    with DeviceTrap() as trap:
        y = x * torch.tensor(2.0) + torch.zeros(3, 2).to(x.device)  # a host scalar; a moved tensor
        y = y[torch.arange(2)] + x.new_zeros(2, 2) + torch.zeros_like(x[:2])
        with pytest.raises(StrayTensor):
            y + torch.ones(2)
    assert len(trap.strays) == 1


def test_fit_and_log_likelihood_keep_every_tensor_on_the_device(tmp_path):
    from vaezoo.loggers import CSVLogger

    model, x = small_model("lvae")
    guide = model.default_guide()
    with DeviceTrap() as trap:
        fit(
            model,
            guide,
            x,
            ELBO(),
            epochs=1,
            batch_size=3,
            test=x,
            out=tmp_path,
            progress=False,
            device="cpu",
            logger=CSVLogger(tmp_path),
        )
        log_likelihood(model, guide, x, k=5, batch_size=4, max_elements=2 * 36 * 4)
    assert trap.strays == []


# --- choosing a device ---------------------------------------------------------------------------


def test_auto_is_cuda_when_there_is_one_else_cpu():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert devices.resolve("auto").type == want
    assert devices.resolve(None).type == want
    assert devices.resolve("cpu") == torch.device("cpu")
    assert "cpu" in devices.available()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_config_error_naming_the_flag_and_what_is_available():
    with pytest.raises(ConfigError, match=r"--device cuda: CUDA is not available .*available here: cpu"):
        devices.resolve("cuda", "--device")


@pytest.mark.skipif(devices._mps_available(), reason="this machine has MPS")
def test_mps_without_mps_is_a_config_error():
    with pytest.raises(ConfigError, match="--device mps: MPS .* not available"):
        devices.resolve("mps", "--device")


@pytest.mark.parametrize("bad", ["gpu", "meta", "cuda:x"])
def test_a_device_vaezoo_cannot_run_on_is_refused(bad):
    with pytest.raises(ConfigError, match="auto, cpu, cuda, cuda:N, mps"):
        devices.resolve(bad, "--device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_fit_refuses_a_missing_device_before_any_work(tmp_path):
    model, x = small_model("vae")
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ConfigError, match="device cuda"):
        fit(model, model.default_guide(), x, ELBO(), epochs=1, out=tmp_path, device="cuda", progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


# --- checkpoints across devices ------------------------------------------------------------------


def _as_if_written_on_cuda(path: Path, monkeypatch) -> None:
    """Rewrite checkpoint ``path`` so its tensors are tagged ``cuda:0``, as torch.save on a GPU tags them."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        checkpoint.save(path, {k: v for k, v in payload.items() if k not in ("format", "version")})


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA to be a GPU-only file")
def test_a_checkpoint_written_on_a_gpu_restores_and_resumes_on_the_cpu(tmp_path, monkeypatch):
    model, x = small_model("vae")
    guide = model.default_guide()
    first = fit(model, guide, x, ELBO(), epochs=1, batch_size=3, out=tmp_path, progress=False)
    path = tmp_path / "checkpoint.pt"
    _as_if_written_on_cuda(path, monkeypatch)
    with pytest.raises(RuntimeError, match="CUDA"):  # the file really names a GPU: a plain load fails
        torch.load(path, weights_only=True)

    restored, restored_guide, _, _ = checkpoint.restore(path, device="cpu")
    assert devices.module_device(restored) == torch.device("cpu")
    for a, b in zip(model.state_dict().values(), restored.state_dict().values(), strict=True):
        assert torch.equal(a, b)

    model2, _ = small_model("vae")
    history = fit(
        model2,
        model2.default_guide(),
        x,
        ELBO(),
        epochs=2,
        batch_size=3,
        out=tmp_path,
        progress=False,
        device="cpu",
    )
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0] == first[0]


def test_restore_refuses_a_device_this_machine_lacks(tmp_path):
    model, x = small_model("vae")
    fit(model, model.default_guide(), x, ELBO(), epochs=1, out=tmp_path, progress=False)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        checkpoint.restore(tmp_path / "checkpoint.pt", device="cuda")
    with pytest.raises(CheckpointError):
        checkpoint.restore(tmp_path / "nothing.pt", device="cpu")


def test_the_studies_behind_gap_and_traverse_keep_every_tensor_on_the_device():
    """What ``vaezoo gap`` and ``vaezoo traverse`` run: IS, AIS, local guides and flows, layer grids."""
    from vaezoo.analysis.diagnostics import layer_grid
    from vaezoo.analysis.gap import amortization_gap

    model, x = small_model("hvae")
    guide = model.default_guide()
    with DeviceTrap() as trap:
        table = amortization_gap(
            model,
            guide,
            x[:2],
            is_k=4,
            ais_intermediate=3,
            ais_chains=2,
            local_steps=2,
            eval_k=3,
            flow_hidden=4,
        )
        for mode in ("resample", "traverse"):
            layer_grid(model, guide, x[:2], 1, 3, mode=mode, below="prior_mean")
    assert trap.strays == []
    assert len(table.to_dict()) > 0
