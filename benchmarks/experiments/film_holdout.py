"""How well does a validation hold-out of IMDb's training reviews predict the test accuracy? Reviews vs films.

IMDb's test films (all but one) are not among its training films. A hold-out of single reviews leaves the other reviews of
the same films in training, so validation can be passed by remembering films' names and plots; a hold-out of whole
films (omnifuse's default, ``data.group_holdout``) cannot. For each seed and each kind of hold-out (5% of the
training reviews, stratified, with ``omnifuse.data.splits.holdout`` as the pipeline holds them out), an NBSVM (``nbsvm_tokenizers.py``'s) is
fitted on the rest and scored on the hold-out and on the official test set. The n-gram vocabulary is chosen once
on all training reviews, so both kinds of hold-out share it.

    OMNIFUSE_DATA=DATA python benchmarks/experiments/film_holdout.py --seeds 3
"""

import argparse
import time

import numpy as np
from nbsvm_tokenizers import letters, nbsvm_margins, ngram_rows  # beside this script
from scipy import sparse

from omnifuse.data import imdb
from omnifuse.data.splits import holdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=0.05)
    args = parser.parse_args()
    data = imdb.load()
    train, test = data["train"], data["test"]
    y_train, y_test = train.labels["sentiment"], test.labels["sentiment"]
    start = time.perf_counter()
    rows, rows_test = ngram_rows(letters, list(train.inputs["text"]), list(test.inputs["text"]))
    print(f"{rows.shape[1]} n-grams ({time.perf_counter() - start:.0f} s); films in train: "
          f"{len(np.unique(train.extra['group']))}", flush=True)  # fmt: skip
    gaps: dict[str, list[float]] = {"reviews": [], "films": []}
    for seed in range(args.seeds):
        for kind, by_film in (("reviews", False), ("films", True)):
            groups = train.extra["group"] if by_film else None
            fit_i, held_i = map(np.sort, holdout(np.arange(len(train)), y_train, args.fraction, seed, groups))
            margins = nbsvm_margins(
                rows[fit_i], y_train[fit_i], sparse.vstack([rows[held_i], rows_test]).tocsr()
            )
            val_acc = 100 * np.mean((margins[: len(held_i)] > 0) == y_train[held_i])
            test_acc = 100 * np.mean((margins[len(held_i) :] > 0) == y_test)
            gaps[kind].append(val_acc - test_acc)
            print(f"seed {seed}, hold-out of {kind} ({len(held_i)} reviews): validation {val_acc:.2f}%, "
                  f"test {test_acc:.2f}%, gap {val_acc - test_acc:+.2f}", flush=True)  # fmt: skip
    for kind, values in gaps.items():
        print(f"{kind}: validation minus test {np.mean(values):+.2f} ± {np.std(values, ddof=1):.2f} points")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
