"""bfloat16 models: layers compute in bfloat16, variables and heads stay float32, a saved model loads in either
precision with the same weights, and the parts pinned to float32 really see float32."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras_steps import fit_once, outputs
from test_layers import _encoder_cases, _feed, _fusion_inputs, _fusion_model, _sample

from omnifuse import registry
from omnifuse.config import load_config
from omnifuse.encoders.layers import BatchNormalization, apply_layers
from omnifuse.errors import OmnifuseError
from omnifuse.model.branch import ModalityBranch
from omnifuse.model.builder import build_model
from omnifuse.modelio import load_model
from omnifuse.precision import model_precision, precision_scope


def _audio(n=6, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(2000) / 8000
    return (np.sin(2 * np.pi * rng.uniform(200, 900, (n, 1)) * t) + 0.1 * rng.normal(size=(n, 2000))).astype(
        "float32"
    )


def _branch_model(cls, kwargs, x, read_weights=True):
    inp = keras.Input(x.shape[1:], dtype="string" if x.dtype == object else x.dtype)
    mask = keras.Input((), dtype="float32")
    # from_config: a pretrained encoder as a saved model's is, without reading its weight file (set next)
    encoder = cls(**kwargs) if read_weights else cls.from_config(kwargs)
    feat = ModalityBranch(encoder)([inp, mask])
    out = keras.layers.Dense(3, activation="softmax", dtype="float32")(feat)
    return keras.Model([inp, mask], out)


@pytest.mark.parametrize("cls,kwargs,kind", list(_encoder_cases()))
def test_every_encoder_trains_in_bfloat16_and_answers_like_float32(cls, kwargs, kind):
    x = _audio() if kind == "audio" else _sample(kind)
    feed = [x, np.ones(len(x), "float32")]
    with precision_scope("bfloat16"):
        fast = _branch_model(cls, kwargs, x)
    assert keras.config.dtype_policy().name == "float32", "the scope restores the global policy"
    assert model_precision(fast) == "bfloat16"
    assert all(w.dtype == "float32" for w in fast.weights), "variables stay float32"
    inner = [sub for layer in fast.layers for sub in layer._flatten_layers() if sub.weights]
    assert any(sub.compute_dtype == "bfloat16" for sub in inner), (
        "the encoder's own layers compute in bfloat16"
    )

    if not getattr(cls, "pretrained", False):
        # a training step in bfloat16 for the encoders that learn from scratch; the pretrained ones are made of the
        # same Keras layers, cost minutes each where bfloat16 is emulated (CPUs without AVX512-BF16 or AMX), and
        # their training step is checked in float32 by the encoder contract (tests/test_layers.py)
        fast.compile("adam", "sparse_categorical_crossentropy")
        hist = fit_once(fast, feed, np.arange(len(x)) % 3)
        assert np.isfinite(hist.history["loss"][0])

    # the same weights: a pretrained encoder's are not read from its file a second time (MiniLM's vocabulary is
    # read with them, and is no weight)
    exact = _branch_model(cls, kwargs, x, read_weights=getattr(cls, "takes_raw_text", False))
    exact.set_weights(fast.get_weights())
    got, want = outputs(fast, feed), outputs(exact, feed)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(got, want, atol=0.05)


@pytest.mark.parametrize("name", sorted(registry.FUSIONS))
def test_every_fusion_keeps_its_contract_in_bfloat16(name):
    features, masks = _fusion_inputs()
    with precision_scope("bfloat16"):
        model, fusion = _fusion_model(registry.FUSIONS[name])
    assert fusion.compute_dtype == "bfloat16"
    out = outputs(model, _feed(features, masks))
    if fusion.returns_weights:
        w = np.asarray(out["weights"], "float32")
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-2)
        assert np.all(w[masks["text"] == 0, 1] == 0.0), "a masked modality gets weight exactly 0"
    changed = dict(features, text=features["text"] * 100 + 7)
    out2 = outputs(model, _feed(changed, masks))
    absent = masks["text"] == 0
    np.testing.assert_array_equal(out["y"][absent], out2["y"][absent])
    model.compile("adam", {"y": "sparse_categorical_crossentropy"})
    hist = fit_once(model, _feed(features, masks), {"y": np.arange(5) % 3})
    assert np.isfinite(hist.history["loss"][0])


def _conv_bn(seed=0):
    rng = np.random.default_rng(seed)
    conv = keras.layers.Conv2D(6, 3, padding="same", use_bias=False)
    norm = BatchNormalization()
    conv.build((None, 8, 8, 3))
    norm.build((None, 8, 8, 6))
    conv.kernel.assign(rng.normal(size=(3, 3, 3, 6)).astype("float32"))
    norm.gamma.assign(rng.uniform(0.5, 2, 6).astype("float32"))
    norm.beta.assign(rng.normal(size=6).astype("float32"))
    norm.moving_mean.assign(rng.normal(size=6).astype("float32"))
    norm.moving_variance.assign(rng.uniform(0.5, 4, 6).astype("float32"))
    return conv, norm


def test_batch_norm_folded_into_the_convolution_at_bfloat16_inference_matches_float32():
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")
    conv, norm = _conv_bn()
    want = np.asarray(norm(conv(x), training=False))
    with precision_scope("bfloat16"):
        fast_conv, fast_norm = _conv_bn()
    got = apply_layers([fast_conv, None, fast_norm], x, training=False)
    assert got.dtype == "bfloat16"
    np.testing.assert_allclose(np.asarray(keras.ops.cast(got, "float32")), want, atol=0.1, rtol=0.03)
    # training normalises with the batch's own statistics (not the folded moving ones): per channel mean = beta
    trained = np.asarray(keras.ops.cast(apply_layers([fast_conv, fast_norm], x, training=True), "float32"))
    np.testing.assert_allclose(trained.mean(axis=(0, 1, 2)), np.asarray(fast_norm.beta), atol=0.05)


def test_numbers_are_standardised_before_they_are_rounded_to_bfloat16():
    from omnifuse.encoders.numbers import TabularMLP

    rows = np.array(
        [[123456.0], [123458.0]], "float32"
    )  # bfloat16 keeps 8 bits: 123456 and 123458 are equal there
    with precision_scope("bfloat16"):
        encoder = TabularMLP(units=(4,), dropout=0.0, missing_indicator=False)
        branch = ModalityBranch(encoder)
        encoder.adapt(rows)
    exact = TabularMLP(units=(4,), dropout=0.0, missing_indicator=False)
    exact.adapt(rows)
    exact.set_weights(encoder.get_weights())
    got = np.asarray(keras.ops.cast(branch([rows, np.ones(2, "float32")]), "float32"))
    np.testing.assert_allclose(got, np.asarray(exact(rows)), atol=0.05)
    assert not np.allclose(got[0], got[1]), "the two rows must stay apart"


def test_a_saved_model_loads_in_the_precision_it_was_trained_in_or_the_other_one(tmp_path):
    cfg = load_config(
        "av-digits",
        [
            "train.precision=bfloat16",
            "data.num_samples=2000",
            "model.audio.cnn.filters=[4, 8]",
            "model.audio.cnn.dense_units=8",
            "model.image.cnn.filters=[4]",
            "model.image.cnn.dense_units=8",
            "model.fusion_dim=8",
        ],
    )
    model = build_model(
        cfg,
        {"image": "image", "audio": "audio"},
        {"digit": [str(d) for d in range(10)]},
        image_shape=(28, 28, 1),
    )
    assert model_precision(model) == "bfloat16"
    assert model.get_layer("digit").compute_dtype == "float32", "heads stay float32"
    path = tmp_path / "model.keras"
    model.save(path)
    rng = np.random.default_rng(0)
    feed = {
        "image": rng.integers(0, 256, (4, 28, 28, 1)).astype("uint8"),
        "image_mask": np.ones(4, "float32"),
        "audio": _audio(4)[:, :2000],
        "audio_mask": np.array([1, 1, 0, 0], "float32"),
    }

    same = load_model(path)
    conv = same.get_layer("audio_branch").encoder.stack[0]
    assert conv.compute_dtype == "bfloat16", "layers made inside the encoders take the saved precision too"
    exact = load_model(path, "float32")
    assert model_precision(exact) == "float32"
    for a, b in zip(same.get_weights(), exact.get_weights()):
        np.testing.assert_array_equal(a, b)
    got, want = outputs(same, feed), outputs(exact, feed)
    assert got["digit"].dtype == np.float32
    np.testing.assert_allclose(got["digit"], want["digit"], atol=0.03)
    np.testing.assert_allclose(got["modality_weights"], want["modality_weights"], atol=0.03)
    with pytest.raises(Exception, match="float32, bfloat16.*'half'"):
        load_model(path, "half")
    # a fresh interpreter that imports nothing but this function can load it (omnifuse's layers get registered);
    # Keras imported as the command line imports it (omnifuse/lean.py), which registers nothing
    code = "import sys; from omnifuse import lean; lean.setup(); from omnifuse.modelio import load_model; "
    code += "print(load_model(sys.argv[1]).name)"
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_cpu_flags_tell_native_bfloat16():
    from omnifuse.precision import cpuinfo_has_bfloat16

    assert cpuinfo_has_bfloat16("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni")
    assert cpuinfo_has_bfloat16("flags\t\t: fpu avx2 amx_bf16 amx_tile amx_int8")
    assert not cpuinfo_has_bfloat16("flags\t\t: fpu sse2 avx2 avx512f avx512_vnni")  # AVX-512 without BF16
    assert not cpuinfo_has_bfloat16("flags\t\t: fpu sse2 avx avx2 fma")
    assert not cpuinfo_has_bfloat16("")


@pytest.fixture
def fresh_auto(monkeypatch):
    """``auto_precision`` decided anew in this test (and again after it, as the environment then says)."""
    from omnifuse import precision

    monkeypatch.delenv(precision.AUTO_ENV)
    precision.auto_precision.cache_clear()
    yield precision
    precision.auto_precision.cache_clear()


@pytest.mark.parametrize("expected", ["bfloat16", "float32"])
def test_auto_precision_takes_what_this_machine_decided(fresh_auto, monkeypatch, expected):
    precision = fresh_auto
    monkeypatch.setenv(precision.AUTO_ENV, expected)
    assert precision.check_precision("auto") == expected
    assert precision.check_precision("float32") == "float32"  # explicit choices stay as given
    assert precision.check_precision("bfloat16") == "bfloat16"
    cfg = load_config("cifar10-fast")
    assert cfg.train.precision == "auto"
    small = cfg.replace(["model.image.fastnet.widths=[4, 8]", "model.image.fastnet.tta=0"])
    model = build_model(small, {"image": "image"}, {"cifar10": [str(i) for i in range(10)]})
    assert model_precision(model) == expected


def test_a_wrong_auto_precision_setting_is_named(fresh_auto, monkeypatch):
    monkeypatch.setenv(fresh_auto.AUTO_ENV, "float16")
    with pytest.raises(OmnifuseError, match="OMNIFUSE_AUTO_PRECISION.*float16"):
        fresh_auto.check_precision("auto")


CPUINFO = "model name\t: Some Xeon\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"


@pytest.mark.parametrize("speedup,expected", [(0.6, "float32"), (1.1, "float32"), (2.0, "bfloat16")])
def test_native_bfloat16_is_chosen_only_where_measured_faster_and_measured_once(
    fresh_auto, monkeypatch, speedup, expected
):
    precision = fresh_auto
    calls = []
    monkeypatch.setattr(precision, "bfloat16_speedup", lambda: calls.append(1) or speedup)
    assert precision._measured_choice(CPUINFO) == expected
    kept = json.loads((Path(os.environ["OMNIFUSE_CACHE"]) / "precision.json").read_text())
    (entry,) = kept.values()
    assert entry == {"precision": expected, "bfloat16_speedup": speedup}
    assert "Some Xeon | avx512_bf16 |" in next(iter(kept))
    assert precision._measured_choice(CPUINFO) == expected  # read back, not measured again
    assert len(calls) == 1
    other = CPUINFO.replace("Some Xeon", "Another CPU")
    precision._measured_choice(other)  # another machine sharing the cache is measured for itself
    assert (
        len(calls) == 2
        and len(json.loads((Path(os.environ["OMNIFUSE_CACHE"]) / "precision.json").read_text())) == 2
    )


def test_the_bfloat16_measurement_times_both_precisions():
    from omnifuse import precision

    measured = precision.bfloat16_speedup(repeats=2)
    assert 0.01 < measured < 100.0


def test_auto_is_float32_without_native_bfloat16_whatever_the_setting_says_of_measuring(
    fresh_auto, monkeypatch
):
    precision = fresh_auto
    monkeypatch.setattr(
        precision, "bfloat16_speedup", lambda: pytest.fail("measured on a CPU without bfloat16")
    )
    monkeypatch.setattr(precision, "_backend_has_gpu", lambda: False)
    monkeypatch.setattr(precision, "read_cpuinfo", lambda: "flags\t: fpu avx2 fma\n")
    assert precision.check_precision("auto") == "float32"
