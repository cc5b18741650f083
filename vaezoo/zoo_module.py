"""The base of every vaezoo model and guide: a PyroModule whose param statements vaezoo can skip.

Inside a call, a :class:`~pyro.nn.PyroModule` announces a plain ``nn.Module`` child with
``pyro.module`` (one ``param`` message per parameter) and a plain ``nn.Parameter`` with
``pyro.param``, on every attribute read. Pyro's ``SVI`` and ``pyro.optim`` need those messages:
they find the parameters to optimize in the param store. vaezoo's own training does not: ``fit``
optimizes ``module.parameters()`` with a torch optimizer and checkpoints ``state_dict()``. Each
message still travels through every handler on the stack (the particle and data plates, trace,
replay), about 15-20 us apiece; the Ladder VAE of Sønderby et al. reads 100 parameters per step
(benchmarks/step_time_hier.py measures what this costs).

:class:`ZooModule` behaves exactly like ``PyroModule`` except while :func:`param_statements_skipped`
is active: then plain children and parameters are returned directly, without the messages.
:func:`vaezoo.inference.traces.run_pair` enters it only when no Pyro handler is active outside it,
i.e. when nothing could be listening for the parameters (``SVI(loss=objective.loss)``
wraps the loss in a param-capturing trace, so it still sees every parameter). Pyro's own ELBOs never
enter it, so ``SVI`` with ``Trace_ELBO`` on a vaezoo model and guide works as with any PyroModule.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from pyro.nn import PyroModule
from pyro.poutine.runtime import am_i_wrapped

_SKIP: ContextVar[bool] = ContextVar("vaezoo_skip_param_statements", default=False)


@contextlib.contextmanager
def param_statements_skipped() -> Iterator[bool]:
    """Skip ZooModules' param statements inside, unless a Pyro handler outside may need them.

    Yields whether they are skipped: only when no handler is active at entry (``am_i_wrapped()`` is
    false), because a handler outside (``SVI``'s param capture, a user's ``poutine.trace``) is how
    Pyro finds parameters.
    """
    skip = not am_i_wrapped()
    token = _SKIP.set(skip or _SKIP.get())
    try:
        yield skip
    finally:
        _SKIP.reset(token)


class ZooModule(PyroModule):
    """A :class:`~pyro.nn.PyroModule` whose plain children and parameters can be read silently.

    PyroParams, PyroSamples and PyroModule children keep their Pyro semantics in every case: the
    shortcut covers only what ``PyroModule`` would merely announce (plain ``nn.Module`` children and
    plain ``nn.Parameter`` attributes), so skipping the announcement changes no value.
    """

    def __getattr__(self, name: str) -> Any:
        if _SKIP.get():
            found = self.__dict__["_modules"].get(name)
            if found is not None and not isinstance(found, PyroModule):
                return found
            found = self.__dict__["_parameters"].get(name)
            if found is not None and not name.endswith("_unconstrained"):
                return found
        return super().__getattr__(name)


__all__ = ["ZooModule", "param_statements_skipped"]
