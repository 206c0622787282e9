"""Self-supervised pretraining (omnifuse pretrain; omnifuse/pretrain/): the text language model and the image
contrastive objective learn on toy data, a run writes an encoder checkpoint that a model starts from
(model.<kind>.init: the same vocabulary and weights before training), an interrupted run continues, and a bad
init is an error naming the key. Tiny fixtures in the official formats, tiny models."""

import json
import math

import keras
import numpy as np
import pytest
from fixtures import aclimdb_reviews, tar_bytes, write_aclimdb, write_cifar10
from typer.testing import CliRunner

from omnifuse import keras_compat
from omnifuse.cli import app
from omnifuse.config import load_config
from omnifuse.errors import OmnifuseError
from omnifuse.model.builder import build_model
from omnifuse.model.compile import make_optimizer, pretrained_multipliers, pretrained_prefixes
from omnifuse.optimizers import ScaledAdam
from omnifuse.pretrain import image, text
from omnifuse.pretrain.run import pretrain

TINY_TEXT = [
    "data.sets=['imdb']",
    "data.unlabeled=unsup",
    "model.text.encoder=rnn",
    "model.text.vocab_size=120",
    "model.text.sequence_length=24",
    "model.text.rnn.embed_dim=8",
    "model.text.rnn.units=8",
    "model.text.rnn.conv_filters=0",
    "model.fusion_dim=8",
    "pretrain.batch_size=8",
    "pretrain.lm_vocab=40",
    "pretrain.learning_rate=0.01",
    "train.epochs=1",
    "train.batch_size=8",
    "train.verbose=0",
]
UNSUP = 10


@pytest.fixture(scope="module")
def imdb_dir(tmp_path_factory):
    """aclImdb (8 reviews per class and split) and aclImdb_unsup.tar.xz with 10 unlabelled reviews."""
    root = tmp_path_factory.mktemp("imdb")
    write_aclimdb(root, n_per_class=8)
    texts = [text for *_, text in aclimdb_reviews(8, seed=5)][:UNSUP]
    files = {"aclImdb": None, "aclImdb/train": None, "aclImdb/train/unsup": None}
    files |= {f"aclImdb/train/unsup/{i}_0.txt": t.encode("utf-8") for i, t in enumerate(texts)}
    files["aclImdb/train/urls_unsup.txt"] = b"".join(b"http://www.imdb.com/title/tt0000001/\n" for _ in texts)
    (root / "aclImdb_unsup.tar.xz").write_bytes(tar_bytes(files, "xz"))
    return root


@pytest.fixture(scope="module")
def lm_run(imdb_dir, tmp_path_factory):
    cfg = load_config("imdb-lstm", [*TINY_TEXT, "pretrain.epochs=2"])
    return pretrain(cfg, run_dir=tmp_path_factory.mktemp("lm") / "run", data_dir=str(imdb_dir))


def test_text_pretraining_writes_the_encoder_and_the_vocabulary(lm_run):
    meta = json.loads((lm_run / "meta.json").read_text())
    assert meta["pretrain"]["kind"] == "text" and meta["pretrain"]["encoder"] == "rnn"
    # the training split's reviews (the validation ones held out) and the unlabelled ones, nothing of the test split
    train = meta["pretrain"]["samples"] - UNSUP
    assert (
        0 < train < 16
        and meta["unlabeled"]["text" if "text" in meta["unlabeled"] else "imdb"]["samples"] == UNSUP
    )
    assert meta["progress"]["epochs_done"] == 2 and meta["progress"]["finished"]
    assert 0 < meta["pretrain"]["unigram_entropy"] < math.log(40)  # what the language model's loss must beat
    assert len((lm_run / "metrics.csv").read_text().strip().splitlines()) == 3
    vocabulary = json.loads((lm_run / "vocabulary.json").read_text())
    assert vocabulary[:2] == ["", "[UNK]"] and len(vocabulary) <= 120
    with np.load(lm_run / "encoder.npz") as arrays:
        assert arrays["w0"].shape == (120, 8)  # the embedding: vocab_size x embed_dim


def test_a_model_starts_from_the_checkpoint(lm_run):
    cfg = load_config("imdb-lstm", [*TINY_TEXT, f"model.text.init={lm_run}"])
    # texts other than the pretraining's: the vocabulary must still be the pretrained one, id for id
    model = build_model(cfg, {"text": "text"}, {"sentiment": ["neg", "pos"]}, texts=["zebra quartz"] * 4)
    vocabulary = json.loads((lm_run / "vocabulary.json").read_text())
    assert model.get_layer("text_vectorize").get_vocabulary() == vocabulary
    encoder = model.get_layer("text_branch").encoder
    with np.load(lm_run / "encoder.npz") as arrays:
        stored = [arrays[f"w{i}"] for i in range(len(arrays.files))]
    assert len(stored) == len(encoder.weights) == 4  # embedding, LSTM kernel, recurrent kernel, bias
    for variable, value in zip(encoder.weights, stored):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)
    # a model without init starts elsewhere
    fresh = build_model(
        load_config("imdb-lstm", TINY_TEXT), {"text": "text"}, {"s": ["a", "b"]}, texts=vocabulary
    )
    first = keras.ops.convert_to_numpy(fresh.get_layer("text_branch").encoder.weights[0])
    assert not np.allclose(first, stored[0])


def test_the_started_encoder_trains_at_the_pretrained_rate(lm_run):
    overrides = [*TINY_TEXT, f"model.text.init={lm_run}", "train.pretrained_lr_scale=0.25"]
    model = build_model(
        load_config("imdb-lstm", overrides), {"text": "text"}, {"s": ["a", "b"]}, texts=["a b"]
    )
    multipliers = pretrained_multipliers(model, 0.25)
    assert set(multipliers.values()) == {0.25}
    # at the full rate there is no multiplier, but Muon still leaves the started encoder to SGD
    assert pretrained_multipliers(model, 1.0) == {}
    assert pretrained_prefixes(model) == tuple(multipliers)
    cfg = load_config("imdb-lstm", [*overrides, "train.optimizer=muon", "train.learning_rate=0.1"])
    muon = make_optimizer(cfg.train, 0.1, False, {}, pretrained_prefixes(model))
    assert muon.muon_exclude == tuple(multipliers)
    optimizer = ScaledAdam(1.0, lr_multipliers=multipliers)
    optimizer.build(model.trainable_variables)
    factors = {v.path: optimizer._factors[optimizer._var_key(v)] for v in model.trainable_variables}
    encoder = {v.path for v in model.get_layer("text_branch").encoder.trainable_variables}
    assert encoder and all(factors[p] == 0.25 for p in encoder)
    assert {factors[p] for p in factors if p not in encoder} == {
        1.0
    }  # the head and the fusion: the full rate
    # the same model from scratch has no pretrained layer
    fresh = build_model(
        load_config("imdb-lstm", TINY_TEXT), {"text": "text"}, {"s": ["a", "b"]}, texts=["a b"]
    )
    assert pretrained_multipliers(fresh, 0.25) == {}


def test_a_bad_init_is_an_error_naming_the_key(lm_run, tmp_path):
    tasks, texts = {"s": ["a", "b"]}, ["a b"]
    with pytest.raises(OmnifuseError, match=r"model\.text\.init.*no such folder"):
        build_model(
            load_config("imdb-lstm", [*TINY_TEXT, f"model.text.init={tmp_path / 'nope'}"]),
            {"t": "text"},
            tasks,
            texts,
        )
    wider = load_config("imdb-lstm", [*TINY_TEXT, f"model.text.init={lm_run}", "model.text.rnn.units=16"])
    with pytest.raises(OmnifuseError, match=r"model\.text\.init.*units = 16 \(pretrained: 8\)"):
        build_model(wider, {"t": "text"}, tasks, texts)
    other = load_config("imdb-lstm", [*TINY_TEXT, f"model.text.init={lm_run}", "model.text.encoder=bag"])
    with pytest.raises(OmnifuseError, match=r"model\.text\.encoder.*model\.text\.init"):
        build_model(other, {"t": "text"}, tasks, texts)


def _fit(model, loss, stream, steps, epochs, lr=0.01):
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
    keras_compat.build_before_fit(model, stream.element_spec)  # the training step traced once, not twice
    return model.fit(stream, steps_per_epoch=steps, epochs=epochs, verbose=0).history["loss"]


def test_the_language_model_learns_structure_and_cannot_see_its_targets():
    # bidirectional: the forward and the backward language model (a forward-only one trains in lm_run)
    keras.utils.set_random_seed(0)
    bidirectional = ["model.text.rnn.bidirectional=true", "model.text.rnn.dropout=0.0"]
    cfg = load_config("imdb-lstm", [*TINY_TEXT, *bidirectional])
    words = [f"w{i}" for i in range(12)]
    rng = np.random.default_rng(0)
    # a cycle: each word fixes the next (and the one before), so both directions can learn to predict it
    cycle = np.array(
        [" ".join(words[(s + j) % 12] for j in range(20)) for s in rng.integers(0, 12, 64)], object
    )
    noise = np.array([" ".join(rng.choice(words, 20)) for _ in range(64)], object)
    # one model, trained on each from the same start with a fresh optimizer: its training step is traced once
    vectorize = text.vectorizer(cfg, np.concatenate([cycle, noise]), None)
    _, model, loss = text.build(cfg)
    model.compile(optimizer=keras.optimizers.Adam(0.03), loss=loss)
    start, losses = model.get_weights(), {}
    for name, texts, epochs in (("cycle", cycle, 8), ("noise", noise, 5)):
        model.set_weights(start)
        for variable in model.optimizer.variables:  # as a new Adam has them: no steps, no moments
            if variable.name != "learning_rate":
                variable.assign(np.zeros(variable.shape, variable.dtype))
        stream, steps = text.stream(cfg, vectorize, texts, seed=0)
        keras_compat.build_before_fit(model, stream.element_spec)
        losses[name] = model.fit(stream, steps_per_epoch=steps, epochs=epochs, verbose=0).history["loss"]
    assert losses["cycle"][-1] < 0.5 * losses["cycle"][0]
    # independent uniform words: no direction can beat log(12) nats unless it reads the word it predicts
    assert losses["noise"][-1] > 0.9 * math.log(12)


def test_the_language_model_starts_at_word_frequencies_and_its_states_stay_alive():
    # Regression: heads started at zero made Adam learn the word frequencies through the head's kernel, by driving
    # every LSTM state to one saturated constant (the loss stuck at the unigram entropy, every text read alike), and
    # a classifier started from that encoder could not fit its training data. Zipf-distributed words, as in text.
    keras.utils.set_random_seed(0)
    sizes = ["model.text.vocab_size=1200", "model.text.sequence_length=50", "model.text.rnn.embed_dim=16"]
    sizes += ["model.text.rnn.units=32", "model.text.rnn.dropout=0.0", "pretrain.lm_vocab=500"]
    cfg = load_config("imdb-lstm", [*TINY_TEXT, *sizes, "pretrain.batch_size=16"])
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(1000)])
    zipf = 1.0 / np.arange(1, 1001)
    texts = np.array([" ".join(rng.choice(words, 50, p=zipf / zipf.sum())) for _ in range(128)], object)
    vectorize = text.vectorizer(cfg, texts, None)
    counts = text.target_counts(cfg, vectorize, texts)
    entropy = text.unigram_entropy(counts)
    assert counts[0] == 0 and counts.sum() == 128 * 49 and 4.0 < entropy < math.log(500)
    encoder, model, loss = text.build(cfg, counts)
    stream, steps = text.stream(cfg, vectorize, texts, seed=0)
    ((ids, targets),) = stream.take(1)
    # untrained, it already predicts the frequencies (before the fix: 6.2 nats, log 500, against 4.76)
    assert abs(float(loss(targets, model(ids))) - entropy) < 0.1
    history = _fit(model, loss, stream, steps, epochs=10, lr=3e-3)
    assert history[-1] < entropy  # (before the fix: 4.80, stuck above the frequencies' 4.76)
    ids = vectorize(texts[:64])
    last = keras.ops.convert_to_numpy(encoder.rnn(encoder.embed(ids), mask=ids != 0))[:, -1]
    # the final states still depend on the text: std over texts 0.32 (before the fix: 0.02, every unit at about
    # the same saturated value, mean magnitude 0.90)
    assert last.std(axis=0).mean() > 0.15


def test_the_contrastive_objective_runs_and_its_loss_falls():
    keras.utils.set_random_seed(0)
    cfg = load_config(
        "cifar10-cnn",
        [
            "model.image.cnn.filters=[4]",
            "model.image.cnn.dense_units=16",
            "pretrain.batch_size=16",
            "pretrain.projection_dim=8",
        ],
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 12, 12, 3)).astype("uint8")
    _, model, loss = image.build(cfg, images)
    stream, steps = image.stream(cfg, images, seed=0)
    ((views, targets),) = stream.take(1)
    logits = model(views)
    assert logits.shape == (32, 32) and np.isfinite(keras.ops.convert_to_numpy(loss(targets, logits)))
    history = _fit(model, loss, stream, steps, epochs=5, lr=3e-3)
    assert all(np.isfinite(history)) and history[-1] < history[0] - 0.3


def test_an_interrupted_pretraining_continues_from_its_last_epoch(imdb_dir, tmp_path):
    cfg = load_config("imdb-lstm", [*TINY_TEXT, "pretrain.epochs=3"])
    out = tmp_path / "lm"

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, run_dir=out, data_dir=str(imdb_dir), callbacks=[Stop()])
    assert json.loads((out / "meta.json").read_text())["progress"]["epochs_done"] == 1
    seen, eager = [], []
    begun = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(epoch))
    mode = keras.callbacks.LambdaCallback(on_train_begin=lambda logs: eager.append(mode.model.run_eagerly))
    pretrain(cfg, run_dir=out, data_dir=str(imdb_dir), callbacks=[begun, mode])
    assert seen == [1, 2]
    assert eager == [True]  # 2 epochs of 3 steps left: run eagerly (train.eager), as a training of that size
    rows = (out / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [0, 1, 2]
    assert json.loads((out / "meta.json").read_text())["progress"]["epochs_done"] == 3
    # another config is not continued in the same folder
    with pytest.raises(OmnifuseError, match="another config"):
        pretrain(cfg.replace(["pretrain.lm_vocab=30"]), run_dir=out, data_dir=str(imdb_dir))


def test_image_pretraining_and_the_cli_end_to_end(tmp_path):
    write_cifar10(tmp_path, n_per_batch=8, n_test=10)
    sets = [
        "data.sets=['cifar10']",
        "model.image.cnn.filters=[4]",
        "model.image.cnn.dense_units=8",
        "model.fusion_dim=8",
        "pretrain.epochs=1",
        "pretrain.batch_size=8",
        "train.epochs=1",
        "train.verbose=0",
    ]
    args = [a for s in sets for a in ("--set", s)]
    runner = CliRunner()
    out = tmp_path / "simclr"
    done = runner.invoke(
        app, ["pretrain", "cifar10-cnn", *args, "--out", str(out), "--data-dir", str(tmp_path)]
    )
    assert done.exit_code == 0, done.output
    assert "Pretrained." in done.output and f"model.image.init={out}" in done.output
    trained = runner.invoke(
        app,
        [
            "train",
            "cifar10-cnn",
            *args,
            "--set",
            f"model.image.init={out}",
            "--run-dir",
            str(tmp_path / "run"),
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert trained.exit_code == 0, trained.output
    runs = tmp_path / "runs"
    bad = runner.invoke(
        app,
        ["train", "cifar10-cnn", *args, "--set", "model.image.init=nowhere", "--runs-root", str(runs)],
    )
    assert isinstance(bad.exception, OmnifuseError) and "model.image.init" in str(bad.exception)
    assert not runs.exists()  # answered before any data is read or run directory made


def test_each_pretrainable_kind_has_an_objective_that_refuses_an_encoder_it_cannot_pretrain():
    from omnifuse.pretrain import checkpoint, run

    assert set(run.OBJECTIVES) == set(checkpoint.PRETRAINABLE) == {"text", "image"}
    image.check(load_config("cifar10-cnn", ["model.image.encoder=fastnet"]))
    with pytest.raises(
        OmnifuseError, match="model.image.encoder to be one of cnn, resnet, fastnet.*'efficientnet_lite0'"
    ):
        image.check(load_config("cifar10-cnn", ["model.image.encoder=efficientnet_lite0"]))
    with pytest.raises(OmnifuseError, match="model.text.encoder = 'rnn'.*'bag'"):
        text.check(load_config("cifar10-cnn", ["model.text.encoder=bag"]))
