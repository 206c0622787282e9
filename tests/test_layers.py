"""The shared layer test, run over every registered encoder and fusion (as the design's contract asks)."""

import dataclasses

import keras
import numpy as np
import pytest
from keras_steps import fit_once, outputs

from omnifuse import registry
from omnifuse.config import ImageConfig, TabularConfig, TextConfig
from omnifuse.encoders import audio, image, numbers, text
from omnifuse.model.branch import ModalityBranch

SMALL_IMAGE = {
    "cnn": dict(filters=(4, 8), dense_units=16, batchnorm=True, dropout=0.1),
    "resnet": dict(widths=(4, 8), blocks=1, dense_units=16),
    "fastnet": dict(widths=(4, 8), translate=2, tta=2),
    # pretrained: the real weights (installed by `omnifuse weights install`), the top block trained
    "efficientnet_lite0": dict(size=32, mode="last_k", trainable_blocks=1),
    "efficientnet_lite1": dict(size=32, mode="last_k", trainable_blocks=1),
    "efficientnet_lite2": dict(size=32, mode="last_k", trainable_blocks=1),
}
SMALL_TEXT = {
    "rnn": dict(
        vocab_size=50, embed_dim=8, units=6, bidirectional=True, pooling="max", conv_filters=4, conv_pool=2
    ),
    "bag": dict(vocab_size=50, embed_dim=8),
    "tfidf": dict(units=6, dropout=0.2),
    "nb": dict(vocab_size=50, classes=3),
    "minilm": dict(max_length=16, mode="last_k", trainable_blocks=1),  # takes strings
}
SMALL_AUDIO = {
    "cnn": dict(filters=(4, 8), dense_units=6, num_mel_bins=16),
    "whisper_tiny": dict(mode="last_k", trainable_blocks=1),
}
SMALL_TABULAR = {"mlp": dict(units=(8, 6), dropout=0.1)}
# Encoders whose contract fit step runs eagerly: the same step traced as a graph costs 3-4 times more (minilm:
# 9.7 -> 3.3 CPU s) and is traced where these encoders are trained: test_minilm's last_k fit step, test_whisper's
# fit step, test_efficientnet_lite's fine-tuning step (lite0; lite1 and lite2 are the same layer with other
# widths and depths), test_cli_e2e's trained run (the LSTM joint model), test_step's resnet.
EAGER_FIT = {"image-efficientnet_lite0", "text-minilm", "audio-whisper_tiny", "text-rnn", "image-resnet"}
# Encoders that are another one's layer with other widths and depths (their own weights): the contract's fit step
# runs on that one (Lite0); build, the branch check and the .keras round trip with the real weights run on each
SAME_LAYER = {
    "image-efficientnet_lite1": "image-efficientnet_lite0",
    "image-efficientnet_lite2": "image-efficientnet_lite0",
}


def _encoder_cases():
    for name, cls in registry.IMAGE_ENCODERS.items():
        yield pytest.param(cls, SMALL_IMAGE[name], "image", id=f"image-{name}")
    for name, cls in registry.TEXT_ENCODERS.items():
        kind = "tfidf" if name == "tfidf" else "text"  # a TF-IDF vector, not token ids
        kind = "strings" if getattr(cls, "takes_raw_text", False) else kind
        yield pytest.param(cls, SMALL_TEXT[name], kind, id=f"text-{name}")
    for name, cls in registry.AUDIO_ENCODERS.items():
        yield pytest.param(cls, SMALL_AUDIO[name], "audio", id=f"audio-{name}")
    for name, cls in registry.TABULAR_ENCODERS.items():
        yield pytest.param(cls, SMALL_TABULAR[name], "numbers", id=f"tabular-{name}")


def _sample(kind, n=6, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "image":
        return rng.integers(0, 256, (n, 16, 16, 3)).astype("uint8")
    if kind == "numbers":
        rows = rng.normal(size=(n, 5)).astype("float32")
        rows[::2, 1] = np.nan  # empty cells, as the table loader emits them
        return rows
    if kind == "tfidf":
        return (rng.random((n, 30)) * (rng.random((n, 30)) < 0.3)).astype("float32")
    if kind == "strings":
        words = np.array(["a", "film", "of", "rare", "beauty", "dull", "plot", "café", "!", "actors"])
        return np.array([" ".join(rng.choice(words, 3 + 2 * i)) for i in range(n)], dtype=object)
    if kind == "audio":  # 0.25 s at 8 kHz: tones in noise
        t = np.arange(2000) / 8000
        tones = np.sin(2 * np.pi * rng.uniform(200, 900, (n, 1)) * t)
        return (tones + 0.1 * rng.normal(size=(n, 2000))).astype("float32")
    ids = rng.integers(1, 50, (n, 12)).astype("int32")
    ids[:, 9:] = 0  # trailing padding, as TextVectorization emits
    return ids


def test_every_registered_layer_has_a_test_case():
    assert set(SMALL_IMAGE) == set(registry.IMAGE_ENCODERS)
    assert set(SMALL_TEXT) == set(registry.TEXT_ENCODERS)
    assert set(SMALL_TABULAR) == set(registry.TABULAR_ENCODERS)
    assert set(SMALL_AUDIO) == set(registry.AUDIO_ENCODERS)
    encoders = {case.id: case.values[0] for case in _encoder_cases()}
    for (
        case,
        same,
    ) in SAME_LAYER.items():  # the same layer: a subclass that changes no method, only its variant
        assert issubclass(encoders[case], encoders[same]), case
        assert [k for k in vars(encoders[case]) if callable(vars(encoders[case])[k])] == ["__init__"], case


def test_presets_defaults_name_registered_encoders():
    assert ImageConfig().encoder in registry.IMAGE_ENCODERS
    assert TextConfig().encoder in registry.TEXT_ENCODERS
    assert TabularConfig().encoder in registry.TABULAR_ENCODERS
    for sub in (ImageConfig().cnn, ImageConfig().resnet, TextConfig().rnn, TextConfig().bag):
        assert dataclasses.is_dataclass(sub)


@pytest.mark.parametrize("cls,kwargs,kind", list(_encoder_cases()))
def test_encoder_contract(cls, kwargs, kind, tmp_path, request, monkeypatch):
    x = _sample(kind)
    inp = keras.Input(x.shape[1:], dtype="string" if kind == "strings" else x.dtype)  # noqa: E501
    layer = cls(**kwargs)
    out = layer(inp)
    assert tuple(out.shape) == (None, layer.output_dim)
    head = keras.layers.Dense(3, activation="softmax")(out)
    model = keras.Model(inp, head)

    # one fit step changes the weights and gives a finite loss
    case = request.node.callspec.id
    if case not in SAME_LAYER:
        model.compile("adam", "sparse_categorical_crossentropy", run_eagerly=case in EAGER_FIT)
        before = [w.copy() for w in model.get_weights()]
        hist = fit_once(model, x, np.arange(len(x)) % 3)
        assert np.isfinite(hist.history["loss"][0])
        assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))

    # behind its modality's mask, the encoder runs only where some sample has the modality (a branch that builds a
    # fresh encoder: test_precision's every-encoder test)
    branch = ModalityBranch(layer)
    absent = branch([x, np.zeros(len(x), "float32")])
    assert np.all(np.asarray(absent) == 0)
    present = branch([x, np.ones(len(x), "float32")])
    assert np.asarray(present).shape == (len(x), layer.output_dim)

    # .keras save/load gives identical predictions; a pretrained encoder's file holds its weights (and MiniLM's
    # vocabulary): loading reads no weight package, so a trained backbone weight is the trained one. Loading
    # remakes the layer from its get_config (through JSON): the config round trip
    path = tmp_path / "m.keras"
    model.save(path)

    def no_package(*args, **kwargs):
        raise AssertionError("a saved model must load without its encoder's weight package")

    monkeypatch.setattr("omnifuse.weights.locate", no_package)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(outputs(model, x), outputs(loaded, x), rtol=1e-6, atol=1e-6)
    restored = next(sub for sub in loaded.layers if isinstance(sub, cls))
    assert restored.get_config() == layer.get_config()
    assert len(restored.trainable_weights) == len(layer.trainable_weights)


def _fusion_inputs(n=5, seed=0):
    rng = np.random.default_rng(seed)
    features = {
        "image": rng.normal(size=(n, 7)).astype("float32"),
        "text": rng.normal(size=(n, 5)).astype("float32"),
    }
    masks = {"image": np.ones(n, "float32"), "text": np.array([1, 0, 1, 0, 1], "float32")[:n]}
    return features, masks


def _fusion_model(cls, **kwargs):
    feats = {"image": keras.Input((7,), name="image"), "text": keras.Input((5,), name="text")}
    masks = {"image": keras.Input((), name="image_mask"), "text": keras.Input((), name="text_mask")}
    fusion = cls(modalities=["image", "text"], name="fusion", **{"dim": 8, **kwargs})
    out = fusion(feats, masks)
    outputs = {}
    if fusion.returns_weights:
        out, weights = out
        outputs["weights"] = keras.layers.Identity(name="weights")(weights)
    outputs["y"] = keras.layers.Dense(3, activation="softmax", name="y")(out)
    inputs = {**feats, **{f"{k}_mask": v for k, v in masks.items()}}
    return keras.Model(inputs, outputs), fusion


def _feed(features, masks):
    return {**features, **{f"{k}_mask": v for k, v in masks.items()}}


@pytest.mark.parametrize(
    "name,kwargs",
    [(name, {}) for name in sorted(registry.FUSIONS)]
    + [("attention", {"normalize": True}), ("attention", {"dim": 0}), ("concat", {"dim": 0})],
    ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()) or "default",
)
def test_fusion_contract(name, kwargs, tmp_path):
    cls = registry.FUSIONS[name]
    model, fusion = _fusion_model(cls, **kwargs)
    features, masks = _fusion_inputs()
    out = outputs(model, _feed(features, masks))
    assert out["y"].shape == (5, 3)

    if fusion.returns_weights:
        w = out["weights"]
        assert w.shape == (5, 2)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
        assert np.all(w[masks["text"] == 0, 1] == 0.0), "a masked modality must get weight exactly 0"

    # a masked modality's content cannot change the output
    changed = dict(features, text=features["text"] * 100 + 7)
    out2 = outputs(model, _feed(changed, masks))
    absent = masks["text"] == 0
    np.testing.assert_allclose(out["y"][absent], out2["y"][absent], rtol=1e-6, atol=1e-6)
    assert not np.allclose(out["y"][~absent], out2["y"][~absent])

    clone = cls.from_config(fusion.get_config())
    assert clone.get_config() == fusion.get_config()

    # traced as a graph: test_fusions' every-fusion training is one step, which runs eagerly (train.eager), so
    # this is where each fusion's training step is traced
    model.compile("adam", {"y": "sparse_categorical_crossentropy"})
    hist = fit_once(model, _feed(features, masks), {"y": np.arange(5) % 3})
    assert np.isfinite(hist.history["loss"][0])

    path = tmp_path / "fusion.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    a, b = outputs(model, _feed(features, masks)), outputs(loaded, _feed(features, masks))
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-6)


def test_unprojected_attention_passes_the_widest_modality_on_and_projects_the_narrower():
    from omnifuse.fusion.attention import AttentionFusion

    model, fusion = _fusion_model(AttentionFusion, dim=0)
    assert (
        sorted(fusion.proj) == ["text"] and fusion.proj["text"].units == 7
    )  # image (7 wide) has no projection
    features, masks = _fusion_inputs()
    fused = keras.Model(model.inputs, fusion.output[0]).predict_on_batch(_feed(features, masks))
    assert fused.shape == (5, 7)
    alone = masks["text"] == 0  # the image alone: its features pass on exactly
    np.testing.assert_allclose(fused[alone], features["image"][alone], rtol=1e-6)
    both = ~alone
    assert not np.allclose(fused[both], features["image"][both])


def test_fusion_normalize_is_an_attention_option_and_named_elsewhere():
    from omnifuse.config import Config
    from omnifuse.errors import OmnifuseError
    from omnifuse.model.builder import build_model

    tasks = {"y": ["a", "b"]}
    cfg = Config().replace(["model.fusion=attention", "model.fusion_normalize=true"])
    model = build_model(cfg, {"image": "image"}, tasks)
    assert model.get_layer("fusion").get_config()["normalize"] is True
    with pytest.raises(OmnifuseError, match="model.fusion_normalize.*'gated'"):
        build_model(cfg.replace(["model.fusion=gated"]), {"image": "image"}, tasks)


def test_nb_encoder_counts_each_ngram_once_and_learns_ratios_from_labels():
    from omnifuse.encoders.text import TextNB

    ids = np.array([[3, 3, 5, 0], [3, 3, 3, 0]], "int32")
    assert sorted(np.asarray(TextNB.distinct(ids))[0].tolist()) == [0, 0, 3, 5]
    assert sorted(np.asarray(TextNB.distinct(ids))[1].tolist()) == [0, 0, 0, 3]

    # id 2 only in class-0 texts, id 3 only in class 1, id 4 in both; the unlabelled text (-1) is left out
    texts = np.array([[2, 4, 0], [2, 4, 2], [3, 4, 0], [3, 0, 0], [3, 3, 3]], "int32")
    labels = np.array([0, 0, 1, 1, -1])
    layer = TextNB(vocab_size=6, classes=2, fit="learn", prior=1.0, scale=1.0, l2=0.0, smoothing=1.0)
    layer.adapt([(texts[:2], labels[:2]), (texts[2:], labels[2:])])
    ratio = np.asarray(layer.ratio)
    # class 0: counts (id 2: 2, id 3: 0, id 4: 2) + 1 over total 3 + 6 ... against class 1: (0, 2, 1) + 1
    own = np.array([1, 1, 3, 1, 3, 1], float)
    rest = np.array([1, 1, 1, 3, 2, 1], float)
    expected = np.log(own / own.sum()) - np.log(rest / rest.sum())
    np.testing.assert_allclose(ratio[2:, 0], expected[2:], rtol=1e-5)
    np.testing.assert_allclose(ratio[:, 1], -ratio[:, 0], atol=1e-6)  # two classes: one ratio, mirrored
    assert ratio[0].tolist() == [0.0, 0.0]  # padding carries no evidence
    # a text with id 2 twice counts it once; its class-0 evidence is the ratio of 2 plus that of 4
    out = np.asarray(layer(np.array([[2, 2, 4, 0]], "int32")))
    np.testing.assert_allclose(out[0, 0], expected[2] + expected[4], rtol=1e-5)
    with pytest.raises(ValueError, match="class indices below 2"):
        layer.adapt([(texts[:1], np.array([2]))])


def test_nb_encoder_nbsvm_fit_separates_the_training_texts_and_stays_fixed():
    from omnifuse.encoders.text import TextNB

    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    # ids 2-4 mark class 0, 5-7 class 1, 8-10 class 2; ids 11-40 are noise shared by all classes
    texts = np.concatenate(
        [2 + 3 * labels[:, None] + rng.integers(0, 3, (60, 2)), rng.integers(11, 41, (60, 6))], axis=1
    ).astype("int32")
    layer = TextNB(vocab_size=41, classes=3, c=10.0)
    layer.adapt([(texts, labels)])
    margins = np.asarray(layer(texts))
    assert (margins.argmax(axis=1) == labels).all()
    assert not layer.trainable_weights  # NBSVM's weights are fitted once, not trained further
    # cross-fitting: in training, each text gets the margins of the fit on the other folds, chosen by its n-grams
    folds = layer._fold_numpy([np.unique(row) for row in texts])
    assert set(folds) == set(range(5))
    seen = np.asarray(layer(texts, training=True))
    assert not np.allclose(seen, margins)
    table = np.asarray(layer.fold_weight).reshape(5, 41, 3)
    k, row = folds[7], np.unique(texts[7])
    expected = table[k, row].sum(axis=0) + np.asarray(layer.fold_bias)[k]
    np.testing.assert_allclose(seen[7], expected, rtol=1e-5, atol=1e-5)
    clone = TextNB.from_config(layer.get_config())
    assert clone.fit == "nbsvm" and clone.c == 10.0


def test_rnn_nb_model_learns_ngram_ratios_from_training_labels():
    from omnifuse.config import load_config
    from omnifuse.model.builder import build_model

    cfg = load_config(
        "imdb-lstm",
        [
            "model.text.encoder=rnn+nb",
            "model.text.vocab_size=50",
            "model.text.sequence_length=8",
            "model.text.nb.ngrams=2",
            "model.text.rnn.units=4",
            "model.text.rnn.embed_dim=4",
        ],
    )
    texts = ["good fun film", "great good acting", "bad boring film", "awful bad plot"]
    labels = np.array([1, 1, 0, 0])
    model = build_model(
        cfg, {"text": "text"}, {"sentiment": ["neg", "pos"]}, texts, text_labels=("sentiment", labels)
    )
    layer = model.get_layer("text_branch_nb").encoder
    vocab = model.get_layer("text_vectorize_nb").get_vocabulary()
    ratio = np.asarray(layer.ratio)
    assert ratio[vocab.index("good"), 1] > 0 > ratio[vocab.index("bad"), 1]
    assert ratio[vocab.index("bad boring"), 0] > 0  # bigrams are features too
    out = outputs(model, {"text": np.array(texts), "text_mask": np.ones(4, "float32")})
    assert out["sentiment"].shape == (4, 2)


@pytest.mark.parametrize(
    "options",
    [
        dict(conv_filters=8, conv_pool=4, pooling="max"),
        dict(pooling="last", bidirectional=True),
        dict(conv_filters=8, conv_pool=2, pooling="last", bidirectional=True, cell="gru"),
        dict(
            conv_filters=8, conv_pool=2, pooling="maxmean", bidirectional=True, cell="gru", word_dropout=0.3
        ),
    ],
    ids=["conv-pool4-max", "bidirectional-last", "conv-pool2-gru", "conv-pool2-maxmean"],
)
def test_rnn_encoder_answers_a_short_text_alone_as_beside_a_long_one(options):
    """At inference the RNN encoder drops the padding after the batch's longest text (a short sentence runs a few
    steps, not sequence_length / conv_pool); that must not change any answer."""
    from omnifuse.encoders.text import TextRNN

    encoder = TextRNN(vocab_size=50, embed_dim=8, units=6, **options)
    rng = np.random.default_rng(0)
    ids = np.zeros((2, 40), "int32")
    ids[0, :7] = rng.integers(1, 50, 7)
    ids[1, :] = rng.integers(1, 50, 40)
    alone = np.asarray(encoder(ids[:1], training=False))
    beside = np.asarray(encoder(ids, training=False))
    np.testing.assert_allclose(alone, beside[:1], rtol=1e-5, atol=1e-6)
    assert encoder._trim_padding(ids[:1]).shape[1] < 40 <= encoder._trim_padding(ids).shape[1]
    assert beside.shape == (2, encoder.output_dim)


def test_rnn_encoder_bigram_embedding_hashes_each_word_pair_and_sees_word_order():
    from omnifuse.encoders.text import TextRNN

    encoder = TextRNN(vocab_size=50, embed_dim=8, units=6, bigram_buckets=97, dropout=0.0, pooling="max")
    ids = np.array([[5, 7, 5, 7, 0, 0], [7, 5, 9, 0, 0, 0]], "int32")
    buckets = np.asarray(encoder.bigram_ids(ids))
    pair = lambda a, b: (a * 1000003 + b) % 97 + 1  # noqa: E731
    np.testing.assert_array_equal(
        buckets, [[0, pair(5, 7), pair(7, 5), pair(5, 7), 0, 0], [0, pair(7, 5), pair(5, 9), 0, 0, 0]]
    )
    out = np.asarray(encoder(ids))
    assert encoder.bigram_embedding.embeddings.shape == (98, 8)
    # the bigram table takes part: zeroing it changes the answer
    encoder.bigram_embedding.embeddings.assign(np.zeros((98, 8), "float32"))
    assert not np.allclose(out, np.asarray(encoder(ids)))
    clone = TextRNN.from_config(encoder.get_config())
    assert clone.bigram_buckets == 97


def test_rnn_encoder_word_dropout_drops_whole_tokens_in_training_only():
    from omnifuse.encoders.text import TextRNN

    encoder = TextRNN(vocab_size=50, embed_dim=8, units=6, word_dropout=0.5, dropout=0.0, pooling="maxmean")
    ids = np.random.default_rng(0).integers(1, 50, (4, 30)).astype("int32")
    encoder(ids)  # build
    embedded = encoder.embedding(ids)
    dropped = np.asarray(encoder.word_drop(embedded, training=True))
    token_zero = np.all(dropped == 0, axis=-1)
    value_zero = dropped == 0
    assert 0.3 < token_zero.mean() < 0.7  # about half the tokens, each as a whole
    np.testing.assert_array_equal(value_zero, np.broadcast_to(token_zero[..., None], value_zero.shape))
    np.testing.assert_allclose(np.asarray(encoder(ids)), np.asarray(encoder(ids)))  # inference: no dropout
    assert encoder.output_dim == 6 * 2  # max and mean of 6 units


@pytest.mark.parametrize(
    "kind,name",
    [
        (kind.__name__.rsplit(".", 1)[1], name)
        for kind in (audio, image, numbers, text)
        for name in kind.ENCODERS
    ],
)
def test_encoder_defaults_are_their_configs(kind, name):
    # one default per option: an encoder built from code without options is the one its config describes
    import inspect

    table = {"audio": audio, "image": image, "numbers": numbers, "text": text}[kind]
    params = inspect.signature(table.ENCODERS[name].__init__).parameters
    config = table.CONFIGS[name]()
    for option in dataclasses.fields(config):
        default = params.get(option.name, inspect.Parameter("x", inspect.Parameter.KEYWORD_ONLY)).default
        if default is not inspect.Parameter.empty:
            want = getattr(config, option.name)
            assert list(default) == list(want) if isinstance(want, (list, tuple)) else default == want, (
                option.name
            )


def test_a_bidirectional_text_rnn_builds_right_inside_a_keras_loading_scope():
    # while a model loads, Keras records each serialized object by id(); when a new layer sits at the address of a
    # recorded, since freed one, deserializing hands back the stale object. Forced here: every id is "recorded",
    # and every lookup returns one forward GRU; built outside the sharing maps, the two directions stay two layers.
    from keras.src.backend.common import global_state
    from keras.src.saving import serialization_lib

    from omnifuse.encoders.text import TextRNN

    stale = keras.layers.GRU(4, return_sequences=True)

    class Everything(dict):
        def __contains__(self, key):
            return True

        def __getitem__(self, key):
            return {}

        def get(self, key, default=None):
            return stale

    with serialization_lib.ObjectSharingScope():
        global_state.set_global_attribute("shared_objects/id_to_obj_map", Everything())
        global_state.set_global_attribute("shared_objects/id_to_config_map", Everything())
        encoder = TextRNN(vocab_size=50, embed_dim=8, units=4, cell="gru", bidirectional=True, pooling="max")
        assert global_state.get_global_attribute("shared_objects/id_to_obj_map").get(0) is stale  # restored
    rnn = encoder.rnn
    assert rnn.forward_layer is not stale and rnn.backward_layer is not stale
    assert not rnn.forward_layer.go_backwards and rnn.backward_layer.go_backwards
