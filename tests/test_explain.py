"""Explanations: on models whose label depends on one known region, word or column, the attribution finds it; a
randomised model's attributions differ (Adebayo et al. 2018); explain=True and --explain on a trained run."""

import json

import keras
import numpy as np
import pytest
from fixtures_serving import trained_run
from keras_steps import fit_once
from typer.testing import CliRunner

import omnifuse
from omnifuse.cli import app
from omnifuse.evaluation.explain import Explainer

RNG = np.random.default_rng(0)
WORDS = ["the", "film", "was", "long", "story", "plot", "actor", "scene", "music", "end"]


def _fit(model, feed, labels, epochs):
    keras.utils.set_random_seed(0)
    model.compile(keras.optimizers.Adam(1e-2), {"t": "sparse_categorical_crossentropy"})
    fit_once(model, feed, {"t": labels}, epochs=epochs, batch_size=32)  # the training step traced once
    return model


def _image_model():
    image = keras.Input((16, 16, 1), dtype="uint8", name="image")
    mask = keras.Input((), name="image_mask")
    x = keras.layers.Rescaling(1 / 255)(keras.ops.cast(image, "float32"))
    x = keras.layers.Conv2D(4, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x) * keras.ops.expand_dims(mask, -1)
    return keras.Model([image, mask], {"t": keras.layers.Dense(2, activation="softmax", name="t")(x)})


def _images(n):
    """Noise everywhere; the label is whether the top-left 4x4 patch is bright."""
    images = RNG.integers(0, 120, (n, 16, 16, 1)).astype(np.uint8)
    labels = RNG.integers(0, 2, n)
    images[labels == 1, :4, :4] = 250
    return {"image": images, "image_mask": np.ones(n, np.float32)}, labels


@pytest.fixture(scope="module")
def image_model():
    feed, labels = _images(600)
    # 5 epochs: the two tests on it passed with 3 and 4 for seeds 0, 1 and 2 (of _images and the weights)
    return _fit(_image_model(), feed, labels, epochs=5)


def _region_share(heatmaps):
    """Mean |attribution| per pixel inside the top-left patch over that outside it."""
    inside = np.abs(heatmaps[:, :4, :4]).mean()
    outside = (np.abs(heatmaps).sum() - np.abs(heatmaps[:, :4, :4]).sum()) / (
        heatmaps.size - heatmaps[:, :4, :4].size
    )
    return inside / outside


def test_image_attribution_finds_the_region_the_label_depends_on(image_model):
    feed, labels = _images(40)
    feed = {k: v[labels == 1] for k, v in feed.items()}
    found = Explainer(image_model, {"image": "image"}).explain(feed)
    assert all(f["t"]["class_index"] == 1 for f in found)  # the model learnt the rule
    heat = np.stack([f["t"]["image"]["heatmap"] for f in found])
    assert heat.shape[1:] == (16, 16)
    assert _region_share(heat) > 5


def test_a_randomised_model_gets_different_attributions(image_model):
    feed, labels = _images(40)
    feed = {k: v[labels == 1] for k, v in feed.items()}
    trained = np.stack(
        [f["t"]["image"]["heatmap"] for f in Explainer(image_model, {"image": "image"}).explain(feed)]
    )
    again = np.stack(
        [f["t"]["image"]["heatmap"] for f in Explainer(image_model, {"image": "image"}).explain(feed)]
    )
    assert np.allclose(trained, again)  # deterministic
    keras.utils.set_random_seed(1)
    randomised = keras.models.clone_model(image_model)  # the same architecture, fresh random weights
    target = {"t": np.ones(len(trained), np.int64)}
    random = np.stack(
        [
            f["t"]["image"]["heatmap"]
            for f in Explainer(randomised, {"image": "image"}).explain(feed, targets=target)
        ]
    )
    from scipy.stats import spearmanr

    rho = np.mean([spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(trained, random)])
    assert rho < 0.5
    assert _region_share(random) < 0.5 * _region_share(trained)


def test_word_occlusion_finds_the_word_the_label_depends_on():
    vocab = WORDS + ["zebra"]
    texts, labels = [], []
    for _ in range(600):
        words = list(RNG.choice(WORDS, 6))
        label = int(RNG.integers(0, 2))
        if label:
            words.insert(int(RNG.integers(0, 6)), "zebra")
        texts.append(" ".join(words))
        labels.append(label)
    text = keras.Input((), dtype="string", name="text")
    mask = keras.Input((), name="text_mask")
    ids = keras.layers.TextVectorization(vocabulary=vocab, output_sequence_length=8)(text)
    x = keras.layers.GlobalMaxPooling1D()(keras.layers.Embedding(len(vocab) + 2, 8)(ids))
    x = x * keras.ops.expand_dims(mask, -1)
    model = keras.Model([text, mask], {"t": keras.layers.Dense(2, activation="softmax", name="t")(x)})
    feed = {"text": np.array(texts, object), "text_mask": np.ones(len(texts), np.float32)}
    # 6 epochs: this test passed with 3 and 4 for seeds 0, 1 and 2 (of the texts and the weights)
    _fit(model, feed, np.array(labels), epochs=6)

    probe = ["the zebra film was long", "story plot zebra", "zebra music end scene actor"]
    found = Explainer(model, {"text": "text"}).explain(
        {"text": np.array(probe, object), "text_mask": np.ones(3, np.float32)}
    )
    for sentence, f in zip(probe, found):
        assert f["t"]["class_index"] == 1  # the model learnt the rule
        part = f["t"]["text"]
        assert part["method"] == "word_occlusion" and part["words"] == sentence.split()
        assert part["words"][int(np.argmax(part["scores"]))] == "zebra"


def test_long_texts_are_occluded_in_bounded_spans():
    text = keras.Input((), dtype="string", name="text")
    mask = keras.Input((), name="text_mask")
    ids = keras.layers.TextVectorization(vocabulary=WORDS, output_sequence_length=8)(text)
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(len(WORDS) + 2, 4)(ids))
    model = keras.Model(
        [text, mask], {"t": keras.layers.Dense(2, activation="softmax", name="t")(x * mask[:, None])}
    )
    long_text = " ".join(RNG.choice(WORDS, 200))
    part = Explainer(model, {"text": "text"}, max_words=16).explain(
        {"text": np.array([long_text], object), "text_mask": np.ones(1, np.float32)}
    )[0]["t"]["text"]
    assert len(part["words"]) <= 16 and " ".join(part["words"]) == long_text


def test_numbers_attribution_finds_the_column_and_adds_up():
    # its own data and weights (not what earlier tests left in the global generators); column c is kept at least
    # 0.5 from the boundary, so every sample's label clearly depends on it (seeds 0, 1, 2 pass)
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).standard_normal((800, 5)).astype(np.float32)
    x[:, 2] += np.where(x[:, 2] >= 0, 0.5, -0.5)
    labels = (x[:, 2] > 0).astype(int)
    numbers = keras.Input((5,), name="tabular")
    mask = keras.Input((), name="tabular_mask")
    h = keras.layers.Dense(16, activation="relu")(numbers * keras.ops.expand_dims(mask, -1))
    model = keras.Model([numbers, mask], {"t": keras.layers.Dense(2, activation="softmax", name="t")(h)})
    _fit(model, {"tabular": x, "tabular_mask": np.ones(800, np.float32)}, labels, epochs=10)
    names = ["a", "b", "c", "d", "e"]
    feed = {"tabular": x[:20], "tabular_mask": np.ones(20, np.float32)}
    found = Explainer(model, {"tabular": "numbers"}, {"tabular": names}, steps=64).explain(feed)
    baseline = model.predict_on_batch(
        {"tabular": np.zeros_like(x[:20]), "tabular_mask": feed["tabular_mask"]}
    )["t"]
    for i, f in enumerate(found):
        columns = f["t"]["tabular"]["columns"]
        assert max(columns, key=lambda c: abs(columns[c])) == "c"
        # completeness: the attributions add up to p(x) - p(baseline)
        want = f["t"]["probability"] - float(baseline[i, f["t"]["class_index"]])
        assert sum(columns.values()) == pytest.approx(want, abs=0.02)


def test_an_absent_modality_gets_no_explanation(image_model):
    feed, _ = _images(2)
    feed["image_mask"][1] = 0.0
    found = Explainer(image_model, {"image": "image"}).explain(feed)
    assert "image" in found[0]["t"] and "image" not in found[1]["t"]


def test_predict_explain_on_a_trained_run(tmp_path_factory, tmp_path):
    from fixtures_serving import png_bytes

    run = trained_run(tmp_path_factory, "tiny-joint")
    predictor = omnifuse.load(run)
    answer = predictor.predict(image=png_bytes(), text="a wonderful film", explain=True)
    json.dumps(answer)  # JSON-ready
    for task in ("cifar10", "sentiment"):
        found = answer["explanation"][task]
        assert found["class"] == answer["tasks"][task]["class"]
        assert np.asarray(found["image"]["heatmap"]).shape == (32, 32)
        assert found["text"]["words"] == ["a", "wonderful", "film"]
    text_only = predictor.predict(text="a dull film", explain=True)
    assert "image" not in text_only["explanation"]["sentiment"]

    (tmp_path / "x.png").write_bytes(png_bytes())
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(run),
            "--image",
            str(tmp_path / "x.png"),
            "--text",
            "a dull film",
            "--explain",
            "--explain-dir",
            str(tmp_path / "why"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "word occlusion" in result.output
    assert (tmp_path / "why" / "image-sentiment-explanation.png").read_bytes()[:4] == b"\x89PNG"
