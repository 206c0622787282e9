"""Each modality kind's one definition: input, blank, and the corruption rule shared by training and evaluation."""

import numpy as np
import pytest
import tensorflow as tf

from omnifuse import modalities
from omnifuse.errors import OmnifuseError


def test_every_kind_has_its_parts_and_an_unknown_kind_names_the_valid_ones():
    # features: a frozen encoder's cached output, a kind only while training (omnifuse/features.py)
    assert set(modalities.KINDS) == {"image", "text", "audio", "numbers", "features"}
    for rule in modalities.KINDS.values():
        assert rule.LEVELS[0] == 0 and rule.LEVELS[-1] == rule.MAX_LEVEL
    with pytest.raises(OmnifuseError, match="'video'.*'clip'.*image, text, audio, numbers, features"):
        modalities.kind("video", "clip")


@pytest.mark.parametrize(
    "kind,shape,dtype",
    [
        ("image", (4, 4, 3), tf.uint8),
        ("audio", (8,), tf.float32),
        ("numbers", (3,), tf.float32),
        ("text", (), tf.string),
    ],
)
def test_blanks_have_the_inputs_shape_and_dtype(kind, shape, dtype):
    got = modalities.sample_shape(kind, image_shape=(4, 4, 3), num_samples=8, width=3)
    assert got == shape
    blank = modalities.kind(kind).blank(2, got)
    assert blank.dtype == dtype and tuple(blank.shape) == (2, *shape)


def test_numbers_noise_follows_each_column_and_keeps_a_row_with_an_empty_cell():
    x = np.array([[1.0, 100.0, np.nan], [2.0, 300.0, 5.0], [3.0, 200.0, 7.0], [4.0, 400.0, 6.0]], np.float32)
    level = tf.fill([4], 1.0)
    out = modalities.numbers.corrupt(tf.constant(x), level, tf.constant([1, 2], tf.int64)).numpy()
    # the empty cell stays empty, every other cell of its row (and of the others) gets finite noise
    assert np.isnan(out[0, 2]) and np.isfinite(np.delete(out.ravel(), 2)).all()
    noise = out - x
    assert np.abs(noise[:, 1]).mean() > 20 * np.abs(noise[:, 0]).mean()  # column 1 spreads 100x column 0
    std = modalities.numbers.column_std(tf.constant(x)).numpy()[0]
    np.testing.assert_allclose(std, np.nanstd(x, axis=0), rtol=1e-5)


def test_the_evaluation_corrupts_with_the_training_rule():
    from omnifuse.evaluation import corrupt

    x = np.array([[1.0, np.nan], [2.0, 4.0], [3.0, 8.0]], np.float32)
    out = corrupt(x, "numbers", 1.0, (3, 4))
    assert np.isnan(out[0, 1]) and np.isfinite(out[0, 0]) and not np.array_equal(out[1:], x[1:])
    want = modalities.numbers.corrupt(
        tf.constant(x), tf.fill([3], 1.0), tf.constant([3, 4], tf.int64)
    ).numpy()
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(corrupt(x, "numbers", 0.0, (3, 4)), x)
    texts = np.array([b"one two three four", b"five six"], object)
    assert list(corrupt(texts, "text", 1.0, (0, 1))) == [b"", b""]
    images = np.full((2, 4, 4, 1), 128, np.uint8)
    images[0, 0, 0, 0] = 0
    noisy = corrupt(images, "image", 2.0, (0, 1))
    assert noisy.dtype == np.uint8 and not np.array_equal(noisy[0], images[0])


FACTS = dict(image_shape=(4, 4, 3), sample_rate=8000, num_samples=80, spec={"features": ["a", "b", "c"]})
SERVED = ["image", "text", "audio", "numbers"]  # features: only while training, never sent to a model


@pytest.mark.parametrize("name", SERVED)
def test_each_served_kind_decodes_its_own_examples_and_warm_up_sample_into_its_input(name):
    from omnifuse.limits import DEFAULT_LIMITS

    rule = modalities.kind(name)
    width = len(FACTS["spec"]["features"])
    shape = modalities.sample_shape(name, image_shape=(4, 4, 3), num_samples=80, width=width)
    samples = list(rule.example(2, np.random.default_rng(0), **FACTS))
    out, mask = rule.decode("m", [*samples, None, rule.warm_up(**FACTS)], limits=DEFAULT_LIMITS, **FACTS)
    assert out.shape == (4, *shape) and list(mask) == [1.0, 1.0, 0.0, 1.0]
    assert out.dtype == (object if name == "text" else np.dtype(rule.DTYPE))
    for got, want in zip(out[:2], samples):
        assert got == want if name == "text" else np.array_equal(got, want)


@pytest.mark.parametrize("name", SERVED)
def test_each_served_kind_says_how_a_request_carries_it_and_how_to_spoil_one(name):
    rule = modalities.kind(name)
    assert rule.REQUEST in ("file", "text", "json")
    assert isinstance(rule.CONTENT_TYPES, tuple) and (rule.REQUEST != "file" or rule.CONTENT_TYPES)
    info = {"kind": name, **rule.describe(**FACTS)}
    for how, value in rule.bad_requests("m", info, np.random.default_rng(0)).values():
        assert how == "json" or (how == "part" and isinstance(value[1], bytes))


def test_a_decode_error_names_the_modality_and_a_features_modality_is_not_decoded():
    from omnifuse.limits import DEFAULT_LIMITS

    with pytest.raises(OmnifuseError, match="'words'.*Received: int"):
        modalities.text.decode("words", [3], limits=DEFAULT_LIMITS, **FACTS)
    with pytest.raises(OmnifuseError, match=r"shape \(4, 4, 3\).*Received: shape \(2, 2, 3\)"):
        modalities.image.decode("photo", [np.zeros((2, 2, 3))], limits=DEFAULT_LIMITS, **FACTS)
    with pytest.raises(OmnifuseError, match="'features' of 'clip' is not supported"):
        modalities.features.decode("clip", [np.zeros(3)], limits=DEFAULT_LIMITS, **FACTS)


@pytest.mark.parametrize("name", SERVED)
def test_each_served_kind_summarises_its_explanation_and_shows_a_sample_in_the_report(name, tmp_path):
    rule = modalities.kind(name)
    sample = rule.example(1, np.random.default_rng(0), **FACTS)[0]
    if rule.EXPLAIN == "integrated_gradients":  # an attribution of 1 per input value
        why = rule.summarise(
            np.ones(np.shape(sample)), segments=4, sample_rate=8000, features=["a", "b", "c"]
        )
        scores = why.get("heatmap", why.get("scores", list(why.get("columns", {}).values())))
        assert float(np.sum(scores)) == pytest.approx(np.size(sample))  # every value's share is kept
    else:
        assert rule.EXPLAIN == "word_occlusion"
        why = {"words": sample.split(), "scores": [0.5] * len(sample.split())}
    part = rule.show(sample, why, tmp_path / "p.png", sample_rate=8000, top=2)
    if "png" in part:
        assert part["png"] == "p.png" and (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    elif "words" in part:
        assert part["n_words"] == len(part["words"]) == 8
    else:
        assert [c[0] for c in part["columns"]] == ["a", "b"] and part["columns"][0][1] == float(sample[0])


@pytest.mark.parametrize("name", SERVED)
def test_each_served_kind_keys_its_duplicates_and_glimpses_a_sample_for_a_table(name, tmp_path):
    rule = modalities.kind(name)
    assert rule.CELL in ("path", "text", "columns") and (rule.CELL != "path" or rule.SUFFIXES)
    assert modalities.held_as(name) == rule.CELL and modalities.held_as("category") == "value"
    samples = rule.example(2, np.random.default_rng(0), **FACTS)
    values = np.stack([samples[0], samples[1], samples[0]]) if name != "text" else samples[[0, 1, 0]]
    (a, b, again) = rule.duplicate_keys(values, 0.95)
    assert a == again and a[0] != b[0]  # the same sample's keys match, another's exact key differs
    shown = rule.glimpse(samples[0], "m", tmp_path / "thumbs", "s1", chars=10)
    assert shown is None or shown.startswith(("![m](thumbs/s1_m.png)", "m: “"))
    assert (tmp_path / "thumbs" / "s1_m.png").is_file() == (shown or "").startswith("![")


def test_the_kinds_suffixes_are_the_loaders_and_never_overlap():
    from omnifuse.data.schema import SUFFIX_KINDS

    owned = {s: name for name, rule in modalities.KINDS.items() for s in rule.SUFFIXES}
    assert owned == SUFFIX_KINDS
    assert (SUFFIX_KINDS[".jpeg"], SUFFIX_KINDS[".wave"], SUFFIX_KINDS[".txt"]) == ("image", "audio", "text")
    assert sum(len(rule.SUFFIXES) for rule in modalities.KINDS.values()) == len(owned)


def test_each_table_column_kind_is_one_kinds_and_read_by_it(tmp_path):
    from PIL import Image

    from omnifuse.data.cells import Decoder
    from omnifuse.data.schema import KINDS

    # every column kind of data.kinds but the non-inputs names the kind that reads it; numbers holds two
    assert {c: m.__name__.rpartition(".")[2] for c, m in modalities.COLUMNS.items()} == {
        "image": "image",
        "text": "text",
        "audio": "audio",
        "number": "numbers",
        "category": "numbers",
    }
    assert KINDS == ("image", "text", "audio", "number", "category", "ignore", "group")
    Image.fromarray(np.full((6, 4, 3), 200, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "t.txt").write_text("  \n")
    files = Decoder(tmp_path, None, sample_rate=8000, num_samples=5)
    image = modalities.of_column("image").read_cell(" a.png ", files, "image")
    assert image.shape == (6, 4, 3) and files.image_size == (6, 4)  # the first image fixed the size
    assert modalities.of_column("image").column_array(2, files).shape == (2, 6, 4, 3)
    assert modalities.of_column("audio").column_array(2, files).shape == (2, 5)
    with pytest.raises(OmnifuseError, match="file not found: 'b.wav'"):
        modalities.of_column("audio").read_cell("b.wav", files, "audio")
    text = modalities.of_column("text")
    assert text.read_cell("a cat", files, "text") == "a cat"
    assert (
        text.read_cell(tmp_path / "t.txt", files, "text") is None
    )  # a blank file: the sample lacks the text
    numbers = modalities.of_column("number")
    assert numbers.read_cell(" 2.5 ", files, "number") == 2.5
    assert numbers.read_cell(" tabby ", files, "category") == "tabby"
    with pytest.raises(OmnifuseError, match="expected a number. Received: 'x1'"):
        numbers.read_cell(" x1 ", files, "number")
    # ids: a row number, or a different single word per row; never a path
    assert numbers.id_reason(["1", "2", "3"], "number") and not numbers.id_reason(["1", "2", "3"], "category")
    assert text.id_reason(["P1", "P2", "P3"], "text") and not text.id_reason(["a/b", "c/d", "e/f"], "text")


def test_only_text_learns_a_vocabulary_and_with_vocabulary_picks_its_modalities():
    assert [k for k, rule in modalities.KINDS.items() if rule.VOCABULARY] == ["text"]
    picked = modalities.with_vocabulary({"review": "text", "photo": "image", "title": "text", "odd": "video"})
    assert picked == ["review", "title"]


def test_as_input_gives_grey_images_a_channel_and_texts_an_object_array():
    grey = np.zeros((2, 4, 4), np.uint8)
    assert modalities.image.as_input(grey).shape == (2, 4, 4, 1)
    assert modalities.image.as_input(grey[..., None]).shape == (2, 4, 4, 1)
    texts = modalities.text.as_input(np.array(["a", "much longer text"]))
    assert texts.dtype == object and list(texts) == ["a", "much longer text"]
    assert modalities.text.as_input(np.array([], object)).shape == (0,)
    rows = np.ones((2, 3), np.float32)
    for name in ("audio", "numbers", "features"):
        assert modalities.kind(name).as_input(rows) is rows
