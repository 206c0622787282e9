"""Your own encoder: ``omnifuse.register_encoder`` makes any Keras layer a modality's encoder; the run trains,
saves, and loads again, in this process and in a fresh one that imports the user's module."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from fixtures_tables import tiny_overrides, write_pets_table

import omnifuse
from omnifuse import registry
from omnifuse.errors import OmnifuseError

MODULE = "omnifuse_test_user_encoders"  # the user's module, written by the test
SOURCE = textwrap.dedent(
    '''
    """A user's encoder of numbers and categories, registered with omnifuse when imported."""

    import dataclasses

    import keras
    from keras import ops

    import omnifuse


    @dataclasses.dataclass(frozen=True)
    class LinearConfig:
        """model.tabular.linear: one Dense-ReLU layer."""

        units: int = 8  # the output width


    class Linear(keras.layers.Layer):
        def __init__(self, units=8, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.dense = keras.layers.Dense(units, activation="relu")

        def call(self, x):
            return self.dense(ops.nan_to_num(ops.cast(x, "float32")))  # an empty cell is NaN

        def get_config(self):
            return {**super().get_config(), "units": self.units}


    omnifuse.register_encoder("numbers", "linear", Linear, LinearConfig)
    '''
)
ROWS = {"tabular": [{"age": 2.0, "color": "red"}, {"age": 9.0, "color": "blue"}], "review": ["purr", None]}


class _Keep(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        self.kept = self.model


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_encoder")
    (root / f"{MODULE}.py").write_text(SOURCE)
    sys.path.insert(0, str(root))
    try:
        __import__(MODULE)
        keep = _Keep()
        more = {"model.tabular.encoder": "linear", "model.tabular.linear.units": 4, "train.epochs": 1}
        more["track.tensorboard"] = False
        run = omnifuse.train(
            "table",
            tiny_overrides(write_pets_table(root / "pets.csv"), **more),
            runs_root=root,
            callbacks=[keep],
        )
        yield run, keep.kept, root
    finally:
        registry.unregister_encoder("numbers", "linear")
        sys.path.remove(str(root))
        sys.modules.pop(MODULE, None)


def test_a_registered_layer_trains_saves_and_loads_in_the_same_process(user_run):
    from omnifuse.config import read_run_config

    run, trained, _ = user_run
    assert read_run_config(run).model.tabular.linear.units == 4
    predictor = omnifuse.load(run, calibrated=False)
    encoder = predictor.model.get_layer("tabular_branch").encoder
    assert type(encoder).__name__ == "Linear" and encoder.units == 4
    feed = predictor.encode(batch=True, **ROWS)
    # one epoch: the saved (best) model is the trained one
    want = trained.predict_on_batch(feed)["species"]
    assert np.allclose(predictor.model.predict_on_batch(feed)["species"], want, atol=1e-6)


def test_a_fresh_process_loads_the_run_once_it_imports_the_user_s_module(user_run):
    run, _, root = user_run
    script = textwrap.dedent(
        f"""
        import json, sys
        from omnifuse import lean
        lean.setup()  # Keras imported as the command line imports it: without integrations unused here
        import omnifuse
        try:
            omnifuse.load({str(run)!r})
        except omnifuse.OmnifuseError as exc:
            print("ERROR", exc)
        sys.path.insert(0, {str(root)!r})
        import {MODULE}
        answers = omnifuse.load({str(run)!r}).predict(batch=True, **{ROWS!r})
        print("ANSWERS", json.dumps(answers))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in done.stdout.splitlines() if " " in line}
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Expected the encoder class 'Linear' (from module 'omnifuse_test_user_encoders')" in lines["ERROR"]
    here = omnifuse.load(run).predict(batch=True, **ROWS)
    there = json.loads(lines["ANSWERS"])
    for a, b in zip(here, there):
        for c, p in a["tasks"]["species"]["probabilities"].items():
            assert b["tasks"]["species"]["probabilities"][c] == pytest.approx(p, abs=1e-6)


def test_register_encoder_says_what_it_expected():
    class Plain(keras.layers.Layer):
        pass

    with pytest.raises(OmnifuseError, match="Expected a modality kind in image, text, audio, numbers"):
        omnifuse.register_encoder("video", "x", Plain)
    with pytest.raises(OmnifuseError, match="Expected a new encoder name for kind 'image'. Received: 'cnn'"):
        omnifuse.register_encoder("image", "cnn", Plain)
    with pytest.raises(OmnifuseError, match="Received: 'encoder'"):
        omnifuse.register_encoder("image", "encoder", Plain)
    with pytest.raises(OmnifuseError, match="Expected a keras.layers.Layer subclass"):
        omnifuse.register_encoder("image", "mine", dict)
    with pytest.raises(OmnifuseError, match="for config key 'model.image.encoder'"):
        omnifuse.load_config("cifar10-cnn", ["model.image.encoder=mine"])
