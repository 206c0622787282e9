"""Image encoders (``model.image.encoder``): name -> options, name -> layer
(imported on first use), found from the package's ``*_config.py`` files (``omnifuse.encoders.discover``)."""

from omnifuse.encoders import discover, lazy_attribute

CONFIGS, LAYERS = discover(__name__, __path__)


def __getattr__(name: str):
    return lazy_attribute(__name__, LAYERS, name)
