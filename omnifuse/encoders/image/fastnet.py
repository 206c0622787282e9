"""A fast CIFAR-10 net (``ImageFastNet``). Input: uint8 or float images (B, H, W, C)."""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import layers, ops

from omnifuse.encoders.image.augment import _random_flip, _shifted, _window
from omnifuse.encoders.layers import ACTIVATIONS, BatchNormalization, apply_layers, build_chain

# ------------------------------------------------------------------------------------------ fast CIFAR-10 net
# A narrow BN conv net chosen for accuracy per FLOP on a CPU, after the ideas of the fastest known CIFAR-10 trainers:
# a first conv whose filters whiten 2x2 image patches (set from data by adapt(), then frozen), conv-pool-BN-GELU
# groups whose convs start near identity, flip + translate augmentation inside the training step, and flip
# test-time augmentation inside inference (so a saved model does it too).


# a frozen whitening bias (whiten_bias_epochs) gets no gradient by design: Keras's warning that it has none, which
# suggests a missing loss, would mislead
FROZEN_BIAS_WARNING = r"Gradients do not exist for variables \['[^']*whiten_bias'\]"
warnings.filterwarnings("ignore", message=FROZEN_BIAS_WARNING)


@keras.saving.register_keras_serializable(package="omnifuse")
class IdentityCentreUniform(keras.initializers.Initializer):
    """Uniform(+-1/sqrt(fan_in)) conv kernel whose first min(C_in, C_out) filters pass their input channel through.

    A conv that starts near identity lets a deep plain (residual-free) net train at once with a high learning rate.
    """

    def __call__(self, shape, dtype=None):
        kh, kw, cin, cout = shape
        bound = 1.0 / np.sqrt(kh * kw * cin)
        kernel = keras.random.uniform(shape, -bound, bound, dtype=dtype)
        n = min(cin, cout)
        centre = np.zeros(shape, "float32")
        centre[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
        touched = np.zeros(shape, bool)
        touched[:, :, np.arange(n), np.arange(n)] = True
        return ops.where(touched, ops.cast(centre, kernel.dtype), kernel)


@keras.saving.register_keras_serializable(package="omnifuse")
class ImageFastNet(layers.Layer):
    """Patch-whitening conv -> GELU -> (conv-pool-BN-GELU-conv-BN-GELU) per width -> global max pool (GELU or
    ``activation``).

    Training batches are augmented inside the step (flip, shift); inference averages the features of the image and
    its mirror (``tta``). Call :meth:`adapt` with training images to set the whitening filters. Output (B, widths[-1]).
    """

    def __init__(
        self,
        widths=(64, 256, 256),
        whiten_kernel=2,
        bn_momentum=0.6,
        flip=True,
        translate=2,
        tta=1,
        bias_lr_scale=1.0,
        alternate_flip=False,
        whiten_bias_epochs=0,
        low_res_epochs=0,
        low_res_size=0,
        activation="gelu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if tta not in (0, 1, 2):
            raise ValueError(f"Expected tta in (0, 1, 2). Received: tta={tta!r}")
        self.widths = tuple(widths)
        self.whiten_kernel = whiten_kernel
        self.bn_momentum = bn_momentum
        self.flip = flip
        self.translate = translate
        self.tta = tta
        self.bias_lr_scale = float(bias_lr_scale)
        self.alternate_flip = bool(alternate_flip)
        self.whiten_bias_epochs = int(whiten_bias_epochs)
        self.whiten_bias_frozen = False  # set by on_epoch: training only
        least = whiten_kernel + 2 ** len(self.widths) - 1
        if low_res_epochs and low_res_size < least:
            raise ValueError(
                f"Expected low_res_size of at least {least} pixels (one pixel "
                f"left after the {len(self.widths)} poolings) with low_res_epochs. Received: low_res_size={low_res_size!r}"
            )
        self.low_res_epochs = int(low_res_epochs)
        self.low_res_size = int(low_res_size)
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"Expected activation in {sorted(ACTIVATIONS)}. Received: activation={activation!r}"
            )
        self.activation = activation
        self.low_res = False  # set by on_epoch: training on low_res_size crops (training only)
        self.output_dim = self.widths[-1]
        self.seed_generator = keras.random.SeedGenerator()  # seeded by keras.utils.set_random_seed
        self.groups = []
        for i, width in enumerate(self.widths):
            group = []
            for j in ("a", "b"):
                group.append(
                    layers.Conv2D(
                        width,
                        3,
                        padding="same",
                        use_bias=False,
                        kernel_initializer=IdentityCentreUniform(),
                        name=f"g{i}{j}_conv",
                    )
                )
                if j == "a":
                    group.append(layers.MaxPooling2D(2, name=f"g{i}_pool"))
                group.append(
                    BatchNormalization(
                        momentum=bn_momentum,
                        scale=False,
                        beta_grad_scale=self.bias_lr_scale,
                        name=f"g{i}{j}_bn",
                    )
                )
                # the layer keeps its name whatever the function, so weights and saved models stay comparable
                group.append(layers.Activation(ACTIVATIONS[activation], name=f"g{i}{j}_gelu"))
            self.groups.append(group)
        self.pool = layers.GlobalMaxPooling2D()
        self.autocast = False  # apply_layers folds batch norms from the float32 variables

    def build(self, input_shape):
        k, channels = self.whiten_kernel, input_shape[-1]
        filters = 2 * k * k * channels
        # fixed by adapt(); only the bias learns
        self.whiten_w = self.add_weight(
            shape=(k, k, channels, filters),
            initializer="glorot_uniform",
            trainable=False,
            name="whiten_kernel",
        )
        self.whiten_b = self.add_weight(shape=(filters,), initializer="zeros", name="whiten_bias")
        # alternate_flip: the training epoch, set by on_epoch (a variable, so the traced step reads it)
        if self.alternate_flip:
            self.epoch = self.add_weight(
                shape=(), dtype="int32", initializer="zeros", trainable=False, name="epoch"
            )
        h = None if input_shape[1] is None else input_shape[1] - k + 1
        w = None if input_shape[2] is None else input_shape[2] - k + 1
        shape = (input_shape[0], h, w, filters)
        for group in self.groups:
            shape = build_chain(group, shape)
        self.pool.build(shape)

    def adapt(self, images, max_images: int = 5000, chunk: int = 500) -> None:
        """Set the first conv to whiten k x k patches of ``images`` (uint8 (N, H, W, C)): filters +-V/sqrt(lambda)."""
        from numpy.lib.stride_tricks import sliding_window_view

        images = np.asarray(images)[:max_images]
        if images.ndim == 3:
            images = images[..., None]
        if not self.built:
            self.build((None, *images.shape[1:]))
        k = self.whiten_kernel
        dim = k * k * images.shape[-1]
        total, outer, count = np.zeros(dim), np.zeros((dim, dim)), 0
        for start in range(0, len(images), chunk):
            x = images[start : start + chunk].astype("float32") / 255.0
            # (n, H-k+1, W-k+1, C, k, k) -> rows in the kernel's (kh, kw, C) order
            patches = sliding_window_view(x, (k, k), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3).reshape(-1, dim)
            patches = patches.astype("float64")
            total += patches.sum(axis=0)
            outer += patches.T @ patches
            count += len(patches)
        mean = total / count
        cov = outer / count - np.outer(mean, mean)
        eigenvalues, eigenvectors = np.linalg.eigh(cov)
        eps = 5e-4 * max(eigenvalues.mean(), 1e-12)
        filters = eigenvectors / np.sqrt(np.maximum(eigenvalues, 0.0) + eps)  # columns whiten the patch
        filters = np.concatenate([filters, -filters], axis=1)
        kernel = filters.reshape(k, k, images.shape[-1], 2 * dim)
        self.whiten_w.assign(kernel.astype("float32"))
        self.whiten_b.assign((-mean @ filters).astype("float32"))

    def on_epoch(self, epoch: int) -> bool:
        """Training's callback (omnifuse.callbacks.EpochToLayers) at the start of each epoch: the alternating flip's
        epoch; from epoch ``whiten_bias_epochs`` on, the whitening bias is frozen (airbench's: it then needs no
        gradient, nor does the first convolution's input, so the step is cheaper). True where the training step
        must be traced again."""
        if self.alternate_flip:
            self.epoch.assign(epoch)
        frozen = 0 < self.whiten_bias_epochs <= epoch
        low_res = epoch < self.low_res_epochs
        changed = (frozen, low_res) != (self.whiten_bias_frozen, self.low_res)
        self.whiten_bias_frozen, self.low_res = frozen, low_res
        return changed

    def _flip(self, x, pixels):
        """Mirror half of the images: at random, or, with ``alternate_flip``, each image in every other epoch.

        Alternating flip (airbench's): an image mirrored in one epoch is not mirrored in the next, so every pair of
        epochs shows both views of each image, which random flips leave to chance. Which half an image starts in is
        the parity of its pixel sum, a fixed coin per image that needs no index through the shuffled input
        pipeline (for the uint8 pixels omnifuse feeds; float pixels in [0, 1] would all start in one half)."""
        if not self.alternate_flip:
            return _random_flip(x, self.seed_generator)
        coin = ops.sum(ops.cast(pixels, "int32"), axis=(1, 2, 3)) % 2
        mirror = ops.not_equal(coin, ops.cast(self.epoch, "int32") % 2)
        return ops.where(mirror[:, None, None, None], ops.flip(x, axis=2), x)

    def _augment(self, x, pixels):
        batch = ops.shape(x)[0]
        if self.flip:
            x = self._flip(x, pixels)
        if self.translate:
            r = self.translate
            dy = keras.random.randint((batch,), 0, 2 * r + 1, seed=self.seed_generator)
            dx = keras.random.randint((batch,), 0, 2 * r + 1, seed=self.seed_generator)
            x = _shifted(x, dy, dx, r)
        if self.low_res:
            size = self.low_res_size
            if size < x.shape[1] or size < x.shape[2]:
                size_y, size_x = min(size, x.shape[1]), min(size, x.shape[2])
                top = keras.random.randint((batch,), 0, x.shape[1] - size_y + 1, seed=self.seed_generator)
                left = keras.random.randint((batch,), 0, x.shape[2] - size_x + 1, seed=self.seed_generator)
                x = _window(_window(x, top, size_y, 1), left, size_x, 2)
        return x

    def _features(self, x, training):
        x = ops.conv(x, ops.cast(self.whiten_w, x.dtype), padding="valid") + ops.cast(self.whiten_b, x.dtype)
        # the whitening conv's GELU has always been the tanh form, the groups' the erf form (Keras's defaults)
        x = (
            ops.gelu(x)
            if self.activation == "gelu"
            else keras.activations.get(ACTIVATIONS[self.activation])(x)
        )
        if training and self.whiten_bias_frozen:
            x = ops.stop_gradient(x)
        for group in self.groups:
            x = apply_layers(group, x, training)
        return self.pool(x)

    def call(self, x, training=None):
        pixels = x
        x = ops.cast(x, self.compute_dtype) / 255.0
        if training:
            return self._features(self._augment(x, pixels), training)
        if self.tta == 0:
            return self._features(x, training)
        views = [x, ops.flip(x, axis=2)]
        if self.tta == 2:
            batch = ops.shape(x)[0]
            for shift in (0, 2):
                moved = _shifted(x, ops.full((batch,), shift, "int32"), ops.full((batch,), shift, "int32"), 1)
                views += [moved, ops.flip(moved, axis=2)]
        feats = self._features(ops.concatenate(views, axis=0), training)
        feats = ops.reshape(feats, (len(views), -1, self.output_dim))
        if self.tta == 1:
            return ops.mean(feats, axis=0)
        return 0.5 * ops.mean(feats[:2], axis=0) + 0.5 * ops.mean(feats[2:], axis=0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "widths": list(self.widths),
            "whiten_kernel": self.whiten_kernel,
            "bn_momentum": self.bn_momentum,
            "flip": self.flip,
            "translate": self.translate,
            "tta": self.tta,
            "bias_lr_scale": self.bias_lr_scale,
            "alternate_flip": self.alternate_flip,
            "whiten_bias_epochs": self.whiten_bias_epochs,
            "low_res_epochs": self.low_res_epochs,
            "low_res_size": self.low_res_size,
            "activation": self.activation,
        }
