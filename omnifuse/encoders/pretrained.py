"""What a pretrained encoder has beyond an encoder: weights read from a weight package when it is built new (not
when a saved model is loaded: its archive holds them), a slower learning rate when it trains, and features that
can be computed once when it is frozen."""

from __future__ import annotations


class Pretrained:
    """Mixin for a pretrained encoder layer with ``mode`` ("frozen" | "finetune" | "last_k") and ``dropout``.

    ``build`` reads the pretrained weights only where ``self._load_pretrained`` is true: a layer made by
    ``from_config`` (a saved model being loaded) gets its weights from the archive instead, so loading needs no
    weight package."""

    pretrained = True  # fine-tuned at train.pretrained_lr_scale (omnifuse/model/compile.py)
    _load_pretrained = True

    @classmethod
    def from_config(cls, config):
        layer = cls(**config)
        layer._load_pretrained = False
        return layer

    @property
    def frozen_features(self) -> bool:
        """Whether a sample's features are the same in every training step (omnifuse/features.py caches them)."""
        return self.mode == "frozen" and self.dropout == 0.0
