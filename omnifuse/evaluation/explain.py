"""Explanations of single predictions: which pixels, words, moments of a clip or columns made the model answer so.

Methods, per modality kind:

- image, audio, numbers: **integrated gradients** (Sundararajan et al. 2017) of the explained class's probability,
  from a baseline of zeros (a black image, silence, every column 0) to the input, over ``steps`` midpoint steps;
  all continuous modalities of a sample move together, so the attributions of a sample add up to
  ``p(input) - p(baseline)`` (completeness; within the Riemann error). Images get a heat map (H, W): the
  attribution summed over colour channels; audio a score per time segment (``segments`` equal slices of the
  clip); numbers a score per feature column.
- text: **word occlusion**: a word's score is how much the probability falls when that word is removed. Text reaches
  the model as a string, tokenised inside it (TextVectorization, or a pretrained encoder's own tokeniser), so there
  is no gradient with respect to the words; occlusion works for every text encoder alike. Texts longer than
  ``max_words`` are occluded in spans of consecutive words, so the cost stays bounded.

Masks are kept as given: an absent modality gets no explanation. Cost per sample (one task): ``steps`` forward and
backward passes for the continuous modalities, plus one forward pass per word (or span) of text; the model is run on
batches of samples x steps. See :meth:`Explainer.explain`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from omnifuse.inference import Inference
from omnifuse.modalities import KINDS
from omnifuse.names import mask_name

STEPS = 16
SEGMENTS = 32
MAX_WORDS = 64


class Explainer:
    """Explains a model's answers. ``model``: the run's Keras model (inputs and masks named by modality, one
    softmax output per task); ``modalities``: name -> kind; ``features``: numbers modality -> its column names.

    >>> Explainer(predictor.model, predictor.modalities).explain(feed)[0]["cifar10"]["image"]["heatmap"].shape
    (32, 32)
    """

    def __init__(
        self,
        model,
        modalities: dict[str, str],
        features: dict[str, list[str]] | None = None,
        steps: int = STEPS,
        segments: int = SEGMENTS,
        max_words: int = MAX_WORDS,
        sample_rate: int | None = None,
    ):
        self.model = model
        self._infer = Inference(model)  # many small batches (occlusion): a graph after the first few
        self.modalities = dict(modalities)
        self.features = features or {}
        self.steps, self.segments, self.max_words = int(steps), int(segments), int(max_words)
        self.sample_rate = sample_rate
        self._float_model = None

    def _differentiable(self):
        """The model with float32 inputs where it takes uint8 (images): the same layers, so the same weights, but
        a path the gradient can follow (a cast to uint8 has none)."""
        if self._float_model is None:
            import keras

            inputs = [
                keras.Input(
                    shape=t.shape[1:], dtype="float32" if t.dtype == "uint8" else t.dtype, name=t.name
                )
                for t in self.model.inputs
            ]
            if isinstance(self.model.input, dict):  # omnifuse's models take a dict; keep its keys
                inputs = dict(zip(self.model.input, inputs))
            self._float_model = keras.models.clone_model(
                self.model, input_tensors=inputs, clone_function=lambda layer: layer
            )
        return self._float_model

    def _probs(self, feed: dict[str, np.ndarray], task: str) -> np.ndarray:
        out = self._infer(feed)
        return np.asarray(out[task], np.float64)

    def explain(
        self, feed: dict[str, np.ndarray], tasks: list[str] | None = None, targets: dict | None = None
    ) -> list[dict[str, Any]]:
        """Per sample of ``feed`` (the model's input arrays, as ``Predictor.encode`` makes them), per task: the
        explained class (``targets[task][i]``, default the predicted one) and per present modality its
        attribution (see the module docstring). Returns ``[{task: {"class_index", "probability", <modality>:
        {...}}}]``."""
        import tensorflow as tf

        names = [t.name for t in self.model.inputs]
        feed = {k: feed[k] for k in names}
        n = len(feed[names[0]])
        tasks = list(tasks or [k for k in self.model.output_names if k in self._task_outputs()])
        raw = self._infer(feed)
        answers: list[dict[str, Any]] = [{} for _ in range(n)]
        continuous = [m for m, k in self.modalities.items() if _method(k) == "integrated_gradients"]
        for task in tasks:
            probs = np.asarray(raw[task], np.float64)
            target = np.asarray((targets or {}).get(task, probs.argmax(axis=1)), np.int64)
            for i in range(n):
                answers[i][task] = {"class_index": int(target[i]), "probability": float(probs[i, target[i]])}
            present = [m for m in continuous if feed[mask_name(m)].any()]
            if present:
                attributions = self._integrated_gradients(feed, task, target, present, tf)
                for m in present:
                    for i in range(n):
                        if feed[mask_name(m)][i] > 0:
                            answers[i][task][m] = self._summarise(m, attributions[m][i])
            for m, kind in self.modalities.items():
                if _method(kind) != "word_occlusion":
                    continue
                for i in range(n):
                    if feed[mask_name(m)][i] > 0:
                        answers[i][task][m] = self._occlude_words(feed, i, m, task, int(target[i]))
        return answers

    def _task_outputs(self) -> set[str]:
        from omnifuse.names import WEIGHTS_OUTPUT, auxiliary_outputs

        names = list(self.model.output_names)
        return {k for k in names if k != WEIGHTS_OUTPUT and k not in auxiliary_outputs(names, names)}

    def _integrated_gradients(self, feed, task, target, present, tf) -> dict[str, np.ndarray]:
        """Attributions (same shape as each input in ``present``) of every sample, ``steps`` samples per pass."""
        model = self._differentiable()
        alphas = (np.arange(self.steps, dtype=np.float32) + 0.5) / self.steps
        n = len(target)
        out = {m: np.zeros(feed[m].shape, np.float32) for m in present}
        per_pass = max(1, 256 // self.steps)  # samples per forward/backward pass
        for start in range(0, n, per_pass):
            rows = np.arange(start, min(n, start + per_pass))
            batch = {}
            for name, value in feed.items():
                chunk = value[rows]
                if name in present:
                    chunk = chunk.astype(np.float32)
                    shape = (-1,) + (1,) * (chunk.ndim - 1)
                    path = chunk[:, None] * alphas.reshape((1, -1) + shape[1:])  # (rows, steps, ...)
                    batch[name] = path.reshape((-1,) + chunk.shape[1:])
                else:
                    batch[name] = np.repeat(chunk, self.steps, axis=0)
                    if value.dtype == np.uint8:
                        batch[name] = batch[name].astype(np.float32)
            tensors = {k: tf.constant(v) for k, v in batch.items()}
            variables = {m: tensors[m] for m in present}
            picked = np.repeat(target[rows], self.steps)
            with tf.GradientTape() as tape:
                for v in variables.values():
                    tape.watch(v)
                result = model(tensors, training=False)
                p = tf.gather(tf.cast(result[task], tf.float32), picked, axis=1, batch_dims=1)
            grads = tape.gradient(p, [variables[m] for m in present])
            for m, g in zip(present, grads):
                g = np.zeros(batch[m].shape, np.float32) if g is None else g.numpy()
                mean = g.reshape((len(rows), self.steps) + g.shape[1:]).mean(axis=1)
                out[m][rows] = mean * feed[m][rows].astype(np.float32)
        return out

    def _summarise(self, modality: str, attribution: np.ndarray) -> dict[str, Any]:
        return KINDS[self.modalities[modality]].summarise(
            attribution,
            segments=self.segments,
            sample_rate=self.sample_rate,
            features=self.features.get(modality),
        )

    def _occlude_words(self, feed, i: int, modality: str, task: str, target: int) -> dict[str, Any]:
        """Each word's (or span's) score: the fall of the target class's probability when it is removed."""
        text = feed[modality][i]
        text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
        words = text.split()
        span = max(1, -(-len(words) // self.max_words))
        spans = [(j, min(len(words), j + span)) for j in range(0, len(words), span)]
        variants = [" ".join(words[:a] + words[b:]) for a, b in spans]
        batch = {k: np.repeat(v[i : i + 1], len(variants) + 1, axis=0) for k, v in feed.items()}
        batch[modality] = np.array([text, *variants], dtype=object)
        probs = self._probs(batch, task)[:, target]
        scores = probs[0] - probs[1:]
        return {
            "method": "word_occlusion",
            "words": [" ".join(words[a:b]) for a, b in spans],
            "scores": scores,
        }


def _method(kind: str) -> str | None:
    """How a modality of ``kind`` is explained: its kind's ``EXPLAIN`` (None: not at all)."""
    return getattr(KINDS.get(kind), "EXPLAIN", None)


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and numbers as lists and floats (rounded to 6 digits), for JSON answers."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, float | np.floating):
        return round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    return value
