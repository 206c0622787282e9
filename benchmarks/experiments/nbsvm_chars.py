"""Do character n-grams add to NBSVM on IMDb? Word and character NBSVMs, outside omnifuse (scikit-learn).

The word NBSVM is the one of ``nbsvm_tokenizers.py`` (omnifuse's tokenizer, the million most frequent binary
1-3-grams, liblinear C = 0.1, beta = 0.25). The character NBSVM reads binary character n-grams inside word
boundaries (scikit-learn's ``char_wb``, of lengths ``--chars``, the most frequent ``--char-features``) of the same
standardised text. Three ways to join them, none tuned on the test set:

- ``sum``: the two models' test margins, each divided by its standard deviation over the training texts, summed;
- ``union``: one NBSVM on the union of both n-gram sets (each column scaled by its own log-count ratio);
- ``stack``: a logistic regression on the two margins, fitted on 5-fold out-of-fold training margins.

    OMNIFUSE_DATA=DATA python benchmarks/experiments/nbsvm_chars.py --chars 2-5
"""

import argparse
import time

import numpy as np
from nbsvm_tokenizers import letters, nbsvm_margins, ngram_rows  # beside this script
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from omnifuse.data import imdb


def char_rows(texts_train, texts_test, lengths: tuple[int, int], features: int):
    clean = [" ".join(letters(t)) for t in texts_train], [" ".join(letters(t)) for t in texts_test]
    vectorizer = CountVectorizer(
        analyzer="char_wb", ngram_range=lengths, binary=True, max_features=features, dtype=np.float32
    )
    return vectorizer.fit_transform(clean[0]), vectorizer.transform(clean[1])


def out_of_fold(train, y, folds=5, seed=0) -> np.ndarray:
    margins = np.zeros(train.shape[0])
    for fit, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        margins[held] = nbsvm_margins(train[fit], y[fit], train[held])
    return margins


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chars", default="2-5", help="character n-gram lengths, e.g. 2-5")
    parser.add_argument("--char-features", type=int, default=2_000_000)
    args = parser.parse_args()
    lengths = tuple(int(n) for n in args.chars.split("-"))
    data = imdb.load()
    x_train, y_train = list(data["train"].inputs["text"]), data["train"].labels["sentiment"]
    x_test, y_test = list(data["test"].inputs["text"]), data["test"].labels["sentiment"]

    def acc(margins) -> str:
        return f"{100 * np.mean((margins > 0) == y_test):.2f}%"

    start = time.perf_counter()
    words = ngram_rows(letters, x_train, x_test)
    chars = char_rows(x_train, x_test, lengths, args.char_features)
    print(
        f"features: words {words[0].shape[1]}, chars {chars[0].shape[1]} ({time.perf_counter() - start:.0f} s)"
    )
    found = {}
    for name, (train, test) in {"words": words, "chars": chars}.items():
        found[name] = nbsvm_margins(train, y_train, test), out_of_fold(train, y_train)
        print(f"{name} alone: {acc(found[name][0])}", flush=True)
    scale = {name: np.std(oof) for name, (_, oof) in found.items()}
    print("sum of standardised margins:", acc(sum(m / scale[n] for n, (m, _) in found.items())), flush=True)
    stack = LogisticRegression().fit(np.stack([oof for _, oof in found.values()], 1), y_train)
    print("stack on out-of-fold margins:", acc(stack.decision_function(np.stack([m for m, _ in found.values()], 1))),
          "coefficients", np.round(stack.coef_.ravel(), 3), flush=True)  # fmt: skip
    union = sparse.hstack([words[0], chars[0]]).tocsr(), sparse.hstack([words[1], chars[1]]).tocsr()
    print("one NBSVM on the union:", acc(nbsvm_margins(union[0], y_train, union[1])), flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
