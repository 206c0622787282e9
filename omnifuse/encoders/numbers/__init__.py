"""Encoders of numbers and categories (a table's columns; ``model.tabular.encoder``): name -> options, name -> layer
(imported on first use)."""

from omnifuse.encoders import lazy_attribute
from omnifuse.encoders.numbers.mlp_config import TabularMLPConfig

CONFIGS = {"mlp": TabularMLPConfig}
LAYERS = {"mlp": "mlp.TabularMLP"}


def __getattr__(name: str):
    return lazy_attribute(__name__, LAYERS, name)
