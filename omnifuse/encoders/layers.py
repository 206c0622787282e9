"""Building blocks shared by encoders: a bfloat16-friendly batch norm, conv+BN folding, building a chain."""

import keras


def build_chain(layers, shape):
    """Build ``layers`` in order from ``shape`` (so a saved model can restore their weights); return the last shape."""
    shape = tuple(shape)
    for layer in layers:
        if layer is None:
            continue
        if not layer.built:
            layer.build(shape)
        shape = tuple(layer.compute_output_shape(shape))
    return shape


QUICK_GELU_SLOPE = 1.702  # sigmoid(1.702 x) is within 0.021 of GELU's Phi(x) everywhere


@keras.ops.custom_gradient
def _quick_gelu(x):
    s = keras.ops.sigmoid(QUICK_GELU_SLOPE * x)

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        # d/dx x s(ax) = s + a x s (1 - s), from the saved s: no pass of automatic differentiation's own
        return upstream * (s * (1.0 + QUICK_GELU_SLOPE * x * (1.0 - s)))

    return x * s, grad


@keras.saving.register_keras_serializable(package="omnifuse")
def quick_gelu(x):
    """GELU in its sigmoid form, ``x * sigmoid(1.702 x)`` (Hendrycks & Gimpel's approximation), with its gradient
    written out, so that training runs a few element-wise passes where GELU's forward and automatic gradient run
    about a dozen (on TensorFlow on 2 CPU cores about 0.6x GELU's time, forward and backward)."""
    if keras.backend.backend() in ("tensorflow", "jax"):
        return _quick_gelu(x)
    return x * keras.ops.sigmoid(QUICK_GELU_SLOPE * x)  # autograd elsewhere: the same function


# name -> what a keras.layers.Activation takes (a name Keras knows, or a registered function, so saved models load)
ACTIVATIONS = {"gelu": "gelu", "quick_gelu": quick_gelu, "relu": "relu"}


@keras.saving.register_keras_serializable(package="omnifuse")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose inference in a bfloat16 model is one multiply-add.

    It keeps Keras's class name because a saved model files the weights of a list of layers under their class names:
    models saved with Keras's own class load into this one.

    Keras normalises bfloat16 inputs by casting them to float32 and back. Here, at inference, the moving
    statistics, gamma and beta are folded into one scale and offset per channel (in float32, then rounded once to
    bfloat16): the three batch norms of the AV-digits audio CNN took about 21 instead of 28 ms per 64-sample batch.
    Still more than its convolutions, so where a convolution comes right before it, :func:`apply_layers` folds the
    normalisation into that convolution instead. Training, float32 inputs, masks and normalisation over another
    axis than the last go to Keras's own ``call``, except that training of 4-D inputs on TensorFlow runs in its fused
    kernel (:meth:`_fused_training`, the same arithmetic).
    """

    def __init__(self, *args, beta_grad_scale=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        # the gradient reaching beta is multiplied by this: with SGD, beta learns that many times faster, and
        # (decoupled) weight decay still shrinks it at the usual rate; the outputs are unchanged
        self.beta_grad_scale = float(beta_grad_scale)

    def call(self, inputs, training=None, mask=None):
        out = self._call(inputs, training, mask)
        if training and self.trainable and self.center and self.beta_grad_scale != 1.0:
            # zero in value; its gradient adds (scale - 1) times beta's own
            beta = keras.ops.cast(self.beta, "float32")
            extra = (self.beta_grad_scale - 1.0) * (beta - keras.ops.stop_gradient(beta))
            out = out + keras.ops.cast(extra, out.dtype)
        return out

    def _call(self, inputs, training, mask):
        if training and self.trainable and self._fusable(inputs, mask):
            return self._fused_training(inputs)
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        last = self.axis in (-1, len(inputs.shape) - 1)
        if (
            (training and self.trainable)
            or mask is not None
            or dtype not in ("bfloat16", "float16")
            or not last
        ):
            return super().call(inputs, training=training, mask=mask)
        scale, offset = self.folded()
        return inputs * keras.ops.cast(scale, dtype) + keras.ops.cast(offset, dtype)

    def get_config(self):
        return {**super().get_config(), "beta_grad_scale": self.beta_grad_scale}

    def _fusable(self, inputs, mask) -> bool:
        """Training on TensorFlow, 4-D inputs normalised over the last axis, nothing Keras adds (mask, renorm,
        synchronised statistics): one fused kernel can do it."""
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and not getattr(self, "renorm", False)
            and not getattr(self, "synchronized", False)
        )

    def _fused_training(self, inputs):
        """Keras's training-mode batch norm (batch statistics, biased variance, the same moving averages) in
        TensorFlow's fused kernel, forward and backward: Keras 3 computes it from separate moments and element-wise
        ops, which on 2 CPU cores made the narrow CIFAR-10 net's training step about 8% longer and the small CNNs' (the
        FSDD audio CNN, the MedMNIST ResNet) about 40% longer (benchmarks/experiments/fused_bn_step.py)."""
        import tensorflow as tf

        x = tf.cast(inputs, "float32")  # as Keras: statistics in float32 whatever the compute dtype
        channels = x.shape[-1]
        gamma = tf.cast(self.gamma, "float32") if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, "float32") if self.center else tf.zeros([channels])
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True
        )[:3]
        # the kernel returns the unbiased variance; Keras keeps the biased one
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), "float32")
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        m = self.momentum
        self.moving_mean.assign(tf.cast(self.moving_mean, "float32") * m + mean * (1.0 - m))
        self.moving_variance.assign(tf.cast(self.moving_variance, "float32") * m + variance * (1.0 - m))
        return tf.cast(y, self.compute_dtype)

    def folded(self):
        """Inference as ``x * scale + offset`` per channel: (scale, offset), float32, from the moving statistics."""
        ops = keras.ops
        scale = ops.rsqrt(ops.cast(self.moving_variance, "float32") + self.epsilon)
        if self.scale:
            scale = scale * ops.cast(self.gamma, "float32")
        offset = -ops.cast(self.moving_mean, "float32") * scale
        if self.center:
            offset = offset + ops.cast(self.beta, "float32")
        return scale, offset


def _folded_conv(conv, norm, x):
    """``norm(conv(x))`` at inference as one convolution: the normalisation folded into the kernel and a bias."""
    ops = keras.ops
    scale, offset = norm.folded()
    if conv.use_bias:
        offset = offset + ops.cast(conv.bias, "float32") * scale
    dtype = conv.compute_dtype
    kernel = ops.cast(ops.cast(conv.kernel, "float32") * scale, dtype)
    y = ops.conv(
        ops.cast(x, dtype),
        kernel,
        strides=conv.strides,
        padding=conv.padding,
        data_format=conv.data_format,
        dilation_rate=conv.dilation_rate,
    )
    return y + ops.cast(offset, dtype)


def _foldable(conv, norm) -> bool:
    return (
        isinstance(conv, keras.layers.Conv2D)
        and isinstance(norm, BatchNormalization)
        and conv.compute_dtype in ("bfloat16", "float16")
        and conv.activation is keras.activations.linear
        and conv.groups == 1
        and conv.data_format == "channels_last"
        and norm.axis in (-1, 3)
    )


def apply_layers(seq, x, training=None):
    """Apply the layers of ``seq`` (``None`` entries skipped) in order.

    At inference in bfloat16, a ``Conv2D`` directly followed by a :class:`BatchNormalization` runs as one
    convolution with the normalisation folded into its kernel and bias: a bfloat16 batch norm is element-wise work
    that cost the AV-digits audio CNN more than its convolutions did. The folding reads the layers' variables, so an
    encoder that calls this should set ``self.autocast = False`` (its sub-layers still cast themselves); with
    autocast on, the folded kernel is rounded twice, which is still correct but less exact.
    """
    seq = [layer for layer in seq if layer is not None]
    i = 0
    while i < len(seq):
        if not training and i + 1 < len(seq) and _foldable(seq[i], seq[i + 1]):
            x = _folded_conv(seq[i], seq[i + 1], x)
            i += 2
        else:
            x = seq[i](x, training=training)
            i += 1
    return x
