"""Name -> class tables for encoders and fusions, filled by explicit imports (no import-time registration magic)."""

from omnifuse.encoders.image import ImageCNN, ImageResNet
from omnifuse.encoders.text import TextBag, TextRNN
from omnifuse.fusion.attention import AttentionFusion
from omnifuse.fusion.concat import ConcatFusion

IMAGE_ENCODERS = {"cnn": ImageCNN, "resnet": ImageResNet}
TEXT_ENCODERS = {"rnn": TextRNN, "bag": TextBag}
FUSIONS = {"concat": ConcatFusion, "attention": AttentionFusion}


def lookup(table: dict, name: str, what: str):
    from omnifuse.errors import OmnifuseError

    if name not in table:
        raise OmnifuseError(f"Unknown {what} {name!r}. Valid: {', '.join(sorted(table))}")
    return table[name]
