"""Config: presets, TOML files, dotted overrides, and the error messages for mistakes."""

import dataclasses

import pytest

from omnifuse.config import Config, from_dict, load_config, presets
from omnifuse.errors import OmnifuseError


def test_every_preset_loads_and_round_trips_through_toml(tmp_path):
    names = presets()
    assert {"cifar10-cnn", "imdb-lstm", "cifar10-imdb"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.name == name
        path = tmp_path / f"{name}.toml"
        path.write_text(cfg.to_toml())
        assert load_config(path) == cfg


def test_joint_preset_holds_both_branches():
    cfg = load_config("cifar10-imdb")
    assert cfg.data.sets == ("cifar10", "imdb")
    assert cfg.model.fusion == "attention"
    assert cfg.model.image.encoder == "cnn" and cfg.model.text.encoder == "rnn"


def test_dotted_overrides_parse_values():
    cfg = load_config(
        "cifar10-cnn",
        [
            "train.epochs=3",
            "train.learning_rate=1e-4",
            "model.fusion=attention",
            "model.image.cnn.filters=[8, 16]",
        ],
    )
    assert cfg.train.epochs == 3
    assert cfg.train.learning_rate == pytest.approx(1e-4)
    assert cfg.model.fusion == "attention"
    assert cfg.model.image.cnn.filters == (8, 16)
    assert dataclasses.is_dataclass(cfg) and isinstance(cfg, Config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 5


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(OmnifuseError) as err:
        load_config("cifar10-cnn", ["train.epochz=3"])
    message = str(err.value)
    assert "train.epochz" in message and "epochs" in message and "batch_size" in message


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[model]\nfusoin = 'concat'\n")
    with pytest.raises(OmnifuseError, match="model.fusoin.*mine.toml.*fusion"):
        load_config(path)


def test_wrong_type_names_key_expected_and_received(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('[train]\nepochs = "three"\n')
    with pytest.raises(OmnifuseError, match=r"Expected int for config key 'train.epochs'.*'three'"):
        load_config(path)
    with pytest.raises(OmnifuseError, match="Expected bool for config key 'model.image.augment'"):
        from_dict({"model": {"image": {"augment": 1}}})
    with pytest.raises(
        OmnifuseError, match="Expected a list of int for config key 'model.image.cnn.filters'"
    ):
        load_config("cifar10-cnn", ["model.image.cnn.filters=32"])


def test_bad_toml_and_unknown_preset(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[train\nepochs = 3\n")
    with pytest.raises(OmnifuseError, match="broken.toml"):
        load_config(path)
    with pytest.raises(OmnifuseError, match="cifar10-cnn"):  # the error lists the presets
        load_config("cifar-10-cnn")
    with pytest.raises(OmnifuseError, match="key=value"):
        load_config("cifar10-cnn", ["train.epochs"])
