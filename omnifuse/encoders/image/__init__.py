"""Image encoders (``model.image.encoder``): name -> options, name -> layer (imported on first use)."""

from omnifuse.encoders import lazy_attribute
from omnifuse.encoders.image.cnn_config import CNNConfig
from omnifuse.encoders.image.efficientnet_lite_config import EfficientNetLiteConfig
from omnifuse.encoders.image.fastnet_config import FastNetConfig
from omnifuse.encoders.image.resnet_config import ResNetConfig

CONFIGS = {
    "cnn": CNNConfig,
    "resnet": ResNetConfig,
    "fastnet": FastNetConfig,
    "efficientnet_lite0": EfficientNetLiteConfig,
}
LAYERS = {
    "cnn": "cnn.ImageCNN",
    "resnet": "resnet.ImageResNet",
    "fastnet": "fastnet.ImageFastNet",
    "efficientnet_lite0": "efficientnet_lite.ImageEfficientNetLite",
}


def __getattr__(name: str):
    return lazy_attribute(__name__, LAYERS, name)
