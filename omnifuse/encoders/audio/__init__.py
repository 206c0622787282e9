"""Audio encoders: name -> class (``model.audio.encoder``)."""

from omnifuse.encoders.audio.cnn import AudioCNN, AudioCNNConfig

ENCODERS = {"cnn": AudioCNN}
CONFIGS = {"cnn": AudioCNNConfig}
