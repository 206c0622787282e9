"""Name -> class tables for encoders and fusions, filled by explicit imports (no import-time registration magic),
and :func:`register_encoder`, which adds an encoder of the user's to a kind's tables."""

import dataclasses

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


# ------------------------------------------------------------------------------------------- your own encoders

KINDS = {"image": image, "text": text, "audio": audio, "numbers": numbers}
_TABLES = {
    "image": IMAGE_ENCODERS,
    "text": TEXT_ENCODERS,
    "audio": AUDIO_ENCODERS,
    "numbers": TABULAR_ENCODERS,
}
CUSTOM_PACKAGE = "omnifuse_custom"  # the Keras registration of a user's encoder: "omnifuse_custom>ClassName"


def register_encoder(kind: str, name: str, layer_class: type, config_class: type | None = None) -> None:
    """Make the Keras layer ``layer_class`` the encoder ``name`` of modality kind ``kind`` (``image``, ``text``,
    ``audio``, ``numbers``; ``tabular`` = ``numbers``): ``model.<kind>.encoder = name`` then selects it, and the
    frozen dataclass ``config_class`` (optional) is its section of options, ``model.<kind>.<name>``, whose fields
    are passed to ``layer_class(...)``. See docs/extending.md for what the layer receives and returns.

    The class is registered with Keras (as ``omnifuse_custom>ClassName``, unless it already is), so a saved run
    loads again in any process that has called ``register_encoder`` first: keep it in a module of yours and import
    that module before ``omnifuse.load``, ``omnifuse.evaluate`` or ``--resume``.

    >>> omnifuse.register_encoder("numbers", "linear", MyLinear, MyLinearConfig)
    >>> omnifuse.train("table", {"data.csv": "pets.csv", "data.label": "species", "model.tabular.encoder": "linear"})
    """
    import keras

    from omnifuse.encoders import sections
    from omnifuse.errors import OmnifuseError

    kind = "numbers" if kind == "tabular" else kind
    if kind not in KINDS:
        raise OmnifuseError(f"Expected a modality kind in {', '.join(KINDS)}. Received: {kind!r}")
    if not (isinstance(name, str) and name.isidentifier()):
        raise OmnifuseError(f"Expected an encoder name made of letters, digits and _. Received: {name!r}")
    package, own = KINDS[kind], _own_keys(kind)
    if name in own or (name in package.CONFIGS and isinstance(package.LAYERS[name], str)):
        taken = ", ".join([*package.CONFIGS, *own])
        raise OmnifuseError(
            f"Expected a new encoder name for kind {kind!r}. Received: {name!r} (taken: {taken})"
        )
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise OmnifuseError(f"Expected a keras.layers.Layer subclass. Received: {layer_class!r}")
    if config_class is None:  # no options: an empty section
        config_class = dataclasses.make_dataclass(f"{layer_class.__name__}Options", [], frozen=True)
        config_class.__doc__ = f"model.{_section(kind)}.{name}: {layer_class.__name__} (no options)."
    elif not dataclasses.is_dataclass(config_class):
        raise OmnifuseError(f"Expected a dataclass of the encoder's options. Received: {config_class!r}")
    if keras.saving.get_registered_name(layer_class) == layer_class.__name__:  # not registered yet
        registered = f"{CUSTOM_PACKAGE}>{layer_class.__name__}"
        other = keras.saving.get_custom_objects().get(registered)
        if other is not None and other is not layer_class:
            raise OmnifuseError(
                f"Expected one encoder class named {layer_class.__name__!r}. Received a second one"
            )
        keras.saving.register_keras_serializable(package=CUSTOM_PACKAGE)(layer_class)
    package.CONFIGS[name], package.LAYERS[name] = config_class, layer_class
    _TABLES[kind][name] = layer_class
    sections.refresh()


def unregister_encoder(kind: str, name: str) -> None:
    """Undo :func:`register_encoder` (for tests): the kind's tables and config sections without ``name``."""
    from omnifuse.encoders import sections

    kind = "numbers" if kind == "tabular" else kind
    package = KINDS[kind]
    if isinstance(package.LAYERS.get(name), str):
        raise ValueError(f"{name!r} is one of omnifuse's own {kind} encoders")
    package.CONFIGS.pop(name, None)
    package.LAYERS.pop(name, None)
    _TABLES[kind].pop(name, None)
    sections.refresh()


def _section(kind: str) -> str:
    return "tabular" if kind == "numbers" else kind


def _own_keys(kind: str) -> list[str]:
    """The keys of ``model.<kind>`` that are not encoder sections (``encoder``, ``vocab_size`` ...)."""
    from omnifuse.encoders import sections

    base = {"image": sections._ImageKeys, "text": sections._TextKeys, "audio": sections._AudioKeys}
    return [f.name for f in dataclasses.fields(base.get(kind, sections._TabularKeys))]
