"""Missing modalities end to end: modality dropout, every fusion trained and asked with one modality missing, the
robustness report, and modality weights that fall when their modality is corrupted."""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf
from fixtures_media import tone, wav_bytes, write_mnist

import omnifuse
from omnifuse import pipeline, registry
from omnifuse.config import Config
from omnifuse.data import Dataset, Split
from omnifuse.errors import OmnifuseError

TINY = [
    "train.epochs=1",
    "train.batch_size=64",
    "train.verbose=0",
    "track.tensorboard=false",  # no TensorBoard logs: tests/test_tracking.py checks them
    "train.early_stopping=0",
    "data.val_fraction=0",
    "data.limit_train=48",
    "data.num_samples=1000",
    "model.audio.cnn.filters=[4]",
    "model.audio.cnn.dense_units=8",
    "model.image.cnn.filters=[4]",
    "model.image.cnn.dense_units=8",
    "model.fusion_dim=8",
]


def write_noisy_fsdd(root, speakers=("ann", "bob", "cid"), per_digit=10, noisy_share=0.3, seed=0):
    """FSDD ``recordings/*.wav`` (8 kHz mono PCM_16): one tone per digit; a seeded ``noisy_share`` of the recordings
    drowned in noise (SNR about -6 dB), so that how far the audio can be trusted varies from sample to sample."""
    folder = root / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for speaker in speakers:
        for digit in range(10):
            for index in range(per_digit):
                wave = tone(digit, 8000, float(rng.uniform(0.3, 0.5)), rng)
                if rng.random() < noisy_share:
                    wave = np.clip(wave + rng.normal(0, 0.5, len(wave)), -1, 1).astype(np.float32)
                (folder / f"{digit}_{speaker}_{index}.wav").write_bytes(wav_bytes(wave, 8000))
    return folder


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("av")
    write_noisy_fsdd(
        root
    )  # takes 0-4 of each speaker and digit are the official test split: 150 test, 150 train
    write_mnist(root, n_train=300, n_test=150)
    return root


# ------------------------------------------------------------------------------------------ modality dropout


def _two_modality_set(n=400, text_present=None):
    inputs = {
        "image": np.full((n, 4, 4, 1), 200, np.uint8),
        "text": np.array(["a b c"] * n, dtype=object),
    }
    masks = {} if text_present is None else {"text": text_present.astype(np.float32)}
    split = Split(inputs=inputs, labels={"y": np.arange(n) % 2}, masks=masks)
    return Dataset(
        "toy", {"train": split, "test": split}, {"y": ["a", "b"]}, {"image": "image", "text": "text"}
    )


def _collect(ds):
    batches = [x for x, _ in ds]
    return {k: np.concatenate([b[k].numpy() for b in batches]) for k in batches[0]}


def test_modality_dropout_drops_each_present_modality_never_all():
    n = 2000
    text_present = np.arange(n) % 4 != 0  # a quarter of the samples have the image only
    ds = tf.data.Dataset.from_tensor_slices(
        (
            {
                "image": np.full((n, 4, 4, 1), 200, np.uint8),
                "image_mask": np.ones(n, np.float32),
                "text": np.array(["a b c"] * n, dtype=object),
                "text_mask": text_present.astype(np.float32),
            },
            {"y": np.zeros(n, np.int64)},
        )
    ).batch(100)
    x = _collect(pipeline.drop_modalities(ds, {"image": "image", "text": "text"}, 0.5, seed=3))
    both = text_present
    image_dropped, text_dropped = x["image_mask"] == 0, x["text_mask"] == 0
    # each of two modalities: dropped with p, except the half of the both-dropped draws that keep it: p - p^2/2
    assert image_dropped[both].mean() == pytest.approx(0.375, abs=0.04)
    assert text_dropped[both].mean() == pytest.approx(0.375, abs=0.04)
    assert not np.any(image_dropped & text_dropped), "at least one modality must stay"
    assert not image_dropped[~both].any(), "a sample with one modality keeps it"
    # a dropped modality is absent as a missing one is: input zeroed / emptied, not only masked
    assert np.all(x["image"][image_dropped] == 0) and np.all(x["image"][~image_dropped] == 200)
    assert set(x["text"][both & text_dropped].tolist()) == {b""}
    assert set(x["text"][both & ~text_dropped].tolist()) == {b"a b c"}
    # seeded: the same seed gives the same drops, another seed others
    again = _collect(pipeline.drop_modalities(ds, {"image": "image", "text": "text"}, 0.5, seed=3))
    other = _collect(pipeline.drop_modalities(ds, {"image": "image", "text": "text"}, 0.5, seed=4))
    np.testing.assert_array_equal(again["image_mask"], x["image_mask"])
    assert not np.array_equal(other["image_mask"], x["image_mask"])
    with pytest.raises(OmnifuseError, match="train.modality_dropout"):
        pipeline.drop_modalities(ds, {"image": "image", "text": "text"}, 1.5, seed=0)


def test_modality_noise_corrupts_present_modalities_at_random_levels_and_keeps_masks():
    n = 2000
    rng = np.random.default_rng(0)
    text_present = np.arange(n) % 4 != 0  # a quarter of the samples have the image and audio only
    clean = {
        "image": rng.integers(50, 200, (n, 4, 4, 1)).astype(np.uint8),
        "image_mask": np.ones(n, np.float32),
        "audio": np.tile(np.sin(np.arange(64) / 3.0).astype(np.float32), (n, 1)),
        "audio_mask": (np.arange(n) % 2 == 0).astype(np.float32),  # half of them without audio
        "text": np.array(["a b c d e f g h"] * n, dtype=object),
        "text_mask": text_present.astype(np.float32),
    }
    kinds = {"image": "image", "audio": "audio", "text": "text"}
    ds = tf.data.Dataset.from_tensor_slices((clean, {"y": np.zeros(n, np.int64)})).batch(100)
    x = _collect(pipeline.corrupt_modalities(ds, kinds, 0.5, seed=3))
    for key in ("image_mask", "audio_mask", "text_mask"):
        np.testing.assert_array_equal(x[key], clean[key])  # corrupted, not missing
    several = (clean["image_mask"] + clean["audio_mask"] + clean["text_mask"]) >= 2
    image_hit = np.any(x["image"] != clean["image"], axis=(1, 2, 3))
    audio_hit = np.any(x["audio"] != clean["audio"], axis=1)
    text_hit = x["text"] != b"a b c d e f g h"
    assert image_hit[several].mean() == pytest.approx(0.5, abs=0.05)
    assert audio_hit[several & (clean["audio_mask"] > 0)].mean() == pytest.approx(0.5, abs=0.05)
    assert text_hit[several & text_present].mean() == pytest.approx(0.5, abs=0.06)  # level ~0 can drop none
    assert not (image_hit | audio_hit | text_hit)[~several].any(), "a sample with one modality stays clean"
    # the levels vary up to twice the signal's RMS: noise power relative to the signal spans 0 .. 4
    ratio = np.mean((x["audio"] - clean["audio"]) ** 2, axis=1)[audio_hit] / np.mean(clean["audio"] ** 2)
    assert ratio.min() < 0.1 and 2.0 < ratio.max() < 6.0
    # text: tokens are only dropped, the rest keep their order
    for text in x["text"][text_hit][:50]:
        kept = text.decode().split()
        assert kept == [t for t in "a b c d e f g h".split() if t in kept]
    again = _collect(pipeline.corrupt_modalities(ds, kinds, 0.5, seed=3))
    np.testing.assert_array_equal(again["audio"], x["audio"])
    with pytest.raises(OmnifuseError, match="train.modality_noise"):
        pipeline.corrupt_modalities(ds, kinds, -0.1, seed=0)


def test_modality_dropout_applies_to_the_training_stream_only():
    cfg = Config().replace(["data.val_fraction=0.25"])
    prepared = pipeline.prepare(cfg, [_two_modality_set()])
    part = prepared.parts[0]
    train, _ = pipeline.stream(
        prepared, [part.train], batch_size=50, shuffle=True, seed=0, repeat=True, modality_dropout=0.5
    )
    seen = _collect(train.take(6))
    assert 0.25 < (seen["image_mask"] == 0).mean() < 0.5
    assert np.all(seen["image_mask"] + seen["text_mask"] >= 1)
    val = _collect(pipeline.stream(prepared, [part.val], batch_size=50)[0])
    assert np.all(val["image_mask"] == 1) and np.all(val["text_mask"] == 1)


def test_unimodal_heads_get_labels_only_where_their_modality_survives_dropout():
    cfg = Config().replace(["data.val_fraction=0.25"])
    prepared = pipeline.prepare(cfg, [_two_modality_set()])
    unimodal = {"y__image": ("y", "image"), "y__text": ("y", "text")}
    train, _ = pipeline.stream(
        prepared,
        [prepared.parts[0].train],
        batch_size=50,
        shuffle=True,
        seed=0,
        repeat=True,
        modality_dropout=0.5,
        auxiliary=unimodal,
    )
    for x, y in train.take(4):
        for name, (_, m) in unimodal.items():
            present = x[f"{m}_mask"].numpy() > 0
            assert 0 < present.sum() < len(present)
            np.testing.assert_array_equal(y[name].numpy()[present], y["y"].numpy()[present])
            assert np.all(y[name].numpy()[~present] == -1)


def test_data_modalities_keeps_only_the_named_ones():
    present = np.arange(400) % 2 == 0  # half the samples have no text
    cfg = Config().replace(["data.modalities=['text']"])
    prepared = pipeline.prepare(cfg, [_two_modality_set(text_present=present)])
    assert prepared.modalities == {"text": "text"}
    assert set(prepared.parts[0].test.inputs) == {"text"}
    assert len(prepared.parts[0].test) == 200, "samples left with no modality are left out"
    with pytest.raises(OmnifuseError, match=r"Unknown modality 'audio' in data.modalities.*image, text"):
        pipeline.prepare(Config().replace(["data.modalities=['audio']"]), [_two_modality_set()])


# ------------------------------------------------------------------------------------------ every fusion


@pytest.mark.parametrize("fusion", sorted(registry.FUSIONS))
def test_every_fusion_trains_and_predicts_with_a_modality_missing(fusion, media, tmp_path):
    # one step: it runs eagerly (train.eager); test_layers' fusion contract traces each fusion's training step
    run = omnifuse.train(
        "av-digits", TINY + [f"model.fusion={fusion}"], runs_root=tmp_path, data_dir=str(media)
    )
    p = omnifuse.load(run)
    wave = tone(7, 8000, 0.12, np.random.default_rng(0))
    image = np.zeros((28, 28, 1), np.uint8)
    feed = p.encode(batch=True, audio=[wave, None, wave, wave], image=[None, image, image, None])
    # sample 3 has no image (mask 0): what its image input holds cannot matter, only the mask does
    feed["image"][3] = np.random.default_rng(1).integers(0, 256, (28, 28, 1))
    answers = p.predict_feed(feed)
    assert [a["modalities_used"] for a in answers] == [["audio"], ["image"], ["audio", "image"], ["audio"]]
    for a in answers:
        assert sum(a["tasks"]["digit"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert answers[3]["tasks"]["digit"]["probabilities"] == pytest.approx(
        answers[0]["tasks"]["digit"]["probabilities"], abs=1e-6
    )
    if registry.FUSIONS[fusion].returns_weights:
        assert answers[0]["modality_weights"] == {"audio": 1.0, "image": 0.0}
        assert answers[1]["modality_weights"] == {"audio": 0.0, "image": 1.0}
        assert sum(answers[2]["modality_weights"].values()) == pytest.approx(1.0, abs=1e-5)
    else:
        assert "modality_weights" not in answers[0]
    with pytest.raises(OmnifuseError, match="at least one modality"):
        p.predict()


# ------------------------------------------------------------------------------------------ robustness, weights


@pytest.fixture(scope="module")
def weighted_run(media, tmp_path_factory):
    """Attention fusion on AV-digits fixtures where the reliability of both modalities varies per sample (images
    occluded at random, a share of the recordings noisy), trained with modality dropout so both branches learn."""
    run = omnifuse.train(
        "av-digits",
        [
            "train.epochs=6",
            "train.batch_size=8",
            "train.learning_rate=3e-3",
            "train.verbose=0",
            "track.tensorboard=false",  # no TensorBoard logs: tests/test_tracking.py checks them
            "train.early_stopping=0",
            "train.modality_dropout=0.5",
            "data.degrade=occlude",
            "data.audio_noise=0.0",  # the fixture recordings carry their own noise, on a share of them
            "data.num_samples=2000",
            "model.audio.cnn.filters=[8, 16]",
            "model.audio.cnn.dense_units=16",
            "model.image.cnn.filters=[8, 16]",
            "model.image.cnn.dense_units=16",
            "model.image.cnn.batchnorm=false",  # a few dozen steps cannot settle batch-norm statistics
            "model.image.cnn.dropout=0.1",
            "model.fusion_dim=16",
        ],
        runs_root=tmp_path_factory.mktemp("runs"),
        data_dir=str(media),
    )
    return run, omnifuse.evaluate(run, data_dir=str(media), worst_samples=False)


def test_robustness_report_and_predictions_csv(weighted_run):
    run, metrics = weighted_run
    report = run / "report"
    found = metrics["robustness"]["av_digits"]
    assert [s["modalities"] for s in found["subsets"]] == [["audio"], ["image"], ["audio", "image"]]
    both = found["subsets"][-1]["accuracy"]["digit"]
    assert both == pytest.approx(metrics["tasks"]["digit"]["accuracy"])
    assert both > 0.5 and all(s["accuracy"]["digit"] > 0.2 for s in found["subsets"])  # chance is 0.1
    for m in ("audio", "image"):
        curve = found["corruption"][m]
        assert curve["levels"][0] == 0 and curve["accuracy"]["digit"][0] == both
        assert len(curve["accuracy"]["digit"]) == len(curve["levels"]) == len(curve["weights"][m])
    text = (report / "report.md").read_text()
    assert "## Robustness (av_digits)" in text and "| audio + image | 150 |" in text
    for png in ("subsets_av_digits.png", "corruption_av_digits.png", "weights_by_class_av_digits.png"):
        assert (report / png).stat().st_size > 5000 and f"]({png})" in text
    by_class = metrics["weights_by_class"]["av_digits"]["classes"]
    assert set(by_class) == {str(d) for d in range(10)}

    rows = list(csv.DictReader((report / "predictions.csv").open()))
    assert len(rows) == 150 and rows[0]["data_set"] == "av_digits" and rows[0]["id"]
    probs = np.array([[float(r[f"digit_p_{d}"]) for d in range(10)] for r in rows])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    hits = np.mean([r["digit_true"] == r["digit_predicted"] for r in rows])
    assert hits == pytest.approx(metrics["tasks"]["digit"]["accuracy"])
    weights = np.array([[float(r["weight_audio"]), float(r["weight_image"])] for r in rows])
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-4)
    assert {r["modalities_used"] for r in rows} == {"audio+image"}
    assert json.loads((report / "metrics.json").read_text())["robustness"] == metrics["robustness"]


def test_corrupting_the_image_lowers_its_weight(weighted_run):
    # The images' reliability varies in training (a random square hides part of the digit's bar), so the attention
    # has learned to give a degraded image less weight; noise added at test time must be read the same way.
    # (Audio noise is not checked here: on these fixtures the audio weight does not fall with it; the AV-digits
    # benchmark in benchmarks/RESULTS.md reports both on real data.)
    _, metrics = weighted_run
    curve = metrics["robustness"]["av_digits"]["corruption"]["image"]
    weights, accuracy = curve["weights"]["image"], curve["accuracy"]["digit"]
    assert accuracy[-1] < accuracy[0], "the heaviest noise must make the image less informative"
    assert weights[-1] < weights[0] - 0.03, f"image weight {weights[0]:.3f} clean, {weights[-1]:.3f} noisiest"
    assert weights[-1] == min(weights)
