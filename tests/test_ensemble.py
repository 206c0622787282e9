"""model.members: a deep ensemble in one Keras model, each member trained on its own loss, outputs averaged."""

import csv
import json

import keras
import numpy as np
import pytest
from fixtures import write_aclimdb
from keras_steps import fit_once, outputs

import omnifuse
from omnifuse.config import Config
from omnifuse.errors import OmnifuseError
from omnifuse.model.builder import build_model
from omnifuse.model.compile import compile_model
from omnifuse.names import WEIGHTS_OUTPUT, auxiliary_outputs, member_name, member_outputs, unimodal_outputs

TEXTS = ["a wonderful moving film", "dull and far too long", "great acting", "awful plot and worse lines"] * 4
TEXT_CFG = [
    "model.text.vocab_size=50",
    "model.text.sequence_length=8",
    "model.text.rnn.embed_dim=8",
    "model.text.rnn.units=4",
    "model.fusion=attention",
    "model.fusion_dim=8",
]


def _model(members: int, modalities=None, extra=()):
    cfg = Config().replace([*TEXT_CFG, f"model.members={members}", *extra])
    modalities = modalities or {"text": "text"}
    numbers = {"tabular": np.random.default_rng(0).normal(size=(16, 3)).astype("float32")}
    return build_model(cfg, modalities, {"sentiment": ["neg", "pos"]}, TEXTS, numbers=numbers)


def _feed(model):
    n = len(TEXTS)
    rng = np.random.default_rng(1)
    names = {x.name for x in model.inputs}
    feed = {
        "text": np.array(TEXTS[:n], dtype=object),
        "text_mask": np.ones(n, "float32"),
        "tabular": rng.normal(size=(n, 3)).astype("float32"),
        "tabular_mask": np.ones(n, "float32"),
    }
    return {k: v for k, v in feed.items() if k in names}


def test_output_names_tell_members_from_unimodal_heads():
    names = ["y", "y__member1", "y__member2", "y__text__member1", "y__text", "modality_weights", "z__member1"]
    assert member_outputs(names, ["y"]) == {"y__member1": "y", "y__member2": "y"}
    assert unimodal_outputs(names, ["y"]) == {"y__text__member1": ("y", "text"), "y__text": ("y", "text")}
    assert auxiliary_outputs(names, ["y"]) == {
        "y__member1": ("y", None),
        "y__member2": ("y", None),
        "y__text__member1": ("y", "text"),
        "y__text": ("y", "text"),
    }
    assert member_name("y", 3) == "y__member3"


def test_an_ensemble_outputs_the_mean_of_independently_initialised_members():
    single = _model(1, {"text": "text", "tabular": "numbers"})
    model = _model(3, {"text": "text", "tabular": "numbers"})
    assert set(model.output_names) == {"sentiment", WEIGHTS_OUTPUT} | {
        member_name("sentiment", i) for i in (1, 2, 3)
    }
    # every member has its own variables (three times a single model's), the text vocabulary is learned once
    assert len(model.trainable_weights) == 3 * len(single.trainable_weights)
    assert sum(isinstance(layer, keras.layers.TextVectorization) for layer in model.layers) == 1
    out = outputs(model, _feed(model))
    members = [np.asarray(out[member_name("sentiment", i)]) for i in (1, 2, 3)]
    np.testing.assert_allclose(out["sentiment"], np.mean(members, axis=0), atol=1e-6)
    np.testing.assert_allclose(out["sentiment"].sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(members[0], members[1]), "members must start from different weights"
    np.testing.assert_allclose(out[WEIGHTS_OUTPUT].sum(axis=1), 1.0, atol=1e-5)


def test_each_member_learns_from_its_own_loss_only():
    # the bag text encoder: the members' losses are what is checked, and its traced step costs a fraction of the
    # recurrent one's (which test_cli_e2e's trained run traces)
    model = _model(2, extra=["model.text.encoder=bag", "model.text.bag.embed_dim=8"])
    compile_model(model, Config().replace(TEXT_CFG), ["sentiment"], steps_per_epoch=1)
    assert set(model.loss) == {"sentiment__member1", "sentiment__member2"}  # the mean itself has no loss
    # with member 2's labels all missing (-1), a training step leaves member 2's weights exactly as they were
    member2 = [v for v in model.trainable_weights if "__member2" in v.path]
    assert member2 and len(member2) * 2 == len(model.trainable_weights)
    before = [keras.ops.convert_to_numpy(v) for v in member2]
    labels = np.array([0, 1, 0, 1] * 4)
    member1_before = [keras.ops.convert_to_numpy(v) for v in model.trainable_weights if "__member1" in v.path]
    fit_once(  # one step on the 16 samples
        model,
        _feed(model),
        {
            "sentiment": labels,
            "sentiment__member1": labels,
            "sentiment__member2": np.full(16, -1),
            WEIGHTS_OUTPUT: np.zeros(16),  # a target for every output (the weights have no loss)
        },
        batch_size=16,
    )
    for b, v in zip(before, member2):
        np.testing.assert_array_equal(b, keras.ops.convert_to_numpy(v))
    after = [keras.ops.convert_to_numpy(v) for v in model.trainable_weights if "__member1" in v.path]
    assert any(not np.array_equal(b, a) for b, a in zip(member1_before, after))


def test_members_below_one_is_an_error():
    with pytest.raises(OmnifuseError, match="model.members"):
        _model(0)


def test_an_ensemble_trains_evaluates_and_predicts_end_to_end(tmp_path):
    # one epoch of one step: what is checked (the members' metrics, their fitted weights, the report, a saved
    # model that predicts) needs a training to exist, not to have learned; the bag text encoder, whose eager step
    # costs a fraction of the recurrent one's (the members do not depend on the encoder)
    write_aclimdb(tmp_path, n_per_class=20)
    run = omnifuse.train(
        "imdb-bigru",
        overrides=[
            "model.members=2",
            "model.fit_member_weights=true",
            "model.text.vocab_size=200",
            "model.text.sequence_length=24",
            "model.text.encoder=bag",
            "model.text.bag.embed_dim=8",
            "train.epochs=1",
            "train.batch_size=32",
            "train.verbose=0",
            "track.tensorboard=false",  # no TensorBoard logs: tests/test_tracking.py checks them
            "data.val_fraction=0.2",
        ],
        runs_root=tmp_path / "runs",
        data_dir=str(tmp_path),
    )
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert {"sentiment__member1_loss", "sentiment__member2_accuracy", "val_sentiment_accuracy"} <= set(
        rows[0]
    )
    assert "sentiment_loss" not in rows[0]
    metrics = omnifuse.evaluate(run, data_dir=str(tmp_path), worst_samples=False)
    task = metrics["tasks"]["sentiment"]
    assert len(task["member_accuracy"]) == 2 and all(0 <= a <= 1 for a in task["member_accuracy"])
    assert "each member's test accuracy alone" in (run / "report" / "report.md").read_text()
    answer = omnifuse.load(run).predict(text="a wonderful film")
    assert set(answer["tasks"]) == {"sentiment"}
    assert sum(answer["tasks"]["sentiment"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["progress"]["finished"]
    assert len(meta["member_weights"]) == 2 and sum(meta["member_weights"]) == pytest.approx(1.0, abs=1e-5)
    saved = keras.saving.load_model(run / "model.keras").get_layer("sentiment")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(saved.member_weights), meta["member_weights"], atol=1e-5
    )


def test_member_overrides_make_unlike_members_that_share_only_equal_vectorizers():
    overrides = 'model.member_overrides=[["model.text.encoder=bag"], [], ["model.text.rnn.units=6"]]'
    model = _model(3, extra=[overrides])
    vectorizers = [layer for layer in model.layers if isinstance(layer, keras.layers.TextVectorization)]
    assert len(vectorizers) == 1  # the bag and the two RNNs read the same token ids
    branches = {
        layer.name: type(layer.encoder).__name__ for layer in model.layers if hasattr(layer, "encoder")
    }
    assert branches == {
        "text_branch__member1": "TextBag",
        "text_branch__member2": "TextRNN",
        "text_branch__member3": "TextRNN",
    }
    assert model.get_layer("text_branch__member3").encoder.units == 6
    ngrams = 'model.member_overrides=[["model.text.encoder=nb", "model.text.nb.vocab_size=300"], []]'
    labels = ("sentiment", np.array([1, 0, 1, 0] * 4))
    cfg = Config().replace([*TEXT_CFG, "model.members=2", ngrams])
    model = build_model(cfg, {"text": "text"}, {"sentiment": ["neg", "pos"]}, TEXTS, text_labels=labels)
    names = sorted(layer.name for layer in model.layers if isinstance(layer, keras.layers.TextVectorization))
    assert names == ["text_vectorize", "text_vectorize__member2"]  # n-grams and word sequences differ


@pytest.mark.parametrize(
    "overrides, match",
    [
        ('[["model.text.encoder=bag"]]', "one list of overrides per member"),
        ('[["train.epochs=3"], []]', "model.\\* keys"),
        ('[["model.members=4"], []]', "other than the ensemble's own"),
    ],
)
def test_member_overrides_are_checked(overrides, match):
    with pytest.raises(OmnifuseError, match=match):
        _model(2, extra=[f"model.member_overrides={overrides}"])


def test_member_weights_are_fitted_to_the_better_member_on_held_out_data():
    from omnifuse.model.ensemble import MemberMean
    from omnifuse.training import fit_member_weights

    # member 1 is right on every sample (confident), member 2 wrong on half of them: the fit trusts member 1
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 64)
    good = np.eye(2)[labels] * 0.9 + 0.05
    bad = np.where((np.arange(64) % 2 == 0)[:, None], good, good[:, ::-1])
    inputs = {"a": keras.Input((2,), name="a"), "b": keras.Input((2,), name="b")}
    mean = MemberMean(name="y")([inputs["a"], inputs["b"]])
    one, two = keras.layers.Identity(name="y__member1"), keras.layers.Identity(name="y__member2")
    model = keras.Model(inputs, {"y": mean, "y__member1": one(inputs["a"]), "y__member2": two(inputs["b"])})
    np.testing.assert_allclose(
        model.predict_on_batch({"a": good, "b": bad})["y"], (good + bad) / 2, atol=1e-6
    )
    batches = [
        ({"a": good[i : i + 16], "b": bad[i : i + 16]}, {"y": labels[i : i + 16]}) for i in range(0, 64, 16)
    ]
    weights = fit_member_weights(model, batches, ["y"])
    assert weights[0] > 0.9 and sum(weights) == pytest.approx(1.0, abs=1e-5)
    out = model.predict_on_batch({"a": good, "b": bad})["y"]
    np.testing.assert_allclose(out, weights[0] * good + weights[1] * bad, atol=1e-5)


def test_fit_member_weights_needs_a_validation_split(tmp_path):
    write_aclimdb(tmp_path, n_per_class=10)
    with pytest.raises(OmnifuseError, match="data.val_fraction > 0"):
        omnifuse.train(
            "imdb-bigru",
            overrides=["model.members=2", "model.fit_member_weights=true", "data.val_fraction=0.0"],
            runs_root=tmp_path / "runs",
            data_dir=str(tmp_path),
        )


def test_member_accuracy_scores_each_member_and_skips_unlabelled_rows():
    from omnifuse.metrics import member_accuracy

    labels = {"sentiment": np.array([0, 1, 1, -1]), "topic": np.array([2, 0, -1, -1])}
    one_hot = np.eye(3)
    out = {
        "sentiment": one_hot[[0, 1, 1, 0], :2],  # the mean output is not a member's
        member_name("sentiment", 0): one_hot[[0, 1, 0, 1], :2],  # 2 of 3 labelled rows right
        member_name("sentiment", 1): one_hot[[1, 0, 0, 0], :2],  # none right; the unlabelled row would be
        member_name("topic", 0): one_hot[[2, 0, 1, 1]],  # both labelled rows right
        WEIGHTS_OUTPUT: np.ones((4, 1)),
    }
    found = member_accuracy(out, labels)
    assert found == {"sentiment": [pytest.approx(2 / 3), 0.0], "topic": [1.0]}
    assert member_accuracy({"sentiment": out["sentiment"]}, {"sentiment": labels["sentiment"]}) == {}


def test_fitted_member_weights_weight_the_modality_weights_of_a_multimodal_ensemble_alike():
    from omnifuse.model.ensemble import MemberMean

    model = _model(2, {"text": "text", "tabular": "numbers"})
    means = [layer for layer in model.layers if isinstance(layer, MemberMean)]
    assert {layer.name for layer in means} == {"sentiment", WEIGHTS_OUTPUT}
    for layer in means:
        layer.member_weights.assign(np.array([0.8, 0.2], "float32"))
    names = [member_name("sentiment", i) for i in (1, 2)] + [f"{WEIGHTS_OUTPUT}__member{i}" for i in (1, 2)]
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    feed = _feed(model)
    p1, p2, w1, w2 = outputs(probe, feed)
    out = outputs(model, feed)
    assert not np.allclose(w1, w2), "the members' modality weights must differ for the test to tell"
    np.testing.assert_allclose(out["sentiment"], 0.8 * p1 + 0.2 * p2, atol=1e-6)
    np.testing.assert_allclose(out[WEIGHTS_OUTPUT], 0.8 * w1 + 0.2 * w2, atol=1e-6)
    np.testing.assert_allclose(out[WEIGHTS_OUTPUT].sum(axis=1), 1.0, atol=1e-5)


def test_members_with_equal_nb_settings_share_one_fit(monkeypatch):
    from omnifuse.encoders.text import TextNB

    fits = []
    adapt = TextNB.adapt
    monkeypatch.setattr(TextNB, "adapt", lambda self, batches: fits.append(self.name) or adapt(self, batches))
    three = 'model.member_overrides=[[], [], ["model.text.nb.c=0.5"]]'
    cfg = Config().replace([*TEXT_CFG, "model.members=3", "model.text.encoder=nb", three])
    labels = ("sentiment", np.array([1, 0, 1, 0] * 4))
    model = build_model(cfg, {"text": "text"}, {"sentiment": ["neg", "pos"]}, TEXTS, text_labels=labels)
    assert len(fits) == 2  # members 1 and 2 are alike; member 3's C differs
    one, two, three = (model.get_layer(f"text_branch__member{i}").encoder for i in (1, 2, 3))
    assert one is not two and one.weights[0] is not two.weights[0]
    for a, b in zip(one.get_weights(), two.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(one.get_weights(), three.get_weights()))
