"""Audio encoders (``model.audio.encoder``): name -> options, name -> layer (imported on first use)."""

from omnifuse.encoders import lazy_attribute
from omnifuse.encoders.audio.cnn_config import AudioCNNConfig
from omnifuse.encoders.audio.whisper_config import WhisperConfig

CONFIGS = {"cnn": AudioCNNConfig, "whisper_tiny": WhisperConfig}
LAYERS = {"cnn": "cnn.AudioCNN", "whisper_tiny": "whisper.AudioWhisper"}


def __getattr__(name: str):
    return lazy_attribute(__name__, LAYERS, name)
