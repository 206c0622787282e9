"""Options of the naive-Bayes n-gram text encoder (``model.text.nb``), kept apart from the layer so a config can be
read and checked without importing Keras."""

from __future__ import annotations

import typing
from dataclasses import dataclass


@dataclass(frozen=True)
class NBConfig:
    """model.text.nb: NBSVM, naive-Bayes log-count ratios of n-grams."""

    vocab_size: int = 1000000  # n-grams kept (the most frequent in the training texts)
    ngrams: int = 3  # unigrams up to this length
    # nbsvm: weights fitted once from the training texts, then fixed | learn: trained with the model
    fit: typing.Literal["nbsvm", "learn"] = "nbsvm"
    c: float = 0.1  # nbsvm: inverse L2 strength of the logistic regression on the ratio-scaled n-grams
    beta: float = 0.25  # nbsvm: interpolation between the mean weight (0) and the fitted weights (1)
    # nbsvm: a training text gets the margins of the fit on the other folds (0: of the full fit)
    folds: int = 5
    prior: float = 0.4  # learn: each present n-gram's weight starts at prior * its log-count ratio
    scale: float = 0.1  # learn: the summed evidence is multiplied by this before fusion
    l2: float = 1e-6  # learn: penalty on the learned corrections to the prior weights
    dropout: float = 0.0  # learn: each n-gram of a training text is left out with this probability
    smoothing: float = 1.0  # alpha added to every n-gram's count per class


# model.text.encoder name -> the layer class in nb.py that these options configure
ENCODERS = {"nb": "TextNB"}
