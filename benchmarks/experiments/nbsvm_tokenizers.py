"""Does the tokenization change NBSVM's accuracy on IMDb? One NBSVM, four tokenizers, outside omnifuse (scikit-learn).

The NBSVM matches omnifuse's ``nb`` encoder: binary 1-3-grams (the million most frequent), log-count ratios with
alpha = 1, one liblinear logistic regression (C = 0.1) on the ratio-scaled n-grams, weights interpolated towards
their mean magnitude with beta = 0.25. Tokenizers:

- ``letters``: omnifuse's ``standardize_text`` (lower case, HTML line breaks and apostrophes dropped, runs of letters
  and digits);
- ``words``: runs of word characters and apostrophes in the lower-cased raw text (the ``<br />`` tags become ``br``
  tokens);
- ``words_nobr``: the same with the line breaks dropped first;
- ``letters_punct``: ``letters`` plus ``!`` and ``?`` as tokens.

    OMNIFUSE_DATA=DATA python benchmarks/experiments/nbsvm_tokenizers.py letters words words_nobr letters_punct
"""

import re
import sys
import time

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from omnifuse.data import imdb

BREAK = re.compile(r"<br\s*/?>")
WORD = re.compile(r"[\w']+")


def letters(text: str) -> list[str]:
    text = re.sub(r"['’]", "", BREAK.sub(" ", text.lower()))
    return re.sub(r"[\W_]+", " ", text).split()


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def words_nobr(text: str) -> list[str]:
    return WORD.findall(BREAK.sub(" ", text.lower()))


def letters_punct(text: str) -> list[str]:
    text = re.sub(r"['’]", "", BREAK.sub(" ", text.lower()))
    return re.findall(r"[^\W_]+|[!?]", text)


TOKENIZERS = {f.__name__: f for f in (letters, words, words_nobr, letters_punct)}


def ngram_rows(tokenize, x_train, x_test):
    """Binary rows of the million most frequent 1-3-grams of the training texts: (train, test), sparse."""
    vectorizer = CountVectorizer(
        tokenizer=tokenize,
        lowercase=False,
        token_pattern=None,
        ngram_range=(1, 3),
        binary=True,
        max_features=1_000_000,
        dtype=np.float32,
    )
    return vectorizer.fit_transform(x_train), vectorizer.transform(x_test)


def nbsvm_margins(train, y_train, test, c=0.1, beta=0.25) -> np.ndarray:
    """Test margins of an NBSVM (alpha = 1, liblinear, interpolation beta) fitted on binary n-gram rows."""
    pos = np.asarray(train[y_train == 1].sum(0)).ravel() + 1.0
    neg = np.asarray(train[y_train == 0].sum(0)).ravel() + 1.0
    ratio = np.log((pos / pos.sum()) / (neg / neg.sum())).astype(np.float32)
    fit = LogisticRegression(C=c, solver="liblinear", max_iter=1000).fit(
        train.multiply(ratio).tocsr(), y_train
    )
    weight = fit.coef_.ravel()
    weight = beta * weight + (1 - beta) * np.abs(weight).mean()
    return test.multiply(ratio).tocsr() @ weight + beta * fit.intercept_[0]


def nbsvm_accuracy(tokenize, x_train, y_train, x_test, y_test, c=0.1, beta=0.25) -> float:
    train, test = ngram_rows(tokenize, x_train, x_test)
    return float(np.mean((nbsvm_margins(train, y_train, test, c, beta) > 0) == y_test))


def main(names: list[str]) -> None:
    data = imdb.load()
    train, test = data["train"], data["test"]
    for name in names or list(TOKENIZERS):
        start = time.perf_counter()
        acc = nbsvm_accuracy(
            TOKENIZERS[name],
            list(train.inputs["text"]),
            train.labels["sentiment"],
            list(test.inputs["text"]),
            test.labels["sentiment"],
        )
        print(f"{name}: test accuracy {100 * acc:.2f}% ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
