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
