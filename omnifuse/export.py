"""Export a trained run as a portable artifact, checked against the run's model, with a model card beside it.

Formats: ``keras`` (``model.keras``, loads with omnifuse installed), ``savedmodel`` (a TensorFlow SavedModel made by
Keras' ``model.export``, loads with TensorFlow alone) and ``onnx`` (``model.onnx`` through tf2onnx, for models whose
inputs are images and numbers: text and audio preprocessing live inside the model as TensorFlow string and FFT ops
that ONNX cannot express). Every artifact is reloaded after writing and its probabilities compared with the run's
model on a probe batch; the largest difference and the tolerance go into ``MODEL_CARD.md``.

>>> export("runs/cifar10-cnn", "onnx")["artifact"]
PosixPath('runs/cifar10-cnn/export/onnx/model.onnx')
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np

from omnifuse import tracking
from omnifuse.errors import OmnifuseError
from omnifuse.evaluation import calibration
from omnifuse.model.branch import ModalityBranch
from omnifuse.model.heads import with_temperatures
from omnifuse.modelio import load_model
from omnifuse.names import WEIGHTS_OUTPUT, mask_name
from omnifuse.predictor import Predictor
from omnifuse.rundir import atomic_write_text, read_run_config

FORMATS = ("keras", "savedmodel", "onnx")
TOLERANCE = 1e-4  # largest |difference| of any output (probability or weight) between artifact and run model
ARTIFACT = {"keras": "model.keras", "savedmodel": "saved_model", "onnx": "model.onnx"}
ONNX_UNSUPPORTED = {
    "text": "text is tokenized inside the model by TensorFlow string ops (TextVectorization), which ONNX cannot "
    "express",
    "audio": "audio becomes a mel spectrogram inside the model through an FFT whose real and imaginary parts "
    "tf2onnx cannot convert",
}
MEDICAL_SETS = {"brain_mri", "pneumoniamnist", "retinamnist"}


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
        _check_onnx_possible(predictor)
    out = Path(out) if out is not None else predictor.run_dir / "export" / format
    out.mkdir(parents=True, exist_ok=True)
    temps = predictor.temperatures if calibrated else {}
    probes = _probe_feeds(predictor)
    expected = [
        _as_numpy(calibration.apply(predictor.model.predict_on_batch(feed), temps)) for feed in probes
    ]

    artifact = out / ARTIFACT[format]
    tmp = out / f".tmp-{artifact.name}"  # keeps the suffix, which Keras and ONNX Runtime read
    _remove(tmp)
    writer, reader = {
        "keras": (_write_keras, _run_keras),
        "savedmodel": (_write_savedmodel, _run_savedmodel),
        "onnx": (_write_onnx, _run_onnx),
    }[format]
    writer(predictor, tmp, probes[0], temps)
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
        kind = predictor.modalities[name]
        if kind == "image":
            values[name] = rng.integers(0, 256, (n, *predictor.image_shape), dtype=np.uint8)
        elif kind == "text":
            words = ["a", "wonderful", "dull", "film", "great", "awful", "story", "not", "bad", "the"]
            values[name] = np.array([" ".join(rng.choice(words, 8)) for _ in range(n)], dtype=object)
        elif kind == "audio":
            t = np.arange(predictor.num_samples) / predictor.sample_rate
            freqs = rng.uniform(200, 2000, (n, 1))
            values[name] = (0.5 * np.sin(2 * np.pi * freqs * t)).astype(np.float32)
        else:
            width = len((predictor.numbers.get(name) or {}).get("features", []))
            values[name] = rng.standard_normal((n, width)).astype(np.float32)
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


def _write_keras(predictor: Predictor, path: Path, probe: dict, temps: dict[str, float]) -> None:
    if temps:
        with_temperatures(predictor.model, temps).save(path)
    else:
        shutil.copyfile(predictor.run_dir / "model.keras", path)


def _run_keras(path: Path, probes: list[dict]) -> list[dict[str, np.ndarray]]:
    model = load_model(path)
    return [_as_numpy(model.predict_on_batch(feed)) for feed in probes]


def _write_savedmodel(predictor: Predictor, path: Path, probe: dict, temps: dict[str, float]) -> None:
    import tensorflow as tf

    # Not model.export(): its endpoint calls the model with training unset, and Keras' random augmentation
    # layers then default to training mode, so served images would be randomly flipped and shifted.
    model = with_temperatures(predictor.model, temps) if temps else predictor.model
    archive = keras.export.ExportArchive()
    archive.track(model)
    specs = {t.name: tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=t.name) for t in model.inputs}
    archive.add_endpoint("serve", lambda inputs: model(inputs, training=False), input_signature=[specs])
    archive.write_out(str(path), verbose=False)


def _run_savedmodel(path: Path, probes: list[dict]) -> list[dict[str, np.ndarray]]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return [
        _as_numpy(
            {k: v.numpy() for k, v in loaded.serve({k: tf.constant(v) for k, v in feed.items()}).items()}
        )
        for feed in probes
    ]


def _check_onnx_possible(predictor: Predictor) -> None:
    for name, kind in predictor.modalities.items():
        if kind in ONNX_UNSUPPORTED:
            raise OmnifuseError(
                f"Expected a model with image and numbers inputs only for ONNX export. Received: a model with "
                f"{kind} input {name!r}; {ONNX_UNSUPPORTED[kind]}. Use --format savedmodel (TensorFlow alone "
                "runs it) or --format keras."
            )
    missing = [m for m in ("tf2onnx", "onnxruntime") if not _importable(m)]
    if missing:
        raise OmnifuseError(
            f"Expected the ONNX converter packages for --format onnx. Received: {', '.join(missing)} not "
            "installed; install them with: pip install 'omnifuse[onnx]'"
        )


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _write_onnx(predictor: Predictor, path: Path, probe: dict, temps: dict[str, float]) -> None:
    for name in ("tf2onnx", "onnx"):  # the converter logs every pass; errors still raise
        logging.getLogger(name).setLevel(logging.ERROR)
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
    plain(probe)  # Keras exports only a model that has been called
    try:
        plain.export(str(path), format="onnx", verbose=False)
    except Exception as exc:
        raise OmnifuseError(
            f"Expected tf2onnx to convert the model of '{predictor.run_dir}'. Received: {type(exc).__name__}: {exc}"
        ) from exc


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


def _read_metrics(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "report" / "metrics.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _loading(format: str, artifact: str, info: dict[str, Any]) -> str:
    feed = ", ".join(f'"{i["name"]}": ...' for i in info["inputs"])
    if format == "keras":
        return (
            "```python\nimport omnifuse\nmodel = omnifuse.load('RUN_DIR')   # raw files in, answers out\n"
            "# or the bare Keras model (needs omnifuse installed for its layers):\n"
            "import keras, omnifuse.modelio\n"
            f"model = keras.saving.load_model('{artifact}')\n"
            f"probabilities = model.predict_on_batch({{{feed}}})\n```"
        )
    if format == "savedmodel":
        return (
            "```python\nimport tensorflow as tf   # omnifuse is not needed\n"
            f"model = tf.saved_model.load('{artifact}')\n"
            f"outputs = model.serve({{{feed}}})   # dict of tensors, batch first\n```"
        )
    return (
        "```python\nimport onnxruntime as ort   # neither omnifuse nor TensorFlow is needed\n"
        f"session = ort.InferenceSession('{artifact}')\n"
        f"outputs = session.run(None, {{{feed}}})\n```"
    )


def pretrained_weights(cfg, kinds: set[str]) -> list[str]:
    """The model card's lines on each pretrained encoder: its weights, the package and version they come from, its
    licence and how it was trained (empty when every encoder learned from scratch)."""
    from omnifuse.weights.catalog import SPECS

    chosen = {"image": cfg.model.image, "text": cfg.model.text, "audio": cfg.model.audio}
    rows = []
    for kind, section in chosen.items():
        if kind not in kinds:
            continue
        for name in section.encoder.split("+"):
            spec = SPECS.get(name)
            if spec is None:
                continue
            options = getattr(section, name)
            mode = getattr(options, "mode", "?")
            source = options.weights or f"the `{spec.package}=={spec.version}` package"
            rows.append(f"| {kind} | {spec.model} | {source} | {spec.licence} | {mode} |")
    if not rows:
        return []
    return [
        "## Pretrained encoders",
        "",
        "| modality | weights | from | licence | training |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "The weights' licences apply to this model too.",
        "",
    ]


def model_card(
    predictor: Predictor, format: str, artifact: str, info: dict[str, Any], diff: float, n_probe: int
) -> str:
    """The text of ``MODEL_CARD.md``: model, inputs, outputs, data, metrics, intended use, export check."""
    from omnifuse import __version__

    run_dir, meta = predictor.run_dir, predictor.meta
    cfg = read_run_config(run_dir)
    kinds = set(predictor.modalities.values())
    lines = _front_matter(predictor, meta, metrics := _read_metrics(run_dir))
    lines += [f"# Model card: {run_dir.name}", ""]
    lines += [
        f"A multimodal classifier trained with omnifuse {__version__}, exported as **{format}** "
        f"(`{artifact}`) on {_dt.date.today().isoformat()} with Keras {keras.__version__}.",
        "",
        "## Model",
        "",
    ]
    encoders = []
    if "image" in kinds:
        encoders.append(f"image: {cfg.model.image.encoder}")
    if "text" in kinds:
        encoders.append(f"text: {cfg.model.text.encoder} (vocabulary {cfg.model.text.vocab_size})")
    if "audio" in kinds:
        encoders.append(f"audio: {cfg.model.audio.encoder} on a log-mel spectrogram")
    if "numbers" in kinds:
        encoders.append(f"numbers: {cfg.model.tabular.encoder}")
    pretrained = pretrained_weights(cfg, kinds)
    lines += [
        f"- Encoders: {'; '.join(encoders)}",
        f"- Fusion: {cfg.model.fusion} "
        + (f"(dimension {cfg.model.fusion_dim})" if cfg.model.fusion_dim > 0 else "(no common projection)"),
        f"- Parameters: {predictor.model.count_params():,}",
        f"- Training: {meta.get('progress', {}).get('epochs_done', '?')} epochs, batch size "
        f"{cfg.train.batch_size}, learning rate {cfg.train.learning_rate:g} ({cfg.train.schedule}), seed "
        f"{cfg.train.seed}",
        "",
        *pretrained,
        "## Inputs",
        "",
        "One tensor per modality plus its presence mask `<name>_mask` (float32, 1 = present, 0 = absent). "
        "Any modality may be absent (mask 0, zeros or an empty string as its value), but each sample needs one.",
        "",
        "| input | kind | dtype | shape | what to feed |",
        "|---|---|---|---|---|",
    ]
    modalities = info["modalities"]
    for tensor in info["inputs"]:
        name = tensor["name"]
        if name in modalities:
            kind, what = modalities[name]["kind"], modalities[name].get("expects", "")
            if kind == "image":
                what = "uint8 pixels 0-255, " + what.replace("an image file (PNG, JPEG, ...), ", "")
            elif kind == "audio":
                what = f"float32 waveform in [-1, 1]: {what.replace('a WAV file, ', '')}"
            elif kind == "numbers":
                # the artifact takes the encoded features as one ordered array, never a dict of columns
                features = modalities[name].get("features") or []
                what = f"float32 array of the {len(features)} encoded features, in this order: " + ", ".join(
                    f"`{f}`" for f in features
                )
        else:
            kind, what = "mask", f"1.0 if `{name.removesuffix('_mask')}` is present, else 0.0"
        shape = str(tuple("batch" if d is None else d for d in tensor["shape"])).replace("'", "")
        lines.append(f"| `{name}` | {kind} | {tensor['dtype']} | {shape} | {what} |")
    lines += ["", _feed_note(format, info), "", "## Outputs", ""]
    for task, classes in predictor.tasks.items():
        shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
        lines.append(f"- `{task}`: softmax probabilities over {len(classes)} classes, in order: {shown}")
    if WEIGHTS_OUTPUT in info["outputs"]:
        lines.append(
            f"- `{WEIGHTS_OUTPUT}`: per sample, how much each modality counted (sums to 1; 0 when absent), in "
            f"order: {', '.join(info['outputs'][WEIGHTS_OUTPUT]['modalities'])}"
        )
    temps = info.get("temperatures") or {}
    if temps:
        lines.append(
            "- The task probabilities are calibrated: temperature-scaled by "
            + ", ".join(f"`{t}` T = {v:.3f}" for t, v in temps.items())
            + " (fitted on the validation split; see Calibration)."
        )
    lines += ["", "Class names and input specs are also in `model_info.json`.", "", "## Data", ""]
    lines += ["| data set | file | train | validation | test |", "|---|---|---|---|---|"]
    sources = meta.get("sources") or {}
    for name in meta.get("sets", []):
        counts = (meta.get("samples") or {}).get(name, {})
        # file names only: the folders are the trainer's
        src = " + ".join(Path(part.strip()).name for part in str(sources.get(name, "?")).split(" + "))
        lines.append(
            f"| {name} | {src} | {counts.get('train', '?')} | {counts.get('val', '?')} | {counts.get('test', '?')} |"
        )
    lines += ["", "## Metrics", ""]
    if metrics is None:
        lines.append(f"Not evaluated yet: `omnifuse evaluate {run_dir.name}` writes report/metrics.json.")
    else:
        lines += [
            "On the held-out test sets (`report/metrics.json` of the run):",
            "",
            "| task | data set | n | accuracy | macro-F1 | ROC-AUC |",
            "|---|---|---|---|---|---|",
        ]
        for task, m in metrics.get("tasks", {}).items():
            auc = "—" if m.get("roc_auc") is None else f"{m['roc_auc']:.4f}"
            lines.append(
                f"| {task} | {m.get('data_set', '?')} | {m.get('n', '?')} | {m.get('accuracy', 0):.4f} | "
                f"{m.get('macro_f1', 0):.4f} | {auc} |"
            )
    lines += _per_class_lines(metrics)
    lines += _calibration_lines(meta, metrics, temps)
    lines += _training_lines(meta)
    lines += [
        "",
        "## Intended use",
        "",
        "Classifying inputs like those of the data sets above, for research, teaching and demonstrations of "
        "multimodal fusion. Predictions on inputs unlike the training data (other cameras, languages, "
        "microphones, populations) are not validated; the modality weights say which input the model relied "
        "on, not why.",
    ]
    if MEDICAL_SETS & set(meta.get("sets", [])):
        lines += [
            "",
            "**Not a medical device.** Trained on a small public research data set; it must not be used to "
            "diagnose, screen or treat anyone.",
        ]
    lines += _limitations(predictor, meta)
    lines += [
        "",
        "## Export check",
        "",
        f"The artifact was reloaded and run on {n_probe} probe samples (every modality present, absent, and "
        f"alone); its outputs differ from the run's model by at most {diff:.2e} (tolerance {TOLERANCE:g}).",
        "",
        "## Loading",
        "",
        _loading(format, artifact, info),
        "",
    ]
    return "\n".join(lines)


PIPELINE_TAGS = {
    "image": "image-classification",
    "text": "text-classification",
    "audio": "audio-classification",
    "numbers": "tabular-classification",
}


def _front_matter(predictor: Predictor, meta: dict[str, Any], metrics: dict[str, Any] | None) -> list[str]:
    """Hugging Face-style YAML metadata: licence, data sets, metrics, task tags, languages, results."""
    kinds = sorted(set(predictor.modalities.values()))
    lines = [
        "---",
        "license: other  # see the data sets' and pretrained weights' licences below",
        "library_name: keras",
    ]
    lines.append("tags:")
    lines += [f"  - {tag}" for tag in ["omnifuse", "multimodal" if len(kinds) > 1 else kinds[0], *kinds]]
    if len(kinds) == 1:
        lines.append(f"pipeline_tag: {PIPELINE_TAGS[kinds[0]]}")
    lines.append("datasets:")
    lines += [f"  - {name}" for name in meta.get("sets", [])]
    if "text" in kinds:
        lines += ["language:", "  - en"]
    lines += ["metrics:", "  - accuracy", "  - f1", "  - roc_auc", "  - expected_calibration_error"]
    if metrics and metrics.get("tasks"):
        lines += ["model-index:", f"  - name: {predictor.run_dir.name}", "    results:"]
        for task, m in metrics["tasks"].items():
            lines += [
                f"      - task: {{type: {PIPELINE_TAGS.get(kinds[0]) if len(kinds) == 1 else 'multimodal'}, "
                f"name: {task}}}",
                f"        dataset: {{name: {m.get('data_set', '?')}, type: {m.get('data_set', '?')}, split: test}}",
                "        metrics:",
                f"          - {{type: accuracy, value: {m.get('accuracy') or 0:.4f}}}",
                f"          - {{type: f1, name: macro-F1, value: {m.get('macro_f1') or 0:.4f}}}",
            ]
    return lines + ["---", ""]


def _feed_note(format: str, info: dict[str, Any]) -> str:
    """How the arrays above are handed to the artifact of ``format``."""
    names = ", ".join(f"`{i['name']}`" for i in info["inputs"])
    how = {
        "keras": "`model.predict_on_batch({...})` with a dict of NumPy arrays",
        "savedmodel": "`model.serve({...})` with a dict of tensors (`tf.constant`)",
        "onnx": "`session.run(None, {...})` with a dict of NumPy arrays, each of exactly the dtype shown",
    }[format]
    return (
        f"The artifact takes every input above, by name ({names}), batch first: {how}. Numbers go in as one "
        "ordered float32 array per modality (encode a CSV row's columns as `model_info.json` lists them)."
    )


def _per_class_lines(metrics: dict[str, Any] | None) -> list[str]:
    tasks = {t: m["per_class"] for t, m in ((metrics or {}).get("tasks") or {}).items() if m.get("per_class")}
    if not tasks:
        return []
    lines = ["", "### Per class (test)"]
    for task, per_class in tasks.items():
        lines += [
            "",
            f"`{task}`:",
            "",
            "| class | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        for name, c in per_class.items():
            lines.append(
                f"| {name} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |"
            )
    return lines


def _calibration_lines(
    meta: dict[str, Any], metrics: dict[str, Any] | None, temps: dict[str, float]
) -> list[str]:
    fitted = ((meta.get("calibration") or {}).get("tasks")) or {}
    if not fitted:
        return ["", "## Calibration", "", "No temperature was fitted (the run has no validation split)."]
    tested = {t: m.get("calibration") or {} for t, m in ((metrics or {}).get("tasks") or {}).items()}
    lines = [
        "",
        "## Calibration",
        "",
        "One temperature per task, fitted on the validation split after training (probabilities "
        "`softmax(log(p) / T)`; the predicted class is unchanged). Expected calibration error (15 bins) and "
        "negative log-likelihood on the test split, before and after:",
        "",
        "| task | T | ECE before | ECE after | NLL before | NLL after | in this artifact |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, f in fitted.items():
        t = tested.get(task) or {}
        cell = {
            k: "—" if t.get(k) is None else f"{t[k]:.4f}"
            for k in ("ece_before", "ece_after", "nll_before", "nll_after")
        }
        lines.append(
            f"| {task} | {f['temperature']:.3f} | {cell['ece_before']} | {cell['ece_after']} | "
            f"{cell['nll_before']} | {cell['nll_after']} | {'applied' if task in temps else 'not applied'} |"
        )
    return lines


def _training_lines(meta: dict[str, Any]) -> list[str]:
    progress = meta.get("progress") or {}
    hardware = meta.get("hardware") or {}
    where = (
        f"{hardware.get('cpu', '?')}, {hardware.get('cores', '?')} cores"
        + (f", {hardware['accelerators']}" if hardware.get("accelerators") else "")
        if hardware
        else "not recorded by this run"
    )
    return [
        "",
        "## Training hardware and time",
        "",
        f"- Hardware: {where}",
        f"- Training time: {progress.get('train_seconds', 0):.0f} s over {progress.get('epochs_done', '?')} "
        f"epochs (data loading and set-up: {progress.get('setup_seconds', 0):.0f} s)",
    ]


def _limitations(predictor: Predictor, meta: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Limitations and out-of-scope uses",
        "",
        "- Out of scope: decisions about people (health, credit, employment, policing) and any use where a wrong "
        "answer causes harm; inputs unlike the training data (other sensors, languages, populations).",
        "- The probabilities are calibrated on the validation split only; on shifted data they may again be "
        "over-confident. Explanations (`predict --explain`) show which inputs moved the answer, not causes.",
        "- A missing modality is handled, but accuracy with fewer modalities is lower (see the evaluation "
        "report's robustness section).",
    ]
    sets = meta.get("sets", [])
    if len(sets) > 1 and len(predictor.tasks) > 1:
        lines.append(
            f"- A joint model of {len(sets)} data sets ({', '.join(sets)}): each task learnt only from its own "
            f"data set's samples and modalities. A task ({', '.join(f'`{t}`' for t in predictor.tasks)}) asked "
            "about a sample without the modality its data set has answers anyway, and that answer means nothing: "
            "read only the tasks whose modality you gave."
        )
    return lines
