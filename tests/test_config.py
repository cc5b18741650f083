"""Typed configs, the registry and CLI flags generated from them."""

import argparse

import pytest

from vaezoo import VAE, ConfigError, build_model
from vaezoo.cli import TrainConfig
from vaezoo.config import add_flags, from_args, from_dict
from vaezoo.models.vae import VAEConfig
from vaezoo.registry import GUIDES, MODELS, OBJECTIVES


def test_unknown_key_lists_valid_ones():
    with pytest.raises(
        ConfigError, match=r"unknown config key\(s\) \['z_dims'\].*valid keys are: x_shape, z_dim"
    ):
        VAE(z_dims=3)


def test_unknown_model_name_lists_registered_ones():
    with pytest.raises(ConfigError, match=r"unknown model 'vea'; registered models are: .*vae"):
        build_model("vea")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("z_dim", "ten", "must be int"), ("activation", "sigmoid", "must be one of"), ("z_dim", 2.5, "integer")],
)
def test_bad_values_are_rejected(key, value, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(VAEConfig, {key: value})


def test_values_are_coerced_from_json_forms():
    cfg = from_dict(VAEConfig, {"hidden": [10, 20], "x_shape": [1, 4, 4]})
    assert cfg.hidden == (10, 20) and cfg.x_shape == (1, 4, 4)
    assert VAE(cfg).config == VAE(hidden=[10, 20], x_shape=[1, 4, 4]).config


def test_flags_are_dashed_and_roundtrip():
    parser = argparse.ArgumentParser()
    add_flags(parser, VAEConfig)
    args = parser.parse_args(["--z-dim", "7", "--hidden", "30", "40", "--activation", "relu"])
    cfg = from_args(VAEConfig, args, x_shape=(1, 28, 28))
    assert (cfg.z_dim, cfg.hidden, cfg.activation) == (7, (30, 40), "relu")
    assert from_args(VAEConfig, parser.parse_args([])) == VAEConfig(), (
        "unset flags must keep dataclass defaults"
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--x-shape", "3"])  # decided by the data set, so it has no flag


def test_bool_flags_have_negations():
    parser = argparse.ArgumentParser()
    add_flags(parser, TrainConfig)
    assert from_args(TrainConfig, parser.parse_args(["--no-resume"])).resume is False


def test_objective_flags_do_not_collide_with_training_or_model_flags():
    # Objective fields are unprefixed on the command line, so a clash would silently merge two settings.
    import dataclasses

    train = {f.name for f in dataclasses.fields(TrainConfig)}
    for objective in OBJECTIVES.names():
        fields = {f.name for f in dataclasses.fields(OBJECTIVES.get(objective).config)}
        assert not fields & train, (objective, fields & train)
        for model in MODELS.names():
            assert not fields & {f.name for f in dataclasses.fields(MODELS.get(model).config)}, (
                objective,
                model,
            )


def test_every_registered_thing_has_a_dataclass_config():
    import dataclasses

    for registry in (MODELS, GUIDES, OBJECTIVES):
        for name in registry.names():
            assert dataclasses.is_dataclass(registry.get(name).config), (registry.kind, name)


def _every_config():
    from vaezoo.cli.evaluate import EvalConfig, SampleConfig
    from vaezoo.cli.study import GapConfig, TraverseConfig

    yield from (TrainConfig, EvalConfig, SampleConfig, GapConfig, TraverseConfig)
    for registry in (MODELS, GUIDES, OBJECTIVES):
        for name in registry.names():
            yield registry.get(name).config


def test_every_numeric_field_declares_what_it_accepts():
    import dataclasses
    import typing

    from vaezoo.config import CONSTRAINTS

    bounds = {"min", "max", "above", "below"}
    for cls in _every_config():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert set(f.metadata) <= {*CONSTRAINTS, "help", "cli"}, (cls.__name__, f.name)
            element = typing.get_args(hints[f.name])[:1]
            if hints[f.name] in (int, float) or element in ((int,), (float,)):
                assert bounds & set(f.metadata), f"{cls.__name__}.{f.name} declares no range"


def test_constraints_are_stated_in_the_message_and_the_help():
    from vaezoo.config import check_argument

    with pytest.raises(ConfigError, match=r"'z_dim' = 0 is not allowed: must be an integer >= 1"):
        from_dict(VAEConfig, {"z_dim": 0})
    with pytest.raises(ConfigError, match=r"argument 'k' = 2.5 is not allowed: must be an integer"):
        check_argument("k", 2.5, int, min=1)
    assert check_argument("lr", 1, float, above=0) == 1.0
    parser = argparse.ArgumentParser()
    add_flags(parser, TrainConfig)
    assert "(allowed: an integer >= 0 (0: all))" in " ".join(parser.format_help().split())
    args = parser.parse_args(["--lr", "nan"])
    with pytest.raises(ConfigError, match=r"^--lr nan: must be a finite number > 0$"):
        from_args(TrainConfig, args)
