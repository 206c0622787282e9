"""Do a review's ends, or its strongest sentences, carry what NBSVM over the whole review misses? IMDb, outside omnifuse.

A review's verdict often sits in its last (or first) sentences. This script fits NBSVMs (``nbsvm_tokenizers.py``'s:
binary 1-3-grams, log-count ratios, liblinear, beta = 0.25) on different views of each review and stacks their margins:

- ``doc``: the whole review;
- ``head`` / ``tail``: the first / last ``--window`` tokens only;
- ``tagged``: one NBSVM on the whole review's n-grams plus the tail's n-grams as features of their own (``T:`` prefix);
- ``sent``: the ``doc`` weights applied to each sentence; the review's largest and smallest sentence margins.

Stacking: each view's margins on the training reviews come from 5 folds of whole films (a review's film is never in
the fold that fitted its margin), a logistic regression on them is fitted on those out-of-fold margins, and the
views fitted on all training reviews give the test margins. Nothing is chosen on the test set; every combination is
printed with its out-of-fold (training) accuracy beside its test accuracy.

    OMNIFUSE_DATA=DATA python benchmarks/experiments/nbsvm_regions.py --window 40
"""

import argparse
import itertools
import re
import time

import numpy as np
from nbsvm_tokenizers import nbsvm_margins, words  # beside this script
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold

from omnifuse.data import imdb

SENTENCE = re.compile(r"(?<=[.!?])\s+|<br\s*/?>")


def vectorize(docs_train, docs_test, prefix_docs=None, max_features=1_000_000):
    """Binary 1-3-gram rows (train, test) of token lists; ``prefix_docs`` adds features of other token lists."""

    def analyzer(doc):
        tokens, extra = doc
        grams = [" ".join(tokens[i : i + n]) for n in (1, 2, 3) for i in range(len(tokens) - n + 1)]
        if extra is not None:
            grams += ["T:" + " ".join(extra[i : i + n]) for n in (1, 2, 3) for i in range(len(extra) - n + 1)]
        return grams

    def pair(docs, extra):
        return list(zip(docs, extra if extra is not None else [None] * len(docs), strict=True))

    vectorizer = CountVectorizer(analyzer=analyzer, binary=True, max_features=max_features, dtype=np.float32)
    extra_train, extra_test = prefix_docs if prefix_docs else (None, None)
    train = vectorizer.fit_transform(pair(docs_train, extra_train))
    return vectorizer, train, vectorizer.transform(pair(docs_test, extra_test))


def oof_and_test(train, y, test, folds, c, beta):
    """Out-of-fold training margins and test margins (fitted on all training rows) of one NBSVM."""
    oof = np.zeros(train.shape[0])
    for fit_i, held_i in folds:
        oof[held_i] = nbsvm_margins(train[fit_i], y[fit_i], train[held_i], c, beta)
    return oof, nbsvm_margins(train, y, test, c, beta)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=int, default=40)
    parser.add_argument("--c", type=float, default=0.1)
    parser.add_argument("--beta", type=float, default=0.25)
    parser.add_argument("--no-sentences", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    data = imdb.load()
    train, test = data["train"], data["test"]
    y, y_test = train.labels["sentiment"], test.labels["sentiment"]
    texts, texts_test = list(train.inputs["text"]), list(test.inputs["text"])
    tok, tok_test = [words(t) for t in texts], [words(t) for t in texts_test]
    folds = list(StratifiedGroupKFold(5, shuffle=True, random_state=0).split(texts, y, train.extra["group"]))
    w = args.window
    views = {
        "doc": (tok, tok_test, None),
        "head": ([t[:w] for t in tok], [t[:w] for t in tok_test], None),
        "tail": ([t[-w:] for t in tok], [t[-w:] for t in tok_test], None),
        "tagged": (tok, tok_test, ([t[-w:] for t in tok], [t[-w:] for t in tok_test])),
    }
    margins = {}
    for name, (a, b, extra) in views.items():
        t0 = time.perf_counter()
        vectorizer, rows, rows_test = vectorize(a, b, extra)
        margins[name] = oof_and_test(rows, y, rows_test, folds, args.c, args.beta)
        oof, tm = margins[name]
        print(f"{name}: {rows.shape[1]} n-grams, out-of-fold {100 * np.mean((oof > 0) == y):.2f}%, "
              f"test {100 * np.mean((tm > 0) == y_test):.2f}% ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
        if name == "doc" and not args.no_sentences:
            t0 = time.perf_counter()
            margins.update(sentence_margins(texts, texts_test, vectorizer, rows, y, folds, args.c, args.beta))
            print(f"sentences ({time.perf_counter() - t0:.0f} s)", flush=True)
    names = list(margins)
    for k in range(1, len(names) + 1):
        for combo in itertools.combinations(names, k):
            if len(combo) == 1 and combo[0] in views:
                continue  # printed above
            x = np.column_stack([margins[n][0] for n in combo])
            x_test = np.column_stack([margins[n][1] for n in combo])
            oof = np.zeros(len(y))
            for fit_i, held_i in folds:
                oof[held_i] = LogisticRegression(C=1.0).fit(x[fit_i], y[fit_i]).predict(x[held_i])
            acc_test = np.mean(LogisticRegression(C=1.0).fit(x, y).predict(x_test) == y_test)
            print(
                f"stack {'+'.join(combo)}: out-of-fold {100 * np.mean(oof == y):.2f}%, test {100 * acc_test:.2f}%"
            )
    print(f"total {time.perf_counter() - start:.0f} s")


def sentence_margins(texts, texts_test, vectorizer, rows, y, folds, c, beta):
    """The doc NBSVM's largest and smallest sentence margins per review (out-of-fold on training)."""

    def split(batch):
        owners, sentences = [], []
        for i, text in enumerate(batch):
            parts = [s for s in SENTENCE.split(text) if s.strip()] or [text]
            sentences += [(words(s), None) for s in parts]
            owners += [i] * len(parts)
        return np.asarray(owners), vectorizer.transform(sentences)

    def extremes(owners, values, n):
        high, low = np.full(n, -np.inf), np.full(n, np.inf)
        np.maximum.at(high, owners, values)
        np.minimum.at(low, owners, values)
        return np.column_stack([high, low])

    own, srows = split(texts)
    own_t, srows_t = split(texts_test)
    oof = np.zeros((len(texts), 2))
    for fit_i, held_i in folds:
        held = np.isin(own, held_i)
        values = nbsvm_margins(rows[fit_i], y[fit_i], srows[held], c, beta)
        oof[held_i] = extremes(own[held], values, len(texts))[held_i]
    test = extremes(own_t, nbsvm_margins(rows, y, srows_t, c, beta), len(texts_test))
    return {"sentmax": (oof[:, 0], test[:, 0]), "sentmin": (oof[:, 1], test[:, 1])}


if __name__ == "__main__":
    main()
