import pytest

from mnist_jax.config import Config, load_config
from mnist_jax.errors import ConfigError


def test_file_overrides_defaults_and_flags_override_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('hidden = [64, 32]\nlr = 0.5\nbatch_size = "full"\n')
    config = load_config(path, {"lr": 0.25, "epochs": None})
    assert config.hidden == (64, 32)
    assert config.full_batch
    assert config.lr == 0.25  # the flag wins
    assert config.epochs == Config().epochs  # None flags are ignored


def test_unknown_key_names_the_closest_valid_one(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("learning_rat = 0.1\n")
    with pytest.raises(ConfigError, match="unknown config key 'learning_rat'"):
        load_config(path)
    (tmp_path / "d.toml").write_text("hiden = [3]\n")
    with pytest.raises(ConfigError, match="did you mean 'hidden'"):
        load_config(tmp_path / "d.toml")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lr": -0.1}, "lr must be a positive"),
        ({"lr": 0}, "lr must be a positive"),
        ({"epochs": 0}, "epochs must be a positive"),
        ({"batch_size": 0}, "batch_size must be a positive"),
        ({"batch_size": "half"}, "batch_size"),
        ({"hidden": [16, 0]}, "hidden sizes must be positive"),
        ({"hidden": [1.5]}, "hidden"),
        ({"activation": "relu6"}, "unknown activation 'relu6'"),
        ({"optimizer": "adamw"}, "unknown optimizer"),
        ({"optimizer": "lbfgs"}, "lbfgs"),
        ({"epochs": "ten"}, "epochs' must be an integer"),
        ({"momentum": 1.0}, "momentum"),
        ({"init_low": 1.0, "init_high": 0.0}, "init_low"),
    ],
)
def test_invalid_values_are_rejected_with_the_key_named(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config().replace(**changes)


def test_missing_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("hidden = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_round_trip_through_dict():
    config = Config(hidden=(7, 5), batch_size="full", optimizer="lbfgs", l2=0.1)
    assert Config().replace(**config.to_dict()) == config


def test_every_shipped_config_loads():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))
    assert configs
    for path in configs:
        assert load_config(path).name == path.stem
