"""The public API: every registered entry is importable from its subpackage, and the registry views
(:func:`vaezoo.list_models`, :func:`vaezoo.list_guides`, :func:`vaezoo.list_objectives`) tell the truth."""

import dataclasses
import importlib
import inspect
import pkgutil

import pyro
import pytest
import torch
from test_contract import SMALL

import vaezoo
from vaezoo import ConfigError, analysis, guides, inference, ising, models, nets
from vaezoo.inference import Objective
from vaezoo.models import LatentVariableModel
from vaezoo.registry import GUIDES, MODELS, OBJECTIVES, build_guide, build_model, summary
from vaezoo.zoo_module import ZooModule

PACKAGES = [vaezoo, models, guides, inference, analysis, ising, nets]
# Where each kind of registered entry is exported, and the base class that marks one in the source.
HOMES = [
    (MODELS, models, LatentVariableModel),
    (GUIDES, guides, ZooModule),
    (OBJECTIVES, inference, Objective),
]


def exported(package) -> list:
    return [getattr(package, name) for name in package.__all__]


def defined_in(package) -> list:
    """(module, name, object) of every public class defined in a module of ``package``."""
    found = []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_"):
                found.append((module.__name__, name, obj))
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_name_in_all_exists_once(package):
    missing = [name for name in package.__all__ if not hasattr(package, name)]
    assert not missing, f"{package.__name__}.__all__ names what it does not define: {missing}"
    assert len(set(package.__all__)) == len(package.__all__), f"{package.__name__}.__all__ repeats a name"


def test_no_object_is_exported_by_two_subpackages():
    # One home per concept; the manual documents each subpackage's __all__, so an object exported by
    # two would be documented twice. (An alias within one subpackage, MarkovHVAEConfig, is fine.)
    homes: dict[int, str] = {}
    for package in PACKAGES[1:]:
        for name in package.__all__:
            obj = getattr(package, name)
            if inspect.ismodule(obj) or isinstance(obj, (int, float, str, tuple, dict)):
                continue
            other = homes.setdefault(id(obj), package.__name__)
            assert other == package.__name__, f"{package.__name__}.{name} is also exported by {other}"


@pytest.mark.parametrize(("registry", "package", "base"), HOMES, ids=lambda x: getattr(x, "kind", None))
def test_every_registered_entry_and_its_config_is_exported(registry, package, base):
    public = exported(package)
    for name in registry.names():
        entry = registry.get(name)
        assert any(obj is entry.factory for obj in public), (
            f"{registry.kind} {name!r} ({entry.factory.__name__}) is not in {package.__name__}.__all__"
        )
        assert any(obj is entry.config for obj in public), (
            f"config {entry.config.__name__} of {registry.kind} {name!r} is not in {package.__name__}.__all__"
        )


@pytest.mark.parametrize(("registry", "package", "base"), HOMES, ids=lambda x: getattr(x, "kind", None))
def test_every_model_guide_objective_class_and_config_is_exported(registry, package, base):
    # Registered or not (LocalNormal is a guide outside the registry): a class of the family, or a
    # config dataclass, defined in the subpackage is part of its API.
    public = exported(package)
    unexported = [
        f"{module}.{name}"
        for module, name, cls in defined_in(package)
        if (issubclass(cls, base) or (dataclasses.is_dataclass(cls) and name.endswith("Config")))
        and not any(obj is cls for obj in public)
    ]
    assert not unexported, f"add these to {package.__name__}.__all__: {unexported}"


def test_estimators_and_the_issues_examples_import_from_their_subpackage():
    from vaezoo.guides import HMCRefined, LocalNormal, SemiAmortized  # noqa: F401
    from vaezoo.inference import ais_log_likelihood  # noqa: F401

    estimators = {
        "log_likelihood",
        "LogLikelihood",
        "ais_log_likelihood",
        "AISLogLikelihood",
        "free_energy_bound",
        "FreeEnergyBound",
        "exact_bound",
        "exact_kl_l4",
        "mean_bound",
    }
    assert estimators <= set(inference.__all__)


@pytest.mark.parametrize(
    ("listing", "registry"),
    [(vaezoo.list_models, MODELS), (vaezoo.list_guides, GUIDES), (vaezoo.list_objectives, OBJECTIVES)],
)
def test_list_functions_show_the_registry(listing, registry):
    shown = listing()
    assert [e.name for e in shown] == registry.names()
    for e in shown:
        entry = registry.get(e.name)
        assert (e.factory, e.config) == (entry.factory, entry.config)
        assert e.summary and e.summary == summary(entry.factory) and "\n" not in e.summary
        assert e.summary.split()[:3] == inspect.getdoc(entry.factory).split()[:3]
        assert str(e).startswith(f"{e.name}: ")


def builds(guide: str, model) -> bool:
    try:
        build_guide(guide, model)
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("model_name", sorted(SMALL))
def test_guide_fit_agrees_with_building_the_guide(model_name):
    # The contract test skips a (model, guide) pair exactly when building raises ConfigError, on the
    # configs in SMALL; list_guides must say the same for that config and for the default config.
    model = build_model(model_name, SMALL[model_name])
    truth = {g for g in GUIDES.names() if builds(g, model)}
    assert truth, f"no guide serves {model_name}"
    assert {e.name for e in vaezoo.list_guides(model)} == truth
    assert {e.name for e in vaezoo.list_guides(model_name)} == truth
    assert {e.name for e in vaezoo.list_guides() if model_name in e.models} == truth
    assert all(e.models == (model_name,) for e in vaezoo.list_guides(model_name))


def test_guide_fit_follows_the_model_config():
    binary = vaezoo.list_guides(build_model("block_spin", SMALL["block_spin"]))
    continuous = vaezoo.list_guides(build_model("block_spin", SMALL["block_spin"], latent="continuous"))
    assert "block_rg" in {e.name for e in binary} and "block_rg" not in {e.name for e in continuous}


def test_list_guides_leaves_no_trace():
    model = build_model("hvae", SMALL["hvae"], z_dims=(3, 1))  # a config no other test has cached
    model(model.example_x(2))
    params, state = set(pyro.get_param_store().keys()), {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    vaezoo.list_guides(model)
    assert torch.equal(rng, torch.random.get_rng_state())
    assert set(pyro.get_param_store().keys()) == params
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
