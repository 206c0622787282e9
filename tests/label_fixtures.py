"""Small labelled and unlabelled data for the labelling tests: a CSV of pictures, texts and a number per sample.

Two classes, each told apart by every modality: ``sun`` rows have a bright image, sunny words and a high
``size``; ``moon`` rows a dark image, night words and a low ``size``. Columns are named ``image`` and ``text``, so
a run trained on the CSV also reads a pool folder of ``<stem>.png`` + ``<stem>.txt`` files.
"""

import csv
import io

import numpy as np
from PIL import Image

import omnifuse

CLASSES = ("moon", "sun")
WORDS = {"sun": "bright warm day noon", "moon": "dark cold night stars"}
LEVEL = {"sun": 210, "moon": 45}
SIZE = {"sun": 8.0, "moon": 2.0}
SMALL = [
    "train.epochs=8",
    "train.batch_size=8",
    "train.learning_rate=1e-2",
    "train.early_stopping=0",
    "train.verbose=0",
    "track.tensorboard=false",  # no TensorBoard logs: tests/test_tracking.py checks them
    "model.fusion_dim=8",
    "model.head_dropout=0.0",
    "model.image.cnn.filters=[4]",
    "model.image.cnn.dense_units=8",
    "model.text.vocab_size=50",
    "model.text.sequence_length=6",
    "model.tabular.mlp.units=[8]",
    "model.tabular.mlp.dropout=0.0",
]


def png(level: float, rng, side: int = 8) -> bytes:
    pixels = np.clip(level + rng.normal(0, 12, (side, side, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def sample(root, name: str, image: str | None, text: str | None, size: str | None, rng) -> dict:
    """One row: ``image``/``text``/``size`` each follow a class (``"sun"``, ``"moon"``), ``"mid"`` (halfway) or
    are absent (``None``). The image is written to ``root/imgs/<name>.png``."""
    row = {"image": "", "text": "", "size": ""}
    if image is not None:
        (root / "imgs").mkdir(parents=True, exist_ok=True)
        level = (LEVEL["sun"] + LEVEL["moon"]) / 2 if image == "mid" else LEVEL[image]
        (root / "imgs" / f"{name}.png").write_bytes(png(level, rng))
        row["image"] = f"imgs/{name}.png"
    if text is not None:
        words = "plain words only here" if text == "mid" else WORDS[text]
        row["text"] = " ".join(rng.permutation(words.split()))
    if size is not None:
        centre = (SIZE["sun"] + SIZE["moon"]) / 2 if size == "mid" else SIZE[size]
        row["size"] = f"{centre + rng.normal(0, 0.4):.2f}"
    return row


def write_csv(path, rows: list[dict], columns=("image", "text", "size")) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, list(columns), lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_labelled(root, n: int = 60, seed: int = 0):
    """``root/sky.csv`` with ``n`` rows (classes alternate) and a ``label`` column; returns its path."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        cls = CLASSES[i % 2]
        rows.append(dict(sample(root, f"l{i:03d}", cls, cls, cls, rng), label=cls))
    path = root / "sky.csv"
    write_csv(path, rows, ("image", "text", "size", "label"))
    return path


def shared_sky(tmp_path_factory, root):
    """:func:`write_labelled`'s CSV in ``root`` (its images under ``root/imgs``) and the run :func:`train_sky` trains
    on the same rows, trained once per test session and shared by the files that ask (``fixtures_serving.shared``)."""
    from fixtures_serving import shared

    write_labelled(root)

    def make(folder):
        run = folder / "runs" / "sky"
        if not (run / "model.keras").is_file():
            (folder / "sky").mkdir(parents=True, exist_ok=True)
            train_sky(folder / "sky", folder / "runs")
        return run

    return shared(tmp_path_factory, make)


def train_sky(root, runs, extra=()):
    """A tiny run trained on :func:`write_labelled`'s CSV, with per-modality heads (``train.unimodal_loss``)."""
    path = write_labelled(root)
    overrides = [
        f"data.csv={path}",
        "data.label=label",
        "name=sky",
        "train.unimodal_loss=0.5",
        *SMALL,
        *extra,
    ]
    return omnifuse.train("table", overrides=overrides, runs_root=runs)
