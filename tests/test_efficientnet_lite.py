"""EfficientNet-Lite0/1/2's ported weights, and the PyTorch state-dict reader that loads them without running code.

The fixtures came from benchmarks/reference/efficientnet_lite_reference.py: an independent PyTorch definition of the
network, fed the same file through torch.load, gave Lite0's reference logits; torch.save wrote the tiny .pth files.
Lite1's and Lite2's reference logits came from benchmarks/reference/efficientnet_lite_numpy.py, a numpy forward pass
that reproduces the PyTorch logits of Lite0 to 1e-5, on three of Lite0's images reflect-padded to 240 and 260 px.
"""

import io
import os
import pickle
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from keras_steps import fit_once, outputs

from omnifuse.encoders import image
from omnifuse.encoders.image.efficientnet_lite import (
    VARIANTS,
    EfficientNetLiteConfig,
    ImageEfficientNetLite,
    imagenet_logits,
)
from omnifuse.errors import OmnifuseError
from omnifuse.weights.pth import load_state_dict

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def weights_path():
    from omnifuse.weights import locate

    try:
        return locate("efficientnet_lite0")
    except OmnifuseError as err:  # the weight package is not installed here
        pytest.skip(str(err))


def _installed(name):
    from omnifuse.weights import locate

    try:
        return locate(name)
    except OmnifuseError as err:  # the weight package is not installed here
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURES / "efficientnet_lite0_reference.npz") as f:
        return {k: f[k] for k in f.files}


# ------------------------------------------------------------------------------------- the state-dict reader
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_pth_reads_both_torch_save_formats(fmt):
    sd = load_state_dict(FIXTURES / f"tiny_state_dict_{fmt}.pth")
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert list(sd) == ["a", "a_t", "row", "count", "half", "bf16", "flags", "param"]
    np.testing.assert_array_equal(sd["a"], a)
    np.testing.assert_array_equal(sd["a_t"], a.T)  # a strided view of a's storage
    np.testing.assert_array_equal(sd["row"], a[1])  # the same storage at an offset
    assert sd["count"].dtype == np.int64 and sd["count"].shape == () and sd["count"] == 7
    assert sd["half"].dtype == np.float16
    np.testing.assert_array_equal(sd["half"], np.arange(5) / 4)
    np.testing.assert_array_equal(sd["bf16"], np.array([1.5, -2.0], np.float32))
    np.testing.assert_array_equal(sd["flags"], [True, False, True])
    np.testing.assert_array_equal(sd["param"], np.full((2, 2), 0.5, np.float32))
    sd["a"][0, 0] = 99  # every array is its own copy
    assert sd["a_t"][0, 0] == 0 and sd["row"][0] == 4


class _RunsACommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _legacy_with(payload: bytes) -> bytes:
    header = b"".join(
        pickle.dumps(x, protocol=2)
        for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True, "type_sizes": {"int": 4}})
    )
    return header + payload


def _zip_with(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")
    return buf.getvalue()


@pytest.mark.parametrize("wrap", ["bare", "legacy", "zip"])
def test_pth_refuses_a_pickle_that_would_run_a_command(wrap, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": _RunsACommand(f"echo pwned > {marker}")}, protocol=2)
    assert b"system" in payload  # the pickle really names os.system (posix.system / nt.system)
    data = {"bare": payload, "legacy": _legacy_with(payload), "zip": _zip_with(payload)}[wrap]
    path = tmp_path / "evil.pth"
    path.write_bytes(data)
    with pytest.raises(OmnifuseError) as err:
        load_state_dict(path)
    assert str(path) in str(err.value)
    assert ".system" in str(err.value)  # names the refused global
    assert not marker.exists()  # and nothing ran


def test_pth_refuses_truncated_or_foreign_files(tmp_path):
    # a legacy file cut short inside its last storage: an error naming the file, not a read past the end
    good = (FIXTURES / "tiny_state_dict_legacy.pth").read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(good[:-3])
    with pytest.raises(OmnifuseError, match="cut.pth"):
        load_state_dict(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(OmnifuseError, match="cut.pth"):
        load_state_dict(path)


def test_pth_reads_the_real_efficientnet_file(weights_path):
    sd = load_state_dict(weights_path)
    assert len(sd) == 296
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert sd["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert sd["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert sd["_fc.weight"].shape == (1000, 1280) and sd["_fc.bias"].shape == (1000,)
    learned = [
        v for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    ]
    assert sum(v.size for v in learned) == 4_652_008
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in learned)


# ---------------------------------------------------------------------------------------- the ported network
def test_imagenet_logits_match_the_pytorch_reference(weights_path, reference):
    logits = imagenet_logits(reference["images"])
    want = reference["logits"]
    assert np.abs(logits - want).max() < 1e-3
    np.testing.assert_array_equal(np.argsort(-logits, 1)[:, :5], np.argsort(-want, 1)[:, :5])
    # image 2 is CIFAR-10's first test image, a cat: ImageNet's tabby / tiger cat / Egyptian cat are in its top 5
    assert {281, 282, 285} <= set(np.argsort(-logits[2])[:5])


def test_encoder_features_any_size_and_grey(weights_path, reference):
    images = reference["images"][:2]
    enc = ImageEfficientNetLite()
    assert enc.output_dim == 1280
    np.testing.assert_allclose(np.asarray(enc(images)), reference["features"][:2], atol=1e-4)

    # a model whose input has no fixed size resizes inside: at 224 px that is the identity
    inp = keras.Input((None, None, 3), dtype="uint8")
    model = keras.Model(inp, enc(inp))
    np.testing.assert_allclose(outputs(model, images), reference["features"][:2], atol=1e-4)

    grey = images[:, ::3, ::2, :1]  # 75 x 112, resized to 224 inside
    small = np.asarray(enc(np.repeat(grey, 3, axis=-1)))
    assert small.shape == (2, 1280) and np.isfinite(small).all()
    np.testing.assert_allclose(np.asarray(enc(grey)), small, rtol=1e-6, atol=1e-6)


def _moving(layer):
    return {id(w) for w in layer.non_trainable_weights if "moving" in w.path}


@pytest.mark.parametrize("mode", ["frozen", "finetune", "last_k"])
def test_modes_choose_what_trains(weights_path, mode):
    options = {"size": 32, "mode": mode, "trainable_blocks": 2}
    # one mode reads the weight file; the others are made as a saved model's layer is (from_config: no file read),
    # which sets what trains the same way
    enc = ImageEfficientNetLite(**options) if mode == "frozen" else ImageEfficientNetLite.from_config(options)
    enc.build((None, 32, 32, 3))
    if mode == "frozen":
        # every weight is read from the file: the layer makes them as zeros (no weight file holds a tensor of zeros)
        assert [w.path for w in enc.weights if not np.any(w.numpy())] == []
    trainable = {id(w) for w in enc.trainable_weights}
    if mode == "frozen":
        assert trainable == set()
    elif mode == "finetune":  # everything but the batch-norm statistics
        assert (
            trainable == {id(w) for w in enc.weights} - _moving(enc) and len(trainable) == 49 * 3
        )  # 49 convs, 49 BN scales and offsets
    else:
        allowed = {id(w) for layer in [*enc.blocks[-2:], *enc.head] for w in layer.weights} - _moving(enc)
        assert trainable == allowed


def test_finetune_keeps_batch_norm_statistics(weights_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 40, 40, 3)).astype("uint8")
    enc = ImageEfficientNetLite(size=64, mode="finetune")
    inp = keras.Input((40, 40, 3), dtype="uint8")
    model = keras.Model(inp, keras.layers.Dense(3)(enc(inp)))
    # batch norms in inference mode while training: the same output with training on or off
    np.testing.assert_allclose(
        np.asarray(model(x, training=True)), np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-5
    )
    moving = [w.numpy() for w in enc.non_trainable_weights]
    stem = enc.stem[0].kernel.numpy()
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    fit_once(model, x, np.arange(4) % 3, batch_size=4)
    assert not np.allclose(stem, enc.stem[0].kernel.numpy())  # the backbone trained ...
    for before, w in zip(moving, enc.non_trainable_weights):  # ... its statistics did not move
        np.testing.assert_array_equal(before, w.numpy())


def test_config_round_trip():
    # the .keras round trip of every encoder (its weights from the file, not the weight package) is the encoder
    # contract's, tests/test_layers.py
    enc = ImageEfficientNetLite(size=64, mode="last_k", trainable_blocks=3, dropout=0.2)
    assert ImageEfficientNetLite.from_config(enc.get_config()).get_config() == enc.get_config()


def test_config_dataclass_matches_the_layer():
    fields = EfficientNetLiteConfig.__dataclass_fields__
    layer_config = ImageEfficientNetLite(**{k: f.default for k, f in fields.items()}).get_config()
    assert {k: layer_config[k] for k in fields} == {k: f.default for k, f in fields.items()}


def test_bad_options_and_inputs_are_named(tmp_path):
    with pytest.raises(OmnifuseError, match="frozen, finetune, last_k.*'partial'"):
        ImageEfficientNetLite(mode="partial")
    with pytest.raises(OmnifuseError, match="trainable_blocks between 0 and 16.*17"):
        ImageEfficientNetLite(mode="last_k", trainable_blocks=17)
    with pytest.raises(OmnifuseError, match="1 or 3"):
        ImageEfficientNetLite().build((None, 32, 32, 2))
    other = tmp_path / "other.pth"
    other.write_bytes((FIXTURES / "tiny_state_dict_zip.pth").read_bytes())
    wrong = ImageEfficientNetLite(weights=str(other))
    with pytest.raises(OmnifuseError, match="sha256"):  # a file that is not the pinned weights
        wrong.build((None, 32, 32, 3))
    assert wrong.weights == []  # refused before any weight was made


# ------------------------------------------------------------------------------------------- Lite1 and Lite2
LITE12 = ["lite1", "lite2"]


def native_images(images, side):
    """Lite0's 224 px fixture images reflect-padded to ``side``: the numpy reference's inputs, exactly."""
    pad = side - images.shape[1]
    return np.pad(images, ((0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2), (0, 0)), "reflect")


@pytest.fixture(scope="module")
def reference12():
    with np.load(FIXTURES / "efficientnet_lite12_reference.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("variant", LITE12)
def test_pth_reads_lite1_and_lite2(variant):
    spec = VARIANTS[variant]
    sd = load_state_dict(_installed(spec.weights))
    blocks = [k for k in sd if k.endswith("_depthwise_conv.weight")]
    assert len(blocks) == spec.blocks == 21
    # the layout in VARIANTS, block by block: kernel and output channels as the file has them
    layout = [(k, c) for n, k, _, _, c in spec.stages for _ in range(n)]
    for i, (kernel, cout) in enumerate(layout):
        assert sd[f"_blocks.{i}._depthwise_conv.weight"].shape[-1] == kernel
        assert sd[f"_blocks.{i}._project_conv.weight"].shape[0] == cout
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_conv_head.weight"].shape == (1280, layout[-1][1], 1, 1)
    learned = sum(v.size for k, v in sd.items() if k.endswith(("weight", "bias")))
    assert learned == {"lite1": 5_416_680, "lite2": 6_092_072}[variant]


@pytest.mark.parametrize("variant", LITE12)
def test_lite1_and_lite2_imagenet_logits_match_the_numpy_reference(variant, reference, reference12):
    _installed(VARIANTS[variant].weights)
    images = native_images(reference["images"][reference12["picked"]], VARIANTS[variant].size)
    logits = imagenet_logits(images, variant=variant)  # at the native side: no resizing inside
    want = reference12[f"{variant}_logits"]
    assert logits.shape == want.shape == (3, 1000)
    assert np.abs(logits - want).max() < 1e-3
    np.testing.assert_array_equal(np.argsort(-logits, 1)[:, :5], np.argsort(-want, 1)[:, :5])
    # the second image is CIFAR-10's first test image, a cat: tabby (281) is among both variants' top 5
    assert 281 in np.argsort(-logits[1])[:5]


@pytest.mark.parametrize("variant", LITE12)
def test_lite1_and_lite2_encoders_are_chosen_by_name(variant):
    name = VARIANTS[variant].weights
    cls, options = image.ENCODERS[name], image.CONFIGS[name]()
    assert issubclass(cls, ImageEfficientNetLite) and cls.variant == variant
    layer = cls()
    assert options.size == VARIANTS[variant].size == layer.size  # the native side by default
    assert layer.output_dim == 1280
    with pytest.raises(OmnifuseError, match=f"{name} trainable_blocks between 0 and 21.*22"):
        cls(mode="last_k", trainable_blocks=22)
    with pytest.raises(OmnifuseError, match="Expected an EfficientNet-Lite variant"):
        imagenet_logits(np.zeros((1, 32, 32, 3), "uint8"), variant="lite9")


def test_onnx_form_resizes_like_tensorflow(weights_path):
    # the ONNX export's resize (two products with constant matrices) is TF's antialiased bilinear resize
    from omnifuse.encoders.image.efficientnet_lite import resize_matrix

    rng = np.random.default_rng(2)
    for (h, w), side in [((32, 32), 224), ((28, 40), 48), ((300, 90), 64), ((17, 17), 17)]:
        x = rng.integers(0, 256, (2, h, w, 3)).astype("float32")
        want = np.asarray(keras.ops.image.resize(x, (side, side), interpolation="bilinear", antialias=True))
        got = np.einsum("ih,bhwc->biwc", resize_matrix(h, side), x)
        got = np.einsum("jw,biwc->bijc", resize_matrix(w, side), got)
        assert np.abs(got - want).max() < 0.01  # of 0-255: float32 rounding
    enc = ImageEfficientNetLite(size=48)
    x = rng.integers(0, 256, (2, 32, 40, 3)).astype("uint8")
    plain = np.asarray(enc(x))
    enc.onnx_form = True
    np.testing.assert_allclose(np.asarray(enc(x)), plain, rtol=1e-4, atol=1e-4)
