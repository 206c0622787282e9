"""A small CSV of pets (an id column, a review, a number, a category, the label), written by the tests, and the
overrides that train a tiny model on it in about a second (``from fixtures_tables import write_pets_table``)."""

import csv

import numpy as np

COLUMNS = ["pet_id", "review", "age", "color", "species"]
WORDS = {"cat": "purr meow soft", "dog": "bark woof loud"}

# a model of a few hundred weights, two epochs
TINY = {
    "data.kinds": {"pet_id": "ignore", "review": "text"},
    "model.fusion_dim": 8,
    "model.text.vocab_size": 50,
    "model.text.sequence_length": 8,
    "model.text.ngrams": 1,
    "model.text.bag.embed_dim": 8,
    "model.tabular.mlp.units": [8],
    "train.epochs": 2,
    "train.batch_size": 16,
    "train.learning_rate": 0.01,
    "train.early_stopping": 0,
    "train.verbose": 0,
    "track.tensorboard": False,  # tests/test_tracking.py turns the logs on where it checks them
}


def pets_rows(n: int = 48, seed: int = 0) -> list[dict[str, str]]:
    """``n`` rows alternating cat / dog; every input column tells them apart (cats are young, say purr, red)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        species = "cat" if i % 2 == 0 else "dog"
        rows.append(
            {
                "pet_id": f"P{1000 + 7 * i}",
                "review": f"{WORDS[species]} {rng.choice(['nice', 'ok', 'fine'])}",
                "age": f"{(2.0 if species == 'cat' else 9.0) + rng.normal(0, 0.5):.1f}",
                "color": "red" if species == "cat" else "blue",
                "species": species,
            }
        )
    return rows


def write_table(path, rows: list[dict[str, str]], columns: list[str] | None = None):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns or list(rows[0]), lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_pets_table(path, n: int = 48, seed: int = 0):
    return write_table(path, pets_rows(n, seed), COLUMNS)


def tiny_overrides(csv_path, **more) -> dict:
    return {"data.csv": str(csv_path), "data.label": "species", **TINY, **more}
