"""The ``pretrain`` config section: self-supervised pretraining of one modality's encoder (``omnifuse pretrain``),
Keras-free like the rest of the config; the code is omnifuse/pretrain/."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PretrainConfig:
    """pretrain: self-supervised pretraining of an encoder on the training and unlabelled samples (omnifuse pretrain)."""

    # the modality whose encoder is pretrained; "" = the data's one text or image modality
    modality: str = ""
    # passes over the pretraining samples: the training split's (never validation or test) and data.unlabeled's
    epochs: int = 5
    batch_size: int = 64  # samples per step
    learning_rate: float = 1e-3  # Adam's rate at the start, cosine-decayed to 0 over the epochs
    # at most this many pretraining samples (a seeded choice); 0 = all
    limit: int = 0
    # text: the language model's softmax covers the lm_vocab most frequent tokens of the vocabulary and one class
    # for the rarer ones (a softmax over the whole vocabulary would cost most of each step)
    lm_vocab: int = 4000
    temperature: float = 0.2  # images: the contrastive loss's temperature (NT-Xent, SimCLR)
    projection_dim: int = 128  # images: width of the projection head the loss is computed on (dropped after)
