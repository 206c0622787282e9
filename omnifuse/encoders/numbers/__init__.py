"""Encoders of numbers and categories (a table's columns): name -> class (``model.tabular.encoder``)."""

from omnifuse.encoders.numbers.mlp import TabularMLP, TabularMLPConfig

ENCODERS = {"mlp": TabularMLP}
CONFIGS = {"mlp": TabularMLPConfig}
