"""Make tests/fixtures/model_1d2db9e.{keras,npz}: a small multimodal model saved by omnifuse at commit 1d2db9e
(before the package was reorganised), and its probabilities on fixed inputs. tests/test_saved_models.py loads it
with today's code and expects the same probabilities: the names saved models depend on (registered classes, layer
and output names) must not change.

Run from a checkout of that commit: ``python benchmarks/reference/old_model_fixture.py OUT_DIR``.
"""

import sys
from pathlib import Path

import keras
import numpy as np
from omnifuse.models import build_model

from omnifuse.config import load_config

out = Path(sys.argv[1])
keras.utils.set_random_seed(0)
cfg = load_config(
    "cifar10-imdb",
    [
        "model.text.encoder=rnn+nb",
        "model.text.vocab_size=60",
        "model.text.sequence_length=12",
        "model.text.rnn.embed_dim=8",
        "model.text.rnn.units=6",
        "model.text.nb.vocab_size=200",
        "model.image.cnn.filters=[4, 8]",
        "model.image.cnn.dense_units=8",
        "model.tabular.mlp.units=[6]",
        "model.fusion=attention",
        "model.fusion_dim=8",
        "model.head_scale=0.5",
        "train.unimodal_loss=0.5",
    ],
)
rng = np.random.default_rng(0)
words = ["good", "bad", "film", "plot", "great", "dull", "actors", "long", "fine", "awful"]
texts = [" ".join(rng.choice(words, 6)) for _ in range(40)]
labels = rng.integers(0, 2, 40)
rows = rng.normal(size=(40, 3)).astype("float32")
model = build_model(
    cfg,
    {"image": "image", "text": "text", "tab": "numbers"},
    {"cifar10": [str(i) for i in range(10)], "sentiment": ["neg", "pos"]},
    texts=texts,
    image_shape=(16, 16, 3),
    numbers={"tab": rows},
    text_labels=("sentiment", np.where(labels >= 0, labels, -1)),
)
inputs = {
    "image": rng.integers(0, 256, (6, 16, 16, 3)).astype("uint8"),
    "image_mask": np.array([1, 1, 0, 1, 0, 1], "float32"),
    "text": np.array(texts[:6], dtype=object),
    "text_mask": np.array([1, 0, 1, 1, 1, 0], "float32"),
    "tab": rows[:6],
    "tab_mask": np.ones(6, "float32"),
}
probabilities = model.predict(inputs, verbose=0)
out.mkdir(parents=True, exist_ok=True)
model.save(out / "model_1d2db9e.keras")
np.savez_compressed(
    out / "model_1d2db9e.npz",
    **{k: v for k, v in inputs.items() if k != "text"},
    text=np.array(texts[:6], dtype=str),
    **{f"out_{k}": np.asarray(v) for k, v in probabilities.items()},
)
print(sorted(probabilities), (out / "model_1d2db9e.keras").stat().st_size)
