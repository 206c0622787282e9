"""A modality's encoder (and its in-model preprocessing) behind that modality's presence mask."""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="omnifuse")
class ModalityBranch(layers.Layer):
    """Runs a modality's encoder only when some sample in the batch has that modality (``skip_absent``).

    Data sets that hold different modalities are batched separately, so in the joint CIFAR-10 + IMDb model an image
    batch never pays for the LSTM and a text batch never pays for the CNN. A mixed batch runs the encoder on all of it
    (the fusion then ignores the absent samples through their mask).

    The skip is a conditional in the graph, and it costs: TensorFlow optimises the encoder inside it less (a small
    ResNet's training step took 93 instead of 64 ms with it), and XLA compiles it into a step 20 times slower. So
    the model builder sets ``skip_absent=False`` where it gains nothing (a model with one modality) and under
    ``train.jit_compile``; then the encoder runs on every batch, as it always does on JAX.
    """

    def __init__(self, encoder, preprocess=None, skip_absent=True, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.preprocess = preprocess
        self.skip_absent = skip_absent
        # the inputs reach the encoder as they are (a bfloat16 model would otherwise round raw waveforms and
        # numbers here); each encoder decides what it computes in
        self.autocast = False

    def build(self, input_shape):
        shape = tuple(input_shape[0])
        if self.preprocess is not None:
            self.preprocess.build(shape)
        if not self.encoder.built and type(self.encoder).build is not layers.Layer.build:
            self.encoder.build(
                shape
            )  # (a layer without build() of its own is built by a symbolic call instead)

    def _encode(self, x, training):
        if self.preprocess is not None:
            x = self.preprocess(x, training=training)
        return self.encoder(x, training=training)

    def call(self, inputs, training=None):
        x, mask = inputs
        if not self.skip_absent or keras.backend.backend() == "jax":
            # JAX cannot trace a stateful layer (batch-norm statistics, random augmentation) inside a cond: the
            # encoder runs on every batch, and a batch without this modality updates its batch-norm statistics too
            return ops.cast(self._encode(x, training), self.compute_dtype)
        zeros = ops.zeros((ops.shape(x)[0], self._output_dim(x)), dtype=self.compute_dtype)
        return ops.cond(
            ops.any(mask > 0), lambda: ops.cast(self._encode(x, training), self.compute_dtype), lambda: zeros
        )

    def _output_dim(self, x) -> int:
        """The encoder's ``output_dim``; for a layer of the user's without one, the width of its output for ``x``
        (``omnifuse.register_encoder`` takes any layer that maps a batch to (B, D))."""
        if not self.encoder.built:  # a layer of the user's without build(): a symbolic call builds its layers
            self.encoder(keras.KerasTensor(tuple(x.shape), dtype=x.dtype))
        dim = getattr(self.encoder, "output_dim", None)
        if dim is None:
            spec = self.encoder.compute_output_spec(keras.KerasTensor(tuple(x.shape), dtype=x.dtype))
            if len(spec.shape) != 2 or spec.shape[-1] is None:
                raise ValueError(
                    f"Expected encoder {self.encoder.name!r} to return (batch, features). Received: {spec.shape}"
                )
            dim = self.encoder.output_dim = int(spec.shape[-1])
        return dim

    def compute_output_spec(self, inputs, training=None):
        x = inputs[0]
        return keras.KerasTensor((x.shape[0], self._output_dim(x)), dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.encoder.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "skip_absent": self.skip_absent,
            "preprocess": None
            if self.preprocess is None
            else keras.saving.serialize_keras_object(self.preprocess),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        if config.get("preprocess") is not None:
            config["preprocess"] = keras.saving.deserialize_keras_object(config["preprocess"])
        return cls(**config)
