"""Lazy optimizers: a variable no gradient reaches in a step keeps its value and its optimizer state."""

import keras
import numpy as np
import pytest
from keras import ops
from keras_steps import fit_once, outputs

from omnifuse.optimizers import LazyAdam, LazyAdamW, LazySGD


@pytest.mark.parametrize(
    "lazy,plain,kwargs",
    [
        (LazyAdam, keras.optimizers.Adam, {}),
        (LazyAdamW, keras.optimizers.AdamW, {"weight_decay": 0.0}),
        (LazySGD, keras.optimizers.SGD, {"momentum": 0.9}),
    ],
)
@pytest.mark.parametrize("traced", [False, True], ids=["eager", "graph"])
def test_a_variable_without_gradient_stays_put_and_the_rest_moves_as_before(lazy, plain, kwargs, traced):
    import tensorflow as tf

    def run(cls):
        a, b = keras.Variable(np.ones(3, "float32")), keras.Variable(np.ones(3, "float32"))
        opt = cls(0.1, **kwargs)
        opt.build([a, b])
        # eagerly (train.eager: the update decides in Python) or in a graph (the update keeps or puts back)
        apply = tf.function(lambda g: opt.apply(g, [a, b])) if traced else (lambda g: opt.apply(g, [a, b]))
        apply([ops.ones((3,)), ops.full((3,), 0.5)])  # both reached: momentum builds up
        after_first = b.numpy().copy()
        apply([ops.ones((3,)), ops.zeros((3,))])  # b not reached
        b_between = b.numpy().copy()
        apply([ops.ones((3,)), ops.full((3,), 0.5)])
        return a.numpy(), after_first, b_between, b.numpy()

    a_lazy, first, between, _ = run(lazy)
    np.testing.assert_array_equal(between, first)  # the lazy optimizer left b where it was
    a_plain, first_plain, between_plain, _ = run(plain)
    assert not np.allclose(between_plain, first_plain)  # the plain one moved it by stale momentum
    np.testing.assert_allclose(a_lazy, a_plain, rtol=1e-6)  # a, reached every step, moved the same


def test_a_model_with_an_embedding_trains_and_reloads_with_the_lazy_optimizer(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((4,), dtype="int32"),
            keras.layers.Embedding(20, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    model.compile(LazyAdam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.arange(32).reshape(8, 4) % 10, np.arange(8) % 2
    unused = model.layers[0].embeddings.numpy()[10:].copy()  # ids 10-19 never appear
    fit_once(model, x, y, epochs=2)
    np.testing.assert_array_equal(model.layers[0].embeddings.numpy()[10:], unused)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, LazyAdam)
    np.testing.assert_allclose(outputs(loaded, x), outputs(model, x), rtol=1e-6)


@pytest.mark.parametrize("name", ["ScaledAdam", "ScaledAdamW", "ScaledSGD", "LazyAdam"])
def test_learning_rate_multipliers_per_layer(name):
    """A layer whose path starts with a prefix in lr_multipliers moves that many times as far in one step."""
    import numpy as np

    from omnifuse import optimizers

    x = keras.Input((3,))
    slow = keras.layers.Dense(2, name="slow", kernel_initializer="ones")
    fast = keras.layers.Dense(2, name="fast", kernel_initializer="ones")
    model = keras.Model(x, fast(x) + slow(x))
    extra = {"weight_decay": 0.0} if name == "ScaledAdamW" else {}  # decay would move both layers alike
    opt = getattr(optimizers, name)(learning_rate=0.01, lr_multipliers={"slow/": 0.1}, **extra)
    model.compile(opt, "mse")
    before = {v.path: np.array(v) for v in model.trainable_variables}
    model.train_on_batch(np.ones((4, 3), "float32"), np.zeros((4, 2), "float32"))
    moved = {
        p: np.abs(np.array(v) - before[v.path]).max() for v in model.trainable_variables for p in [v.path]
    }
    # both layers get the same gradient: the slow one moves a tenth as far
    np.testing.assert_allclose(moved["slow/kernel"], 0.1 * moved["fast/kernel"], rtol=1e-3)
    assert moved["fast/kernel"] > 0
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert again.lr_multipliers == {"slow/": 0.1}


@pytest.mark.parametrize("name", ["LazyAdam", "LazyAdamW", "ScaledAdam"])
def test_an_eager_step_updates_as_keras_s_adam_bit_for_bit(name, monkeypatch):
    """A step run eagerly (train.eager) updates dense gradients' variables with TensorFlow's ops directly, not
    through Keras's update_step: the same arithmetic, so the same bits (and a sparse gradient through Keras's)."""
    from omnifuse import optimizers

    rng = np.random.default_rng(0)
    shapes = [(3, 4), (4,), (6, 2)]
    start = [rng.normal(size=s).astype("float32") for s in shapes]
    steps = [[rng.normal(size=s).astype("float32") for s in shapes] for _ in range(3)]
    table = rng.normal(size=(5, 2)).astype("float32")  # an embedding's rows: a sparse gradient, a row twice
    sparse = tf_indexed_slices(np.ones((3, 2), "float32"), [0, 3, 0])

    def run():
        variables = [keras.Variable(x) for x in start] + [keras.Variable(table)]
        schedule = keras.optimizers.schedules.CosineDecay(0.05, decay_steps=5)
        extra = {"weight_decay": 0.01} if name == "LazyAdamW" else {}
        opt = getattr(optimizers, name)(schedule, lr_multipliers={variables[2].path: 0.1}, **extra)
        opt.build(variables)
        for grads in steps:
            opt.apply([*map(ops.convert_to_tensor, grads), sparse], variables)
        return [v.numpy() for v in variables + opt.variables]

    calls = []
    keras_step = keras.optimizers.Adam.update_step

    def counted(self, gradient, variable, learning_rate):
        calls.append(hasattr(gradient, "indices"))
        return keras_step(self, gradient, variable, learning_rate)

    monkeypatch.setattr(keras.optimizers.Adam, "update_step", counted)
    direct = run()
    assert calls == [True] * 3  # Keras's update only for the sparse gradient, once a step
    monkeypatch.setattr(optimizers, "_direct", lambda gradient, amsgrad: False)
    for ours, theirs in zip(direct, run(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def tf_indexed_slices(values, indices):
    import tensorflow as tf

    return tf.IndexedSlices(tf.constant(values), tf.constant(indices), tf.constant([5, 2]))


def test_orthogonalize_keeps_the_singular_vectors_and_evens_out_the_values():
    from omnifuse.optimizers import orthogonalize

    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    v, _ = np.linalg.qr(rng.normal(size=(90, 40)))
    spread = np.geomspace(100.0, 0.5, 40)  # singular values over two and a half decades
    g = (u * spread) @ v.T
    for matrix in (g, g.T):  # wide or tall
        out = np.asarray(orthogonalize(matrix.astype("float32"), steps=5))
        assert out.shape == matrix.shape
        s = np.linalg.svd(out, compute_uv=False)
        assert 0.5 < s.min() and s.max() < 1.3, s  # the 200x spread squeezed into the quintic's [0.68, 1.2]
        # the same singular vectors: out is about U diag(s') V^T, near U V^T
        reference = u @ v.T if matrix is g else v @ u.T
        assert np.corrcoef(out.ravel(), reference.ravel())[0, 1] > 0.95


def _conv_model():
    x = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(16, 3, use_bias=False, name="conv")(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, keras.layers.Dense(4, name="head")(h))


def test_muon_steps_conv_kernels_by_their_orthogonalised_momentum_and_the_rest_by_sgd():
    """A conv kernel is renormalised to sqrt(filters) and moves by muon_scale * rate along the orthogonalised
    gradient, untouched by weight decay; the dense head and the BN variables take Keras's SGD step, bit for bit."""
    import tensorflow as tf

    from omnifuse.optimizers import MuonSGD, orthogonalize

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 8, 8, 3)).astype("float32"), np.arange(16) % 4
    models, grads = {}, {}
    for name in ("muon", "sgd"):
        keras.utils.set_random_seed(0)
        model = _conv_model()
        kwargs = {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}
        if name == "muon":
            opt = MuonSGD(0.05, muon_scale=2.0, muon_momentum=0.5, **kwargs)
        else:
            opt = keras.optimizers.SGD(0.05, **kwargs)
        model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        kernel = model.get_layer("conv").kernel
        before = kernel.numpy()
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        grads[name] = tape.gradient(loss, kernel).numpy()  # this step's kernel gradient (BN in training mode)
        model.train_on_batch(x, y)
        models[name] = (model, before)

    model, before = models["muon"]
    after = model.get_layer("conv").kernel.numpy()
    scaled = before * np.sqrt(16) / np.linalg.norm(before)
    expected = scaled - 2.0 * 0.05 * np.asarray(orthogonalize(1.5 * grads["muon"].reshape(27, 16))).reshape(
        3, 3, 3, 16
    )
    np.testing.assert_allclose(after, expected, atol=1e-4)  # first step: momentum = g, Nesterov g + 0.5 g
    plain, _ = models["sgd"]
    for layer in ("head", "bn"):
        for ours, theirs in zip(model.get_layer(layer).weights, plain.get_layer(layer).weights, strict=True):
            np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-7)


def test_muon_trains_a_conv_net_excludes_prefixed_kernels_and_reloads(tmp_path):
    from omnifuse.optimizers import LazyMuonSGD, MuonSGD

    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 8, 8, 3)).astype("float32")
    y = (x[:, :4].mean(axis=(1, 2, 3)) > 0).astype("int32")  # learnable: the top half's brightness
    keras.utils.set_random_seed(0)
    model = _conv_model()
    model.compile(
        MuonSGD(0.05, momentum=0.9, nesterov=True, muon_scale=2.0),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = fit_once(model, x, y, epochs=8, batch_size=16)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
    # the kernel's norm stays near sqrt(filters): renormalised before every step, which is small against it
    assert abs(np.linalg.norm(model.get_layer("conv").kernel.numpy()) - 4.0) < 0.5
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, MuonSGD) and loaded.optimizer.muon_scale == 2.0
    np.testing.assert_allclose(outputs(loaded, x), outputs(model, x), rtol=1e-5, atol=1e-6)

    # a kernel under an excluded prefix (a pretrained encoder) keeps SGD's step: no renormalisation
    opt = LazyMuonSGD(0.05, momentum=0.9, nesterov=True, muon_exclude=["conv/"])
    excluded = _conv_model()
    excluded.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    excluded.get_layer("conv").kernel.assign(excluded.get_layer("conv").kernel.numpy() * 10.0)
    fit_once(excluded, x, y, epochs=1, batch_size=16)
    assert (
        np.linalg.norm(excluded.get_layer("conv").kernel.numpy()) > 8.0
    )  # a muon step would have made it ~4
