"""vaezoo.distributions.bernoulli is Bernoulli(logits).to_event(n), only with a cheaper log_prob."""

import pyro.distributions as dist
import pytest
import torch

from vaezoo.distributions import IndependentBernoulli, bernoulli


def test_log_prob_and_gradient_equal_torch_bernoulli(float64):
    logits = torch.randn(3, 1, 4, 5, 6, requires_grad=True)
    x = torch.bernoulli(torch.full((4, 5, 6), 0.3))  # broadcasts against the logits' leading dims
    ours, theirs = bernoulli(logits, 2), dist.Bernoulli(logits=logits).to_event(2)
    assert ours.batch_shape == theirs.batch_shape == (3, 1, 4) and ours.event_shape == (5, 6)
    a, b = ours.log_prob(x), theirs.log_prob(x)
    assert a.shape == b.shape == (3, 1, 4)
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    (ga,) = torch.autograd.grad(a.sum(), logits)
    (gb,) = torch.autograd.grad(b.sum(), logits)
    assert torch.allclose(ga, gb, rtol=1e-12, atol=1e-12)


def test_expand_keeps_the_cheap_log_prob_and_samples_are_binary():
    d = bernoulli(torch.zeros(4, 5), 1).expand((2, 4))
    assert isinstance(d, IndependentBernoulli) and d.batch_shape == (2, 4)
    s = d.sample()
    assert s.shape == (2, 4, 5) and set(s.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(d.log_prob(s), torch.full((2, 4), 5 * torch.tensor(0.5).log().item()))


def test_non_binary_values_are_rejected_under_validation():
    with pytest.raises(ValueError, match="support"):
        bernoulli(torch.zeros(2, 3), 1).log_prob(torch.full((2, 3), 0.5))
