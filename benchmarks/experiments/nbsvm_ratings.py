"""Do IMDb's star ratings help NBSVM? Ordinal NBSVMs beside the binary one, outside omnifuse (scikit-learn).

Each training review's file name carries its rating (1-4 negative, 7-10 positive). Besides the binary NBSVM (the
one of ``nbsvm_tokenizers.py``, ``words`` tokenizer), one NBSVM is fitted per rating threshold t (rating > t, for t in
1, 2, 3, 7, 8, 9), and their standardised test margins are summed with the binary one's. The sums are scored at
margin 0 and, as an upper bound, at the best threshold chosen on the test set itself (optimistic by construction):
if even that does not beat the binary NBSVM, the ratings add nothing this way.

    OMNIFUSE_DATA=DATA python benchmarks/experiments/nbsvm_ratings.py
"""

import time

import numpy as np
from nbsvm_tokenizers import nbsvm_margins, ngram_rows, words

from omnifuse.data import imdb

THRESHOLDS = (1, 2, 3, 7, 8, 9)
COMBINATIONS = {
    "binary": ("binary",),
    "binary + t3 + t7": ("binary", "t3", "t7"),
    "binary + t2 + t8": ("binary", "t2", "t8"),
    "all seven": ("binary", *(f"t{t}" for t in THRESHOLDS)),
}


def main() -> None:
    start = time.perf_counter()
    data = imdb.load()
    train, test = data["train"], data["test"]
    x_train, x_test = ngram_rows(words, list(train.inputs["text"]), list(test.inputs["text"]))
    y_test = test.labels["sentiment"]
    margins = {"binary": nbsvm_margins(x_train, train.labels["sentiment"], x_test)}
    for t in THRESHOLDS:
        margins[f"t{t}"] = nbsvm_margins(x_train, (train.extra["rating"] > t).astype(int), x_test)
    for name, parts in COMBINATIONS.items():
        total = sum(margins[p] / margins[p].std() for p in parts)
        at_zero = np.mean((total > 0) == y_test)
        cuts = np.quantile(total, np.linspace(0.4, 0.6, 201))
        best = max(np.mean((total > cut) == y_test) for cut in cuts)
        print(
            f"{name}: {100 * at_zero:.2f}% at 0, {100 * best:.2f}% at the best test-set threshold", flush=True
        )
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
