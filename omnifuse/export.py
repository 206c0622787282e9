"""Export a trained run as a portable artifact, checked against the run's model, with a model card beside it.

Formats: ``keras`` (``model.keras``, loads with omnifuse installed), ``savedmodel`` (a TensorFlow SavedModel made by
Keras' ``model.export``, loads with TensorFlow alone) and ``onnx`` (``model.onnx`` through tf2onnx, for models whose
inputs are images, numbers, and audio through Whisper: text and the audio CNN's preprocessing live inside the model
as TensorFlow string and FFT ops that ONNX cannot express). Every artifact is reloaded after writing and its
probabilities compared with the run's model on a probe batch; the largest difference and the tolerance go into
``MODEL_CARD.md``.

>>> export("runs/cifar10-cnn", "onnx")["artifact"]
PosixPath('runs/cifar10-cnn/export/onnx/model.onnx')
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np

from omnifuse import tracking
from omnifuse.config import read_run_config
from omnifuse.errors import OmnifuseError
from omnifuse.evaluation import calibration
from omnifuse.inference import call_eagerly, open_batch_specs
from omnifuse.keras_compat import all_layers
from omnifuse.modalities import kind as modality_kind
from omnifuse.model.branch import ModalityBranch
from omnifuse.model.heads import with_temperatures
from omnifuse.model_card import model_card
from omnifuse.modelio import load_model
from omnifuse.names import WEIGHTS_OUTPUT, mask_name
from omnifuse.predictor import Predictor
from omnifuse.rundir import atomic_write_text

FORMATS = ("keras", "savedmodel", "onnx")
TOLERANCE = 1e-4  # largest |difference| of any output (probability or weight) between artifact and run model
ARTIFACT = {"keras": "model.keras", "savedmodel": "saved_model", "onnx": "model.onnx"}
# why a model with this modality kind's input (or with "kind:encoder", which wins) has no ONNX form
ONNX_UNSUPPORTED = {
    "text": "text is tokenized inside the model by TensorFlow string ops (TextVectorization), which ONNX cannot "
    "express",
    "text:minilm": "MiniLM splits strings into WordPiece tokens inside the model with TensorFlow string ops "
    "(regular expressions, Unicode decoding, a vocabulary hash table in a loop), which ONNX cannot express",
    "audio": "audio becomes a mel spectrogram inside the model through an FFT whose real and imaginary parts "
    "tf2onnx cannot convert",
    "audio:whisper_tiny": "",  # resampling and log-mel are convolutions with constant kernels: ONNX has them
}


def export(
    run_dir: str | Path | Predictor,
    format: str = "keras",
    out: str | Path | None = None,
    calibrated: bool = True,
) -> dict[str, Any]:
    """Write the model of ``run_dir`` (or of a loaded :class:`Predictor`) as ``format`` into ``out`` (default
    ``<run_dir>/export/<format>``), check it, and write ``MODEL_CARD.md`` and ``model_info.json`` beside it.

    With ``calibrated`` (the default) and a run whose temperatures were fitted on its validation split, the
    artifact ends with them (:class:`~omnifuse.model.heads.TemperatureScale`), so its probabilities are the
    Predictor's; ``calibrated=False`` (or a loaded Predictor made with ``calibrated=False``) exports the model's
    raw probabilities. A ``keras`` artifact keeps the run's precision; ``savedmodel`` and ``onnx`` artifacts are float32 (a run
    trained, or loaded, in bfloat16 is exported with float32 layers and the same weights).

    Returns ``{"artifact", "card", "info", "format", "max_abs_diff", "tolerance", "probe_samples"}``. Raises
    :class:`OmnifuseError` for an unknown format, a model ONNX cannot express, or a missing converter.
    """
    if format not in FORMATS:
        raise OmnifuseError(f"Expected --format to be one of {', '.join(FORMATS)}. Received: {format!r}")
    predictor = run_dir if isinstance(run_dir, Predictor) else Predictor(run_dir)
    if format != "keras" and predictor.precision != "float32":
        # SavedModel and ONNX artifacts are float32 graphs, which every runtime runs: the same weights, float32 layers
        predictor = Predictor(predictor.run_dir, "float32")
    if format == "onnx":
        check_onnx_possible(predictor.modalities, read_run_config(predictor.run_dir))
        _check_onnx_converter()
    out = Path(out) if out is not None else predictor.run_dir / "export" / format
    out.mkdir(parents=True, exist_ok=True)
    temps = predictor.temperatures if calibrated else {}
    probes = _probe_feeds(predictor)
    expected = [_as_numpy(calibration.apply(call_eagerly(predictor.model, feed), temps)) for feed in probes]

    artifact = out / ARTIFACT[format]
    tmp = out / f".tmp-{artifact.name}"  # keeps the suffix, which Keras and ONNX Runtime read
    _remove(tmp)
    writer, reader = {
        "keras": (_write_keras, _run_keras),
        "savedmodel": (_write_savedmodel, _run_savedmodel),
        "onnx": (_write_onnx, _run_onnx),
    }[format]
    writer(predictor, tmp, temps)
    got = reader(tmp, probes)
    diff = max(
        float(np.max(np.abs(np.asarray(g[k], np.float64) - e[k]))) for g, e in zip(got, expected) for k in e
    )
    if not diff <= TOLERANCE:  # also catches NaN
        raise RuntimeError(
            f"The {format} artifact differs from the run's model by {diff:.3g} (tolerance {TOLERANCE:g}); "
            f"left at {tmp} for inspection"
        )
    _remove(artifact)
    os.replace(tmp, artifact)

    n_probe = sum(len(feed[mask_name(next(iter(predictor.modalities)))]) for feed in probes)
    info = _model_info(predictor, format, temps)
    atomic_write_text(out / "model_info.json", json.dumps(info, indent=2) + "\n")
    card = out / "MODEL_CARD.md"
    atomic_write_text(card, model_card(predictor, format, artifact.name, info, diff, n_probe))
    tracking.log_export(predictor.meta, [card, out / "model_info.json"], format)  # a run tracked in MLflow
    return {
        "artifact": artifact,
        "card": card,
        "info": out / "model_info.json",
        "format": format,
        "max_abs_diff": diff,
        "tolerance": TOLERANCE,
        "probe_samples": n_probe,
    }


# ------------------------------------------------------------------------------------------------- probes


def _probe_feeds(predictor: Predictor, n: int = 6, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Model inputs covering every modality: a batch with varied presence, then one batch per modality alone
    (the model skips an encoder when no sample of a batch has its modality; the artifact must agree)."""
    rng = np.random.default_rng(seed)
    names = sorted(predictor.modalities)
    values: dict[str, np.ndarray] = {}
    for name in names:
        rule = modality_kind(predictor.modalities[name], name)
        values[name] = rule.example(n, rng, **predictor.facts(name))
    presence = np.ones((n, len(names)), np.float32)
    for i in range(1, n):  # sample 0 has everything; the others drop modalities in turn, keeping at least one
        presence[i, (i - 1) % len(names)] = 0.0 if len(names) > 1 else 1.0
    feeds = [_feed(values, names, presence)]
    if len(names) > 1:
        for j in range(len(names)):
            alone = np.zeros((n, len(names)), np.float32)
            alone[:, j] = 1.0
            feeds.append(_feed(values, names, alone))
    return feeds


def _feed(values: dict[str, np.ndarray], names: list[str], presence: np.ndarray) -> dict[str, np.ndarray]:
    feed = {}
    for j, name in enumerate(names):
        feed[name] = values[name]
        feed[mask_name(name)] = presence[:, j].copy()
    return feed


def _as_numpy(out: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


# ------------------------------------------------------------------------------------------------ formats


def _write_keras(predictor: Predictor, path: Path, temps: dict[str, float]) -> None:
    if temps:
        with_temperatures(predictor.model, temps).save(path)
    else:
        shutil.copyfile(predictor.run_dir / "model.keras", path)


def _run_keras(path: Path, probes: list[dict]) -> list[dict[str, np.ndarray]]:
    model = load_model(path)
    return [_as_numpy(call_eagerly(model, feed)) for feed in probes]


def _write_savedmodel(predictor: Predictor, path: Path, temps: dict[str, float]) -> None:
    import tensorflow as tf
    from tensorflow.saved_model.experimental import TrackableResource

    # Not model.export(): its endpoint calls the model with training unset, and Keras' random augmentation
    # layers then default to training mode, so served images would be randomly flipped and shifted. Nor Keras'
    # ExportArchive: it traces the model four times (once to list the endpoint's variables, twice more for the
    # models' default signatures while it looks for lookup tables, once in the save); tf.saved_model.save traces
    # it once. The root holds what the endpoint reads: the variables and the lookup tables (TextVectorization's,
    # the WordPiece tokenizer's), found by walking the model's tracked objects.
    model = with_temperatures(predictor.model, temps) if temps else predictor.model
    root = tf.__internal__.tracking.AutoTrackable()
    root.variables = _tf_variables(model.variables)
    root.trainable_variables = _tf_variables(model.trainable_variables)
    root.non_trainable_variables = _tf_variables(model.non_trainable_variables)
    root.lookup_tables = [
        obj for obj in tf.train.TrackableView(model).descendants() if isinstance(obj, TrackableResource)
    ]
    specs = {t.name: tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=t.name) for t in model.inputs}
    root.serve = tf.function(
        lambda inputs: model(inputs, training=False), input_signature=[specs], autograph=False
    )
    tf.saved_model.save(root, str(path), signatures={"serve": root.serve, "serving_default": root.serve})


def _tf_variables(variables) -> list:
    """The TensorFlow variables behind Keras variables. Saved as they are, each Keras variable would be exported
    twice (Keras's ``_export_to_saved_model_graph`` copies its tf.Variable into the graph, then wraps that copy in
    a new tf.Variable): a quarter of an EfficientNet-Lite0 model's export (CPU s, 3.7-4.4 -> 3.0-3.1)."""
    import tensorflow as tf

    return [v.value if isinstance(getattr(v, "value", None), tf.Variable) else v for v in variables]


def _run_savedmodel(path: Path, probes: list[dict]) -> list[dict[str, np.ndarray]]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return [
        _as_numpy(
            {k: v.numpy() for k, v in loaded.serve({k: tf.constant(v) for k, v in feed.items()}).items()}
        )
        for feed in probes
    ]


def check_onnx_possible(modalities: dict[str, str], cfg) -> None:
    """Raise an :class:`OmnifuseError` naming the input and its encoder when a model with ``modalities`` (name ->
    kind), built from ``cfg``, has preprocessing that ONNX cannot express."""
    for name, kind in modalities.items():
        section = getattr(cfg.model, kind, None)  # model.image, model.text, model.audio
        encoder = getattr(section, "encoder", "")
        reason = ONNX_UNSUPPORTED.get(f"{kind}:{encoder}", ONNX_UNSUPPORTED.get(kind))
        if reason:
            raise OmnifuseError(
                f"Expected a model whose inputs ONNX can express for --format onnx. Received: {kind} input "
                f"{name!r} (encoder {encoder}); {reason}. Use --format savedmodel (TensorFlow alone runs it) or "
                "--format keras."
            )


def _check_onnx_converter() -> None:
    missing = [m for m in ("tf2onnx", "onnxruntime") if not _importable(m)]
    if missing:
        raise OmnifuseError(
            f"Expected the ONNX converter packages for --format onnx. Received: {', '.join(missing)} not "
            "installed; install them with: pip install 'omnifuse[onnx]'"
        )


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _write_onnx(predictor: Predictor, path: Path, temps: dict[str, float]) -> None:
    plain = keras.models.clone_model(
        predictor.model,
        # each branch without its skip conditional (tf2onnx cannot infer shapes inside ``If`` branches; the fusion
        # zeroes absent samples' features either way, so the answers are the same) and without the augmentation
        clone_function=lambda layer: (
            ModalityBranch(layer.encoder, skip_absent=False, name=layer.name)
            if isinstance(layer, ModalityBranch)
            else layer
        ),
    )
    if temps:
        plain = with_temperatures(plain, temps)
    # layers with an ONNX form of their own (``onnx_form``: EfficientNet-Lite's resize) use it while tf2onnx traces
    switched = [layer for layer in all_layers(plain) if getattr(layer, "onnx_form", None) is False]
    try:
        for layer in switched:
            layer.onnx_form = True
        to_onnx(plain, path)
    except Exception as exc:
        raise OmnifuseError(
            f"Expected tf2onnx to convert the model of '{predictor.run_dir}'. Received: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        for layer in switched:
            layer.onnx_form = False
    _check_onnx_ops(path, predictor.run_dir)


def to_onnx(model: keras.Model, path: Path) -> None:
    """``model`` (called with ``training=False``) as an ONNX file at ``path``, through tf2onnx as
    ``model.export(path, format="onnx")`` does, at about half its cost. Keras' export traces the model three times
    (two of them for the default serving signatures of its ExportArchive, which it builds only to look for lookup
    tables, which ONNX has no form of anyway); this traces it once. And tf2onnx copies the whole graph, weights
    included, before each of its optimizer passes (a dozen, repeated until none changes the graph) to restore it
    should the pass fail: here it does not, and should a pass fail, the conversion runs again the usual way, which
    leaves that pass out."""
    import tensorflow as tf
    import tf2onnx

    for name in ("tf2onnx", "onnx"):  # the converter logs every pass; errors still raise
        logging.getLogger(name).setLevel(logging.ERROR)
    try:  # what model.export does first: tf2onnx 1.17 with numpy 2
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        patch_tf2onnx()
    except ImportError:  # a Keras without it: a tf2onnx that needs no patch
        pass
    specs = open_batch_specs(model)
    fn = tf.function(lambda inputs: model(inputs, training=False), input_signature=[specs], autograph=False)
    key = "TF2ONNX_CATCH_ERRORS"  # set at all (tf2onnx 1.17 reads only whether it is), optimizer errors raise
    before = os.environ.get(key)
    os.environ[key] = "FALSE"
    try:
        tf2onnx.convert.from_function(fn, [specs], output_path=str(path))
    except Exception as exc:
        if not any(
            Path(frame.filename).parent.parts[-2:] == ("tf2onnx", "optimizer") for frame in _frames(exc)
        ):
            raise
        os.environ.pop(key)
        tf2onnx.convert.from_function(fn, [specs], output_path=str(path))
    finally:
        os.environ.pop(key, None)
        if before is not None:
            os.environ[key] = before


def _frames(exc: BaseException) -> list:
    import traceback

    return list(traceback.extract_tb(exc.__traceback__))


def _check_onnx_ops(path: Path, run_dir: Path) -> None:
    """tf2onnx leaves an op it cannot convert in the graph under its TensorFlow name, as a model no runtime loads:
    name those ops and where they are instead."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    unknown = {}
    for node in graph.node:
        if not onnx.defs.has(node.op_type, node.domain):
            # where: the layer's last two name parts, not the whole model's path
            unknown.setdefault(node.op_type, "/".join(node.name.split("/")[-3:-1]))
    if unknown:
        _remove(path)
        where = ", ".join(f"{op} (in {scope})" for op, scope in sorted(unknown.items()))
        raise OmnifuseError(
            f"Expected every TensorFlow op of the model of '{run_dir}' to have an ONNX form. Received: {where}, "
            "which tf2onnx cannot convert. Use --format savedmodel (TensorFlow alone runs it) or --format keras."
        )


def _run_onnx(path: Path, probes: list[dict]) -> list[dict[str, np.ndarray]]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    results = []
    for feed in probes:
        outputs = session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})
        results.append(_as_numpy(dict(zip(names, outputs))))
    return results


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# ------------------------------------------------------------------------------------------ info and card


def _model_info(predictor: Predictor, format: str, temps: dict[str, float] | None = None) -> dict[str, Any]:
    """Inputs (name, dtype, shape), outputs and class names: what a program needs to call the artifact."""
    inputs = []
    for tensor in predictor.model.inputs:
        shape = [None if d is None else int(d) for d in tensor.shape]
        inputs.append({"name": tensor.name, "dtype": str(tensor.dtype), "shape": shape})
    outputs = {task: {"classes": classes} for task, classes in predictor.tasks.items()}
    if WEIGHTS_OUTPUT in predictor.model.output_names:
        outputs[WEIGHTS_OUTPUT] = {"modalities": sorted(predictor.modalities)}
    return {
        "run": predictor.run_dir.name,
        "format": format,
        "modalities": predictor.metadata()["modalities"],
        "inputs": inputs,
        "outputs": outputs,
        "tolerance": TOLERANCE,
        # task -> the temperature the artifact's probabilities are already scaled by (empty: raw probabilities)
        "temperatures": dict(temps or {}),
    }
