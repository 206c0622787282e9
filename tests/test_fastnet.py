"""The pieces the fast CIFAR-10 presets add: the fastnet encoder's whitening, augmentation and test-time
augmentation; lookahead; batch-norm bias learning rates; a scaled bias-free head; fastnet on the JAX backend."""

import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from fixtures import write_cifar10

from omnifuse.encoders.image import ImageFastNet
from omnifuse.errors import OmnifuseError

# A tiny fastnet run with the features of the cifar10-fast preset: no validation hold-out, SGD, lookahead.
TINY = """
name = "tiny"
[data]
sets = ["cifar10"]
val_fraction = 0.0
[model]
fusion = "concat"
fusion_dim = 16
[model.image]
encoder = "fastnet"
[model.image.fastnet]
widths = [8, 16]
[train]
epochs = 2
batch_size = 50
optimizer = "sgd"
learning_rate = 0.05
schedule = "onecycle"
label_smoothing = 0.2
lookahead = 0.5
early_stopping = 0
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root, n_per_batch=40, n_test=60)
    return root


def _images(n=64, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 16, 16, 3)).astype("float32")
    base[..., 1] = 0.7 * base[..., 0] + 0.3 * base[..., 1]  # correlated channels, as in real photos
    return base.astype("uint8")


def test_fastnet_adapt_whitens_patches():
    images = _images()
    layer = ImageFastNet(widths=(4, 8))
    layer.adapt(images)
    x = images.astype("float32") / 255.0
    out = keras.ops.convert_to_numpy(keras.ops.conv(x, layer.whiten_w, padding="valid") + layer.whiten_b)
    half = out.shape[-1] // 2  # the second half are the negated filters
    flat = out[..., :half].reshape(-1, half).astype("float64")
    np.testing.assert_allclose(flat.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.cov(flat, rowvar=False), np.eye(half), atol=0.02)
    np.testing.assert_allclose(out[..., half:], -out[..., :half], atol=1e-5)
    assert not layer.whiten_w.trainable and layer.whiten_b.trainable


def test_fastnet_augments_in_training_and_averages_the_mirror_in_inference():
    images = _images(8)
    layer = ImageFastNet(widths=(4, 8), tta=1)
    first = keras.ops.convert_to_numpy(layer(images, training=True))
    second = keras.ops.convert_to_numpy(layer(images, training=True))
    assert not np.allclose(first, second)  # a fresh flip/shift draw each step

    plain = keras.ops.convert_to_numpy(layer(images, training=False))
    mirrored = keras.ops.convert_to_numpy(layer(images[:, :, ::-1], training=False))
    np.testing.assert_allclose(plain, mirrored, rtol=1e-4, atol=1e-5)
    no_tta = ImageFastNet.from_config({**layer.get_config(), "tta": 0})
    no_tta.build(images.shape)
    no_tta.set_weights(layer.get_weights())
    assert not np.allclose(keras.ops.convert_to_numpy(no_tta(images, training=False)), plain)
    with pytest.raises(ValueError, match="tta"):
        ImageFastNet(tta=3)


def test_lookahead_ends_training_on_the_slow_weights():
    from omnifuse.training import _Lookahead

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = np.random.default_rng(0).normal(size=(32, 3)), np.zeros((32, 2))
    look = _Lookahead(0.9, every=3, total_steps=8)  # the last sync is at step 6: steps 7-8 run fast
    slow_at_end = []

    class Spy(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            slow_at_end.extend(s.copy() for s in look.slow)

    model.fit(x, y, batch_size=8, epochs=2, callbacks=[look, Spy()], verbose=0)
    assert look.step == 8
    for weight, slow in zip(model.get_weights(), slow_at_end):
        np.testing.assert_allclose(weight, slow, rtol=1e-6)


def test_batch_norm_beta_grad_scale_multiplies_only_betas_gradient():
    import tensorflow as tf

    from omnifuse.encoders.layers import BatchNormalization

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4, 4, 3)).astype("float32")
    probe = rng.normal(size=x.shape).astype("float32")  # a loss whose gradient reaches beta unevenly
    plain, fast = BatchNormalization(scale=False), BatchNormalization(scale=False, beta_grad_scale=64)
    outs, grads = [], []
    for layer in (plain, fast):
        layer.build(x.shape)
        layer.beta.assign([0.1, -0.2, 0.3])
        with tf.GradientTape() as tape:
            out = layer(x, training=True)
            loss = tf.reduce_sum(out * probe)
        outs.append(out.numpy())
        grads.append(tape.gradient(loss, layer.beta).numpy())
    np.testing.assert_array_equal(outs[0], outs[1])  # the outputs are unchanged
    assert np.abs(grads[0]).min() > 1e-3
    np.testing.assert_allclose(grads[1], 64 * grads[0], rtol=1e-5)
    np.testing.assert_array_equal(fast(x, training=False), plain(x, training=False))
    assert BatchNormalization.from_config(fast.get_config()).beta_grad_scale == 64
    net = ImageFastNet(widths=(4, 8), bias_lr_scale=8)
    assert net.get_config()["bias_lr_scale"] == 8
    assert all(
        layer.beta_grad_scale == 8 for g in net.groups for layer in g if isinstance(layer, BatchNormalization)
    )


@pytest.mark.parametrize("scale", [False, True])
def test_batch_norm_training_in_the_fused_kernel_is_keras_arithmetic(scale):
    import tensorflow as tf

    from omnifuse.encoders.layers import BatchNormalization

    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(2.0, 3.0, (8, 5, 5, 6)).astype("float32"))
    probe = tf.constant(rng.normal(size=x.shape).astype("float32"))
    weights = [rng.normal(size=6).astype("float32") for _ in range(2 if scale else 1)]  # (gamma,) beta
    ours = BatchNormalization(momentum=0.8, scale=scale)
    keras_own = keras.layers.BatchNormalization(momentum=0.8, scale=scale)
    assert ours._fusable(x, None) and not ours._fusable(x[:, 0], None)  # 4-D only
    results = []
    for layer in (ours, keras_own):
        layer.build(x.shape)
        for w, v in zip(layer.trainable_weights, weights):
            w.assign(v)
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x, training=True)
            loss = tf.reduce_sum(out * probe)
        grads = tape.gradient(loss, [x, *layer.trainable_weights])
        results.append([out, *grads, layer.moving_mean, layer.moving_variance])
    for a, b in zip(*results):
        a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert np.abs(keras.ops.convert_to_numpy(ours.moving_variance) - 1.0).max() > 0.5  # the statistics moved


def test_unprojected_concat_and_a_scaled_bias_free_head_train_save_and_load(data_dir, tmp_path):
    from omnifuse.config import from_dict, read_toml
    from omnifuse.model.heads import ScaledSoftmax
    from omnifuse.modelio import load_model
    from omnifuse.training import train

    (tmp_path / "tiny.toml").write_text(TINY)
    overrides = ["model.fusion_dim=0", "model.head_bias=false", "model.head_scale=0.125", "train.epochs=1"]
    cfg = from_dict(read_toml(tmp_path / "tiny.toml")).replace(overrides)
    run = train(cfg, runs_root=tmp_path / "runs", data_dir=str(data_dir))
    model = load_model(run / "model.keras")
    logits = model.get_layer("cifar10_logits")
    assert not logits.use_bias and logits.kernel.shape == (16, 10)  # right on the encoder's 16 features
    assert isinstance(model.get_layer("cifar10"), ScaledSoftmax) and model.get_layer("cifar10").scale == 0.125
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype("uint8")
    feed = {"image": images, "image_mask": np.ones(5, "float32")}
    probs = model.predict_on_batch(feed)["cifar10"]
    features = keras.Model(model.inputs, model.get_layer("fusion").output).predict_on_batch(feed)
    want = keras.ops.convert_to_numpy(keras.ops.softmax(0.125 * (features @ logits.get_weights()[0])))
    np.testing.assert_allclose(probs, want, rtol=1e-4, atol=1e-6)
    with pytest.raises(OmnifuseError, match="model.fusion_dim > 0"):
        train(cfg.replace(["model.fusion=gated"]), runs_root=tmp_path / "runs", data_dir=str(data_dir))


JAX_RUN = """
import json, sys
from pathlib import Path
from omnifuse.config import from_dict, read_toml
from omnifuse.training import train
cfg = from_dict(read_toml(Path(sys.argv[1]))).replace(["train.epochs=1", "train.lookahead=0"])
run = train(cfg, runs_root=sys.argv[2], data_dir=sys.argv[3])
import keras
print(json.dumps({"backend": keras.backend.backend(), "run": str(run)}))
"""


def test_a_fastnet_model_trains_and_saves_on_the_jax_backend(data_dir, tmp_path):
    pytest.importorskip("jax", reason="the JAX backend needs jax (the jax extra)")
    import os
    import subprocess

    (tmp_path / "tiny.toml").write_text(TINY)
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    cmd = [sys.executable, "-c", JAX_RUN, str(tmp_path / "tiny.toml"), str(tmp_path / "runs"), str(data_dir)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["backend"] == "jax"
    meta = json.loads((Path(out["run"]) / "meta.json").read_text())
    assert (Path(out["run"]) / "model.keras").is_file() and meta


def test_alternating_flip_mirrors_each_image_in_every_other_epoch():
    images = _images(32)
    layer = ImageFastNet(widths=(4, 8), alternate_flip=True, translate=0)
    layer.build(images.shape)
    x = images.astype("float32")
    coin = images.astype("int64").sum(axis=(1, 2, 3)) % 2
    assert 0 < coin.sum() < len(coin)  # both halves are present
    seen = []
    for epoch in range(4):
        layer.epoch.assign(epoch)
        out = keras.ops.convert_to_numpy(layer._flip(x, images))
        mirrored = np.array(
            [np.array_equal(o, i[:, ::-1]) and not np.array_equal(o, i) for o, i in zip(out, x)]
        )
        kept = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
        assert np.all(mirrored | kept)
        np.testing.assert_array_equal(mirrored, coin != epoch % 2)
        seen.append(mirrored)
    np.testing.assert_array_equal(seen[0], ~seen[1])  # each image shown both ways in every pair of epochs
    np.testing.assert_array_equal(seen[0], seen[2])
    assert "epoch" not in [w.path.split("/")[-1] for w in ImageFastNet(widths=(4, 8)).weights]
    plain = ImageFastNet(widths=(4, 8))
    plain.build(images.shape)
    assert not hasattr(plain, "epoch")  # models saved before the option load as they were


def test_training_sets_the_epoch_for_alternating_flip_and_the_model_loads(data_dir, tmp_path):
    from omnifuse.config import from_dict, read_toml
    from omnifuse.modelio import load_model
    from omnifuse.training import train

    (tmp_path / "tiny.toml").write_text(TINY)
    overrides = ["model.image.fastnet.alternate_flip=true", "train.epochs=3"]
    cfg = from_dict(read_toml(tmp_path / "tiny.toml")).replace(overrides)
    run = train(cfg, runs_root=tmp_path / "runs", data_dir=str(data_dir))
    model = load_model(run / "model.keras")
    (net,) = [layer for layer in model._flatten_layers() if isinstance(layer, ImageFastNet)]
    assert net.alternate_flip and int(keras.ops.convert_to_numpy(net.epoch)) == 2  # the last epoch's number


def test_the_whitening_bias_trains_for_its_epochs_then_stays(data_dir, tmp_path, recwarn):
    from omnifuse.config import from_dict, read_toml
    from omnifuse.training import train

    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            (self.net,) = [x for x in self.model._flatten_layers() if isinstance(x, ImageFastNet)]
            seen.append(keras.ops.convert_to_numpy(self.net.whiten_b).copy())

        def on_epoch_end(self, epoch, logs=None):
            seen.append(keras.ops.convert_to_numpy(self.net.whiten_b).copy())
            seen.append(keras.ops.convert_to_numpy(self.net.groups[0][0].kernel).copy())

    (tmp_path / "tiny.toml").write_text(TINY)
    overrides = ["model.image.fastnet.whiten_bias_epochs=1", "train.epochs=3", "train.lookahead=0.0"]
    overrides.append("train.weight_decay=0.01")  # decays only what has a gradient
    cfg = from_dict(read_toml(tmp_path / "tiny.toml")).replace(overrides)
    train(cfg, runs_root=tmp_path / "runs", data_dir=str(data_dir), callbacks=[Watch()])
    start, bias1, conv1, bias2, conv2, bias3, conv3 = seen
    assert not np.allclose(start, bias1)  # epoch 1 trains it
    np.testing.assert_array_equal(bias1, bias2)  # then it stays, weight decay included
    np.testing.assert_array_equal(bias2, bias3)
    assert not np.allclose(conv1, conv2) and not np.allclose(conv2, conv3)  # the rest trains on
    # Keras warns that the frozen bias has no gradient (pytest records every warning); fastnet's filter, which
    # users' runs go through, silences exactly that warning and no other
    import re

    from omnifuse.encoders.image.fastnet import FROZEN_BIAS_WARNING

    missing = [str(w.message) for w in recwarn if "Gradients do not exist" in str(w.message)]
    assert missing and all(re.match(FROZEN_BIAS_WARNING, m) for m in missing)
    assert not re.match(
        FROZEN_BIAS_WARNING, missing[0].replace("whiten_bias'", "whiten_bias', 'dense/kernel'")
    )


def test_triangle_schedule_is_airbenchs():
    from omnifuse.config import TrainConfig
    from omnifuse.model.compile import Triangle, learning_rate_schedule

    t = TrainConfig(learning_rate=2.0, schedule="triangle", warmup_fraction=0.25)
    schedule = learning_rate_schedule(t, 100)
    lr = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 10, 25, 60, 100, 120)]
    want = [0.4, 0.4 + 1.6 * 10 / 25, 2.0, 2.0 * (1 - 0.93 * 35 / 75), 0.14, 0.14]
    np.testing.assert_allclose(lr, want, rtol=1e-5)
    again = Triangle.from_config(schedule.get_config())
    assert float(keras.ops.convert_to_numpy(again(60))) == pytest.approx(lr[3])


def test_low_res_epochs_train_on_random_crops_then_whole_images():
    images = _images(16)
    layer = ImageFastNet(widths=(4, 8), flip=False, translate=0, low_res_epochs=2, low_res_size=10)
    layer.build(images.shape)
    x = images.astype("float32")
    assert layer.on_epoch(0) is True  # the step changes shape: traced again
    crops = keras.ops.convert_to_numpy(layer._augment(x, images))
    assert crops.shape == (16, 10, 10, 3)
    windows = np.lib.stride_tricks.sliding_window_view(x, (10, 10), axis=(1, 2))  # (16, 7, 7, 3, 10, 10)
    for crop, image_windows in zip(crops, windows):
        found = np.all(image_windows == crop.transpose(2, 0, 1)[None, None], axis=(2, 3, 4))
        assert found.any()  # each crop is a window of its own image
    corners = {
        tuple(np.argwhere(np.all(w == c.transpose(2, 0, 1)[None, None], axis=(2, 3, 4)))[0])
        for c, w in zip(crops, windows)
    }
    assert len(corners) > 1  # at random places
    assert layer.on_epoch(1) is False
    assert layer.on_epoch(2) is True
    assert keras.ops.convert_to_numpy(layer._augment(x, images)).shape == (16, 16, 16, 3)
    assert layer.on_epoch(3) is False
    layer.on_epoch(0)
    out = layer(x, training=False)  # inference sees the whole image whatever the epoch
    assert tuple(out.shape) == (16, 8)
    with pytest.raises(ValueError, match="low_res_size of at least 5"):
        ImageFastNet(widths=(4, 8), low_res_epochs=1, low_res_size=4)


def test_training_with_low_res_epochs_sees_crops_then_whole_images_and_loads(data_dir, tmp_path):
    from omnifuse.config import from_dict, read_toml
    from omnifuse.modelio import load_model
    from omnifuse.training import train

    shapes = []

    class Watch(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            (net,) = [x for x in self.model._flatten_layers() if isinstance(x, ImageFastNet)]
            features = net._features

            def spy(x, training):  # runs per step when eager, per trace when traced: either way in order
                if training:
                    shapes.append(tuple(x.shape[1:3]))
                return features(x, training)

            net._features = spy

    (tmp_path / "tiny.toml").write_text(TINY)
    overrides = [
        "model.image.fastnet.low_res_epochs=2",
        "model.image.fastnet.low_res_size=12",
        "train.epochs=3",
    ]
    cfg = from_dict(read_toml(tmp_path / "tiny.toml")).replace(overrides)
    run = train(cfg, runs_root=tmp_path / "runs", data_dir=str(data_dir), callbacks=[Watch()])
    first_whole = shapes.index((32, 32))
    assert (
        first_whole > 0
        and set(shapes[:first_whole]) == {(12, 12)}
        and set(shapes[first_whole:]) == {(32, 32)}
    )
    model = load_model(run / "model.keras")
    (net,) = [layer for layer in model._flatten_layers() if isinstance(layer, ImageFastNet)]
    assert (net.low_res_epochs, net.low_res_size) == (2, 12)
    feed = {"image": np.zeros((2, 32, 32, 3), "uint8"), "image_mask": np.ones(2, "float32")}
    assert model.predict_on_batch(feed)["cifar10"].shape == (2, 10)  # whole images in inference


def test_quick_gelu_is_x_times_sigmoid_and_its_written_out_gradient_is_autograds():
    import tensorflow as tf

    from omnifuse.encoders.layers import quick_gelu

    x = tf.constant(np.linspace(-8.0, 8.0, 801, dtype="float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = quick_gelu(x)
        plain = x * tf.sigmoid(1.702 * x)  # automatic differentiation of the same function
    np.testing.assert_allclose(y.numpy(), plain.numpy(), atol=1e-6)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), tape.gradient(plain, x).numpy(), atol=1e-5)
    gelu = keras.ops.convert_to_numpy(keras.activations.gelu(x))
    assert 0.005 < np.abs(y.numpy() - gelu).max() < 0.021  # GELU's sigmoid form: close to it, not it


def test_fastnet_activation_is_chosen_saved_and_loaded(data_dir, tmp_path):
    from omnifuse.config import from_dict, read_toml
    from omnifuse.modelio import load_model
    from omnifuse.training import train

    images = _images(4)
    layers = {}
    for name in ("gelu", "quick_gelu", "relu"):
        layer = ImageFastNet(widths=(4, 8), activation=name)
        layer.build(images.shape)
        layers[name] = layer
    layers["relu"].set_weights(layers["gelu"].get_weights())
    layers["quick_gelu"].set_weights(layers["gelu"].get_weights())
    out = {k: keras.ops.convert_to_numpy(v(images, training=False)) for k, v in layers.items()}
    assert not np.allclose(out["gelu"], out["relu"])
    assert not np.allclose(out["gelu"], out["quick_gelu"])
    with pytest.raises(ValueError, match="activation"):
        ImageFastNet(activation="swish")

    (tmp_path / "tiny.toml").write_text(TINY)
    cfg = from_dict(read_toml(tmp_path / "tiny.toml")).replace(
        ["model.image.fastnet.activation=quick_gelu", "train.epochs=1"]
    )
    run = train(cfg, runs_root=tmp_path / "runs", data_dir=str(data_dir))
    model = load_model(run / "model.keras")
    (net,) = [layer for layer in model._flatten_layers() if isinstance(layer, ImageFastNet)]
    assert net.activation == "quick_gelu"
    feed = {"image": images[:2].repeat(2, axis=1).repeat(2, axis=2), "image_mask": np.ones(2, "float32")}
    assert np.isfinite(model.predict_on_batch(feed)["cifar10"]).all()
    with pytest.raises(OmnifuseError, match="activation"):
        cfg.replace(["model.image.fastnet.activation=swish"])
