"""Options of the numbers-and-categories MLP encoder (``model.tabular.mlp``), kept apart from the layer so a config
can be read and checked without importing Keras."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TabularMLPConfig:
    """model.tabular.mlp: impute, standardise, MLP."""

    units: tuple[int, ...] = (64, 64)  # one Dense-ReLU-Dropout block per entry; the last is the output width
    dropout: float = 0.1  # after each block
    missing_indicator: bool = True  # append one 0/1 input per feature saying whether its cell was empty


# model.tabular.encoder name -> the layer class in mlp.py that these options configure
ENCODERS = {"mlp": "TabularMLP"}
