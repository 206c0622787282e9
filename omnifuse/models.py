"""The multimodal classifier: one encoder per modality, a fusion, one head per task.

Inputs are a dict: one tensor per modality (``image`` uint8 (B, H, W, C), ``text`` string (B,), ``audio`` float32
(B, samples) at ``data.sample_rate``, a ``numbers`` modality such as ``tabular`` float32 (B, F), NaN = empty cell)
and a presence mask
per modality (``image_mask``, ``text_mask``: float (B,), 1 = present). Outputs are a dict: one probability tensor per
task, plus ``modality_weights`` (B, n_modalities) when the fusion weights modalities. An ensemble
(``model.members`` > 1) outputs the members' mean under those names, and each member's task outputs as
``<task>__member<i>`` (the ones its training losses are on).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import keras
import numpy as np
from keras import layers, ops

from omnifuse.config import Config
from omnifuse.encoders.image.augment import ImageAugment
from omnifuse.errors import OmnifuseError
from omnifuse.names import (
    WEIGHTS_OUTPUT,
    mask_name,
    member_name,
    member_outputs,
    unimodal_name,
    unimodal_outputs,
)
from omnifuse.optimizers import LazyAdam, LazyAdamW, LazySGD
from omnifuse.precision import precision_scope
from omnifuse.preprocessing import standardize_text
from omnifuse.registry import AUDIO_ENCODERS, FUSIONS, IMAGE_ENCODERS, TABULAR_ENCODERS, TEXT_ENCODERS, lookup


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
        if not self.encoder.built:
            self.encoder.build(shape)

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
        zeros = ops.zeros((ops.shape(x)[0], self.encoder.output_dim), dtype=self.compute_dtype)
        return ops.cond(
            ops.any(mask > 0), lambda: ops.cast(self._encode(x, training), self.compute_dtype), lambda: zeros
        )

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


@keras.saving.register_keras_serializable(package="omnifuse")
class MaskedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy that counts only samples carrying a label (label -1 = this sample has no label for the task).

    The mean is over labelled samples, so a task's loss has the same scale whatever share of the batch it labels.
    ``class_weights`` (one per class, optional) multiply each sample's loss by its true class's weight.
    """

    def __init__(self, label_smoothing=0.0, class_weights=None, name="masked_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        valid = ops.cast(y_true >= 0, y_pred.dtype)
        onehot = ops.one_hot(ops.maximum(y_true, 0), ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        loss = keras.losses.categorical_crossentropy(onehot, y_pred, label_smoothing=self.label_smoothing)
        if self.class_weights is not None:
            weights = ops.convert_to_tensor(self.class_weights, dtype=y_pred.dtype)
            loss = loss * ops.take(weights, ops.maximum(y_true, 0))
        scale = ops.cast(ops.shape(y_true)[0], y_pred.dtype) / ops.maximum(ops.sum(valid), 1.0)
        return loss * valid * scale

    def get_config(self):
        return {
            **super().get_config(),
            "label_smoothing": self.label_smoothing,
            "class_weights": self.class_weights,
        }


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> list[float]:
    """``n / (k * n_c)`` per class ``c`` over the labelled samples (label >= 0), as scikit-learn's "balanced":
    every class then weighs the same in the loss; a class absent from ``labels`` gets weight 1.

    Example: ``balanced_class_weights(np.array([0, 0, 0, 1]), 2) == [2/3, 2.0]``.
    """
    labels = np.asarray(labels)
    labels = labels[labels >= 0]
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    return [len(labels) / (num_classes * c) if c else 1.0 for c in counts]


@keras.saving.register_keras_serializable(package="omnifuse")
class MaskedAccuracy(keras.metrics.Metric):
    """Accuracy over the samples that carry a label for this task."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        valid = ops.cast(y_true >= 0, "float32")
        hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
        self.correct.assign_add(ops.sum(hit * valid))
        self.count.assign_add(ops.sum(valid))

    def result(self):
        return self.correct / ops.maximum(self.count, 1.0)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)


@keras.saving.register_keras_serializable(package="omnifuse")
class ScaledSoftmax(layers.Layer):
    """``softmax(scale * logits)``: the output of a head whose logits are scaled (``model.head_scale``)."""

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, logits):
        return ops.softmax(logits * self.scale, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def _head(model_cfg, classes: int, name: str):
    """The output layer of one task: a float32 dense layer and softmax named ``name`` (the task), or with
    ``model.head_scale`` != 1 a dense layer ``{name}_logits`` followed by :class:`ScaledSoftmax` named ``name``."""
    if model_cfg.head_scale == 1.0:
        return layers.Dense(classes, "softmax", use_bias=model_cfg.head_bias, name=name, dtype="float32")
    dense = layers.Dense(classes, use_bias=model_cfg.head_bias, name=f"{name}_logits", dtype="float32")
    scaled = ScaledSoftmax(model_cfg.head_scale, name=name, dtype="float32")
    return lambda h: scaled(dense(h))


def _image_branch(cfg: Config) -> tuple[layers.Layer, layers.Layer | None]:
    img = cfg.model.image
    sub = img.cnn if img.encoder == "cnn" else img.resnet
    if img.encoder == "fastnet":
        sub = img.fastnet
    encoder = lookup(IMAGE_ENCODERS, img.encoder, "image encoder")(
        **dataclasses.asdict(sub), name="image_encoder"
    )
    preprocess = None
    if img.augment:
        preprocess = ImageAugment(flip=True, translate=0.125, name="image_augment")
    return encoder, preprocess


def _text_branch(
    cfg: Config,
    name: str,
    x,
    mask,
    texts: list[str],
    labels=None,
    classes: int = 2,
    skip_absent: bool = True,
    member: str = "",
    vectorized: dict | None = None,
):
    """Text → features. ``model.text.encoder`` names one encoder (``rnn``, ``bag``, ``tfidf``, ``nb``) or several
    joined by ``+`` (``rnn+nb``): each gets its own vectorizer and branch, and their features are concatenated, so an
    n-gram bag and an LSTM are trained together in one model. ``labels`` (class index per text, -1 for none) set the
    ``nb`` encoder's log-count ratios. ``member``: the suffix of an ensemble member's layer names; ``vectorized``:
    the vectorizer and token ids of ``x`` per vectorizer settings, filled by the first member that needs them and
    reused by the others."""
    txt = cfg.model.text
    parts = txt.encoder.split("+")
    feats = []
    vectorized = {} if vectorized is None else vectorized
    for part in parts:
        cls = lookup(TEXT_ENCODERS, part, "text encoder")
        suffix = "" if len(parts) == 1 else f"_{part}"
        if part == "tfidf":
            sub = txt.tfidf
            settings = dict(max_tokens=sub.vocab_size, ngrams=_ngrams(sub.ngrams), output_mode="tf_idf")
            options = dict(units=sub.units, dropout=sub.dropout)
        elif part == "nb":
            sub = txt.nb
            # every n-gram of a text, whatever its length (padded to the longest text of the batch)
            settings = dict(max_tokens=sub.vocab_size, ngrams=_ngrams(sub.ngrams))
            options = dict(classes=classes, **dataclasses.asdict(sub))
            del options["ngrams"]
        else:
            settings = dict(
                max_tokens=txt.vocab_size,
                output_sequence_length=txt.sequence_length,
                ngrams=_ngrams(txt.ngrams),
            )
            options = dict(
                vocab_size=txt.vocab_size, **dataclasses.asdict(txt.rnn if part == "rnn" else txt.bag)
            )
        # ensemble members whose vectorizer has the same settings share it (and its token ids); another member's
        # vectorizer of other settings gets that member's suffix on its name
        key = (name, tuple(sorted(settings.items())))
        if key in vectorized:
            vectorize, ids = vectorized[key]
        else:
            layer_name = f"{name}_vectorize{suffix}"
            if any(k[0] == name and v[0].name == layer_name for k, v in vectorized.items()):
                layer_name += member
            vectorize = layers.TextVectorization(standardize=standardize_text, name=layer_name, **settings)
            vectorize.adapt(texts, batch_size=1024)
            ids = vectorize(x)
            vectorized[key] = vectorize, ids
        if part == "nb":
            options["vocab_size"] = vectorize.vocabulary_size()
        encoder = cls(**options, name=f"{name}_encoder{suffix}")
        if part == "nb" and labels is not None:
            # members with equal nb settings on one vectorizer would make the same fit: it is made once, copied
            fitted = ("nb fit", key, tuple(sorted((k, repr(v)) for k, v in options.items())))
            if fitted in vectorized:
                encoder.build((None, None))
                encoder.set_weights(vectorized[fitted][0].get_weights())
            else:
                encoder.adapt(_text_batches(vectorize, texts, np.asarray(labels)))
                vectorized[fitted] = (encoder,)
        branch = ModalityBranch(encoder, skip_absent=skip_absent, name=f"{name}_branch{suffix}{member}")
        feats.append(branch([ids, mask]))
    return feats[0] if len(feats) == 1 else layers.Concatenate(name=f"{name}_features{member}")(feats)


def _ngrams(n: int):
    return n if n > 1 else None


def _text_batches(vectorize, texts: list[str], labels: np.ndarray, size: int = 1024):
    """(``vectorize``'s ids, labels) of ``texts``, ``size`` texts at a time."""
    for i in range(0, len(texts), size):
        yield np.asarray(vectorize(texts[i : i + size])), labels[i : i + size]


def _audio_encoder(cfg: Config) -> layers.Layer:
    aud = cfg.model.audio
    options = {**dataclasses.asdict(aud.cnn), "sample_rate": cfg.data.sample_rate}
    return lookup(AUDIO_ENCODERS, aud.encoder, "audio encoder")(**options, name="audio_encoder")


def build_model(
    cfg: Config,
    modalities: dict[str, str],
    tasks: dict[str, list[str]],
    texts: Iterable[str] | None = None,
    image_shape: tuple[int, int, int] = (32, 32, 3),
    numbers: dict | None = None,
    images=None,
    text_labels: tuple[str, np.ndarray] | None = None,
) -> keras.Model:
    """Build (uncompiled) the model for ``modalities`` (name -> kind) and ``tasks`` (name -> class names).

    ``texts``: training texts from which the text vocabulary is learned (needed when there is a text modality).
    ``numbers``: per ``numbers`` modality, its training rows, float32 (N, F) with NaN for an empty cell; the
    tabular encoder learns its normalisation from them (needed when there is a numbers modality).
    ``images``: a sample of training images, uint8 (N, H, W, C), for image encoders that ``adapt`` to data
    (``fastnet`` sets its whitening filters from them); without it they keep their random start.
    ``text_labels``: (task, class index per text of ``texts``, -1 for none), from which the ``nb`` text encoder
    learns its n-gram log-count ratios; without it they stay 1.

    ``cfg.train.precision`` = ``"bfloat16"`` builds the layers in Keras's ``mixed_bfloat16`` policy; the heads and
    the modality-weight output stay float32 (see omnifuse/precision.py).
    """
    with precision_scope(cfg.train.precision):
        return _build_model(cfg, modalities, tasks, texts, image_shape, numbers, images, text_labels)


def _build_model(cfg, modalities, tasks, texts, image_shape, numbers, images, text_labels) -> keras.Model:
    members = cfg.model.members
    if isinstance(members, bool) or members < 1:
        raise OmnifuseError(f"Expected model.members to be an integer >= 1. Received: {members!r}")
    inputs = {}
    for name, kind in sorted(modalities.items()):
        if kind == "image":
            inputs[name] = keras.Input(shape=tuple(image_shape), name=name, dtype="uint8")
        elif kind == "text":
            if texts is None:
                raise ValueError("build_model needs `texts` to learn the vocabulary of a text modality.")
            inputs[name] = keras.Input(shape=(), name=name, dtype="string")
        elif kind == "audio":
            inputs[name] = keras.Input(shape=(cfg.data.num_samples,), name=name, dtype="float32")
        elif kind == "numbers":
            if numbers is None or name not in numbers:
                raise ValueError(f"build_model needs `numbers[{name!r}]`, the training rows of {name!r}.")
            inputs[name] = keras.Input(shape=(numbers[name].shape[1],), name=name, dtype="float32")
        else:
            raise ValueError(
                f"Unsupported modality kind {kind!r} for {name!r}. Supported: image, text, audio, numbers"
            )
        inputs[mask_name(name)] = keras.Input(shape=(), name=mask_name(name), dtype="float32")
    data = dict(texts=texts, numbers=numbers, images=images, text_labels=text_labels)
    configs = member_configs(cfg)
    if members == 1:
        return keras.Model(
            inputs, _member(configs[0], inputs, modalities, tasks, **data), name="multimodal_classifier"
        )
    # an ensemble: independently initialised members on the same inputs, each trained with its own loss (each
    # member's variables get only its own gradient, so training them side by side is training them apart, on the
    # same batches); the task outputs and modality weights are the members' (weighted) means
    vectorized: dict = {}  # the text vocabularies are learned once and the token ids computed once for all members
    found = [
        _member(
            member_cfg, inputs, modalities, tasks, **data, suffix=member_name("", i), vectorized=vectorized
        )
        for i, member_cfg in enumerate(configs, 1)
    ]
    outputs = {}
    for key in found[0]:
        if key in tasks or key == WEIGHTS_OUTPUT:
            outputs[key] = MemberMean(name=key, dtype="float32")([out[key] for out in found])
    for i, out in enumerate(found, 1):
        outputs.update({member_name(key, i): value for key, value in out.items() if key != WEIGHTS_OUTPUT})
    return keras.Model(inputs, outputs, name="multimodal_ensemble")


def member_configs(cfg: Config) -> list[Config]:
    """The config of each ensemble member: ``cfg`` with that member's ``model.member_overrides`` applied (the
    overrides may name ``model.*`` keys only, and not the ensemble's own)."""
    m = cfg.model
    overrides = m.member_overrides
    if overrides and len(overrides) != m.members:
        raise OmnifuseError(
            f"Expected one list of overrides per member in model.member_overrides ({m.members}). "
            f"Received: {len(overrides)} lists"
        )
    out = []
    for i, items in enumerate(overrides or [()] * m.members):
        for item in items:
            key = item.split("=", 1)[0].strip()
            if not key.startswith("model.") or key.startswith("model.member"):
                raise OmnifuseError(
                    f"Expected model.member_overrides[{i}] to set model.* keys other than the ensemble's own "
                    f"(members share the data and the training). Received: {item!r}"
                )
        out.append(cfg.replace(list(items)) if items else cfg)
    return out


@keras.saving.register_keras_serializable(package="omnifuse")
class MemberMean(layers.Layer):
    """The ensemble's output: ``sum_k w_k * x_k`` over its members' outputs, with weights ``w`` on the simplex
    (equal at the start; :func:`omnifuse.training.fit_member_weights` fits them on held-out data). The weights are
    a non-trainable variable, so a saved model keeps them."""

    def build(self, input_shape):
        self.member_weights = self.add_weight(
            shape=(len(input_shape),),
            initializer=keras.initializers.Constant(1.0 / len(input_shape)),
            trainable=False,
            name="member_weights",
        )

    def call(self, inputs):
        stacked = ops.stack([ops.cast(x, self.compute_dtype) for x in inputs], axis=0)
        shape = (-1,) + (1,) * (len(stacked.shape) - 1)
        return ops.sum(
            stacked * ops.reshape(ops.cast(self.member_weights, self.compute_dtype), shape), axis=0
        )

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def _member(
    cfg, inputs, modalities, tasks, texts, numbers, images, text_labels, suffix: str = "", vectorized=None
) -> dict:
    """One member's encoders, fusion and heads on ``inputs``; its outputs by task (and ``modality_weights``, and
    the unimodal heads' names). Every layer's name ends in ``suffix`` (``"__member2"``; ``""`` for a lone model)."""
    features, masks = {}, {}
    # skipping an absent modality's encoder pays only where batches can lack it, and XLA cannot afford it
    skip = len(modalities) > 1 and not cfg.train.jit_compile
    for name, kind in sorted(modalities.items()):
        x, mask = inputs[name], inputs[mask_name(name)]
        if kind == "image":
            encoder, preprocess = _image_branch(cfg)
            branch = ModalityBranch(encoder, preprocess, skip_absent=skip, name=f"{name}_branch{suffix}")
            feat = branch([x, mask])
            if images is not None and hasattr(encoder, "adapt"):
                encoder.adapt(images)
        elif kind == "text":
            task, labels = text_labels if text_labels is not None else (None, None)
            classes = len(tasks[task]) if task is not None else 2
            feat = _text_branch(cfg, name, x, mask, list(texts), labels, classes, skip, suffix, vectorized)
        elif kind == "audio":
            feat = ModalityBranch(_audio_encoder(cfg), skip_absent=skip, name=f"{name}_branch{suffix}")(
                [x, mask]
            )
        else:  # numbers
            tab = cfg.model.tabular
            encoder = lookup(TABULAR_ENCODERS, tab.encoder, "tabular encoder")(
                **dataclasses.asdict(tab.mlp), name=f"{name}_encoder"
            )
            encoder.adapt(numbers[name])
            feat = ModalityBranch(encoder, skip_absent=skip, name=f"{name}_branch{suffix}")([x, mask])
        features[name], masks[name] = feat, mask

    fusion_cls = lookup(FUSIONS, cfg.model.fusion, "fusion")
    if cfg.model.fusion_dim <= 0 and not fusion_cls.unprojected:
        able = " or ".join(repr(name) for name, cls in FUSIONS.items() if cls.unprojected)
        raise OmnifuseError(
            f"Expected model.fusion_dim > 0 (only model.fusion = {able} can pass features on unprojected, with 0). "
            f"Received: model.fusion = {cfg.model.fusion!r}, model.fusion_dim = {cfg.model.fusion_dim}"
        )
    options = {}
    if cfg.model.fusion_normalize:
        if cfg.model.fusion != "attention":
            raise OmnifuseError(
                "Expected model.fusion = 'attention' with model.fusion_normalize = true. "
                f"Received: model.fusion = {cfg.model.fusion!r}"
            )
        options["normalize"] = True
    fusion = fusion_cls(
        modalities=sorted(modalities),
        dim=cfg.model.fusion_dim,
        dropout=cfg.model.fusion_dropout,
        name=f"fusion{suffix}",
        **options,
    )
    fused = fusion(features, masks)
    outputs = {}
    if fusion.returns_weights:
        fused, weights = fused
        outputs[WEIGHTS_OUTPUT] = layers.Identity(name=f"{WEIGHTS_OUTPUT}{suffix}", dtype="float32")(weights)
    for task, classes in tasks.items():
        h = fused
        if cfg.model.head_hidden:
            h = layers.Dense(cfg.model.head_hidden, activation="relu", name=f"{task}_hidden{suffix}")(h)
        if cfg.model.head_dropout:
            h = layers.Dropout(cfg.model.head_dropout, name=f"{task}_dropout{suffix}")(h)
        # heads in float32 whatever the precision: the softmax and the loss in full precision
        outputs[task] = _head(cfg.model, len(classes), f"{task}{suffix}")(h)
        if cfg.train.unimodal_loss > 0 and len(modalities) > 1:
            for m in sorted(modalities):
                name = unimodal_name(task, m)
                outputs[name] = layers.Dense(
                    len(classes), activation="softmax", name=f"{name}{suffix}", dtype="float32"
                )(features[m])
    return outputs


def _batches_can_miss_variables(model: keras.Model, tasks: list[str]) -> bool:
    """Whether a training batch can leave some variable without gradient: a batch from one of several data sets
    lacks the other sets' modalities and tasks. With one modality and one task every batch reaches every variable,
    and the lazy optimizers would only copy each variable and its state in every step for nothing (for a
    100,000-word embedding of 256 dimensions, 25.6 M weights three times over)."""
    names = {x.name for x in model.inputs}
    modalities = [name for name in names if mask_name(name) in names]
    return len(tasks) > 1 or len(modalities) > 1


def compile_model(
    model: keras.Model,
    cfg: Config,
    tasks: Iterable[str],
    steps_per_epoch: int,
    class_weights: dict[str, list[float]] | None = None,
) -> None:
    """Attach optimizer (with the configured schedule), masked losses and metrics."""
    tasks = list(tasks)
    t = cfg.train
    total = max(1, t.epochs * steps_per_epoch)
    if t.schedule == "constant":
        lr = t.learning_rate
    elif t.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(t.learning_rate, decay_steps=total)
    elif t.schedule == "onecycle":
        warm = max(1, int(total * t.warmup_fraction))
        lr = keras.optimizers.schedules.CosineDecay(
            t.learning_rate / 10,
            decay_steps=max(1, total - warm),
            warmup_target=t.learning_rate,
            warmup_steps=warm,
        )
    else:
        raise OmnifuseError(f"Unknown train.schedule {t.schedule!r}. Valid: constant, cosine, onecycle")
    adam, adamw, sgd = (
        (LazyAdam, LazyAdamW, LazySGD)
        if t.lazy_updates and _batches_can_miss_variables(model, tasks)
        else (keras.optimizers.Adam, keras.optimizers.AdamW, keras.optimizers.SGD)
    )
    optimizers = {
        "adam": lambda: adam(lr),
        "adamw": lambda: adamw(lr, weight_decay=t.weight_decay),
        "sgd": lambda: sgd(lr, momentum=t.momentum, nesterov=True, weight_decay=t.weight_decay or None),
    }
    optimizer = lookup(optimizers, t.optimizer, "optimizer")()
    members = member_outputs(model.output_names, tasks)
    # an ensemble trains each member on its own loss; its task outputs (the members' mean) only report accuracy
    trained = members or {task: task for task in tasks}
    losses = {
        name: MaskedSparseCrossentropy(t.label_smoothing, (class_weights or {}).get(task))
        for name, task in trained.items()
    }
    weights = dict.fromkeys(losses, 1.0)
    for name, (task, _) in unimodal_outputs(model.output_names, tasks).items():
        losses[name] = MaskedSparseCrossentropy(t.label_smoothing, (class_weights or {}).get(task))
        weights[name] = float(t.unimodal_loss)
    if t.jit_compile:
        blocking = sorted(
            {type(layer).__name__ for layer in model._flatten_layers() if not layer.supports_jit}
        )
        if blocking:
            raise OmnifuseError(
                f"train.jit_compile = true, but XLA cannot compile these layers of the model: {', '.join(blocking)}. "
                "Set train.jit_compile = false (Keras would otherwise drop it silently)."
            )
    model.compile(
        optimizer=optimizer,
        loss=losses,
        loss_weights=weights,
        metrics={
            name: [MaskedAccuracy()] if name in tasks or name in members else None
            for name in model.output_names
        },
        jit_compile=t.jit_compile,
    )
