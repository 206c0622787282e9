"""Audio encoders (``model.audio.encoder``): name -> options, name -> layer (imported on first use)."""

from omnifuse.encoders import lazy_attribute
from omnifuse.encoders.audio.cnn_config import AudioCNNConfig

CONFIGS = {"cnn": AudioCNNConfig}
LAYERS = {"cnn": "cnn.AudioCNN"}


def __getattr__(name: str):
    return lazy_attribute(__name__, LAYERS, name)
