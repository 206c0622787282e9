"""Name -> class tables for encoders and fusions, filled by explicit imports (no import-time registration magic)."""

from omnifuse.encoders.audio import AudioCNN
from omnifuse.encoders.image import ImageCNN, ImageFastNet, ImageResNet
from omnifuse.encoders.numbers import TabularMLP
from omnifuse.encoders.text import TextBag, TextNB, TextRNN, TextTfidf
from omnifuse.fusion.attention import AttentionFusion
from omnifuse.fusion.concat import ConcatFusion
from omnifuse.fusion.cross_attention import CrossAttentionFusion
from omnifuse.fusion.gated import GatedFusion
from omnifuse.fusion.late import LateFusion
from omnifuse.fusion.tensor import TensorFusion

IMAGE_ENCODERS = {"cnn": ImageCNN, "resnet": ImageResNet, "fastnet": ImageFastNet}
TEXT_ENCODERS = {"rnn": TextRNN, "bag": TextBag, "tfidf": TextTfidf, "nb": TextNB}
AUDIO_ENCODERS = {"cnn": AudioCNN}
TABULAR_ENCODERS = {"mlp": TabularMLP}
FUSIONS = {
    "concat": ConcatFusion,
    "attention": AttentionFusion,
    "gated": GatedFusion,
    "tensor": TensorFusion,
    "cross_attention": CrossAttentionFusion,
    "late": LateFusion,
}


def lookup(table: dict, name: str, what: str):
    from omnifuse.errors import OmnifuseError

    if name not in table:
        raise OmnifuseError(f"Unknown {what} {name!r}. Valid: {', '.join(sorted(table))}")
    return table[name]
