"""The training step: image augmentation XLA can compile, the modality-skip conditional only where it pays, and a
clear error where ``train.jit_compile`` cannot apply."""

import keras
import numpy as np
import pytest
from keras import layers, ops
from keras_steps import fit_once

from omnifuse.config import load_config
from omnifuse.encoders.image.augment import ImageAugment, _translated
from omnifuse.errors import OmnifuseError
from omnifuse.model.branch import ModalityBranch
from omnifuse.model.builder import build_model
from omnifuse.model.compile import compile_model

CLASSES = {"cifar10": [str(i) for i in range(10)]}
SMALL_RESNET = [
    "model.image.encoder=resnet",
    "model.image.resnet.widths=[4, 8]",
    "model.image.resnet.dense_units=8",
    "model.fusion_dim=8",
    "train.optimizer=adam",
    "train.schedule=constant",
]


def _images(n=3, size=8, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 2)).astype("float32")


def test_whole_pixel_translation_is_a_window_of_the_mirrored_image():
    x = _images()
    shifts = [(2, 0), (-1, 3), (0, -2)]
    ty, tx = (np.array(s, "float32") for s in zip(*shifts))
    y = ops.convert_to_numpy(_translated(x, ty, tx, 0.5))
    mirrored = np.pad(x, [[0, 0], [8, 8], [8, 8], [0, 0]], mode="symmetric")
    for b, (dy, dx) in enumerate(shifts):
        np.testing.assert_array_equal(y[b], mirrored[b, 8 - dy : 16 - dy, 8 - dx : 16 - dx])


def test_fractional_translation_interpolates_and_matches_keras_random_translation():
    x = _images()
    half = ops.convert_to_numpy(_translated(x, np.full(3, 0.5, "float32"), np.zeros(3, "float32"), 0.25))
    mirrored = np.pad(x, [[0, 0], [1, 1], [0, 0], [0, 0]], mode="symmetric")
    np.testing.assert_allclose(half, 0.5 * (mirrored[:, 1:9] + mirrored[:, :8]), atol=1e-6)
    # Keras's layer with its range pinned to one value: rows down by 0.25 of 8 = 2 pixels, columns left by 1.5
    fixed = layers.RandomTranslation((0.25, 0.25), (-0.1875, -0.1875), fill_mode="reflect")
    expected = ops.convert_to_numpy(fixed(x, training=True))
    ours = _translated(x, np.full(3, 2.0, "float32"), np.full(3, -1.5, "float32"), 0.25)
    np.testing.assert_allclose(ops.convert_to_numpy(ours), expected, atol=1e-5)


def test_image_augment_flips_and_shifts_in_training_only_and_is_seeded():
    x = np.repeat(_images(1, 16), 64, axis=0)
    augment = ImageAugment(translate=0.125, seed=3)
    np.testing.assert_array_equal(ops.convert_to_numpy(augment(x, training=False)), x)  # floats pass through
    out = ops.convert_to_numpy(augment(x, training=True))
    assert out.shape == x.shape
    changed = np.abs(out - x).reshape(len(x), -1).max(axis=1) > 1e-6
    assert 0.8 < changed.mean() <= 1.0  # almost every copy moved or flipped
    assert len({o.tobytes() for o in out.round(5)}) > 32  # and not all the same way
    again = ImageAugment(translate=0.125, seed=3)
    np.testing.assert_array_equal(ops.convert_to_numpy(again(x, training=True)), out)
    restored = ImageAugment.from_config(augment.get_config())
    assert (restored.flip, restored.translate, restored.seed) == (True, 0.125, 3)
    with pytest.raises(ValueError, match="translate in"):
        ImageAugment(translate=1.5)


def test_image_augment_interpolates_uint8_pixels():
    x = np.zeros((1, 8, 8, 1), "uint8")
    x[:, ::2] = 200  # stripes: a half-pixel vertical shift averages neighbouring rows
    augment = ImageAugment(flip=False, translate=0.125)
    assert keras.backend.standardize_dtype(augment(x, training=False).dtype) == "float32"
    out = ops.convert_to_numpy(augment(np.repeat(x, 16, axis=0), training=True))
    assert np.logical_and(out > 1, out < 199).any()  # values between the two stripes' levels


def test_image_augment_compiles_with_xla():
    import tensorflow as tf

    augment = ImageAugment(translate=0.125, seed=0)
    x = _images(4, 16)
    out = tf.function(lambda v: augment(v, training=True), jit_compile=True)(x)
    assert tuple(out.shape) == x.shape and np.isfinite(ops.convert_to_numpy(out)).all()


def _branches(model):
    return [layer for layer in model.layers if isinstance(layer, ModalityBranch)]


def test_one_modality_runs_its_encoder_unconditionally_several_skip_absent_ones():
    one = build_model(load_config("cifar10-cnn").replace(SMALL_RESNET), {"image": "image"}, CLASSES)
    assert [b.skip_absent for b in _branches(one)] == [False]
    assert isinstance(_branches(one)[0].preprocess, ImageAugment)
    numbers = {"vitals": np.random.default_rng(0).random((20, 3)).astype("float32")}
    modalities = {"image": "image", "vitals": "numbers"}
    cfg = load_config("cifar10-cnn").replace(SMALL_RESNET)
    two = build_model(cfg, modalities, CLASSES, numbers=numbers)
    assert [b.skip_absent for b in _branches(two)] == [True, True]
    xla = build_model(cfg.replace(["train.jit_compile=true"]), modalities, CLASSES, numbers=numbers)
    assert [b.skip_absent for b in _branches(xla)] == [False, False]
    branch = ModalityBranch.from_config(_branches(one)[0].get_config())
    assert branch.skip_absent is False


def test_lazy_optimizer_only_where_a_batch_can_miss_a_modality_or_task():
    from omnifuse.optimizers import LazyAdam

    cfg = load_config("cifar10-cnn").replace(SMALL_RESNET)
    numbers = {"vitals": np.random.default_rng(0).random((20, 3)).astype("float32")}

    def optimizer(modalities, tasks, settings=()):
        c = cfg.replace(list(settings))
        model = build_model(c, modalities, tasks, numbers=numbers)
        compile_model(model, c, list(tasks), steps_per_epoch=2)
        return model.optimizer

    one = optimizer({"image": "image"}, CLASSES)
    assert isinstance(one, keras.optimizers.Adam) and not isinstance(one, LazyAdam)
    assert isinstance(optimizer({"image": "image", "vitals": "numbers"}, CLASSES), LazyAdam)
    assert isinstance(optimizer({"image": "image"}, {**CLASSES, "coarse": ["a", "b"]}), LazyAdam)
    two_off = optimizer({"image": "image", "vitals": "numbers"}, CLASSES, ["train.lazy_updates=false"])
    assert not isinstance(two_off, LazyAdam)


def test_branch_without_skip_encodes_a_batch_that_lacks_the_modality():
    from omnifuse.encoders.numbers import TabularMLP

    x = np.random.default_rng(0).random((4, 3)).astype("float32")
    encoder = TabularMLP(units=(5,), dropout=0.0)
    encoder.adapt(x)
    absent = np.zeros(4, "float32")
    assert np.all(ops.convert_to_numpy(ModalityBranch(encoder)([x, absent])) == 0)
    assert np.any(ops.convert_to_numpy(ModalityBranch(encoder, skip_absent=False)([x, absent])) != 0)


def test_jit_compile_trains_a_resnet_with_augmentation():
    cfg = load_config("cifar10-cnn").replace(
        [*SMALL_RESNET, "model.image.augment=true", "train.jit_compile=true"]
    )
    keras.utils.set_random_seed(0)
    model = build_model(cfg, {"image": "image"}, CLASSES)
    compile_model(model, cfg, ["cifar10"], steps_per_epoch=2)
    assert model.jit_compile is True  # Keras kept it: every layer supports XLA
    rng = np.random.default_rng(0)
    x = {"image": rng.integers(0, 255, (8, 32, 32, 3)).astype("uint8"), "image_mask": np.ones(8, "float32")}
    # the step traced (and compiled) once, as omnifuse's training does: Keras alone traces it twice
    history = fit_once(model, x, {"cifar10": rng.integers(0, 10, 8)}, batch_size=8)
    assert np.isfinite(history.history["loss"][0])


def test_jit_compile_names_the_layers_xla_cannot_compile():
    cfg = load_config("imdb-bigru").replace(
        [
            "model.text.vocab_size=50",
            "model.text.sequence_length=8",
            "model.text.rnn.units=4",
            "model.text.rnn.embed_dim=4",
            "model.text.rnn.conv_filters=0",
            "train.jit_compile=true",
        ]
    )
    model = build_model(cfg, {"text": "text"}, {"sentiment": ["neg", "pos"]}, texts=["good film", "bad film"])
    with pytest.raises(OmnifuseError, match=r"TextVectorization.*train.jit_compile = false"):
        compile_model(model, cfg, ["sentiment"], steps_per_epoch=1)


def test_building_before_fit_traces_the_training_step_once(monkeypatch):
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    from omnifuse import keras_compat

    traces = []
    step = TensorFlowTrainer.train_step
    monkeypatch.setattr(
        TensorFlowTrainer, "train_step", lambda self, data: traces.append(1) or step(self, data)
    )
    # a numbers model: the count does not depend on the encoder, and its step traces in a fifth of the image
    # models' time (test_cli_e2e's test_the_training_step_is_traced_once_for_all_epochs counts an image and text
    # training's traces)
    cfg = load_config("cifar10-cnn").replace(SMALL_RESNET)
    rng = np.random.default_rng(0)
    numbers = {"vitals": rng.random((8, 3)).astype("float32")}
    x = {**numbers, "vitals_mask": np.ones(8, "float32")}
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, {"cifar10": rng.integers(0, 10, 8)})).batch(4)
    counts = []
    for build_first in (False, True):
        traces.clear()
        model = build_model(cfg, {"vitals": "numbers"}, CLASSES, numbers=numbers)
        compile_model(model, cfg, ["cifar10"], steps_per_epoch=2)
        if build_first:
            keras_compat.build_before_fit(model, data.element_spec)
        model.fit(data, epochs=2, verbose=0)
        counts.append(len(traces))
    assert counts == [2, 1]  # Keras alone: a trace that creates the optimizer's variables, then one without


def test_building_before_fit_leaves_trainers_that_build_in_fit_alone():
    from omnifuse import keras_compat

    class JaxLikeTrainer:  # Keras's JAX and PyTorch trainers: no _distribute_strategy; fit builds the state itself
        def _symbolic_build(self, data_batch=None):
            raise AssertionError("built before fit where fit builds")

    keras_compat.build_before_fit(JaxLikeTrainer(), None)


def test_building_before_fit_does_not_run_a_functional_model_s_layers(monkeypatch):
    # the loss, metrics and optimizer are built from the model's output KerasTensors: no layer is called (Keras
    # alone traces the whole forward pass for them); a layer still unbuilt whose build makes weights is built by
    # Keras's own way, with the forward pass, so that the optimizer gets its weights
    from omnifuse import keras_compat

    calls = []

    class Counted(layers.Dense):
        def call(self, x):
            calls.append(1)
            return super().call(x)

    class Lazy(layers.Layer):  # its sub-layer is built only when the layer runs
        def __init__(self):
            super().__init__()
            self.inner = layers.Dense(3)

        def build(self, shape):
            pass

        def call(self, x):
            return self.inner(x)

        def compute_output_spec(self, x):
            return keras.KerasTensor((*x.shape[:-1], 3))

    import tensorflow as tf

    spec = (tf.TensorSpec((None, 4), "float32"), tf.TensorSpec((None,), "int64"))
    for lazy in (False, True):
        inputs = keras.Input((4,))
        hidden = Counted(5)(inputs)
        model = keras.Model(inputs, layers.Dense(3)(Lazy()(hidden) if lazy else hidden))
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        calls.clear()
        keras_compat.build_before_fit(model, spec)
        assert len(calls) == lazy  # called once: the forward pass that builds the lazy layer
        assert model.optimizer.built and model._compile_loss.built and model._compile_metrics.built
        slots = {v.path for v in model.optimizer.variables}
        assert all(any(w.path.replace("/", "_") in s for s in slots) for w in model.trainable_weights)
        history = model.fit(np.ones((4, 4), "float32"), np.arange(4) % 3, verbose=0).history
        assert np.isfinite(history["loss"][0])


def test_saving_builds_no_blank_layer_per_layer_saved(tmp_path, monkeypatch):
    # Keras's saving walks each layer's attributes, skipping those every Layer has; it lists them from a blank Layer
    # meant to be built once per kind, and (Keras 3.15) built one for every layer walked: omnifuse caches the list
    from keras.src.saving import saving_lib

    import omnifuse.modelio  # noqa: F401  (caches it on import)

    inputs = keras.Input((4,))
    hidden = inputs
    for _ in range(6):
        hidden = layers.Dense(4)(hidden)
    model = keras.Model(inputs, hidden)
    model.save(tmp_path / "warm.keras")  # the first save of each kind builds its blank object
    built = []
    init = layers.Layer.__init__

    def counted(self, *args, **kwargs):
        built.append(type(self))
        init(self, *args, **kwargs)

    monkeypatch.setattr(layers.Layer, "__init__", counted)
    model.save(tmp_path / "m.keras")
    assert built == [], built
    assert saving_lib.get_attr_skipset("Layer") is saving_lib.get_attr_skipset("Layer")
    monkeypatch.undo()
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = np.arange(8, dtype="float32").reshape(2, 4)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)


@pytest.mark.parametrize("eager", [False, True], ids=["traced", "eager"])
def test_the_training_step_differentiates_only_through_the_weights_it_trains(monkeypatch, eager):
    # a layer frozen before it is built keeps TensorFlow's trainable flag on its weights: Keras alone has the
    # step's tape watch them, and backpropagate through the frozen layer for gradients it throws away
    import tensorflow as tf

    watched = []
    gradient = tf.GradientTape.gradient

    def recorded(self, *args, **kwargs):
        watched.append({id(v) for v in self.watched_variables()})
        return gradient(self, *args, **kwargs)

    monkeypatch.setattr(tf.GradientTape, "gradient", recorded)
    inputs = keras.Input((4,))
    frozen = layers.Dense(5, name="frozen")
    frozen.trainable = False
    model = keras.Model(inputs, layers.Dense(3, name="trained")(frozen(inputs)))
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy", run_eagerly=eager)
    before = [w.numpy().copy() for w in model.weights]
    fit_once(model, np.random.default_rng(0).random((6, 4), "float32"), np.arange(6) % 3, batch_size=3)
    assert watched == [{id(w.value) for w in model.trainable_weights}] * (1 if not eager else 2)
    assert frozen.kernel.value.trainable, "TensorFlow's flag is set back after the step"
    after = model.weights
    assert [np.array_equal(a, b.numpy()) for a, b in zip(before, after)] == [True, True, False, False]
