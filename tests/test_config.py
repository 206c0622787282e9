"""Config: presets, TOML files, dotted overrides, and the error messages for mistakes."""

import dataclasses
import inspect
import typing

import pytest
from cli_lines import run_lines

from omnifuse import config
from omnifuse.config import Config, from_dict, load_config, presets
from omnifuse.encoders import image as image_encoders
from omnifuse.encoders import sections
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


# ------------------------------------------------------------------------------------------------ fixed choices


def _choice_keys(cls=Config, prefix=""):
    """(dotted key, annotation) of every key whose valid values are a fixed set, found from the dataclasses."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        key, tp = f"{prefix}.{f.name}" if prefix else f.name, hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _choice_keys(tp, key)
        elif config._has_choices(tp):
            yield key, tp


CHOICE_KEYS = dict(_choice_keys())


def _bad_value(tp) -> tuple[str, tuple]:
    """An override text with a wrong choice for ``tp``, and the valid values the error must list."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return '"rnn+bogus"', args[1].choices
    if origin is tuple:
        return '["bogus"]', typing.get_args(args[0])
    if origin is dict:
        return '{col = "bogus"}', typing.get_args(args[1])
    return ("7" if isinstance(args[0], int) else '"bogus"'), args


def test_the_choice_keys_are_found():
    expected = {
        "data.sets",
        "data.degrade",
        "data.kinds",
        "model.fusion",
        "model.image.encoder",
        "model.image.fastnet.tta",
        "model.text.encoder",
        "model.text.rnn.cell",
        "model.text.rnn.pooling",
        "model.text.nb.fit",
        "model.audio.encoder",
        "model.tabular.encoder",
        "train.optimizer",
        "train.schedule",
        "train.class_weight",
        "train.precision",
        "train.verbose",
        "train.distribution",
    }
    assert expected <= set(CHOICE_KEYS)


@pytest.mark.parametrize("key", sorted(CHOICE_KEYS))
def test_a_wrong_choice_names_key_value_and_valid_values(key):
    text, valid = _bad_value(CHOICE_KEYS[key])
    with pytest.raises(OmnifuseError) as err:
        load_config("cifar10-cnn", [f"{key}={text}"])
    message = str(err.value)
    assert key in message and ("bogus" in message or "7" in message)
    assert all(repr(v) in message for v in valid)


def test_choices_are_checked_in_files_and_in_python(tmp_path):
    path = tmp_path / "cell.toml"
    path.write_text('[model.text.rnn]\ncell = "lstn"\n')
    with pytest.raises(
        OmnifuseError, match=r"'lstm', 'gru' for config key 'model.text.rnn.cell' in .*cell.toml"
    ):
        load_config(path)
    from omnifuse.config import ModelConfig, TextConfig, TrainConfig

    with pytest.raises(OmnifuseError, match="model.text.encoder.*Received: 'nbsvm' in 'rnn\\+nbsvm'"):
        Config(model=ModelConfig(text=TextConfig(encoder="rnn+nbsvm")))
    with pytest.raises(OmnifuseError, match="train.optimizer"):
        dataclasses.replace(Config(), train=TrainConfig(optimizer="adm"))
    # a bool is not the verbosity 1, a float not the tta 1
    with pytest.raises(OmnifuseError, match="train.verbose"):
        load_config("cifar10-cnn", ["train.verbose=true"])
    with pytest.raises(OmnifuseError, match="model.image.fastnet.tta"):
        load_config("cifar10-cnn", ["model.image.fastnet.tta=1.0"])
    assert load_config("cifar10-cnn", ["model.text.encoder=rnn+nb"]).model.text.encoder == "rnn+nb"


def test_data_split_is_official_or_one_speaker_left_out():
    assert load_config("fsdd", ["data.split=loso:theo"]).data.split == "loso:theo"
    for bad in ("loso:", "random"):
        with pytest.raises(OmnifuseError, match="'official' or 'loso:<speaker>' for config key 'data.split'"):
            load_config("fsdd", [f"data.split={bad}"])


def test_choice_lists_match_what_they_name():
    from omnifuse.data import catalog, table

    assert typing.get_args(config.ColumnKind) == table.KINDS
    assert typing.get_args(config.DataSetName) == tuple(catalog.LOADERS)
    from omnifuse.distributed import DISTRIBUTIONS

    hints = typing.get_type_hints(config.TrainConfig)
    assert typing.get_args(hints["distribution"]) == DISTRIBUTIONS


def test_encoder_tables_name_the_same_encoders_and_layers_load_on_first_use():
    import keras

    from omnifuse import registry
    from omnifuse.encoders import audio, image, numbers, text

    for kind, section in ((image, "image"), (text, "text"), (audio, "audio"), (numbers, "tabular")):
        assert list(kind.CONFIGS) == list(kind.LAYERS) == list(kind.ENCODERS)
        assert all(issubclass(cls, keras.layers.Layer) for cls in kind.ENCODERS.values())
        fields = [f.name for f in dataclasses.fields(getattr(config, f"{section.title()}Config"))]
        assert fields[-len(kind.CONFIGS) :] == list(kind.CONFIGS)  # one section per encoder
    assert text.TextRNN is text.ENCODERS["rnn"]
    assert typing.get_args(config.Fusion) == tuple(registry.FUSIONS)


def test_a_new_encoder_is_one_table_line():
    @dataclasses.dataclass(frozen=True)
    class TinyConfig:
        """model.image.tiny: a test encoder."""

        width: int = 4  # the output width

    table = {**image_encoders.CONFIGS, "tiny": TinyConfig}
    cls = sections._with_encoder_sections("ImageConfig", sections._ImageKeys, table)
    built = config._build(cls, {"tiny": {"width": 8}}, "model.image", "")
    assert built.tiny == TinyConfig(8) and built.cnn == image_encoders.CONFIGS["cnn"]()
    field = {f.name: f for f in dataclasses.fields(cls)}["tiny"]
    assert field.metadata["doc"] == "model.image.tiny: a test encoder."


def _comment(cls, name: str) -> str:
    """The comment of field ``name`` of the dataclass ``cls``: on its line or the line above, or its metadata."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if "doc" in f.metadata:
        return f.metadata["doc"]
    owner = next(c for c in cls.__mro__ if name in c.__dict__.get("__annotations__", {}))
    lines = inspect.getsource(owner).splitlines()
    i = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{name}:"))
    after = lines[i].split("#", 1)[1] if "#" in lines[i] else ""
    above = lines[i - 1].strip()
    return after.strip() or (above[1:].strip() if above.startswith("#") else "")


def _sections(cls=Config):
    yield cls
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _sections(tp)


def test_every_config_field_has_a_comment():
    missing = [
        f"{cls.__name__}.{f.name}"
        for cls in _sections()
        for f in dataclasses.fields(cls)
        if not _comment(cls, f.name)
    ]
    assert missing == []


# ----------------------------------------------------------------------------------------- through the CLI


def _line(*args: str) -> tuple[str, ...]:
    return ("train", "cifar10-cnn", *args)


WRONG_TYPES = [
    ("model.text.rnn.celll=gru", "Unknown config key 'model.text.rnn.celll'"),
    ("train.epochs=three", "Expected int for config key 'train.epochs'"),
]


@pytest.fixture(scope="module")
def cli(request):
    """Every command line of the tests below, answered by the command line's main() in one fresh interpreter
    (tests/cli_lines.py: its exit code, stderr, and whether TensorFlow was loaded after it)."""
    lines = [_line("--set", f"{key}={_bad_value(tp)[0]}") for key, tp in sorted(CHOICE_KEYS.items())]
    lines += [_line("--set", override) for override, _ in WRONG_TYPES]
    lines.append(_line("--set", "model.text.rnn.cell=lstn"))
    return run_lines([list(line) for line in lines])


@pytest.mark.parametrize("key", sorted(CHOICE_KEYS))
def test_cli_rejects_a_wrong_choice_with_exit_2_and_one_line(cli, key):
    text, valid = _bad_value(CHOICE_KEYS[key])
    done = cli[_line("--set", f"{key}={text}")]
    assert done["code"] == 2, done["stderr"]
    assert "Traceback" not in done["stderr"] and done["stderr"].count("\n") == 1
    assert key in done["stderr"] and all(repr(v) in done["stderr"] for v in valid)


@pytest.mark.parametrize("override, expected", WRONG_TYPES)
def test_cli_rejects_unknown_keys_and_wrong_types(cli, override, expected):
    done = cli[_line("--set", override)]
    assert done["code"] == 2 and expected in done["stderr"] and "Traceback" not in done["stderr"]


def test_a_config_mistake_is_reported_before_tensorflow_is_imported(cli):
    done = cli[_line("--set", "model.text.rnn.cell=lstn")]
    assert done["code"] == 2 and "'lstm'" in done["stderr"], done
    assert not done["tensorflow"] and not done["keras"]
    # nor by any mistake answered before it in the same interpreter
    assert not any(d["tensorflow"] or d["keras"] for d in cli.values())
