"""Stage 2 of a VQ-VAE: fitting the autoregressive prior over code maps to the training set's codes."""

from __future__ import annotations

import torch

from vaezoo.config import check_argument
from vaezoo.data import batches
from vaezoo.devices import module_device
from vaezoo.errors import ConfigError
from vaezoo.inference.vq_objective import quantizations
from vaezoo.inputs import check_data
from vaezoo.nets import evaluating


@torch.no_grad()
def code_maps(guide, data, batch_size: int = 500) -> torch.Tensor:
    """The guide's code map of every datapoint, ``(n, h, w)`` (eval mode: the codebook is not moved).

    Data binarized on the fly are binarized once here, so each image contributes one code map.

    :raises ConfigError: if the guide quantizes nothing or more than one site.
    """
    out = []
    for x in batches(data, batch_size, device=module_device(guide)):
        found = quantizations(guide, x)
        if len(found) != 1:
            raise ConfigError(f"code_maps needs a guide with one quantized site, {type(guide).__name__} has "
                              f"{len(found)}")
        out.append(found[0].codes)
    return torch.cat(out)


def code_nll(model, codes: torch.Tensor, batch_size: int = 500) -> float:
    """-log p(c) under the model's learned prior, in nats per code map, averaged over ``codes``."""
    total = 0.0
    with torch.no_grad(), evaluating(model):
        for c in codes.split(batch_size):
            total -= model.code_log_prob(c).sum().item()
    return total / len(codes)


def fit_code_prior(model, guide, train, *, epochs: int, batch_size: int = 100, lr: float = 1e-3,
                   seed: int = 0, test=None, verbose: bool = False) -> list[dict[str, float]]:
    """Fit the model's learned prior over code maps to the guide's codes of ``train``; return the history.

    Stage 2 of van den Oord et al. (2017): encoder, decoder and codebook stay fixed; the guide's code
    map of each training image (computed once, in eval mode) is the data of a maximum-likelihood fit
    of the prior, by Adam over ``epochs`` passes in batches of ``batch_size``. Afterwards the model's
    buffer ``prior_fitted`` is set, so its p(z) and every bound use the learned prior.

    The model provides ``prior`` (the module trained), ``code_log_prob(codes)`` (log p of code maps
    ``(n, h, w)`` under it, shape ``(n,)``) and the boolean buffer ``prior_fitted`` (the ``vqvae``
    model does). Each epoch records ``train_code_nll`` (mean over the epoch's batches, nats per map)
    and, with ``test``, ``test_code_nll`` of the test images' code maps.

    :raises ConfigError: for a bad argument, a model without a learned prior, or a guide without codes.
    """
    epochs = check_argument("epochs", epochs, int, min=1)
    batch_size = check_argument("batch_size", batch_size, int, min=1)
    lr = check_argument("lr", lr, float, above=0)
    if not all(hasattr(model, a) for a in ("prior", "code_log_prob", "prior_fitted")):
        raise ConfigError(f"fit_code_prior fits a model's prior over code maps, and {type(model).__name__} "
                          "has none (it needs prior, code_log_prob and prior_fitted); use a vqvae model")
    train = check_data(model, train, "train")
    codes = code_maps(guide, train)
    test_codes = code_maps(guide, check_data(model, test, "test")) if test is not None else None
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.prior.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        model.prior.train()
        total = 0.0
        for c in batches(codes, batch_size, shuffle=True, generator=order):
            optimizer.zero_grad(set_to_none=True)
            loss = -model.code_log_prob(c).mean()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(c)
        record = {"epoch": epoch + 1, "train_code_nll": total / len(codes)}
        if test_codes is not None:
            record["test_code_nll"] = code_nll(model, test_codes)
        history.append(record)
        if verbose:
            print(", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in record.items()))
    model.prior_fitted.fill_(True)
    return history
