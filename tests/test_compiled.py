"""CompiledLoss: the traced step gives the eager step's loss, gradients and buffer updates, draws fresh
noise, is cached per shape and config, and falls back to eager (with a warning) where it must."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule
from torch import nn

from vaezoo import ELBO, VAE, fit
from vaezoo.errors import ConfigError
from vaezoo.inference import IWAE, CompiledLoss, ScoreFunction, parameters
from vaezoo.registry import build_model

X_SHAPE = (1, 6, 6)


def vae():
    torch.manual_seed(0)
    model = VAE(x_shape=X_SHAPE, z_dim=3, hidden=(16,))
    return model, model.default_guide()


def lvae():
    torch.manual_seed(0)
    model = build_model("lvae", x_shape=X_SHAPE, z_dims=(4, 3, 2), hidden=(16, 8, 8))
    return model, model.default_guide()


def batch(n=8, seed=1):
    return torch.bernoulli(torch.rand(n, *X_SHAPE, generator=torch.Generator().manual_seed(seed)))


def run(step, model, guide, x, seed):
    """Loss, gradients (in ``parameters`` order) and buffers after one step from RNG state ``seed``,
    with the buffers restored afterwards so the next run starts from the same state."""
    params = parameters(model, guide)
    buffers = [*model.buffers(), *guide.buffers()]
    saved = [b.clone() for b in buffers]
    for p in params:
        p.grad = None
    torch.manual_seed(seed)
    loss = step(x)
    out = (loss.detach(), [p.grad for p in params], [b.clone() for b in buffers])
    for b, s in zip(buffers, saved, strict=True):
        b.copy_(s)
    for p in params:
        p.grad = None
    return out


def eager_step(objective, model, guide, progress):
    def step(x):
        loss = objective.differentiable_loss(model, guide, x, progress)
        loss.backward()
        return loss

    return step


def assert_same(a, b):
    # The fx graph replays the eager step's aten operators in the same order: equal up to float32 rounding.
    torch.testing.assert_close(a[0], b[0])
    assert [g is None for g in a[1]] == [g is None for g in b[1]]
    for ga, gb in zip(a[1], b[1], strict=True):
        if ga is not None:
            torch.testing.assert_close(ga, gb)
    for ba, bb in zip(a[2], b[2], strict=True):
        torch.testing.assert_close(ba, bb)


@pytest.mark.parametrize(
    "pair, objective, progress",
    [
        (vae, ELBO(), 1.0),
        (vae, IWAE(k=5), 1.0),
        (lvae, ELBO(kl_warmup=10.0), 3.0),  # batch norm in training mode, latent weight 0.3
    ],
    ids=["vae-elbo", "vae-iwae5", "lvae-elbo-warmup"],
)
def test_same_loss_gradients_and_buffers_as_eager(pair, objective, progress):
    model, guide = pair()
    x = batch()
    fast = CompiledLoss(objective, backend="fx")
    compiled = run(lambda x: fast.loss_and_grad(model, guide, x, progress), model, guide, x, seed=3)
    eager = run(eager_step(objective, model, guide, progress), model, guide, x, seed=3)
    assert fast.traces == 1 and fast.eager_reason(model, guide, x) is None
    assert_same(compiled, eager)
    if any(True for _ in model.buffers()):
        moved = [
            b
            for b, s in zip(compiled[2], [*model.buffers(), *guide.buffers()], strict=True)
            if b.is_floating_point() and not torch.equal(b, s)
        ]
        assert moved, "training-mode batch norm must update its running statistics in the graph"


def test_warmup_weight_is_an_input_not_a_constant():
    model, guide = lvae()
    objective = ELBO(kl_warmup=10.0)
    fast = CompiledLoss(objective, backend="fx")
    x = batch()
    for progress in (0.0, 2.5, 7.0, 12.0):  # latent weights 0, 0.25, 0.7, 1
        compiled = run(lambda x, p=progress: fast.loss_and_grad(model, guide, x, p), model, guide, x, seed=4)
        eager = run(eager_step(objective, model, guide, progress), model, guide, x, seed=4)
        assert_same(compiled, eager)
    assert fast.traces == 1


def test_fresh_noise_every_call():
    model, guide = vae()
    fast = CompiledLoss(ELBO(), backend="fx")
    x = batch()
    first = fast.loss_and_grad(model, guide, x)
    second = fast.loss_and_grad(model, guide, x)
    assert first.item() != second.item()


def test_cached_per_shape_and_mode():
    model, guide = vae()
    fast = CompiledLoss(ELBO(), backend="fx")
    fast.loss_and_grad(model, guide, batch(8))
    fast.loss_and_grad(model, guide, batch(8, seed=2))
    assert fast.traces == 1
    fast.loss_and_grad(model, guide, batch(5))
    assert fast.traces == 2
    guide.eval()
    fast.loss_and_grad(model, guide, batch(5))
    assert fast.traces == 3
    guide.train()
    fast.loss_and_grad(model, guide, batch(8))
    assert fast.traces == 3


def test_replaced_submodule_is_used():
    model, guide = vae()
    objective = ELBO()
    fast = CompiledLoss(objective, backend="fx")
    x = batch()
    fast.loss_and_grad(model, guide, x)
    old = guide.head
    old.weight.grad = old.bias.grad = None
    guide.head = nn.Linear(old.in_features, old.out_features)  # same shapes: the key alone cannot tell
    compiled = run(lambda x: fast.loss_and_grad(model, guide, x), model, guide, x, seed=7)
    eager = run(eager_step(objective, model, guide, float("inf")), model, guide, x, seed=7)
    assert_same(compiled, eager)
    assert old.weight.grad is None


class Branchy(PyroModule):
    """A model whose program depends on a value: which likelihood depends on the sign of a sum."""

    max_plate_nesting = 1

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2, 4)

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))
            loc = self.net(z)
            scale = 1.0 if loc.sum() > 0 else 2.0  # data-dependent Python control flow
            pyro.sample("x", dist.Normal(loc, scale).to_event(1), obs=x)


class BranchyGuide(PyroModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 2)

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.net(x), 1.0).to_event(1))


def test_data_dependent_control_flow_falls_back_to_eager():
    torch.manual_seed(0)
    model, guide, x = Branchy(), BranchyGuide(), torch.randn(6, 4)
    objective = ELBO()
    fast = CompiledLoss(objective, backend="fx")
    with pytest.warns(RuntimeWarning, match="runs eagerly.*cannot be traced"):
        compiled = run(lambda x: fast.loss_and_grad(model, guide, x), model, guide, x, seed=5)
    eager = run(eager_step(objective, model, guide, float("inf")), model, guide, x, seed=5)
    assert fast.traces == 0 and "cannot be traced" in fast.eager_reason(model, guide, x)
    assert_same(compiled, eager)


def test_objective_with_state_is_refused():
    model, guide = vae()
    fast = CompiledLoss(ScoreFunction(), backend="fx")
    with pytest.warns(RuntimeWarning, match="owns parameters or state"):
        loss = fast.loss_and_grad(model, guide, batch())
    assert torch.isfinite(loss) and fast.traces == 0


def test_unknown_backend():
    with pytest.raises(ConfigError, match="unknown backend 'xla'.*inductor"):
        CompiledLoss(ELBO(), backend="xla")


@pytest.mark.slow
@pytest.mark.parametrize("pair", [vae, lvae], ids=["vae", "lvae"])
def test_inductor_matches_eager_with_aten_random(pair):
    import torch._inductor.config as inductor_config

    model, guide = pair()
    x = batch()
    objective = ELBO(kl_warmup=10.0)
    fast = CompiledLoss(objective, backend="inductor")
    with inductor_config.patch(fallback_random=True):  # compiled with the eager random operators
        compiled = run(lambda x: fast.loss_and_grad(model, guide, x, 3.0), model, guide, x, seed=6)
    eager = run(eager_step(objective, model, guide, 3.0), model, guide, x, seed=6)
    # inductor fuses and reorders sums: float32 rounding of a ~30-nat loss and its gradients
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-5, atol=1e-4)
    for a, b in zip(compiled[1], eager[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(compiled[2], eager[2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fit_with_the_fx_graph_trains_as_the_eager_fit_does():
    # Same seeds, same batches, and the fx graph replays the eager step's random operators in order:
    # the two runs differ only by the order of float sums inside the traced backward.
    histories, weights = [], []
    for compile in (None, "fx"):
        model, guide = lvae()
        data = torch.cat([batch(16, seed=s) for s in range(3)])
        history = fit(
            model, guide, data, ELBO(kl_warmup=2), epochs=2, batch_size=16, progress=False, compile=compile
        )
        histories.append([h["train_loss"] for h in history])
        weights.append(parameters(model, guide))
    torch.testing.assert_close(torch.tensor(histories[1]), torch.tensor(histories[0]), rtol=1e-5, atol=0)
    for a, b in zip(*weights, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_fit_refuses_an_unknown_compile_backend_before_any_work():
    model, guide = vae()
    with pytest.raises(ConfigError, match="compile='jit' is not a backend; choose one of inductor, fx"):
        fit(model, guide, batch(), ELBO(), epochs=1, compile="jit")
