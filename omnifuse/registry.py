"""Name -> class tables for encoders and fusions, filled by explicit imports (no import-time registration magic)."""

from omnifuse.encoders import audio, image, numbers, text
from omnifuse.fusion.attention import AttentionFusion
from omnifuse.fusion.concat import ConcatFusion
from omnifuse.fusion.cross_attention import CrossAttentionFusion
from omnifuse.fusion.gated import GatedFusion
from omnifuse.fusion.late import LateFusion
from omnifuse.fusion.tensor import TensorFusion

# each kind's own table (omnifuse/encoders/<kind>/__init__.py), not a copy: a new encoder is registered there only
IMAGE_ENCODERS = image.ENCODERS
TEXT_ENCODERS = text.ENCODERS
AUDIO_ENCODERS = audio.ENCODERS
TABULAR_ENCODERS = numbers.ENCODERS
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
