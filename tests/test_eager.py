"""train.eager: a training of a few steps runs them as Python calls instead of tracing a graph first, and learns the
same as the traced training."""

import csv

import keras
import pytest
from fixtures_tables import tiny_overrides, write_pets_table

import omnifuse
from omnifuse.config import Config
from omnifuse.model.compile import EAGER_STEPS, runs_eagerly


def _train(**more):
    return Config().replace({f"train.{key}": value for key, value in more.items()}).train


def test_auto_runs_eagerly_up_to_the_step_limit_and_never_under_xla_or_a_strategy():
    assert runs_eagerly(_train(epochs=2), EAGER_STEPS // 2)
    assert not runs_eagerly(_train(epochs=2), EAGER_STEPS // 2 + 1)
    # a resumed training counts the steps it has left
    assert not runs_eagerly(_train(epochs=3), EAGER_STEPS // 2)
    assert runs_eagerly(_train(epochs=3), EAGER_STEPS // 2, initial_epoch=1)
    assert not runs_eagerly(_train(epochs=1, eager="never"), 1)
    assert runs_eagerly(_train(epochs=50, eager="always"), 1000)
    assert not runs_eagerly(_train(epochs=1, eager="always", jit_compile=True), 1)
    assert not runs_eagerly(_train(epochs=1, eager="always", distribution="mirrored"), 1)


class _Mode(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.eager = self.model.run_eagerly


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    return write_pets_table(tmp_path_factory.mktemp("pets") / "pets.csv")


def _run(pets, root, eager):
    mode = _Mode()
    run = omnifuse.train(
        "table", tiny_overrides(pets, **{"train.eager": eager}), runs_root=root, callbacks=[mode]
    )
    # how the run trained is not saved with its model: loaded, it predicts through a traced graph
    assert keras.saving.load_model(run / "model.keras").run_eagerly is False
    return mode.eager, list(csv.DictReader((run / "metrics.csv").open())), omnifuse.load(run)


def test_an_eager_training_learns_what_the_traced_one_learns(pets, tmp_path):
    # the pets table's tiny run: 2 epochs of 3 steps
    eager, eager_rows, eager_model = _run(pets, tmp_path / "auto", "auto")
    traced, traced_rows, traced_model = _run(pets, tmp_path / "never", "never")
    assert eager and not traced
    for a, b in zip(eager_rows, traced_rows, strict=True):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-4)
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=1e-4)
    row = {"review": "purr meow soft nice", "age": 2.1, "color": "red"}
    assert eager_model.predict(**row)["tasks"]["species"]["probabilities"] == pytest.approx(
        traced_model.predict(**row)["tasks"]["species"]["probabilities"], abs=1e-5
    )


def test_inference_answers_eagerly_for_a_few_batches_then_through_one_traced_graph():
    import numpy as np
    import tensorflow as tf

    from omnifuse.inference import Inference

    words = keras.Input((), dtype="string", name="text")
    length = keras.layers.Lambda(
        lambda t: keras.ops.cast(keras.ops.expand_dims(tf.strings.length(t), -1), "float32"),
        output_shape=(1,),
    )(words)
    number = keras.Input((3,), name="number")
    out = keras.layers.Dense(2)(keras.layers.Concatenate()([length, number]))
    model = keras.Model({"text": words, "number": number}, out)
    # texts as a loader gives them: UTF-8 bytes and str in object arrays
    batch = {"text": np.array(["naïve café", b"caf\xc3\xa9"], object), "number": np.ones((2, 3), "float32")}
    run = Inference(model, eager=2)
    eager = [run(batch), run(batch)]
    assert model.predict_function is None, "no graph traced for the first batches"
    traced = run(batch)
    assert model.predict_function is not None
    for got in eager:
        np.testing.assert_allclose(got, traced, rtol=1e-6)
    np.testing.assert_allclose(run.many([batch, batch]), np.concatenate([traced, traced]), rtol=1e-6)

    served = Inference(model)  # a server: the graph from the first request
    served.trace_now()
    assert served(batch).shape == (2, 2) and served.calls > served.eager
