"""Image encoders: name -> class (``model.image.encoder``)."""

from omnifuse.encoders.image.cnn import CNNConfig, ImageCNN
from omnifuse.encoders.image.fastnet import FastNetConfig, ImageFastNet
from omnifuse.encoders.image.resnet import ImageResNet, ResNetConfig

ENCODERS = {"cnn": ImageCNN, "resnet": ImageResNet, "fastnet": ImageFastNet}
CONFIGS = {"cnn": CNNConfig, "resnet": ResNetConfig, "fastnet": FastNetConfig}
